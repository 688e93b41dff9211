// The write-ahead log: frame encoding, replay with torn-tail detection, and the group-committing
// appender. It owns the log's bytes and its fsync discipline only; it never interprets ops (applying
// them is the engine's job) and must never report a frame durable before fdatasync has returned.
//
// Frame: u32 bodyLength, u32 CRC32(body), body. One frame per user call, so a batch is atomic on
// recovery: either its whole frame replays or none of it does.

import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { StratavecError, ioError } from './errors.js';
import { crc32 } from './crc32.js';
import { fsyncDir } from './fsutil.js';

export const MAX_FRAME_BODY = 512 * 1024 * 1024;
export const WAL_FRAME_HEADER_SIZE = 8;
export const WalOpType = { upsert: 1, delete: 2 } as const;

const MAX_ID_FIELD = 0xffff;
// The smallest body a writer produces (a delete of nothing: op byte + u32 n). Requiring it keeps a
// run of zero bytes (a pre-extended or zero-filled tail after a crash) from passing as frames:
// length 0 with CRC 0 would otherwise be "valid".
const MIN_BODY = 5;
const MAX_DIMENSION = 65536;
const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export interface WalUpsertRecord {
  id: string;
  vector: Float32Array;
  payloadJson: string | null;
}

export type WalOp = { type: 'upsert'; records: WalUpsertRecord[] } | { type: 'delete'; ids: string[] };

export interface WalReadResult {
  ops: WalOp[];
  /** Bytes from the start that hold whole, valid frames: truncate the log to this after a torn tail. */
  validBytes: number;
  tornBytes: number;
}

function walCorrupt(message: string, cause?: unknown): StratavecError {
  return new StratavecError('ERR_WAL_CORRUPT', `WAL corrupt: ${message}`, cause === undefined ? undefined : { cause });
}

function checkDimension(dimension: number): void {
  if (!Number.isInteger(dimension) || dimension < 1 || dimension > MAX_DIMENSION) {
    throw new StratavecError('ERR_INVALID_ARGUMENT', `dimension must be an integer in 1..${MAX_DIMENSION}, got ${dimension}`);
  }
}

function idByteLength(id: unknown, what: string): number {
  if (typeof id !== 'string') throw new TypeError(`${what} must be a string`);
  const len = Buffer.byteLength(id, 'utf8');
  if (len === 0 || len > MAX_ID_FIELD) throw new StratavecError('ERR_INVALID_ID', `${what} is ${len} bytes of UTF-8; a WAL id field holds 1..${MAX_ID_FIELD}`);
  return len;
}

function tooBig(bytes: number): StratavecError {
  return new StratavecError('ERR_INVALID_ARGUMENT', `WAL frame body of ${bytes} bytes exceeds ${MAX_FRAME_BODY}; split the batch`);
}

/**
 * Encodes one op as a complete frame. Hot path: one allocation for the frame, strings written in
 * place, each vector copied as bytes (no per-float calls, no alignment needed).
 */
export function encodeWalFrame(op: WalOp, dimension: number): Buffer {
  if (op.type === 'upsert') {
    checkDimension(dimension);
    const records = op.records;
    const n = records.length;
    const vecBytes = dimension * 4;
    // Byte lengths are measured once and reused for the writes: [idLen, payloadLen] per record.
    const lens = new Uint32Array(2 * n);
    let body = 1 + 4 + 4;
    for (let i = 0; i < n; i++) {
      const r = records[i]!;
      const idLen = idByteLength(r.id, `id of record ${i}`);
      if (!(r.vector instanceof Float32Array)) throw new TypeError(`vector of record ${i} must be a Float32Array`);
      if (r.vector.length !== dimension) {
        throw new StratavecError('ERR_DIMENSION_MISMATCH', `vector of record ${i} has ${r.vector.length} components, expected ${dimension}`);
      }
      let payloadLen = 0;
      if (r.payloadJson !== null) {
        if (typeof r.payloadJson !== 'string') throw new TypeError(`payloadJson of record ${i} must be a string or null`);
        // Length 0 is how the frame says "no payload"; an empty string would come back as null.
        if (r.payloadJson.length === 0) throw new StratavecError('ERR_INVALID_PAYLOAD', `payloadJson of record ${i} is empty; use null for no payload`);
        payloadLen = Buffer.byteLength(r.payloadJson, 'utf8');
      }
      lens[2 * i] = idLen;
      lens[2 * i + 1] = payloadLen;
      body += 2 + idLen + 4 + payloadLen + vecBytes;
      if (body > MAX_FRAME_BODY) throw tooBig(body);
    }
    // allocUnsafe is safe here: every byte of the frame is written below (checked at the end).
    const buf = Buffer.allocUnsafe(WAL_FRAME_HEADER_SIZE + body);
    let off = WAL_FRAME_HEADER_SIZE;
    buf[off++] = WalOpType.upsert;
    buf.writeUInt32LE(dimension, off);
    buf.writeUInt32LE(n, off + 4);
    off += 8;
    for (let i = 0; i < n; i++) {
      const r = records[i]!;
      const idLen = lens[2 * i]!;
      const payloadLen = lens[2 * i + 1]!;
      buf.writeUInt16LE(idLen, off);
      off += 2;
      off += buf.write(r.id, off, idLen, 'utf8');
      buf.writeUInt32LE(payloadLen, off);
      off += 4;
      if (payloadLen > 0) off += buf.write(r.payloadJson!, off, payloadLen, 'utf8');
      const v = r.vector;
      if (LITTLE_ENDIAN_HOST) {
        buf.set(new Uint8Array(v.buffer, v.byteOffset, vecBytes), off);
      } else {
        for (let j = 0; j < dimension; j++) buf.writeFloatLE(v[j]!, off + 4 * j);
      }
      off += vecBytes;
    }
    return finishFrame(buf, off);
  }
  if (op.type === 'delete') {
    const ids = op.ids;
    const n = ids.length;
    const lens = new Uint32Array(n);
    let body = 1 + 4;
    for (let i = 0; i < n; i++) {
      lens[i] = idByteLength(ids[i], `id ${i}`);
      body += 2 + lens[i]!;
      if (body > MAX_FRAME_BODY) throw tooBig(body);
    }
    const buf = Buffer.allocUnsafe(WAL_FRAME_HEADER_SIZE + body);
    let off = WAL_FRAME_HEADER_SIZE;
    buf[off++] = WalOpType.delete;
    buf.writeUInt32LE(n, off);
    off += 4;
    for (let i = 0; i < n; i++) {
      buf.writeUInt16LE(lens[i]!, off);
      off += 2;
      off += buf.write(ids[i]!, off, lens[i]!, 'utf8');
    }
    return finishFrame(buf, off);
  }
  throw new TypeError(`unknown WAL op type ${JSON.stringify((op as { type?: unknown }).type)}`);
}

function finishFrame(buf: Buffer, end: number): Buffer {
  // A mismatch would mean uninitialised memory reaching the disk; that is a bug, so fail loudly.
  if (end !== buf.length) throw new Error(`internal: WAL frame encoder wrote ${end} of ${buf.length} bytes`);
  buf.writeUInt32LE(buf.length - WAL_FRAME_HEADER_SIZE, 0);
  buf.writeUInt32LE(crc32(buf.subarray(WAL_FRAME_HEADER_SIZE)), 4);
  return buf;
}

/** Decodes one frame body (CRC already checked). Every count is checked against the bytes left. */
export function decodeWalBody(body: Buffer, dimension: number): WalOp {
  checkDimension(dimension);
  const len = body.length;
  let off = 0;
  const need = (n: number, what: string): void => {
    if (n > len - off) throw walCorrupt(`body truncated reading ${what} at byte ${off} (${len} bytes)`);
  };
  need(1, 'op type');
  const type = body[off++]!;
  if (type === WalOpType.upsert) {
    need(8, 'upsert header');
    const dim = body.readUInt32LE(off);
    const n = body.readUInt32LE(off + 4);
    off += 8;
    if (dim !== dimension) throw walCorrupt(`upsert frame has dimension ${dim}, the log's is ${dimension}`);
    const vecBytes = dimension * 4;
    // Each record takes at least this much; checking first keeps a bad n from sizing an array.
    if (n * (2 + 1 + 4 + vecBytes) > len - off) throw walCorrupt(`upsert claims ${n} records in ${len} bytes`);
    const records: WalUpsertRecord[] = new Array(n);
    for (let i = 0; i < n; i++) {
      need(2, 'id length');
      const idLen = body.readUInt16LE(off);
      off += 2;
      if (idLen === 0) throw walCorrupt(`empty id in record ${i}`);
      need(idLen, 'id');
      const id = body.toString('utf8', off, off + idLen);
      off += idLen;
      need(4, 'payload length');
      const payloadLen = body.readUInt32LE(off);
      off += 4;
      need(payloadLen, 'payload');
      const payloadJson = payloadLen === 0 ? null : body.toString('utf8', off, off + payloadLen);
      off += payloadLen;
      need(vecBytes, 'vector');
      const vector = new Float32Array(dimension);
      if (LITTLE_ENDIAN_HOST) {
        new Uint8Array(vector.buffer).set(body.subarray(off, off + vecBytes));
      } else {
        for (let j = 0; j < dimension; j++) vector[j] = body.readFloatLE(off + 4 * j);
      }
      off += vecBytes;
      records[i] = { id, vector, payloadJson };
    }
    if (off !== len) throw walCorrupt(`${len - off} stray bytes after an upsert of ${n} records`);
    return { type: 'upsert', records };
  }
  if (type === WalOpType.delete) {
    need(4, 'delete count');
    const n = body.readUInt32LE(off);
    off += 4;
    if (n * 3 > len - off) throw walCorrupt(`delete claims ${n} ids in ${len} bytes`);
    const ids: string[] = new Array(n);
    for (let i = 0; i < n; i++) {
      need(2, 'id length');
      const idLen = body.readUInt16LE(off);
      off += 2;
      if (idLen === 0) throw walCorrupt(`empty id in delete entry ${i}`);
      need(idLen, 'id');
      ids[i] = body.toString('utf8', off, off + idLen);
      off += idLen;
    }
    if (off !== len) throw walCorrupt(`${len - off} stray bytes after a delete of ${n} ids`);
    return { type: 'delete', ids };
  }
  throw walCorrupt(`unknown op type ${type}`);
}

/** End offset of a structurally whole frame at `pos` whose CRC matches, or -1. */
function frameEnd(buf: Buffer, pos: number): number {
  if (buf.length - pos < WAL_FRAME_HEADER_SIZE) return -1;
  const bodyLen = buf.readUInt32LE(pos);
  if (bodyLen < MIN_BODY || bodyLen > MAX_FRAME_BODY || bodyLen > buf.length - pos - WAL_FRAME_HEADER_SIZE) return -1;
  const end = pos + WAL_FRAME_HEADER_SIZE + bodyLen;
  return crc32(buf.subarray(pos + WAL_FRAME_HEADER_SIZE, end)) === buf.readUInt32LE(pos + 4) ? end : -1;
}

/**
 * First offset >= from holding a valid frame, or -1. The op byte (and an upsert's dimension) are
 * checked before the CRC so that scanning through a torn frame's float data stays cheap.
 */
function findFrameAfter(buf: Buffer, from: number, dimension: number): number {
  const last = buf.length - WAL_FRAME_HEADER_SIZE - MIN_BODY;
  for (let q = from; q <= last; q++) {
    const op = buf[q + WAL_FRAME_HEADER_SIZE];
    if (op === WalOpType.upsert) {
      if (buf.length - q < WAL_FRAME_HEADER_SIZE + 9 || buf.readUInt32LE(q + WAL_FRAME_HEADER_SIZE + 1) !== dimension) continue;
    } else if (op !== WalOpType.delete) {
      continue;
    }
    if (frameEnd(buf, q) >= 0) return q;
  }
  return -1;
}

/**
 * Replays the log. A bad frame with no valid frame anywhere after it is a torn tail (a crash
 * mid-append): replay stops there and validBytes says where to truncate. A bad frame followed by a
 * valid one is damage to acknowledged data, so it is ERR_WAL_CORRUPT rather than silently skipped.
 */
export async function readWal(walPath: string, dimension: number): Promise<WalReadResult> {
  checkDimension(dimension);
  let buf: Buffer;
  try {
    buf = await fsp.readFile(walPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { ops: [], validBytes: 0, tornBytes: 0 };
    throw ioError(err, `reading WAL ${path.basename(walPath)}`);
  }
  const ops: WalOp[] = [];
  let pos = 0;
  while (pos < buf.length) {
    const end = frameEnd(buf, pos);
    if (end < 0) {
      const next = findFrameAfter(buf, pos + 1, dimension);
      if (next >= 0) throw walCorrupt(`bad frame at byte ${pos} of ${path.basename(walPath)}, yet a valid frame follows at byte ${next}`);
      return { ops, validBytes: pos, tornBytes: buf.length - pos };
    }
    // A frame whose CRC matches was written whole, so it cannot be torn: failing to decode it is
    // corruption (or the wrong dimension), and dropping it would lose acknowledged data.
    try {
      ops.push(decodeWalBody(buf.subarray(pos + WAL_FRAME_HEADER_SIZE, end), dimension));
    } catch (err) {
      throw walCorrupt(`frame at byte ${pos} of ${path.basename(walPath)} passes its CRC but does not decode`, err);
    }
    pos = end;
  }
  return { ops, validBytes: pos, tornBytes: 0 };
}

// ---------------------------------------------------------------------------------------------
// Appender

interface PendingFrame {
  kind: 'frame';
  frame: Uint8Array;
  onDurable: (() => void) | undefined;
  resolve: () => void;
  reject: (err: unknown) => void;
}

interface PendingTruncate {
  kind: 'truncate';
  bytes: number;
  resolve: () => void;
  reject: (err: unknown) => void;
}

type Pending = PendingFrame | PendingTruncate;

/** Writes all of `bufs` at `position`, resuming after short writes (a short count precedes an error). */
async function writeAll(fh: fsp.FileHandle, bufs: Uint8Array[], position: number): Promise<void> {
  let list = bufs;
  let pos = position;
  while (list.length > 0) {
    const { bytesWritten } = await fh.writev(list, pos);
    if (bytesWritten <= 0) throw new Error('writev made no progress');
    pos += bytesWritten;
    let skip = bytesWritten;
    let i = 0;
    while (i < list.length && skip >= list[i]!.length) skip -= list[i++]!.length;
    list = list.slice(i);
    if (skip > 0) list[0] = list[0]!.subarray(skip);
  }
}

/**
 * Single appender for one log file (the engine's directory lock keeps it single-process).
 * Group commit: while one writev + fdatasync is in flight, new frames queue and go out together in
 * the next one, so throughput scales with batch size rather than with fsync latency.
 */
export class WalWriter {
  readonly path: string;
  readonly #fh: fsp.FileHandle;
  #size: number;
  #queue: Pending[] = [];
  #running = false;
  #idleWaiters: Array<() => void> = [];
  #poison: StratavecError | undefined;
  #closing: Promise<void> | undefined;
  #syncs = 0;

  private constructor(walPath: string, fh: fsp.FileHandle, size: number) {
    this.path = walPath;
    this.#fh = fh;
    this.#size = size;
  }

  /** Opens for append at the current end (recovery truncates a torn tail first via truncateTo). */
  static async open(walPath: string): Promise<WalWriter> {
    let fh: fsp.FileHandle;
    let created = false;
    try {
      fh = await fsp.open(walPath, 'r+');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw ioError(err, `opening WAL ${path.basename(walPath)}`);
      try {
        fh = await fsp.open(walPath, 'wx+', 0o644);
        created = true;
      } catch (err2) {
        // Someone created it between our two opens; the file is there now, so open it as existing.
        if ((err2 as NodeJS.ErrnoException).code !== 'EEXIST') throw ioError(err2, `creating WAL ${path.basename(walPath)}`);
        fh = await fsp.open(walPath, 'r+').catch((err3: unknown) => {
          throw ioError(err3, `opening WAL ${path.basename(walPath)}`);
        });
      }
    }
    try {
      const st = await fh.stat();
      // The new directory entry must survive a crash, or frames acknowledged later could vanish
      // with the whole file.
      if (created) await fsyncDir(path.dirname(walPath));
      return new WalWriter(walPath, fh, st.size);
    } catch (err) {
      await fh.close().catch(() => undefined); // already failing; the original error is the one to report
      throw ioError(err, `opening WAL ${path.basename(walPath)}`);
    }
  }

  /** Bytes in the log that are durable (excludes frames still waiting for their fdatasync). */
  get size(): number {
    return this.#size;
  }

  /** Number of fdatasync'd append batches so far; for stats and for tests of group commit. */
  get syncCount(): number {
    return this.#syncs;
  }

  /**
   * Resolves once `frame` is on disk. `onDurable` runs synchronously right after the fdatasync, in
   * append order across all frames, before any promise resolves: the engine applies ops there so
   * the in-memory order matches the log order. If `onDurable` throws, that append rejects with the
   * thrown error, but its frame is durable and will replay.
   */
  append(frame: Buffer, onDurable?: () => void): Promise<void> {
    if (!(frame instanceof Uint8Array) || frame.length === 0) return Promise.reject(new TypeError('frame must be a non-empty Buffer'));
    if (onDurable !== undefined && typeof onDurable !== 'function') return Promise.reject(new TypeError('onDurable must be a function'));
    if (this.#poison) return Promise.reject(this.#poison);
    if (this.#closing) return Promise.reject(this.#closedError());
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ kind: 'frame', frame, onDurable, resolve, reject });
      this.#kick();
    });
  }

  /** Drops everything after `bytes` (ftruncate + fsync), ordered after appends already queued. */
  truncateTo(bytes: number): Promise<void> {
    if (!Number.isSafeInteger(bytes) || bytes < 0) return Promise.reject(new StratavecError('ERR_INVALID_ARGUMENT', `truncate size must be a non-negative integer, got ${bytes}`));
    if (this.#poison) return Promise.reject(this.#poison);
    if (this.#closing) return Promise.reject(this.#closedError());
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ kind: 'truncate', bytes, resolve, reject });
      this.#kick();
    });
  }

  /** Waits for every queued append and truncate, then closes the file. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      await this.#whenIdle();
      try {
        await this.#fh.close();
      } catch (err) {
        throw ioError(err, `closing WAL ${path.basename(this.path)}`);
      }
    })();
    return this.#closing;
  }

  #closedError(): StratavecError {
    return new StratavecError('ERR_DATABASE_CLOSED', `WAL ${path.basename(this.path)} is closed`);
  }

  #whenIdle(): Promise<void> {
    if (!this.#running && this.#queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  #kick(): void {
    if (this.#running) return;
    this.#running = true;
    void this.#drain();
  }

  async #drain(): Promise<void> {
    try {
      // One microtask's wait lets appends made in the same synchronous run join the first batch.
      await null;
      while (this.#queue.length > 0) {
        if (this.#poison) {
          for (const p of this.#queue.splice(0)) p.reject(this.#poison);
          break;
        }
        const head = this.#queue[0]!;
        if (head.kind === 'truncate') {
          this.#queue.shift();
          await this.#truncate(head);
          continue;
        }
        let k = 1;
        while (k < this.#queue.length && this.#queue[k]!.kind === 'frame') k++;
        await this.#commit(this.#queue.splice(0, k) as PendingFrame[]);
      }
    } finally {
      this.#running = false;
      for (const w of this.#idleWaiters.splice(0)) w();
    }
  }

  // Never throws: every outcome is delivered through the batch's promises.
  async #commit(batch: PendingFrame[]): Promise<void> {
    const start = this.#size;
    let total = 0;
    for (const p of batch) total += p.frame.length;
    try {
      await writeAll(this.#fh, batch.map((p) => p.frame), start);
      await this.#fh.datasync();
    } catch (err) {
      const failure = ioError(err, `appending ${batch.length} frame(s) to WAL ${path.basename(this.path)}`);
      // Roll the file back so a later replay cannot resurrect frames whose callers saw a failure.
      try {
        await this.#fh.truncate(start);
        await this.#fh.sync();
      } catch (truncErr) {
        this.#poison = new StratavecError(
          'ERR_IO',
          `WAL ${path.basename(this.path)} could not be rolled back to ${start} bytes after a failed append; it accepts no more writes`,
          { cause: truncErr },
        );
      }
      for (const p of batch) p.reject(failure);
      return;
    }
    this.#size = start + total;
    this.#syncs++;
    const outcomes: unknown[] = new Array(batch.length);
    for (let i = 0; i < batch.length; i++) {
      const cb = batch[i]!.onDurable;
      if (!cb) continue;
      try {
        cb();
      } catch (cbErr) {
        outcomes[i] = cbErr ?? new Error('onDurable threw a nullish value');
      }
    }
    for (let i = 0; i < batch.length; i++) {
      if (outcomes[i] === undefined) batch[i]!.resolve();
      else batch[i]!.reject(outcomes[i]);
    }
  }

  async #truncate(req: PendingTruncate): Promise<void> {
    if (req.bytes > this.#size) {
      req.reject(new StratavecError('ERR_INVALID_ARGUMENT', `cannot truncate WAL of ${this.#size} bytes to a larger ${req.bytes}`));
      return;
    }
    try {
      await this.#fh.truncate(req.bytes);
      await this.#fh.sync();
    } catch (err) {
      // The file's length is now unknown; appending at our idea of the end could leave a hole.
      this.#poison = new StratavecError('ERR_IO', `WAL ${path.basename(this.path)} could not be truncated; it accepts no more writes`, { cause: err });
      req.reject(ioError(err, `truncating WAL ${path.basename(this.path)}`));
      return;
    }
    this.#size = req.bytes;
    req.resolve();
  }
}
