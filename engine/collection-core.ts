// The inside of one collection, wired from its rooms: the segment registry (manifest, segments,
// id map), recovery, the write path, the read path, and the tier code (copies, verify, migrator)
// and compaction that act on its segments. It trusts its inputs: the public Collection class
// validates them. It holds no logic of its own beyond lifecycle and introspection.

import * as path from 'node:path';
import { StratavecError, readOnlyError } from '../format/errors.js';
import type { Tier } from '../format/manifest.js';
import type { WalUpsertRecord } from '../format/wal.js';
import type { Metric } from '../format/segment.js';
import { SegmentCopies } from '../tiers/copies.js';
import { CopyVerifier, type SegmentCheck } from '../tiers/verify.js';
import { Migrator, type MoveResult } from '../tiers/migrator.js';
import { SealedSegment } from '../tiers/sealed-segment.js';
import { Compactor, type CompactionResult } from '../gc/compactor.js';
import { QUERY_SAMPLE_FILE, QuerySample } from '../tiers/query-sample.js';
import { ClusterCompactor, unclusteredRows, type ClusterOptions, type ClusterCompactionResult } from '../gc/clustering.js';
import { currentRegion, loadLatestManifest, type CollectionManifest } from '../format/manifest.js';
import { ReferenceSet, type CollectionReferences } from '../gc/references.js';
import type { CompactionCandidate } from '../gc/compaction.js';
import type { EngineContext } from './context.js';
import type { PayloadIndexes } from '../format/payload-schema.js';
import { SegmentRegistry, followedManifest, type ManifestCheck } from './segment-registry.js';
import { WritePath } from './write-path.js';
import { ReadPath, type ExplainResult, type SearchHit, type SearchRequest, type StoredRecord } from './read-path.js';
import { recoverCollection } from './recovery.js';
import { describeCopies, type SegmentCopiesDetail } from '../tiers/segment-detail.js';
import type { AccessSnapshot } from '../tiers/access-stats.js';

export interface SegmentInfo {
  id: string;
  collection: string;
  seq: number;
  tier: Tier;
  records: number;
  deleted: number;
  live: number;
  /** Raw (logical) bytes of the segment file. */
  bytes: number;
  /** Bytes of the compressed remote copy, when there is one. */
  remoteBytes: number | undefined;
  pinned: Tier | undefined;
  createdAt: number;
  status: 'ok' | 'unavailable';
  /** The clustering region it holds (clustering compaction), undefined when unclustered. */
  region: number | undefined;
}

/** One segment in depth (`col.describeSegment(id)`, the CLI's `segment show`). */
export interface SegmentDetail extends SegmentInfo, SegmentCopiesDetail {
  /** The decayed access frequency (halving every `halfLifeMs`), last access and hits per tier, as
   *  this process counted them (a fresh process: zero). */
  access: AccessSnapshot & { halfLifeMs: number };
}

/** What the tiering policy needs of one segment. */
export interface SegmentTierState {
  seg: SealedSegment;
  tier: Tier;
  hotBytesEstimate: number;
}

export class CollectionCore {
  readonly #ctx: EngineContext;
  readonly #reg: SegmentRegistry;
  readonly #copies: SegmentCopies;
  readonly #verifier: CopyVerifier;
  readonly #migrator: Migrator;
  readonly #refs: ReferenceSet;
  readonly #compactor: Compactor;
  readonly #clusterer: ClusterCompactor;
  readonly #writes: WritePath;
  readonly #reads: ReadPath;
  /** Recent queries, for clustering compaction's heat layout. */
  readonly #queries: QuerySample;

  private constructor(ctx: EngineContext, reg: SegmentRegistry) {
    this.#ctx = ctx;
    this.#reg = reg;
    this.#copies = new SegmentCopies(ctx, reg);
    this.#verifier = new CopyVerifier(ctx, reg, this.#copies);
    this.#migrator = new Migrator(ctx, reg, this.#copies, this.#verifier);
    this.#refs = new ReferenceSet(ctx, reg);
    this.#compactor = new Compactor(ctx, reg, this.#copies, this.#verifier, this.#refs);
    this.#queries = new QuerySample(reg.dimension);
    this.#clusterer = new ClusterCompactor(ctx, reg, this.#copies, this.#compactor, ctx.options.segmentMaxRecords, this.#queries);
    this.#writes = new WritePath(ctx, reg, this.#copies);
    this.#reads = new ReadPath(ctx, reg, this.#verifier, this.#migrator, this.#writes, ctx.searchStats, this.#queries);
  }

  /** Writes the directory of a new collection; the caller renames it into place. */
  static initialize = SegmentRegistry.initialize;

  /** Opens a collection: last manifest, attach segments, replay the WAL over them, drop leftovers. */
  static async open(ctx: EngineContext, dir: string): Promise<CollectionCore> {
    const fence = ctx.fence;
    const name = path.basename(dir);
    const remote = fence ? { fence, key: (v: number) => ctx.cold.manifestKey(name, v) } : undefined;
    const core = new CollectionCore(ctx, await SegmentRegistry.load(dir, remote));
    await recoverCollection(core.#reg, ctx.warm, core.#verifier, core.#writes, ctx.options.readOnly);
    await core.#queries.load(path.join(dir, QUERY_SAMPLE_FILE));
    // Write-through promises every sealed segment a remote copy. One whose upload never happened
    // (close() drops queued uploads, a crash, a failed upload, or a database last opened with
    // uploadOnSeal off) gets it now rather than at its demotion or the next scrub.
    if (ctx.options.uploadOnSeal && !ctx.options.readOnly) {
      for (const seg of core.#reg.list()) {
        if (seg.meta.tier === 'warm' && seg.meta.remote === undefined && seg.error === undefined) core.#copies.scheduleUpload(seg);
      }
    }
    return core;
  }

  get name(): string {
    return this.#reg.name;
  }

  get dir(): string {
    return this.#reg.dir;
  }

  get dimension(): number {
    return this.#reg.dimension;
  }

  get metric(): Metric {
    return this.#reg.metric;
  }

  get manifest() {
    return this.#reg.manifest;
  }

  checkOpen(): void {
    this.#reg.checkOpen();
  }

  /** The bucket holds versions up to `version`: the next commit goes above it. */
  raiseVersionFloor(version: number): void {
    this.#reg.raiseVersionFloor(version);
  }

  /** Why a segment could not be attached because the object store did not answer, if one could not. */
  unreachableCause(): Error | undefined {
    return this.#reg.list().find((s) => s.error?.code === 'ERR_TIER_UNAVAILABLE')?.error;
  }

  /**
   * A read replica follows the writer's version `remote`: segments new in it are attached cold
   * (their id stubs fetched from the bucket) before anything switches; if one cannot be, the
   * replica stays on its current version and the error is the caller's. Segments no longer
   * listed leave the hot tier and their local files go (the writer's compaction or GC replaced them).
   */
  async follow(remote: CollectionManifest): Promise<void> {
    const have = new Set(this.#reg.list().map((s) => s.id));
    const added = followedManifest(undefined, remote).segments.filter((m) => !have.has(m.id)).map((m) => new SealedSegment(m));
    for (const seg of added) {
      await this.#verifier.attach(seg);
      if (seg.error) throw seg.error;
    }
    const left = await this.#reg.follow(remote, added, (seg) => seg.view?.ids ?? seg.coldIds);
    for (const seg of left) {
      this.#ctx.hot.delete(seg.id);
      this.#ctx.access.forget(seg.id);
      // Unlinking a mapped file is safe: a search still reading it keeps its pages.
      await this.#ctx.warm.remove(this.#copies.localPath(seg));
      await this.#ctx.warm.remove(this.#copies.stubPath(seg));
    }
  }

  /** Commits the current state as a new version (to publish it to the bucket). */
  republish(): Promise<void> {
    this.#writable('publishing a manifest version');
    return this.#reg.commit({});
  }

  /** Every mutating entry point starts here: a read-only open refuses with ERR_READ_ONLY. */
  #writable(what: string): void {
    if (this.#ctx.options.readOnly) throw readOnlyError(what);
  }

  // ---- writes and reads -------------------------------------------------------------------

  upsert(records: WalUpsertRecord[]): Promise<void> {
    if (this.#ctx.options.readOnly) return Promise.reject(readOnlyError('upsert'));
    return this.#writes.upsert(records);
  }

  delete(ids: string[]): Promise<void> {
    if (this.#ctx.options.readOnly) return Promise.reject(readOnlyError('delete'));
    return this.#writes.delete(ids);
  }

  /** Seals whatever is growing now and waits until every frozen range is committed. */
  flush(): Promise<void> {
    if (this.#ctx.options.readOnly) return Promise.reject(readOnlyError('flush'));
    return this.#writes.flush();
  }

  get(ids: string[]): Promise<(StoredRecord | undefined)[]> {
    return this.#reads.get(ids);
  }

  search(req: SearchRequest): Promise<SearchHit[]> {
    return this.#reads.search(req);
  }

  explain(req: SearchRequest): Promise<ExplainResult> {
    return this.#reads.explain(req);
  }

  count(): number {
    return this.#reg.count;
  }

  // ---- tiers ------------------------------------------------------------------------------

  hasSegment(id: string): boolean {
    return this.#reg.has(id);
  }

  migrate(id: string, to: Tier): Promise<MoveResult> {
    if (this.#ctx.options.readOnly) return Promise.reject(readOnlyError('migrate'));
    return this.#migrator.migrate(id, to);
  }

  pin(id: string, tier: Tier): Promise<MoveResult> {
    if (this.#ctx.options.readOnly) return Promise.reject(readOnlyError('pin'));
    return this.#migrator.pin(id, tier);
  }

  unpin(id: string): Promise<void> {
    if (this.#ctx.options.readOnly) return Promise.reject(readOnlyError('unpin'));
    return this.#migrator.unpin(id);
  }

  /** Waits for the write-through uploads queued so far. */
  drainUploads(): Promise<void> {
    return this.#copies.drainUploads();
  }

  // ---- maintenance ------------------------------------------------------------------------

  verifySegment(id: string, opts: { repair: boolean; remote: boolean }): Promise<SegmentCheck> {
    if (opts.repair && this.#ctx.options.readOnly) return Promise.reject(readOnlyError('verify with repair'));
    return this.#verifier.verifySegment(id, () => this.#migrator.tierOf(this.#reg.require(id)), opts);
  }

  async verifyManifest(repair: boolean): Promise<ManifestCheck> {
    if (!this.#ctx.options.readOnly) return this.#reg.verifyManifest(repair);
    if (repair) throw readOnlyError('verify with repair');
    const check = await this.#reg.verifyManifest(false);
    if (check.status === 'ok') return check;
    // Beside a running writer the newest file may be a version committed after this open: that
    // is the writer moving on, not damage, as long as that file is itself sound.
    const newest = await loadLatestManifest(SegmentRegistry.manifestDir(this.#reg.dir)).catch(() => undefined);
    if (newest && newest.version > this.#reg.manifest.version) {
      return { ...check, status: 'ok', detail: `read-only view of v${check.version}; the writer has committed v${newest.version} since` };
    }
    return check;
  }

  /**
   * Declares a payload index and builds it into every local segment in the pool (a rewrite of
   * each segment that lacks it); segments sealed from now on carry it. Returns the segments
   * rewritten.
   */
  async createIndex(indexes: PayloadIndexes): Promise<string[]> {
    this.#writable('createIndex');
    await this.#reg.commit({ indexes: { ...(this.#reg.manifest.indexes ?? {}), ...indexes } });
    return this.#compactor.reindex();
  }

  compact(ids: string[]): Promise<CompactionResult> {
    if (this.#ctx.options.readOnly) return Promise.reject(readOnlyError('compact'));
    return this.#compactor.compact(ids);
  }

  /**
   * Clustering compaction (gc/clustering.ts): every local segment rewritten into regions. With
   * `includeCold`, every cold unpinned segment is brought back to warm first (downloaded and
   * verified, one at a time), so the whole collection is laid out again; the policy demotes what
   * stays cold afterwards. That needs local disk for the whole collection while it runs.
   */
  async cluster(opts: ClusterOptions & { includeCold?: boolean } = {}): Promise<ClusterCompactionResult> {
    if (this.#ctx.options.readOnly) throw readOnlyError('cluster');
    const { includeCold, ...rest } = opts;
    if (includeCold !== undefined && typeof includeCold !== 'boolean') throw new TypeError('includeCold must be a boolean');
    if (includeCold) {
      for (const seg of this.#reg.list()) {
        if (seg.meta.tier !== 'cold' || seg.meta.pinned !== undefined || seg.error) continue;
        try {
          await this.#migrator.migrate(seg.id, 'warm');
        } catch (err) {
          // Compacted away meanwhile, or no readable copy: clustering goes on without it.
          const gone = err instanceof StratavecError && (err.code === 'ERR_SEGMENT_NOT_FOUND' || err.code === 'ERR_SEGMENT_UNAVAILABLE');
          if (!gone) throw err;
        }
      }
    }
    return this.#clusterer.cluster(rest);
  }

  /** Live rows of the segments clustering compaction would rewrite, and how many are unclustered. */
  unclusteredRows(): { live: number; unclustered: number } {
    return unclusteredRows(this.#reg);
  }

  /** What compaction planning needs to know of each segment. */
  compactionCandidates(): CompactionCandidate[] {
    return this.#reg.list().map((s) => {
      const region = currentRegion(this.#reg.manifest, s.meta);
      return {
        id: s.id, seq: s.meta.seq, records: s.meta.records, live: s.live,
        tier: this.#migrator.tierOf(s), pinned: s.meta.pinned !== undefined, available: !s.error,
        ...(region === undefined ? {} : { region }),
      };
    });
  }

  references(): CollectionReferences {
    return this.#refs.references();
  }

  forgetReplaced(location: string): void {
    this.#refs.forgetReplaced(location);
  }

  // ---- lifecycle and introspection --------------------------------------------------------

  async close(): Promise<void> {
    if (this.#reg.closed) return;
    await this.#writes.settle();
    this.#reg.markClosed();
    await this.#copies.drainUploads();
    await Promise.all(this.#reg.list().map((s) => s.busy));
    await this.#writes.closeWal();
    for (const s of this.#reg.list()) this.#ctx.hot.delete(s.id);
    await this.saveRecentQueries();
  }

  /**
   * Saves the recent queries if any were searched since they were loaded or saved (at close, and
   * on the background compaction loop). A hint for the next clustering compaction, not data: a
   * full disk fails nothing, and the next save tries again.
   */
  async saveRecentQueries(): Promise<void> {
    if (!this.#queries.unsaved || this.#ctx.options.readOnly) return;
    await this.#queries.save(path.join(this.dir, QUERY_SAMPLE_FILE)).catch(() => undefined);
  }

  segments(): SegmentInfo[] {
    return this.#reg.list().map((s) => ({
      id: s.id, collection: this.name, seq: s.meta.seq,
      tier: this.#migrator.tierOf(s),
      records: s.meta.records, deleted: s.deleted, live: s.live,
      bytes: s.rawBytes,
      remoteBytes: s.meta.remote?.bytes,
      pinned: s.meta.pinned, createdAt: s.meta.createdAt,
      status: s.error ? 'unavailable' : 'ok',
      region: currentRegion(this.#reg.manifest, s.meta),
    }));
  }

  async describeSegment(id: string): Promise<SegmentDetail> {
    const seg = this.#reg.require(id);
    const info = this.segments().find((s) => s.id === id)!;
    const local = path.relative(path.dirname(this.#ctx.warm.root), this.#copies.localPath(seg));
    const copies = await describeCopies(seg, this.#ctx.cold, local);
    return { ...info, ...copies, access: { ...this.#ctx.access.snapshot(id), halfLifeMs: this.#ctx.access.halfLifeMs } };
  }

  /** What the tiering policy needs to know of each segment. */
  segmentStates(): SegmentTierState[] {
    return this.#reg.list().map((s) => ({
      seg: s,
      tier: this.#migrator.tierOf(s),
      hotBytesEstimate: this.#migrator.hotBytesEstimate(s),
    }));
  }

  stats() {
    return {
      records: this.count(),
      segments: this.#reg.size,
      manifestVersion: this.#reg.manifest.version,
      /** Recent queries held for clustering compaction's heat layout (loaded at open, then searched). */
      recentQueries: this.#queries.size,
      ...this.#writes.stats(),
    };
  }
}

/** Segments and bytes per tier over `cores`: local (warm or hot; raw bytes of the mapped file)
 *  and cold (bytes of the remote copy). What a database's and a replica's stats report. */
export function tierTotals(cores: Iterable<CollectionCore>) {
  const out = { local: { segments: 0, bytes: 0 }, cold: { segments: 0, bytes: 0 } };
  for (const core of cores) {
    for (const s of core.segments()) {
      const t = s.tier === 'cold' ? out.cold : out.local;
      t.segments++;
      t.bytes += s.tier === 'cold' ? s.remoteBytes ?? 0 : s.bytes;
    }
  }
  return out;
}
