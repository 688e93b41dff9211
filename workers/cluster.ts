// The clustering task: learns the partitions of a collection (k-means over a sample of the live rows
// of its segment files) and assigns every live row to its nearest centroid, so that clustering
// compaction can write one segment per region (the `compact` task writes them, one task each, in
// parallel). A region with more rows than a segment may hold is cut into pieces by recursive
// bisection along its principal axis. Sources come as paths plus the rows to keep and are
// CRC-checked against the manifest first, as compaction does. It writes nothing.

import { StratavecError } from '../format/errors.js';
import { mapReadOnly } from '../format/mapped-file.js';
import { SegmentReader, HEADER_SIZE, TRAILER_SIZE } from '../format/segment.js';
import { assign, kmeans, seededRandom, MAX_K } from '../index/kmeans.js';
import type { CompactSource } from './compact.js';
import { TaskStop } from './task-stop.js';

export interface ClusterPlanTask {
  sources: CompactSource[];
  dimension: number;
  /** Regions wanted (k-means k), 1..MAX_K. */
  k: number;
  /** Rows one output segment may hold; a larger region is cut into pieces of at most this. */
  maxRecords: number;
  seed: number;
  /** Rows k-means learns from; default min(rows, max(256 k, 16384), 262144). */
  sampleSize?: number;
}

/** One output segment: its region and, per source (in task order), the rows it takes, ascending. */
export interface ClusterGroup {
  region: number;
  rows: Uint32Array[];
}

export interface ClusterPlanResult {
  /** Centroids learnt (k or fewer when the sample had fewer distinct rows), `k * dimension`. */
  k: number;
  centroids: Float32Array;
  groups: ClusterGroup[];
  /** Live rows seen, rows sampled, k-means iterations, regions cut into pieces. */
  rows: number;
  sampleSize: number;
  iterations: number;
  splitRegions: number;
  ms: { read: number; kmeans: number; assign: number; split: number };
}

const MIN_SAMPLE = 16_384;
const MAX_SAMPLE = 262_144;
const POWER_ITERATIONS = 12;

export async function clusterPlan(task: ClusterPlanTask, stop: TaskStop = TaskStop.never): Promise<ClusterPlanResult> {
  const dim = task.dimension;
  if (!Number.isInteger(task.k) || task.k < 1 || task.k > MAX_K) throw new StratavecError('ERR_INVALID_ARGUMENT', `k must be in 1..${MAX_K}, got ${task.k}`);
  if (!Number.isInteger(task.maxRecords) || task.maxRecords < 1) throw new StratavecError('ERR_INVALID_ARGUMENT', `maxRecords must be positive, got ${task.maxRecords}`);
  const t0 = performance.now();
  // Every source is mapped (zero-copy vectors) and checked before a row of it is used.
  const vecs: Float32Array[] = [];
  for (const src of task.sources) {
    stop.check();
    const reader = SegmentReader.open(mapReadOnly(src.path, { minSize: HEADER_SIZE + TRAILER_SIZE, sequential: true }));
    reader.verifyAll();
    const secs = reader.sections;
    if (secs.length !== src.expectRawCrcs.length || secs.some((s, i) => s.rawCrc !== src.expectRawCrcs[i])) {
      throw new StratavecError('ERR_SEGMENT_CORRUPT', `clustering source ${src.path}: sections differ from the manifest`);
    }
    if (reader.header.dimension !== dim) throw new StratavecError('ERR_SEGMENT_CORRUPT', `clustering source ${src.path} has dimension ${reader.header.dimension}, expected ${dim}`);
    const count = reader.header.count;
    for (const r of src.rows) if (r >= count) throw new RangeError(`clustering source ${src.path}: row ${r} of ${count}`);
    vecs.push(reader.vectors());
  }
  // The live rows, numbered globally in source order then row order: `start[s]` is source s's first.
  const start = new Uint32Array(task.sources.length + 1);
  task.sources.forEach((s, i) => (start[i + 1] = start[i]! + s.rows.length));
  const total = start[task.sources.length]!;
  if (total === 0) throw new StratavecError('ERR_INVALID_ARGUMENT', 'clustering needs at least one live row');
  const srcOf = new Uint32Array(total);
  for (let s = 0; s < task.sources.length; s++) srcOf.fill(s, start[s]!, start[s + 1]!);
  const rowVector = (g: number): Float32Array => {
    const s = srcOf[g]!;
    const r = task.sources[s]!.rows[g - start[s]!]!;
    return vecs[s]!.subarray(r * dim, r * dim + dim);
  };
  const t1 = performance.now();

  // k-means over a uniform sample of the live rows (deleted rows must not pull centroids).
  const rand = seededRandom(task.seed);
  const m = Math.min(total, task.sampleSize ?? Math.min(Math.max(task.k * 256, MIN_SAMPLE), MAX_SAMPLE));
  const picks = samplePositions(total, m, rand);
  const sample = new Float32Array(m * dim);
  for (let i = 0; i < m; i++) sample.set(rowVector(picks[i]!), i * dim);
  stop.check();
  const km = kmeans(sample, dim, m, { k: Math.min(task.k, m), seed: task.seed, sampleSize: m, check: () => stop.check(), nativeCall: stop.native });
  const t2 = performance.now();

  // Every live row to its nearest centroid. assign() takes contiguous rows: each source's whole
  // mapping (its few dead rows cost a distance each), then the live rows' labels are kept.
  const labels = new Int32Array(total);
  const counts = new Uint32Array(km.k);
  task.sources.forEach((src, s) => {
    const count = vecs[s]!.length / dim;
    if (src.rows.length === 0) return;
    const a = assign(vecs[s]!, dim, count, km.centroids, km.k, { check: () => stop.check(), nativeCall: stop.native });
    for (let i = 0; i < src.rows.length; i++) {
      const c = a.labels[src.rows[i]!]!;
      labels[start[s]! + i] = c;
      counts[c]!++;
    }
  });
  const t3 = performance.now();

  // Members of each region, ascending global order (so each group's rows come out per source, ascending).
  const offsets = new Uint32Array(km.k + 1);
  for (let c = 0; c < km.k; c++) offsets[c + 1] = offsets[c]! + counts[c]!;
  const members = new Uint32Array(total);
  const fill = offsets.slice(0, km.k);
  for (let g = 0; g < total; g++) members[fill[labels[g]!]!++] = g;
  const groups: ClusterGroup[] = [];
  let splitRegions = 0;
  for (let c = 0; c < km.k; c++) {
    const region = members.subarray(offsets[c]!, offsets[c + 1]!);
    if (region.length === 0) continue;
    const pieces = region.length > task.maxRecords ? bisect(region, Math.ceil(region.length / task.maxRecords), dim, rowVector, rand, stop) : [region];
    if (pieces.length > 1) splitRegions++;
    for (const piece of pieces) groups.push({ region: c, rows: perSource(Uint32Array.from(piece).sort(), start, task.sources.map((s) => s.rows)) });
  }
  const t4 = performance.now();
  return {
    k: km.k, centroids: km.centroids, groups, rows: total, sampleSize: m, iterations: km.iterations, splitRegions,
    ms: { read: t1 - t0, kmeans: t2 - t1, assign: t3 - t2, split: t4 - t3 },
  };
}

/** `m` distinct positions of [0, n), ascending (partial Fisher-Yates). */
function samplePositions(n: number, m: number, rand: () => number): Uint32Array {
  const idx = new Uint32Array(n);
  for (let i = 0; i < n; i++) idx[i] = i;
  for (let i = 0; i < m; i++) {
    const j = i + Math.floor(rand() * (n - i));
    const t = idx[i]!;
    idx[i] = idx[j]!;
    idx[j] = t;
  }
  return idx.slice(0, m).sort();
}

/** Global row numbers (ascending) back to each source's row numbers. */
function perSource(globals: Uint32Array, start: Uint32Array, rows: Uint32Array[]): Uint32Array[] {
  const out: Uint32Array[] = [];
  let at = 0;
  for (let s = 0; s < rows.length; s++) {
    let end = at;
    while (end < globals.length && globals[end]! < start[s + 1]!) end++;
    const part = new Uint32Array(end - at);
    for (let i = at; i < end; i++) part[i - at] = rows[s]![globals[i]! - start[s]!]!;
    out.push(part);
    at = end;
  }
  return out;
}

/**
 * Cuts `rows` into `pieces` parts of nearly equal size, each at most ceil(n / pieces): halves along
 * the principal axis (power iteration over the centred rows), recursively. Pieces are slabs of the
 * region, so their bounds stay tight; sizes are what guarantees the segment limit.
 */
function bisect(
  rows: Uint32Array, pieces: number, dim: number, vectorOf: (g: number) => Float32Array, rand: () => number, stop: TaskStop,
): Uint32Array[] {
  if (pieces <= 1) return [rows];
  stop.check();
  const n = rows.length;
  const mean = new Float64Array(dim);
  for (let i = 0; i < n; i++) {
    const v = vectorOf(rows[i]!);
    for (let j = 0; j < dim; j++) mean[j] += v[j]!;
  }
  for (let j = 0; j < dim; j++) mean[j] = mean[j]! / n;
  let axis = new Float64Array(dim);
  for (let j = 0; j < dim; j++) axis[j] = rand() - 0.5;
  for (let it = 0; it < POWER_ITERATIONS; it++) {
    const next = new Float64Array(dim);
    for (let i = 0; i < n; i++) {
      const v = vectorOf(rows[i]!);
      let p = 0;
      for (let j = 0; j < dim; j++) p += (v[j]! - mean[j]!) * axis[j]!;
      for (let j = 0; j < dim; j++) next[j] += p * (v[j]! - mean[j]!);
    }
    let norm = 0;
    for (let j = 0; j < dim; j++) norm += next[j]! * next[j]!;
    if (!(norm > 0)) break; // every row equal: any cut will do
    norm = Math.sqrt(norm);
    for (let j = 0; j < dim; j++) next[j] = next[j]! / norm;
    axis = next;
  }
  const proj = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const v = vectorOf(rows[i]!);
    let p = 0;
    for (let j = 0; j < dim; j++) p += v[j]! * axis[j]!;
    proj[i] = p;
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => proj[a]! - proj[b]! || rows[a]! - rows[b]!);
  // left <= floor(p/2) * limit and right <= ceil(p/2) * limit whenever n <= p * limit.
  const leftPieces = Math.floor(pieces / 2);
  const leftSize = Math.floor((n * leftPieces) / pieces);
  const left = Uint32Array.from(order.slice(0, leftSize), (i) => rows[i]!);
  const right = Uint32Array.from(order.slice(leftSize), (i) => rows[i]!);
  return [...bisect(left, leftPieces, dim, vectorOf, rand, stop), ...bisect(right, pieces - leftPieces, dim, vectorOf, rand, stop)];
}
