// Search bench: engine `col.search` against the raw part it is built on, hnswlib-node, one query
// at a time, same graph parameters, same ef, at equal recall. Issue target: engine >= 0.8x raw QPS.
// Uses only the public API plus hnswlib-node itself; raw and engine passes are interleaved so both
// see the same machine noise.

import hnswlib from 'hnswlib-node';
import { Database, type Collection, type DatabaseOptions } from '../engine/index.js';
import { clusteredDataset, exactKnn, loadSiftsmall, recallAtK } from '../harness/datasets.js';
import {
  median, percentile, progress, tempDir, removeDir, num, ms, ratio, round,
  type BenchOptions, type BenchReport, type Table,
} from './report.js';

const { HierarchicalNSW } = hnswlib;
export type RawIndex = InstanceType<typeof HierarchicalNSW>;

export const DIM = 128;
export const HNSW = Object.freeze({ M: 16, efConstruction: 200, efSearch: 64 });
export const K = 10;
export const BATCH = 1000;
const EF_SWEEP = [16, 32, 64, 128];
const TARGET_RATIO = 0.8;

export interface Dataset {
  name: string;
  count: number;
  /** Row-major, count x DIM. Row r is stored under id String(r). */
  base: Float32Array;
  queries: Float32Array[];
  /** Row numbers of the true nearest neighbours, `truthStride` per query. */
  truth: Int32Array;
  truthStride: number;
}

/** Clustered synthetic set; the queries are held-out draws from the same clusters. */
export function syntheticDataset(name: string, count: number, nq: number, seed = 1): Dataset {
  const all = clusteredDataset({ count: count + nq, dim: DIM, seed });
  const base = all.subarray(0, count * DIM);
  const q = all.subarray(count * DIM);
  const truth = exactKnn(base, DIM, count, q, nq, K, 'l2');
  return { name, count, base, queries: splitRows(q, nq), truth, truthStride: K };
}

export function splitRows(data: Float32Array, n: number): Float32Array[] {
  return Array.from({ length: n }, (_, i) => data.subarray(i * DIM, (i + 1) * DIM));
}

/** The raw part: hnswlib-node fed the way its API asks (a number[] per point). */
export function buildRaw(base: Float32Array, count: number): { index: RawIndex; ms: number } {
  const t0 = performance.now();
  const index = new HierarchicalNSW('l2', DIM);
  index.initIndex({ maxElements: count, m: HNSW.M, efConstruction: HNSW.efConstruction, randomSeed: 100 });
  for (let r = 0; r < count; r++) index.addPoint(Array.from(base.subarray(r * DIM, (r + 1) * DIM)), r);
  return { index, ms: performance.now() - t0 };
}

/** Upserts rows [from, to) of `base` in batches of BATCH, ids String(row), sequentially. */
export async function upsertRows(col: Collection, base: Float32Array, from: number, to: number): Promise<void> {
  for (let start = from; start < to; start += BATCH) {
    const end = Math.min(to, start + BATCH);
    const batch = [];
    for (let r = start; r < end; r++) batch.push({ id: String(r), vector: base.subarray(r * DIM, (r + 1) * DIM) });
    await col.upsert(batch);
  }
}

export interface EngineSetup {
  db: Database;
  col: Collection;
  dir: string;
  ingestMs: number;
  flushMs: number;
  segments: number;
  seal: unknown;
}

export async function loadEngine(opts: BenchOptions, ds: Dataset, dbOptions: DatabaseOptions): Promise<EngineSetup> {
  const dir = await tempDir(opts, 'search');
  const db = await Database.open(dir, dbOptions);
  const col = await db.createCollection('bench', { dimension: DIM, metric: 'l2', hnsw: { ...HNSW } });
  const t0 = performance.now();
  await upsertRows(col, ds.base, 0, ds.count);
  const t1 = performance.now();
  await col.flush();
  const flushMs = performance.now() - t1;
  // The write-through upload to the object store runs after the seal; let it finish so that no
  // background work overlaps the timed searches.
  await db.flushUploads();
  return {
    db, col, dir, ingestMs: t1 - t0, flushMs, segments: col.segments().length,
    seal: db.stats().collections['bench']?.seal,
  };
}

export async function closeEngine(e: EngineSetup): Promise<void> {
  await e.db.close();
  await removeDir(e.dir);
}

export interface Pass {
  /** Queries per second of wall-clock time. */
  qps: number;
  /** Queries per second of this process's CPU time: much less disturbed by other load on the box. */
  cpuQps: number;
  p50: number;
  p99: number;
  /** Row numbers found per query, from the first repetition. */
  found: number[][];
}

/** One side's timings, accumulated over the blocks of one run. */
class Side {
  readonly lat: number[] = [];
  readonly found: number[][] = [];
  wallMs = 0;
  cpuUs = 0;

  pass(): Pass {
    const n = this.lat.length;
    return {
      qps: n / (this.wallMs / 1000), cpuQps: n / (this.cpuUs / 1e6),
      p50: percentile(this.lat, 50), p99: percentile(this.lat, 99), found: this.found,
    };
  }
}

function cpuSince(c0: NodeJS.CpuUsage): number {
  const c = process.cpuUsage(c0);
  return c.user + c.system;
}

/** Raw queries: each becomes a number[] per call, as any caller of hnswlib-node must do. */
function rawBlock(index: RawIndex, queries: Float32Array[], side: Side, keep: boolean): void {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  for (const q of queries) {
    const s = performance.now();
    const res = index.searchKnn(Array.from(q), K);
    side.lat.push(performance.now() - s);
    if (keep) side.found.push(res.neighbors);
  }
  side.wallMs += performance.now() - t0;
  side.cpuUs += cpuSince(c0);
}

/** Engine queries: sequential awaited searches, as a single caller would issue them. */
async function engineBlock(col: Collection, queries: Float32Array[], ef: number, side: Side, keep: boolean): Promise<void> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  for (const q of queries) {
    const s = performance.now();
    const hits = await col.search(q, { k: K, ef });
    side.lat.push(performance.now() - s);
    if (keep) side.found.push(hits.map((h) => Number(h.id)));
  }
  side.wallMs += performance.now() - t0;
  side.cpuUs += cpuSince(c0);
}

export function rawPass(index: RawIndex, queries: Float32Array[], reps: number): Pass {
  const side = new Side();
  for (let rep = 0; rep < reps; rep++) rawBlock(index, queries, side, rep === 0);
  return side.pass();
}

export async function enginePass(col: Collection, queries: Float32Array[], reps: number, ef: number): Promise<Pass> {
  const side = new Side();
  for (let rep = 0; rep < reps; rep++) await engineBlock(col, queries, ef, side, rep === 0);
  return side.pass();
}

export interface Summary {
  qps: number;
  cpuQps: number;
  p50: number;
  p99: number;
  recall: number;
  runsQps: number[];
}

function summarize(passes: Pass[], ds: Dataset): Summary {
  return {
    qps: median(passes.map((p) => p.qps)),
    cpuQps: median(passes.map((p) => p.cpuQps)),
    p50: median(passes.map((p) => p.p50)),
    p99: median(passes.map((p) => p.p99)),
    recall: recallAtK(passes[0]!.found, ds.truth, ds.truthStride, K),
    runsQps: passes.map((p) => round(p.qps, 1)),
  };
}

export interface Comparison {
  ef: number;
  raw: Summary;
  engine: Summary;
  /** Median over runs of engine QPS / raw QPS (wall clock), each run's two sides interleaved. */
  ratio: number;
  /** The same from CPU time. */
  cpuRatio: number;
}

/** Queries per interleaving block: short enough that both sides see the same machine noise. */
const BLOCK = 20;

/**
 * `runs` runs at one ef. A run goes through the query set `reps` times in blocks of BLOCK queries,
 * raw block and engine block back to back, alternating which goes first, so that the noise of a
 * shared machine lands on both sides alike; each side's QPS is its queries over its own time.
 */
async function compare(index: RawIndex, col: Collection, ds: Dataset, ef: number, runs: number, reps: number): Promise<Comparison> {
  index.setEf(ef);
  const blocks: Float32Array[][] = [];
  for (let i = 0; i < ds.queries.length; i += BLOCK) blocks.push(ds.queries.slice(i, i + BLOCK));
  const raw: Pass[] = [];
  const eng: Pass[] = [];
  for (let r = 0; r < runs; r++) {
    const rs = new Side();
    const es = new Side();
    for (let rep = 0, n = 0; rep < reps; rep++) {
      for (const blk of blocks) {
        const keep = rep === 0;
        if ((n++ + r) % 2 === 0) {
          rawBlock(index, blk, rs, keep);
          await engineBlock(col, blk, ef, es, keep);
        } else {
          await engineBlock(col, blk, ef, es, keep);
          rawBlock(index, blk, rs, keep);
        }
      }
    }
    raw.push(rs.pass());
    eng.push(es.pass());
  }
  return {
    ef, raw: summarize(raw, ds), engine: summarize(eng, ds),
    ratio: median(raw.map((p, i) => eng[i]!.qps / p.qps)),
    cpuRatio: median(raw.map((p, i) => eng[i]!.cpuQps / p.cpuQps)),
  };
}

interface CaseResult {
  dataset: string;
  config: string;
  segmentMaxRecords: number | 'default';
  segments: number;
  /** Tier of each segment after the first query ('hot' = answered by HNSW). */
  tiers: string[];
  firstQueryMs: number;
  ingestMs: number;
  flushMs: number;
  seal: unknown;
  at64: Comparison;
  sweep?: Comparison[];
}

export async function runSearch(opts: BenchOptions): Promise<BenchReport> {
  const log = (m: string) => progress('search', m);
  const datasets: Dataset[] = [];
  const skipped: string[] = [];
  const sift = loadSiftsmall();
  if (sift) {
    datasets.push({
      name: 'siftsmall', count: sift.base.count, base: sift.base.data,
      queries: splitRows(sift.query.data, sift.query.count), truth: sift.groundTruth.data, truthStride: sift.groundTruth.dim,
    });
  } else {
    const msg = 'siftsmall skipped: ../shared/data/siftsmall (or $STRATAVEC_SIFT_DIR) not found';
    skipped.push(msg);
    log(msg);
  }
  const synthCount = opts.quick ? 20_000 : 100_000;
  const synthName = `clustered-${synthCount / 1000}k`;
  log(`generating ${synthName} (${synthCount} x ${DIM} + 200 held-out queries) and exact ground truth`);
  datasets.push(syntheticDataset(synthName, synthCount, 200));

  // A pass repeats the query set until it holds at least this many queries, so that one pass
  // lasts long enough (~1 s) to be timed against the noise.
  const minQueries = opts.quick ? 600 : 2000;
  const defaultSize = await engineDefaultSegmentSize(opts);
  const sweepRuns = Math.max(1, Math.min(opts.runs, 3));
  const cases: CaseResult[] = [];
  const builds: Record<string, unknown>[] = [];

  for (const ds of datasets) {
    const reps = Math.ceil(minQueries / ds.queries.length);
    log(`${ds.name}: raw hnswlib-node build (${ds.count} x ${DIM}, M=${HNSW.M}, efConstruction=${HNSW.efConstruction})`);
    const raw = buildRaw(ds.base, ds.count);
    log(`${ds.name}: raw build ${ms(raw.ms)}`);

    // Sized as a user would for this collection: exactly one segment. Where that is the engine's
    // default (the 100K set), the database is opened with no options at all, so the default case
    // and the sized case are the same run.
    const configs: { config: string; segmentMaxRecords: number | 'default'; dbOptions: DatabaseOptions; sweep: boolean }[] = [
      ds.count === defaultSize
        ? { config: `default options (segmentMaxRecords=${defaultSize} = size)`, segmentMaxRecords: 'default', dbOptions: {}, sweep: true }
        : { config: `segmentMaxRecords=${ds.count}`, segmentMaxRecords: ds.count, dbOptions: { segmentMaxRecords: ds.count }, sweep: true },
    ];
    for (const c of configs) {
      log(`${ds.name} / ${c.config}: engine ingest + flush (seal builds the same HNSW in a worker)`);
      const e = await loadEngine(opts, ds, c.dbOptions);
      log(`${ds.name} / ${c.config}: ingest ${ms(e.ingestMs)}, flush ${ms(e.flushMs)}, ${e.segments} segment(s)`);
      try {
        // The first search promotes the segment to the hot tier (CRC check + index load).
        const t0 = performance.now();
        await e.col.search(ds.queries[0]!, { k: K, ef: 64 });
        const firstQueryMs = performance.now() - t0;
        const tiers = e.col.segments().map((s) => s.tier);
        // Warm the JIT on both sides; untimed.
        raw.index.setEf(64);
        rawPass(raw.index, ds.queries, 1);
        await enginePass(e.col, ds.queries, 1, 64);
        log(`${ds.name} / ${c.config}: first query ${ms(firstQueryMs)}; ${opts.runs} interleaved passes of ${reps * ds.queries.length} queries at ef=64`);
        const at64 = await compare(raw.index, e.col, ds, 64, opts.runs, reps);
        log(`${ds.name} / ${c.config}: raw ${num(at64.raw.qps)} QPS, engine ${num(at64.engine.qps)} QPS, ratio ${ratio(at64.ratio)} (CPU time ${ratio(at64.cpuRatio)})`);
        let sweep: Comparison[] | undefined;
        if (c.sweep) {
          sweep = [];
          for (const ef of EF_SWEEP) {
            log(`${ds.name}: ef sweep ef=${ef} (${sweepRuns} interleaved passes)`);
            sweep.push(ef === 64 && sweepRuns === opts.runs ? at64 : await compare(raw.index, e.col, ds, ef, sweepRuns, reps));
          }
        }
        cases.push({
          dataset: ds.name, config: c.config, segmentMaxRecords: c.segmentMaxRecords, segments: e.segments,
          tiers, firstQueryMs, ingestMs: e.ingestMs, flushMs: e.flushMs, seal: e.seal, at64, ...(sweep ? { sweep } : {}),
        });
      } finally {
        await closeEngine(e);
      }
    }
    builds.push({ dataset: ds.name, count: ds.count, rawBuildMs: round(raw.ms, 1) });
  }

  const tables: Table[] = [];
  tables.push({
    title: `search: engine col.search vs raw hnswlib-node searchKnn, k=${K}, ef=64, M=${HNSW.M}, efConstruction=${HNSW.efConstruction}, one query at a time (median of ${opts.runs} passes)`,
    columns: ['dataset / engine config', 'segments', 'raw QPS', 'engine QPS', 'engine/raw', 'by CPU time', 'raw R@10', 'engine R@10', 'target 0.8x'],
    rows: cases.map((c) => [
      `${c.dataset} / ${c.config}`, `${c.segments} ${c.tiers.join(',')}`, num(c.at64.raw.qps), num(c.at64.engine.qps), ratio(c.at64.ratio), ratio(c.at64.cpuRatio),
      c.at64.raw.recall.toFixed(4), c.at64.engine.recall.toFixed(4), c.at64.ratio >= TARGET_RATIO ? 'met' : 'MISSED',
    ]),
    notes: [
      'raw: Array.from(query) then searchKnn(q, 10) per query; engine: await col.search(Float32Array, { k: 10, ef: 64 }) per query',
      `engine config: segmentMaxRecords = the set's size (one segment, as a user would size it); where that equals the engine default (${num(defaultSize)}) the database is opened with no options, so that row is both the sized and the default case`,
      `engine/raw: median of per-run ratios; within a run raw and engine alternate in blocks of ${BLOCK} queries (order flipping), so both share the machine's noise`,
      'by CPU time: the same ratio from process CPU time (process.cpuUsage) instead of wall time; less disturbed by other load on a shared machine',
      ...skipped,
    ],
  });
  tables.push({
    title: 'search latency per query (median over passes of each pass\'s percentile), and the cold first query',
    columns: ['dataset / engine config', 'raw p50', 'engine p50', 'raw p99', 'engine p99', 'engine 1st query'],
    rows: cases.map((c) => [
      `${c.dataset} / ${c.config}`, ms(c.at64.raw.p50), ms(c.at64.engine.p50), ms(c.at64.raw.p99), ms(c.at64.engine.p99), ms(c.firstQueryMs),
    ]),
    notes: ['engine 1st query: the first search after flush promotes the segment to hot (CRC check in a worker + HNSW load)'],
  });
  for (const c of cases) {
    if (!c.sweep) continue;
    tables.push({
      title: `ef sweep, ${c.dataset} / ${c.config} (median of ${sweepRuns} passes)`,
      columns: ['ef', 'raw R@10', 'raw QPS', 'engine R@10', 'engine QPS', 'engine/raw', 'by CPU time'],
      rows: c.sweep.map((s) => [String(s.ef), s.raw.recall.toFixed(4), num(s.raw.qps), s.engine.recall.toFixed(4), num(s.engine.qps), ratio(s.ratio), ratio(s.cpuRatio)]),
    });
  }
  tables.push({
    title: 'index build (informational: not part of the search target)',
    columns: ['dataset / engine config', 'raw hnswlib build', 'engine upsert', 'engine flush (seal)', 'seal: build / write'],
    rows: cases.map((c) => {
      const s = c.seal as { lastBuildMs?: number; lastWriteMs?: number } | undefined;
      const raw = builds.find((b) => b['dataset'] === c.dataset)?.['rawBuildMs'] as number;
      return [`${c.dataset} / ${c.config}`, ms(raw), ms(c.ingestMs), ms(c.flushMs), s ? `${ms(s.lastBuildMs ?? NaN)} / ${ms(s.lastWriteMs ?? NaN)}` : '-'];
    }),
    notes: ['when segmentMaxRecords equals the row count, the last upsert starts the seal itself, so part of it overlaps "engine upsert"'],
  });

  const worst = cases.reduce((m, c) => Math.min(m, c.at64.ratio), Infinity);
  return {
    name: 'search',
    tables,
    conclusion: `search target (engine >= ${TARGET_RATIO}x raw QPS at ef=64): ${worst >= TARGET_RATIO ? 'met' : 'MISSED'}; worst ratio ${ratio(worst)} `
      + `(${cases.map((c) => `${c.dataset} ${ratio(c.at64.ratio)} wall, ${ratio(c.at64.cpuRatio)} CPU`).join('; ')})`,
    data: {
      parameters: { dim: DIM, k: K, hnsw: HNSW, efSweep: EF_SWEEP, runs: opts.runs, sweepRuns, minQueriesPerPass: minQueries, batch: BATCH },
      skipped, builds, cases: roundDeep(cases),
    },
  };
}

/** The engine's own default segmentMaxRecords, read from a Database opened without options. */
export async function engineDefaultSegmentSize(opts: BenchOptions): Promise<number> {
  const dir = await tempDir(opts, 'defaults');
  const db = await Database.open(dir, { workers: 0 });
  try {
    return db.options.segmentMaxRecords;
  } finally {
    await db.close();
    await removeDir(dir);
  }
}

/** Rounds every number in a result tree to 3 decimals for the JSON file. */
export function roundDeep<T>(v: T): T {
  if (typeof v === 'number') return round(v) as T;
  if (Array.isArray(v)) return v.map(roundDeep) as T;
  if (v !== null && typeof v === 'object') {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, roundDeep(x)])) as T;
  }
  return v;
}

