// Mapped-HNSW bench: single-query QPS of the in-place TypeScript searcher (index/mapped-hnsw.ts)
// over the `hnsw` section of a real, mmap'd segment file, against native hnswlib-node searching the
// same graph (the same bytes, loaded with readIndex) at the same ef; recall@10 of both against an
// exact scan, and how often the two answers are identical. Target: mapped >= 0.4x native QPS.
//
// Like the workers bench this reaches inside the engine on purpose: the in-place searcher is not
// public API (the engine's read path will call it), and it is what is measured. Whole passes over
// the query set alternate between the two sides, which goes first swapping run by run; each side's
// QPS is its own queries over its own time, the ratio is the median of per-run ratios.

import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import hnswlib from 'hnswlib-node';
import { HnswIndex } from '../index/hnsw.js';
import { MappedHnsw } from '../index/mapped-hnsw.js';
import { mapReadOnly } from '../format/mapped-file.js';
import { SectionKind, SegmentReader, encodeSegment, writeSegmentFile } from '../format/segment.js';
import { clusteredDataset, exactKnn, recallAtK } from '../test/helpers/datasets.js';
import {
  median, progress, tempDir, removeDir, num, ratio, pct, round,
  type BenchOptions, type BenchReport, type Table,
} from './report.js';

const { HierarchicalNSW } = hnswlib;
type RawIndex = InstanceType<typeof HierarchicalNSW>;

const DIM = 128;
const K = 10;
const HNSW = Object.freeze({ M: 16, efConstruction: 200, efSearch: 64 });
const TARGET_RATIO = 0.4;

export interface MappedBenchParams {
  sizes: number[];
  efs: number[];
  queries: number;
}

export function defaultMappedParams(quick: boolean, sizes?: number[]): MappedBenchParams {
  return {
    sizes: sizes ?? (quick ? [20_000] : [20_000, 100_000]),
    efs: quick ? [64] : [16, 64, 128],
    queries: quick ? 300 : 500,
  };
}

interface SideRun {
  wallMs: number;
  cpuUs: number;
  found: number[][];
}

interface EfResult {
  ef: number;
  nativeQps: number;
  mappedQps: number;
  nativeCpuQps: number;
  mappedCpuQps: number;
  /** Median over runs of mapped QPS / native QPS (wall clock). */
  ratio: number;
  cpuRatio: number;
  nativeRecall: number;
  mappedRecall: number;
  /** Share of queries where both returned the same rows in the same order. */
  identical: number;
  runsRatio: number[];
}

function cpuUs(c0: NodeJS.CpuUsage): number {
  const c = process.cpuUsage(c0);
  return c.user + c.system;
}

// The native side gets its queries as number[] converted before timing (hnswlib-node's API needs
// them so), so the ratio is against hnswlib's search alone, the strictest comparison.
function nativePass(index: RawIndex, queries: number[][], keep: boolean): SideRun {
  const found: number[][] = [];
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  for (const q of queries) {
    const res = index.searchKnn(q, K);
    if (keep) found.push(res.neighbors);
  }
  return { wallMs: performance.now() - t0, cpuUs: cpuUs(c0), found };
}

function mappedPass(index: MappedHnsw, queries: Float32Array[], ef: number, keep: boolean): SideRun {
  const found: number[][] = [];
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  for (const q of queries) {
    const res = index.search(q, K, ef);
    if (keep) found.push(res.rows);
  }
  return { wallMs: performance.now() - t0, cpuUs: cpuUs(c0), found };
}

interface Graph {
  mapped: MappedHnsw;
  native: RawIndex;
  queries: Float32Array[];
  nativeQueries: number[][];
  truth: Int32Array;
  buildMs: number;
  sectionBytes: number;
  inPlace: boolean;
}

/** Builds the graph, writes a one-segment file (vectors + hnsw), maps it, opens both searchers. */
async function setUp(opts: BenchOptions, dir: string, count: number, nq: number): Promise<Graph> {
  progress('mapped', `${num(count)} x ${DIM}: generating, exact ground truth for ${nq} queries`);
  const all = clusteredDataset({ count: count + nq, dim: DIM, seed: 11 });
  const base = all.subarray(0, count * DIM);
  const q = all.subarray(count * DIM);
  const truth = exactKnn(base, DIM, count, q, nq, K, 'l2');
  const queries = Array.from({ length: nq }, (_, i) => q.subarray(i * DIM, (i + 1) * DIM));
  progress('mapped', `building HNSW (M ${HNSW.M}, efConstruction ${HNSW.efConstruction})`);
  const t0 = performance.now();
  const built = HnswIndex.build(base, DIM, count, 'l2', HNSW);
  const buildMs = performance.now() - t0;
  const section = await built.toBytes(dir);
  built.dispose();
  const file = path.join(dir, `seg-${count}.seg`);
  const vectors = new Uint8Array(base.buffer, base.byteOffset, base.byteLength);
  await writeSegmentFile(file, encodeSegment({ dimension: DIM, metric: 'l2', count }, [
    { kind: SectionKind.vectors, data: vectors },
    { kind: SectionKind.hnsw, data: section },
  ]));
  const reader = SegmentReader.open(mapReadOnly(file, { minSize: 1 }));
  const hnswBytes = reader.raw(SectionKind.hnsw);
  const mapped = MappedHnsw.open(hnswBytes, { dimension: DIM, count, metric: 'l2' });
  // The raw part reads the very same bytes, copied out of the mapping into hnswlib's own memory.
  const nativeFile = path.join(dir, `native-${count}.bin`);
  await fsp.writeFile(nativeFile, hnswBytes);
  const native = new HierarchicalNSW('l2', DIM);
  await native.readIndex(nativeFile);
  return {
    mapped, native, queries, nativeQueries: queries.map((x) => Array.from(x)), truth, buildMs,
    sectionBytes: hnswBytes.length, inPlace: mapped.inPlace,
  };
}

function compareAt(g: Graph, ef: number, runs: number): EfResult {
  g.native.setEf(ef);
  // Warm-up: lets V8 optimise the searcher and pulls both copies of the graph into memory.
  mappedPass(g.mapped, g.queries, ef, false);
  nativePass(g.native, g.nativeQueries, false);
  const nat: SideRun[] = [];
  const map: SideRun[] = [];
  for (let r = 0; r < runs; r++) {
    const keep = r === 0;
    if (r % 2 === 0) {
      nat.push(nativePass(g.native, g.nativeQueries, keep));
      map.push(mappedPass(g.mapped, g.queries, ef, keep));
    } else {
      map.push(mappedPass(g.mapped, g.queries, ef, keep));
      nat.push(nativePass(g.native, g.nativeQueries, keep));
    }
  }
  const nq = g.queries.length;
  const qps = (s: SideRun) => nq / (s.wallMs / 1000);
  const cpuQps = (s: SideRun) => nq / (s.cpuUs / 1e6);
  const runsRatio = nat.map((n, i) => qps(map[i]!) / qps(n));
  let same = 0;
  for (let i = 0; i < nq; i++) if (nat[0]!.found[i]!.join() === map[0]!.found[i]!.join()) same++;
  return {
    ef,
    nativeQps: median(nat.map(qps)), mappedQps: median(map.map(qps)),
    nativeCpuQps: median(nat.map(cpuQps)), mappedCpuQps: median(map.map(cpuQps)),
    ratio: median(runsRatio), cpuRatio: median(nat.map((n, i) => cpuQps(map[i]!) / cpuQps(n))),
    nativeRecall: recallAtK(nat[0]!.found, g.truth, K, K), mappedRecall: recallAtK(map[0]!.found, g.truth, K, K),
    identical: same / nq, runsRatio: runsRatio.map((x) => round(x, 3)),
  };
}

export async function runMappedHnsw(opts: BenchOptions, params: MappedBenchParams): Promise<BenchReport> {
  const dir = await tempDir(opts, 'mapped');
  const results: Array<{ count: number; buildMs: number; sectionBytes: number; inPlace: boolean; efs: EfResult[] }> = [];
  try {
    for (const count of params.sizes) {
      const g = await setUp(opts, dir, count, params.queries);
      const efs: EfResult[] = [];
      for (const ef of params.efs) {
        progress('mapped', `${num(count)}: ef ${ef}, ${opts.runs} alternated runs of ${params.queries} queries per side`);
        efs.push(compareAt(g, ef, opts.runs));
      }
      results.push({ count, buildMs: round(g.buildMs, 0), sectionBytes: g.sectionBytes, inPlace: g.inPlace, efs });
    }
  } finally {
    await removeDir(dir);
  }
  const rows: string[][] = [];
  for (const r of results) {
    for (const e of r.efs) {
      rows.push([
        `${num(r.count)} x ${DIM}`, String(e.ef), num(e.nativeQps), num(e.mappedQps), ratio(e.ratio), ratio(e.cpuRatio),
        e.nativeRecall.toFixed(4), e.mappedRecall.toFixed(4), pct(e.identical),
      ]);
    }
  }
  const table: Table = {
    title: `MappedHnsw (in place over a mapped segment) vs native hnswlib-node, same graph, k ${K}, l2, M ${HNSW.M}, efConstruction ${HNSW.efConstruction}`,
    columns: ['set', 'ef', 'native QPS', 'mapped QPS', 'mapped/native', 'by CPU time', 'native recall@10', 'mapped recall@10', 'identical answers'],
    rows,
    notes: [
      `QPS: median of ${opts.runs} runs; the ratios are medians of per-run ratios, whole passes alternated, which side goes first swapping each run.`,
      'Native queries are converted to number[] before timing; the mapped side takes the Float32Array as is.',
      `Target: mapped >= ${TARGET_RATIO}x native at ef 64.`,
    ],
  };
  const at64 = results.flatMap((r) => r.efs.filter((e) => e.ef === 64).map((e) => ({ count: r.count, ratio: e.ratio, cpu: e.cpuRatio })));
  const conclusion = at64.length === 0 ? undefined : at64.map((x) =>
    `${num(x.count)}: mapped ${ratio(x.ratio)} native at ef 64 (${ratio(x.cpu)} by CPU time), ${x.ratio >= TARGET_RATIO ? 'meets' : 'misses'} the ${TARGET_RATIO}x target`).join('; ');
  return { name: 'mapped', tables: [table], ...(conclusion ? { conclusion } : {}), data: { params, hnsw: HNSW, results } };
}
