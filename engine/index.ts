// The public surface of stratavec: everything a user imports comes from here.

export { Database, type CollectionOptions, type DatabaseStatus } from './database.js';
export { Replica, ReplicaCollection, type ReplicaOptions, type ReplicaStats } from './replica.js';
export { Collection, type UpsertRecord, type SearchOptions, MAX_PAYLOAD_BYTES, MAX_K } from './collection.js';
export type { SegmentInfo, SegmentDetail } from './collection-core.js';
export type { SectionDetail, StoredSection, CopyDetail } from '../tiers/segment-detail.js';
export { SEARCH_CHANNEL, type SearchHit, type StoredRecord, type ExplainResult, type SegmentTrace, type SearchHow } from './read-path.js';
export type { SegmentCheck, CopyCheck } from '../tiers/verify.js';
export type { CompactionResult } from '../gc/compactor.js';
export type { ClusterCompactionResult } from '../gc/clustering.js';
export type { HeatLayout } from '../workers/cluster.js';
export type { ManifestCheck } from './segment-registry.js';
export type { VerifyOptions, VerifyReport, GcOptions, GcReport, CompactOptions, CompactReport } from './maintenance.js';
export type { Tier } from '../format/manifest.js';
export type { MoveResult } from '../tiers/migrator.js';
export {
  DefaultTieringPolicy, type TieringPolicy, type TieringPlan, type SegmentState, type TierBudgets, type PlannedMove,
  type MoveCause, type TierUsage, type DefaultPolicyOptions,
} from '../tiers/policy.js';
export type { AppliedMove, FailedMove, ApplyResult } from './tiering.js';
export type { HotTierStats } from '../tiers/hot.js';
export type { GcEntry, GarbageItem, GarbageReason, GcAction } from '../gc/collector.js';
export type { CompactionGroup } from '../gc/compaction.js';
export type { DatabaseOptions, S3ObjectStoreOptions, Clock, MaintenanceOptions } from './options.js';
export type { Filter, Payload } from './filter.js';
export { StratavecError, ErrorCodes, isStratavecError, type ErrorCode } from '../format/errors.js';
export type { Metric, HnswParams } from '../index/hnsw.js';
export { readPublishedStats, publishedAccess, type PublishedStats, type PublishedAccess } from './stats-file.js';
export type { ManifestRecovery, RepairManifestsOptions } from './manifest-recovery.js';
