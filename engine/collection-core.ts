// The inside of one collection: write path (WAL -> growing segment -> seal -> manifest commit),
// recovery, the id -> location map, search across segments and tiers, and verified migration of
// its segments between tiers. It trusts its inputs: the public Collection class validates them.
// It never writes a manifest except through #commit, and never releases a copy of a segment
// before a manifest that no longer needs it is durable.

import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { StratavecError } from '../format/errors.js';
import { TEMP_PREFIX } from '../format/fsutil.js';
import { mapReadOnly } from '../format/mapped-file.js';
import {
  loadLatestManifest, writeManifest, encodeManifest, type CollectionManifest, type ManifestSegment,
} from '../format/manifest.js';
import {
  SectionKind, StringTable, encodeSegment, writeSegmentFile, SegmentReader, HEADER_SIZE, TRAILER_SIZE, Codec,
} from '../format/segment.js';
import { WalWriter, readWal, encodeWalFrame, type WalOp, type WalUpsertRecord } from '../format/wal.js';
import { HnswIndex, type Metric } from '../index/hnsw.js';
import type { WorkerPool } from '../workers/pool.js';
import type { SealResult } from '../workers/seal.js';
import { decodeSection } from '../workers/codec.js';
import type { HotTier, HotLease } from '../tiers/hot.js';
import type { WarmTier } from '../tiers/warm.js';
import type { ColdTier } from '../tiers/cold.js';
import type { AccessTracker } from '../tiers/access-stats.js';
import type { TierStats, TierName } from '../tiers/tier-stats.js';
import { remoteLocation, type LeaseSet } from '../gc/leases.js';
import { SegmentView } from '../tiers/segment-view.js';
import { GrowingSegment } from './growing.js';
import { SealedSegment } from './sealed-segment.js';
import type { FilledOptions } from './options.js';
import type { Payload } from './filter.js';

export interface EngineContext {
  pool: WorkerPool;
  hot: HotTier;
  warm: WarmTier;
  cold: ColdTier;
  access: AccessTracker;
  tierStats: TierStats;
  /** Locations garbage collection must leave alone (see gc/leases.ts). */
  leases: LeaseSet;
  tmpDir: string;
  options: FilledOptions;
  /** Tells the tiering loop that local usage grew (a seal, a rehydration). */
  nudgeTiering: () => void;
}

export type Tier = TierName;

export interface MoveResult {
  segmentId: string;
  from: Tier;
  to: Tier;
  /** Logical bytes of the segment moved (0 when nothing moved). */
  bytes: number;
  ms: number;
}

export interface SearchHit {
  id: string;
  distance: number;
  payload?: Payload;
}

export interface StoredRecord {
  id: string;
  vector: Float32Array;
  payload?: Payload;
}

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
}

/** One copy of a segment as verify found it. */
export interface CopyCheck {
  copy: 'local' | 'stub' | 'remote';
  /** A path relative to the database directory, or the object key. */
  location: string;
  /** absent: no remote copy was made yet (its upload is queued, failed, or was cut by a close):
   *  not damage, but the local file is the only copy; repair uploads one. */
  status: 'ok' | 'missing' | 'corrupt' | 'unreachable' | 'absent';
  detail?: string;
  /** What repair did about it. */
  action?: 'refetched' | 'reuploaded' | 'uploaded' | 'rebuilt' | 'quarantined';
  /** Bytes read to check it. */
  bytes: number;
}

export interface SegmentCheck {
  segmentId: string;
  collection: string;
  tier: Tier;
  /** ok: every copy checked is good; repaired: it was not, and now is; damaged: a copy is bad and
   *  was not (or could not be) repaired, but the segment is still served from a good one;
   *  unavailable: no good copy, reads fail with ERR_SEGMENT_UNAVAILABLE; gone: compacted away
   *  while verify ran. */
  status: 'ok' | 'repaired' | 'damaged' | 'unavailable' | 'gone';
  copies: CopyCheck[];
}

export interface CompactionResult {
  collection: string;
  sources: string[];
  /** The new segment, or undefined when every source row was deleted. */
  segmentId: string | undefined;
  records: number;
  droppedRows: number;
  ms: number;
  /** Why nothing was done: the planned sources changed (moved, compacted, became unreadable). */
  skipped?: string;
}

export interface SealStats {
  seals: number;
  sealedRecords: number;
  lastBuildMs: number;
  lastWriteMs: number;
  lastSealMs: number;
}

type Location = { seg: GrowingSegment | SealedSegment; row: number };
type Candidate = { d: number; row: number; src: GrowingSegment | SegmentView };

interface BuiltSegment {
  meta: ManifestSegment;
  rows: Uint32Array;
  ids: string[];
  outPath: string;
  result: SealResult;
  startedAt: number;
  /** Drops the GC lease on outPath (once the file is committed or removed). */
  release: () => void;
}

interface FrozenRange {
  seg: GrowingSegment;
  /** WAL files [walFrom, walTo] hold exactly the ops applied to `seg`. */
  walFrom: number;
  walTo: number;
}

const WAL_RE = /^(\d{12})\.wal$/;
const walName = (seq: number) => `${String(seq).padStart(12, '0')}.wal`;

export class CollectionCore {
  readonly name: string;
  readonly dir: string;
  readonly dimension: number;
  readonly metric: Metric;
  readonly #ctx: EngineContext;
  #manifest: CollectionManifest;
  readonly #sealed = new Map<string, SealedSegment>(); // insertion order = seq order
  readonly #locations = new Map<string, Location>();
  #growing: GrowingSegment;
  #growingWalFrom: number;
  #frozen: FrozenRange[] = [];
  #wal!: WalWriter;
  #walSeq: number;
  #nextSeq: number;
  /** Rows appended to the current WAL range, counted at append time (rotation trigger). */
  #planned = 0;
  #rotating: Promise<void> | undefined;
  #sealing: Promise<void> | undefined;
  #sealError: StratavecError | undefined;
  #commitChain: Promise<unknown> = Promise.resolve();
  #closed = false;
  readonly sealStats: SealStats = { seals: 0, sealedRecords: 0, lastBuildMs: 0, lastWriteMs: 0, lastSealMs: 0 };

  private constructor(ctx: EngineContext, dir: string, manifest: CollectionManifest) {
    this.#ctx = ctx;
    this.dir = dir;
    this.name = manifest.collection;
    this.dimension = manifest.dimension;
    this.metric = manifest.metric;
    this.#manifest = manifest;
    this.#walSeq = manifest.walSeq;
    this.#growingWalFrom = manifest.walSeq;
    this.#nextSeq = manifest.nextSegmentSeq;
    this.#growing = this.#newGrowing();
  }

  static manifestDir(dir: string): string {
    return path.join(dir, 'manifest');
  }

  /** Writes the directory of a new collection; the caller renames it into place. */
  static async initialize(dir: string, manifest: CollectionManifest): Promise<void> {
    await fsp.mkdir(path.join(dir, 'segments'), { recursive: true });
    await fsp.mkdir(path.join(dir, 'wal'), { recursive: true });
    await fsp.mkdir(CollectionCore.manifestDir(dir), { recursive: true });
    await writeManifest(CollectionCore.manifestDir(dir), manifest);
  }

  /** Opens a collection: last manifest, map segments, replay the WAL over them, drop leftovers. */
  static async open(ctx: EngineContext, dir: string): Promise<CollectionCore> {
    const manifest = await loadLatestManifest(CollectionCore.manifestDir(dir));
    if (!manifest) throw new StratavecError('ERR_MANIFEST_CORRUPT', `collection at ${path.basename(dir)} has no manifest`);
    const core = new CollectionCore(ctx, dir, manifest);
    await core.#removeLeftovers();
    for (const meta of manifest.segments) await core.#attachSegment(new SealedSegment(meta));
    await core.#replayWal();
    if (core.#growing.count >= ctx.options.segmentMaxRecords) core.#startRotation();
    // Write-through promises every sealed segment a remote copy. One whose upload never happened
    // (close() drops queued uploads, a crash, a failed upload, or a database last opened with
    // uploadOnSeal off) gets it now rather than at its demotion or the next scrub.
    if (ctx.options.uploadOnSeal) {
      for (const seg of core.#sealed.values()) {
        if (seg.meta.tier === 'warm' && seg.meta.remote === undefined && seg.error === undefined) core.#scheduleUpload(seg);
      }
    }
    return core;
  }

  #newGrowing(): GrowingSegment {
    return new GrowingSegment(this.dimension, this.metric, this.#ctx.options.segmentMaxRecords + 1024);
  }

  #walPath(seq: number): string {
    return path.join(this.dir, 'wal', walName(seq));
  }

  async #removeLeftovers(): Promise<void> {
    // We hold the directory lock, so nothing here can be in use: temp files from a crashed write,
    // and segment files a crashed seal wrote but never committed.
    // A warm segment keeps its file, a cold one its id stub; anything else is a leftover (e.g. the
    // local file of a segment whose move to cold committed just before a crash).
    const segDir = path.join(this.dir, 'segments');
    const known = new Set(this.#manifest.segments.map((s) => path.basename(
      s.tier === 'warm' ? this.#ctx.warm.pathFor(this.name, s.seq) : this.#stubPath(s.seq))));
    for (const name of await fsp.readdir(segDir)) {
      if (!known.has(name)) await fsp.rm(path.join(segDir, name), { force: true });
    }
    const mdir = CollectionCore.manifestDir(this.dir);
    for (const name of await fsp.readdir(mdir)) {
      if (name.startsWith(TEMP_PREFIX)) await fsp.rm(path.join(mdir, name), { force: true });
    }
  }

  async #attachSegment(seg: SealedSegment): Promise<void> {
    this.#sealed.set(seg.id, seg);
    let ids: StringTable;
    try {
      if (seg.meta.tier === 'warm') {
        const view = this.#mapView(seg);
        // The id table is what the location map is built from, so it is checked before it is trusted.
        view.reader.verifySection(SectionKind.ids);
        seg.view = view;
        ids = view.ids;
      } else {
        ids = await this.#loadStub(seg);
        seg.coldIds = ids;
      }
    } catch (err) {
      if (!(err instanceof StratavecError)) throw err;
      seg.error = err;
      return;
    }
    this.#index(seg, ids);
  }

  /**
   * Puts a segment's live rows into the id -> location map. At open the manifest guarantees an id
   * is live in one segment at most; a segment indexed later (revived after it was unreadable) may
   * hold ids written again since, and those newer records win.
   */
  #index(seg: SealedSegment, ids: StringTable): void {
    for (let r = 0; r < seg.meta.records; r++) {
      if (seg.tomb[r] !== 0) continue;
      const id = ids.get(r) ?? '';
      if (this.#locations.has(id)) seg.kill(r);
      else this.#locations.set(id, { seg, row: r });
    }
    seg.indexed = true;
  }

  #mapView(seg: SealedSegment): SegmentView {
    const buf = this.#ctx.warm.map(this.#ctx.warm.pathFor(this.name, seg.meta.seq));
    return new SegmentView(seg.id, buf, { verify: false, expect: { dimension: this.dimension, count: seg.meta.records } });
  }

  async #replayWal(): Promise<void> {
    const walDir = path.join(this.dir, 'wal');
    const seqs: number[] = [];
    for (const name of await fsp.readdir(walDir)) {
      const m = WAL_RE.exec(name);
      if (!m) {
        if (name.startsWith(TEMP_PREFIX)) await fsp.rm(path.join(walDir, name), { force: true });
        continue;
      }
      const seq = Number(m[1]);
      // Files before the manifest's walSeq are covered by committed segments.
      if (seq < this.#manifest.walSeq) await fsp.rm(path.join(walDir, name), { force: true });
      else seqs.push(seq);
    }
    seqs.sort((a, b) => a - b);
    for (const seq of seqs) {
      const file = this.#walPath(seq);
      const { ops, validBytes, tornBytes } = await readWal(file, this.dimension);
      for (const op of ops) this.#apply(op);
      if (tornBytes > 0) {
        // An unacknowledged write torn by a crash: drop it so appends continue on a clean frame.
        const w = await WalWriter.open(file);
        await w.truncateTo(validBytes);
        await w.close();
      }
    }
    this.#walSeq = seqs.at(-1) ?? this.#manifest.walSeq;
    this.#growingWalFrom = seqs[0] ?? this.#manifest.walSeq;
    this.#planned = this.#growing.count;
    this.#wal = await WalWriter.open(this.#walPath(this.#walSeq));
  }

  // ---- write path -------------------------------------------------------------------------

  #apply(op: WalOp): void {
    if (op.type === 'upsert') {
      for (const rec of op.records) {
        this.#kill(rec.id);
        const row = this.#growing.append(rec.id, rec.vector, rec.payloadJson);
        this.#locations.set(rec.id, { seg: this.#growing, row });
      }
    } else {
      for (const id of op.ids) this.#kill(id);
    }
  }

  #kill(id: string): void {
    const loc = this.#locations.get(id);
    if (!loc) return;
    loc.seg.kill(loc.row);
    this.#locations.delete(id);
  }

  checkOpen(): void {
    if (this.#closed) throw new StratavecError('ERR_DATABASE_CLOSED', `collection ${this.name} is closed`);
  }

  async upsert(records: WalUpsertRecord[]): Promise<void> {
    const frame = encodeWalFrame({ type: 'upsert', records }, this.dimension);
    await this.#append(frame, { type: 'upsert', records }, records.length);
  }

  async delete(ids: string[]): Promise<void> {
    const frame = encodeWalFrame({ type: 'delete', ids }, this.dimension);
    await this.#append(frame, { type: 'delete', ids }, 0);
  }

  async #append(frame: Buffer, op: WalOp, rows: number): Promise<void> {
    while (this.#rotating) await this.#rotating;
    this.checkOpen();
    this.#planned += rows;
    const durable = this.#wal.append(frame, () => this.#apply(op));
    if (this.#planned >= this.#ctx.options.segmentMaxRecords) this.#startRotation();
    await durable;
  }

  #startRotation(): void {
    if (this.#rotating) return;
    this.#rotating = this.#rotate().finally(() => {
      this.#rotating = undefined;
    });
    // A failed rotation is reported to the writers waiting on it; keep the rejection handled here.
    this.#rotating.catch(() => undefined);
  }

  /**
   * Freezes the growing segment at a WAL file boundary: the old WAL file is closed (all its frames
   * durable and applied), a new one is started, and the frozen rows are queued for sealing.
   */
  async #rotate(): Promise<void> {
    await this.#wal.close();
    const next = this.#walSeq + 1;
    let writer: WalWriter;
    try {
      writer = await WalWriter.open(this.#walPath(next));
    } catch (err) {
      // Could not start a new file (disk full?): keep appending to the current one.
      this.#wal = await WalWriter.open(this.#walPath(this.#walSeq));
      throw err;
    }
    this.#frozen.push({ seg: this.#growing, walFrom: this.#growingWalFrom, walTo: this.#walSeq });
    this.#wal = writer;
    this.#walSeq = next;
    this.#growingWalFrom = next;
    this.#growing = this.#newGrowing();
    this.#planned = 0;
    this.#kickSeals();
  }

  #kickSeals(): void {
    if (this.#sealing) return;
    this.#sealing = this.#drainSeals().finally(() => {
      this.#sealing = undefined;
    });
    this.#sealing.catch(() => undefined); // kept in #sealError and reported by flush()
  }

  /**
   * Seals frozen ranges: index builds run side by side (one per pool thread), commits happen
   * strictly in WAL order. A failure stops the queue, so a later range is never committed over
   * an earlier one whose WAL must still be replayed.
   */
  async #drainSeals(): Promise<void> {
    this.#sealError = undefined;
    while (this.#frozen.length > 0 && !this.#closed) {
      const batch = this.#frozen.slice(0, Math.max(1, this.#ctx.pool.threads));
      const builds = batch.map((range) => this.#build(range));
      for (const b of builds) b.catch(() => undefined); // each is awaited below, in order
      for (let i = 0; i < batch.length; i++) {
        try {
          await this.#commitBuilt(batch[i]!, await builds[i]!);
        } catch (err) {
          // Builds after the failed one are not committed: remove the files they wrote.
          for (const b of builds.slice(i + 1)) {
            const built = await b.catch(() => undefined);
            if (built) {
              await this.#ctx.warm.remove(built.outPath);
              built.release();
            }
          }
          this.#sealError = err instanceof StratavecError ? err : new StratavecError('ERR_IO', `seal failed: ${(err as Error).message}`, { cause: err });
          throw this.#sealError;
        }
      }
    }
  }

  /** Drops a committed range from the frozen list; see #commitBuilt for why this is synchronous. */
  #unfreeze(range: FrozenRange): void {
    const i = this.#frozen.indexOf(range);
    if (i >= 0) this.#frozen.splice(i, 1);
  }

  /** Builds the segment file of a frozen range in the pool; commits nothing. */
  async #build(range: FrozenRange): Promise<BuiltSegment | undefined> {
    const g = range.seg;
    const t0 = performance.now();
    const rows = g.liveRows();
    if (rows.length === 0) return undefined;
    const seq = this.#nextSeq++;
    const id = `${this.name}.${seq}`;
    const ids = Array.from(rows, (r) => g.ids[r]!);
    const payloads = Array.from(rows, (r) => g.payloadJson[r]!);
    const createdAt = this.#ctx.options.clock.now();
    const outPath = this.#ctx.warm.pathFor(this.name, seq);
    const release = this.#ctx.leases.hold([outPath]);
    let result: SealResult;
    try {
      result = await this.#ctx.pool.run('seal', {
        segmentId: id, collection: this.name, outPath, tmpDir: this.#ctx.tmpDir,
        dimension: this.dimension, metric: this.metric, hnsw: this.#manifest.hnsw,
        vectors: g.buffer, count: g.count, rows: rows.length === g.count ? null : rows,
        ids, payloads, createdAt, seed: seq,
      });
    } catch (err) {
      release();
      throw err;
    }
    const meta: ManifestSegment = {
      id, seq, records: rows.length, deleted: [],
      sections: result.sections.map((s) => ({ kind: s.kind, rawLength: s.rawLength, rawCrc: s.rawCrc })),
      tier: 'warm',
      local: { bytes: result.bytes, storedCrcs: result.sections.map((s) => s.storedCrc), codecs: result.sections.map((s) => s.codec) },
      createdAt,
    };
    return { meta, rows, ids, outPath, result, startedAt: t0, release };
  }

  async #commitBuilt(range: FrozenRange, built: BuiltSegment | undefined): Promise<void> {
    const g = range.seg;
    if (!built) {
      await this.#commit({ walSeq: range.walTo + 1 });
      this.#unfreeze(range);
      await this.#dropWalThrough(range.walTo);
      return;
    }
    const { rows, ids, result } = built;
    const seg = new SealedSegment(built.meta);
    const markDead = () => {
      for (let i = 0; i < rows.length; i++) if (g.isDead(rows[i]!)) seg.kill(i);
    };
    try {
      await this.#commit({ walSeq: range.walTo + 1, added: [seg], prepare: markDead });
    } finally {
      built.release(); // committed (referenced now) or about to be removed by the caller
    }
    // Rows may have died while the manifest was being written; those deletes are in later WAL files.
    markDead();
    // Publishing the sealed segment and retiring the frozen rows happen in one synchronous step:
    // a search interleaved with this commit must see the rows exactly once, never in both.
    this.#sealed.set(seg.id, seg);
    this.#unfreeze(range);
    seg.view = this.#mapView(seg);
    seg.verified = true; // written by the seal task from memory this process holds
    seg.indexed = true;
    for (let i = 0; i < rows.length; i++) {
      const loc = this.#locations.get(ids[i]!);
      if (loc && loc.seg === g && loc.row === rows[i]) this.#locations.set(ids[i]!, { seg, row: i });
    }
    await this.#dropWalThrough(range.walTo);
    const s = this.sealStats;
    s.seals++;
    s.sealedRecords += rows.length;
    s.lastBuildMs = result.buildMs;
    s.lastWriteMs = result.writeMs;
    s.lastSealMs = performance.now() - built.startedAt;
    if (this.#ctx.options.uploadOnSeal) this.#scheduleUpload(seg);
    this.#ctx.nudgeTiering();
  }

  /** Removes the WAL files a committed manifest no longer needs (every file up to `walTo`). */
  async #dropWalThrough(walTo: number): Promise<void> {
    const walDir = path.join(this.dir, 'wal');
    for (const name of await fsp.readdir(walDir)) {
      const m = WAL_RE.exec(name);
      if (m && Number(m[1]) <= walTo) await fsp.rm(path.join(walDir, name), { force: true });
    }
  }

  /**
   * Commits the in-memory segment list as the next manifest version, with `added` appended and
   * `replace` substituted for the entry of the same id, `removed` left out; `walSeq` defaults to
   * the current one.
   * In-memory `meta` is updated only after the manifest is durable.
   */
  #commit(change: {
    walSeq?: number;
    added?: SealedSegment[];
    /** Segment ids the new version no longer lists (replaced by compaction). */
    removed?: ReadonlySet<string>;
    replace?: ManifestSegment;
    /** Runs in commit order right before the version is built (e.g. to copy tombstones over). */
    prepare?: () => void;
  }): Promise<void> {
    const run = async () => {
      change.prepare?.();
      const segs = [...this.#sealed.values()].filter((s) => !change.removed?.has(s.id));
      if (change.added) segs.push(...change.added);
      const next: CollectionManifest = {
        ...this.#manifest,
        version: this.#manifest.version + 1,
        nextSegmentSeq: this.#nextSeq,
        walSeq: change.walSeq ?? this.#manifest.walSeq,
        segments: segs.map((s) => ({ ...(change.replace?.id === s.id ? change.replace : s.meta), deleted: s.deletedRows() })),
      };
      await writeManifest(CollectionCore.manifestDir(this.dir), next);
      this.#manifest = next;
      if (change.replace) {
        const seg = this.#sealed.get(change.replace.id);
        if (seg) seg.meta = change.replace;
      }
    };
    const p = this.#commitChain.then(run, run);
    this.#commitChain = p.catch(() => undefined);
    return p;
  }

  /** Seals whatever is growing now and waits until every frozen range is committed. */
  async flush(): Promise<void> {
    while (this.#rotating) await this.#rotating;
    if (this.#growing.count > 0) {
      this.#startRotation();
      await this.#rotating;
    }
    if (this.#frozen.length > 0) this.#kickSeals();
    if (this.#sealing) await this.#sealing;
    if (this.#sealError) throw this.#sealError;
  }

  /** Waits for the write-through uploads queued so far. */
  async drainUploads(): Promise<void> {
    await this.#uploads;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    while (this.#rotating) await this.#rotating.catch(() => undefined);
    if (this.#sealing) await this.#sealing.catch(() => undefined);
    this.#closed = true;
    await this.#uploads;
    await Promise.all([...this.#sealed.values()].map((s) => s.busy));
    await this.#wal.close();
    for (const id of this.#sealed.keys()) this.#ctx.hot.delete(id);
  }

  // ---- reads ------------------------------------------------------------------------------

  count(): number {
    return this.#locations.size;
  }

  async get(ids: string[]): Promise<(StoredRecord | undefined)[]> {
    // A record in a cold segment is read by rehydrating its segment, as a search would.
    const sealed = new Set<SealedSegment>();
    for (const id of ids) {
      const loc = this.#locations.get(id);
      if (loc && loc.seg instanceof SealedSegment) sealed.add(loc.seg);
    }
    // Awaiting one segment can let a migration move another; re-check until all are readable at once.
    for (let attempt = 0; ; attempt++) {
      for (const seg of sealed) await this.#readable(seg);
      if ([...sealed].every((seg) => seg.view) || attempt === 3) break;
    }
    return ids.map((id) => {
      const loc = this.#locations.get(id);
      if (!loc) return undefined;
      const { seg, row } = loc;
      if (seg instanceof GrowingSegment) {
        const payload = seg.payload(row);
        return payload === undefined ? { id, vector: seg.vector(row) } : { id, vector: seg.vector(row), payload: structuredClone(payload) };
      }
      const view = this.#viewOf(seg);
      this.#ctx.access.record(seg.id, this.#ctx.hot.has(seg.id) ? 'hot' : 'warm');
      const payload = view.payload(row);
      return payload === undefined ? { id, vector: view.vector(row) } : { id, vector: view.vector(row), payload };
    });
  }

  #viewOf(seg: SealedSegment): SegmentView {
    if (seg.error) throw new StratavecError('ERR_SEGMENT_UNAVAILABLE', `segment ${seg.id} has no readable copy: ${seg.error.message}`, { cause: seg.error });
    if (!seg.view) throw new StratavecError('ERR_SEGMENT_UNAVAILABLE', `segment ${seg.id} is cold and was not rehydrated`);
    return seg.view;
  }

  /**
   * Makes a segment's local copy safe to read: rehydrated if cold, and every section CRC-checked
   * (once per mapping, in a worker) before any of its bytes are served. A local copy that fails
   * is quarantined and replaced from the remote copy when there is one; otherwise the segment is
   * marked unavailable and every read of it fails with ERR_SEGMENT_UNAVAILABLE.
   */
  async #readable(seg: SealedSegment, locked = false): Promise<SegmentView> {
    // A demotion may land while we await; the view captured after the last await stays valid
    // (the mapping outlives the unlink), so a read that got one can finish on it.
    for (let attempt = 0; attempt < 3; attempt++) {
      if (!seg.view && !seg.error) await (locked ? this.#rehydrate(seg) : this.#rehydrateShared(seg));
      if (seg.verified !== true) await this.#verifyOnce(seg, locked);
      if (seg.view && seg.verified === true) return seg.view;
    }
    return this.#viewOf(seg);
  }

  /** `locked`: the caller already runs inside seg.exclusive (a migration), so repair runs inline. */
  #verifyOnce(seg: SealedSegment, locked: boolean): Promise<void> {
    if (seg.verified === true) return Promise.resolve();
    seg.verified ??= this.#verifyLocal(seg, locked).then(
      () => {
        seg.verified = true;
      },
      (err: unknown) => {
        seg.verified = undefined;
        throw err;
      },
    );
    return seg.verified;
  }

  async #verifyLocal(seg: SealedSegment, locked: boolean): Promise<void> {
    this.#viewOf(seg);
    const { fault } = await this.#inspectFile(seg, this.#ctx.warm.pathFor(this.name, seg.meta.seq));
    if (fault) await (locked ? this.#repairLocal(seg, fault) : seg.exclusive(() => this.#repairLocal(seg, fault)));
  }

  /**
   * CRC-checks a local segment file (or, with `kinds`, a stub holding only those sections) in a
   * worker, and holds its sections' raw CRC32s against the manifest's. Resolves the bytes read
   * and, when the file is bad or missing, the ERR_SEGMENT_CORRUPT / ERR_SEGMENT_NOT_FOUND that
   * says so; any other failure (I/O, the pool) rejects.
   */
  async #inspectFile(seg: SealedSegment, file: string, kinds?: readonly number[]): Promise<{ bytes: number; fault?: StratavecError }> {
    const want = kinds ? seg.meta.sections.filter((x) => kinds.includes(x.kind)) : seg.meta.sections;
    try {
      const r = await this.#ctx.pool.run('verifySegment', { path: file });
      if (r.kinds.length !== want.length || want.some((x, i) => r.kinds[i] !== x.kind || r.rawCrcs[i] !== x.rawCrc)) {
        return { bytes: r.bytes, fault: new StratavecError('ERR_SEGMENT_CORRUPT', `segment ${seg.id}: ${path.basename(file)}'s sections differ from the manifest`) };
      }
      return { bytes: r.bytes };
    } catch (err) {
      if (err instanceof StratavecError && (err.code === 'ERR_SEGMENT_CORRUPT' || err.code === 'ERR_SEGMENT_NOT_FOUND')) return { bytes: 0, fault: err };
      throw err;
    }
  }

  /** A bad local copy: move it to quarantine/ and fetch a verified one from the object store. */
  async #repairLocal(seg: SealedSegment, cause: StratavecError): Promise<void> {
    this.#ctx.hot.delete(seg.id);
    seg.view = undefined;
    const file = this.#ctx.warm.pathFor(this.name, seg.meta.seq);
    const qdir = path.join(this.dir, 'quarantine');
    await fsp.mkdir(qdir, { recursive: true });
    await fsp.rename(file, path.join(qdir, `${path.basename(file)}-${Date.now()}`)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
    this.#ctx.tierStats.repairs++;
    if (!seg.meta.remote) {
      seg.error = cause;
      throw new StratavecError('ERR_SEGMENT_UNAVAILABLE', `segment ${seg.id}: local copy is bad and there is no remote copy: ${cause.message}`, { cause });
    }
    try {
      const remote = seg.meta.remote;
      const down = await this.#ctx.leases.with([file], () => this.#ctx.cold.download(remote, file, seg.meta.sections.map((x) => x.rawCrc)));
      this.#ctx.tierStats.migrated('cold->warm', down.rawBytes, down.bytes);
    } catch (err) {
      seg.error = err instanceof StratavecError ? err : cause;
      throw new StratavecError('ERR_SEGMENT_UNAVAILABLE', `segment ${seg.id}: local copy is bad and the remote copy could not be fetched`, { cause: err });
    }
    seg.view = this.#mapView(seg);
  }

  #leaseHot(seg: SealedSegment, view: SegmentView): Promise<HotLease> {
    return this.#ctx.hot.lease(seg.id, async () => {
      const t0 = performance.now();
      const index = await HnswIndex.fromBytes(view.reader.raw(SectionKind.hnsw), this.dimension, this.metric, seg.meta.records, this.#ctx.tmpDir);
      this.#ctx.tierStats.promoted(performance.now() - t0);
      this.#ctx.tierStats.migrated('warm->hot', view.size);
      return { view, index };
    });
  }

  /**
   * How a warm segment answers: small segments, and segments too big for the whole hot budget,
   * are scanned exactly over the mapping; the rest are promoted (their index loaded into hot).
   */
  #warmMode(seg: SealedSegment): 'scan' | 'promote' {
    if (seg.meta.records <= this.#ctx.options.warmScanMaxRecords) return 'scan';
    if ((seg.meta.local?.bytes ?? 0) * 2 > this.#ctx.options.hotBytes) return 'scan';
    return 'promote';
  }

  async search(
    query: Float32Array,
    k: number,
    ef: number,
    filter: ((p: Payload | undefined) => boolean) | undefined,
    includePayload: boolean,
    exact = false,
    tiers: ReadonlySet<Tier> = ALL_TIERS,
  ): Promise<SearchHit[]> {
    const cands: Candidate[] = [];
    // One snapshot of every source, taken synchronously: a seal or compaction committing while
    // this search awaits cannot make it see a row twice (the replaced segment and its
    // replacement) or not at all. Replaced segments stay readable (their mapping outlives the
    // unlink) and GC leaves their files alone while `readers` holds them.
    const sealed = [...this.#sealed.values()];
    const growing = [...this.#frozen.map((f) => f.seg), this.#growing];
    for (const seg of sealed) seg.enter();
    try {
      await this.#searchSealed(sealed, cands, query, k, ef, filter, exact, tiers);
    } finally {
      for (const seg of sealed) seg.leave();
    }
    for (const g of growing) {
      if (g.live === 0) continue;
      const res = g.search(query, k, filter ? (r) => filter(g.payload(r)) : undefined);
      for (let i = 0; i < res.rows.length; i++) cands.push({ d: res.distances[i]!, row: res.rows[i]!, src: g });
    }
    cands.sort((a, b) => a.d - b.d);
    if (cands.length > k) cands.length = k;
    return cands.map(({ d, row, src }) => {
      const id = src instanceof GrowingSegment ? src.ids[row]! : src.idAt(row);
      if (!includePayload) return { id, distance: d };
      const p = src.payload(row);
      return p === undefined ? { id, distance: d } : { id, distance: d, payload: src instanceof GrowingSegment ? structuredClone(p) : p };
    });
  }

  async #searchSealed(
    sealed: SealedSegment[],
    cands: Candidate[],
    query: Float32Array,
    k: number,
    ef: number,
    filter: ((p: Payload | undefined) => boolean) | undefined,
    exact: boolean,
    tiers: ReadonlySet<Tier>,
  ): Promise<void> {
    const { hot, access, tierStats } = this.#ctx;
    for (const seg of sealed) {
      if (seg.live === 0) continue;
      const tier = this.#tierOf(seg);
      if (!tiers.has(tier)) continue;
      if (tier === 'cold') tierStats.coldReads++;
      const readable = await this.#readable(seg);
      const mode = exact ? 'scan' : hot.has(seg.id) ? 'hnsw' : this.#warmMode(seg) === 'scan' ? 'scan' : 'hnsw';
      // Exact search scans the mapped vectors and never needs the index (nor promotion).
      const lease = mode === 'hnsw' ? await this.#leaseHot(seg, readable) : undefined;
      try {
        const view = lease ? lease.segment.view : readable;
        access.record(seg.id, tier);
        const { tomb } = seg;
        const accept = filter
          ? (r: number) => tomb[r] === 0 && filter(view.payload(r))
          : seg.deleted > 0 ? (r: number) => tomb[r] === 0 : undefined;
        let res;
        if (lease) {
          res = lease.segment.index.search(query, k, ef, accept);
        } else {
          tierStats.warmScans++;
          res = view.scan(query, k, accept);
        }
        for (let i = 0; i < res.rows.length; i++) cands.push({ d: res.distances[i]!, row: res.rows[i]!, src: view });
      } finally {
        lease?.release();
      }
    }
  }

  // ---- tiers and migration ----------------------------------------------------------------
  // Every move copies first, verifies the copy's CRC32s against the manifest, commits a manifest
  // naming the new home, and only then releases the source. A failure at any step leaves the
  // segment readable where it was; a crash between steps leaves an unreferenced copy that the
  // next open removes.

  #tierOf(seg: SealedSegment): Tier {
    if (seg.meta.tier === 'cold') return 'cold';
    return this.#ctx.hot.has(seg.id) ? 'hot' : 'warm';
  }

  #stubPath(seq: number): string {
    return path.join(this.dir, 'segments', `${String(seq).padStart(8, '0')}.stub`);
  }

  #segment(id: string): SealedSegment {
    const seg = this.#sealed.get(id);
    if (!seg) throw new StratavecError('ERR_SEGMENT_NOT_FOUND', `segment ${id} does not exist in collection ${this.name}`);
    return seg;
  }

  hasSegment(id: string): boolean {
    return this.#sealed.has(id);
  }

  /** Moves one segment to `to`, verified at every step (see the section comment). */
  migrate(id: string, to: Tier): Promise<MoveResult> {
    if (to !== 'hot' && to !== 'warm' && to !== 'cold') throw new StratavecError('ERR_INVALID_ARGUMENT', `tier must be hot, warm or cold, got ${String(to)}`);
    const seg = this.#segment(id);
    return seg.exclusive(async () => {
      this.checkOpen();
      if (!this.#sealed.has(id)) throw new StratavecError('ERR_SEGMENT_NOT_FOUND', `segment ${id} no longer exists`);
      if (seg.error) throw new StratavecError('ERR_SEGMENT_UNAVAILABLE', `segment ${id} has no readable copy`, { cause: seg.error });
      const from = this.#tierOf(seg);
      const t0 = performance.now();
      const done = (bytes: number): MoveResult => ({ segmentId: id, from, to, bytes, ms: performance.now() - t0 });
      if (from === to) return done(0);
      const bytes = seg.rawBytes;
      try {
        if (to === 'cold') {
          this.#ctx.hot.delete(id);
          await this.#demoteToCold(seg);
        } else {
          if (from === 'cold') await this.#rehydrate(seg);
          if (to === 'hot') {
            (await this.#leaseHot(seg, await this.#readable(seg, true))).release();
            if (seg.meta.pinned === 'hot') this.#ctx.hot.pin(id);
          } else {
            this.#ctx.hot.delete(id);
          }
        }
      } catch (err) {
        this.#ctx.tierStats.migrationFailures++;
        throw err;
      }
      if (to !== 'hot' && from !== 'cold' && to !== 'cold') this.#ctx.tierStats.migrated(`${from}->${to}`, 0);
      return done(bytes);
    });
  }

  /** Pins a segment to a tier (moving it there now); the policy never moves a pinned segment. */
  async pin(id: string, tier: Tier): Promise<MoveResult> {
    const seg = this.#segment(id);
    await seg.exclusive(() => this.#commit({ replace: { ...seg.meta, pinned: tier } }));
    const res = await this.migrate(id, tier);
    if (tier === 'hot') this.#ctx.hot.pin(id);
    return res;
  }

  async unpin(id: string): Promise<void> {
    const seg = this.#segment(id);
    await seg.exclusive(async () => {
      if (seg.meta.pinned === undefined) return;
      const { pinned: _dropped, ...rest } = seg.meta;
      await this.#commit({ replace: rest });
      this.#ctx.hot.unpin(id);
    });
  }

  #uploads: Promise<void> = Promise.resolve();

  /** Queues a write-through upload; failures are counted in stats and retried by a later demotion. */
  #scheduleUpload(seg: SealedSegment): void {
    this.#uploads = this.#uploads.then(() => seg.exclusive(async () => {
      if (this.#closed || !this.#sealed.has(seg.id) || seg.meta.remote || seg.meta.tier !== 'warm') return;
      await this.#ensureRemote(seg);
    })).catch((err: unknown) => {
      this.#ctx.tierStats.uploadFailures++;
      this.#ctx.tierStats.lastRemoteError = err instanceof Error ? err.message : String(err);
    });
  }

  /**
   * Makes sure a verified remote copy exists and is recorded in the manifest. `force` uploads
   * again even when the recorded copy looks present (verify found it corrupt).
   */
  async #ensureRemote(seg: SealedSegment, force = false): Promise<void> {
    const { cold, tierStats } = this.#ctx;
    const remote = seg.meta.remote;
    if (remote && !force) {
      const info = await cold.store.head(remote.key);
      if (info && info.size === remote.bytes) return;
      // The recorded copy vanished or changed size: upload again from the local copy.
    }
    const local = this.#ctx.warm.pathFor(this.name, seg.meta.seq);
    const key = cold.segmentKey(this.name, seg.id);
    await this.#ctx.leases.with([remoteLocation(key)], async () => {
      const up = await cold.upload(local, key, seg.meta.sections.map((x) => x.rawCrc));
      await this.#commit({ replace: { ...seg.meta, remote: { key, bytes: up.bytes, storedCrcs: up.storedCrcs, codecs: up.codecs } } });
      tierStats.bytesTransferred += up.bytes;
    });
    tierStats.uploads++;
    await this.#uploadManifest();
  }

  /** Best effort: the remote manifest is for other readers; the local one is the authority here. */
  async #uploadManifest(): Promise<void> {
    const m = this.#manifest;
    try {
      await this.#ctx.cold.store.put(this.#ctx.cold.manifestKey(this.name, m.version), encodeManifest(m));
    } catch (err) {
      this.#ctx.tierStats.lastRemoteError = `manifest v${m.version}: ${(err as Error).message}`;
    }
  }

  async #demoteToCold(seg: SealedSegment): Promise<void> {
    // The stub is cut from the local copy: it must be a verified one (verify may have just
    // withdrawn its trust), repaired from the remote copy first if need be.
    const view = await this.#readable(seg, true);
    await this.#ensureRemote(seg);
    const local = seg.meta.local;
    const { local: _gone, ...rest } = seg.meta;
    await this.#ctx.leases.with([this.#stubPath(seg.meta.seq)], async () => {
      await this.#writeStub(seg, STUB_KINDS.map((kind) => view.reader.raw(kind)));
      await this.#commit({ replace: { ...rest, tier: 'cold' } });
    });
    seg.coldIds = view.ids;
    seg.verified = undefined;
    seg.view = undefined; // the mapping is released when the last reader drops it; unlink is safe
    await this.#ctx.warm.remove(this.#ctx.warm.pathFor(this.name, seg.meta.seq));
    this.#ctx.tierStats.migrated('warm->cold', local?.bytes ?? 0, 0);
  }

  /** Writes the id stub of a segment about to go cold: meta, ids and the id lookup, raw. */
  async #writeStub(seg: SealedSegment, sections: Uint8Array[]): Promise<void> {
    const enc = encodeSegment({ dimension: this.dimension, metric: this.metric, count: seg.meta.records },
      STUB_KINDS.map((kind, i) => ({ kind, data: sections[i]! })));
    const want = seg.meta.sections.filter((x) => STUB_KINDS.includes(x.kind));
    if (enc.sections.some((e, i) => e.rawCrc !== want[i]?.rawCrc)) {
      throw new StratavecError('ERR_SEGMENT_CORRUPT', `segment ${seg.id}: the id stub's sections differ from the manifest`);
    }
    await writeSegmentFile(this.#stubPath(seg.meta.seq), enc);
  }

  /**
   * The ids of a cold segment from its local stub; a missing or corrupt stub is rebuilt from the
   * remote copy's ids section (two ranged GETs for the table, one for the section).
   */
  async #loadStub(seg: SealedSegment): Promise<StringTable> {
    const file = this.#stubPath(seg.meta.seq);
    try {
      const { fault } = await this.#inspectFile(seg, file, STUB_KINDS); // CRCs checked in a worker
      if (!fault) return StringTable.open(SegmentReader.open(mapReadOnly(file, { minSize: HEADER_SIZE + TRAILER_SIZE })).raw(SectionKind.ids), seg.meta.records);
    } catch (err) {
      if (!(err instanceof StratavecError)) throw err;
    }
    const remote = seg.meta.remote;
    if (!remote) throw new StratavecError('ERR_SEGMENT_UNAVAILABLE', `cold segment ${seg.id} has no remote copy recorded`);
    const table = await this.#ctx.cold.readTable(remote.key, remote.bytes);
    const raw = async (kind: number) => {
      const e = table.find((x) => x.kind === kind);
      if (!e) throw new StratavecError('ERR_SEGMENT_CORRUPT', `remote copy ${remote.key} has no section ${kind}`);
      const stored = await this.#ctx.cold.readSection(remote.key, e);
      return Buffer.from(e.codec === Codec.none ? stored : decodeSection(stored, e.codec, e.rawLength));
    };
    const sections: Buffer[] = [];
    for (const kind of STUB_KINDS) sections.push(await raw(kind));
    await this.#writeStub(seg, sections); // checked against the manifest before it is written
    return StringTable.open(sections[0]!, seg.meta.records);
  }

  /** Shares one rehydration among every reader that needs the segment. */
  #rehydrateShared(seg: SealedSegment): Promise<void> {
    if (seg.view) return Promise.resolve();
    if (seg.error) return Promise.reject(new StratavecError('ERR_SEGMENT_UNAVAILABLE', `segment ${seg.id} has no readable copy`, { cause: seg.error }));
    seg.rehydrating ??= seg.exclusive(async () => {
      if (!seg.view) await this.#rehydrate(seg);
    }).finally(() => {
      seg.rehydrating = undefined;
    });
    return seg.rehydrating;
  }

  async #rehydrate(seg: SealedSegment): Promise<void> {
    const remote = seg.meta.remote;
    if (!remote) throw new StratavecError('ERR_SEGMENT_UNAVAILABLE', `cold segment ${seg.id} has no remote copy recorded`);
    const dest = this.#ctx.warm.pathFor(this.name, seg.meta.seq);
    const down = await this.#ctx.leases.with([dest], async () => {
      const d = await this.#ctx.cold.download(remote, dest, seg.meta.sections.map((x) => x.rawCrc));
      const local = { bytes: d.rawBytes, storedCrcs: d.sections.map((x) => x.storedCrc), codecs: d.sections.map((x) => x.codec) };
      try {
        await this.#commit({ replace: { ...seg.meta, tier: 'warm', local } });
      } catch (err) {
        await this.#ctx.warm.remove(dest);
        throw err;
      }
      return d;
    });
    seg.view = this.#mapView(seg);
    seg.verified = true; // decodeColdCopy checked every stored and raw CRC32
    seg.coldIds = undefined;
    await fsp.rm(this.#stubPath(seg.meta.seq), { force: true });
    this.#ctx.tierStats.rehydrated(down.ms);
    this.#ctx.tierStats.migrated('cold->warm', down.rawBytes, down.bytes);
  }


  // ---- maintenance: verify, repair, compaction, GC references ----------------------------

  /**
   * Checks every copy of one segment against the manifest's CRC32s: the local file (or a cold
   * segment's id stub) and, with `remote`, the object-store copy. With `repair`: a bad local copy
   * is quarantined and re-fetched from a good remote one; a bad or missing remote copy is
   * re-uploaded from a good local one; a segment with no good copy is marked unavailable; an
   * unavailable segment whose copies are good again (restored by an operator) comes back.
   * Without `repair`, a bad local copy is still no longer trusted: the next read re-checks it.
   */
  verifySegment(id: string, opts: { repair: boolean; remote: boolean }): Promise<SegmentCheck> {
    const seg = this.#sealed.get(id);
    const check: SegmentCheck = { segmentId: id, collection: this.name, tier: 'warm', status: 'gone', copies: [] };
    if (!seg) return Promise.resolve(check);
    return seg.exclusive(async () => {
      if (!this.#sealed.has(id) || this.#closed) return check;
      check.tier = this.#tierOf(seg);
      const warm = seg.meta.tier === 'warm';
      const local = await this.#checkFile(seg, warm ? 'local' : 'stub');
      check.copies.push(local);
      const wantRemote = opts.remote && (seg.meta.remote !== undefined || (warm && this.#ctx.options.uploadOnSeal));
      const remote = wantRemote ? await this.#checkRemote(seg) : undefined;
      if (remote) check.copies.push(remote);
      if (warm && isBad(local)) {
        seg.verified = undefined; // the next read re-checks (and repairs) before serving a byte
        this.#ctx.hot.delete(seg.id);
      }
      if (opts.repair) await this.#repairCopies(seg, local, remote);
      const bad = check.copies.filter(isBad);
      const noGoodCopy = warm ? isBad(local) && (remote === undefined || isBad(remote)) && local.action !== 'refetched' : remote !== undefined && isBad(remote);
      if (seg.error || (noGoodCopy && !opts.repair)) check.status = 'unavailable';
      else if (bad.length === 0) check.status = 'ok';
      else check.status = bad.every((c) => c.action !== undefined && c.action !== 'quarantined') ? 'repaired' : 'damaged';
      return check;
    });
  }

  #relative(file: string): string {
    return path.relative(path.dirname(this.#ctx.warm.root), file);
  }

  /** The local copy of a warm segment (`local`) or a cold segment's id stub, as verify reports it. */
  async #checkFile(seg: SealedSegment, copy: 'local' | 'stub'): Promise<CopyCheck> {
    const file = copy === 'local' ? this.#ctx.warm.pathFor(this.name, seg.meta.seq) : this.#stubPath(seg.meta.seq);
    const out: CopyCheck = { copy, location: this.#relative(file), status: 'ok', bytes: 0 };
    try {
      const { bytes, fault } = await this.#inspectFile(seg, file, copy === 'stub' ? STUB_KINDS : undefined);
      out.bytes = bytes;
      if (fault) {
        out.status = fault.code === 'ERR_SEGMENT_NOT_FOUND' ? 'missing' : 'corrupt';
        out.detail = fault.message;
      }
    } catch (err) {
      if (!(err instanceof StratavecError)) throw err;
      out.status = 'unreachable'; // an I/O or pool failure: the file may be fine
      out.detail = err.message;
    }
    return out;
  }

  async #checkRemote(seg: SealedSegment): Promise<CopyCheck> {
    const remote = seg.meta.remote;
    const key = remote?.key ?? this.#ctx.cold.segmentKey(this.name, seg.id);
    const out: CopyCheck = { copy: 'remote', location: key, status: 'ok', bytes: 0 };
    if (!remote) {
      out.status = 'absent';
      out.detail = 'no remote copy yet';
      return out;
    }
    try {
      out.bytes = (await this.#ctx.cold.verify(remote, seg.meta.sections.map((x) => x.rawCrc))).bytes;
    } catch (err) {
      if (!(err instanceof StratavecError)) throw err;
      out.status = err.code === 'ERR_OBJECT_NOT_FOUND' ? 'missing' : err.code === 'ERR_SEGMENT_CORRUPT' ? 'corrupt' : 'unreachable';
      out.detail = err.message;
    }
    return out;
  }

  /** Runs inside seg.exclusive. Each repair is verified by the code that makes it. */
  async #repairCopies(seg: SealedSegment, local: CopyCheck, remote: CopyCheck | undefined): Promise<void> {
    const warm = seg.meta.tier === 'warm';
    if (warm && isBad(local)) {
      const cause = new StratavecError('ERR_SEGMENT_CORRUPT', `segment ${seg.id}: local copy ${local.status}: ${local.detail ?? ''}`);
      try {
        await this.#repairLocal(seg, cause); // quarantine, then download + verify, or mark unavailable
        local.action = 'refetched';
        seg.verified = true;
      } catch (err) {
        if (!(err instanceof StratavecError)) throw err;
        local.action = 'quarantined';
        local.detail = err.message;
      }
    }
    const localGood = warm && (local.status === 'ok' || local.action === 'refetched');
    if (remote && (isBad(remote) || remote.status === 'absent')) {
      if (localGood) {
        try {
          await this.#ensureRemote(seg, true);
          remote.action = remote.status === 'absent' ? 'uploaded' : 'reuploaded';
        } catch (err) {
          if (!(err instanceof StratavecError)) throw err;
          remote.detail = `re-upload failed: ${err.message}`;
        }
      } else if (!warm) {
        seg.error = new StratavecError('ERR_SEGMENT_CORRUPT', `cold segment ${seg.id}: remote copy ${remote.status}: ${remote.detail ?? ''}`);
      }
    }
    const remoteGood = remote?.status === 'ok' || remote?.action === 'reuploaded' || remote?.action === 'uploaded';
    if (!warm && isBad(local) && !seg.error && (remote === undefined || remoteGood)) {
      try {
        seg.coldIds = await this.#loadStub(seg); // rebuilt from the remote copy's ids section
        local.action = 'rebuilt';
      } catch (err) {
        if (!(err instanceof StratavecError)) throw err;
        local.detail = `rebuild failed: ${err.message}`;
      }
    }
    // An operator restored a copy: an unavailable segment whose copies now check out comes back.
    if (seg.error && (warm ? localGood : remoteGood && (local.status === 'ok' || local.action === 'rebuilt'))) {
      await this.#revive(seg);
    }
  }

  async #revive(seg: SealedSegment): Promise<void> {
    let ids: StringTable;
    if (seg.meta.tier === 'warm') {
      seg.view ??= this.#mapView(seg);
      seg.verified = true;
      ids = seg.view.ids;
    } else {
      ids = seg.coldIds ?? (await this.#loadStub(seg));
      seg.coldIds = ids;
    }
    seg.error = undefined;
    if (!seg.indexed) {
      this.#index(seg, ids);
      // Rows found superseded while indexing are tombstones now; make them durable.
      await this.#commit({});
    }
  }

  /**
   * Checks the newest manifest file on disk against the one in memory (the authority while the
   * collection is open); with `repair`, a bad or missing file is replaced by writing the
   * in-memory version again as the next version.
   */
  async verifyManifest(repair: boolean): Promise<{ collection: string; version: number; status: 'ok' | 'corrupt' | 'repaired'; detail?: string }> {
    const want = encodeManifest(this.#manifest);
    let detail: string | undefined;
    try {
      const m = await loadLatestManifest(CollectionCore.manifestDir(this.dir));
      if (!m) detail = 'no manifest file';
      else if (!encodeManifest(m).equals(want)) detail = `newest file is version ${m.version}, differs from the one in use (v${this.#manifest.version})`;
    } catch (err) {
      if (!(err instanceof StratavecError)) throw err;
      detail = err.message;
    }
    const version = this.#manifest.version;
    if (detail === undefined) return { collection: this.name, version, status: 'ok' };
    if (!repair) return { collection: this.name, version, status: 'corrupt', detail };
    await this.#commit({});
    return { collection: this.name, version: this.#manifest.version, status: 'repaired', detail };
  }

  /** What compaction planning needs to know of each segment. */
  compactionCandidates() {
    return [...this.#sealed.values()].map((s) => ({
      id: s.id, seq: s.meta.seq, records: s.meta.records, live: s.live,
      tier: this.#tierOf(s), pinned: s.meta.pinned !== undefined, available: !s.error,
    }));
  }

  #compacting: Promise<unknown> = Promise.resolve();

  /**
   * Merges the live rows of `ids` (local, readable segments) into one new segment built in a
   * worker, and commits a manifest that lists it instead of them. Rows deleted or overwritten
   * while it runs are carried over as tombstones (by the same two-step rule as a seal). The
   * replaced segments become garbage: GC deletes their files and objects after its grace
   * period, once no search still reads them.
   */
  compact(ids: string[]): Promise<CompactionResult> {
    const run = () => this.#compact(ids);
    const p = this.#compacting.then(run, run); // one compaction at a time per collection
    this.#compacting = p.catch(() => undefined);
    return p;
  }

  async #compact(ids: string[]): Promise<CompactionResult> {
    this.checkOpen();
    const t0 = performance.now();
    const segs = ids.map((id) => this.#segment(id)).sort((a, b) => a.meta.seq - b.meta.seq);
    if (new Set(segs).size !== segs.length) throw new StratavecError('ERR_INVALID_ARGUMENT', 'compaction sources repeat a segment');
    // Every source is locked (in seq order: the only multi-segment lock, so no cycle) for the
    // whole rewrite, so no migration moves a source from under it.
    const locked = segs.reduceRight<() => Promise<CompactionResult>>(
      (inner, seg) => () => seg.exclusive(inner),
      () => this.#compactLocked(segs, t0),
    );
    return locked();
  }

  async #compactLocked(planned: SealedSegment[], t0: number): Promise<CompactionResult> {
    this.checkOpen();
    // The plan was made before the locks were taken: a source may have been moved to cold,
    // compacted by someone else, or found unreadable since. Merge what is still mergeable.
    const segs: SealedSegment[] = [];
    for (const seg of planned) {
      if (!this.#sealed.has(seg.id) || seg.meta.tier !== 'warm' || seg.error) continue;
      try {
        await this.#readable(seg, true); // CRC-checked (and repaired if need be) before it is merged
        segs.push(seg);
      } catch (err) {
        if (!(err instanceof StratavecError)) throw err;
      }
    }
    if (segs.length === 0 || (segs.length === 1 && segs[0]!.deleted === 0 && planned.length > 1)) {
      return {
        collection: this.name, sources: planned.map((s) => s.id), segmentId: undefined, records: 0, droppedRows: 0,
        ms: performance.now() - t0, skipped: 'the planned sources moved, were compacted or became unreadable meanwhile',
      };
    }
    const sources = segs.map((seg) => {
      const rows: number[] = [];
      for (let r = 0; r < seg.meta.records; r++) if (seg.tomb[r] === 0) rows.push(r);
      return { seg, rows: Uint32Array.from(rows) };
    });
    const total = sources.reduce((n, s) => n + s.rows.length, 0);
    const records = segs.reduce((n, s) => n + s.meta.records, 0);
    const removed = new Set(segs.map((s) => s.id));
    let added: SealedSegment | undefined;
    let release = () => {};
    if (total > 0) {
      const seq = this.#nextSeq++;
      const id = `${this.name}.${seq}`;
      const outPath = this.#ctx.warm.pathFor(this.name, seq);
      const createdAt = this.#ctx.options.clock.now();
      release = this.#ctx.leases.hold([outPath]);
      try {
        const result = await this.#ctx.pool.run('compact', {
          segmentId: id, collection: this.name, outPath, tmpDir: this.#ctx.tmpDir,
          dimension: this.dimension, metric: this.metric, hnsw: this.#manifest.hnsw,
          sources: sources.map(({ seg, rows }) => ({
            path: this.#ctx.warm.pathFor(this.name, seg.meta.seq), rows, expectRawCrcs: seg.meta.sections.map((x) => x.rawCrc),
          })),
          createdAt, seed: seq,
        });
        added = new SealedSegment({
          id, seq, records: total, deleted: [],
          sections: result.sections.map((x) => ({ kind: x.kind, rawLength: x.rawLength, rawCrc: x.rawCrc })),
          tier: 'warm',
          local: { bytes: result.bytes, storedCrcs: result.sections.map((x) => x.storedCrc), codecs: result.sections.map((x) => x.codec) },
          createdAt,
        });
      } catch (err) {
        release();
        await this.#ctx.warm.remove(outPath);
        throw err;
      }
    }
    const fresh = added;
    // Source rows killed since the snapshot (deletes, overwrites) are tombstones in the new segment.
    const markDead = () => {
      if (!fresh) return;
      let i = 0;
      for (const { seg, rows } of sources) {
        for (const r of rows) {
          if (seg.tomb[r] !== 0) fresh.kill(i);
          i++;
        }
      }
    };
    try {
      await this.#commit({ removed, added: fresh ? [fresh] : [], prepare: markDead });
    } catch (err) {
      if (fresh) await this.#ctx.warm.remove(this.#ctx.warm.pathFor(this.name, fresh.meta.seq));
      throw err;
    } finally {
      release();
    }
    markDead();
    // The swap is synchronous: a search snapshot holds either the sources or the new segment.
    for (const { seg } of sources) this.#sealed.delete(seg.id);
    if (fresh) {
      this.#sealed.set(fresh.id, fresh);
      fresh.view = this.#mapView(fresh);
      fresh.verified = true; // written by the compaction task from CRC-checked sources
      fresh.indexed = true;
      let i = 0;
      for (const { seg, rows } of sources) {
        for (const r of rows) {
          const id = fresh.view.idAt(i);
          const loc = this.#locations.get(id);
          if (loc && loc.seg === seg && loc.row === r) this.#locations.set(id, { seg: fresh, row: i });
          i++;
        }
      }
    }
    for (const { seg } of sources) this.#retire(seg);
    if (fresh && this.#ctx.options.uploadOnSeal) this.#scheduleUpload(fresh);
    return {
      collection: this.name, sources: segs.map((s) => s.id), segmentId: fresh?.id, records: total,
      droppedRows: records - total, ms: performance.now() - t0,
    };
  }

  /** A segment compaction replaced: out of every map; its files stay leased while read. */
  #retire(seg: SealedSegment): void {
    this.#ctx.hot.delete(seg.id);
    this.#ctx.access.forget(seg.id);
    const locations = [this.#ctx.warm.pathFor(this.name, seg.meta.seq)];
    if (seg.meta.remote) locations.push(remoteLocation(seg.meta.remote.key));
    for (const l of locations) this.#replaced.add(l);
    if (seg.readers > 0) seg.onIdle = this.#ctx.leases.hold(locations);
  }

  /** Locations of segments compaction replaced in this process (to tell GC's reasons apart). */
  readonly #replaced = new Set<string>();

  /**
   * Every location the current manifest references: local segment files and stubs (absolute
   * paths) and remote copies (remoteLocation(key)); the remote manifest of the newest version.
   */
  references(): { local: Set<string>; remote: Set<string>; replaced: ReadonlySet<string>; manifestVersion: number } {
    const local = new Set<string>();
    const remote = new Set<string>();
    for (const s of this.#sealed.values()) {
      local.add(s.meta.tier === 'warm' ? this.#ctx.warm.pathFor(this.name, s.meta.seq) : this.#stubPath(s.meta.seq));
      if (s.meta.remote) remote.add(s.meta.remote.key);
    }
    return { local, remote, replaced: this.#replaced, manifestVersion: this.#manifest.version };
  }

  /** GC deleted a replaced segment's location: stop remembering it. */
  forgetReplaced(location: string): void {
    this.#replaced.delete(location);
  }

  // ---- introspection ----------------------------------------------------------------------

  segments(): SegmentInfo[] {
    return [...this.#sealed.values()].map((s) => ({
      id: s.id, collection: this.name, seq: s.meta.seq,
      tier: this.#tierOf(s),
      records: s.meta.records, deleted: s.deleted, live: s.live,
      bytes: s.rawBytes,
      remoteBytes: s.meta.remote?.bytes,
      pinned: s.meta.pinned, createdAt: s.meta.createdAt,
      status: s.error ? 'unavailable' : 'ok',
    }));
  }

  /** What the tiering policy needs to know of each segment. */
  segmentStates() {
    return [...this.#sealed.values()].map((s) => ({
      seg: s,
      tier: this.#tierOf(s),
      hotBytesEstimate: this.#ctx.hot.bytesOf(s.id) ?? this.#hotEstimate(s),
    }));
  }

  /** Memory a segment would take when hot: the mapped file plus hnswlib's graph (index/hnsw.ts). */
  #hotEstimate(s: SealedSegment): number {
    const M = this.#manifest.hnsw.M;
    return s.rawBytes + s.meta.records * (4 * this.dimension + 8 * M + 124) + 2.6 * 1024 * 1024;
  }

  stats() {
    return {
      records: this.count(),
      segments: this.#sealed.size,
      growing: { rows: this.#growing.count, live: this.#growing.live, bytes: this.#growing.memoryBytes },
      sealing: this.#frozen.length,
      manifestVersion: this.#manifest.version,
      walSeq: this.#walSeq,
      seal: { ...this.sealStats },
      lastSealError: this.#sealError?.message,
    };
  }

  get manifest(): Readonly<CollectionManifest> {
    return this.#manifest;
  }
}

/** Missing or corrupt: a copy to repair. Unreachable says nothing about the copy itself. */
const isBad = (c: CopyCheck) => c.status === 'missing' || c.status === 'corrupt';

/** The sections a cold segment's id stub holds, in file order. */
const STUB_KINDS: readonly number[] = [SectionKind.ids, SectionKind.idLookup];

const ALL_TIERS: ReadonlySet<Tier> = new Set<Tier>(['hot', 'warm', 'cold']);
