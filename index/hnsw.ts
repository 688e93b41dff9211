// The HNSW index of one sealed segment: a thin wrapper over hnswlib-node that builds, saves, loads
// and searches, with labels equal to row numbers. It must never hand hnswlib bytes it has not
// checked structurally (hnswlib trusts its file and crashes the process on a bad one), never let a
// JS exception reach hnswlib's filter callback, and never normalize (see Metric in distance.js).

import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import hnswlib from 'hnswlib-node';
import { StratavecError, ioError } from '../format/errors.js';
import { tempPathFor, fsyncDir } from '../format/fsutil.js';
import { type Metric, hnswSpaceFor, isMetric } from './distance.js';
import type { Neighbors } from './flat.js';
import { DEFAULT_EF_SEARCH, MAX_EF, MAX_M, checkHnswIndexBytes, hnswCorrupt as corrupt, type HnswFileInfo } from './hnsw-file.js';

const { HierarchicalNSW } = hnswlib;
type NativeIndex = InstanceType<typeof HierarchicalNSW>;

export type { Metric } from './distance.js';
export { checkHnswIndexBytes, type HnswFileInfo } from './hnsw-file.js';

export type { HnswParams } from '../format/manifest.js';
import type { HnswParams } from '../format/manifest.js';

/**
 * Wraps every call into hnswlib's native code made while building or serializing, so a worker can
 * refuse to start one once it has been asked to stop and can tell its pool when it is inside one
 * (terminating a thread there aborts the process; see workers/task-stop.ts). Identity by default.
 */
export type NativeCall = <T>(call: () => T) => T;
const direct: NativeCall = (call) => call();

export const DEFAULT_HNSW_PARAMS: Readonly<HnswParams> = Object.freeze({ M: 16, efConstruction: 200, efSearch: DEFAULT_EF_SEARCH });

function checkParams(params: HnswParams): void {
  const { M, efConstruction, efSearch } = params;
  if (!Number.isInteger(M) || M < 2 || M > MAX_M) {
    throw new StratavecError('ERR_INVALID_ARGUMENT', `HNSW M must be an integer in [2, ${MAX_M}], got ${M}`);
  }
  for (const [name, v] of [['efConstruction', efConstruction], ['efSearch', efSearch]] as const) {
    if (!Number.isInteger(v) || v < 1 || v > MAX_EF) {
      throw new StratavecError('ERR_INVALID_ARGUMENT', `HNSW ${name} must be an integer in [1, ${MAX_EF}], got ${v}`);
    }
  }
}

function checkShape(dim: number, count: number, metric: Metric): void {
  if (!Number.isInteger(dim) || dim < 1) throw new StratavecError('ERR_INVALID_ARGUMENT', `dimension must be a positive integer, got ${dim}`);
  if (!Number.isInteger(count) || count < 0 || count > 0x7fffffff) {
    throw new StratavecError('ERR_INVALID_ARGUMENT', `count must be an integer in [0, 2^31), got ${count}`);
  }
  if (!isMetric(metric)) throw new TypeError(`unknown metric ${JSON.stringify(metric)}: expected 'l2', 'ip' or 'cosine'`);
}

/** A name for a transient index file; hnswlib-node only reads and writes paths. */
function scratchPath(tmpDir: string): string {
  return tempPathFor(path.join(tmpDir, 'hnsw-index'));
}

export class HnswIndex {
  readonly dim: number;
  readonly metric: Metric;
  readonly count: number;
  /** Graph degree; read back from the file when loaded. */
  readonly M: number;
  #native: NativeIndex | undefined;
  #ef: number;
  // Reused for every query: hnswlib-node copies the array into its own buffer before the search
  // starts (and before any filter callback runs), so reuse is safe even if a filter re-enters.
  readonly #scratch: number[];

  private constructor(native: NativeIndex, dim: number, metric: Metric, count: number, M: number, ef: number) {
    this.#native = native;
    this.dim = dim;
    this.metric = metric;
    this.count = count;
    this.M = M;
    this.#ef = ef;
    this.#scratch = new Array<number>(dim).fill(0);
    native.setEf(ef);
  }

  /**
   * Builds the graph over `count` rows of `vectors` (row-major), labels = row numbers. Synchronous
   * and CPU-bound (seconds for 10^4-10^5 rows): run it in a worker. For `'cosine'` the rows must
   * already be unit length. The same vectors, params and seed give the same graph.
   */
  static build(
    vectors: Float32Array, dim: number, count: number, metric: Metric, params: HnswParams,
    opts?: { seed?: number; nativeCall?: NativeCall },
  ): HnswIndex {
    checkShape(dim, count, metric);
    checkParams(params);
    if (count * dim > vectors.length) {
      throw new StratavecError('ERR_INVALID_ARGUMENT', `count ${count} x dim ${dim} exceeds the ${vectors.length} floats given`);
    }
    const seed = opts?.seed ?? 100;
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new StratavecError('ERR_INVALID_ARGUMENT', `seed must be a uint32, got ${seed}`);
    const nativeCall = opts?.nativeCall ?? direct;
    const native = nativeCall(() => new HierarchicalNSW(hnswSpaceFor(metric), dim));
    // Capacity exactly count (hnswlib cannot take 0): a sealed segment never grows, and the load
    // check relies on it.
    nativeCall(() => native.initIndex({ maxElements: Math.max(count, 1), m: params.M, efConstruction: params.efConstruction, randomSeed: seed }));
    // hnswlib-node takes number[] and copies it into a float buffer before inserting, so one array
    // refilled per row is enough. Measured: ~1.5 us per 128-d row, against ~13 us for
    // Array.from(subarray); both are noise next to the ~300 us the insertion itself takes.
    const point = new Array<number>(dim).fill(0);
    for (let row = 0, off = 0; row < count; row++, off += dim) {
      for (let j = 0; j < dim; j++) point[j] = vectors[off + j]!;
      nativeCall(() => native.addPoint(point, row));
    }
    return new HnswIndex(native, dim, metric, count, params.M, params.efSearch);
  }

  /**
   * Loads an index file written by `save`. The file does not record the metric (the segment header
   * does), so the caller passes it. Any structural problem, or any hnswlib failure to read it, is
   * ERR_SEGMENT_CORRUPT; failing to read the file at all is an I/O error.
   */
  static async load(file: string, dim: number, metric: Metric, count: number): Promise<HnswIndex> {
    checkShape(dim, count, metric);
    let bytes: Buffer;
    try {
      bytes = await fsp.readFile(file);
    } catch (err) {
      throw ioError(err, `reading HNSW index ${path.basename(file)}`);
    }
    const info = checkHnswIndexBytes(bytes, dim, count);
    return HnswIndex.#readChecked(file, dim, metric, count, info);
  }

  /**
   * Loads an index from bytes (a segment section). hnswlib-node reads only from a path, so the
   * bytes go through a temp file in `tmpDir`, removed before this returns. The bytes are checked
   * before anything is written.
   */
  static async fromBytes(bytes: Uint8Array, dim: number, metric: Metric, count: number, tmpDir: string): Promise<HnswIndex> {
    checkShape(dim, count, metric);
    const info = checkHnswIndexBytes(bytes, dim, count);
    const tmp = scratchPath(tmpDir);
    try {
      try {
        await fsp.writeFile(tmp, bytes, { flag: 'wx', mode: 0o600 });
      } catch (err) {
        throw ioError(err, 'writing a temporary HNSW index file');
      }
      return await HnswIndex.#readChecked(tmp, dim, metric, count, info);
    } finally {
      await fsp.rm(tmp, { force: true });
    }
  }

  static async #readChecked(file: string, dim: number, metric: Metric, count: number, info: HnswFileInfo): Promise<HnswIndex> {
    // A fresh native object each time: hnswlib-node frees the old index before reading the new one
    // and leaves a dangling pointer if the read fails, so an object is never reused after a failure.
    const native = new HierarchicalNSW(hnswSpaceFor(metric), dim);
    try {
      await native.readIndex(file);
    } catch (err) {
      throw corrupt(`hnswlib could not read ${path.basename(file)}`, err);
    }
    if (native.getNumDimensions() !== dim || native.getCurrentCount() !== count) {
      throw corrupt(`read ${native.getCurrentCount()} x ${native.getNumDimensions()}, expected ${count} x ${dim}`);
    }
    return new HnswIndex(native, dim, metric, count, info.M, DEFAULT_HNSW_PARAMS.efSearch);
  }

  /** Writes the index to `file` crash-safely (temp file, fsync, rename, fsync dir). */
  async save(file: string): Promise<void> {
    const native = this.#live();
    const tmp = tempPathFor(file);
    try {
      await native.writeIndex(tmp);
      // hnswlib's saveIndex ignores stream errors (a full disk gives a short file and success),
      // so what landed on disk is checked before it may replace anything.
      this.#checkWritten(await fsp.readFile(tmp));
      const fh = await fsp.open(tmp, 'r+');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
      await fsp.rename(tmp, file);
      await fsyncDir(path.dirname(file));
    } catch (err) {
      await fsp.rm(tmp, { force: true }).catch(() => undefined); // the original error is the one to report
      throw ioError(err, `writing HNSW index ${path.basename(file)}`);
    }
  }

  /** The index file's bytes, via a temp file in `tmpDir` that is removed before this returns. */
  async toBytes(tmpDir: string, nativeCall: NativeCall = direct): Promise<Buffer> {
    const native = this.#live();
    const tmp = scratchPath(tmpDir);
    try {
      await nativeCall(() => native.writeIndex(tmp));
      const bytes = await fsp.readFile(tmp);
      this.#checkWritten(bytes);
      return bytes;
    } catch (err) {
      throw ioError(err, 'serializing an HNSW index');
    } finally {
      await fsp.rm(tmp, { force: true });
    }
  }

  #checkWritten(bytes: Uint8Array): void {
    try {
      checkHnswIndexBytes(bytes, this.dim, this.count);
    } catch (err) {
      throw new StratavecError('ERR_IO', `hnswlib wrote an incomplete index (${bytes.length} bytes); is the disk full?`, { cause: err });
    }
  }

  /**
   * The k nearest rows to `query`, nearest first (ties by smaller row), distances as documented on
   * `Metric`. `k` is clamped to `count`. `ef` (default: the build's efSearch, or 64 after a load) is
   * raised to k by hnswlib. For `'cosine'` the query must already be unit length.
   *
   * `accept` is called by hnswlib for candidates as it meets them and must be pure. With a
   * selective filter HNSW can return fewer than k rows even though more match: a caller that
   * filters out most of a segment should scan it with `flatSearch` instead. An exception thrown by
   * `accept` is rethrown here after the search unwinds (letting it reach hnswlib-node would abort
   * the process).
   */
  search(query: Float32Array, k: number, ef?: number, accept?: (row: number) => boolean): Neighbors {
    const native = this.#live();
    if (query.length !== this.dim) {
      throw new StratavecError('ERR_DIMENSION_MISMATCH', `query has ${query.length} dimensions, the index has ${this.dim}`);
    }
    if (!Number.isInteger(k) || k < 0) throw new RangeError(`k must be a non-negative integer, got ${k}`);
    const kk = Math.min(k, this.count);
    if (kk === 0) return { rows: [], distances: [] };
    if (ef !== undefined && ef !== this.#ef) {
      if (!Number.isInteger(ef) || ef < 1 || ef > MAX_EF) throw new RangeError(`ef must be an integer in [1, ${MAX_EF}], got ${ef}`);
      native.setEf(ef);
      this.#ef = ef;
    }
    const q = this.#scratch;
    for (let j = 0; j < q.length; j++) q[j] = query[j]!;
    if (accept === undefined) {
      const res = native.searchKnn(q, kk);
      return { rows: res.neighbors, distances: res.distances };
    }
    let failure: { error: unknown } | undefined;
    const guarded = (row: number): boolean => {
      if (failure !== undefined) return false;
      try {
        return accept(row) === true;
      } catch (error) {
        failure = { error };
        return false;
      }
    };
    const res = native.searchKnn(q, kk, guarded);
    if (failure !== undefined) throw failure.error;
    return { rows: res.neighbors, distances: res.distances };
  }

  /**
   * Estimated native bytes, from hnswlib's layout:
   *   count * (4*dim + 8*M + 12)   level-0 records: vector, 2M links + header, 8-byte label
   * + count * (4*M + 4) / (M - 1)  upper-level link lists (a node reaches level l with p = M^-l)
   * + count * 112                  per-node bookkeeping: a std::mutex (40), level (4), list pointer
   *                                (8), label hash-map node and bucket (~58), visited marks (2)
   * + 65536 * 40                   hnswlib's fixed table of label-operation mutexes, per index
   * Measured RSS growth: 43.6 MB for 50k x 128 at M = 16 (estimate 41.0), and 2.53 MB per
   * 10-row index (estimate 2.50): small segments are dominated by the fixed mutex table. Excludes
   * the JS wrapper and any copy of the vectors the caller keeps.
   */
  get memoryBytes(): number {
    const { count, dim, M } = this;
    const perNode = 4 * dim + 8 * M + 12 + (4 * M + 4) / (M - 1) + 112;
    return Math.round(count * perNode + 65536 * 40);
  }

  /** The ef the next search without an explicit ef will use. */
  get ef(): number {
    return this.#ef;
  }

  /**
   * Frees the native graph now rather than whenever V8 collects this object (V8 does not see
   * native memory, so a hot tier evicting by byte budget cannot wait for GC). Later calls throw.
   */
  dispose(): void {
    const native = this.#native;
    if (native === undefined) return;
    this.#native = undefined;
    // hnswlib-node has no free(); re-initializing to a 1-element index deletes the old graph.
    native.initIndex({ maxElements: 1, m: 2, efConstruction: 2 });
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  #live(): NativeIndex {
    // Not a coded error: using a disposed index is a bug in the caller's leasing, not a condition
    // a user can meet or handle.
    if (this.#native === undefined) throw new Error('HNSW index was disposed');
    return this.#native;
  }
}
