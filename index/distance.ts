// The engine's distance semantics and the scalar kernels that compute them. Every distance the
// engine reports, from a flat scan or from HNSW, means the same thing and is comparable across
// segments. Never normalizes behind the caller's back and never allocates per call.

/**
 * Distance metrics, and what a reported `distance` means for each (smaller is always nearer):
 *
 * - `'l2'`: squared Euclidean distance, sum((a_i - b_i)^2). Not its square root, as in hnswlib,
 *   faiss and Milvus; the ranking is the same and the root would cost a sqrt per candidate.
 * - `'ip'`: 1 - dot(a, b). Vectors are used as given. Can be negative; this is hnswlib's
 *   InnerProductSpace, so HNSW and flat scans agree.
 * - `'cosine'`: 1 - cos(a, b), in [0, 2]. The engine normalizes each vector to unit length on
 *   upsert and the query at search time, so everything below this module's callers sees unit
 *   vectors and cosine is computed as 1 - dot. The HNSW graph for cosine is therefore built in
 *   hnswlib's `'ip'` space, never its `'cosine'` space, which would normalize a second time.
 *   A zero vector cannot be normalized; the engine must reject it (see `normalizeInPlace`).
 */
export { type Metric, METRICS, isMetric } from '../format/segment.js';
import type { Metric } from '../format/segment.js';

/** Distance between `a[aOff .. aOff+dim)` and `b[bOff .. bOff+dim)`. */
export type DistanceFn = (a: Float32Array, aOff: number, b: Float32Array, bOff: number, dim: number) => number;

/**
 * Scales `v` to unit length in place. Returns false, leaving `v` untouched, when it has no
 * direction (all zeros) or its norm is not finite; the caller decides whether that is an error.
 */
export function normalizeInPlace(v: Float32Array): boolean {
  let sum = 0;
  for (let i = 0; i < v.length; i++) sum += v[i]! * v[i]!;
  if (!(sum > 0) || !Number.isFinite(sum)) return false;
  const inv = 1 / Math.sqrt(sum);
  for (let i = 0; i < v.length; i++) v[i] = v[i]! * inv;
  return true;
}

// Four independent accumulators break the add dependency chain so V8's generated code can keep
// several multiplies in flight; sums are in float64, so these are slightly more exact than
// hnswlib's float32 SIMD (the two agree to ~1e-6 relative, far below any ranking difference).

export function l2Squared(a: Float32Array, aOff: number, b: Float32Array, bOff: number, dim: number): number {
  let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  const end4 = dim & ~3;
  let i = 0;
  for (; i < end4; i += 4) {
    const d0 = a[aOff + i]! - b[bOff + i]!;
    const d1 = a[aOff + i + 1]! - b[bOff + i + 1]!;
    const d2 = a[aOff + i + 2]! - b[bOff + i + 2]!;
    const d3 = a[aOff + i + 3]! - b[bOff + i + 3]!;
    s0 += d0 * d0;
    s1 += d1 * d1;
    s2 += d2 * d2;
    s3 += d3 * d3;
  }
  for (; i < dim; i++) {
    const d = a[aOff + i]! - b[bOff + i]!;
    s0 += d * d;
  }
  return (s0 + s1) + (s2 + s3);
}

export function dot(a: Float32Array, aOff: number, b: Float32Array, bOff: number, dim: number): number {
  let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  const end4 = dim & ~3;
  let i = 0;
  for (; i < end4; i += 4) {
    s0 += a[aOff + i]! * b[bOff + i]!;
    s1 += a[aOff + i + 1]! * b[bOff + i + 1]!;
    s2 += a[aOff + i + 2]! * b[bOff + i + 2]!;
    s3 += a[aOff + i + 3]! * b[bOff + i + 3]!;
  }
  for (; i < dim; i++) s0 += a[aOff + i]! * b[bOff + i]!;
  return (s0 + s1) + (s2 + s3);
}

// A copy of dot() rather than a call to it, so flatSearch's hot loop has one call level for V8 to
// inline, not two.
export function innerProductDistance(a: Float32Array, aOff: number, b: Float32Array, bOff: number, dim: number): number {
  let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  const end4 = dim & ~3;
  let i = 0;
  for (; i < end4; i += 4) {
    s0 += a[aOff + i]! * b[bOff + i]!;
    s1 += a[aOff + i + 1]! * b[bOff + i + 1]!;
    s2 += a[aOff + i + 2]! * b[bOff + i + 2]!;
    s3 += a[aOff + i + 3]! * b[bOff + i + 3]!;
  }
  for (; i < dim; i++) s0 += a[aOff + i]! * b[bOff + i]!;
  return 1 - ((s0 + s1) + (s2 + s3));
}

/**
 * The kernel for `metric`. `'cosine'` returns the same kernel as `'ip'`: inputs are already unit
 * length (see `Metric`).
 */
export function distanceFn(metric: Metric): DistanceFn {
  switch (metric) {
    case 'l2':
      return l2Squared;
    case 'ip':
    case 'cosine':
      return innerProductDistance;
    default:
      throw new TypeError(`unknown metric ${JSON.stringify(metric)}: expected 'l2', 'ip' or 'cosine'`);
  }
}

/** The hnswlib space a metric is built in (see `Metric` for why cosine maps to `'ip'`). */
export function hnswSpaceFor(metric: Metric): 'l2' | 'ip' {
  return metric === 'l2' ? 'l2' : 'ip';
}
