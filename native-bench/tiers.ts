// Tiers bench: what moving a segment between tiers costs, against the raw parts underneath, in
// one run, as ratios. Issue targets: cold first query <= 1.5x (raw S3 GET + raw hnswlib readIndex),
// migration throughput >= 0.7x (raw PutObject / GetObject of the same logical bytes). Plus, per
// segment size, a warm exact scan against hot HNSW and the promotion between them, the evidence
// behind the `warmScanMaxRecords` default. Public API, the S3 SDK, hnswlib-node, node:fs and
// harness/ only; engine and raw measurements are interleaved so both see the same noise.

import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import hnswlib from 'hnswlib-node';
import {
  DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client,
} from '@aws-sdk/client-s3';
import { Database, type Collection, type DatabaseOptions, type S3ObjectStoreOptions, type SegmentInfo } from '../engine/index.js';
import { clusteredDataset } from '../harness/datasets.js';
import { startS3rver, S3RVER_CREDENTIALS, type S3rverHandle } from '../harness/s3rver.js';
import {
  median, percentile, progress, tempDir, removeDir, num, ms, ratio, pct, round,
  type BenchOptions, type BenchReport, type Table,
} from './report.js';
import { DIM, HNSW, K, roundDeep, splitRows, upsertRows } from './search.js';

const { HierarchicalNSW } = hnswlib;

const TARGET_COLD = 1.5;
const TARGET_MIGRATION = 0.7;
/**
 * Queries a promoted segment is assumed to serve while hot, for the warmScanMaxRecords advice (a
 * workload assumption: the conclusion also prints the threshold at half and twice this).
 */
const REFERENCE_QUERIES = 10;
const MB = 1e6;
const REGION = 'us-east-1';
/** Object-store prefix of the engine inside the bucket; raw objects go under RAW_PREFIX. */
const DB_PREFIX = 'db';
const RAW_PREFIX = 'raw';
/** Warm-scan passes: blocks of this many queries, exact scan and HNSW alternating. */
const BLOCK = 10;

export interface TiersParams {
  /** Part 3: segment sizes (rows), one collection of one sealed segment each. */
  sizes: number[];
  /** Part 1: sizes whose cold first query is measured (a subset of `sizes`). */
  coldSizes: number[];
  /** Part 2: the size whose migrations are measured (one of `sizes`). */
  migrationSize: number;
}

export function defaultTiersParams(quick: boolean, sizes?: number[]): TiersParams {
  // 2,000 and 3,000: the scan/promotion break-even crosses its reference between 1,000 and 5,000.
  const s = [...new Set(sizes ?? (quick ? [1_000, 2_000, 5_000, 10_000] : [1_000, 2_000, 3_000, 5_000, 10_000, 25_000, 50_000]))].sort((a, b) => a - b);
  const cold = (quick ? [10_000] : [10_000, 50_000]).filter((x) => s.includes(x));
  return { sizes: s, coldSizes: cold.length > 0 ? cold : [s.at(-1)!], migrationSize: s.at(-1)! };
}

// ---- helpers ------------------------------------------------------------------------------------

const colName = (size: number) => `seg-${size}`;

/** Promotions timed per size in part 3. */
const promotionRuns = (opts: BenchOptions) => Math.max(9, 3 * opts.runs);

function cpuMsSince(c0: NodeJS.CpuUsage): number {
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / 1000;
}

async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t0 = performance.now();
  const value = await fn();
  return { ms: performance.now() - t0, value };
}

function onlySegment(col: Collection): SegmentInfo {
  const segs = col.segments();
  if (segs.length !== 1) throw new Error(`collection ${col.name} has ${segs.length} segments, expected 1`);
  return segs[0]!;
}

/** The local file of a warm segment: the only `.seg` in its collection's segments/ (README "On disk"). */
async function warmFile(dbDir: string, col: Collection): Promise<string> {
  const dir = path.join(dbDir, 'collections', col.name, 'segments');
  const segs = (await fsp.readdir(dir)).filter((f) => f.endsWith('.seg'));
  if (segs.length !== 1) throw new Error(`${dir} holds ${segs.length} segment files, expected 1 (is the segment warm?)`);
  return path.join(dir, segs[0]!);
}

/**
 * The hnswlib index bytes inside a segment file, found by hnswlib's own saveIndex header (not by
 * stratavec's section table: the raw side must not lean on engine code). The header starts
 * offsetLevel0 = 0, maxElements = count, curCount = count, sizePerElement, labelOffset, offsetData
 * (u64 each) and is 96 bytes; then count level-0 records; then per element a u32 byte length and
 * that many bytes of upper-level links, which is where the index ends.
 */
export function extractHnswIndex(file: Buffer, dim: number, count: number, M: number): Buffer {
  const offsetData = 4 + 4 * 2 * M;
  const labelOffset = offsetData + 4 * dim;
  const perElem = labelOffset + 8;
  const want = [0, count, count, perElem, labelOffset, offsetData];
  const dv = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const u64 = (at: number) => (dv.getUint32(at + 4, true) === 0 ? dv.getUint32(at, true) : -1);
  for (let at = 0; at + 96 <= file.length; at += 8) {
    if (!want.every((v, i) => u64(at + 8 * i) === v)) continue;
    let pos = at + 96 + count * perElem;
    for (let i = 0; i < count && pos + 4 <= file.length; i++) pos += 4 + dv.getUint32(pos, true);
    if (pos > file.length) continue;
    return file.subarray(at, pos);
  }
  throw new Error(`no hnswlib index of ${count} x ${dim} (M=${M}) found in the segment file`);
}

async function readBody(body: unknown): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of body as AsyncIterable<Uint8Array>) {
    chunks.push(Buffer.from(c.buffer, c.byteOffset, c.byteLength));
    n += c.byteLength;
  }
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, n);
}

/** The raw part: the S3 SDK as any caller would set it up, same endpoint, same checksum settings as the engine. */
class RawS3 {
  readonly client: S3Client;
  readonly bucket: string;

  constructor(s3: S3rverHandle) {
    this.bucket = s3.bucket;
    this.client = new S3Client({
      region: REGION, endpoint: s3.endpoint, forcePathStyle: true, credentials: { ...S3RVER_CREDENTIALS },
      // As the engine's store sets them (tiers/s3-object-store.ts): no aws-chunked checksum trailers.
      requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED',
    });
  }

  async get(key: string): Promise<Buffer> {
    const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
    const buf = await readBody(out.Body);
    if (out.ContentLength !== undefined && buf.length !== out.ContentLength) throw new Error(`short GET of ${key}`);
    return buf;
  }

  async put(key: string, body: Buffer): Promise<void> {
    await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: body, ContentLength: body.length }));
  }

  async delete(key: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
  }

  /** The engine's object for a segment: under its collection's prefix, with the size the engine reports. */
  async findObject(collection: string, segmentId: string, size: number): Promise<string> {
    const out = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: `${DB_PREFIX}/${collection}/` }));
    const hit = (out.Contents ?? []).find((o) => o.Size === size && o.Key?.endsWith(segmentId));
    if (!hit?.Key) throw new Error(`no object of ${size} bytes for ${segmentId} under ${DB_PREFIX}/${collection}/`);
    return hit.Key;
  }
}

/** A raw hnswlib-node readIndex of a file; the native graph is freed at once, as the engine's dispose does. */
async function rawReadIndex(file: string, count: number): Promise<number> {
  const index = new HierarchicalNSW('l2', DIM);
  const t0 = performance.now();
  await index.readIndex(file);
  const t = performance.now() - t0;
  if (index.getCurrentCount() !== count) throw new Error(`raw readIndex read ${index.getCurrentCount()} elements, expected ${count}`);
  index.initIndex({ maxElements: 1, m: 2, efConstruction: 2 });
  return t;
}

interface Ctx {
  opts: BenchOptions;
  dir: string;
  s3: S3rverHandle;
  raw: RawS3;
  dbOptions: DatabaseOptions;
  db: Database;
  queries: Float32Array[];
  log: (m: string) => void;
}

async function reopen(ctx: Ctx, extra: DatabaseOptions = {}): Promise<void> {
  await ctx.db.close();
  ctx.db = await Database.open(ctx.dir, { ...ctx.dbOptions, ...extra });
}

async function ensureTier(ctx: Ctx, col: Collection, tier: 'hot' | 'warm' | 'cold'): Promise<void> {
  const seg = onlySegment(col);
  if (seg.tier !== tier) await ctx.db.migrate(seg.id, tier);
  if (onlySegment(col).tier !== tier) throw new Error(`${seg.id} is ${onlySegment(col).tier} after migrating to ${tier}`);
}

// ---- part 3: warm exact scan vs hot HNSW vs promotion -------------------------------------------

interface ScanResult {
  size: number;
  fileBytes: number;
  /** Growth of the hot tier's byte count when this segment was promoted. */
  hotBytes: number;
  /** Per-query latency, median over passes of each pass's p50 (p99 alongside). */
  scanP50: number;
  scanP99: number;
  hotP50: number;
  hotP99: number;
  /** This process's CPU time per query (all threads; the pool is idle then), median over passes: steadier on a busy box. */
  scanCpuMs: number;
  hotCpuMs: number;
  /** Recall@10 of the hot HNSW answers against the exact scan's, same queries. */
  recall: number;
  /** First search on a warm, not hot segment (it promotes it: the index load into hot), median. */
  firstSearchMs: number;
  firstSearchRuns: number[];
  /** What promotion adds: first search minus a hot search. */
  promotionMs: number;
  /** Queries after which promote-then-HNSW has cost less than scanning every time (wall-clock p50s). */
  breakEven: number;
  /** The same with the per-query costs taken from CPU time (the promotion stays wall-clock). */
  breakEvenCpu: number;
}

async function measureScan(ctx: Ctx, size: number): Promise<ScanResult> {
  const { db, queries, opts } = ctx;
  const col = db.collection(colName(size));
  const seg = onlySegment(col);
  // Untimed warm-up: one promotion and a few searches each way (JIT, page cache, worker).
  await ensureTier(ctx, col, 'warm');
  await col.search(queries[0]!, { k: K });
  for (const q of queries.slice(0, 5)) {
    await col.search(q, { k: K, exact: true });
    await col.search(q, { k: K });
  }
  await ensureTier(ctx, col, 'warm');

  // Promotion: evict to warm (untimed), then the first plain search loads the index into hot. It
  // is short (ms) and noisy, and it sets the break-even of small segments: three samples per run.
  const firsts: number[] = [];
  let hotBytes = 0;
  for (let r = 0; r < promotionRuns(opts); r++) {
    await ensureTier(ctx, col, 'warm');
    const before = db.stats().tiers.hot.bytes;
    const t = await timed(() => col.search(queries[(r * 7 + 3) % queries.length]!, { k: K }));
    if (onlySegment(col).tier !== 'hot') throw new Error(`${seg.id} was not promoted by a search (warmScanMaxRecords?)`);
    hotBytes = db.stats().tiers.hot.bytes - before;
    firsts.push(t.ms);
  }

  // Steady state, segment hot: exact scans (the same view.scan over the mapped vectors a warm
  // segment under warmScanMaxRecords answers with) and HNSW searches, in alternating blocks. A pass
  // holds as many queries as fit a time budget for the scans (big segments scan slowly), 20 to 100.
  const probe: number[] = [];
  for (const q of queries.slice(5, 8)) probe.push((await timed(() => col.search(q, { k: K, exact: true }))).ms);
  const nq = Math.max(20, Math.min(opts.quick ? 40 : 100, Math.ceil((opts.quick ? 400 : 1500) / median(probe))));
  const scanPass: number[] = [];
  const scanP99: number[] = [];
  const hotPass: number[] = [];
  const hotP99: number[] = [];
  const scanCpu: number[] = [];
  const hotCpu: number[] = [];
  let hits = 0;
  let total = 0;
  for (let r = 0; r < opts.runs; r++) {
    const sLat: number[] = [];
    const hLat: number[] = [];
    const cpu = { scan: 0, hot: 0 };
    for (let b = 0; b * BLOCK < nq; b++) {
      const blk = queries.slice(b * BLOCK, Math.min(nq, (b + 1) * BLOCK));
      const scanBlock = async () => {
        const found: string[][] = [];
        const c0 = process.cpuUsage();
        for (const q of blk) {
          const t0 = performance.now();
          const hits = await col.search(q, { k: K, exact: true, includePayload: false });
          sLat.push(performance.now() - t0);
          found.push(hits.map((h) => h.id));
        }
        cpu.scan += cpuMsSince(c0);
        return found;
      };
      const hotBlock = async () => {
        const found: string[][] = [];
        const c0 = process.cpuUsage();
        for (const q of blk) {
          const t0 = performance.now();
          const hits = await col.search(q, { k: K, includePayload: false });
          hLat.push(performance.now() - t0);
          found.push(hits.map((h) => h.id));
        }
        cpu.hot += cpuMsSince(c0);
        return found;
      };
      let exact: string[][];
      let approx: string[][];
      if ((b + r) % 2 === 0) {
        exact = await scanBlock();
        approx = await hotBlock();
      } else {
        approx = await hotBlock();
        exact = await scanBlock();
      }
      if (r === 0) {
        exact.forEach((e, i) => {
          const want = new Set(e);
          hits += approx[i]!.filter((id) => want.has(id)).length;
          total += e.length;
        });
      }
    }
    scanPass.push(percentile(sLat, 50));
    scanP99.push(percentile(sLat, 99));
    hotPass.push(percentile(hLat, 50));
    hotP99.push(percentile(hLat, 99));
    scanCpu.push(cpu.scan / sLat.length);
    hotCpu.push(cpu.hot / hLat.length);
  }
  const scanP50 = median(scanPass);
  const hotP50 = median(hotPass);
  const firstSearchMs = median(firsts);
  const promotionMs = Math.max(0, firstSearchMs - hotP50);
  const gain = scanP50 - hotP50;
  const scanCpuMs = median(scanCpu);
  const hotCpuMs = median(hotCpu);
  const gainCpu = scanCpuMs - hotCpuMs;
  const fileBytes = (await fsp.stat(await warmFile(ctx.dir, col))).size;
  const res: ScanResult = {
    size, fileBytes, hotBytes, scanP50, scanP99: median(scanP99), hotP50, hotP99: median(hotP99), scanCpuMs, hotCpuMs,
    recall: total > 0 ? hits / total : NaN, firstSearchMs, firstSearchRuns: firsts, promotionMs,
    breakEven: gain > 0 ? promotionMs / gain : Infinity,
    breakEvenCpu: gainCpu > 0 ? promotionMs / gainCpu : Infinity,
  };
  // Leave it warm: hot memory is not what the next size should share the machine with.
  await ensureTier(ctx, col, 'warm');
  return res;
}

// ---- part 1: cold first query -------------------------------------------------------------------

interface ColdResult {
  size: number;
  logicalBytes: number;
  wireBytes: number;
  indexBytes: number;
  engineMs: number;
  rawMs: number;
  rawGetMs: number;
  rawReadIndexMs: number;
  /** Median of per-run engine/raw wall time (each run's sides back to back, order rotating). */
  ratio: number;
  /** The same from this process's CPU time (all threads, s3rver included on both sides). */
  cpuRatio: number;
  engineCpuMs: number;
  rawCpuMs: number;
  runs: { engine: number; rawGet: number; rawReadIndex: number; steps: number }[];
  /** The same path one step at a time through the public API, in the same interleaved runs. */
  steps: { rehydrateMs: number; promoteMs: number; queryMs: number };
  /** The engine's own histograms (db.stats().movement) over this size's cycles, this database open. */
  engineStats: { rehydration: { count: number; p50Ms: number }; promotion: { count: number; p50Ms: number } };
  /** warm -> cold with the remote copy present (done before every engine cycle): no upload. */
  demoteMs: number;
  /** The tier the first search left the segment in ('hot': promoted; 'warm': scanned, size <= warmScanMaxRecords). */
  tierAfter: string;
}

async function measureCold(ctx: Ctx, size: number): Promise<ColdResult> {
  const { raw, opts, log, queries } = ctx;
  // Fresh stats per size (the latency histograms are database-wide); default warmScanMaxRecords.
  await reopen(ctx);
  const col = () => ctx.db.collection(colName(size));
  await ensureTier(ctx, col(), 'warm');
  const seg = onlySegment(col());
  // The raw side reads the same index: the hnswlib bytes of this very segment, written to a file.
  const file = await fsp.readFile(await warmFile(ctx.dir, col()));
  const logicalBytes = file.length;
  const indexBytes = extractHnswIndex(file, DIM, size, HNSW.M);
  const indexFile = path.join(ctx.dir, `raw-${size}.hnsw`);
  await fsp.writeFile(indexFile, indexBytes);
  await ensureTier(ctx, col(), 'cold'); // the first demotion uploads (uploadOnSeal is off)
  const wireBytes = onlySegment(col()).remoteBytes!;
  const key = await raw.findObject(col().name, seg.id, wireBytes);
  // Above warmScanMaxRecords the first search promotes; at or below it, it scans the rehydrated file.
  const expectTier = size > ctx.db.options.warmScanMaxRecords ? 'hot' : 'warm';

  const demotes: number[] = [];
  const toCold = async () => {
    demotes.push((await timed(() => ctx.db.migrate(seg.id, 'cold'))).ms);
    if (onlySegment(col()).tier !== 'cold') throw new Error(`${seg.id} not cold`);
  };
  const engineRun = async (q: Float32Array) => {
    await toCold();
    const c0 = process.cpuUsage();
    const t = await timed(() => col().search(q, { k: K }));
    const cpu = cpuMsSince(c0);
    if (t.value.length !== K || onlySegment(col()).tier !== expectTier) {
      throw new Error(`cold first search: ${t.value.length} hits, tier ${onlySegment(col()).tier}, expected ${expectTier}`);
    }
    return { ms: t.ms, cpu };
  };
  const rawRun = async () => {
    const c0 = process.cpuUsage();
    const g = await timed(() => raw.get(key));
    if (g.value.length !== wireBytes) throw new Error(`raw GET returned ${g.value.length} bytes, expected ${wireBytes}`);
    const ri = await rawReadIndex(indexFile, size);
    return { get: g.ms, readIndex: ri, cpu: cpuMsSince(c0) };
  };
  // rehydrate (download, verify, decompress, write, commit, map), promote (the index load), one
  // query: the first search's path, one public call per step.
  const stepRun = async (q: Float32Array) => {
    await toCold();
    const rehydrate = (await timed(() => ctx.db.migrate(seg.id, 'warm'))).ms;
    const promote = (await timed(() => ctx.db.migrate(seg.id, 'hot'))).ms;
    const query = (await timed(() => col().search(q, { k: K }))).ms;
    return { rehydrate, promote, query };
  };

  // Untimed warm-up (fresh worker pool after the reopen, JIT, page cache on both sides).
  await engineRun(queries[0]!);
  await rawRun();
  demotes.length = 0;

  const runs: { engine: number; engineCpu: number; rawGet: number; rawReadIndex: number; rawCpu: number; steps: { rehydrate: number; promote: number; query: number } }[] = [];
  for (let r = 0; r < opts.runs; r++) {
    const q = queries[(r * 13 + 1) % queries.length]!;
    let e: { ms: number; cpu: number } | undefined;
    let w: { get: number; readIndex: number; cpu: number } | undefined;
    let st: { rehydrate: number; promote: number; query: number } | undefined;
    // The three sides in a rotating order, so no side always follows the same one.
    const sides = [async () => { e = await engineRun(q); }, async () => { w = await rawRun(); }, async () => { st = await stepRun(q); }];
    for (let i = 0; i < 3; i++) await sides[(i + r) % 3]!();
    runs.push({ engine: e!.ms, engineCpu: e!.cpu, rawGet: w!.get, rawReadIndex: w!.readIndex, rawCpu: w!.cpu, steps: st! });
    log(`cold ${num(size)}: run ${r + 1}/${opts.runs}: engine first search ${ms(e!.ms)}, raw GET ${ms(w!.get)} + readIndex ${ms(w!.readIndex)} `
      + `(ratio ${ratio(e!.ms / (w!.get + w!.readIndex))}); steps: rehydrate ${ms(st!.rehydrate)}, promote ${ms(st!.promote)}, query ${ms(st!.query)}`);
  }
  const mv = ctx.db.stats().movement;
  await fsp.rm(indexFile, { force: true });
  const rawTotal = (x: (typeof runs)[number]) => x.rawGet + x.rawReadIndex;
  return {
    size, logicalBytes, wireBytes, indexBytes: indexBytes.length,
    engineMs: median(runs.map((x) => x.engine)),
    rawMs: median(runs.map(rawTotal)),
    rawGetMs: median(runs.map((x) => x.rawGet)),
    rawReadIndexMs: median(runs.map((x) => x.rawReadIndex)),
    ratio: median(runs.map((x) => x.engine / rawTotal(x))),
    cpuRatio: median(runs.map((x) => x.engineCpu / x.rawCpu)),
    engineCpuMs: median(runs.map((x) => x.engineCpu)),
    rawCpuMs: median(runs.map((x) => x.rawCpu)),
    runs: runs.map((x) => ({ engine: round(x.engine, 1), rawGet: round(x.rawGet, 1), rawReadIndex: round(x.rawReadIndex, 1), steps: round(x.steps.rehydrate + x.steps.promote + x.steps.query, 1) })),
    steps: {
      rehydrateMs: median(runs.map((x) => x.steps.rehydrate)),
      promoteMs: median(runs.map((x) => x.steps.promote)),
      queryMs: median(runs.map((x) => x.steps.query)),
    },
    engineStats: {
      rehydration: { count: mv.rehydrationLatency.count, p50Ms: mv.rehydrationLatency.p50Ms },
      promotion: { count: mv.promotionLatency.count, p50Ms: mv.promotionLatency.p50Ms },
    },
    demoteMs: median(demotes),
    tierAfter: expectTier,
  };
}

// ---- part 2: migration throughput ---------------------------------------------------------------

interface MoveSide {
  engineMs: number;
  /** MoveResult.ms: the engine's own timing of the move, inside the call. */
  engineMoveMs: number;
  rawMs: number;
  /** engine/raw throughput: median of per-run raw time / engine time. */
  ratio: number;
  /** The same from this process's CPU time (all threads; s3rver, in process, on both sides). */
  cpuRatio: number;
  runs: { engine: number; raw: number }[];
}

interface MigrationResult {
  size: number;
  logicalBytes: number;
  wireBytes: number;
  down: MoveSide;
  up: MoveSide;
  uploadsCounted: number;
  /** What db.migrate's MoveResult.bytes reported for each direction. */
  moveResultBytes: { down: number; up: number };
}

async function measureMigration(ctx: Ctx, size: number): Promise<MigrationResult> {
  const { raw, opts, log } = ctx;
  const col = () => ctx.db.collection(colName(size));
  await ensureTier(ctx, col(), 'warm');
  const seg = onlySegment(col());
  // The raw side moves the same logical bytes: the raw segment file, read before the clock starts.
  const fileBytes = await fsp.readFile(await warmFile(ctx.dir, col()));
  const rawKey = `${RAW_PREFIX}/${seg.id}.seg`;
  if (seg.remoteBytes === undefined) {
    // No copy yet (part 1 did not run on this size): one untimed upload, to learn the object's key.
    await ensureTier(ctx, col(), 'cold');
    await ensureTier(ctx, col(), 'warm');
  }
  const wireBytes = onlySegment(col()).remoteBytes!;
  const engineKey = await raw.findObject(col().name, seg.id, wireBytes);
  // Untimed warm-up of the raw side (the engine's paths ran in part 1 or just above).
  await raw.put(rawKey, fileBytes);
  await raw.get(rawKey);

  type Sample = { engine: number; engineMove: number; engineCpu: number; raw: number; rawCpu: number };
  const down: Sample[] = [];
  const up: Sample[] = [];
  const moved: { down: number; up: number } = { down: NaN, up: NaN };
  const uploads0 = ctx.db.stats().movement.uploads;
  const engineMove = async (to: 'cold' | 'warm') => {
    const c0 = process.cpuUsage();
    const t = await timed(() => ctx.db.migrate(seg.id, to));
    const cpu = cpuMsSince(c0);
    moved[to === 'cold' ? 'down' : 'up'] = t.value.bytes;
    if (onlySegment(col()).tier !== to) throw new Error(`${seg.id} is ${onlySegment(col()).tier} after migrating to ${to}`);
    return { ms: t.ms, move: t.value.ms, cpu };
  };
  const rawOp = async (op: () => Promise<unknown>) => {
    const c0 = process.cpuUsage();
    const t = await timed(op);
    return { ms: t.ms, cpu: cpuMsSince(c0) };
  };
  for (let r = 0; r < opts.runs; r++) {
    // A demotion uploads only when no verified remote copy exists; deleting the object under the
    // engine (as a lost copy would be) makes every timed demotion a full encode + upload + verify.
    await raw.delete(engineKey);
    const pair = async (engineFirst: boolean, e: () => ReturnType<typeof engineMove>, w: () => ReturnType<typeof rawOp>, into: Sample[]) => {
      let ev: Awaited<ReturnType<typeof engineMove>>;
      let wv: Awaited<ReturnType<typeof rawOp>>;
      if (engineFirst) {
        ev = await e();
        wv = await w();
      } else {
        wv = await w();
        ev = await e();
      }
      into.push({ engine: ev.ms, engineMove: ev.move, engineCpu: ev.cpu, raw: wv.ms, rawCpu: wv.cpu });
    };
    await pair(r % 2 === 0, () => engineMove('cold'), () => rawOp(() => raw.put(rawKey, fileBytes)), down);
    await pair(r % 2 === 0, () => engineMove('warm'), () => rawOp(() => raw.get(rawKey)), up);
    log(`migration ${num(size)}: run ${r + 1}/${opts.runs}: warm->cold ${ms(down.at(-1)!.engine)} (raw PUT ${ms(down.at(-1)!.raw)}), `
      + `cold->warm ${ms(up.at(-1)!.engine)} (raw GET ${ms(up.at(-1)!.raw)})`);
  }
  const uploadsCounted = ctx.db.stats().movement.uploads - uploads0;
  if (uploadsCounted < opts.runs) throw new Error(`only ${uploadsCounted} uploads for ${opts.runs} timed demotions`);
  await raw.delete(rawKey);
  const summarize = (xs: Sample[]): MoveSide => ({
    engineMs: median(xs.map((x) => x.engine)),
    engineMoveMs: median(xs.map((x) => x.engineMove)),
    rawMs: median(xs.map((x) => x.raw)),
    ratio: median(xs.map((x) => x.raw / x.engine)),
    cpuRatio: median(xs.map((x) => x.rawCpu / x.engineCpu)),
    runs: xs.map((x) => ({ engine: round(x.engine, 1), raw: round(x.raw, 1) })),
  });
  return {
    size, logicalBytes: fileBytes.length, wireBytes, down: summarize(down), up: summarize(up), uploadsCounted, moveResultBytes: moved,
  };
}

// ---- the bench ----------------------------------------------------------------------------------

export async function runTiers(opts: BenchOptions, params: TiersParams = defaultTiersParams(opts.quick)): Promise<BenchReport> {
  const log = (m: string) => progress('tiers', m);
  const { sizes, coldSizes, migrationSize } = params;
  const maxSize = Math.max(...sizes);
  const nq = 200;
  log(`generating ${num(maxSize)} x ${DIM} clustered vectors + ${nq} held-out queries`);
  const all = clusteredDataset({ count: maxSize + nq, dim: DIM, seed: 5 });
  const base = all.subarray(0, maxSize * DIM);
  const queries = splitRows(all.subarray(maxSize * DIM), nq);

  const s3 = await startS3rver({ bucket: 'stratavec-bench' });
  const dir = await tempDir(opts, 'tiers');
  const store: S3ObjectStoreOptions = {
    url: `s3://${s3.bucket}/${DB_PREFIX}`, endpoint: s3.endpoint, region: REGION, credentials: { ...S3RVER_CREDENTIALS }, forcePathStyle: true,
  };
  // Segments are sealed only by flush() (one per collection); uploads happen on demotion only
  // (uploadOnSeal off), so nothing uploads in the background; the tiering loop is off so nothing
  // moves segments behind the bench's back.
  const dbOptions: DatabaseOptions = { objectStore: store, segmentMaxRecords: maxSize + 1, uploadOnSeal: false, tiering: { intervalMs: 0 } };
  const raw = new RawS3(s3);
  // Part 3 needs every size promoted by a plain search, so that database scans nothing by rule.
  const db = await Database.open(dir, { ...dbOptions, warmScanMaxRecords: 0 });
  const ctx: Ctx = { opts, dir, s3, raw, dbOptions, db, queries, log };
  const defaultWarmScan = await engineDefaultWarmScan(opts);
  let build: Record<string, unknown>;
  const scans: ScanResult[] = [];
  let migration: MigrationResult | undefined;
  const colds: ColdResult[] = [];
  try {
    // Build: one collection per size, one sealed segment each; seals run side by side in the pool.
    const t0 = performance.now();
    for (const size of sizes) {
      const col = await db.createCollection(colName(size), { dimension: DIM, metric: 'l2', hnsw: { ...HNSW } });
      await upsertRows(col, base, 0, size);
    }
    const t1 = performance.now();
    log(`upserted ${sizes.map((s) => num(s)).join(' + ')} rows in ${ms(t1 - t0)}; sealing (HNSW M=${HNSW.M}, efConstruction=${HNSW.efConstruction}) in ${db.options.workers} workers`);
    await Promise.all([...sizes].reverse().map((s) => db.collection(colName(s)).flush()));
    build = { upsertMs: round(t1 - t0, 1), sealAllMs: round(performance.now() - t1, 1) };
    log(`sealed in ${ms(performance.now() - t1)}`);

    for (const size of sizes) {
      log(`scan vs hot ${num(size)}: ${promotionRuns(opts)} promotions, ${opts.runs} passes of exact scans and HNSW searches`);
      const r = await measureScan(ctx, size);
      scans.push(r);
      log(`scan vs hot ${num(size)}: scan p50 ${ms(r.scanP50)}, hot p50 ${ms(r.hotP50)}, first search ${ms(r.firstSearchMs)}, break-even ${num(r.breakEven, 1)} queries`);
    }

    for (const size of coldSizes) {
      log(`cold first query ${num(size)} rows: ${opts.runs} interleaved runs (engine first search, raw GET + readIndex, engine step by step)`);
      colds.push(await measureCold(ctx, size));
    }

    // After part 1, so the segment usually has its remote copy already and no untimed upload is needed.
    log(`migration ${num(migrationSize)} rows: ${opts.runs} runs of warm->cold, raw PUT, cold->warm, raw GET`);
    migration = await measureMigration(ctx, migrationSize);
  } finally {
    await ctx.db.close();
    raw.client.destroy();
    await s3.destroy();
    await removeDir(dir);
  }
  return report(opts, params, { build, scans, migration: migration!, colds, defaultWarmScan });
}

/** The engine's own default warmScanMaxRecords, read from a Database opened without options. */
async function engineDefaultWarmScan(opts: BenchOptions): Promise<number> {
  const dir = await tempDir(opts, 'defaults');
  const db = await Database.open(dir, { workers: 0 });
  try {
    return db.options.warmScanMaxRecords;
  } finally {
    await db.close();
    await removeDir(dir);
  }
}

// ---- tables and conclusion ----------------------------------------------------------------------

const mb = (bytes: number) => `${(bytes / MB).toFixed(1)} MB`;
const mbps = (bytes: number, t: number) => `${(bytes / MB / (t / 1000)).toFixed(1)} MB/s`;
const met = (ok: boolean) => (ok ? 'met' : 'MISSED');

/**
 * Break-even should fall as segments grow (promotion has a fixed part, a scan has none), but single
 * sizes are noisy on a busy box. Pool-adjacent-violators gives the closest non-increasing curve
 * (least squares) to the measured break-evens; the advice reads that curve, not single points.
 */
export function nonIncreasing(ys: number[]): number[] {
  const blocks: { sum: number; n: number }[] = [];
  for (const y of ys) {
    blocks.push({ sum: y, n: 1 });
    while (blocks.length > 1 && blocks.at(-2)!.sum / blocks.at(-2)!.n < blocks.at(-1)!.sum / blocks.at(-1)!.n) {
      const last = blocks.pop()!;
      blocks.at(-1)!.sum += last.sum;
      blocks.at(-1)!.n += last.n;
    }
  }
  return blocks.flatMap((b) => new Array<number>(b.n).fill(b.sum / b.n));
}

/**
 * The largest segment worth scanning when a promoted segment serves `queries` queries while hot:
 * where the (non-increasing) break-even curve crosses `queries`, interpolated log-log between the
 * two measured sizes around the crossing, rounded to two significant digits. 0: promote even the
 * smallest size measured; Infinity: scan every size measured.
 */
export function scanThreshold(sizes: number[], curve: number[], queries: number): number {
  const i = curve.findIndex((b) => b <= queries);
  if (i < 0) return Infinity;
  if (i === 0) return 0;
  const [n0, n1, b0, b1] = [sizes[i - 1]!, sizes[i]!, curve[i - 1]!, curve[i]!];
  const f = Number.isFinite(b0) && b0 > b1 ? (Math.log(b0) - Math.log(queries)) / (Math.log(b0) - Math.log(b1)) : 0.5;
  const raw = Math.exp(Math.log(n0) + f * (Math.log(n1) - Math.log(n0)));
  const mag = 10 ** (Math.floor(Math.log10(raw)) - 1);
  return Math.round(raw / mag) * mag;
}

/** The curve's value at `size`, interpolated log-log (clamped to the sizes measured). */
function curveAt(sizes: number[], curve: number[], size: number): number {
  if (size <= sizes[0]!) return curve[0]!;
  if (size >= sizes.at(-1)!) return curve.at(-1)!;
  const i = sizes.findIndex((n) => n >= size);
  const [n0, n1, b0, b1] = [sizes[i - 1]!, sizes[i]!, curve[i - 1]!, curve[i]!];
  if (!Number.isFinite(b0) || !Number.isFinite(b1)) return Math.max(b0, b1);
  const f = (Math.log(size) - Math.log(n0)) / (Math.log(n1) - Math.log(n0));
  return Math.exp(Math.log(b0) + f * (Math.log(b1) - Math.log(b0)));
}

/**
 * The advice: the threshold at REFERENCE_QUERIES queries per hot residency, the thresholds at half
 * and twice that next to it (that number is an assumption about the workload), and the workload
 * under which the current default is right (the curve's break-even at that size). The default is
 * called supported when it is within 1.5x of the threshold at the reference.
 */
function recommend(scans: ScanResult[], current: number, be: (s: ScanResult) => number): {
  curve: number[]; threshold: number; byRef: Record<string, number | null>; supported: boolean; breakEvenAtCurrent: number; text: string;
} {
  const sizes = scans.map((s) => s.size);
  const curve = nonIncreasing(scans.map(be));
  const refs = [REFERENCE_QUERIES / 2, REFERENCE_QUERIES, REFERENCE_QUERIES * 2];
  const th = refs.map((r) => scanThreshold(sizes, curve, r));
  const threshold = th[1]!;
  const atCurrent = curveAt(sizes, curve, current);
  const q = (x: number) => (Number.isFinite(x) ? num(x, x < 10 ? 1 : 0) : 'never');
  const fmt = (t: number) => (t === 0 ? `< ${num(sizes[0]!)} (promote all)` : Number.isFinite(t) ? `~${num(t)}` : `>= ${num(sizes.at(-1)!)} (scan all measured)`);
  const supported = Number.isFinite(threshold) && threshold > 0 && current / threshold <= 1.5 && threshold / current <= 1.5;
  const fits = `the current default ${num(current)} is right if a promoted segment serves ~${q(atCurrent)} queries`;
  return {
    curve, threshold, supported, breakEvenAtCurrent: atCurrent,
    byRef: Object.fromEntries(refs.map((r, i) => [String(r), Number.isFinite(th[i]!) ? th[i]! : null])),
    text: `break-even queries (measured; monotone fit): ${scans.map((s, i) => `${num(s.size)}: ${q(be(s))}${Math.abs(curve[i]! - be(s)) > 0.05 ? ` (${q(curve[i]!)})` : ''}`).join(', ')}; `
      + `largest segment worth scanning if a promoted segment serves ${refs.map((r, i) => `${r} queries: ${fmt(th[i]!)}`).join(', ')}; ${fits}; `
      + (supported
        ? `within 1.5x of the threshold at ${REFERENCE_QUERIES} queries: the data supports it`
        : `more than 1.5x from the threshold at ${REFERENCE_QUERIES} queries: the data does not support it; recommend ${fmt(threshold)}`),
  };
}

interface Results {
  build: Record<string, unknown>;
  scans: ScanResult[];
  migration: MigrationResult;
  colds: ColdResult[];
  defaultWarmScan: number;
}

function report(opts: BenchOptions, params: TiersParams, res: Results): BenchReport {
  const { scans, migration: m, colds, defaultWarmScan } = res;
  const tables: Table[] = [];
  tables.push({
    title: `cold first query: col.search on a collection whose one segment is cold (s3rver), vs raw S3 GetObject of the same object + raw hnswlib-node readIndex of the same index (median of ${opts.runs} interleaved runs)`,
    columns: ['segment rows', 'segment / object', 'engine 1st search', 'raw GET', 'raw readIndex', 'raw total', 'engine/raw', 'by CPU time', `target <= ${TARGET_COLD}x`],
    rows: colds.map((c) => [
      num(c.size) + (c.tierAfter === 'hot' ? '' : ' (scanned)'), `${mb(c.logicalBytes)} / ${mb(c.wireBytes)}`, ms(c.engineMs), ms(c.rawGetMs), ms(c.rawReadIndexMs), ms(c.rawMs),
      ratio(c.ratio), ratio(c.cpuRatio), met(c.ratio <= TARGET_COLD),
    ]),
    notes: [
      'engine: db.migrate(id, "cold") untimed, then one timed await col.search(q, { k: 10 }): rehydration (download, verify, decompress, write, commit, map), promotion (index load into hot) above warmScanMaxRecords, then the search',
      'raw: GetObjectCommand of the engine\'s compressed object into memory (same s3rver, same SDK settings), then new HierarchicalNSW().readIndex(file) of the segment\'s own hnswlib bytes written to a file beforehand',
      'engine/raw: median of per-run ratios; each run does the engine first search, the raw pair and the engine step-by-step cycle back to back, in rotating order',
      'by CPU time: the same ratio from this process\'s CPU time (all threads; s3rver runs in this process, so its work counts on both sides)',
      's3rver runs in this process on 127.0.0.1 (harness/s3rver.ts): no network latency, so fixed per-request and local costs weigh more than on real S3',
    ],
  });
  tables.push({
    title: 'cold first query, step by step (public API, in the same interleaved runs; medians) and the engine\'s own latency histograms (db.stats().movement)',
    columns: ['segment rows', 'cold->warm (migrate)', 'stats rehydration p50', 'warm->hot (migrate)', 'stats promotion p50', 'then 1 query', 'sum of steps', 'engine 1st search', 'raw GET', 'raw readIndex', 'warm->cold (copy exists)'],
    rows: colds.map((c) => [
      num(c.size), ms(c.steps.rehydrateMs), `${ms(c.engineStats.rehydration.p50Ms)} (n=${c.engineStats.rehydration.count})`,
      ms(c.steps.promoteMs), `${ms(c.engineStats.promotion.p50Ms)} (n=${c.engineStats.promotion.count})`, ms(c.steps.queryMs),
      ms(c.steps.rehydrateMs + c.steps.promoteMs + c.steps.queryMs), ms(c.engineMs), ms(c.rawGetMs), ms(c.rawReadIndexMs), ms(c.demoteMs),
    ]),
    notes: [
      'cold->warm = db.migrate(id, "warm") from cold; stats rehydration = the engine\'s rehydrationLatency histogram (the download + decode part of it)',
      'warm->hot = db.migrate(id, "hot") right after the rehydration; stats promotion = the engine\'s promotionLatency histogram (the index load)',
      'stats histograms: every rehydration / promotion of this size since the database was reopened for it (1 untimed warm-up + first-search runs + step runs)',
      'warm->cold (copy exists): the demotion before each engine cycle, when a verified remote copy exists (the usual case under write-through, uploadOnSeal): HEAD, id stub, manifest commit, unlink',
    ],
  });
  tables.push({
    title: `migration throughput, ${num(m.size)}-row segment: logical MB/s (raw segment file bytes / time), engine db.migrate vs raw S3 PutObject / GetObject of the raw segment file bytes (median of ${opts.runs} interleaved runs)`,
    columns: ['direction', 'logical bytes', 'wire bytes (engine)', 'engine', 'engine logical', 'raw', 'raw', 'engine/raw throughput', 'by CPU time', `target >= ${TARGET_MIGRATION}x`],
    rows: [
      ['warm -> cold (upload)', mb(m.logicalBytes), mb(m.wireBytes), ms(m.down.engineMs), mbps(m.logicalBytes, m.down.engineMs), ms(m.down.rawMs), mbps(m.logicalBytes, m.down.rawMs), ratio(m.down.ratio), ratio(m.down.cpuRatio), met(m.down.ratio >= TARGET_MIGRATION)],
      ['cold -> warm (download)', mb(m.logicalBytes), mb(m.wireBytes), ms(m.up.engineMs), mbps(m.logicalBytes, m.up.engineMs), ms(m.up.rawMs), mbps(m.logicalBytes, m.up.rawMs), ratio(m.up.ratio), ratio(m.up.cpuRatio), met(m.up.ratio >= TARGET_MIGRATION)],
    ],
    notes: [
      `compressed copy: ${mb(m.wireBytes)} of ${mb(m.logicalBytes)} raw = ${pct(m.wireBytes / m.logicalBytes)} (ratio ${(m.logicalBytes / m.wireBytes).toFixed(2)}:1)`,
      'warm -> cold: the bench deletes the engine\'s object first (raw DeleteObject), so every timed demotion encodes (worker), uploads (multipart above 16 MiB) and verifies; '
        + `${m.uploadsCounted} uploads counted in db.stats().movement.uploads. With a copy already there it is the "warm->cold (copy exists)" column above`,
      'cold -> warm: rehydration only (download, verify, decompress, write, commit, map); no promotion',
      'raw: one PutObjectCommand of the whole raw file from memory / one GetObjectCommand read into memory; engine/raw: median of per-run time ratios raw/engine',
      ...(m.moveResultBytes.down !== m.logicalBytes || m.moveResultBytes.up !== m.logicalBytes
        ? [`MoveResult.bytes differs by direction: ${num(m.moveResultBytes.down)} warm->cold, ${num(m.moveResultBytes.up)} cold->warm (file: ${num(m.logicalBytes)}); the file size is used here`]
        : []),
    ],
  });
  tables.push({
    title: `warm exact scan vs hot HNSW vs promotion, per segment size (k=${K}, ef=${HNSW.efSearch}; latencies: median over ${opts.runs} passes of each pass's percentile)`,
    columns: ['segment rows', 'file', 'hot memory', 'scan p50', 'scan p99', 'scan CPU/q', 'HNSW p50', 'HNSW p99', 'HNSW CPU/q', 'HNSW R@10', '1st search (promotes)', 'promotion cost', 'break-even', 'break-even (CPU)'],
    rows: scans.map((s) => [
      num(s.size) + (s.size === defaultWarmScan ? ' (default)' : ''), mb(s.fileBytes), mb(s.hotBytes), ms(s.scanP50), ms(s.scanP99), ms(s.scanCpuMs),
      ms(s.hotP50), ms(s.hotP99), ms(s.hotCpuMs), s.recall.toFixed(4),
      ms(s.firstSearchMs), ms(s.promotionMs), Number.isFinite(s.breakEven) ? `${num(s.breakEven, 1)} q` : 'never', Number.isFinite(s.breakEvenCpu) ? `${num(s.breakEvenCpu, 1)} q` : 'never',
    ]),
    notes: [
      'exact scan: col.search(q, { exact: true }): view.scan over the mapped vectors, the path a warm segment with records <= warmScanMaxRecords takes',
      'hot HNSW: col.search(q) on the promoted segment; scan and HNSW queries alternate in blocks of 10 on the same segment',
      `1st search: db.migrate(id, "warm") to evict (untimed), then col.search in a database opened with warmScanMaxRecords 0, so every size promotes; median of ${promotionRuns(opts)}. `
        + 'A re-promotion of a segment this process already used: any once-per-process check of the local file is not in it',
      'promotion cost = 1st search - HNSW p50; break-even = promotion cost / (scan p50 - HNSW p50): the queries after which promoting has cost less than scanning every one',
      'CPU/q: process CPU time per query (process.cpuUsage over each block), steadier than wall time on a shared machine; break-even (CPU) uses it for the per-query costs',
      'hot memory: growth of db.stats().tiers.hot.bytes at promotion (HNSW graph estimate + mapped file)',
      'the advice below reads a non-increasing fit of break-even over size (pool-adjacent-violators; single sizes are noisy) and interpolates log-log where it crosses the queries a promoted segment serves',
    ],
  });

  const worstCold = colds.reduce((x, c) => Math.max(x, c.ratio), 0);
  const rec = recommend(scans, defaultWarmScan, (s) => s.breakEven);
  const recCpu = recommend(scans, defaultWarmScan, (s) => s.breakEvenCpu);
  const conclusion = [
    `cold first query (<= ${TARGET_COLD}x): ${met(worstCold <= TARGET_COLD)} (${colds.map((c) => `${num(c.size)} rows ${ratio(c.ratio)} wall, ${ratio(c.cpuRatio)} CPU`).join('; ')})`,
    `migration (>= ${TARGET_MIGRATION}x): warm->cold ${ratio(m.down.ratio)} ${met(m.down.ratio >= TARGET_MIGRATION)} (${ratio(m.down.cpuRatio)} CPU), `
      + `cold->warm ${ratio(m.up.ratio)} ${met(m.up.ratio >= TARGET_MIGRATION)} (${ratio(m.up.cpuRatio)} CPU)`,
    `warmScanMaxRecords (wall clock): ${rec.text}`,
    `warmScanMaxRecords (per-query costs by CPU time): ${recCpu.text}`,
  ].join('\n=> ');
  return {
    name: 'tiers',
    tables,
    conclusion,
    data: {
      parameters: {
        dim: DIM, k: K, hnsw: HNSW, runs: opts.runs, ...params, referenceQueries: REFERENCE_QUERIES,
        engineDefaultWarmScanMaxRecords: defaultWarmScan, objectStore: 's3rver (in process, 127.0.0.1)', targets: { coldFirstQuery: TARGET_COLD, migration: TARGET_MIGRATION },
      },
      build: res.build,
      coldFirstQuery: roundDeep(colds),
      migration: roundDeep(m),
      warmScan: roundDeep(scans.map((s) => ({
        ...s, breakEven: Number.isFinite(s.breakEven) ? s.breakEven : null, breakEvenCpu: Number.isFinite(s.breakEvenCpu) ? s.breakEvenCpu : null,
      }))),
      recommendation: {
        current: defaultWarmScan, referenceQueries: REFERENCE_QUERIES,
        wall: { warmScanMaxRecords: Number.isFinite(rec.threshold) ? rec.threshold : null, supported: rec.supported, breakEvenAtCurrent: round(rec.breakEvenAtCurrent, 1), byReferenceQueries: rec.byRef, curve: roundDeep(rec.curve.map((x) => (Number.isFinite(x) ? x : null))), text: rec.text },
        cpu: { warmScanMaxRecords: Number.isFinite(recCpu.threshold) ? recCpu.threshold : null, supported: recCpu.supported, breakEvenAtCurrent: round(recCpu.breakEvenAtCurrent, 1), byReferenceQueries: recCpu.byRef, curve: roundDeep(recCpu.curve.map((x) => (Number.isFinite(x) ? x : null))), text: recCpu.text },
      },
    },
  };
}
