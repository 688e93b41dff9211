// The public surface of stratavec: everything a user imports comes from here.

export { Database, type CollectionOptions, type DatabaseStatus } from './database.js';
export { Collection, type UpsertRecord, type SearchOptions, MAX_PAYLOAD_BYTES, MAX_K } from './collection.js';
export type { SearchHit, StoredRecord, SegmentInfo, SegmentCheck, CopyCheck, CompactionResult } from './collection-core.js';
export type { VerifyOptions, VerifyReport, ManifestCheck, GcOptions, GcReport, CompactOptions, CompactReport } from './maintenance.js';
export type { GcEntry, GarbageItem, GarbageReason, GcAction } from '../gc/collector.js';
export type { CompactionGroup } from '../gc/compaction.js';
export type { DatabaseOptions, S3ObjectStoreOptions, Clock, MaintenanceOptions } from './options.js';
export type { Filter, Payload } from './filter.js';
export { StratavecError, ErrorCodes, isStratavecError, type ErrorCode } from '../format/errors.js';
export type { Metric, HnswParams } from '../index/hnsw.js';
export { readPublishedStats, type PublishedStats } from './stats-file.js';
