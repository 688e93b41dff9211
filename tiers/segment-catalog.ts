// What the tier code (copies, verification, migration) and compaction need of one collection:
// its identity, its live segments and the manifest commit. The segment registry in engine/
// implements it; nothing here may change what is durable except through `commit`.

import type { Clock } from './access-stats.js';
import type { PayloadIndexes } from '../format/payload-schema.js';
import type { CollectionManifest, ManifestClustering, ManifestSegment } from '../format/manifest.js';
import type { StringTable } from '../format/segment.js';
import type { Metric } from '../format/segment.js';
import type { WorkerPool } from '../workers/pool.js';
import type { HotTier } from './hot.js';
import type { WarmTier } from './warm.js';
import type { ColdTier } from './cold.js';
import type { AccessTracker } from './access-stats.js';
import type { TierStats } from './tier-stats.js';
import type { LeaseSet } from './leases.js';
import type { SealedSegment } from './sealed-segment.js';
import type { WriterFence } from './writer-fence.js';

/** One manifest version's change against the current one; see SegmentRegistry.commit. */
export interface ManifestChange {
  /** First WAL file the new version does not cover (default: unchanged). */
  walSeq?: number;
  added?: SealedSegment[];
  /** Segment ids the new version no longer lists (replaced by compaction). */
  removed?: ReadonlySet<string>;
  /** A new clustering (clustering compaction); default: unchanged. */
  clustering?: ManifestClustering;
  /** New declared payload indexes (createIndex); default: unchanged. */
  indexes?: PayloadIndexes;
  /** A new manifest entry for an existing segment (same id). */
  replace?: ManifestSegment;
  /** Runs in commit order right before the version is built (e.g. to copy tombstones over). */
  prepare?: () => void;
  /** Runs synchronously once the version is durable and the segment list switched: what readers
   *  must see in the same step as the new list (a seal retiring its frozen rows, compaction
   *  moving ids to the new segment). */
  applied?: () => void;
}

export interface SegmentCatalog {
  readonly name: string;
  readonly dir: string;
  readonly dimension: number;
  readonly metric: Metric;
  readonly manifest: Readonly<CollectionManifest>;
  readonly closed: boolean;
  has(id: string): boolean;
  /** The live segment `id`, or ERR_SEGMENT_NOT_FOUND. */
  require(id: string): SealedSegment;
  /** Live segments in seq order. */
  list(): SealedSegment[];
  commit(change: ManifestChange): Promise<void>;
  /** Reserves the sequence number of a segment about to be written. */
  allocateSeq(): number;
  /** Puts a segment's live rows into the collection's id -> location map (a revived segment). */
  index(seg: SealedSegment, ids: StringTable): void;
  /** Moves `id` to (seg, row) if it still lives at (from, fromRow); rows written since win. */
  relocate(id: string, from: object, fromRow: number, seg: SealedSegment, row: number): void;
}

/** The database-wide parts every collection's tier code shares. */
export interface TierContext {
  pool: WorkerPool;
  hot: HotTier;
  warm: WarmTier;
  cold: ColdTier;
  access: AccessTracker;
  tierStats: TierStats;
  /** Locations garbage collection must leave alone (see leases.ts). */
  leases: LeaseSet;
  tmpDir: string;
  /** readOnly: a look beside the directory's writer (engine/read-only.ts): copies are read, and
   *  a cold one fetched to scratch (tmpDir), but nothing in the collection directory is written. */
  options: { readonly uploadOnSeal: boolean; readonly clock: Clock; readonly readOnly?: boolean };
  /** Tells the tiering loop that local usage grew (a seal, a rehydration). */
  nudgeTiering: () => void;
  /** This writer's claim on the bucket prefix; every manifest version passes it. */
  fence: WriterFence | undefined;
}
