// The cold tier's contract: a flat key -> bytes store (a local directory or an S3 bucket), the key
// rules every implementation enforces and the options they share (open-object-store.ts turns a
// spec into a store). It must never know what a segment or a manifest is.

import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { StratavecError, ioError } from '../format/errors.js';
import { TEMP_PREFIX, tempPathFor, fsyncDir, writeFully } from '../format/fsutil.js';
import type { Clock } from './access-stats.js';

export { writeFully };

export interface ObjectInfo {
  key: string;
  size: number;
  /** ms since the epoch, from the store (file mtime, S3 LastModified). */
  lastModified: number;
  /** S3 only: the ETag without the double quotes S3 wraps it in (the same from head and list). */
  etag?: string;
}

export interface IncompleteUpload {
  key: string;
  uploadId: string;
  /** ms since the epoch: the store's clock for the fs store, the server's for S3. */
  initiated: number;
}

/**
 * A flat namespace of immutable-by-convention objects. Every method validates its key first
 * (ERR_INVALID_ARGUMENT, or TypeError for a non-string), and every failure is a StratavecError:
 * ERR_OBJECT_NOT_FOUND, ERR_TIER_UNAVAILABLE (unreachable, credentials rejected, bucket or root
 * missing, store closed), ERR_DISK_FULL, ERR_IO.
 *
 * Ranged reads behave like pread(2): a range that runs past the end returns the bytes that exist
 * (a shorter Buffer), and a range that starts at or after the end returns an empty Buffer. Callers
 * that need exact lengths check `length` (segment readers verify CRC32s anyway).
 */
export interface ObjectStore {
  /** Where it points, safe to print: never contains credentials. */
  readonly description: string;
  /**
   * Stores the whole object in one request (never multipart), replacing any previous one; readers
   * see the old or the new bytes. With `ifNoneMatch: '*'` it is a create: atomic against every
   * other conditional create of the key (exactly one wins), ERR_OBJECT_EXISTS when an object with
   * other bytes is already there. An outcome the store left unknown (a lost response, a retried
   * request, a 409/500 from the server) is settled by reading the key back: the same bytes mean
   * this put created it. So the bytes of competing creates must differ (writers put their epoch in).
   */
  put(key: string, body: Uint8Array, opts?: PutOptions): Promise<void>;
  /**
   * Uploads a local file. Above `multipartThreshold` bytes it goes in parts; on any failure the
   * upload is aborted so nothing half-written is visible under `key`. If the abort itself fails
   * (store unreachable) the error says so and `listIncompleteUploads` reports the leftover.
   */
  putFile(key: string, file: string, opts?: { partSize?: number }): Promise<void>;
  get(key: string, range?: ByteRange): Promise<Buffer>;
  /**
   * Downloads to `file` through a temp file beside it, renamed over `file` once complete; returns
   * bytes. With `durable` (the default) the file and its directory are fsynced too; a scratch
   * copy that is read once and removed skips that (`{ durable: false }`).
   */
  getToFile(key: string, file: string, opts?: GetToFileOptions): Promise<number>;
  head(key: string): Promise<ObjectInfo | undefined>;
  /** Every object whose key starts with `prefix`, all pages, sorted by key. */
  list(prefix: string): Promise<ObjectInfo[]>;
  /** Idempotent: deleting a missing key succeeds. */
  delete(key: string): Promise<void>;
  /** Multipart uploads started and never completed or aborted, for garbage collection. */
  listIncompleteUploads(prefix: string): Promise<IncompleteUpload[]>;
  /** Idempotent: aborting an unknown (or already finished) upload succeeds. */
  abortUpload(key: string, uploadId: string): Promise<void>;
  /** Idempotent. Later calls fail with ERR_TIER_UNAVAILABLE. */
  close(): Promise<void>;
}

export interface PutOptions {
  /** '*': create only if no object exists under the key (S3 `If-None-Match: *`). */
  ifNoneMatch?: '*';
}

/** The one check of put's options (TypeError for a wrong shape, as for every caller type mistake). */
export function putOptions(opts: PutOptions | undefined): { ifNoneMatch: boolean } {
  if (opts === undefined) return { ifNoneMatch: false };
  if (typeof opts !== 'object' || opts === null) throw new TypeError('put options must be an object');
  if (opts.ifNoneMatch !== undefined && opts.ifNoneMatch !== '*') throw new TypeError("put option ifNoneMatch must be '*'");
  return { ifNoneMatch: opts.ifNoneMatch === '*' };
}

export function objectExists(key: string, where: string): StratavecError {
  return new StratavecError('ERR_OBJECT_EXISTS', `an object with other bytes already exists under ${quoteKey(key)} in ${where}`);
}

export interface ByteRange {
  offset: number;
  length: number;
}

/** Time source; the engine's `Clock`. */
export type ObjectStoreClock = Clock;

/** A local file read in parts by `putFile`. The default reads with pread; tests inject faults. */
export interface SourceFile {
  readonly size: number;
  /** Exactly `length` bytes at `position`, or a coded error if the file is shorter now. */
  read(position: number, length: number): Promise<Buffer>;
  close(): Promise<void>;
}

export type SourceOpener = (file: string) => Promise<SourceFile>;

export interface ObjectStoreOptions {
  /** putFile uses multipart above this many bytes. Default 16 MiB. */
  multipartThreshold?: number;
  /** Part size for multipart uploads. Default 8 MiB; S3 requires >= 5 MiB (all parts but the last). */
  partSize?: number;
  /** S3: extra attempts after the first for retryable failures (5xx, throttling, network). Default 3. */
  retries?: number;
  /** S3: first backoff step in ms; doubles per attempt, half of it jittered. Default 50. */
  retryBaseMs?: number;
  /** S3: connect timeout per attempt, ms. Default 3000. */
  connectionTimeoutMs?: number;
  /**
   * S3: a request fails (and is retried) once its socket has been idle this long, ms. An idle cap,
   * not a total one, so a large part on a slow link is not cut off while bytes still move. Default 20000.
   */
  socketTimeoutMs?: number;
  /** S3: parts in flight at once during putFile. Default 4 (memory: this many part buffers). */
  uploadConcurrency?: number;
  /** S3: page size of ListObjectsV2 / ListMultipartUploads (<= 1000). Default 1000; tests use less. */
  listPageSize?: number;
  /** fs store: `initiated` of multipart uploads comes from here, so GC grace periods are testable. */
  clock?: ObjectStoreClock;
  /** How putFile reads its input. Default: `openSourceFile`. */
  openSource?: SourceOpener;
}

/** Structurally identical to the engine's S3ObjectStoreOptions (tiers must not import engine). */
export interface S3Settings {
  /** `s3://bucket/prefix` */
  url: string;
  endpoint?: string;
  region?: string;
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  forcePathStyle?: boolean;
}

export interface FilledObjectStoreOptions {
  multipartThreshold: number;
  partSize: number;
  retries: number;
  retryBaseMs: number;
  connectionTimeoutMs: number;
  socketTimeoutMs: number;
  uploadConcurrency: number;
  listPageSize: number;
  clock: ObjectStoreClock;
  openSource: SourceOpener;
}

const MiB = 1024 * 1024;

export const kObjectStoreDefaults = Object.freeze({
  multipartThreshold: 16 * MiB,
  partSize: 8 * MiB,
  retries: 3,
  retryBaseMs: 50,
  connectionTimeoutMs: 3000,
  socketTimeoutMs: 20_000,
  uploadConcurrency: 4,
  listPageSize: 1000,
  clock: Object.freeze({ now: () => Date.now() }) as ObjectStoreClock,
});

/** S3's floor for every part but the last. */
export const S3_MIN_PART_SIZE = 5 * MiB;
/** S3's cap on the number of parts of one upload. */
export const MAX_PARTS = 10_000;
const MAX_KEY_BYTES = 1024;
/** Longest key segment: a file name plus the temp-file prefix and suffix must fit NAME_MAX (255). */
const MAX_SEGMENT_BYTES = 200;
const SEGMENT_RE = /^[A-Za-z0-9._-]+$/;

function invalid(message: string): StratavecError {
  return new StratavecError('ERR_INVALID_ARGUMENT', message);
}

/** Quotes a caller's string for an error message without letting control bytes through. */
export function quoteKey(key: string): string {
  return JSON.stringify(key.length > 120 ? `${key.slice(0, 120)}...` : key);
}

/**
 * Keys are '/'-separated segments of [A-Za-z0-9._-], at most 1024 bytes. Rejected: an empty
 * segment (leading '/', trailing '/', 'a//b'), a segment '.' or '..', a segment that starts with
 * '.' (reserved for the stores' own temp files and upload records, so no key can shadow them), and
 * a segment longer than 200 bytes (so every key is also a valid relative path on any filesystem).
 */
export function validateKey(key: string): string {
  if (typeof key !== 'string') throw new TypeError(`object key must be a string, got ${typeof key}`);
  if (key.length === 0) throw invalid('object key is empty');
  if (Buffer.byteLength(key) > MAX_KEY_BYTES) throw invalid(`object key is longer than ${MAX_KEY_BYTES} bytes`);
  for (const seg of key.split('/')) {
    if (seg.length === 0) throw invalid(`object key ${quoteKey(key)} has an empty segment (leading, trailing or double '/')`);
    if (!SEGMENT_RE.test(seg)) throw invalid(`object key ${quoteKey(key)} has a character outside [A-Za-z0-9._-/]`);
    if (seg.startsWith('.')) throw invalid(`object key ${quoteKey(key)} has a segment starting with '.' (reserved)`);
    if (seg.length > MAX_SEGMENT_BYTES) throw invalid(`object key ${quoteKey(key)} has a segment longer than ${MAX_SEGMENT_BYTES} bytes`);
  }
  return key;
}

/**
 * A list prefix is a key's leading part: '' (everything), whole segments ending in '/', or whole
 * segments then a partial one ('a/seg' matches 'a/segments/1'). The same character rules apply.
 */
export function validatePrefix(prefix: string): string {
  if (typeof prefix !== 'string') throw new TypeError(`list prefix must be a string, got ${typeof prefix}`);
  if (prefix === '') return prefix;
  if (Buffer.byteLength(prefix) > MAX_KEY_BYTES) throw invalid(`list prefix is longer than ${MAX_KEY_BYTES} bytes`);
  const segs = prefix.split('/');
  const last = segs.pop()!;
  for (const seg of segs) {
    if (seg.length === 0 || !SEGMENT_RE.test(seg) || seg.startsWith('.')) throw invalid(`list prefix ${quoteKey(prefix)} is not a valid key prefix`);
  }
  if (last !== '' && (!SEGMENT_RE.test(last) || last.startsWith('.'))) throw invalid(`list prefix ${quoteKey(prefix)} is not a valid key prefix`);
  return prefix;
}

export function validateRange(range: ByteRange | undefined): ByteRange | undefined {
  if (range === undefined) return undefined;
  if (typeof range !== 'object' || range === null) throw new TypeError('range must be { offset, length }');
  const { offset, length } = range;
  if (typeof offset !== 'number' || typeof length !== 'number') throw new TypeError('range.offset and range.length must be numbers');
  if (!Number.isSafeInteger(offset) || offset < 0) throw invalid(`range.offset must be a non-negative integer, got ${offset}`);
  if (!Number.isSafeInteger(length) || length < 0) throw invalid(`range.length must be a non-negative integer, got ${length}`);
  return { offset, length };
}

function intOption(name: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number') throw new TypeError(`option ${name} must be a number, got ${typeof v}`);
  if (!Number.isSafeInteger(v) || v < min || v > max) {
    throw invalid(`option ${name} must be an integer in [${min}, ${max}], got ${v}`);
  }
  return v;
}

export function fillObjectStoreOptions(o: ObjectStoreOptions = {}): FilledObjectStoreOptions {
  if (typeof o !== 'object' || o === null) throw new TypeError('object store options must be an object');
  const d = kObjectStoreDefaults;
  const pick = (name: keyof typeof d & keyof ObjectStoreOptions, min: number, max: number): number => {
    const v = o[name];
    return v === undefined ? (d[name] as number) : intOption(name, v, min, max);
  };
  const clock = o.clock ?? d.clock;
  if (typeof clock?.now !== 'function') throw new TypeError('option clock must have a now() method');
  const openSource = o.openSource ?? openSourceFile;
  if (typeof openSource !== 'function') throw new TypeError('option openSource must be a function');
  return {
    multipartThreshold: pick('multipartThreshold', 0, Number.MAX_SAFE_INTEGER),
    partSize: pick('partSize', 1, 5 * 1024 * MiB),
    retries: pick('retries', 0, 20),
    retryBaseMs: pick('retryBaseMs', 0, 60_000),
    connectionTimeoutMs: pick('connectionTimeoutMs', 1, 600_000),
    socketTimeoutMs: pick('socketTimeoutMs', 1, 3_600_000),
    uploadConcurrency: pick('uploadConcurrency', 1, 64),
    listPageSize: pick('listPageSize', 1, 1000),
    clock,
    openSource,
  };
}

/**
 * The part size one upload of `size` bytes uses: the requested size, grown if needed so the
 * upload stays within MAX_PARTS parts.
 */
export function effectivePartSize(size: number, requested: number): number {
  return Math.max(requested, Math.ceil(size / MAX_PARTS));
}

/** The part size of one putFile call: its own `partSize` option, else the store's. */
export function partSizeOption(opts: { partSize?: number } | undefined, fallback: number): number {
  if (opts === undefined) return fallback;
  if (typeof opts !== 'object' || opts === null) throw new TypeError('putFile options must be an object');
  const v = opts.partSize;
  if (v === undefined) return fallback;
  if (typeof v !== 'number') throw new TypeError(`partSize must be a number, got ${typeof v}`);
  if (!Number.isSafeInteger(v) || v < 1) throw new StratavecError('ERR_INVALID_ARGUMENT', `partSize must be a positive integer, got ${v}`);
  return v;
}

/** The default SourceOpener: positional reads of a file opened once, size taken at open. */
export async function openSourceFile(file: string): Promise<SourceFile> {
  let fh: fsp.FileHandle;
  let size: number;
  try {
    fh = await fsp.open(file, 'r');
  } catch (err) {
    throw ioError(err, `opening ${path.basename(file)} for upload`);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new StratavecError('ERR_INVALID_ARGUMENT', `${path.basename(file)} is not a regular file`);
    size = st.size;
  } catch (err) {
    await fh.close().catch(() => undefined); // the stat failure is the error worth reporting
    throw ioError(err, `reading ${path.basename(file)} for upload`);
  }
  return {
    size,
    async read(position, length) {
      const buf = Buffer.allocUnsafe(length);
      let done = 0;
      try {
        while (done < length) {
          const { bytesRead } = await fh.read(buf, done, length - done, position + done);
          if (bytesRead === 0) break;
          done += bytesRead;
        }
      } catch (err) {
        throw ioError(err, `reading ${path.basename(file)} for upload`);
      }
      if (done !== length) {
        throw new StratavecError('ERR_IO', `${path.basename(file)} shrank during upload (read ${done} of ${length} bytes at ${position})`);
      }
      return buf;
    },
    close: () => fh.close(),
  };
}


/**
 * Writes `chunks` to `file` so that `file` is either untouched or complete: a temp file beside it,
 * fsync, rename, fsync the directory. Errors from iterating `chunks` propagate unchanged (the
 * caller decides whether they are retryable); local write errors become coded I/O errors.
 */
export interface GetToFileOptions {
  /** fsync the file and its directory before returning. Default true. */
  durable?: boolean;
}

export async function writeChunksAtomic(
  file: string, chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, opts: GetToFileOptions = {},
): Promise<number> {
  const durable = opts.durable ?? true;
  const tmp = tempPathFor(file);
  let fh: fsp.FileHandle | undefined;
  let bytes = 0;
  const local = (err: unknown): StratavecError => ioError(err, `writing ${path.basename(file)}`);
  try {
    try {
      fh = await fsp.open(tmp, 'wx', 0o644);
    } catch (err) {
      throw local(err);
    }
    for await (const chunk of chunks) {
      try {
        await writeFully(fh, chunk);
      } catch (err) {
        throw local(err);
      }
      bytes += chunk.byteLength;
    }
    try {
      if (durable) await fh.sync();
      await fh.close();
      fh = undefined;
      await fsp.rename(tmp, file);
      if (durable) await fsyncDir(path.dirname(file));
    } catch (err) {
      throw local(err);
    }
    return bytes;
  } catch (err) {
    if (fh) await fh.close().catch(() => undefined); // already failing; the original error wins
    await fsp.rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
}

/**
 * True for names the stores create for themselves (TEMP_PREFIX files, the fs store's `.uploads`):
 * validateKey refuses segments starting with '.', so no object is ever named like this.
 */
export function isInternalName(name: string): boolean {
  return name.startsWith('.') || name.startsWith(TEMP_PREFIX);
}
