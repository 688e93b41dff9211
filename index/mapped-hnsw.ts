// Searches an HNSW graph in place: the `hnsw` section of a segment file (hnswlib's own saveIndex
// bytes) as it lies in a mapped Buffer, through typed-array views, with hnswlib's search rules and
// its float32 distances, so it returns what hnswlib-node returns on the same graph. It must never
// read outside the section whatever the bytes say (bad bytes are ERR_SEGMENT_CORRUPT), never copy
// the graph or load it natively, and never allocate per candidate.

// How the read path uses it (warm and rehydrated-cold segments):
//   const reader = SegmentReader.open(mapReadOnly(file, { minSize }));          // once per mapping
//   const graph = MappedHnsw.open(reader.raw(SectionKind.hnsw), { dimension, count, metric });
//   graph.search(query, k, ef, excluded);  // excluded: Uint8Array(count), tombstones + filter, 1 = out
// Keep one MappedHnsw per mapped segment for as long as the mapping lives (it reuses its scratch
// across searches and holds views on the mapping, so unmap only after dropping it); a cosine query
// must be normalised first, exactly as for HnswIndex.search.

import { StratavecError } from '../format/errors.js';
import { type Metric, isMetric } from './distance.js';
import type { Neighbors } from './flat.js';
import {
  DEFAULT_EF_SEARCH, HNSW_HEADER_BYTES, MAX_EF, checkHnswLevel0, checkHnswUpperLinks, hnswCorrupt, readHnswLayout,
  scanHnswUpperLevels,
} from './hnsw-file.js';
import {
  SCREEN_ABS, ipGeneral, ipLanes16, ipOne64, ipPair64, l2General, l2Lanes16, l2One64, l2Pair64, laneElements, screenError,
} from './hnswlib-kernels.js';

/**
 * How much of the section `open` reads before the first search:
 * - `'bounds'` (default): the header, and the upper-level link lists (every node's level and every
 *   upper link: about 1/M of the graph, in a separate area after level 0). Level-0 link lists and
 *   labels, which fill every page of the section, are checked as searches read them, so opening
 *   a mapped segment does not fault the whole graph into memory.
 * - `'full'`: also every level-0 list and label up front (O(section), what `checkHnswIndexBytes`
 *   does before a native load). Searches still bounds-check what they read.
 * Either way no search reads outside the section or loops forever on any bytes, and a search that
 * meets a bad level-0 list, or a bad label on a row it would return, throws ERR_SEGMENT_CORRUPT
 * instead of answering.
 */
export type MappedHnswCheck = 'bounds' | 'full';

export interface MappedHnswOptions {
  dimension: number;
  /** Rows in the segment; the section must hold exactly this many elements. */
  count: number;
  metric: Metric;
  check?: MappedHnswCheck;
  /**
   * true (default): distances are hnswlib's float32 values bit for bit, so every answer equals
   * hnswlib-node's on the same graph at the same ef, ties included (on x86-64 Linux; see
   * hnswlib-kernels.ts). For l2, candidates are screened in float64 and only those that could
   * enter the result get the slower float32 computation; ip and cosine compute float32 always.
   * false: float64 distances throughout (reported rounded to float32), faster for ip and cosine;
   * answers differ from hnswlib's only where two distances are within float32 rounding of each
   * other (test/mapped-hnsw.test.ts measures how often).
   */
  exact?: boolean;
}

/**
 * Restricts a search to some rows. A function is called with a row and must return true to allow
 * it (pure; as `HnswIndex.search`'s `accept`). A Uint8Array of at least `count` bytes is an
 * exclusion bitmap (nonzero = excluded), the faster form for tombstones and payload filters.
 * Excluded rows still route the search, as in hnswlib: they are only kept out of the answer.
 */
export type RowFilter = ((row: number) => boolean) | Uint8Array;

// Kernel choice, fixed per index so the hot loop branches on a small integer, not a closure.
const K_L2_16 = 0;
const K_IP_16 = 1;
const K_L2_ANY = 2;
const K_IP_ANY = 3;

// Filter modes for the hot loop.
const F_NONE = 0;
const F_BITMAP = 1;
const F_CALLBACK = 2;

/** hnswlib queues a filtered-out entry point at this distance (float32's max): it routes, never kept. */
const FLT_MAX = 3.4028234663852886e38;

/**
 * Per-search working memory, reused across searches: the visited marks (epoch-tagged, as hnswlib's
 * VisitedList: a mark equals the current tag, clearing is a tag increment) and the two heaps.
 */
class Scratch {
  visited: Uint16Array;
  tag = 0;
  candKeys: Float64Array;
  candIds: Int32Array;
  topKeys: Float64Array;
  topIds: Int32Array;

  readonly q64: Float64Array;
  /** One node's unvisited neighbours and their float64 distances. */
  readonly batch: Int32Array;
  readonly batchDist: Float64Array;

  constructor(count: number, dim: number, maxM0: number) {
    this.visited = new Uint16Array(count);
    this.q64 = new Float64Array(dim);
    this.batch = new Int32Array(maxM0);
    this.batchDist = new Float64Array(maxM0);
    this.candKeys = new Float64Array(256);
    this.candIds = new Int32Array(256);
    this.topKeys = new Float64Array(DEFAULT_EF_SEARCH + 2);
    this.topIds = new Int32Array(DEFAULT_EF_SEARCH + 2);
  }

  query(q: Float32Array): Float64Array {
    this.q64.set(q);
    return this.q64;
  }

  nextTag(): number {
    if (this.tag === 0xffff) {
      this.visited.fill(0);
      this.tag = 0;
    }
    return ++this.tag;
  }

  fitTop(ef: number): void {
    if (this.topKeys.length < ef + 2) {
      this.topKeys = new Float64Array(ef + 2);
      this.topIds = new Int32Array(ef + 2);
    }
  }

  growCandidates(): void {
    const keys = new Float64Array(this.candKeys.length * 2);
    const ids = new Int32Array(this.candIds.length * 2);
    keys.set(this.candKeys);
    ids.set(this.candIds);
    this.candKeys = keys;
    this.candIds = ids;
  }
}

// The two heaps are std::priority_queue with hnswlib's CompareByFirst (a max-heap on the key, ties
// left where the algorithm puts them), and these are libstdc++'s push_heap and pop_heap step for
// step: which of two equal keys leaves first decides which of two equally distant nodes is
// expanded or evicted, so reproducing the algorithm reproduces hnswlib's answer under ties too.
// The candidate heap is keyed on -distance, as hnswlib's is.

/** push_back + std::push_heap: adds (key, id) to the heap occupying [0, n). */
function heapPush(keys: Float64Array, ids: Int32Array, n: number, key: number, id: number): void {
  let hole = n;
  while (hole > 0) {
    const parent = (hole - 1) >> 1;
    if (!(keys[parent]! < key)) break;
    keys[hole] = keys[parent]!;
    ids[hole] = ids[parent]!;
    hole = parent;
  }
  keys[hole] = key;
  ids[hole] = id;
}

/** std::pop_heap + pop_back: removes the top of the heap occupying [0, n), leaving [0, n-1). */
function heapPop(keys: Float64Array, ids: Int32Array, n: number): void {
  const len = n - 1;
  if (len <= 0) return;
  const key = keys[len]!;
  const id = ids[len]!;
  // __adjust_heap: move the hole from the root down to a leaf along the larger children (the left
  // one unless the right is strictly larger), then sift the displaced last element back up.
  let hole = 0;
  let child = 0;
  while (child < (len - 1) >> 1) {
    child = 2 * (child + 1);
    if (keys[child]! < keys[child - 1]!) child--;
    keys[hole] = keys[child]!;
    ids[hole] = ids[child]!;
    hole = child;
  }
  if ((len & 1) === 0 && child === (len - 2) >> 1) {
    child = 2 * (child + 1);
    keys[hole] = keys[child - 1]!;
    ids[hole] = ids[child - 1]!;
    hole = child - 1;
  }
  while (hole > 0) {
    const parent = (hole - 1) >> 1;
    if (!(keys[parent]! < key)) break;
    keys[hole] = keys[parent]!;
    ids[hole] = ids[parent]!;
    hole = parent;
  }
  keys[hole] = key;
  ids[hole] = id;
}

export class MappedHnsw {
  readonly dim: number;
  readonly count: number;
  readonly metric: Metric;
  readonly M: number;
  readonly maxLevel: number;
  /**
   * False when the section was not 4-byte aligned in memory and was copied once at open (typed
   * arrays need aligned offsets). Segment sections start at 64-byte offsets in the file and mmap
   * returns page-aligned memory, so sections of mapped or readFile'd segments are always in place.
   */
  readonly inPlace: boolean;

  readonly #u32: Uint32Array;
  readonly #f32: Float32Array;
  readonly #kernel: number;
  readonly #lanes: number;
  /** Words per level-0 record, and offsets of the vector and the label inside one. */
  readonly #recWords: number;
  readonly #dataWords: number;
  readonly #labelWords: number;
  readonly #maxM0: number;
  readonly #upperStride: number;
  readonly #entry: number;
  /** Word index of each node's level-1 list (valid where the node has upper levels). */
  readonly #upperAt: Uint32Array;
  readonly #exact: boolean;
  /** Relative bound on |float32 distance - float64 distance| for l2 (see screenError). */
  readonly #screenError: number;
  #scratch: Scratch | undefined;
  #busy = false;

  private constructor(bytes: Uint8Array, inPlace: boolean, opts: Required<MappedHnswOptions>) {
    this.#exact = opts.exact;
    this.#screenError = screenError(opts.dimension);
    const { dimension: dim, count, metric } = opts;
    const layout = readHnswLayout(bytes, dim, count);
    this.dim = dim;
    this.count = count;
    this.metric = metric;
    this.M = layout.M;
    this.maxLevel = count === 0 ? -1 : layout.maxLevel;
    this.inPlace = inPlace;
    const words = bytes.byteLength >>> 2;
    this.#u32 = new Uint32Array(bytes.buffer, bytes.byteOffset, words);
    this.#f32 = new Float32Array(bytes.buffer, bytes.byteOffset, words);
    this.#lanes = laneElements(dim);
    const l2 = metric === 'l2';
    this.#kernel = this.#lanes === dim && dim % 16 === 0 ? (l2 ? K_L2_16 : K_IP_16) : (l2 ? K_L2_ANY : K_IP_ANY);
    // Every size and offset in the layout is a multiple of 4 (u32 links, f32 values, 8-byte
    // labels after a whole number of words), so word indexes are exact.
    this.#recWords = layout.perElem / 4;
    this.#dataWords = layout.dataOffset / 4;
    this.#labelWords = layout.labelOffset / 4;
    this.#maxM0 = layout.maxM0;
    this.#upperStride = 1 + layout.maxM;
    this.#entry = layout.entryPoint;
    this.#upperAt = new Uint32Array(count);
    if (count > 0) {
      const upper = scanHnswUpperLevels(bytes, layout);
      checkHnswUpperLinks(bytes, layout, upper);
      if (opts.check === 'full') checkHnswLevel0(bytes, layout, { identity: true });
      for (let i = 0; i < count; i++) if (upper.levels[i]! > 0) this.#upperAt[i] = upper.upperAt[i]! / 4;
    }
  }

  /**
   * Opens the `hnsw` section of a segment (hnswlib saveIndex bytes written by `HnswIndex.build`
   * for `count` rows of `dimension`) for searching in place. The bytes must stay mapped and
   * unchanged while the returned object is used; it holds views on them, not a copy. Structural
   * problems are ERR_SEGMENT_CORRUPT (see `MappedHnswCheck` for what is read when).
   */
  static open(section: Uint8Array, opts: MappedHnswOptions): MappedHnsw {
    if (!(section instanceof Uint8Array)) throw new TypeError('section must be a Uint8Array (e.g. a Buffer slice of a mapped segment)');
    if (opts === null || typeof opts !== 'object') throw new TypeError('options must be an object');
    const { dimension, count, metric } = opts;
    const check = opts.check ?? 'bounds';
    const exact = opts.exact ?? true;
    if (typeof exact !== 'boolean') throw new TypeError('exact must be a boolean');
    if (!isMetric(metric)) throw new TypeError(`unknown metric ${JSON.stringify(metric)}: expected 'l2', 'ip' or 'cosine'`);
    if (check !== 'bounds' && check !== 'full') throw new TypeError(`unknown check ${JSON.stringify(check)}: expected 'bounds' or 'full'`);
    if (!Number.isInteger(dimension) || dimension < 1) {
      throw new StratavecError('ERR_INVALID_ARGUMENT', `dimension must be a positive integer, got ${dimension}`);
    }
    if (!Number.isInteger(count) || count < 0 || count > 0x7fffffff) {
      throw new StratavecError('ERR_INVALID_ARGUMENT', `count must be an integer in [0, 2^31), got ${count}`);
    }
    let bytes = section;
    let inPlace = true;
    if (section.byteOffset % 4 !== 0) {
      bytes = new Uint8Array(section.byteLength);
      bytes.set(section);
      inPlace = false;
    }
    return new MappedHnsw(bytes, inPlace, { dimension, count, metric, check, exact });
  }

  /**
   * The k nearest rows to `query`, nearest first (ties by smaller row), with the same rows and
   * the same float32 distances as `HnswIndex.search` on the same graph at the same `ef` (default
   * 64; raised to k as hnswlib does). `k` is clamped to `count`. For 'cosine' the query must
   * already be unit length. With a selective filter fewer than k rows can come back even though
   * more match (see `HnswIndex.search`). An exception thrown by a filter function propagates.
   */
  search(query: Float32Array, k: number, ef?: number, filter?: RowFilter): Neighbors {
    if (!(query instanceof Float32Array)) throw new TypeError('query must be a Float32Array');
    if (query.length !== this.dim) {
      throw new StratavecError('ERR_DIMENSION_MISMATCH', `query has ${query.length} dimensions, the index has ${this.dim}`);
    }
    if (!Number.isInteger(k) || k < 0) throw new RangeError(`k must be a non-negative integer, got ${k}`);
    const efv = ef ?? DEFAULT_EF_SEARCH;
    if (!Number.isInteger(efv) || efv < 1 || efv > MAX_EF) throw new RangeError(`ef must be an integer in [1, ${MAX_EF}], got ${ef}`);
    let mode = F_NONE;
    let bitmap: Uint8Array | undefined;
    let accept: ((row: number) => boolean) | undefined;
    if (typeof filter === 'function') {
      mode = F_CALLBACK;
      accept = filter;
    } else if (filter instanceof Uint8Array) {
      if (filter.length < this.count) {
        throw new StratavecError('ERR_INVALID_ARGUMENT', `exclusion bitmap has ${filter.length} entries, the index has ${this.count} rows`);
      }
      mode = F_BITMAP;
      bitmap = filter;
    } else if (filter !== undefined) {
      throw new TypeError('filter must be a function (row) => boolean or a Uint8Array exclusion bitmap');
    }
    const kk = Math.min(k, this.count);
    if (kk === 0) return { rows: [], distances: [] };

    // A filter may search this same index again; that nested search gets scratch of its own.
    const nested = this.#busy;
    const scratch = nested ? this.#newScratch() : (this.#scratch ??= this.#newScratch());
    this.#busy = true;
    try {
      const ep = this.#descend(query, scratch.query(query));
      const n = this.#searchLevel0(scratch, query, ep, Math.max(efv, kk), mode, bitmap, accept);
      return this.#answer(scratch, n, kk);
    } finally {
      if (!nested) this.#busy = false;
    }
  }

  #newScratch(): Scratch {
    return new Scratch(this.count, this.dim, this.#maxM0);
  }

  #dataAt(id: number): number {
    return HNSW_HEADER_BYTES / 4 + id * this.#recWords + this.#dataWords;
  }

  /** The search's distance to node `id` (float32 exact or float64 rounded), or some value >= bound once it is clear it is >= bound. */
  #nodeDistance(q: Float32Array, q64: Float64Array, id: number, bound: number): number {
    if (this.#exact) return this.#distance(q, id, bound);
    return Math.fround(this.metric === 'l2' ? l2One64(q64, this.#f32, this.#dataAt(id), this.dim, bound) : ipOne64(q64, this.#f32, this.#dataAt(id), this.dim));
  }

  /** hnswlib's float32 distance from `q` to node `id`, or some value >= bound once it is clear it is >= bound. */
  #distance(q: Float32Array, id: number, bound: number): number {
    const off = HNSW_HEADER_BYTES / 4 + id * this.#recWords + this.#dataWords;
    switch (this.#kernel) {
      case K_L2_16: return l2Lanes16(q, this.#f32, off, this.dim, bound);
      case K_IP_16: return ipLanes16(q, this.#f32, off, this.dim);
      case K_L2_ANY: return l2General(q, this.#f32, off, this.dim, this.#lanes, bound);
      default: return ipGeneral(q, this.#f32, off, this.dim, this.#lanes);
    }
  }

  /**
   * Greedy descent from the entry point through the upper levels (hnswlib's searchKnn): move to
   * any strictly nearer neighbour until none is nearer, one level at a time. Every upper link was
   * checked at open, and each move strictly lowers the distance, so this ends.
   */
  #descend(q: Float32Array, q64: Float64Array): number {
    const u32 = this.#u32;
    let cur = this.#entry;
    let curDist = this.#nodeDistance(q, q64, cur, Infinity);
    for (let level = this.maxLevel; level > 0; level--) {
      let changed = true;
      while (changed) {
        changed = false;
        const at = this.#upperAt[cur]! + (level - 1) * this.#upperStride;
        const size = u32[at]!;
        // Checked at open; checked again (a few reads per level) in case the mapping changed since.
        if (size >= this.#upperStride) throw hnswCorrupt(`node ${cur}: level-${level} link count ${size} exceeds ${this.#upperStride - 1}`);
        for (let j = 1; j <= size; j++) {
          const cand = u32[at + j]!;
          if (cand >= this.count) throw hnswCorrupt(`node ${cur}: level-${level} link to a missing element ${cand}`);
          const d = this.#nodeDistance(q, q64, cand, curDist);
          if (d < curDist) {
            curDist = d;
            cur = cand;
            changed = true;
          }
        }
      }
    }
    return cur;
  }

  /**
   * hnswlib's searchBaseLayerST on level 0 from `ep` with `ef`; leaves the best `ef` allowed nodes
   * in the scratch top heap (keyed on distance) and returns how many there are. Filtered-out nodes
   * are expanded like any other but never enter the top heap; the stop rule is the filtered one
   * (nearest candidate farther than the worst kept one, with ef kept), which equals the bare rule
   * when nothing is filtered.
   *
   * A node's unvisited neighbours are gathered first and their float64 distances computed two at
   * a time; then they are taken in list order, exactly as hnswlib takes them. With `exact`, a
   * neighbour whose float64 distance is past the worst kept one by more than the float32 error
   * bound is rejected on it (hnswlib would reject it too), and every other one gets its float32
   * distance, which is what the heaps hold.
   */
  #searchLevel0(
    s: Scratch, q: Float32Array, ep: number, ef: number, mode: number,
    bitmap: Uint8Array | undefined, accept: ((row: number) => boolean) | undefined,
  ): number {
    const u32 = this.#u32;
    const f32 = this.#f32;
    const dim = this.dim;
    const count = this.count;
    const recWords = this.#recWords;
    const dataWords = this.#dataWords;
    const maxM0 = this.#maxM0;
    const exact = this.#exact;
    const l2 = this.metric === 'l2';
    const pairs = dim % 4 === 0;
    const screen = l2 || !exact;
    const grow = 1 - this.#screenError; // (1 - error) * float64 distance <= float32 distance
    s.fitTop(ef);
    const q64 = s.q64;
    const visited = s.visited;
    const tag = s.nextTag();
    const topKeys = s.topKeys;
    const topIds = s.topIds;
    const batch = s.batch;
    const dist = s.batchDist;
    let candKeys = s.candKeys;
    let candIds = s.candIds;
    let nTop = 0;
    let nCand = 0;
    let lowerBound: number;

    if (mode === F_NONE || (mode === F_BITMAP ? bitmap![ep] === 0 : accept!(ep) === true)) {
      const d = this.#nodeDistance(q, q64, ep, Infinity);
      lowerBound = d;
      heapPush(topKeys, topIds, nTop++, d, ep);
      heapPush(candKeys, candIds, nCand++, -d, ep);
    } else {
      lowerBound = FLT_MAX;
      heapPush(candKeys, candIds, nCand++, -FLT_MAX, ep);
    }
    visited[ep] = tag;

    while (nCand > 0) {
      const candDist = -candKeys[0]!;
      if (candDist > lowerBound && nTop === ef) break;
      const cur = candIds[0]!;
      heapPop(candKeys, candIds, nCand--);

      const rec = HNSW_HEADER_BYTES / 4 + cur * recWords;
      // Checked on every read even after a full check at open (two compares): bytes that change
      // under a mapping must still not send the search out of bounds. The whole word: hnswlib's
      // count is its low 16 bits, byte 2 its delete mark (never set by build()), byte 3 unused.
      const size = u32[rec]!;
      if (size > maxM0) throw hnswCorrupt(`node ${cur}: level-0 link header ${size} exceeds ${maxM0}`);
      let nb = 0;
      for (let j = 1; j <= size; j++) {
        const id = u32[rec + j]!;
        if (id >= count) throw hnswCorrupt(`node ${cur}: level-0 link to a missing element ${id}`);
        if (visited[id] === tag) continue;
        visited[id] = tag;
        batch[nb++] = id;
      }
      if (nb === 0) continue;

      if (screen) {
        // While the top heap is full its worst distance only falls, so a row whose partial sum
        // reaches the bound taken now is rejected below whatever the rows before it do.
        const bound = nTop < ef || !l2 ? Infinity : exact ? (lowerBound + SCREEN_ABS) / grow : lowerBound;
        let i = 0;
        if (pairs) {
          for (; i + 1 < nb; i += 2) {
            const a = HNSW_HEADER_BYTES / 4 + batch[i]! * recWords + dataWords;
            const b = HNSW_HEADER_BYTES / 4 + batch[i + 1]! * recWords + dataWords;
            if (l2) l2Pair64(q64, f32, a, b, dim, bound, dist, i);
            else ipPair64(q64, f32, a, b, dim, dist, i);
          }
        }
        for (; i < nb; i++) {
          const a = HNSW_HEADER_BYTES / 4 + batch[i]! * recWords + dataWords;
          dist[i] = l2 ? l2One64(q64, f32, a, dim, bound) : ipOne64(q64, f32, a, dim);
        }
      }

      for (let i = 0; i < nb; i++) {
        const id = batch[i]!;
        let d: number;
        if (!screen) {
          d = this.#distance(q, id, Infinity);
          if (nTop === ef && !(lowerBound > d)) continue;
        } else if (nTop === ef) {
          d = dist[i]!;
          if (exact) {
            // Only l2 is screened when exact: its float32 error is relative to the distance
            // itself. A dot product's is relative to sum |v_i q_i|, which the distance does not bound.
            if (d * grow - SCREEN_ABS >= lowerBound) continue;
            d = this.#distance(q, id, Infinity);
          } else {
            d = Math.fround(d);
          }
          if (!(lowerBound > d)) continue;
        } else {
          d = exact ? this.#distance(q, id, Infinity) : Math.fround(dist[i]!);
        }
        if (nCand === candKeys.length) {
          s.growCandidates();
          candKeys = s.candKeys;
          candIds = s.candIds;
        }
        heapPush(candKeys, candIds, nCand++, -d, id);
        if (mode === F_NONE || (mode === F_BITMAP ? bitmap![id] === 0 : accept!(id) === true)) {
          heapPush(topKeys, topIds, nTop++, d, id);
          if (nTop > ef) heapPop(topKeys, topIds, nTop--);
        }
        if (nTop > 0) lowerBound = topKeys[0]!;
      }
    }
    return nTop;
  }

  /** Trims the top heap to k as hnswlib does (popping the farthest), then orders by (distance, row). */
  #answer(s: Scratch, n: number, k: number): Neighbors {
    const keys = s.topKeys;
    const ids = s.topIds;
    while (n > k) heapPop(keys, ids, n--);
    const rows = new Array<number>(n);
    const distances = new Array<number>(n);
    // Popping the farthest first fills the answer from the back.
    for (let out = n - 1; out >= 0; out--) {
      rows[out] = ids[0]!;
      distances[out] = keys[0]!;
      heapPop(keys, ids, out + 1);
    }
    // Equal distances can come out in heap order; hnswlib-node's result queue orders them by label.
    for (let i = 1; i < n; i++) {
      const r = rows[i]!;
      const d = distances[i]!;
      let j = i - 1;
      while (j >= 0 && (distances[j]! > d || (distances[j] === d && rows[j]! > r))) {
        rows[j + 1] = rows[j]!;
        distances[j + 1] = distances[j]!;
        j--;
      }
      rows[j + 1] = r;
      distances[j + 1] = d;
    }
    // Rows are internal ids, because build() labels node i with row i; a label that says
    // otherwise means the section is not what build() wrote. Checked even after a full check at
    // open, like the level-0 lists: k reads.
    const u32 = this.#u32;
    for (const r of rows) {
      const at = HNSW_HEADER_BYTES / 4 + r * this.#recWords + this.#labelWords;
      if (u32[at] !== r || u32[at + 1] !== 0) throw hnswCorrupt(`node ${r} does not carry label ${r}`);
    }
    return { rows, distances };
  }
}
