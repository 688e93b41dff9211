// Segment bounds: a few centroids with, for each, the radius of the rows assigned to it, so a
// search can order segments nearest first and skip one that cannot hold a better row, without
// touching its data. Owns the computation, the lower bound per metric, and the section's bytes.
// A bound must never exceed the distance the engine reports for any member row: that is what makes
// pruning exact, so every rounding in here errs low, and a bounds section is never used unchecked.

import { StratavecError } from '../format/errors.js';
import { MAX_DIMENSION, SectionKind, type SegmentReader } from '../format/segment.js';
import { dot, l2Squared, type Metric } from './distance.js';
import { assign, kmeans } from './kmeans.js';
import type { NativeCall } from './hnsw.js';

/** Bytes layout version of the bounds section. */
export const BOUNDS_VERSION = 1;
const BOUNDS_HEADER = 16;
/** Most centroids computed per segment (see boundsCentroidCount). */
export const MAX_BOUNDS_CENTROIDS = 512;
/** Most centroids a reader accepts: room for a later writer's choice, still a small allocation. */
export const MAX_DECODED_CENTROIDS = 1024;

/**
 * Where a segment's rows lie: every row is within `radii[c]` (Euclidean, on the vectors as stored;
 * unit vectors for cosine) of the centroid it was assigned to. Holds no reference to the segment's
 * bytes, so keeping it for a cold or unmapped segment keeps nothing else alive.
 */
export interface SegmentBounds {
  readonly dimension: number;
  /** Rows summarised: the segment's count (tombstoned rows included, which only loosens it). */
  readonly rows: number;
  /** Centroids; 0 only for a segment of 0 rows, whose bound is +Infinity. */
  readonly count: number;
  /** `count * dimension`, row-major. */
  readonly centroids: Float32Array;
  /** Per centroid, at least the largest distance of a row assigned to it (rounded up to float32). */
  readonly radii: Float32Array;
  /** Per centroid, |c| (float64); derived on compute and decode, never stored. */
  readonly norms: Float64Array;
}

export interface ComputeBoundsOptions {
  /** Seed of the k-means sample and seeding: the same rows and seed give the same bounds. */
  seed: number;
  /** Most centroids (balls) to keep; default boundsCentroidCount(n). */
  centroids?: number;
  /** Called between units of work; throws to abandon (a worker's stop check). */
  check?: () => void;
  /** Wraps calls into hnswlib (only made for 128 centroids or more); a worker passes TaskStop.native. */
  nativeCall?: NativeCall;
}

// The k-means behind bounds need not converge: every row is measured against its centroid
// afterwards, so a rougher clustering only loosens the radii a little. A small sample and few
// iterations keep bounds a small part of a seal: 6% of a 20k x 128 seal's time (HNSW M 16,
// efConstruction 200) measured here, on a heavily loaded machine.
const BOUNDS_SAMPLE_PER_CENTROID = 64;
const BOUNDS_ITERATIONS = 5;

function corrupt(message: string): StratavecError {
  return new StratavecError('ERR_SEGMENT_CORRUPT', `segment corrupt: bounds ${message}`);
}

/**
 * Centroids for a segment of n rows: one per 16 rows, clamped to 1..512 (and to n); 0 for n = 0.
 * More, smaller balls give a tighter bound, but bounds are held in memory for every segment, cold
 * ones included (c * dim * 4 bytes: 256 KiB at 512 x 128), and every query pays c * dim per segment
 * to order them (512 x 128 multiply-adds: ~0.6 ms for a dozen segments). The cap is
 * reached at 8,192 rows. A region of a clustered layout holds dozens of natural clusters, and
 * with sqrt(n)/4 balls (15 at 4k rows, 35 at 20k) each ball spanned several of them, so bounds
 * pruned nothing (bench:cluster: 98% of segments searched after clustering at 64 balls, 80% at
 * 256 from k-means alone, 14% once computeBounds cuts its widest balls). At 200,000 rows in
 * segments of ~16k rows (bench:cluster without --quick) 256 cut balls of ~60 rows each still left
 * 25% of segments searched (3.5 of 14); 512 leave 16% (2.25 of 14, the same bench), and offline
 * 1024 did no better (an oracle: 11%), for twice the bounds time in the seal (~4 s instead of
 * ~2 s per 16k rows on this loaded machine). A segment of 100k rows costs ~2.6 bytes per row.
 */
export function boundsCentroidCount(n: number): number {
  if (!(n > 0)) return 0;
  return Math.min(n, MAX_BOUNDS_CENTROIDS, Math.max(1, Math.round(n / 16)));
}

const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);

/** The least float32 >= x, for x >= 0: a radius stored as float32 must not shrink. */
function roundUpF32(x: number): number {
  const f = Math.fround(x);
  if (f >= x) return f;
  F32[0] = f;
  U32[0] = U32[0]! + 1; // f >= 0 here, so the next bit pattern is the next float up
  return F32[0]!;
}

function withNorms(dimension: number, rows: number, centroids: Float32Array, radii: Float32Array): SegmentBounds {
  const count = radii.length;
  const norms = new Float64Array(count);
  for (let c = 0; c < count; c++) norms[c] = Math.sqrt(dot(centroids, c * dimension, centroids, c * dimension, dimension));
  return { dimension, rows, count, centroids, radii, norms };
}

/**
 * Bounds of `n` rows of `dim` (row-major; for cosine the unit vectors as stored). k-means over a
 * sample learns half the centroids allowed; every row is assigned and measured exactly, so the
 * radii cover all n rows however good the clustering was. Then, while the count allows, the
 * widest ball is cut in two (splitBall). Centroids left with no row are dropped.
 *
 * Why the cuts: one lower bound per segment is the minimum over its balls, so a single wide ball
 * decides it. Lloyd from k-means++ seeds leaves a few centroids between two natural clusters (or
 * holding a few stray rows of a cluster cut by a region boundary), with radii 3x the median; in
 * bench:cluster --quick (clustered segments of ~3,850 rows, 77 natural clusters each) 242 balls
 * from k-means alone left 10.4 of 13 segments searched per query, 121 from k-means cut up to 242
 * leave 1.8 (an exact oracle, the true nearest row per segment, needs 1.5). Stopping the cuts at
 * 1.3x the median radius did no better there and left straddling balls wherever most balls
 * straddle (k-means learnt fewer centroids than there are clusters); keeping only cuts that narrow
 * a ball by 15% did far worse (10.7 of 13). The cuts cost about what k-means over twice the
 * centroids did (~0.2 s per such segment, measured on this loaded machine).
 */
export function computeBounds(vectors: Float32Array, dim: number, n: number, opts: ComputeBoundsOptions): SegmentBounds {
  if (!(vectors instanceof Float32Array)) throw new TypeError('vectors must be a Float32Array');
  if (!Number.isInteger(dim) || dim < 1 || dim > MAX_DIMENSION) throw new StratavecError('ERR_INVALID_ARGUMENT', `dimension must be in 1..${MAX_DIMENSION}, got ${dim}`);
  if (!Number.isInteger(n) || n < 0 || n * dim > vectors.length) throw new StratavecError('ERR_INVALID_ARGUMENT', `${n} rows of ${dim} do not fit in ${vectors.length} floats`);
  const cap = opts.centroids ?? boundsCentroidCount(n);
  if (n === 0) return withNorms(dim, 0, new Float32Array(0), new Float32Array(0));
  if (!Number.isInteger(cap) || cap < 1 || cap > MAX_DECODED_CENTROIDS) {
    throw new StratavecError('ERR_INVALID_ARGUMENT', `centroids must be an integer in 1..${MAX_DECODED_CENTROIDS}, got ${cap}`);
  }
  const want = Math.ceil(cap / 2);
  const stop = { ...(opts.check ? { check: opts.check } : {}), ...(opts.nativeCall ? { nativeCall: opts.nativeCall } : {}) };
  const km = kmeans(vectors, dim, n, { k: want, seed: opts.seed, sampleSize: Math.min(n, want * BOUNDS_SAMPLE_PER_CENTROID), iterations: BOUNDS_ITERATIONS, ...stop });
  const { labels } = assign(vectors, dim, n, km.centroids, km.k, stop);
  const counts = new Uint32Array(km.k);
  for (let i = 0; i < n; i++) counts[labels[i]!]!++;
  const balls: Ball[] = [];
  const members: Uint32Array[] = [];
  for (let c = 0; c < km.k; c++) members.push(new Uint32Array(counts[c]!));
  counts.fill(0);
  for (let i = 0; i < n; i++) {
    const c = labels[i]!;
    members[c]![counts[c]!++] = i;
  }
  for (let c = 0; c < km.k; c++) {
    if (members[c]!.length === 0) continue;
    const centroid = km.centroids.slice(c * dim, c * dim + dim);
    balls.push({ centroid, rows: members[c]!, radius: radiusOf(vectors, dim, members[c]!, centroid), final: false });
  }
  while (balls.length < cap) {
    opts.check?.();
    let widest: Ball | undefined;
    for (const b of balls) if (!b.final && (widest === undefined || b.radius > widest.radius)) widest = b;
    if (widest === undefined || !(widest.radius > 0)) break;
    const halves = splitBall(vectors, dim, widest);
    if (halves === undefined) {
      widest.final = true; // every row of it at one point, or the cut left a side empty
      continue;
    }
    balls[balls.indexOf(widest)] = halves[0];
    balls.push(halves[1]);
  }
  const centroids = new Float32Array(balls.length * dim);
  const radii = new Float32Array(balls.length);
  balls.forEach((b, u) => {
    centroids.set(b.centroid, u * dim);
    radii[u] = roundUpF32(b.radius);
  });
  return withNorms(dim, n, centroids, radii);
}

/** Lloyd steps of a 2-means cut: it starts from the two extreme rows, so it settles quickly. */
const SPLIT_ITERATIONS = 4;

interface Ball {
  centroid: Float32Array;
  /** Member rows, ascending. */
  rows: Uint32Array;
  /** The largest distance of a member to `centroid`, measured (float64 over float32 values). */
  radius: number;
  /** Found not to split: never tried again. */
  final: boolean;
}

function radiusOf(vectors: Float32Array, dim: number, rows: Uint32Array, centroid: Float32Array): number {
  let r = 0;
  for (const i of rows) {
    const d = Math.sqrt(l2Squared(vectors, i * dim, centroid, 0, dim));
    if (d > r) r = d;
  }
  return r;
}

/**
 * Cuts a ball in two by 2-means over its members, seeded with the member farthest from its centre
 * and the member farthest from that one (deterministic). Each half's radius is measured over its
 * own members, so the result is a valid bound whatever the cut. Undefined when one side is empty.
 */
function splitBall(vectors: Float32Array, dim: number, ball: Ball): [Ball, Ball] | undefined {
  const { rows } = ball;
  if (rows.length < 2) return undefined;
  const farthestFrom = (c: Float32Array, off: number): number => {
    let best = rows[0]!;
    let bestD = -1;
    for (const i of rows) {
      const d = l2Squared(vectors, i * dim, c, off, dim);
      if (d > bestD) {
        bestD = d;
        best = i;
      }
    }
    return bestD > 0 ? best : -1;
  };
  const a = farthestFrom(ball.centroid, 0);
  if (a < 0) return undefined;
  const b = farthestFrom(vectors, a * dim);
  if (b < 0) return undefined;
  const cents = [vectors.slice(a * dim, a * dim + dim), vectors.slice(b * dim, b * dim + dim)] as const;
  const side = new Uint8Array(rows.length);
  const sums = new Float64Array(2 * dim);
  for (let it = 0; it < SPLIT_ITERATIONS; it++) {
    sums.fill(0);
    const count = [0, 0];
    rows.forEach((i, k) => {
      const s = l2Squared(vectors, i * dim, cents[1], 0, dim) < l2Squared(vectors, i * dim, cents[0], 0, dim) ? 1 : 0;
      side[k] = s;
      count[s]!++;
      for (let j = 0; j < dim; j++) sums[s * dim + j] += vectors[i * dim + j]!;
    });
    if (count[0] === 0 || count[1] === 0) return undefined;
    for (let s = 0; s < 2; s++) for (let j = 0; j < dim; j++) cents[s]![j] = sums[s * dim + j]! / count[s]!;
  }
  // Members by the side the last assignment gave them; centroids are their (float32) means.
  const parts = [0, 1].map((s) => rows.filter((_, k) => side[k] === s));
  if (parts[0]!.length === 0 || parts[1]!.length === 0) return undefined;
  return [0, 1].map((s) => ({ centroid: cents[s]!, rows: parts[s]!, radius: radiusOf(vectors, dim, parts[s]!, cents[s]!), final: false })) as [Ball, Ball];
}

/**
 * A lower bound on the distance the engine reports (index/distance.ts units) between `query` and
 * ANY row of the segment: l2 squared Euclidean, cosine and ip 1 - dot. +Infinity for a segment of
 * no rows; -Infinity (never prune) for a query with a NaN or infinite value or, for cosine, no
 * direction.
 *
 * Per centroid c with radius r, every member x has |x - c| <= r, so:
 * - l2: |q - x| >= |q - c| - r, bound max(0, min_c(|q - c| - r_c))^2;
 * - ip: q.x = q.c + q.(x - c) <= q.c + |q| r, bound 1 - max_c(q.c + |q| r_c);
 * - cosine (q normalised here, rows unit as stored): 1 - q.x = |q - x|^2 / 2 >= (|q - c| - r)^2 / 2,
 *   and the ip bound 1 - (q.c + r) holds too; the larger of the two is used per centroid.
 *
 * Float32 slack: hnswlib reports distances computed in float32, whose sums of `dim` products can be
 * off by up to ~dim * 2^-24 relative (of the sum of |terms|), and the engine's unit vectors are unit
 * only to float32 rounding. A bound that is exact in real arithmetic could then exceed a reported
 * distance by a few ulps and prune a tie at the k-th place. So every bound is lowered by twice that
 * worst case: 2 (dim + 8) 2^-24 relative for l2 (all terms positive), and the same times
 * 1 + |q| (|c| + r) absolute for ip and cosine (|terms| sum to at most |q| |x| <= |q| (|c| + r)).
 * At 128 dimensions that is 1.6e-5 relative: nothing a real pruning decision notices.
 *
 * Pass the query as the segment search will see it (the engine's Float32Array; for cosine its
 * normalised copy, though any non-zero scaling gives the same bound). Prune a segment only when
 * its bound is strictly greater than the current k-th distance: a row at exactly the k-th distance
 * may still win on the tie-break.
 */
export function lowerBound(bounds: SegmentBounds, query: Float32Array, metric: Metric): number {
  if (!(query instanceof Float32Array)) throw new TypeError('query must be a Float32Array');
  const dim = bounds.dimension;
  if (query.length !== dim) {
    throw new StratavecError('ERR_DIMENSION_MISMATCH', `query has ${query.length} dimensions, the segment's bounds ${dim}`);
  }
  const { count, centroids, radii, norms } = bounds;
  if (count === 0) return Infinity;
  const slack = (dim + 8) * 2 ** -23;
  const qq = dot(query, 0, query, 0, dim);
  // A NaN would make every comparison below false and could leave +Infinity: never prune on one.
  if (!Number.isFinite(qq)) return -Infinity;
  const qn = Math.sqrt(qq);
  let result: number;
  switch (metric) {
    case 'l2': {
      // The smallest |q - c| - r over the balls, with two shortcuts that leave it unchanged: a
      // ball whose partial sum of squares already passes (gap + r)^2 cannot beat the gap found
      // (l2GapUnder), and once the query is inside a ball the bound is 0. Every search computes
      // this for every segment, so it is the search's fixed cost; on the cluster bench's segments
      // (512 balls, 128 dimensions) the shortcuts take it from 1.50 to 0.70 ms per query over 24.
      let gap = Infinity;
      for (let c = 0; c < count && gap > 0; c++) {
        const g = l2GapUnder(query, centroids, c * dim, dim, radii[c]!, gap);
        if (g < gap) gap = g;
      }
      result = gap > 0 ? gap * gap * (1 - slack) : 0;
      break;
    }
    case 'ip': {
      result = Infinity;
      for (let c = 0; c < count; c++) {
        const r = radii[c]!;
        const b = 1 - (dot(query, 0, centroids, c * dim, dim) + qn * r) - slack * (1 + qn * (norms[c]! + r));
        if (b < result) result = b;
      }
      break;
    }
    case 'cosine': {
      if (!(qn > 0)) return -Infinity;
      result = Infinity;
      for (let c = 0; c < count; c++) {
        const r = radii[c]!;
        const nc = norms[c]!;
        const qc = dot(query, 0, centroids, c * dim, dim) / qn;
        // |q - c|^2 for unit q, from q.c: no second pass over the query.
        const sq = 1 - 2 * qc + nc * nc;
        const g = (sq > 0 ? Math.sqrt(sq) : 0) - r;
        const ball = g > 0 ? (g * g) / 2 : 0;
        const cone = 1 - (qc + r);
        const b = (ball > cone ? ball : cone) - slack * (1 + nc + r);
        if (b < result) result = b;
      }
      break;
    }
    default:
      throw new TypeError(`unknown metric ${JSON.stringify(metric)}: expected 'l2', 'ip' or 'cosine'`);
  }
  return result;
}

/** Dimensions summed between two checks of the running sum in l2GapUnder. */
const ABANDON_BLOCK = 32;

/**
 * |q - c| - r for the ball at `centroids[off ..]`, or Infinity as soon as the partial sum of
 * squares shows it cannot be below `under` (the sum only grows, so once it passes (under + r)^2
 * the full distance minus r is at least `under`).
 */
function l2GapUnder(q: Float32Array, centroids: Float32Array, off: number, dim: number, r: number, under: number): number {
  const reach = under + r;
  if (reach <= 0) return Infinity; // the distance is never negative
  const limit = reach === Infinity ? Infinity : reach * reach;
  let s = 0;
  for (let block = 0; block < dim; block += ABANDON_BLOCK) {
    s += l2Squared(q, block, centroids, off + block, Math.min(ABANDON_BLOCK, dim - block));
    if (s > limit) return Infinity;
  }
  return Math.sqrt(s) - r;
}

// ---------------------------------------------------------------------------------------------
// Bytes (little-endian): u32 version | u32 dimension | u32 count | u32 rows |
// f32 radii[count] | f32 centroids[count * dimension]. The section's CRC is the segment table's.

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export function encodeBounds(bounds: SegmentBounds): Buffer {
  const { dimension: dim, count, rows, radii, centroids } = bounds;
  if (radii.length !== count || centroids.length !== count * dim) throw new RangeError('bounds arrays disagree with their count');
  const out = Buffer.alloc(BOUNDS_HEADER + 4 * count * (1 + dim));
  out.writeUInt32LE(BOUNDS_VERSION, 0);
  out.writeUInt32LE(dim, 4);
  out.writeUInt32LE(count, 8);
  out.writeUInt32LE(rows, 12);
  let at = BOUNDS_HEADER;
  for (const arr of [radii, centroids]) {
    if (LITTLE_ENDIAN_HOST) out.set(new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength), at);
    else for (let i = 0; i < arr.length; i++) out.writeFloatLE(arr[i]!, at + 4 * i);
    at += arr.byteLength;
  }
  return out;
}

function readFloats(bytes: Uint8Array, at: number, n: number): Float32Array {
  const out = new Float32Array(n); // a copy: bounds outlive the mapping they were read from
  if (LITTLE_ENDIAN_HOST) {
    new Uint8Array(out.buffer).set(bytes.subarray(at, at + 4 * n));
  } else {
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let i = 0; i < n; i++) out[i] = dv.getFloat32(at + 4 * i, true);
  }
  return out;
}

/**
 * Parses a bounds section, checking every field before allocating (the allocation is at most the
 * section's own size). With `expect`, the bounds must describe a segment of that shape. Anything
 * malformed is ERR_SEGMENT_CORRUPT: a wrong bound would silently drop results.
 */
export function decodeBounds(bytes: Uint8Array, expect?: { dimension: number; rows: number }): SegmentBounds {
  if (!(bytes instanceof Uint8Array)) throw new TypeError('bounds bytes must be a Uint8Array');
  if (bytes.length < BOUNDS_HEADER) throw corrupt(`section of ${bytes.length} bytes is truncated`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = dv.getUint32(0, true);
  const dim = dv.getUint32(4, true);
  const count = dv.getUint32(8, true);
  const rows = dv.getUint32(12, true);
  if (version !== BOUNDS_VERSION) throw corrupt(`version ${version} is not one this reader knows (${BOUNDS_VERSION})`);
  if (dim < 1 || dim > MAX_DIMENSION) throw corrupt(`dimension ${dim} is outside 1..${MAX_DIMENSION}`);
  if (count > MAX_DECODED_CENTROIDS) throw corrupt(`${count} centroids is past the cap of ${MAX_DECODED_CENTROIDS}`);
  if (count > rows || (count === 0) !== (rows === 0)) throw corrupt(`${count} centroids cannot summarise ${rows} rows`);
  const size = BOUNDS_HEADER + 4 * count * (1 + dim);
  if (bytes.length !== size) throw corrupt(`section is ${bytes.length} bytes; ${count} centroids of ${dim} need ${size}`);
  if (expect && (dim !== expect.dimension || rows !== expect.rows)) {
    throw corrupt(`describe ${rows} rows of ${dim}; the segment holds ${expect.rows} of ${expect.dimension}`);
  }
  const radii = readFloats(bytes, BOUNDS_HEADER, count);
  const centroids = readFloats(bytes, BOUNDS_HEADER + 4 * count, count * dim);
  for (let c = 0; c < count; c++) {
    const r = radii[c]!;
    if (!(r >= 0) || r === Infinity) throw corrupt(`radius ${c} is ${r}`);
  }
  for (let i = 0; i < centroids.length; i++) {
    if (!Number.isFinite(centroids[i]!)) throw corrupt(`centroid ${Math.floor(i / dim)} holds ${centroids[i]}`);
  }
  return withNorms(dim, rows, centroids, radii);
}

/**
 * The bounds of an open segment file, CRC-checked, or undefined when it has none (files written
 * before bounds existed: such a segment is never pruned). The section must be stored raw (local
 * files and stubs are; a compressed cold copy's must be decoded by a codec first).
 */
export function readSegmentBounds(reader: SegmentReader): SegmentBounds | undefined {
  if (!reader.entry(SectionKind.bounds)) return undefined;
  reader.verifySection(SectionKind.bounds);
  return decodeBounds(reader.raw(SectionKind.bounds), { dimension: reader.header.dimension, rows: reader.header.count });
}
