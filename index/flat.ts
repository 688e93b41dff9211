// Exact top-k search by scanning every row, and the bounded heap that keeps the k best. This is the
// growing segment's search path and the ground truth HNSW is measured against. It never allocates
// per row, never calls a closure per row unless the caller passed a filter, and never normalizes.

import { StratavecError } from '../format/errors.js';
import { type Metric, isMetric, l2Squared, innerProductDistance } from './distance.js';

/**
 * A top-k answer, nearest first: `rows[i]` is at `distances[i]` (see `Metric` for what a distance
 * means). Plain arrays, not typed arrays, on purpose: callers map rows to ids and payloads, and
 * `Int32Array.prototype.map` would silently coerce those results back to integers. At k <= a few
 * hundred the difference in memory is nothing.
 */
export interface Neighbors {
  rows: number[];
  distances: number[];
}

/**
 * The k smallest (distance, row) pairs pushed so far: a bounded max-heap keyed on distance, ties
 * broken by the smaller row, so the answer does not depend on push order.
 *
 * `row` is any number, not only a row of one segment: the engine merges several segments' answers
 * by pushing a key of its own, e.g. an index into an array of tagged candidates it keeps beside the
 * heap. Stored as float64, so every safe integer survives. Distances must not be NaN (the engine
 * rejects non-finite vectors before they get here).
 */
export class TopK {
  readonly k: number;
  readonly #dist: Float64Array;
  readonly #row: Float64Array;
  #size = 0;

  constructor(k: number) {
    if (!Number.isInteger(k) || k < 0) throw new RangeError(`k must be a non-negative integer, got ${k}`);
    this.k = k;
    this.#dist = new Float64Array(k);
    this.#row = new Float64Array(k);
  }

  get size(): number {
    return this.#size;
  }

  /** The distance a candidate must beat to get in: +Infinity until k pairs are held. */
  worst(): number {
    return this.#size < this.k ? Infinity : this.#dist[0]!;
  }

  /** Offers a pair; returns whether it is (for now) among the k best. */
  push(row: number, dist: number): boolean {
    const d = this.#dist;
    const r = this.#row;
    if (this.#size < this.k) {
      // Sift up from the new leaf.
      let i = this.#size++;
      while (i > 0) {
        const p = (i - 1) >> 1;
        if (!(dist > d[p]! || (dist === d[p]! && row > r[p]!))) break;
        d[i] = d[p]!;
        r[i] = r[p]!;
        i = p;
      }
      d[i] = dist;
      r[i] = row;
      return true;
    }
    if (this.k === 0 || !(dist < d[0]! || (dist === d[0]! && row < r[0]!))) return false;
    this.#siftDownFromRoot(row, dist);
    return true;
  }

  /** Returns the held pairs nearest first and leaves the heap empty, ready for reuse. */
  drain(): Neighbors {
    const n = this.#size;
    const rows = new Array<number>(n);
    const distances = new Array<number>(n);
    // Popping the max repeatedly fills the output from the back: O(k log k), no sort callback.
    for (let out = n - 1; out >= 0; out--) {
      rows[out] = this.#row[0]!;
      distances[out] = this.#dist[0]!;
      const last = --this.#size;
      if (last > 0) this.#siftDownFromRoot(this.#row[last]!, this.#dist[last]!);
    }
    return { rows, distances };
  }

  // Places (row, dist) at the root and restores heap order over the first #size slots.
  #siftDownFromRoot(row: number, dist: number): void {
    const d = this.#dist;
    const r = this.#row;
    const n = this.#size;
    let i = 0;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= n) break;
      const c2 = c + 1;
      if (c2 < n && (d[c2]! > d[c]! || (d[c2]! === d[c]! && r[c2]! > r[c]!))) c = c2;
      if (!(d[c]! > dist || (d[c]! === dist && r[c]! > row))) break;
      d[i] = d[c]!;
      r[i] = r[c]!;
      i = c;
    }
    d[i] = dist;
    r[i] = row;
  }
}

/**
 * Exact k nearest rows of `vectors` (row-major, `count` rows of `dim`) to `query`.
 *
 * `accept`, when given, is called lazily: only for a row whose distance would put it in the
 * current top k, so a cheap distance filters out most rows before a possibly costly predicate
 * (payload filter, tombstone lookup) runs. It must therefore be a pure function of the row. Fewer
 * than k rows come back when fewer than k are accepted.
 */
export function flatSearch(
  vectors: Float32Array,
  dim: number,
  count: number,
  query: Float32Array,
  k: number,
  metric: Metric,
  accept?: (row: number) => boolean,
): Neighbors {
  if (query.length !== dim) {
    throw new StratavecError('ERR_DIMENSION_MISMATCH', `query has ${query.length} dimensions, the vectors have ${dim}`);
  }
  if (!Number.isInteger(count) || count < 0 || count * dim > vectors.length) {
    throw new StratavecError('ERR_INVALID_ARGUMENT', `count ${count} x dim ${dim} exceeds the ${vectors.length} floats given`);
  }
  if (!Number.isInteger(k) || k < 0) throw new RangeError(`k must be a non-negative integer, got ${k}`);
  if (!isMetric(metric)) throw new TypeError(`unknown metric ${JSON.stringify(metric)}: expected 'l2', 'ip' or 'cosine'`);
  const top = new TopK(Math.min(k, count));
  if (top.k === 0) return { rows: [], distances: [] };

  // Cosine is 'ip' over unit vectors (see Metric).
  const dist = metric === 'l2' ? l2Squared : innerProductDistance;

  let worst = Infinity;
  // Strict `<` against the worst also implements the row tie-break: rows arrive in ascending order,
  // so a later row at an equal distance loses.
  if (accept === undefined) {
    for (let row = 0, off = 0; row < count; row++, off += dim) {
      const d = dist(vectors, off, query, 0, dim);
      if (d < worst) {
        top.push(row, d);
        worst = top.worst();
      }
    }
  } else {
    for (let row = 0, off = 0; row < count; row++, off += dim) {
      const d = dist(vectors, off, query, 0, dim);
      if (d < worst && accept(row)) {
        top.push(row, d);
        worst = top.worst();
      }
    }
  }
  return top.drain();
}

/**
 * Exact k nearest among `rows` only (ascending row numbers, each < count): the planner's path for
 * a selective filter, whose cost is the passing rows, not the segment. Same ties as flatSearch.
 */
export function flatSearchRows(
  vectors: Float32Array,
  dim: number,
  rows: Uint32Array,
  query: Float32Array,
  k: number,
  metric: Metric,
): Neighbors {
  if (query.length !== dim) {
    throw new StratavecError('ERR_DIMENSION_MISMATCH', `query has ${query.length} dimensions, the vectors have ${dim}`);
  }
  if (!Number.isInteger(k) || k < 0) throw new RangeError(`k must be a non-negative integer, got ${k}`);
  if (!isMetric(metric)) throw new TypeError(`unknown metric ${JSON.stringify(metric)}: expected 'l2', 'ip' or 'cosine'`);
  const top = new TopK(Math.min(k, rows.length));
  if (top.k === 0) return { rows: [], distances: [] };
  const dist = metric === 'l2' ? l2Squared : innerProductDistance;
  const limit = vectors.length / dim;
  let worst = Infinity;
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i]!;
    if (row >= limit) throw new RangeError(`row ${row} past the ${limit} rows given`);
    const d = dist(vectors, row * dim, query, 0, dim);
    if (d < worst) {
      top.push(row, d);
      worst = top.worst();
    }
  }
  return top.drain();
}
