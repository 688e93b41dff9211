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
import { HnswIndex, MappedHnsw, mapReadOnly, SectionKind, SegmentReader, encodeSegment, writeSegmentFile } from '../engine/parts.js';
import { clusteredDataset, exactKnn, recallAtK } from '../harness/datasets.js';
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

interface MappedSide {
  qps: number;
  cpuQps: number;
  /** Median over runs of mapped QPS / native QPS (wall clock), and the same by CPU time. */
  ratio: number;
  cpuRatio: number;
  recall: number;
  /** Share of queries where mapped and native returned the same rows in the same order. */
  identical: number;
  runsRatio: number[];
}

interface EfResult {
  ef: number;
  nativeQps: number;
  nativeCpuQps: number;
  nativeRecall: number;
  /** MappedHnsw with exact: true (hnswlib's float32 distances) and exact: false (float64). */
  exact: MappedSide;
  fast: MappedSide;
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
  mappedFast: MappedHnsw;
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
  const mappedFast = MappedHnsw.open(hnswBytes, { dimension: DIM, count, metric: 'l2', exact: false });
  // The raw part reads the very same bytes, copied out of the mapping into hnswlib's own memory.
  const nativeFile = path.join(dir, `native-${count}.bin`);
  await fsp.writeFile(nativeFile, hnswBytes);
  const native = new HierarchicalNSW('l2', DIM);
  await native.readIndex(nativeFile);
  return {
    mapped, mappedFast, native, queries, nativeQueries: queries.map((x) => Array.from(x)), truth, buildMs,
    sectionBytes: hnswBytes.length, inPlace: mapped.inPlace,
  };
}

function compareAt(g: Graph, ef: number, runs: number): EfResult {
  g.native.setEf(ef);
  const sides = [
    (keep: boolean) => nativePass(g.native, g.nativeQueries, keep),
    (keep: boolean) => mappedPass(g.mapped, g.queries, ef, keep),
    (keep: boolean) => mappedPass(g.mappedFast, g.queries, ef, keep),
  ];
  // Warm-up: lets V8 optimise the searcher and pulls both copies of the graph into memory.
  for (const side of sides) side(false);
  const passes: SideRun[][] = [[], [], []];
  for (let r = 0; r < runs; r++) {
    // Rotate which side goes first, so none always runs right after another's cache misses.
    for (let i = 0; i < sides.length; i++) {
      const which = (i + r) % sides.length;
      passes[which]!.push(sides[which]!(r === 0));
    }
  }
  const nq = g.queries.length;
  const qps = (s: SideRun) => nq / (s.wallMs / 1000);
  const cpuQps = (s: SideRun) => nq / (s.cpuUs / 1e6);
  const nat = passes[0]!;
  const side = (map: SideRun[]): MappedSide => {
    const runsRatio = nat.map((n, i) => qps(map[i]!) / qps(n));
    let same = 0;
    for (let i = 0; i < nq; i++) if (nat[0]!.found[i]!.join() === map[0]!.found[i]!.join()) same++;
    return {
      qps: median(map.map(qps)), cpuQps: median(map.map(cpuQps)),
      ratio: median(runsRatio), cpuRatio: median(nat.map((n, i) => cpuQps(map[i]!) / cpuQps(n))),
      recall: recallAtK(map[0]!.found, g.truth, K, K), identical: same / nq, runsRatio: runsRatio.map((x) => round(x, 3)),
    };
  };
  return {
    ef, nativeQps: median(nat.map(qps)), nativeCpuQps: median(nat.map(cpuQps)), nativeRecall: recallAtK(nat[0]!.found, g.truth, K, K),
    exact: side(passes[1]!), fast: side(passes[2]!),
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
      for (const [mode, m] of [['exact', e.exact], ['fast', e.fast]] as const) {
        rows.push([
          `${num(r.count)} x ${DIM}`, String(e.ef), mode, num(e.nativeQps), num(m.qps), ratio(m.ratio), ratio(m.cpuRatio),
          e.nativeRecall.toFixed(4), m.recall.toFixed(4), pct(m.identical),
        ]);
      }
    }
  }
  const table: Table = {
    title: `MappedHnsw (in place over a mapped segment) vs native hnswlib-node, same graph, k ${K}, l2, M ${HNSW.M}, efConstruction ${HNSW.efConstruction}`,
    columns: ['set', 'ef', 'mapped', 'native QPS', 'mapped QPS', 'mapped/native', 'by CPU time', 'native recall@10', 'mapped recall@10', 'identical answers'],
    rows,
    notes: [
      `QPS: median of ${opts.runs} runs; ratios are medians of per-run ratios; whole passes over the queries rotate between native, exact and fast, which goes first changing each run.`,
      'exact: MappedHnsw default (hnswlib\'s float32 distances, bit for bit); fast: exact: false (float64 distances).',
      'Native queries are converted to number[] before timing; the mapped side takes the Float32Array as is.',
      `Target: mapped >= ${TARGET_RATIO}x native at ef 64.`,
    ],
  };
  const at64 = results.flatMap((r) => r.efs.filter((e) => e.ef === 64).map((e) => ({ count: r.count, e })));
  const conclusion = at64.length === 0 ? undefined : at64.map(({ count, e }) =>
    `${num(count)}: at ef 64 mapped exact ${ratio(e.exact.ratio)} native (${ratio(e.exact.cpuRatio)} by CPU), fast ${ratio(e.fast.ratio)} (${ratio(e.fast.cpuRatio)}); target ${TARGET_RATIO}x ${e.exact.ratio >= TARGET_RATIO ? 'met' : 'missed'} by exact, ${e.fast.ratio >= TARGET_RATIO ? 'met' : 'missed'} by fast`).join('; ');
  return { name: 'mapped', tables: [table], ...(conclusion ? { conclusion } : {}), data: { params, hnsw: HNSW, results } };
}
