// The write path of one collection: the WAL (group-committed appends; an op is applied to the
// growing segment once durable), rotation of the growing segment at a WAL file boundary, and the
// seal pipeline (index builds in the pool side by side, commits strictly in WAL order). A WAL file
// is dropped only after a manifest version covering it is durable.

import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { StratavecError, readOnlyError } from '../format/errors.js';
import type { ManifestSegment } from '../format/manifest.js';
import { WalWriter, encodeWalFrame, type WalOp, type WalUpsertRecord } from '../format/wal.js';
import type { SealResult } from '../workers/seal.js';
import type { SegmentCopies } from '../tiers/copies.js';
import { SealedSegment } from '../tiers/sealed-segment.js';
import { GrowingSegment } from './growing.js';
import type { EngineContext } from './context.js';
import type { SegmentRegistry } from './segment-registry.js';

export const WAL_RE = /^(\d{12})\.wal$/;
const walName = (seq: number) => `${String(seq).padStart(12, '0')}.wal`;

export function walPath(collectionDir: string, seq: number): string {
  return path.join(collectionDir, 'wal', walName(seq));
}

export interface SealStats {
  seals: number;
  sealedRecords: number;
  lastBuildMs: number;
  lastWriteMs: number;
  lastSealMs: number;
}

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

export class WritePath {
  readonly #ctx: EngineContext;
  readonly #reg: SegmentRegistry;
  readonly #copies: SegmentCopies;
  #growing: GrowingSegment;
  #growingWalFrom: number;
  #frozen: FrozenRange[] = [];
  #wal: WalWriter | undefined;
  #walSeq: number;
  /** Rows appended to the current WAL range, counted at append time (rotation trigger). */
  #planned = 0;
  #rotating: Promise<void> | undefined;
  #sealing: Promise<void> | undefined;
  #sealError: StratavecError | undefined;
  #ageTimer: NodeJS.Timeout | undefined;
  readonly sealStats: SealStats = { seals: 0, sealedRecords: 0, lastBuildMs: 0, lastWriteMs: 0, lastSealMs: 0 };

  constructor(ctx: EngineContext, registry: SegmentRegistry, copies: SegmentCopies) {
    this.#ctx = ctx;
    this.#reg = registry;
    this.#copies = copies;
    this.#walSeq = registry.manifest.walSeq;
    this.#growingWalFrom = registry.manifest.walSeq;
    this.#growing = this.#newGrowing();
  }

  #newGrowing(): GrowingSegment {
    return new GrowingSegment(this.#reg.dimension, this.#reg.metric, this.#ctx.options.segmentMaxRecords + 1024);
  }

  /** Unsealed rows, frozen ranges first: one synchronous snapshot for a search. */
  growingSegments(): GrowingSegment[] {
    return [...this.#frozen.map((f) => f.seg), this.#growing];
  }

  /** Applies one durable op to the growing segment and the location map (appends and replay). */
  apply(op: WalOp): void {
    if (op.type === 'upsert') {
      for (const rec of op.records) {
        this.#reg.place(rec.id, this.#growing, this.#growing.append(rec.id, rec.vector, rec.payloadJson));
      }
    } else {
      for (const id of op.ids) this.#reg.kill(id);
    }
  }

  /** After WAL replay (recovery.ts): appends continue in file `walSeq`; `walFrom` is the first
   *  file the growing segment's rows came from. */
  async resume(walSeq: number, walFrom: number): Promise<void> {
    this.#walSeq = walSeq;
    this.#growingWalFrom = walFrom;
    this.#planned = this.#growing.count;
    // Read-only: the WAL belongs to the writer beside us; it is never opened for append here.
    if (this.#ctx.options.readOnly) return;
    this.#wal = await WalWriter.open(walPath(this.#reg.dir, walSeq));
    if (this.#growing.count >= this.#ctx.options.segmentMaxRecords) this.#startRotation();
    else if (this.#growing.count > 0) this.#armAgeSeal();
  }

  async upsert(records: WalUpsertRecord[]): Promise<void> {
    const frame = encodeWalFrame({ type: 'upsert', records }, this.#reg.dimension);
    await this.#append(frame, { type: 'upsert', records }, records.length);
  }

  async delete(ids: string[]): Promise<void> {
    const frame = encodeWalFrame({ type: 'delete', ids }, this.#reg.dimension);
    await this.#append(frame, { type: 'delete', ids }, 0);
  }

  async #append(frame: Buffer, op: WalOp, rows: number): Promise<void> {
    if (this.#ctx.options.readOnly) throw readOnlyError(op.type);
    while (this.#rotating) await this.#rotating;
    this.#reg.checkOpen();
    // A superseded writer could never commit these rows: refuse rather than acknowledge them.
    this.#ctx.fence?.check();
    this.#planned += rows;
    const durable = this.#wal!.append(frame, () => this.apply(op));
    if (this.#planned >= this.#ctx.options.segmentMaxRecords) this.#startRotation();
    else this.#armAgeSeal();
    await durable;
  }

  /**
   * maxUnsealedMs: the first write into an empty growing segment starts a timer that seals it
   * once it is that old (by the injectable clock), so the bucket trails acknowledged writes by
   * about that much. A failed seal is reported by flush() and stats, like any other.
   */
  #armAgeSeal(): void {
    const max = this.#ctx.options.maxUnsealedMs;
    if (max === 0 || this.#ageTimer || this.#reg.closed) return;
    const since = this.#ctx.options.clock.now();
    const check = () => {
      this.#ageTimer = undefined;
      if (this.#reg.closed || this.#growing.count === 0) return;
      const age = this.#ctx.options.clock.now() - since;
      if (age < max) {
        this.#ageTimer = setTimeout(check, max - age);
        this.#ageTimer.unref();
        return;
      }
      this.#startRotation();
    };
    this.#ageTimer = setTimeout(check, max);
    this.#ageTimer.unref();
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
    await this.#wal!.close();
    const next = this.#walSeq + 1;
    let writer: WalWriter;
    try {
      writer = await WalWriter.open(walPath(this.#reg.dir, next));
    } catch (err) {
      // Could not start a new file (disk full?): keep appending to the current one.
      this.#wal = await WalWriter.open(walPath(this.#reg.dir, this.#walSeq));
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
    while (this.#frozen.length > 0 && !this.#reg.closed) {
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
    const name = this.#reg.name;
    const seq = this.#reg.allocateSeq();
    const id = `${name}.${seq}`;
    const ids = Array.from(rows, (r) => g.ids[r]!);
    const payloads = Array.from(rows, (r) => g.payloadJson[r]!);
    const createdAt = this.#ctx.options.clock.now();
    const outPath = this.#ctx.warm.pathFor(name, seq);
    const release = this.#ctx.leases.hold([outPath]);
    let result: SealResult;
    try {
      result = await this.#ctx.pool.run('seal', {
        segmentId: id, collection: name, outPath, tmpDir: this.#ctx.tmpDir,
        dimension: this.#reg.dimension, metric: this.#reg.metric, hnsw: this.#reg.manifest.hnsw,
        vectors: g.buffer, count: g.count, rows: rows.length === g.count ? null : rows,
        ids, payloads, createdAt, seed: seq,
        ...(this.#reg.manifest.indexes ? { indexes: this.#reg.manifest.indexes } : {}),
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
      ...(result.summary ? { summary: result.summary } : {}),
    };
    return { meta, rows, ids, outPath, result, startedAt: t0, release };
  }

  async #commitBuilt(range: FrozenRange, built: BuiltSegment | undefined): Promise<void> {
    const g = range.seg;
    if (!built) {
      await this.#reg.commit({ walSeq: range.walTo + 1, applied: () => this.#unfreeze(range) });
      await this.#dropWalThrough(range.walTo);
      return;
    }
    const { rows, ids, result } = built;
    const seg = new SealedSegment(built.meta);
    // Rows that died since the build are tombstones: once before the version is built, once more
    // once it is durable (deletes made while it was written are in later WAL files).
    const markDead = () => {
      for (let i = 0; i < rows.length; i++) if (g.isDead(rows[i]!)) seg.kill(i);
    };
    // Publishing the sealed segment and retiring the frozen rows happen in one synchronous step:
    // a search interleaved with this commit must see the rows exactly once, never in both.
    const applied = () => {
      markDead();
      this.#unfreeze(range);
      seg.view = this.#copies.map(seg);
      seg.verified = true; // written by the seal task from memory this process holds
      seg.indexed = true;
      for (let i = 0; i < rows.length; i++) this.#reg.relocate(ids[i]!, g, rows[i]!, seg, i);
    };
    try {
      await this.#reg.commit({ walSeq: range.walTo + 1, added: [seg], prepare: markDead, applied });
    } finally {
      built.release(); // committed (referenced now) or about to be removed by the caller
    }
    await this.#dropWalThrough(range.walTo);
    const s = this.sealStats;
    s.seals++;
    s.sealedRecords += rows.length;
    s.lastBuildMs = result.buildMs;
    s.lastWriteMs = result.writeMs;
    s.lastSealMs = performance.now() - built.startedAt;
    if (this.#ctx.options.uploadOnSeal) this.#copies.scheduleUpload(seg);
    this.#ctx.nudgeTiering();
  }

  /** Removes the WAL files a committed manifest no longer needs (every file up to `walTo`). */
  async #dropWalThrough(walTo: number): Promise<void> {
    const walDir = path.join(this.#reg.dir, 'wal');
    for (const name of await fsp.readdir(walDir)) {
      const m = WAL_RE.exec(name);
      if (m && Number(m[1]) <= walTo) await fsp.rm(path.join(walDir, name), { force: true });
    }
  }

  /** Seals whatever is growing now and waits until every frozen range is committed. */
  async flush(): Promise<void> {
    if (this.#ctx.options.readOnly) throw readOnlyError('flush');
    while (this.#rotating) await this.#rotating;
    if (this.#growing.count > 0) {
      this.#startRotation();
      await this.#rotating;
    }
    if (this.#frozen.length > 0) this.#kickSeals();
    if (this.#sealing) await this.#sealing;
    if (this.#sealError) throw this.#sealError;
  }

  /** Lets the rotation and seals in flight finish (their errors are theirs to report). */
  async settle(): Promise<void> {
    clearTimeout(this.#ageTimer);
    this.#ageTimer = undefined;
    while (this.#rotating) await this.#rotating.catch(() => undefined);
    if (this.#sealing) await this.#sealing.catch(() => undefined);
  }

  async closeWal(): Promise<void> {
    await this.#wal?.close();
  }

  stats() {
    return {
      growing: { rows: this.#growing.count, live: this.#growing.live, bytes: this.#growing.memoryBytes },
      sealing: this.#frozen.length,
      walSeq: this.#walSeq,
      seal: { ...this.sealStats },
      lastSealError: this.#sealError?.message,
    };
  }
}
