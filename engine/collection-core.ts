// The inside of one collection: write path (WAL -> growing segment -> seal -> manifest commit),
// recovery, the id -> location map, and search across segments. It trusts its inputs: the public
// Collection class validates them. It never writes a manifest except through #commit.

import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { StratavecError } from '../format/errors.js';
import { TEMP_PREFIX, mkdirDurable } from '../format/fsutil.js';
import {
  loadLatestManifest, writeManifest, type CollectionManifest, type ManifestSegment,
} from '../format/manifest.js';
import { SectionKind } from '../format/segment.js';
import { WalWriter, readWal, encodeWalFrame, type WalOp, type WalUpsertRecord } from '../format/wal.js';
import { HnswIndex, type Metric } from '../index/hnsw.js';
import type { WorkerPool } from '../workers/pool.js';
import type { SealResult } from '../workers/seal.js';
import type { HotTier, HotSegment } from '../tiers/hot.js';
import type { WarmTier } from '../tiers/warm.js';
import { SegmentView } from '../tiers/segment-view.js';
import { GrowingSegment } from './growing.js';
import type { FilledOptions } from './options.js';
import type { Payload } from './filter.js';

export interface EngineContext {
  pool: WorkerPool;
  hot: HotTier;
  warm: WarmTier;
  tmpDir: string;
  options: FilledOptions;
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
  tier: 'hot' | 'warm' | 'cold';
  records: number;
  deleted: number;
  live: number;
  bytes: number;
  pinned: boolean;
  createdAt: number;
  status: 'ok' | 'unavailable';
}

export interface SealStats {
  seals: number;
  sealedRecords: number;
  lastBuildMs: number;
  lastWriteMs: number;
  lastSealMs: number;
}

/** A sealed, committed segment as the collection tracks it in memory. */
class SealedSegment {
  readonly meta: ManifestSegment;
  readonly tomb: Uint8Array;
  deleted = 0;
  view: SegmentView | undefined;
  error: StratavecError | undefined;

  constructor(meta: ManifestSegment) {
    this.meta = meta;
    this.tomb = new Uint8Array(meta.records);
    for (const r of meta.deleted) this.kill(r);
  }

  get id(): string {
    return this.meta.id;
  }

  get live(): number {
    return this.meta.records - this.deleted;
  }

  kill(row: number): void {
    if (this.tomb[row] === 0) {
      this.tomb[row] = 1;
      this.deleted++;
    }
  }

  deletedRows(): number[] {
    const out: number[] = [];
    for (let r = 0; r < this.tomb.length; r++) if (this.tomb[r] === 1) out.push(r);
    return out;
  }
}

type Location = { seg: GrowingSegment | SealedSegment; row: number };

interface BuiltSegment {
  meta: ManifestSegment;
  rows: Uint32Array;
  ids: string[];
  outPath: string;
  result: SealResult;
  startedAt: number;
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
    for (const meta of manifest.segments) core.#attachSegment(new SealedSegment(meta));
    await core.#replayWal();
    if (core.#growing.count >= ctx.options.segmentMaxRecords) core.#startRotation();
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
    const segDir = path.join(this.dir, 'segments');
    const known = new Set(this.#manifest.segments.map((s) => path.basename(this.#ctx.warm.pathFor(this.name, s.seq))));
    for (const name of await fsp.readdir(segDir)) {
      if (name.startsWith(TEMP_PREFIX) || (name.endsWith('.seg') && !known.has(name))) {
        await fsp.rm(path.join(segDir, name), { force: true });
      }
    }
    const mdir = CollectionCore.manifestDir(this.dir);
    for (const name of await fsp.readdir(mdir)) {
      if (name.startsWith(TEMP_PREFIX)) await fsp.rm(path.join(mdir, name), { force: true });
    }
  }

  #attachSegment(seg: SealedSegment): void {
    this.#sealed.set(seg.id, seg);
    try {
      const buf = this.#ctx.warm.map(this.#ctx.warm.pathFor(this.name, seg.meta.seq));
      const view = new SegmentView(seg.id, buf, { verify: false, expect: { dimension: this.dimension, count: seg.meta.records } });
      // The id table is what the location map is built from, so it is checked before it is trusted.
      view.reader.verifySection(SectionKind.ids);
      seg.view = view;
    } catch (err) {
      if (!(err instanceof StratavecError)) throw err;
      seg.error = err;
      return;
    }
    for (let r = 0; r < seg.meta.records; r++) {
      if (seg.tomb[r] === 0) this.#locations.set(seg.view.ids.get(r) ?? '', { seg, row: r });
    }
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
            if (built) await this.#ctx.warm.remove(built.outPath);
          }
          this.#sealError = err instanceof StratavecError ? err : new StratavecError('ERR_IO', `seal failed: ${(err as Error).message}`, { cause: err });
          throw this.#sealError;
        }
        this.#frozen.shift();
      }
    }
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
    const result = await this.#ctx.pool.run('seal', {
      segmentId: id, collection: this.name, outPath, tmpDir: this.#ctx.tmpDir,
      dimension: this.dimension, metric: this.metric, hnsw: this.#manifest.hnsw,
      vectors: g.buffer, count: g.count, rows: rows.length === g.count ? null : rows,
      ids, payloads, createdAt, seed: seq,
    });
    const meta: ManifestSegment = {
      id, seq, records: rows.length, deleted: [],
      sections: result.sections.map((s) => ({ kind: s.kind, rawLength: s.rawLength, rawCrc: s.rawCrc })),
      tier: 'warm',
      local: { bytes: result.bytes, storedCrcs: result.sections.map((s) => s.storedCrc), codecs: result.sections.map((s) => s.codec) },
      createdAt,
    };
    return { meta, rows, ids, outPath, result, startedAt: t0 };
  }

  async #commitBuilt(range: FrozenRange, built: BuiltSegment | undefined): Promise<void> {
    const g = range.seg;
    if (!built) {
      await this.#commit(range.walTo + 1);
      await this.#dropWalThrough(range.walTo);
      return;
    }
    const { rows, ids, outPath, result } = built;
    const seg = new SealedSegment(built.meta);
    const markDead = () => {
      for (let i = 0; i < rows.length; i++) if (g.isDead(rows[i]!)) seg.kill(i);
    };
    markDead();
    await this.#commit(range.walTo + 1, seg);
    // Rows may have died while the manifest was being written; those deletes are in later WAL files.
    markDead();
    this.#sealed.set(seg.id, seg);
    const buf = this.#ctx.warm.map(outPath);
    seg.view = new SegmentView(seg.id, buf, { verify: false, expect: { dimension: this.dimension, count: rows.length } });
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
  }

  /** Removes the WAL files a committed manifest no longer needs (every file up to `walTo`). */
  async #dropWalThrough(walTo: number): Promise<void> {
    const walDir = path.join(this.dir, 'wal');
    for (const name of await fsp.readdir(walDir)) {
      const m = WAL_RE.exec(name);
      if (m && Number(m[1]) <= walTo) await fsp.rm(path.join(walDir, name), { force: true });
    }
  }

  /** Commits the in-memory segment list (plus `added`) as the next manifest version. */
  #commit(walSeq: number, added?: SealedSegment): Promise<void> {
    const run = async () => {
      const segs = [...this.#sealed.values()];
      if (added) segs.push(added);
      const next: CollectionManifest = {
        ...this.#manifest,
        version: this.#manifest.version + 1,
        nextSegmentSeq: this.#nextSeq,
        walSeq,
        segments: segs.map((s) => ({ ...s.meta, deleted: s.deletedRows() })),
      };
      await writeManifest(CollectionCore.manifestDir(this.dir), next);
      this.#manifest = next;
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

  async close(): Promise<void> {
    if (this.#closed) return;
    while (this.#rotating) await this.#rotating.catch(() => undefined);
    if (this.#sealing) await this.#sealing.catch(() => undefined);
    this.#closed = true;
    await this.#wal.close();
    for (const id of this.#sealed.keys()) this.#ctx.hot.delete(id);
  }

  // ---- reads ------------------------------------------------------------------------------

  count(): number {
    return this.#locations.size;
  }

  get(ids: string[]): (StoredRecord | undefined)[] {
    return ids.map((id) => {
      const loc = this.#locations.get(id);
      if (!loc) return undefined;
      const { seg, row } = loc;
      if (seg instanceof GrowingSegment) {
        const payload = seg.payload(row);
        return payload === undefined ? { id, vector: seg.vector(row) } : { id, vector: seg.vector(row), payload: structuredClone(payload) };
      }
      const view = this.#viewOf(seg);
      const payload = view.payload(row);
      return payload === undefined ? { id, vector: view.vector(row) } : { id, vector: view.vector(row), payload };
    });
  }

  #viewOf(seg: SealedSegment): SegmentView {
    if (seg.error || !seg.view) {
      throw new StratavecError('ERR_SEGMENT_UNAVAILABLE', `segment ${seg.id} has no readable copy`, { cause: seg.error });
    }
    return seg.view;
  }

  async #hotOf(seg: SealedSegment): Promise<HotSegment> {
    const hot = this.#ctx.hot.peek(seg.id);
    if (hot) return this.#ctx.hot.get(seg.id, async () => hot); // counts the hit, refreshes recency
    const view = this.#viewOf(seg);
    return this.#ctx.hot.get(seg.id, async () => {
      // Promotion: every section is CRC-checked in a worker before the index is trusted.
      await this.#ctx.pool.run('verifySegment', { path: this.#ctx.warm.pathFor(this.name, seg.meta.seq) });
      const index = await HnswIndex.fromBytes(view.reader.raw(SectionKind.hnsw), this.dimension, this.metric, seg.meta.records, this.#ctx.tmpDir);
      return { view, index };
    });
  }

  async search(
    query: Float32Array,
    k: number,
    ef: number,
    filter: ((p: Payload | undefined) => boolean) | undefined,
    includePayload: boolean,
    exact = false,
  ): Promise<SearchHit[]> {
    type Cand = { d: number; row: number; src: GrowingSegment | SegmentView };
    const cands: Cand[] = [];
    for (const seg of this.#sealed.values()) {
      if (seg.live === 0) continue;
      // Exact search scans the mapped vectors and never needs the index (nor promotion).
      const hot = exact ? undefined : await this.#hotOf(seg);
      const view = hot ? hot.view : this.#viewOf(seg);
      const { tomb } = seg;
      const accept = filter
        ? (r: number) => tomb[r] === 0 && filter(view.payload(r))
        : seg.deleted > 0 ? (r: number) => tomb[r] === 0 : undefined;
      const res = hot ? hot.index.search(query, k, ef, accept) : view.scan(query, k, accept);
      for (let i = 0; i < res.rows.length; i++) cands.push({ d: res.distances[i]!, row: res.rows[i]!, src: view });
    }
    for (const g of [...this.#frozen.map((f) => f.seg), this.#growing]) {
      if (g.live === 0) continue;
      const res = g.search(query, k, filter ? (r) => filter(g.payload(r)) : undefined);
      for (let i = 0; i < res.rows.length; i++) cands.push({ d: res.distances[i]!, row: res.rows[i]!, src: g });
    }
    if (cands.length > k) {
      cands.sort((a, b) => a.d - b.d);
      cands.length = k;
    } else {
      cands.sort((a, b) => a.d - b.d);
    }
    return cands.map(({ d, row, src }) => {
      const id = src instanceof GrowingSegment ? src.ids[row]! : src.id_(row);
      if (!includePayload) return { id, distance: d };
      const p = src.payload(row);
      return p === undefined ? { id, distance: d } : { id, distance: d, payload: src instanceof GrowingSegment ? structuredClone(p) : p };
    });
  }

  // ---- introspection ----------------------------------------------------------------------

  segments(): SegmentInfo[] {
    return [...this.#sealed.values()].map((s) => ({
      id: s.id, collection: this.name, seq: s.meta.seq,
      tier: this.#ctx.hot.has(s.id) ? 'hot' : s.meta.tier,
      records: s.meta.records, deleted: s.deleted, live: s.live,
      bytes: s.meta.local?.bytes ?? s.meta.remote?.bytes ?? 0,
      pinned: s.meta.pinned !== undefined, createdAt: s.meta.createdAt,
      status: s.error ? 'unavailable' : 'ok',
    }));
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

  static async ensureDirs(dir: string): Promise<void> {
    await mkdirDurable(dir);
  }
}
