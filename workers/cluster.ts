// The clustering task: learns the partitions of a collection (k-means over a sample of the live rows
// of its segment files) and assigns every live row to its nearest centroid, so that clustering
// compaction can write one segment per region (the `compact` task writes them, one task each, in
// parallel). A region with more rows than a segment may hold is cut into pieces by recursive
// bisection along its principal axis. Sources come as paths plus the rows to keep and are
// CRC-checked against the manifest first, as compaction does. It writes nothing.
//
// Given the collection's recent queries, it also lays the rows out by heat: each region is cut
// into small partitions (k-means inside the region), each query heats the partitions that hold rows
// near its nearest ones, and when the heat is skewed (judged against what a flat workload would
// give), the hot partitions are packed together into their own segments (region indices after the
// k learnt), hottest first. The rest stays in its regions. A random tenth of the clusters is hot in every
// region, so without this every segment holds some hot rows and none can stay cold.

import { StratavecError } from '../format/errors.js';
import { assign, kmeans, seededRandom, MAX_K } from '../index/kmeans.js';
import { l2Squared } from '../index/distance.js';
import hnswlib from 'hnswlib-node';

const { BruteforceSearch } = hnswlib;
import { openCheckedSource, type CompactSource } from './compact.js';
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
  /** Recent queries (`n * dimension`, as searched): lay the hottest partitions out together. */
  queries?: Float32Array;
}

/** One output segment: its region and, per source (in task order), the rows it takes, ascending. */
export interface ClusterGroup {
  region: number;
  rows: Uint32Array[];
}

/** How the heat layout went (ClusterPlanResult.heat). */
export interface HeatLayout {
  /** Queries read, partitions they heated, partitions cut from the regions. */
  queries: number;
  partitions: number;
  heated: number;
  /** Share of the heat on partitions heated 3 Poisson deviations beyond a flat workload's share
   *  (the skew test: at least MIN_HOT_HEAT). */
  skewHeatShare: number;
  /** The hot set: the busy partitions (heated beyond a flat workload's share, or recurring), and
   *  every partition a hot query opens (one at least half of whose partitions are busy); its share of the heat. */
  hotPartitions: number;
  /** Of hotPartitions, those at or below their share that recur: opened by more queries than the
   *  background (the heat density outside the surely hot partitions) would give them, at p <= RECUR_P. */
  recurring: number;
  /** Of hotPartitions, those that joined through a hot query, neither beyond their share nor recurring. */
  joined: number;
  hotRows: number;
  hotHeatShare: number;
  /** Segments the hot set was packed into; 0 when the heat was not skewed enough to use. */
  hotGroups: number;
  /** Why the heat was not used, when it was not. */
  unused?: string;
  /** Time spent: cutting the partitions, heating them with the queries. */
  ms: { partitions: number; heat: number };
}

export interface ClusterPlanResult {
  /** Regions (k or fewer learnt when the sample had fewer distinct rows, plus one per hot group),
   *  `k * dimension`: the learnt centroids, then the mean of each hot group. */
  k: number;
  centroids: Float32Array;
  groups: ClusterGroup[];
  /** Live rows seen, rows sampled, k-means iterations, regions cut into pieces. */
  rows: number;
  sampleSize: number;
  iterations: number;
  splitRegions: number;
  heat?: HeatLayout;
  ms: { read: number; kmeans: number; assign: number; split: number; heat: number };
}

const MIN_SAMPLE = 16_384;
const MAX_SAMPLE = 262_144;
const POWER_ITERATIONS = 12;
/** The heat layout's partitions hold about segmentMaxRecords / PARTS_PER_SEGMENT rows (at least
 *  MIN_PART_ROWS): small enough that the hot set is little more than the rows searched. */
const PARTS_PER_SEGMENT = 256;
const MIN_PART_ROWS = 32;
/** Rows sampled per partition to learn them (k-means' default is 256). */
const PART_SAMPLE = 48;
/** Fewer recent queries than this say too little about the workload: no heat layout. */
const MIN_HEAT_QUERIES = 256;
/** A query heats the partitions that hold a row within HEAT_REACH times the distance of its
 *  HEAT_NEIGHBOURS-th nearest row, looked for among the rows of its HEAT_PROBE nearest partitions
 *  (by centroid): the partitions its search would open. Measured on the cluster bench (--quick),
 *  hot queries' cold reads per query after the layout: the neighbours alone among 8 partitions
 *  left 0.059, reach 1.5 among 8 0.022, among 24 0.011, among 64 0.005 (measured on the stream
 *  the layout learnt from; on a fresh draw of the same workload, 0.022 quick, 0.004 at 200,000). */
const HEAT_NEIGHBOURS = 10;
const HEAT_PROBE = 64;
const HEAT_REACH = 1.5;
/** The heat is used when the partitions heated more than HOT_SIGMAS Poisson deviations beyond a
 *  flat workload draw at least MIN_HOT_HEAT of it (4,096 uniform queries at 200,000 rows: 36%, the
 *  cluster bench's skewed stream: 88%), and the hot set holds at most HOT_MAX_ROWS of the rows;
 *  otherwise the plain regions, which prune best, stay. */
const HOT_SIGMAS = 3;
const MIN_HOT_HEAT = 0.5;
const HOT_MAX_ROWS = 0.5;
/** A partition at or below its flat share recurs when the background would open it as often with
 *  probability at most RECUR_P (Poisson). Measured at 200,000 rows on the cluster bench's layout
 *  stream: 0.01 takes in 3 partitions, 0.05 34 (hot set 29,268 -> 32,396 rows, and both hot clusters
 *  the stream drew only 2-3 times), 0.1 95 (37,328 rows). */
const RECUR_P = 0.05;

export async function clusterPlan(task: ClusterPlanTask, stop: TaskStop = TaskStop.never): Promise<ClusterPlanResult> {
  const dim = task.dimension;
  if (!Number.isInteger(task.k) || task.k < 1 || task.k > MAX_K) throw new StratavecError('ERR_INVALID_ARGUMENT', `k must be in 1..${MAX_K}, got ${task.k}`);
  if (!Number.isInteger(task.maxRecords) || task.maxRecords < 1) throw new StratavecError('ERR_INVALID_ARGUMENT', `maxRecords must be positive, got ${task.maxRecords}`);
  const t0 = performance.now();
  // Every source is mapped (zero-copy vectors) and checked before a row of it is used.
  const vecs: Float32Array[] = [];
  for (const src of task.sources) {
    stop.check();
    const reader = openCheckedSource(src, 'clustering');
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
  /** Squared l2 from a query (at `off` in `q`) to a row, without a subarray per row. */
  const rowDistance = (q: Float32Array, off: number, g: number): number => {
    const s = srcOf[g]!;
    return l2Squared(q, off, vecs[s]!, task.sources[s]!.rows[g - start[s]!]! * dim, dim);
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
  const regionRows = (c: number) => members.subarray(offsets[c]!, offsets[c + 1]!);
  const t3b = performance.now();

  // The heat layout, when recent queries were given and their heat is skewed: the hot partitions
  // leave their regions for hot groups of their own.
  let heat: HeatLayout | undefined;
  let hotGroups: Uint32Array[] = [];
  const inHot = new Uint8Array(total);
  if (task.queries !== undefined) {
    const layout = heatLayout(task.queries, dim, km.k, regionRows, rowVector, rowDistance, task.maxRecords, task.seed, stop);
    heat = layout.report;
    hotGroups = layout.groups;
    for (const grp of hotGroups) for (const g of grp) inHot[g] = 1;
  }
  const t3c = performance.now();

  const groups: ClusterGroup[] = [];
  const toSources = (rows: Uint32Array) => perSource(Uint32Array.from(rows).sort(), start, task.sources.map((s) => s.rows));
  let splitRegions = 0;
  for (let c = 0; c < km.k; c++) {
    const all = regionRows(c);
    const region = hotGroups.length === 0 ? all : all.filter((g) => inHot[g] === 0);
    if (region.length === 0) continue;
    const pieces = region.length > task.maxRecords ? bisect(region, Math.ceil(region.length / task.maxRecords), dim, rowVector, rand, stop) : [region];
    if (pieces.length > 1) splitRegions++;
    for (const piece of pieces) groups.push({ region: c, rows: toSources(piece) });
  }
  // Hot groups are regions km.k, km.k + 1, ...; their centroid is their rows' mean.
  const centroids = new Float32Array((km.k + hotGroups.length) * dim);
  centroids.set(km.centroids.subarray(0, km.k * dim));
  hotGroups.forEach((grp, i) => {
    groups.push({ region: km.k + i, rows: toSources(grp) });
    centroids.set(meanOf(grp, dim, rowVector), (km.k + i) * dim);
  });
  const t4 = performance.now();
  return {
    k: km.k + hotGroups.length, centroids, groups, rows: total, sampleSize: m, iterations: km.iterations, splitRegions,
    ...(heat ? { heat } : {}),
    ms: { read: t1 - t0, kmeans: t2 - t1, assign: t3 - t2, split: t4 - t3c + (t3b - t3), heat: t3c - t3b },
  };
}

/**
 * Cuts every region into partitions of about segmentMaxRecords / PARTS_PER_SEGMENT rows (k-means
 * inside the region), heats them with the queries, and, when the heat is skewed, packs the hot set
 * (hottest per row first) into groups of at most `maxRecords` rows. Returns the hot groups (global
 * row numbers); none when the heat was not used.
 */
function heatLayout(
  queries: Float32Array, dim: number, k: number, regionRows: (c: number) => Uint32Array, rowVector: (g: number) => Float32Array,
  rowDistance: (q: Float32Array, off: number, g: number) => number, maxRecords: number, seed: number, stop: TaskStop,
): { report: HeatLayout; groups: Uint32Array[] } {
  const nq = Math.floor(queries.length / dim);
  const t0 = performance.now();
  const report: HeatLayout = { queries: nq, partitions: 0, heated: 0, skewHeatShare: 0, hotPartitions: 0, recurring: 0, joined: 0, hotRows: 0, hotHeatShare: 0, hotGroups: 0, ms: { partitions: 0, heat: 0 } };
  if (nq < MIN_HEAT_QUERIES) return { report: { ...report, unused: `${nq} recent queries, fewer than ${MIN_HEAT_QUERIES}` }, groups: [] };
  const partRows = Math.max(MIN_PART_ROWS, Math.floor(maxRecords / PARTS_PER_SEGMENT));
  const parts: { rows: Uint32Array; centroid: Float32Array }[] = [];
  for (let c = 0; c < k; c++) {
    const rows = regionRows(c);
    if (rows.length === 0) continue;
    stop.check();
    const want = Math.min(MAX_K, Math.max(1, Math.round(rows.length / partRows)));
    const vecs = new Float32Array(rows.length * dim);
    rows.forEach((g, i) => vecs.set(rowVector(g), i * dim));
    // Partitions only need to be small and compact, not optimal: a light sample keeps this cheap.
    const km = kmeans(vecs, dim, rows.length, {
      k: want, seed: seed + c, sampleSize: Math.min(rows.length, want * PART_SAMPLE), check: () => stop.check(), nativeCall: stop.native,
    });
    const a = assign(vecs, dim, rows.length, km.centroids, km.k, { check: () => stop.check(), nativeCall: stop.native });
    const size = new Uint32Array(km.k);
    for (let i = 0; i < rows.length; i++) size[a.labels[i]!]!++;
    const into = Array.from({ length: km.k }, (_, p) => new Uint32Array(size[p]!));
    const at = new Uint32Array(km.k);
    for (let i = 0; i < rows.length; i++) into[a.labels[i]!]![at[a.labels[i]!]!++] = rows[i]!;
    // A light k-means leaves some partitions several times the size wanted (2-4x at 200,000 rows):
    // one of them heated drags its cold rows into the hot set, so they are cut to size.
    const rand = seededRandom(seed + c);
    for (let p = 0; p < km.k; p++) {
      if (size[p] === 0) continue;
      if (size[p]! <= 2 * partRows) {
        parts.push({ rows: into[p]!, centroid: km.centroids.slice(p * dim, (p + 1) * dim) });
        continue;
      }
      for (const piece of bisect(into[p]!, Math.ceil(size[p]! / partRows), dim, rowVector, rand, stop)) {
        parts.push({ rows: piece, centroid: meanOf(piece, dim, rowVector) });
      }
    }
  }
  report.partitions = parts.length;
  const t1 = performance.now();
  report.ms.partitions = t1 - t0;

  // Each query heats the partitions holding rows near its nearest ones. Not the partitions whose
  // ball (centroid, radius) reaches it: in high dimensions a wide partition's ball holds queries
  // whose neighbours are all elsewhere (tried: most of the hot set was such partitions).
  const probeCount = Math.min(HEAT_PROBE, parts.length);
  // The nearest partitions by centroid: hnswlib's brute force (SIMD) over thousands of centroids.
  const centroidIndex = stop.native(() => new BruteforceSearch('l2', dim));
  stop.native(() => centroidIndex.initIndex(parts.length));
  parts.forEach((x, p) => stop.native(() => centroidIndex.addPoint(Array.from(x.centroid), p)));
  const top = new KthNearest(HEAT_NEIGHBOURS);
  const probeRows = parts.reduce((m, x) => Math.max(m, x.rows.length), 0) * probeCount; // no spread: 100k+ partitions at 10M rows
  const near = new Float64Array(probeRows);
  const owner = new Uint32Array(probeRows);
  // What each query opened (heated): query q's partitions are opened[openedAt[q] .. openedAt[q + 1]).
  const opened: number[] = [];
  const openedAt = new Uint32Array(nq + 1);
  for (let q = 0; q < nq; q++) {
    if ((q & 255) === 0) stop.check();
    const query = Array.from(queries.subarray(q * dim, (q + 1) * dim));
    const probe = stop.native(() => centroidIndex.searchKnn(query, probeCount)).neighbors;
    top.clear();
    let at = 0;
    for (const p of probe) {
      for (const g of parts[p]!.rows) {
        const dist = rowDistance(queries, q * dim, g);
        near[at] = dist;
        owner[at++] = p;
        top.push(dist);
      }
    }
    const reach = top.kth() * HEAT_REACH * HEAT_REACH;
    const touched = new Set<number>();
    for (let i = 0; i < at; i++) if (near[i]! <= reach) touched.add(owner[i]!);
    for (const p of touched) opened.push(p);
    openedAt[q + 1] = opened.length;
  }
  report.ms.heat = performance.now() - t1;
  const { hot, rowShare, ...pick } = pickHotPartitions(parts.map((x) => x.rows.length), opened, openedAt);
  Object.assign(report, pick, { hotPartitions: hot.length });
  if (report.skewHeatShare < MIN_HOT_HEAT || rowShare > HOT_MAX_ROWS) {
    const unused = `${Math.round(100 * report.skewHeatShare)}% of the heat on partitions searched well beyond a flat workload, ${Math.round(100 * report.hotHeatShare)}% on ${Math.round(100 * rowShare)}% of the rows: not skewed enough`;
    return { report: { ...report, unused }, groups: [] };
  }
  // Hottest first into groups of up to maxRecords rows; a partition that does not fit in what is
  // left of a group starts the next one (partitions are ~1/256 of a segment, so little is wasted),
  // and one larger than a whole segment is cut.
  const groups: Uint32Array[] = [];
  let current: Uint32Array[] = [];
  let size = 0;
  const close = () => {
    if (size > 0) groups.push(concat(current, size));
    current = [];
    size = 0;
  };
  for (const p of hot) {
    let rows = parts[p]!.rows;
    while (rows.length > 0) {
      if (size + rows.length > maxRecords) {
        if (size > 0 && rows.length <= maxRecords) close();
        else {
          const take = maxRecords - size;
          current.push(rows.subarray(0, take));
          size += take;
          rows = rows.subarray(take);
          close();
          continue;
        }
      }
      current.push(rows);
      size += rows.length;
      rows = rows.subarray(rows.length);
    }
  }
  close();
  report.hotGroups = groups.length;
  return { report, groups };
}

/** The mean of the rows' vectors. */
function meanOf(rows: Uint32Array, dim: number, vectorOf: (g: number) => Float32Array): Float32Array {
  const sum = new Float64Array(dim);
  for (const g of rows) {
    const v = vectorOf(g);
    for (let j = 0; j < dim; j++) sum[j] += v[j]!;
  }
  return Float32Array.from(sum, (x) => x / rows.length);
}

/**
 * The hot set, from what each query opened (query q: `opened[openedAt[q] .. openedAt[q + 1])`, each
 * partition at most once) over partitions of `sizes[p]` rows. A partition's heat is the number of
 * queries that opened it, judged against what a flat workload (queries spread like the rows) would
 * give it:
 *  - the skew test: the share of the heat on partitions heated more than HOT_SIGMAS Poisson
 *    deviations beyond their flat share (the caller wants at least MIN_HOT_HEAT);
 *  - a partition is busy when it is heated beyond its flat share, or recurs: opened by two queries
 *    or more, when the background (the heat per row outside the partitions the skew test counts,
 *    what the workload's tail gives) would open it that often with probability at most RECUR_P.
 *    Under a skewed workload the flat share is several times the tail's, so a hot cluster the
 *    recent queries drew only 2-3 times sits below it (measured at 200,000 rows: the only hot
 *    queries whose neighbours were all outside the hot set were of two such clusters);
 *  - the hot set: every busy partition, and every partition a hot query opens, a hot query being one
 *    at least half of whose partitions are busy. The rest of a hot query's partitions may not be
 *    (the edge of a hot cluster, a large partition few queries reach); a cut on heat alone leaves
 *    them out, and a hot query that opens one partition left out reads cold. Measured on the
 *    cluster bench at 1,000,000 rows, cold reads per hot query on fresh queries: 0.004 with the cut
 *    on heat alone, 0.000 and 0.004 in two runs with the hot queries' partitions in, 0.004 with
 *    recurring partitions too (the policy then kept segments nothing searched, as it demoted warm
 *    ones first: fixed there), 0.000, 0.000 and 0.002 in three runs with both (0.004, 0.000 and
 *    0.009 with the hot clusters in one part of the space).
 * The hot set comes hottest per row first, with the rows it holds and their share of all rows.
 */
export function pickHotPartitions(
  sizes: readonly number[], opened: readonly number[], openedAt: Uint32Array,
): { hot: number[]; recurring: number; joined: number; heated: number; hotRows: number; rowShare: number; hotHeatShare: number; skewHeatShare: number } {
  const heat = new Float64Array(sizes.length);
  for (const p of opened) heat[p]! += 1;
  const totalHeat = opened.length;
  const rowsTotal = sizes.reduce((n, x) => n + x, 0);
  const expected = (p: number) => (totalHeat * sizes[p]!) / rowsTotal;
  const heatOf = (ps: number[]) => (totalHeat > 0 ? ps.reduce((n, p) => n + heat[p]!, 0) / totalHeat : 0);
  const all = sizes.map((_, p) => p);
  const surely = all.filter((p) => heat[p]! > expected(p) + HOT_SIGMAS * Math.sqrt(expected(p)));
  const surelyRows = surely.reduce((n, p) => n + sizes[p]!, 0);
  const surelyHeat = surely.reduce((n, p) => n + heat[p]!, 0);
  const background = rowsTotal > surelyRows ? (totalHeat - surelyHeat) / (rowsTotal - surelyRows) : 0;
  // 0: cold, 1: beyond its flat share, 2: recurring.
  const busy = new Uint8Array(sizes.length);
  for (const p of all) {
    if (heat[p]! > expected(p)) busy[p] = 1;
    else if (heat[p]! >= 2 && poissonAtLeast(background * sizes[p]!, heat[p]!) <= RECUR_P) busy[p] = 2;
  }
  const inHot = Uint8Array.from(busy, (b) => (b > 0 ? 1 : 0));
  for (let q = 0; q + 1 < openedAt.length; q++) {
    const from = openedAt[q]!;
    const to = openedAt[q + 1]!;
    let busyOpened = 0;
    for (let i = from; i < to; i++) if (busy[opened[i]!]! > 0) busyOpened++;
    if (busyOpened > 0 && 2 * busyOpened >= to - from) for (let i = from; i < to; i++) inHot[opened[i]!] = 1;
  }
  const hot = all.filter((p) => inHot[p] === 1).sort((a, b) => heat[b]! / sizes[b]! - heat[a]! / sizes[a]! || a - b);
  const hotRows = hot.reduce((n, p) => n + sizes[p]!, 0);
  return {
    hot, recurring: hot.filter((p) => busy[p] === 2).length, joined: hot.filter((p) => busy[p] === 0).length, heated: all.filter((p) => heat[p]! > 0).length,
    hotRows, rowShare: rowsTotal > 0 ? hotRows / rowsTotal : 0, hotHeatShare: heatOf(hot), skewHeatShare: heatOf(surely),
  };
}

/** P(X >= n) for X Poisson with the given mean, summed in log space (no underflow for large means). */
export function poissonAtLeast(mean: number, n: number): number {
  if (n <= 0) return 1;
  if (!(mean > 0)) return 0;
  let below = 0;
  let logTerm = -mean;
  for (let i = 0; i < n; i++) {
    below += Math.exp(logTerm);
    logTerm += Math.log(mean) - Math.log(i + 1);
  }
  return Math.max(0, 1 - below);
}

/** The k-th smallest of the distances pushed (a sorted array: k is small). */
class KthNearest {
  readonly #k: number;
  #d: number[] = [];

  constructor(k: number) {
    this.#k = k;
  }

  clear(): void {
    this.#d = [];
  }

  push(dist: number): void {
    if (this.#d.length === this.#k && dist >= this.#d[this.#k - 1]!) return;
    let i = this.#d.length;
    while (i > 0 && this.#d[i - 1]! > dist) i--;
    this.#d.splice(i, 0, dist);
    if (this.#d.length > this.#k) this.#d.pop();
  }

  /** The k-th smallest (the largest, when fewer were pushed). */
  kth(): number {
    return this.#d[this.#d.length - 1] ?? Infinity;
  }
}

function concat(parts: Uint32Array[], size: number): Uint32Array {
  const out = new Uint32Array(size);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
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
