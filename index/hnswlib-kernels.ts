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
