// Workers bench: what the worker pool buys, on this machine, in three parts.
//
//  1. Maintenance throughput. A fixed job set over N segments: per segment a `seal` (HNSW build +
//     segment write with checksums, vectors in a SharedArrayBuffer), an `encodeColdCopy` (entropy
//     selection + deflate of a segment file, from a path) and a `verifySegment` (CRC32 of every
//     section, from a path). All jobs are submitted at once (Promise.all) to WorkerPool(0) (inline),
//     WorkerPool(1) and WorkerPool(2); wall time, MB/s, CPU time and the speedup against inline,
//     interleaved run by run. Target: >= 1.6x inline with 2 workers.
//  2. Search latency while maintenance runs. One hot collection; searches one at a time (each
//     awaited, a setImmediate yield between them, as a server would interleave requests), idle and
//     while the same job set runs in a loop inline, on 1 worker and on 2 workers (pool threads at
//     the default nice 10), on 2 workers at nice 0 (the main thread's priority), plus a control (2
//     threads at nice 0 that only spin: the scheduler's share of the damage). p50/p99 latency,
//     event-loop delay p99, ratio against idle in the same run. Target: 2-worker p99 <= 1.5x idle.
//  3. Compression per data type (float vectors, payload JSON, ids as string tables): the codec the
//     entropy selection picks, the ratio, compress / decompress MB/s with fflate and node:zlib at
//     the level the selection uses, and the entropy estimate's cost as a share of the compression.
//     The raw part is node:zlib deflateRawSync / inflateRawSync of the same bytes at the same level.
//     Target: entropy estimate < 5% of the compression time.
//
// Unlike the other benches this one reaches inside the engine on purpose: the worker pool and the
// section codecs are not public API, and they are what is measured. The search part uses the
// public API only.

import { promises as fsp, existsSync, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { setImmediate as yieldToLoop, setTimeout as sleep } from 'node:timers/promises';
import { Database, type Collection } from '../engine/index.js';
import {
  WorkerPool, DEFAULT_WORKER_NICE, Codec, encodeStringTable,
  shannonEntropy, planeEntropy, defaultEntropySample, chooseCodec, encodeSection, decodeSection, deflateImplFor, levelFor,
  LARGE_SECTION_BYTES, SHUFFLE_ELEMENT_SIZE, type DeflateImpl, type DeflateLevel,
} from '../engine/parts.js';
import { clusteredDataset, mulberry32, readFvecs, siftsmallSearchPath } from '../harness/datasets.js';
import {
  median, percentile, progress, tempDir, removeDir, num, ms, ratio, pct,
  type BenchOptions, type BenchReport, type Table,
} from './report.js';
import { DIM, HNSW, K, BATCH, roundDeep, splitRows } from './search.js';

const TARGET_SPEEDUP = 1.6;
const TARGET_P99 = 1.5;
const TARGET_ENTROPY_SHARE = 0.05;
const MB = 1e6;
/** Pool sizes compared; 0 is inline on the main thread. */
const THREADS = [0, 1, 2] as const;
type Threads = (typeof THREADS)[number];
/** The pools by size (nice POOL_NICE), and a 2-thread pool at nice 0 for the search part. */
type Pools = Map<Threads, WorkerPool> & { nice0: WorkerPool };

export interface WorkersParams {
  /** Part 1 and 2: segments in the maintenance job set, and rows per segment. */
  segments: number;
  segmentRows: number;
  /** Part 2: rows of the searched collection, and the length of one measurement window. */
  searchRows: number;
  windowMs: number;
  /** Part 3: rows of the vector / payload / id samples (one segment's sections). */
  compressRows: number;
  /** Part 3: also a vector sample of half the rows, below LARGE_SECTION_BYTES. */
  belowLargeSample: boolean;
}

export function defaultWorkersParams(quick: boolean): WorkersParams {
  return quick
    ? { segments: 4, segmentRows: 1_000, searchRows: 5_000, windowMs: 1_000, compressRows: 10_000, belowLargeSample: false }
    : { segments: 8, segmentRows: 2_000, searchRows: 20_000, windowMs: 3_000, compressRows: 10_000, belowLargeSample: true };
}

// ---- data ---------------------------------------------------------------------------------------

const WORDS = ('vector search index segment cold warm hot tier payload query latency shard replica '
  + 'embedding cluster graph neighbour recall filter metric cosine storage object bucket snapshot '
  + 'manifest compaction worker thread pool deflate entropy checksum the a of and to in for with on').split(' ');
const LANGS = ['en', 'en', 'en', 'de', 'fr', 'es', 'ja'];
const SECTIONS = ['guides', 'reference', 'blog', 'api', 'changelog', 'tutorials'];

const docId = (n: number) => `doc-${String(n).padStart(6, '0')}`;

/** Realistic JSON payloads, deterministic: Zipf-ish words, a few enums, numbers, a date, a URL. */
function makePayloads(n: number, seed: number): string[] {
  const rand = mulberry32(seed);
  const word = () => WORDS[Math.floor(rand() * rand() * WORDS.length)]!;
  const words = (lo: number, hi: number) => Array.from({ length: lo + Math.floor(rand() * (hi - lo + 1)) }, word).join(' ');
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const title = words(3, 8);
    out.push(JSON.stringify({
      title,
      url: `https://docs.example.com/${SECTIONS[Math.floor(rand() * SECTIONS.length)]}/${title.replace(/ /g, '-')}-${Math.floor(rand() * 10_000)}`,
      lang: LANGS[Math.floor(rand() * LANGS.length)],
      author: `author-${Math.floor(rand() * rand() * 200)}`,
      tags: Array.from({ length: 1 + Math.floor(rand() * 4) }, word),
      published: new Date(Date.UTC(2020, 0, 1) + Math.floor(rand() * 5 * 365 * 86_400_000)).toISOString(),
      views: Math.floor(rand() ** 3 * 100_000),
      score: Math.round(rand() * 1000) / 1000,
      summary: words(8, 24),
    }));
  }
  return out;
}

interface SegmentData {
  index: number;
  rows: number;
  vectors: SharedArrayBuffer;
  ids: string[];
  payloads: string[];
}

/** N segments of clustered vectors (one generator: same clusters across segments), ids, payloads. */
function makeSegments(p: WorkersParams, seed: number): SegmentData[] {
  const all = clusteredDataset({ count: p.segments * p.segmentRows, dim: DIM, seed });
  const payloads = makePayloads(p.segments * p.segmentRows, seed + 1);
  return Array.from({ length: p.segments }, (_, s) => {
    const from = s * p.segmentRows;
    const vectors = new SharedArrayBuffer(p.segmentRows * DIM * 4);
    new Float32Array(vectors).set(all.subarray(from * DIM, (from + p.segmentRows) * DIM));
    return {
      index: s, rows: p.segmentRows, vectors,
      ids: Array.from({ length: p.segmentRows }, (_, r) => docId(from + r)),
      payloads: payloads.slice(from, from + p.segmentRows),
    };
  });
}

// ---- the maintenance job set --------------------------------------------------------------------

type JobKind = 'seal' | 'encodeColdCopy' | 'verifySegment';

interface Job {
  kind: JobKind;
  /** Segment-file bytes the job writes (seal) or reads (the others). */
  bytes: number;
  run(pool: WorkerPool): Promise<JobOutcome>;
}

/** In-task timings some tasks report (ms): where the time goes when they run one at a time. */
interface JobOutcome {
  buildMs?: number;
  writeMs?: number;
  encodeMs?: number;
}

interface JobFiles {
  tmpDir: string;
  /** A sealed file per segment, written once before timing: what encode and verify read. */
  source: (s: number) => string;
  sealOut: (s: number) => string;
  coldOut: (s: number) => string;
}

function jobFiles(dir: string): JobFiles {
  return {
    tmpDir: path.join(dir, 'tmp'),
    source: (s) => path.join(dir, `source-${s}.seg`),
    sealOut: (s) => path.join(dir, `sealed-${s}.seg`),
    coldOut: (s) => path.join(dir, `cold-${s}.seg`),
  };
}

function sealTask(seg: SegmentData, outPath: string, tmpDir: string) {
  return {
    segmentId: `bench.${seg.index}`, collection: 'bench', outPath, tmpDir, dimension: DIM, metric: 'l2' as const,
    hnsw: { ...HNSW }, vectors: seg.vectors, count: seg.rows, rows: null, ids: seg.ids, payloads: seg.payloads,
    createdAt: 0, seed: seg.index + 1,
  };
}

/** Writes every segment's source file (inline, untimed); returns their sizes. */
async function writeSources(segs: SegmentData[], files: JobFiles): Promise<number[]> {
  await fsp.mkdir(files.tmpDir, { recursive: true });
  const pool = new WorkerPool(0);
  const sizes: number[] = [];
  for (const seg of segs) sizes.push((await pool.run('seal', sealTask(seg, files.source(seg.index), files.tmpDir))).bytes);
  return sizes;
}

/** Per segment, in this order: seal, cold-copy encode, verify. Encode and verify read the source file. */
function makeJobs(segs: SegmentData[], sizes: number[], files: JobFiles): Job[] {
  return segs.flatMap((seg): Job[] => {
    const s = seg.index;
    return [
      {
        kind: 'seal', bytes: sizes[s]!,
        run: async (pool) => {
          const r = await pool.run('seal', sealTask(seg, files.sealOut(s), files.tmpDir));
          return { buildMs: r.buildMs, writeMs: r.writeMs };
        },
      },
      {
        kind: 'encodeColdCopy', bytes: sizes[s]!,
        run: async (pool) => ({ encodeMs: (await pool.run('encodeColdCopy', { src: files.source(s), dest: files.coldOut(s) })).ms }),
      },
      {
        kind: 'verifySegment', bytes: sizes[s]!,
        run: async (pool) => {
          await pool.run('verifySegment', { path: files.source(s) });
          return {};
        },
      },
    ];
  });
}

function cpuMsSince(c0: NodeJS.CpuUsage): number {
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / 1000;
}

/**
 * Untimed: starts the pool's threads and warms each one up (module load, JIT, the codec's
 * once-per-thread fflate/zlib probe) with a few of every kind of job.
 */
async function warmUp(pool: WorkerPool, jobs: Job[]): Promise<void> {
  const kinds: JobKind[] = ['verifySegment', 'encodeColdCopy', 'seal'];
  const picks = kinds.flatMap((k) => jobs.filter((j) => j.kind === k).slice(0, Math.max(1, pool.threads)));
  await Promise.all(picks.map((j) => j.run(pool)));
}

// ---- part 1: maintenance throughput -------------------------------------------------------------

interface JobSetRun {
  wallMs: number;
  /** Process CPU time over the run, all threads (main + pool workers). */
  cpuMs: number;
  outcomes: JobOutcome[];
}

async function runJobSet(pool: WorkerPool, jobs: Job[]): Promise<JobSetRun> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const outcomes = await Promise.all(jobs.map((j) => j.run(pool)));
  return { wallMs: performance.now() - t0, cpuMs: cpuMsSince(c0), outcomes };
}

interface ThroughputResult {
  threads: Threads;
  wallMs: number;
  cpuMs: number;
  mbps: number;
  /** Median over runs of (inline wall / this wall) in the same run. */
  speedup: number;
  runsWallMs: number[];
}

interface Throughput {
  bytesPerSet: number;
  jobs: number;
  configs: ThroughputResult[];
  /** Sums of in-task timings over the job set, from the 1-worker runs (tasks one at a time), medians. */
  breakdown: { buildMs: number; writeMs: number; encodeMs: number; otherMs: number; wallMs: number };
}

const rotate = <T>(xs: readonly T[], by: number): T[] => xs.map((_, i) => xs[(i + by) % xs.length]!);

async function measureThroughput(opts: BenchOptions, pools: Map<Threads, WorkerPool>, jobs: Job[], log: (m: string) => void): Promise<Throughput> {
  const runs = new Map<Threads, JobSetRun[]>(THREADS.map((t) => [t, []]));
  for (let r = 0; r < opts.runs; r++) {
    for (const t of rotate(THREADS, r)) {
      const res = await runJobSet(pools.get(t)!, jobs);
      runs.get(t)!.push(res);
      log(`throughput run ${r + 1}/${opts.runs}, ${label(t)}: ${ms(res.wallMs)} wall, ${ms(res.cpuMs)} CPU`);
    }
  }
  const bytesPerSet = jobs.reduce((s, j) => s + j.bytes, 0);
  const inline = runs.get(0)!;
  const configs = THREADS.map((t): ThroughputResult => {
    const rs = runs.get(t)!;
    const wallMs = median(rs.map((x) => x.wallMs));
    return {
      threads: t, wallMs, cpuMs: median(rs.map((x) => x.cpuMs)), mbps: bytesPerSet / MB / (wallMs / 1000),
      speedup: median(rs.map((x, i) => inline[i]!.wallMs / x.wallMs)), runsWallMs: rs.map((x) => x.wallMs),
    };
  });
  const one = runs.get(1)!;
  const sum = (o: JobOutcome[], k: keyof JobOutcome) => o.reduce((s, x) => s + (x[k] ?? 0), 0);
  const buildMs = median(one.map((x) => sum(x.outcomes, 'buildMs')));
  const writeMs = median(one.map((x) => sum(x.outcomes, 'writeMs')));
  const encodeMs = median(one.map((x) => sum(x.outcomes, 'encodeMs')));
  const wallMs = median(one.map((x) => x.wallMs));
  return { bytesPerSet, jobs: jobs.length, configs, breakdown: { buildMs, writeMs, encodeMs, otherMs: wallMs - buildMs - writeMs - encodeMs, wallMs } };
}

// ---- part 2: search latency while maintenance runs ----------------------------------------------

/**
 * The job set cycled in a loop until stopped, `concurrency` jobs in flight: one per pool thread,
 * one inline (a maintenance scheduler hands the pool what it can run; inline that is one task at a
 * time, so the main thread is blocked by one task's synchronous part, not by all of them at once).
 */
class MaintenanceLoop {
  completed = 0;
  #stopping = false;
  #error: unknown;
  readonly #lanes: Promise<void>[] = [];

  constructor(pool: WorkerPool, jobs: Job[], concurrency: number) {
    let next = 0;
    for (let i = 0; i < concurrency; i++) {
      this.#lanes.push((async () => {
        try {
          while (!this.#stopping) {
            await jobs[next++ % jobs.length]!.run(pool);
            this.completed++;
          }
        } catch (err) {
          this.#error ??= err;
        }
      })());
    }
  }

  /** Lets the jobs in flight finish; rethrows the first job failure. */
  async stop(): Promise<void> {
    this.#stopping = true;
    await Promise.all(this.#lanes);
    if (this.#error !== undefined) throw this.#error;
  }
}

interface Window {
  searches: number;
  /** Response time: from the moment the previous search resolved (the request "arrives") through the yield to the loop, to resolution. */
  p50: number;
  p99: number;
  /** The col.search call alone (no wait for the event loop before it). */
  callP50: number;
  callP99: number;
  eldP99: number;
  eldMax: number;
  /** Process CPU (all threads) / wall: cores busy, out of the machine's count. */
  cores: number;
  /** Maintenance jobs completed per second during the window. */
  jobsPerSec: number;
}

async function searchWindow(col: Collection, queries: Float32Array[], windowMs: number, loop?: MaintenanceLoop): Promise<Window> {
  const call: number[] = [];
  const resp: number[] = [];
  const eld = monitorEventLoopDelay({ resolution: 1 });
  const jobs0 = loop?.completed ?? 0;
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  eld.enable();
  for (let i = 0; performance.now() - t0 < windowMs; i++) {
    const arrive = performance.now();
    await yieldToLoop();
    const s = performance.now();
    await col.search(queries[i % queries.length]!, { k: K });
    const e = performance.now();
    call.push(e - s);
    resp.push(e - arrive);
  }
  eld.disable();
  const wall = performance.now() - t0;
  return {
    searches: resp.length, p50: percentile(resp, 50), p99: percentile(resp, 99), callP50: percentile(call, 50), callP99: percentile(call, 99),
    eldP99: eld.percentile(99) / 1e6, eldMax: eld.max / 1e6, cores: cpuMsSince(c0) / wall,
    jobsPerSec: ((loop?.completed ?? 0) - jobs0) / (wall / 1000),
  };
}

/**
 * 'nice0': maintenance on 2 workers whose threads keep the main thread's priority (workerNice 0);
 * 'burn': the control, BURNERS threads that only spin, no maintenance (see startLoad).
 */
type Condition = 'idle' | Threads | 'nice0' | 'burn';
const CONDITIONS: readonly Condition[] = ['idle', 0, 1, 2, 'nice0', 'burn'];
/** The nice value of the bench's pools (the engine's default) and of the 'nice0' pool. */
const POOL_NICE = DEFAULT_WORKER_NICE;
const BURNERS = 2;

interface ConditionResult extends Omit<Window, 'searches'> {
  condition: Condition;
  searches: number;
  /** Median over runs of this p99 / idle p99 in the same run (and the same for p50). */
  p99VsIdle: number;
  p50VsIdle: number;
  runsP99: number[];
  runsP99VsIdle: number[];
}

interface SearchSetup {
  db: Database;
  col: Collection;
  queries: Float32Array[];
  dir: string;
  sealMs: number;
}

async function openSearchCollection(opts: BenchOptions, p: WorkersParams, log: (m: string) => void): Promise<SearchSetup> {
  const nq = 200;
  const all = clusteredDataset({ count: p.searchRows + nq, dim: DIM, seed: 11 });
  const payloads = makePayloads(p.searchRows, 12);
  const dir = await tempDir(opts, 'workers-search');
  // Its own pool only seals this collection; during the windows it is idle (uploads are flushed
  // and the tiering loop is off), so every maintenance thread is the bench's.
  const db = await Database.open(dir, { workers: 1, tiering: { intervalMs: 0 } });
  try {
    const col = await db.createCollection('search', { dimension: DIM, metric: 'l2', hnsw: { ...HNSW } });
    log(`search: ingesting ${num(p.searchRows)} x ${DIM} with payloads, then flush (seal in the database's own worker)`);
    for (let from = 0; from < p.searchRows; from += BATCH) {
      const to = Math.min(p.searchRows, from + BATCH);
      const batch = [];
      for (let r = from; r < to; r++) batch.push({ id: docId(r), vector: all.subarray(r * DIM, (r + 1) * DIM), payload: JSON.parse(payloads[r]!) as Record<string, unknown> });
      await col.upsert(batch);
    }
    const t0 = performance.now();
    await col.flush();
    const sealMs = performance.now() - t0;
    await db.flushUploads();
    const queries = splitRows(all.subarray(p.searchRows * DIM), nq);
    for (const q of queries.slice(0, 50)) await col.search(q, { k: K }); // promotes to hot, JIT
    const tiers = col.segments().map((s) => s.tier);
    if (!tiers.every((t) => t === 'hot')) throw new Error(`searched collection is not hot after warm-up: ${tiers.join(', ')}`);
    return { db, col, queries, dir, sealMs };
  } catch (err) {
    await db.close();
    await removeDir(dir);
    throw err;
  }
}

/**
 * What runs beside the searches in condition `c`: nothing; the maintenance loop on a pool; or the
 * control, BURNERS threads running `for (;;) {}` (terminate() stops them). The control has the
 * CPU demand of 2 busy workers and nothing else (no tasks, no messages, no I/O, no garbage), so it
 * tells what the scheduler alone does to the searches. Resolves once the load is in steady state.
 */
async function startLoad(c: Condition, pools: Pools, jobs: Job[]): Promise<{ loop?: MaintenanceLoop; stop(): Promise<void> }> {
  if (c === 'idle') return { stop: async () => undefined };
  if (c === 'burn') {
    const burners = Array.from({ length: BURNERS }, () => new Worker('for (;;) {}', { eval: true }));
    await Promise.all(burners.map((w) => new Promise((resolve) => w.once('online', resolve))));
    return { stop: async () => void (await Promise.all(burners.map((w) => w.terminate()))) };
  }
  const pool = c === 'nice0' ? pools.nice0 : pools.get(c)!;
  const loop = new MaintenanceLoop(pool, jobs, Math.max(1, pool.threads));
  await sleep(200);
  return { loop, stop: () => loop.stop() };
}

async function measureSearch(
  opts: BenchOptions, p: WorkersParams, setup: SearchSetup, pools: Pools, jobs: Job[], log: (m: string) => void,
): Promise<ConditionResult[]> {
  const windows = new Map<Condition, Window[]>(CONDITIONS.map((c) => [c, []]));
  await searchWindow(setup.col, setup.queries, Math.min(500, p.windowMs)); // untimed warm-up
  for (let r = 0; r < opts.runs; r++) {
    for (const c of rotate(CONDITIONS, r)) {
      const load = await startLoad(c, pools, jobs);
      const w = await searchWindow(setup.col, setup.queries, p.windowMs, load.loop);
      await load.stop();
      windows.get(c)!.push(w);
      log(`search run ${r + 1}/${opts.runs}, ${conditionLabel(c)}: ${num(w.searches)} searches, p50 ${ms(w.p50)}, p99 ${ms(w.p99)}, event-loop delay p99 ${ms(w.eldP99)}`);
    }
  }
  const idle = windows.get('idle')!;
  return CONDITIONS.map((c): ConditionResult => {
    const ws = windows.get(c)!;
    const med = (f: (w: Window) => number) => median(ws.map(f));
    return {
      condition: c, searches: med((w) => w.searches), p50: med((w) => w.p50), p99: med((w) => w.p99),
      callP50: med((w) => w.callP50), callP99: med((w) => w.callP99), eldP99: med((w) => w.eldP99), eldMax: med((w) => w.eldMax),
      cores: med((w) => w.cores), jobsPerSec: med((w) => w.jobsPerSec),
      p99VsIdle: median(ws.map((w, i) => w.p99 / idle[i]!.p99)), p50VsIdle: median(ws.map((w, i) => w.p50 / idle[i]!.p50)),
      runsP99: ws.map((w) => w.p99), runsP99VsIdle: ws.map((w, i) => w.p99 / idle[i]!.p99),
    };
  });
}

// ---- part 3: compression per data type ----------------------------------------------------------

interface Sample {
  name: string;
  data: Uint8Array;
  /** 4 for float32 / u32 sections: the shuffle is considered, as the cold copy does for vectors. */
  elementSize?: number;
}

function bytesOf(f: Float32Array): Uint8Array {
  return new Uint8Array(f.buffer, f.byteOffset, f.byteLength);
}

/** The samples, and a note for each one skipped (siftsmall missing). */
function compressionSamples(p: WorkersParams): { samples: Sample[]; skipped: string[] } {
  const n = p.compressRows;
  const clustered = clusteredDataset({ count: n, dim: DIM, seed: 21 });
  const half = Math.floor(n / 2);
  const samples: Sample[] = [{ name: `float32 clustered, ${num(n)} x ${DIM}`, data: bytesOf(clustered), elementSize: SHUFFLE_ELEMENT_SIZE }];
  if (p.belowLargeSample) {
    samples.push({ name: `float32 clustered, ${num(half)} x ${DIM}`, data: bytesOf(clustered.subarray(0, half * DIM)), elementSize: SHUFFLE_ELEMENT_SIZE });
  }
  const skipped: string[] = [];
  const sift = path.join(siftsmallSearchPath(), 'siftsmall_base.fvecs');
  if (existsSync(sift)) {
    const base = readFvecs(sift);
    samples.push({ name: `float32 siftsmall base, ${num(base.count)} x ${base.dim}`, data: bytesOf(base.data), elementSize: SHUFFLE_ELEMENT_SIZE });
  } else {
    skipped.push(`siftsmall skipped: ${sift} not found (set STRATAVEC_SIFT_DIR or put siftsmall in ../shared/data/siftsmall)`);
  }
  samples.push(
    { name: `payloads section (JSON), ${num(n)} rows`, data: encodeStringTable(makePayloads(n, 22)) },
    { name: `ids section ("doc-000123"), ${num(n)} rows`, data: encodeStringTable(Array.from({ length: n }, (_, i) => docId(i))) },
  );
  return { samples, skipped };
}

const CODEC_NAMES: Record<number, string> = { [Codec.none]: 'none', [Codec.deflate]: 'deflate', [Codec.shuffleDeflate]: 'shuffle+deflate' };

/** Wall and CPU time per call. */
interface Timing {
  wallMs: number;
  cpuMs: number;
}

/**
 * Calls `fns` in turn, round after round, until `minMs` of wall time has passed (at least one
 * round); the time of each, per call. Alternating two steps puts them under the same noise.
 */
function perCall(fns: (() => unknown)[], minMs: number): Timing[] {
  const wall = fns.map(() => 0);
  const cpu = fns.map(() => 0);
  let rounds = 0;
  const t0 = performance.now();
  do {
    fns.forEach((fn, i) => {
      const c = process.cpuUsage();
      const t = performance.now();
      fn();
      wall[i] += performance.now() - t;
      cpu[i] += cpuMsSince(c);
    });
    rounds++;
  } while (performance.now() - t0 < minMs);
  return fns.map((_, i) => ({ wallMs: wall[i]! / rounds, cpuMs: cpu[i]! / rounds }));
}

/** Each timed step repeats until this much wall time has passed: a 140 KB section compresses in ~10 ms. */
const MIN_STEP_MS = 30;
/** Bytes of each sample the untimed warm-up codes. */
const WARM_UP_BYTES = 512 * 1024;

interface CompressionResult {
  name: string;
  bytes: number;
  entropy: number;
  planeEntropy?: number;
  /** What chooseCodec picked, and at which level; `storedAs` is what encodeSection kept (none if it saved < 10%). */
  codec: string;
  level: number;
  levelRule: string;
  storedAs: string;
  ratio: number;
  rawRatio: number;
  /** MB/s of raw bytes by this process's CPU time (one thread works; the pools are idle) and by wall time. */
  compressMBps: { zlib: number; fflate: number; raw: number };
  compressMBpsWall: { zlib: number; fflate: number; raw: number };
  decompressMBps: { zlib: number; fflate: number; raw: number };
  decompressMBpsWall: { zlib: number; fflate: number; raw: number };
  /** Median over runs of raw zlib time / engine (encodeSection, zlib) time, by CPU and by wall time: > 1 is faster than raw. */
  engineVsRaw: number;
  engineVsRawWall: number;
  /** CPU ms per entropy estimate (shannonEntropy + planeEntropy for float32), and its share of each encodeSection's CPU time. */
  entropyMs: number;
  entropyShare: { zlib: number; fflate: number };
}

const STEPS = ['zlib', 'fflate', 'raw'] as const;
type Step = (typeof STEPS)[number];
type Speeds = Record<Step, number>;

interface SampleRun {
  compress: Record<Step, Timing>;
  decompress: Record<Step, Timing>;
  /** The entropy estimate, timed alternately with each implementation's encodeSection. */
  entropy: Record<'zlib' | 'fflate', Timing>;
}

function measureSample(opts: BenchOptions, s: Sample): CompressionResult {
  const elem = s.elementSize === undefined ? {} : { elementSize: s.elementSize };
  const choice = chooseCodec(s.data, elem);
  const seen = choice.codec === Codec.shuffleDeflate ? choice.shuffledEntropy! : choice.entropy;
  // For a "none" choice nothing is compressed; measure at the level it would have had, for the record.
  const level = choice.codec === Codec.none ? levelFor(seen, s.data.length, false) : (choice.level as DeflateLevel);
  const encode = (impl: DeflateImpl) => encodeSection(s.data, { impl, ...elem });
  const enc = encode('zlib');
  const rawStored = zlib.deflateRawSync(s.data, { level });
  const compress: Record<Step, () => unknown> = {
    zlib: () => encode('zlib'), fflate: () => encode('fflate'), raw: () => zlib.deflateRawSync(s.data, { level }),
  };
  const decompress: Record<Step, () => unknown> = {
    zlib: () => decodeSection(enc.stored, enc.codec, s.data.length, 'zlib'),
    fflate: () => decodeSection(enc.stored, enc.codec, s.data.length, 'fflate'),
    raw: () => zlib.inflateRawSync(rawStored),
  };
  const entropy = () => {
    const sample = defaultEntropySample(s.data.byteLength); // what chooseCodec samples
    shannonEntropy(s.data, sample);
    if (s.elementSize !== undefined) planeEntropy(s.data, s.elementSize, sample);
  };
  // Untimed warm-up of every path on a slice (fflate's first calls run cold JS; the slice is enough to JIT it).
  const slice = s.data.subarray(0, Math.min(s.data.length, WARM_UP_BYTES));
  for (const impl of ['zlib', 'fflate'] as const) {
    const e = encodeSection(slice, { impl, ...elem });
    decodeSection(e.stored, e.codec, slice.length, impl);
  }
  zlib.inflateRawSync(zlib.deflateRawSync(slice, { level }));
  const runs: SampleRun[] = [];
  for (let r = 0; r < opts.runs; r++) {
    const run = { compress: {}, decompress: {}, entropy: {} } as SampleRun;
    for (const st of rotate(STEPS, r)) {
      if (st === 'raw') [run.compress.raw] = perCall([compress.raw], MIN_STEP_MS) as [Timing];
      else [run.entropy[st], run.compress[st]] = perCall([entropy, compress[st]], MIN_STEP_MS) as [Timing, Timing];
    }
    for (const st of rotate(STEPS, r)) [run.decompress[st]] = perCall([decompress[st]], MIN_STEP_MS) as [Timing];
    runs.push(run);
  }
  const speeds = (pick: (r: SampleRun, st: Step) => number): Speeds =>
    Object.fromEntries(STEPS.map((st) => [st, s.data.length / MB / (median(runs.map((r) => pick(r, st))) / 1000)])) as Speeds;
  return {
    name: s.name, bytes: s.data.length, entropy: choice.entropy,
    ...(choice.shuffledEntropy === undefined ? {} : { planeEntropy: choice.shuffledEntropy }),
    codec: CODEC_NAMES[choice.codec] ?? String(choice.codec), level,
    levelRule: s.data.length >= LARGE_SECTION_BYTES ? `>= ${LARGE_SECTION_BYTES / 2 ** 20} MiB` : choice.codec === Codec.shuffleDeflate ? 'shuffled' : `entropy ${seen.toFixed(2)}`,
    storedAs: CODEC_NAMES[enc.codec] ?? String(enc.codec), ratio: s.data.length / enc.stored.length, rawRatio: s.data.length / rawStored.length,
    compressMBps: speeds((r, st) => r.compress[st].cpuMs), compressMBpsWall: speeds((r, st) => r.compress[st].wallMs),
    decompressMBps: speeds((r, st) => r.decompress[st].cpuMs), decompressMBpsWall: speeds((r, st) => r.decompress[st].wallMs),
    engineVsRaw: median(runs.map((r) => r.compress.raw.cpuMs / r.compress.zlib.cpuMs)),
    engineVsRawWall: median(runs.map((r) => r.compress.raw.wallMs / r.compress.zlib.wallMs)),
    entropyMs: median(runs.flatMap((r) => [r.entropy.zlib.cpuMs, r.entropy.fflate.cpuMs])),
    entropyShare: {
      zlib: median(runs.map((r) => r.entropy.zlib.cpuMs / r.compress.zlib.cpuMs)),
      fflate: median(runs.map((r) => r.entropy.fflate.cpuMs / r.compress.fflate.cpuMs)),
    },
  };
}

// ---- tables and conclusion ----------------------------------------------------------------------

const label = (t: Threads) => (t === 0 ? 'inline (WorkerPool(0))' : `WorkerPool(${t})`);
const conditionLabel = (c: Condition) => {
  if (c === 'idle') return 'idle (no maintenance)';
  if (c === 'burn') return `control: ${BURNERS} threads spinning (nice 0)`;
  if (c === 'nice0') return 'maintenance on 2 workers at nice 0';
  return `maintenance ${c === 0 ? 'inline' : `on ${c} worker${c > 1 ? 's' : ''} (nice ${POOL_NICE})`}`;
};
const met = (ok: boolean) => (ok ? 'met' : 'MISSED');
const mbps = (x: number) => `${x.toFixed(1)} MB/s`;
const loadNote = (l: [number, number] | undefined) => (l ? `${l[0]} at the start, ${l[1]} at the end` : 'not recorded');

interface Results {
  params: WorkersParams;
  segmentBytes: number[];
  throughput: Throughput;
  search: ConditionResult[];
  searchSealMs: number;
  compression: CompressionResult[];
  skipped: string[];
  compressImpl: DeflateImpl;
  /** 1-minute load average at the start and end of each part. */
  loadAvg: Record<string, [number, number]>;
  /** Linux autogroup scheduling on: CPU is shared per session, not per thread. */
  autogroup: boolean;
}

function tables(opts: BenchOptions, res: Results): Table[] {
  const { params: p, throughput: tp, search, compression } = res;
  const b = tp.breakdown;
  const searchIdle = search.find((c) => c.condition === 'idle')!;
  return [
    {
      title: `maintenance throughput: ${tp.jobs} jobs (seal + cold-copy encode + verify of ${p.segments} segments of ${num(p.segmentRows)} x ${DIM}) submitted at once (median of ${opts.runs} interleaved runs)`,
      columns: ['pool', 'wall', 'MB/s', 'CPU (all threads)', 'CPU vs inline', 'cores busy', 'speedup vs inline', `target >= ${TARGET_SPEEDUP}x (2 workers)`],
      rows: tp.configs.map((c) => [
        label(c.threads), ms(c.wallMs), mbps(c.mbps), ms(c.cpuMs), ratio(c.cpuMs / tp.configs[0]!.cpuMs), (c.cpuMs / c.wallMs).toFixed(2), ratio(c.speedup),
        c.threads === 2 ? met(c.speedup >= TARGET_SPEEDUP) : '',
      ]),
      notes: [
        `segment files ${(res.segmentBytes.reduce((s, x) => s + x, 0) / MB).toFixed(1)} MB in all; MB/s = segment bytes the jobs write (seal) or read (encode, verify), ${(tp.bytesPerSet / MB).toFixed(1)} MB per job set, / wall`,
        `seal: HNSW build (M ${HNSW.M}, efConstruction ${HNSW.efConstruction}) + segment write with CRC32s and fsync, vectors in a SharedArrayBuffer; encodeColdCopy: verify + entropy selection + deflate + read-back of a sealed file; verifySegment: CRC32 of every section of a sealed file`,
        'speedup: median over runs of inline wall / pool wall in the same run; the three pools take turns (rotating order) so they see the same noise',
        `where the time goes (1 worker, tasks one at a time, sums of in-task timings, medians): HNSW build ${ms(b.buildMs)} (${pct(b.buildMs / b.wallMs)}), segment write ${ms(b.writeMs)} (${pct(b.writeMs / b.wallMs)}), cold-copy encode ${ms(b.encodeMs)} (${pct(b.encodeMs / b.wallMs)}), the rest (verify, dispatch, cloning task inputs) ${ms(b.otherMs)} (${pct(b.otherMs / b.wallMs)})`,
        `cores busy = process CPU time / wall; CPU vs inline = the pool's CPU time / inline's (the pool's own overhead); this machine has 2 cores and other tenants: 1-minute load average ${loadNote(res.loadAvg['throughput'])} during this part`,
        ...(res.autogroup ? ['the kernel groups CPU time by session (sched_autogroup_enabled = 1): while another session keeps a core busy, this process gets about one core however many threads it runs, and the speedup cannot pass cores busy (2 workers) / cores busy (inline)'] : []),
      ],
    },
    {
      title: `search latency while maintenance runs: ${num(p.searchRows)} x ${DIM} hot collection, k ${K}, one search at a time with a setImmediate yield between, ${p.windowMs / 1000} s windows (median of ${opts.runs} interleaved runs)`,
      columns: ['condition', 'searches', 'p50', 'p99', 'p50 vs idle', 'p99 vs idle', 'call p50', 'call p99', 'event-loop delay p99', 'ELD max', 'cores busy', 'maint. jobs/s', `target p99 <= ${TARGET_P99}x idle`],
      rows: search.map((c) => [
        conditionLabel(c.condition), num(c.searches), ms(c.p50), ms(c.p99), ratio(c.p50VsIdle), ratio(c.p99VsIdle), ms(c.callP50), ms(c.callP99),
        ms(c.eldP99), ms(c.eldMax), c.cores.toFixed(2), c.condition === 'idle' || c.condition === 'burn' ? '-' : c.jobsPerSec.toFixed(2),
        c.condition === 2 ? met(c.p99VsIdle <= TARGET_P99) : c.condition === 1 ? `(${met(c.p99VsIdle <= TARGET_P99)})` : '',
      ]),
      notes: [
        'p50 / p99: response time of each search, from the moment the previous one resolved (the request arrives) through the yield to the event loop, to resolution; "call" is the awaited col.search alone',
        `maintenance: the same job set as above cycled in a loop, one job in flight per pool thread (inline: one at a time, so the loop is blocked by one task's synchronous part, e.g. a whole HNSW build, not by all of them); the bench's pools are separate from the database's own (idle: uploads flushed, tiering loop off)`,
        'event-loop delay: perf_hooks.monitorEventLoopDelay, resolution 1 ms, as Node reports it (a delay includes the 1 ms timer interval); it is time-based, while the search percentiles are per search: a closed loop issues few searches while the loop is blocked, so they under-count blocked time',
        'p99 vs idle: median over runs of condition p99 / idle p99 of the same run; the 1-worker target mark is for information (the target is for 2 workers)',
        `p99 vs idle per run: ${search.filter((c) => c.condition !== 'idle').map((c) => `${conditionLabel(c.condition)} ${c.runsP99VsIdle.map((x) => x.toFixed(1)).join(' / ')}`).join('; ')}`,
        `control: ${BURNERS} worker threads running an empty infinite loop, no maintenance: the CPU demand of 2 busy workers without any task, message, I/O or garbage; what the scheduler alone does to the searches`,
        `2 pool threads + the main thread are 3 busy threads on 2 cores: at nice 0 searches wait their turn for a core; at nice ${POOL_NICE} the kernel runs the main thread first whenever it is ready; idle p99 ${ms(searchIdle.p99)}`,
        `the collection was sealed by its database's own worker in ${ms(res.searchSealMs)} before the windows; its one segment was hot throughout; 1-minute load average ${loadNote(res.loadAvg['search'])}`,
      ],
    },
    {
      title: `compression per data type: the entropy selection (chooseCodec / encodeSection) and compress speed by CPU time, node:zlib and fflate, against raw node:zlib deflateRawSync of the same bytes at the same level (median of ${opts.runs} runs)`,
      columns: ['data', 'bytes', 'entropy', 'planes', 'selected', 'level (rule)', 'stored as', 'ratio', 'raw deflate ratio', 'engine zlib', 'engine fflate', 'raw zlib', 'engine zlib / raw', '(wall)', 'entropy est.', 'share of zlib', 'share of fflate', `target < ${pct(TARGET_ENTROPY_SHARE)}`],
      rows: compression.map((c) => [
        c.name, num(c.bytes), c.entropy.toFixed(2), c.planeEntropy === undefined ? '-' : c.planeEntropy.toFixed(2), c.codec, `${c.level} (${c.levelRule})`, c.storedAs,
        `${c.ratio.toFixed(2)}:1`, `${c.rawRatio.toFixed(2)}:1`, mbps(c.compressMBps.zlib), mbps(c.compressMBps.fflate), mbps(c.compressMBps.raw), ratio(c.engineVsRaw), ratio(c.engineVsRawWall),
        ms(c.entropyMs), pct(c.entropyShare.zlib), pct(c.entropyShare.fflate), met(c.entropyShare[res.compressImpl] < TARGET_ENTROPY_SHARE),
      ]),
      notes: [
        'entropy: order-0 bits/byte of the sample (1/16 of the section, 4-64 KiB); planes: mean per-byte-plane entropy (only for float32 sections, where the shuffle is considered); selected: chooseCodec\'s codec and level',
        `level rule: shuffled sections and sections >= LARGE_SECTION_BYTES (${LARGE_SECTION_BYTES / 2 ** 20} MiB) at level 1, else levelForEntropy of the plain entropy: < 2.5 -> 1, < 3.5 -> 4, else 6`,
        'engine zlib / fflate: encodeSection(data, { impl }) MB/s of raw bytes: entropy estimate + shuffle (if picked) + deflate + two CRC32s; raw zlib: deflateRawSync of the unshuffled bytes at the same level; ratio: raw / stored bytes',
        `speeds by CPU time of this process (only the main thread works in this part), each step repeated for >= ${MIN_STEP_MS} ms: other tenants' load does not enter; engine/raw: median of per-run ratios, by CPU and (wall) by wall time`,
        `entropy est.: CPU time per call of shannonEntropy (+ planeEntropy for float32) on the sample, as chooseCodec runs it, called alternately with each encodeSection; share: of that encodeSection's CPU time (the estimate is inside it too); the target is judged on ${res.compressImpl}, the implementation deflateImplFor('compress') picks here`,
        `1-minute load average ${loadNote(res.loadAvg['compression'])}`,
        ...res.skipped,
      ],
    },
    {
      title: `decompression per data type: decodeSection (inflate + unshuffle) with node:zlib and fflate, against raw node:zlib inflateRawSync of the raw deflate stream (MB/s of raw bytes by CPU time, median of ${opts.runs} runs)`,
      columns: ['data', 'stored as', 'engine zlib', 'engine fflate', 'raw zlib', 'zlib / fflate'],
      rows: compression.map((c) => [
        c.name, c.storedAs, mbps(c.decompressMBps.zlib), mbps(c.decompressMBps.fflate), mbps(c.decompressMBps.raw), ratio(c.decompressMBps.zlib / c.decompressMBps.fflate),
      ]),
      notes: ['a section stored as "none" is returned as it is (no inflate), so its decode speed is only a copy-free check'],
    },
  ];
}

function conclusion(res: Results): string {
  const two = res.throughput.configs.find((c) => c.threads === 2)!;
  const one = res.throughput.configs.find((c) => c.threads === 1)!;
  const s2 = res.search.find((c) => c.condition === 2)!;
  const s1 = res.search.find((c) => c.condition === 1)!;
  const s0 = res.search.find((c) => c.condition === 0)!;
  const burn = res.search.find((c) => c.condition === 'burn')!;
  const nice0 = res.search.find((c) => c.condition === 'nice0')!;
  const worst = res.compression.reduce((a, c) => (c.entropyShare[res.compressImpl] > a.entropyShare[res.compressImpl] ? c : a));
  return [
    `maintenance throughput, 2 workers >= ${TARGET_SPEEDUP}x inline: ${met(two.speedup >= TARGET_SPEEDUP)} (${ratio(two.speedup)}; 1 worker ${ratio(one.speedup)})`,
    `search p99 with maintenance on 2 workers <= ${TARGET_P99}x idle: ${met(s2.p99VsIdle <= TARGET_P99)} (${ratio(s2.p99VsIdle)}, ${ms(s2.p99)}; `
      + `1 worker ${ratio(s1.p99VsIdle)} ${met(s1.p99VsIdle <= TARGET_P99)}; inline ${ratio(s0.p99VsIdle)}, event-loop delay p99 ${ms(s0.eldP99)}; `
      + `2 workers at nice 0: ${ratio(nice0.p99VsIdle)}; control, ${BURNERS} threads only spinning: ${ratio(burn.p99VsIdle)})`,
    `entropy estimate < ${pct(TARGET_ENTROPY_SHARE)} of the compression time (${res.compressImpl}): ${met(worst.entropyShare[res.compressImpl] < TARGET_ENTROPY_SHARE)} (worst ${pct(worst.entropyShare[res.compressImpl])}, ${worst.name})`,
  ].join('\n=> ');
}

// ---- the bench ----------------------------------------------------------------------------------

/** Whether Linux shares CPU between sessions rather than threads (then a process's threads share its session's part). */
function autogroupEnabled(): boolean {
  try {
    return readFileSync('/proc/sys/kernel/sched_autogroup_enabled', 'utf8').trim() === '1';
  } catch {
    return false;
  }
}

/** The 1-minute load average now: the other tenants' share of this machine, for the record. */
const load1 = () => +os.loadavg()[0]!.toFixed(2);

/** Part 2 on its own database, closed and removed before part 3 starts. */
async function searchPart(opts: BenchOptions, p: WorkersParams, pools: Pools, jobs: Job[], log: (m: string) => void) {
  const setup = await openSearchCollection(opts, p, log);
  try {
    return { search: await measureSearch(opts, p, setup, pools, jobs, log), sealMs: setup.sealMs };
  } finally {
    await setup.db.close();
    await removeDir(setup.dir);
  }
}

function compressionPart(opts: BenchOptions, p: WorkersParams, log: (m: string) => void): { compression: CompressionResult[]; skipped: string[] } {
  const { samples, skipped } = compressionSamples(p);
  for (const note of skipped) log(note);
  const compression: CompressionResult[] = [];
  for (const s of samples) {
    compression.push(measureSample(opts, s));
    log(`compression: ${s.name} done`);
  }
  return { compression, skipped };
}

export async function runWorkers(opts: BenchOptions, params: WorkersParams = defaultWorkersParams(opts.quick)): Promise<BenchReport> {
  const log = (m: string) => progress('workers', m);
  const p = params;
  const dir = await tempDir(opts, 'workers');
  const pools: Pools = Object.assign(new Map<Threads, WorkerPool>(THREADS.map((t) => [t, new WorkerPool(t, { nice: POOL_NICE })])), {
    nice0: new WorkerPool(2, { nice: 0 }),
  });
  const loadAvg: Record<string, [number, number]> = {};
  try {
    log(`generating ${p.segments} segments of ${num(p.segmentRows)} x ${DIM} clustered vectors with JSON payloads; writing their source files`);
    const segs = makeSegments(p, 1);
    const files = jobFiles(dir);
    const segmentBytes = await writeSources(segs, files);
    const jobs = makeJobs(segs, segmentBytes, files);
    log('warming up the pools (threads, JIT, the codec probe)');
    for (const pool of [...pools.values(), pools.nice0]) await warmUp(pool, jobs);

    log(`part 1: maintenance throughput, ${jobs.length} jobs per set`);
    let l0 = load1();
    const throughput = await measureThroughput(opts, pools, jobs, log);
    loadAvg['throughput'] = [l0, load1()];

    log('part 2: search latency while maintenance runs');
    l0 = load1();
    const { search, sealMs } = await searchPart(opts, p, pools, jobs, log);
    loadAvg['search'] = [l0, load1()];

    log('part 3: compression per data type');
    l0 = load1();
    const compressImpl = deflateImplFor('compress');
    const { compression, skipped } = compressionPart(opts, p, log);
    loadAvg['compression'] = [l0, load1()];

    const autogroup = autogroupEnabled();
    const res: Results = { params: p, segmentBytes, throughput, search, searchSealMs: sealMs, compression, skipped, compressImpl, loadAvg, autogroup };
    return {
      name: 'workers',
      tables: tables(opts, res),
      conclusion: conclusion(res),
      data: {
        parameters: {
          ...p, dim: DIM, k: K, hnsw: HNSW, runs: opts.runs, threads: THREADS, poolNice: POOL_NICE, compressImpl, decompressImpl: deflateImplFor('decompress'),
          targets: { speedup2Workers: TARGET_SPEEDUP, p99VsIdle2Workers: TARGET_P99, entropyShare: TARGET_ENTROPY_SHARE },
        },
        loadAvg1mStartEnd: loadAvg,
        schedAutogroup: autogroup,
        segmentBytes,
        throughput: roundDeep(throughput),
        search: roundDeep(search.map((c) => ({ ...c, condition: typeof c.condition === 'number' ? `threads-${c.condition}` : c.condition }))),
        compression: roundDeep(compression),
        skipped,
      },
    };
  } finally {
    for (const pool of [...pools.values(), pools.nice0]) await pool.destroy();
    await removeDir(dir);
  }
}
