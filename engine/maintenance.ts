// Database-wide maintenance: the verify pass over every collection, compaction planning and
// running (clustering compaction on request, or in the background once enough rows are
// unclustered), and the background loops (a rate-limited scrub, GC and compaction on intervals). It
// finds work and schedules it; the per-segment work is done under each segment's lock by
// tiers/verify.ts and gc/compactor.ts, garbage collection by gc/garbage.ts.

import { setTimeout as sleep } from 'node:timers/promises';
import { StratavecError } from '../format/errors.js';
import type { GarbageItem } from '../gc/collector.js';
import { planCompaction, type CompactionGroup } from '../gc/compaction.js';
import type { CompactionResult } from '../gc/compactor.js';
import { clusterRegionCount, type ClusterCompactionResult } from '../gc/clustering.js';
import { GarbageCollector, type GcReport } from '../gc/garbage.js';
import type { SegmentCheck } from '../tiers/verify.js';
import type { ManifestCheck } from './segment-registry.js';
import type { CollectionCore } from './collection-core.js';
import type { EngineContext } from './context.js';
import { checkKnownKeys } from './options.js';

export type { GcReport };

export interface VerifyOptions {
  /** Fix what can be fixed (see README "Verify and repair"). Default false: report only. */
  repair?: boolean;
  /** Also download and check every remote copy. Default true. */
  remote?: boolean;
  /** Only these collections (default: all). */
  collections?: string[];
  /** Read at most this many bytes per second (local plus remote); default unlimited. */
  bytesPerSecond?: number;
  onProgress?: (p: { done: number; total: number; segmentId: string }) => void;
}


export interface VerifyReport {
  repair: boolean;
  segments: SegmentCheck[];
  manifests: ManifestCheck[];
  /** Files and objects no manifest references (what GC will collect). */
  unreferenced: GarbageItem[];
  summary: { segments: number; ok: number; repaired: number; damaged: number; unavailable: number; copies: number; bytesRead: number };
  /** False when the database started closing before every segment was checked. */
  complete: boolean;
  /** Set when the object store could not be listed: remote orphans were not looked for. */
  remoteError?: string;
  ms: number;
}

export interface GcOptions {
  /** Report what would be marked and deleted; change nothing. */
  dryRun?: boolean;
}

export interface CompactOptions {
  collections?: string[];
  /** Plan only. */
  dryRun?: boolean;
  smallFraction?: number;
  deletedRatio?: number;
  /** Clustering compaction instead (README "Clustering compaction"): every local, unpinned segment
   *  of each collection rewritten into regions of the space. */
  cluster?: boolean;
  /** With `cluster`: regions to learn (default from the live rows and segmentMaxRecords). */
  regions?: number;
  /** With `cluster`: pack the most searched partitions into segments of their own, from the
   *  collection's recent queries (default true; README "Clustering compaction"). */
  heat?: boolean;
  /** With `cluster`: bring cold unpinned segments back to warm first, so the whole collection is
   *  laid out again (local disk for all of it while it runs). Default false: local segments only. */
  includeCold?: boolean;
}

const COMPACT_KEYS = ['collections', 'dryRun', 'smallFraction', 'deletedRatio', 'cluster', 'regions', 'heat', 'includeCold'] as const;

export interface CompactReport {
  dryRun: boolean;
  plans: { collection: string; groups: CompactionGroup[] }[];
  results: CompactionResult[];
  /** With `cluster` (or in the background): per collection, its local live rows, how many were
   *  unclustered, and the regions a clustering would learn. */
  clusterPlans: { collection: string; liveRows: number; unclusteredRows: number; regions: number }[];
  clustered: ClusterCompactionResult[];
  ms: number;
}

interface LoopStats {
  runs: number;
  lastRunAt: number | undefined;
  lastError: string | undefined;
}

export interface MaintenanceDeps {
  dir: string;
  ctx: EngineContext;
  cores: () => ReadonlyMap<string, CollectionCore>;
}

export class Maintenance {
  readonly #ctx: EngineContext;
  readonly #cores: () => ReadonlyMap<string, CollectionCore>;
  readonly #garbage: GarbageCollector;
  #compactChain: Promise<unknown> = Promise.resolve();
  #stopping = false;
  readonly #timers = new Set<NodeJS.Timeout>();
  readonly #running = new Set<Promise<unknown>>();
  readonly #stats = {
    gc: { runs: 0, lastRunAt: undefined, lastError: undefined, deleted: 0, bytesFreed: 0 } as LoopStats & { deleted: number; bytesFreed: number },
    scrub: { runs: 0, lastRunAt: undefined, lastError: undefined, problems: 0, repaired: 0 } as LoopStats & { problems: number; repaired: number },
    compaction: { runs: 0, lastRunAt: undefined, lastError: undefined, merged: 0, droppedRows: 0, clustered: 0 } as LoopStats & { merged: number; droppedRows: number; clustered: number },
  };

  constructor(deps: MaintenanceDeps) {
    this.#ctx = deps.ctx;
    this.#cores = deps.cores;
    this.#garbage = new GarbageCollector({
      dir: deps.dir, ctx: deps.ctx, graceMs: () => deps.ctx.options.maintenance.gcGraceMs, subjects: deps.cores,
    });
  }

  #selected(names: string[] | undefined): CollectionCore[] {
    const cores = this.#cores();
    if (names === undefined) return [...cores.values()];
    if (!Array.isArray(names)) throw new TypeError('collections must be an array of names');
    return names.map((n) => {
      const core = cores.get(n);
      if (!core) throw new StratavecError('ERR_COLLECTION_NOT_FOUND', `collection ${String(n)} does not exist`);
      return core;
    });
  }

  // ---- verify -----------------------------------------------------------------------------

  async verify(opts: VerifyOptions = {}): Promise<VerifyReport> {
    if (typeof opts !== 'object' || opts === null) throw new TypeError('verify expects an options object');
    const repair = opts.repair === true;
    const remote = opts.remote !== false;
    const rate = opts.bytesPerSecond;
    if (rate !== undefined && !(typeof rate === 'number' && rate > 0)) throw new StratavecError('ERR_INVALID_ARGUMENT', 'bytesPerSecond must be a positive number');
    const t0 = performance.now();
    const cores = this.#selected(opts.collections);
    const work = cores.flatMap((core) => core.segments().map((s) => ({ core, id: s.id })));
    const report: VerifyReport = {
      repair, segments: [], manifests: [], unreferenced: [], complete: true, ms: 0,
      summary: { segments: 0, ok: 0, repaired: 0, damaged: 0, unavailable: 0, copies: 0, bytesRead: 0 },
    };
    for (const core of cores) report.manifests.push(await core.verifyManifest(repair));
    let done = 0;
    for (const { core, id } of work) {
      if (this.#stopping) {
        report.complete = false;
        break;
      }
      const check = await core.verifySegment(id, { repair, remote });
      done++;
      opts.onProgress?.({ done, total: work.length, segmentId: id });
      if (check.status === 'gone') continue;
      report.segments.push(check);
      const s = report.summary;
      s.segments++;
      s[check.status]++;
      s.copies += check.copies.length;
      s.bytesRead += check.copies.reduce((n, c) => n + c.bytes, 0);
      if (rate !== undefined) {
        // Pace to the budget: sleep until the bytes read so far fit in the time spent.
        const ahead = (s.bytesRead / rate) * 1000 - (performance.now() - t0);
        if (ahead > 0) await sleep(ahead, undefined, { ref: false });
      }
    }
    const scan = await this.#garbage.scan(); // database-wide, whatever `collections` says
    report.unreferenced = scan.items;
    if (scan.remoteError) report.remoteError = scan.remoteError;
    report.ms = performance.now() - t0;
    return report;
  }

  // ---- garbage collection -----------------------------------------------------------------

  /** One GC pass (gc/garbage.ts); serialised. */
  gc(opts: GcOptions = {}): Promise<GcReport> {
    if (typeof opts !== 'object' || opts === null) throw new TypeError('gc expects an options object');
    checkKnownKeys('gc options', opts, ['dryRun']);
    return this.#garbage.gc({ dryRun: opts.dryRun === true });
  }

  // ---- compaction ---------------------------------------------------------------------------

  /** Plans and runs compaction; serialised, so two callers never plan the same groups. */
  compact(opts: CompactOptions = {}): Promise<CompactReport> {
    if (typeof opts !== 'object' || opts === null) throw new TypeError('compact expects an options object');
    checkKnownKeys('compact options', opts, COMPACT_KEYS);
    if (opts.cluster !== true && (opts.heat !== undefined || opts.includeCold !== undefined || opts.regions !== undefined)) {
      throw new StratavecError('ERR_INVALID_ARGUMENT', 'regions, heat and includeCold are options of compact({ cluster: true })');
    }
    const run = () => this.#compact(opts);
    const p = this.#compactChain.then(run, run);
    this.#compactChain = p.catch(() => undefined);
    return p;
  }

  async #compact(opts: CompactOptions, background = false): Promise<CompactReport> {
    const t0 = performance.now();
    const cluster = opts.cluster === true;
    if (opts.cluster !== undefined && typeof opts.cluster !== 'boolean') throw new TypeError('cluster must be a boolean');
    const report: CompactReport = { dryRun: opts.dryRun === true, plans: [], results: [], clusterPlans: [], clustered: [], ms: 0 };
    const m = this.#ctx.options.maintenance;
    for (const core of this.#selected(opts.collections)) {
      const { live, unclustered } = core.unclusteredRows();
      // In the background, a collection is clustered once enough of its rows are unclustered.
      const due = background && m.clusterMinUnclusteredRows > 0 && unclustered >= m.clusterMinUnclusteredRows &&
        unclustered >= m.clusterMinUnclusteredFraction * live;
      if (cluster || due) {
        report.clusterPlans.push({
          collection: core.name, liveRows: live, unclusteredRows: unclustered,
          regions: opts.regions ?? clusterRegionCount(live, this.#ctx.options.segmentMaxRecords),
        });
        if (report.dryRun || this.#stopping) continue;
        report.clustered.push(await core.cluster({
          ...(opts.regions === undefined ? {} : { regions: opts.regions }),
          ...(opts.heat === undefined ? {} : { heat: opts.heat }),
          ...(opts.includeCold === undefined ? {} : { includeCold: opts.includeCold }),
        }));
        continue;
      }
      const groups = planCompaction(core.compactionCandidates(), {
        targetRecords: this.#ctx.options.segmentMaxRecords,
        ...(opts.smallFraction === undefined ? {} : { smallFraction: opts.smallFraction }),
        ...(opts.deletedRatio === undefined ? {} : { deletedRatio: opts.deletedRatio }),
      });
      report.plans.push({ collection: core.name, groups });
      if (report.dryRun) continue;
      for (const g of groups) {
        if (this.#stopping) break;
        report.results.push(await core.compact(g.sources));
      }
    }
    report.ms = performance.now() - t0;
    return report;
  }

  // ---- background loops ---------------------------------------------------------------------

  /** Starts the loops whose interval is not 0. Each run waits for the previous one. */
  start(): void {
    const m = this.#ctx.options.maintenance;
    this.#loop(m.gcIntervalMs, this.#stats.gc, async () => {
      const r = await this.gc();
      this.#stats.gc.deleted += r.deleted;
      this.#stats.gc.bytesFreed += r.bytesFreed;
    });
    this.#loop(m.scrubIntervalMs, this.#stats.scrub, async () => {
      const r = await this.verify({ repair: true, bytesPerSecond: m.scrubBytesPerSecond });
      this.#stats.scrub.problems += r.summary.repaired + r.summary.damaged + r.summary.unavailable;
      this.#stats.scrub.repaired += r.summary.repaired;
    });
    this.#loop(m.compactIntervalMs, this.#stats.compaction, async () => {
      // The loop that uses the recent queries also saves them: a crash loses at most one interval.
      for (const core of this.#cores().values()) await core.saveRecentQueries();
      const run = () => this.#compact({}, true);
      const p = this.#compactChain.then(run, run);
      this.#compactChain = p.catch(() => undefined);
      const r = await p;
      this.#stats.compaction.merged += r.results.reduce((n, x) => n + x.sources.length, 0);
      this.#stats.compaction.droppedRows += r.results.reduce((n, x) => n + x.droppedRows, 0);
      this.#stats.compaction.clustered += r.clustered.filter((x) => x.epoch !== undefined).length;
    });
  }

  #loop(intervalMs: number, stats: LoopStats, body: () => Promise<void>): void {
    if (intervalMs <= 0) return;
    const schedule = () => {
      if (this.#stopping) return;
      const t = setTimeout(() => {
        this.#timers.delete(t);
        const run = body().then(
          () => {
            stats.lastError = undefined;
          },
          (err: unknown) => {
            stats.lastError = err instanceof Error ? err.message : String(err);
          },
        ).finally(() => {
          stats.runs++;
          stats.lastRunAt = this.#ctx.options.clock.now();
          this.#running.delete(run);
          schedule();
        });
        this.#running.add(run);
      }, intervalMs);
      t.unref();
      this.#timers.add(t);
    };
    schedule();
  }

  /** Stops the loops; a verify or compaction in progress stops between segments. */
  async stop(): Promise<void> {
    this.#stopping = true;
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    await Promise.all([...this.#running]);
    await this.#garbage.idle();
    await this.#compactChain;
  }

  stats() {
    const s = this.#stats;
    return { gc: { ...s.gc }, scrub: { ...s.scrub }, compaction: { ...s.compaction } };
  }
}

