// Clustering compaction of one collection: learns partitions of the space (k-means over a sample
// of the live rows, in a pool task) and rewrites every local, unpinned, readable segment's live
// rows into new segments that each hold one region (a region too large for one segment becomes
// several), committed as one manifest version with the centroids (Compactor.rewrite). It runs on
// the compactor's queue, so it never overlaps another compaction of the collection. The main
// thread only lists segments, schedules tasks and commits; it never touches a vector.
// The collection's recent queries go with the task: when they are skewed, the hottest partitions
// are packed into segments of their own (workers/cluster.ts), so the policy can keep those local
// and the rest cold.

import { StratavecError } from '../format/errors.js';
import { encodeCentroids, currentRegion } from '../format/manifest.js';
import { MAX_K } from '../index/kmeans.js';
import type { SealedSegment } from '../tiers/sealed-segment.js';
import type { SegmentCatalog, TierContext } from '../tiers/segment-catalog.js';
import type { SegmentCopies } from '../tiers/copies.js';
import type { QuerySample } from '../tiers/query-sample.js';
import type { HeatLayout } from '../workers/cluster.js';
import type { Compactor, RewriteOutput } from './compactor.js';

/**
 * Regions are sized for segments this full on average: k-means regions are unequal, and a region
 * over segmentMaxRecords costs a cut (two segments sharing a region) where a little slack costs a
 * slightly smaller segment.
 */
export const CLUSTER_FILL = 0.8;

/** k for `live` rows in segments of at most `maxRecords`. */
export function clusterRegionCount(live: number, maxRecords: number): number {
  return Math.min(MAX_K, Math.max(1, Math.ceil(live / (maxRecords * CLUSTER_FILL))));
}

export interface ClusterOptions {
  /** Regions to learn; default clusterRegionCount(live rows, segmentMaxRecords). */
  regions?: number;
  /** k-means seed; default the new clustering's epoch (reproducible for a given history). */
  seed?: number;
  /** Lay the most searched partitions out together, from the recent queries (default true). */
  heat?: boolean;
}

export interface ClusterCompactionResult {
  collection: string;
  /** The clustering's epoch (manifest `clustering.epoch`), undefined when nothing was done. */
  epoch: number | undefined;
  sources: string[];
  segmentIds: string[];
  /** Centroids learnt; segments per region may be more than one (`splitRegions`). */
  regions: number;
  splitRegions: number;
  /** The heat layout (recent queries given): the hot set and the segments it was packed into. */
  heat?: HeatLayout;
  records: number;
  droppedRows: number;
  /** Wall time; of it, learning + assigning (one pool task), then writing the segments (pool
   *  tasks in parallel) and committing them. */
  ms: number;
  phases: { plan: number; rewrite: number };
  /** Why nothing was done. */
  skipped?: string;
}

/** Whether a segment takes part in clustering compaction: local, unpinned, readable. */
export function clusterable(seg: SealedSegment): boolean {
  return seg.meta.tier === 'warm' && seg.meta.pinned === undefined && seg.error === undefined;
}

/** Live rows of clusterable segments, and how many of them hold no current region. */
export function unclusteredRows(cat: Pick<SegmentCatalog, 'list' | 'manifest'>): { live: number; unclustered: number } {
  let live = 0;
  let unclustered = 0;
  for (const seg of cat.list()) {
    if (!clusterable(seg)) continue;
    live += seg.live;
    if (currentRegion(cat.manifest, seg.meta) === undefined) unclustered += seg.live;
  }
  return { live, unclustered };
}

export class ClusterCompactor {
  readonly #ctx: TierContext;
  readonly #cat: SegmentCatalog;
  readonly #copies: SegmentCopies;
  readonly #compactor: Compactor;
  readonly #maxRecords: number;
  readonly #queries: QuerySample;

  constructor(ctx: TierContext, catalog: SegmentCatalog, copies: SegmentCopies, compactor: Compactor, maxRecords: number, queries: QuerySample) {
    this.#ctx = ctx;
    this.#queries = queries;
    this.#cat = catalog;
    this.#copies = copies;
    this.#compactor = compactor;
    this.#maxRecords = maxRecords;
  }

  cluster(opts: ClusterOptions = {}): Promise<ClusterCompactionResult> {
    if (opts.regions !== undefined && !(Number.isInteger(opts.regions) && opts.regions >= 1 && opts.regions <= MAX_K)) {
      throw new StratavecError('ERR_INVALID_ARGUMENT', `regions must be an integer in 1..${MAX_K}, got ${opts.regions}`);
    }
    if (opts.seed !== undefined && !Number.isInteger(opts.seed)) throw new TypeError('seed must be an integer');
    if (opts.heat !== undefined && typeof opts.heat !== 'boolean') throw new TypeError('heat must be a boolean');
    return this.#compactor.serialized(async () => {
      const t0 = performance.now();
      const planned = this.#cat.list().filter(clusterable);
      return this.#compactor.withLocks(planned, () => this.#locked(planned, opts, t0));
    });
  }

  async #locked(planned: SealedSegment[], opts: ClusterOptions, t0: number): Promise<ClusterCompactionResult> {
    const name = this.#cat.name;
    const segs = await this.#compactor.readableSources(planned);
    const result: ClusterCompactionResult = {
      collection: name, epoch: undefined, sources: segs.map((s) => s.id), segmentIds: [], regions: 0, splitRegions: 0,
      records: 0, droppedRows: 0, ms: 0, phases: { plan: 0, rewrite: 0 },
    };
    const done = () => ({ ...result, ms: performance.now() - t0 });
    if (segs.length === 0) return { ...done(), skipped: 'no local, unpinned, readable segment' };
    const sources = this.#compactor.liveRows(segs);
    const total = sources.reduce((n, s) => n + s.rows.length, 0);
    result.records = total;
    result.droppedRows = segs.reduce((n, s) => n + s.meta.records, 0) - total;
    const epoch = (this.#cat.manifest.clustering?.epoch ?? 0) + 1;
    const createdAt = this.#ctx.options.clock.now();
    if (total === 0) {
      // Every row deleted: the sources simply go (no region learnt, the clustering stays).
      await this.#compactor.rewrite(segs, []);
      return done();
    }
    const plan = await this.#ctx.pool.run('clusterPlan', {
      sources: sources.map(({ seg, rows }) => ({
        path: this.#copies.localPath(seg), rows, expectRawCrcs: seg.meta.sections.map((x) => x.rawCrc),
      })),
      dimension: this.#cat.dimension,
      k: opts.regions ?? clusterRegionCount(total, this.#maxRecords),
      maxRecords: this.#maxRecords,
      seed: opts.seed ?? epoch,
      ...(opts.heat !== false && this.#queries.size > 0 ? { queries: this.#queries.snapshot() } : {}),
    });
    const t1 = performance.now();
    result.phases.plan = t1 - t0;
    const outputs: RewriteOutput[] = plan.groups.map((g) => ({
      parts: g.rows.map((rows, s) => ({ seg: sources[s]!.seg, rows })),
      region: g.region,
    }));
    const fresh = await this.#compactor.rewrite(segs, outputs, {
      epoch, k: plan.k, centroids: encodeCentroids(plan.centroids), createdAt,
    });
    result.phases.rewrite = performance.now() - t1;
    result.epoch = epoch;
    result.segmentIds = fresh.map((s) => s.id);
    result.regions = plan.k;
    result.splitRegions = plan.splitRegions;
    if (plan.heat) result.heat = plan.heat;
    return done();
  }
}
