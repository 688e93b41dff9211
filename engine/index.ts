// The public surface of stratavec: everything a user imports comes from here.

export { Database, type CollectionOptions, type DatabaseStatus } from './database.js';
export { Collection, type UpsertRecord, type SearchOptions, MAX_PAYLOAD_BYTES, MAX_K } from './collection.js';
export type { SearchHit, StoredRecord, SegmentInfo } from './collection-core.js';
export type { DatabaseOptions, S3ObjectStoreOptions, Clock } from './options.js';
export type { Filter, Payload } from './filter.js';
export { StratavecError, ErrorCodes, isStratavecError, type ErrorCode } from '../format/errors.js';
export type { Metric, HnswParams } from '../index/hnsw.js';
