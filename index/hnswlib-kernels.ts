// Distance kernels that reproduce hnswlib-node's float32 distances bit for bit, so a graph searched
// in place (mapped-hnsw.ts) takes exactly the decisions hnswlib takes on it. They must never
// allocate, and never change their summation order without checking it against hnswlib's.
//
// What hnswlib computes (space_l2.h, space_ip.h, as hnswlib-node builds them: node-gyp's default
// flags on x86-64 define __SSE__ but not __AVX__, so the SSE kernels are the ones compiled in):
// - float32 arithmetic throughout, no FMA (SSE has none; the scalar loops are not contracted into
//   FMA on a target without it, nor reassociated without -ffast-math);
// - SSE: four lanes, lane i summing elements j = i (mod 4) in order, over the first
//   `dim` elements if dim % 4 == 0, else the first floor(dim/16)*16 (dim > 16) or floor(dim/4)*4
//   (4 < dim < 16); the lanes are then added left to right, ((l0 + l1) + l2) + l3, and any
//   remaining elements are summed in order from 0 and added last;
// - without SSE (arm64 and other hosts): one sequential sum;
// - inner product distance is 1 - sum, rounded to float32.
// Math.fround after every operation is exact emulation: a float64 add, subtract or multiply of two
// float32 values, rounded once to float32, equals the float32 operation (float64 has more than
// 2*24 + 2 bits of precision). TurboFan turns most of these pairs into single float32 instructions.

const fr = Math.fround;

/** Whether hnswlib-node on this host was compiled with its SSE kernels (see above). */
export const HNSWLIB_SSE = process.arch === 'x64' || process.arch === 'ia32';

/**
 * How many leading elements hnswlib sums in four lanes for this dimension (0: all sequential).
 * The remaining `dim - lanes` elements form the sequential tail.
 */
export function laneElements(dim: number, sse: boolean = HNSWLIB_SSE): number {
  if (!sse) return 0;
  if (dim % 4 === 0) return dim;
  if (dim > 16) return dim - (dim % 16);
  if (dim > 4) return dim - (dim % 4);
  return 0;
}

/**
 * Squared L2 between `q[0..dim)` and `v[off..off+dim)` for dim % 16 == 0 on SSE hosts (the common
 * case: 128, 384, 768, 1536 ...). Stops early, returning a partial sum >= `bound`, once the
 * partial sum reaches `bound`: every lane only grows (its terms are squares) and float32 addition
 * is monotonic, so the full distance could not be below `bound` either. Pass Infinity for the
 * exact value.
 */
export function l2Lanes16(q: Float32Array, v: Float32Array, off: number, dim: number, bound: number): number {
  let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  for (let j = 0; j < dim; j += 16) {
    const o = off + j;
    let d0 = fr(v[o]! - q[j]!), d1 = fr(v[o + 1]! - q[j + 1]!), d2 = fr(v[o + 2]! - q[j + 2]!), d3 = fr(v[o + 3]! - q[j + 3]!);
    s0 = fr(s0 + fr(d0 * d0)); s1 = fr(s1 + fr(d1 * d1)); s2 = fr(s2 + fr(d2 * d2)); s3 = fr(s3 + fr(d3 * d3));
    d0 = fr(v[o + 4]! - q[j + 4]!); d1 = fr(v[o + 5]! - q[j + 5]!); d2 = fr(v[o + 6]! - q[j + 6]!); d3 = fr(v[o + 7]! - q[j + 7]!);
    s0 = fr(s0 + fr(d0 * d0)); s1 = fr(s1 + fr(d1 * d1)); s2 = fr(s2 + fr(d2 * d2)); s3 = fr(s3 + fr(d3 * d3));
    d0 = fr(v[o + 8]! - q[j + 8]!); d1 = fr(v[o + 9]! - q[j + 9]!); d2 = fr(v[o + 10]! - q[j + 10]!); d3 = fr(v[o + 11]! - q[j + 11]!);
    s0 = fr(s0 + fr(d0 * d0)); s1 = fr(s1 + fr(d1 * d1)); s2 = fr(s2 + fr(d2 * d2)); s3 = fr(s3 + fr(d3 * d3));
    d0 = fr(v[o + 12]! - q[j + 12]!); d1 = fr(v[o + 13]! - q[j + 13]!); d2 = fr(v[o + 14]! - q[j + 14]!); d3 = fr(v[o + 15]! - q[j + 15]!);
    s0 = fr(s0 + fr(d0 * d0)); s1 = fr(s1 + fr(d1 * d1)); s2 = fr(s2 + fr(d2 * d2)); s3 = fr(s3 + fr(d3 * d3));
    // The same rounding as the final combination, so the partial is a true lower bound of it.
    if ((j & 31) === 16 && fr(fr(fr(s0 + s1) + s2) + s3) >= bound) return fr(fr(fr(s0 + s1) + s2) + s3);
  }
  return fr(fr(fr(s0 + s1) + s2) + s3);
}

/** 1 - dot in float32 for dim % 16 == 0 on SSE hosts (no early stop: a dot product can go down). */
export function ipLanes16(q: Float32Array, v: Float32Array, off: number, dim: number): number {
  let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  for (let j = 0; j < dim; j += 16) {
    const o = off + j;
    s0 = fr(s0 + fr(v[o]! * q[j]!)); s1 = fr(s1 + fr(v[o + 1]! * q[j + 1]!)); s2 = fr(s2 + fr(v[o + 2]! * q[j + 2]!)); s3 = fr(s3 + fr(v[o + 3]! * q[j + 3]!));
    s0 = fr(s0 + fr(v[o + 4]! * q[j + 4]!)); s1 = fr(s1 + fr(v[o + 5]! * q[j + 5]!)); s2 = fr(s2 + fr(v[o + 6]! * q[j + 6]!)); s3 = fr(s3 + fr(v[o + 7]! * q[j + 7]!));
    s0 = fr(s0 + fr(v[o + 8]! * q[j + 8]!)); s1 = fr(s1 + fr(v[o + 9]! * q[j + 9]!)); s2 = fr(s2 + fr(v[o + 10]! * q[j + 10]!)); s3 = fr(s3 + fr(v[o + 11]! * q[j + 11]!));
    s0 = fr(s0 + fr(v[o + 12]! * q[j + 12]!)); s1 = fr(s1 + fr(v[o + 13]! * q[j + 13]!)); s2 = fr(s2 + fr(v[o + 14]! * q[j + 14]!)); s3 = fr(s3 + fr(v[o + 15]! * q[j + 15]!));
  }
  return fr(1 - fr(fr(fr(s0 + s1) + s2) + s3));
}

/**
 * Squared L2 for any dimension and either summation order: `lanes` from `laneElements`. Same early
 * stop as `l2Lanes16`, checked once after the lanes.
 */
export function l2General(q: Float32Array, v: Float32Array, off: number, dim: number, lanes: number, bound: number): number {
  let r = 0;
  if (lanes > 0) {
    let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (let j = 0; j < lanes; j += 4) {
      const o = off + j;
      const d0 = fr(v[o]! - q[j]!), d1 = fr(v[o + 1]! - q[j + 1]!), d2 = fr(v[o + 2]! - q[j + 2]!), d3 = fr(v[o + 3]! - q[j + 3]!);
      s0 = fr(s0 + fr(d0 * d0)); s1 = fr(s1 + fr(d1 * d1)); s2 = fr(s2 + fr(d2 * d2)); s3 = fr(s3 + fr(d3 * d3));
    }
    r = fr(fr(fr(s0 + s1) + s2) + s3);
    if (lanes === dim || r >= bound) return r;
  }
  let t = 0;
  for (let j = lanes; j < dim; j++) {
    const d = fr(v[off + j]! - q[j]!);
    t = fr(t + fr(d * d));
  }
  // hnswlib returns the lanes plus the tail; with no lanes, the tail alone (0 + t is exact).
  return fr(r + t);
}

/** 1 - dot in float32 for any dimension and either summation order (see `l2General`). */
export function ipGeneral(q: Float32Array, v: Float32Array, off: number, dim: number, lanes: number): number {
  let r = 0;
  if (lanes > 0) {
    let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (let j = 0; j < lanes; j += 4) {
      const o = off + j;
      s0 = fr(s0 + fr(v[o]! * q[j]!)); s1 = fr(s1 + fr(v[o + 1]! * q[j + 1]!));
      s2 = fr(s2 + fr(v[o + 2]! * q[j + 2]!)); s3 = fr(s3 + fr(v[o + 3]! * q[j + 3]!));
    }
    r = fr(fr(fr(s0 + s1) + s2) + s3);
    if (lanes === dim) return fr(1 - r);
  }
  let t = 0;
  for (let j = lanes; j < dim; j++) t = fr(t + fr(v[off + j]! * q[j]!));
  return fr(1 - fr(r + t));
}

// ---------------------------------------------------------------------------------------------
// Screening kernels: the same sums in float64, two rows at a time so both share the query loads
// and their additions overlap. About 2.5x the speed of the float32 kernels above (whose every step
// is a round trip through float32). Their value differs from hnswlib's float32 one by at most
// `screenError(dim)` relative (float32 rounding of each product and of sums of dim terms), which
// is what lets a search reject a candidate on the float64 value alone when it is clearly past the
// bound, and compute the exact float32 value only for the few that might get in.

/**
 * A safe bound on |hnswlib's float32 squared L2 - the float64 sum| / (the float64 sum), for either
 * summation order: each of the <= dim sequential additions and the per-term roundings contribute
 * at most 2^-24 relative of the (non-negative) total; doubled for margin. Subnormal results add an
 * absolute error below 2^-140 per operation, covered by SCREEN_ABS.
 */
export function screenError(dim: number): number {
  return (dim + 8) * 2 ** -23;
}
export const SCREEN_ABS = 1e-35;

/**
 * Squared L2 in float64 of rows at `a` and `b` against `q` (dim % 4 == 0), into out[i], out[i+1].
 * Stops early once both partial sums reach `bound` (they only grow), leaving the partials.
 */
export function l2Pair64(q: Float64Array, v: Float32Array, a: number, b: number, dim: number, bound: number, out: Float64Array, i: number): void {
  let s0 = 0, s1 = 0, s2 = 0, s3 = 0, t0 = 0, t1 = 0, t2 = 0, t3 = 0;
  for (let j = 0; j < dim; j += 4) {
    const q0 = q[j]!, q1 = q[j + 1]!, q2 = q[j + 2]!, q3 = q[j + 3]!;
    const o = a + j, p = b + j;
    const d0 = v[o]! - q0, d1 = v[o + 1]! - q1, d2 = v[o + 2]! - q2, d3 = v[o + 3]! - q3;
    const e0 = v[p]! - q0, e1 = v[p + 1]! - q1, e2 = v[p + 2]! - q2, e3 = v[p + 3]! - q3;
    s0 += d0 * d0; s1 += d1 * d1; s2 += d2 * d2; s3 += d3 * d3;
    t0 += e0 * e0; t1 += e1 * e1; t2 += e2 * e2; t3 += e3 * e3;
    if ((j & 15) === 12 && (s0 + s1) + (s2 + s3) >= bound && (t0 + t1) + (t2 + t3) >= bound) break;
  }
  out[i] = (s0 + s1) + (s2 + s3);
  out[i + 1] = (t0 + t1) + (t2 + t3);
}

/** Squared L2 in float64 of one row, any dimension, with the same early stop. */
export function l2One64(q: Float64Array, v: Float32Array, a: number, dim: number, bound: number): number {
  let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  const end4 = dim & ~3;
  let j = 0;
  for (; j < end4; j += 4) {
    const o = a + j;
    const d0 = v[o]! - q[j]!, d1 = v[o + 1]! - q[j + 1]!, d2 = v[o + 2]! - q[j + 2]!, d3 = v[o + 3]! - q[j + 3]!;
    s0 += d0 * d0; s1 += d1 * d1; s2 += d2 * d2; s3 += d3 * d3;
    if ((j & 15) === 12 && (s0 + s1) + (s2 + s3) >= bound) return (s0 + s1) + (s2 + s3);
  }
  for (; j < dim; j++) {
    const d = v[a + j]! - q[j]!;
    s0 += d * d;
  }
  return (s0 + s1) + (s2 + s3);
}

/** 1 - dot in float64 of rows at `a` and `b` against `q` (dim % 4 == 0), into out[i], out[i+1]. */
export function ipPair64(q: Float64Array, v: Float32Array, a: number, b: number, dim: number, out: Float64Array, i: number): void {
  let s0 = 0, s1 = 0, s2 = 0, s3 = 0, t0 = 0, t1 = 0, t2 = 0, t3 = 0;
  for (let j = 0; j < dim; j += 4) {
    const q0 = q[j]!, q1 = q[j + 1]!, q2 = q[j + 2]!, q3 = q[j + 3]!;
    const o = a + j, p = b + j;
    s0 += v[o]! * q0; s1 += v[o + 1]! * q1; s2 += v[o + 2]! * q2; s3 += v[o + 3]! * q3;
    t0 += v[p]! * q0; t1 += v[p + 1]! * q1; t2 += v[p + 2]! * q2; t3 += v[p + 3]! * q3;
  }
  out[i] = 1 - ((s0 + s1) + (s2 + s3));
  out[i + 1] = 1 - ((t0 + t1) + (t2 + t3));
}

/** 1 - dot in float64 of one row, any dimension. */
export function ipOne64(q: Float64Array, v: Float32Array, a: number, dim: number): number {
  let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  const end4 = dim & ~3;
  let j = 0;
  for (; j < end4; j += 4) {
    const o = a + j;
    s0 += v[o]! * q[j]!; s1 += v[o + 1]! * q[j + 1]!; s2 += v[o + 2]! * q[j + 2]!; s3 += v[o + 3]! * q[j + 3]!;
  }
  for (; j < dim; j++) s0 += v[a + j]! * q[j]!;
  return 1 - ((s0 + s1) + (s2 + s3));
}
