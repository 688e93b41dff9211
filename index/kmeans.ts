// k-means over float32 rows: seeded k-means++ seeding and Lloyd iterations over a sample, and the
// nearest-centroid assignment of every row. Serves segment bounds (a few dozen centroids per
// segment) and clustering compaction's partitions (k up to ~1000 over ~100k sampled rows).
// Pure computation on typed arrays, deterministic for a seed; no I/O, no JS allocation per row
// (hnswlib's searchKnn, used for k >= 128, returns a small result object per call). It is
// CPU work over a whole segment: run it in a pool worker, never on the event loop.
//
// Both phases skip distance computations with the triangle inequality (Euclidean distance, on the
// vectors as stored, whatever the collection's metric), which changes no result, only the cost:
// - seeding (after Raff's accelerated k-means++): a new centre c cannot be nearer to x than x's
//   current centre a when |c - a| >= 2 |x - a|, so x is skipped;
// - Lloyd (Hamerly's algorithm): per row an upper bound on the distance to its centre and a lower
//   bound on the distance to every other centre, moved by how far the centres moved; a row is only
//   looked at again when the bounds overlap, and its full scan uses the same centre-centre test
//   (or, for large k, hnswlib's native brute force).
// These skips pay off on clustered data; on data with no structure (uniform noise in 128
// dimensions) nearly every row is rescanned every iteration.

import hnswlib from 'hnswlib-node';
import { StratavecError } from '../format/errors.js';
import { l2Squared } from './distance.js';
import type { NativeCall } from './hnsw.js';

const { BruteforceSearch } = hnswlib;
const direct: NativeCall = (call) => call();

/**
 * Largest k accepted. The centre-centre distance table is k^2 float64 (32 MiB at 2048); clustering
 * compaction asks for ~1000, bounds for at most 64.
 */
export const MAX_K = 2048;
/** Lloyd iterations when the caller does not say; each one after the first is mostly bound checks. */
export const DEFAULT_ITERATIONS = 10;
/** Rows sampled per centroid when the caller gives no sample size (faiss uses the same 256). */
export const SAMPLE_PER_CENTROID = 256;
/** k-means++ seeding looks at this many rows per centroid (at least SEED_MIN_ROWS) of the sample. */
const SEED_PER_CENTROID = 8;
const SEED_MIN_ROWS = 4096;
/**
 * From this k on, the full scans use hnswlib's native brute force: measured here at k = 1000, 128
 * dimensions, ~5x faster per row than the JS scan (the row is copied into a number[] per call).
 */
const NATIVE_MIN_K = 128;

export interface KMeansOptions {
  /** Centroids wanted, 1..MAX_K; fewer come back when the sample has fewer distinct rows. */
  k: number;
  /** Seed of every random choice (sample, seeding): the same seed and input give the same result. */
  seed: number;
  /** Rows to learn from, drawn without replacement; default min(n, k * SAMPLE_PER_CENTROID). */
  sampleSize?: number;
  /** Upper limit on Lloyd iterations (it stops earlier once no row changes centroid). */
  iterations?: number;
  /** Called between units of work (a seeding step, an iteration); throws to abandon the run. */
  check?: () => void;
  /** Wraps each call into hnswlib (k >= 128 uses its brute force); a worker passes TaskStop.native. */
  nativeCall?: NativeCall;
}

export interface KMeansResult {
  /** Centroids found; k or fewer. */
  k: number;
  /** `k * dim` row-major. */
  centroids: Float32Array;
  /** Lloyd iterations run. */
  iterations: number;
  /** Rows the centroids were learnt from. */
  sampleSize: number;
  /** Distance computations done (seeding + Lloyd), to see what the bounds saved. */
  distanceCount: number;
}

/** A seedable 32-bit PRNG (mulberry32), uniform in [0, 1): deterministic, fast, not cryptographic. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function invalid(message: string): StratavecError {
  return new StratavecError('ERR_INVALID_ARGUMENT', message);
}

function checkRows(rows: Float32Array, dim: number, n: number): void {
  if (!(rows instanceof Float32Array)) throw new TypeError('rows must be a Float32Array');
  if (!Number.isInteger(dim) || dim < 1) throw invalid(`dim must be a positive integer, got ${dim}`);
  if (!Number.isInteger(n) || n < 0 || n * dim > rows.length) throw invalid(`${n} rows of ${dim} do not fit in ${rows.length} floats`);
}

/** The sampled row numbers, ascending (memory order), or null when every row is used. */
function drawSample(n: number, m: number, rand: () => number): Uint32Array | null {
  if (m >= n) return null;
  const idx = new Uint32Array(n);
  for (let i = 0; i < n; i++) idx[i] = i;
  for (let i = 0; i < m; i++) { // partial Fisher-Yates: the first m slots are a uniform sample
    const j = i + Math.floor(rand() * (n - i));
    const t = idx[i]!;
    idx[i] = idx[j]!;
    idx[j] = t;
  }
  return idx.slice(0, m).sort();
}

/**
 * Centre-centre Euclidean distances (k x k, float64) and, per centre, half the distance to its
 * nearest other centre: a row nearer than that to its centre has no nearer one.
 */
function centreDistances(centroids: Float32Array, dim: number, k: number, cc: Float64Array, half: Float64Array): number {
  half.fill(Infinity, 0, k);
  for (let a = 0; a < k; a++) {
    cc[a * k + a] = 0;
    for (let b = a + 1; b < k; b++) {
      const d = Math.sqrt(l2Squared(centroids, a * dim, centroids, b * dim, dim));
      cc[a * k + b] = d;
      cc[b * k + a] = d;
      if (d < half[a]!) half[a] = d;
      if (d < half[b]!) half[b] = d;
    }
  }
  for (let a = 0; a < k; a++) half[a] = half[a]! / 2;
  return (k * (k - 1)) / 2;
}

/**
 * Finds, for one row, its nearest centroid and a lower bound on the distance to every other one
 * (the second-nearest distance, or less). Two implementations: a scan in JS that skips centroids by
 * the centre-centre test, and hnswlib's native brute force (SIMD, float32) once k is large enough
 * that its per-call cost (copying the row into a number[], N-API) is the smaller part.
 */
class Nearest {
  /** Set by find(): distance to the nearest, and the lower bound for the others. */
  dBest = 0;
  second = 0;
  readonly #rows: Float32Array;
  readonly #dim: number;
  readonly #k: number;
  readonly #centroids: Float32Array;
  readonly #cc: Float64Array;
  readonly #native: InstanceType<typeof BruteforceSearch> | undefined;
  readonly #buf: number[];
  readonly #call: NativeCall;
  distanceCount = 0;

  constructor(rows: Float32Array, dim: number, centroids: Float32Array, k: number, cc: Float64Array, nativeCall: NativeCall) {
    this.#rows = rows;
    this.#dim = dim;
    this.#k = k;
    this.#centroids = centroids;
    this.#cc = cc;
    this.#call = nativeCall;
    this.#buf = new Array<number>(dim).fill(0);
    if (k >= NATIVE_MIN_K) {
      const index = nativeCall(() => new BruteforceSearch('l2', dim));
      nativeCall(() => index.initIndex(k));
      for (let c = 0; c < k; c++) {
        for (let j = 0; j < dim; j++) this.#buf[j] = centroids[c * dim + j]!;
        nativeCall(() => index.addPoint(this.#buf, c));
      }
      this.#native = index;
    }
  }

  /** Nearest centroid to the row at `o`, starting from `guess` (a good guess prunes the JS scan). */
  find(o: number, guess: number): number {
    const rows = this.#rows;
    const dim = this.#dim;
    const k = this.#k;
    const cents = this.#centroids;
    if (this.#native) {
      const buf = this.#buf;
      for (let j = 0; j < dim; j++) buf[j] = rows[o + j]!;
      const index = this.#native;
      const res = this.#call(() => index.searchKnn(buf, k > 1 ? 2 : 1));
      this.distanceCount += k;
      const [a, b] = res.neighbors;
      const [da, db] = res.distances;
      const aFirst = b === undefined || da! <= db!;
      const best = aFirst ? a! : b!;
      // The float32 distance only ranks; the one kept is exact (bounds are built on it).
      this.dBest = Math.sqrt(l2Squared(rows, o, cents, best * dim, dim));
      this.second = b === undefined ? Infinity : Math.sqrt(aFirst ? db! : da!) * (1 - 1e-5);
      return best;
    }
    const cc = this.#cc;
    let best = guess;
    let dBest = Math.sqrt(l2Squared(rows, o, cents, best * dim, dim));
    let second = Infinity;
    let count = 1;
    for (let c = 0; c < k; c++) {
      if (c === best) continue;
      const between = cc[best * k + c]!;
      if (between >= 2 * dBest) {
        // |x - c| >= |c - best| - |x - best|: a lower bound, at least dBest, no distance needed.
        const lb = between - dBest;
        if (lb < second) second = lb;
        continue;
      }
      const d = Math.sqrt(l2Squared(rows, o, cents, c * dim, dim));
      count++;
      if (d < dBest) {
        second = dBest;
        dBest = d;
        best = c;
      } else if (d < second) {
        second = d;
      }
    }
    this.distanceCount += count;
    this.dBest = dBest;
    this.second = second;
    return best;
  }
}

/**
 * k-means over a sample of `rows` (`n` rows of `dim`, row-major). Euclidean, on the vectors as
 * given: for cosine pass the unit vectors the engine stores. Throws ERR_INVALID_ARGUMENT for a
 * k outside 1..MAX_K or n == 0; rows must be finite (the engine never stores anything else).
 */
export function kmeans(rows: Float32Array, dim: number, n: number, opts: KMeansOptions): KMeansResult {
  checkRows(rows, dim, n);
  if (opts === null || typeof opts !== 'object') throw new TypeError('options must be an object');
  const { seed, check } = opts;
  const nativeCall = opts.nativeCall ?? direct;
  if (typeof seed !== 'number' || !Number.isFinite(seed)) throw new TypeError('options.seed must be a finite number');
  if (!Number.isInteger(opts.k) || opts.k < 1 || opts.k > MAX_K) throw invalid(`k must be an integer in 1..${MAX_K}, got ${opts.k}`);
  if (n === 0) throw invalid('k-means needs at least one row');
  const maxIter = opts.iterations ?? DEFAULT_ITERATIONS;
  if (!Number.isInteger(maxIter) || maxIter < 0) throw invalid(`iterations must be a non-negative integer, got ${maxIter}`);
  const sampleSize = opts.sampleSize ?? Math.min(n, opts.k * SAMPLE_PER_CENTROID);
  if (!Number.isInteger(sampleSize) || sampleSize < 1) throw invalid(`sampleSize must be a positive integer, got ${sampleSize}`);

  const rand = seededRandom(seed);
  const sample = drawSample(n, sampleSize, rand);
  const m = sample === null ? n : sample.length;
  const wantK = Math.min(opts.k, m);
  const off = new Uint32Array(m); // row offsets in `rows`; n * dim < 2^32 for any segment
  for (let i = 0; i < m; i++) off[i] = (sample === null ? i : sample[i]!) * dim;

  // --- k-means++ seeding over a subsample: each next centre is drawn with probability
  // proportional to D(x)^2. Seeding is inherently k passes over its rows, so it gets fewer rows
  // than Lloyd does; Lloyd then refines over the whole sample.
  const seedPick = drawSample(m, Math.min(m, Math.max(SEED_PER_CENTROID * wantK, SEED_MIN_ROWS)), rand);
  const s = seedPick === null ? m : seedPick.length;
  const seedOff = seedPick === null ? off : Uint32Array.from(seedPick, (i) => off[i]!);
  let distanceCount = 0;
  let centroids = new Float32Array(wantK * dim);
  const nearSq = new Float64Array(s);
  const nearAt = new Int32Array(s);
  const fromNew = new Float64Array(wantK); // distances from the newest centre to the others
  const first = seedOff[Math.floor(rand() * s)]!;
  centroids.set(rows.subarray(first, first + dim), 0);
  let total = 0;
  for (let i = 0; i < s; i++) {
    const d = l2Squared(rows, seedOff[i]!, centroids, 0, dim);
    nearSq[i] = d;
    total += d;
  }
  distanceCount += s;
  let k = 1;
  while (k < wantK) {
    check?.();
    if (!(total > 0)) break; // every seeding row sits on a centre: no more distinct rows
    let target = rand() * total;
    let pick = -1;
    for (let i = 0; i < s; i++) {
      const d = nearSq[i]!;
      if (d <= 0) continue;
      pick = i;
      target -= d;
      if (target < 0) break;
    }
    const t = k++;
    const cOff = t * dim;
    centroids.set(rows.subarray(seedOff[pick]!, seedOff[pick]! + dim), cOff);
    for (let c = 0; c < t; c++) fromNew[c] = l2Squared(centroids, cOff, centroids, c * dim, dim);
    distanceCount += t;
    total = 0;
    for (let i = 0; i < s; i++) {
      const cur = nearSq[i]!;
      // |new - a|^2 >= 4 D^2  =>  |x - new| >= |new - a| - |x - a| >= D: the new centre is no nearer.
      if (fromNew[nearAt[i]!]! < 4 * cur) {
        const d = l2Squared(rows, seedOff[i]!, centroids, cOff, dim);
        distanceCount++;
        if (d < cur) {
          nearSq[i] = d;
          nearAt[i] = t;
        }
      }
      total += nearSq[i]!;
    }
  }
  if (k < wantK) centroids = centroids.slice(0, k * dim);

  // --- Lloyd with Hamerly's bounds: per row, `upper` >= distance to its centre and `lower` <=
  // distance to any other centre.
  const label = new Int32Array(m);
  const upper = new Float64Array(m);
  const lower = new Float64Array(m);
  const cc = new Float64Array(k * k);
  const half = new Float64Array(k);
  const sums = new Float64Array(k * dim);
  const counts = new Int32Array(k);
  const moved = new Float64Array(k);
  const old = new Float32Array(k * dim);

  const assignAll = (): void => {
    distanceCount += centreDistances(centroids, dim, k, cc, half);
    const near = new Nearest(rows, dim, centroids, k, cc, nativeCall);
    let guess = 0;
    for (let i = 0; i < m; i++) {
      if ((i & 4095) === 0) check?.();
      guess = near.find(off[i]!, guess);
      label[i] = guess;
      upper[i] = near.dBest;
      lower[i] = near.second;
    }
    distanceCount += near.distanceCount;
  };

  const moveCentres = (): void => {
    sums.fill(0);
    counts.fill(0);
    for (let i = 0; i < m; i++) {
      const c = label[i]!;
      counts[c]!++;
      const sOff = c * dim;
      const o = off[i]!;
      for (let j = 0; j < dim; j++) sums[sOff + j] += rows[o + j]!;
    }
    for (let c = 0; c < k; c++) {
      if (counts[c]! > 0) continue;
      // An empty centre takes the row farthest from its own centre (lowest row on ties), taken
      // from a centre that keeps at least one row; its bounds are reset so it is looked at again.
      let far = -1;
      for (let i = 0; i < m; i++) if (counts[label[i]!]! > 1 && (far < 0 || upper[i]! > upper[far]!)) far = i;
      if (far < 0) break; // no centre can spare a row (k == distinct rows)
      const from = label[far]!;
      const o = off[far]!;
      for (let j = 0; j < dim; j++) {
        sums[from * dim + j] -= rows[o + j]!;
        sums[c * dim + j] = rows[o + j]!;
      }
      counts[from]!--;
      counts[c] = 1;
      label[far] = c;
      upper[far] = 0;
      lower[far] = 0;
    }
    old.set(centroids);
    let max1 = 0;
    let max2 = 0;
    let argMax = -1;
    for (let c = 0; c < k; c++) {
      const cnt = counts[c]!;
      if (cnt > 0) for (let j = 0; j < dim; j++) centroids[c * dim + j] = sums[c * dim + j]! / cnt;
      const p = Math.sqrt(l2Squared(centroids, c * dim, old, c * dim, dim));
      moved[c] = p;
      if (p > max1) {
        max2 = max1;
        max1 = p;
        argMax = c;
      } else if (p > max2) {
        max2 = p;
      }
    }
    for (let i = 0; i < m; i++) {
      const c = label[i]!;
      upper[i] = upper[i]! + moved[c]!;
      lower[i] = lower[i]! - (c === argMax ? max2 : max1);
    }
  };

  assignAll();
  let iterations = 0;
  let settled = false;
  while (iterations < maxIter) {
    check?.();
    moveCentres();
    iterations++;
    distanceCount += centreDistances(centroids, dim, k, cc, half);
    let near: Nearest | undefined; // built on first need: most iterations on clustered data need few
    let changed = 0;
    for (let i = 0; i < m; i++) {
      const a = label[i]!;
      const bound = half[a]! > lower[i]! ? half[a]! : lower[i]!;
      if (upper[i]! <= bound) continue;
      const o = off[i]!;
      const d = Math.sqrt(l2Squared(rows, o, centroids, a * dim, dim));
      distanceCount++;
      upper[i] = d;
      if (d <= bound) continue;
      if ((i & 1023) === 0) check?.();
      near ??= new Nearest(rows, dim, centroids, k, cc, nativeCall);
      const best = near.find(o, a);
      if (best !== a) {
        changed++;
        label[i] = best;
      }
      upper[i] = near.dBest;
      lower[i] = near.second;
    }
    distanceCount += near?.distanceCount ?? 0;
    if (changed === 0) {
      settled = true;
      break;
    }
  }
  // The centroids are the means of the final assignment (unless it settled, when they already are).
  if (!settled && iterations > 0) moveCentres();

  return { k, centroids, iterations, sampleSize: m, distanceCount };
}

export interface Assignment {
  /** Per row, the index of its nearest centroid. */
  labels: Int32Array;
  /** Per row, its Euclidean distance to that centroid, computed exactly in float64. */
  distances: Float64Array;
}

/**
 * The nearest of `k` centroids (`k * dim`, row-major) for each of `n` rows, with its distance.
 * Ties and near-ties (within float64 rounding) may go to either centroid; the distance reported is
 * always the exact distance to the centroid given, which is what bounds rely on.
 */
export function assign(
  rows: Float32Array, dim: number, n: number, centroids: Float32Array, k: number,
  opts: { check?: () => void; nativeCall?: NativeCall } = {},
): Assignment {
  checkRows(rows, dim, n);
  if (!(centroids instanceof Float32Array)) throw new TypeError('centroids must be a Float32Array');
  if (!Number.isInteger(k) || k < 1 || k > MAX_K || k * dim > centroids.length) {
    throw invalid(`k must be an integer in 1..${MAX_K} with k * dim <= centroids.length, got ${k}`);
  }
  const labels = new Int32Array(n);
  const distances = new Float64Array(n);
  const cc = new Float64Array(k * k);
  const half = new Float64Array(k);
  centreDistances(centroids, dim, k, cc, half);
  const near = new Nearest(rows, dim, centroids, k, cc, opts.nativeCall ?? direct);
  let guess = 0;
  for (let i = 0; i < n; i++) {
    if ((i & 4095) === 0) opts.check?.();
    // Start from the previous row's centroid: neighbouring rows of a clustered segment share one,
    // and a near first guess is what lets the centre-centre test skip the rest.
    guess = near.find(i * dim, guess);
    labels[i] = guess;
    distances[i] = near.dBest;
  }
  return { labels, distances };
}
