// Clustering bench (issue 10): N x 128 rows of 1,000 natural clusters, inserted in random cluster
// order, searched before and after `db.compact({ cluster: true })` (segments searched per query from
// col.explain, recall@10 against `exact: true`, latency), search p99 while the compaction runs vs
// idle, then two skewed workloads under a local budget of 1/4 of the collection (hot clusters at
// random, as the issue has it, and a hot part of the space). Public API only; it
// owns measurement, never the engine's decisions (the tiering policy decides, this only calls apply).

import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Database, type Collection, type DatabaseOptions, type ExplainResult, type HeatLayout } from '../engine/index.js';
import { clusteredDataset, mulberry32 } from '../harness/datasets.js';
import { QUERY_SAMPLE_FILE } from '../tiers/query-sample.js';
import {
  median, percentile, progress, tempDir, removeDir, num, ms, ratio, pct, mb,
  type BenchOptions, type BenchReport, type Table,
} from './report.js';
import { roundDeep } from './search.js';

const DIM = 128;
const K = 10;
const SEED = 10;
const BATCH = 1000;
const COLLECTION = 'bench';
/** Of the skewed workload: this share of queries is drawn near HOT_CLUSTERS of the clusters. */
const HOT_SHARE = 0.9;
const HOT_CLUSTERS = 0.1;
/** How far the injected clock moves between tiering passes: past the policy's minimum residency
 *  (60 s by default) so what a read brought in may move again, as in a long-running process. */
const CLOCK_STEP_MS = 5 * 60_000;
const TARGETS = Object.freeze({
  searchedFraction: 0.2, recall: 0.95, coldFraction: 0.5, hotColdReads: 0, p50VsAllHot: 2, compactP99VsIdle: 1.5,
});
/** Not searched: skipped by a bound (pruned), by a probe limit or tier set (skipped). */
const NOT_SEARCHED: ReadonlySet<string> = new Set(['pruned', 'skipped']);

export interface ClusterParams {
  vectors: number;
  segmentRecords: number;
  clusters: number;
  /** clusteredDataset's spread: 0.25 makes 1,000 natural clusters that stand apart (at the other
   *  benches' 1 they overlap into one blob, and no layout can prune). */
  spread: number;
  /** Uniform queries (before / after clustering), and the skewed stream's length. */
  queries: number;
  skewed: number;
  /** Tiering passes (skewed stream, clock step, apply) before the steady state is measured. */
  warmRounds: number;
  idleMs: number;
}

export function defaultClusterParams(quick: boolean, vectors?: number, segmentRecords?: number): ClusterParams {
  const v = vectors ?? (quick ? 50_000 : 200_000);
  const s = segmentRecords ?? (quick ? 5_000 : 20_000);
  if (v % BATCH !== 0) throw new Error(`--vectors must be a multiple of ${BATCH}`);
  return {
    vectors: v, segmentRecords: Math.min(s, v), clusters: 1000, spread: 0.25,
    queries: quick ? 100 : 200, skewed: quick ? 200 : 500, warmRounds: quick ? 3 : 5, idleMs: quick ? 3_000 : 10_000,
  };
}

/** A clock the bench moves by hand: the tiering policy sees time pass without the bench waiting. */
class ManualClock {
  t = Date.now();
  now(): number {
    return this.t;
  }
}

function dbOptions(p: ClusterParams, clock: ManualClock, extra: Partial<DatabaseOptions> = {}): DatabaseOptions {
  return {
    segmentMaxRecords: p.segmentRecords, uploadOnSeal: false, clock,
    // Nothing in the background: the bench decides when tiering and compaction run.
    tiering: { intervalMs: 0 }, maintenance: { gcIntervalMs: 0, scrubIntervalMs: 0, compactIntervalMs: 0 }, statsIntervalMs: 0,
    ...extra,
  };
}

// ---- one pass of queries -------------------------------------------------------------------------

interface QueryObs {
  ms: number;
  searched: number;
  segments: number;
  loaded: number;
  bytesFetched: number;
  ids: string[];
  how: Record<string, number>;
  /** Segments the search met without bounds (bound -Infinity): never prunable. */
  unbounded: number;
  /** Ids of the segments it searched. */
  searchedIds: string[];
}

/** explain is search with the report (one code path): its wall time is the search's latency. */
async function observe(col: Collection, q: Float32Array): Promise<QueryObs> {
  const t0 = performance.now();
  const e: ExplainResult = await col.explain(q, { k: K });
  const t = performance.now() - t0;
  const how: Record<string, number> = {};
  let searched = 0;
  let loaded = 0;
  let bytes = 0;
  let unbounded = 0;
  const searchedIds: string[] = [];
  for (const s of e.segments) {
    if (s.bound === -Infinity) unbounded++;
    how[`${s.tier}/${s.how}`] = (how[`${s.tier}/${s.how}`] ?? 0) + 1;
    if (!NOT_SEARCHED.has(s.how)) {
      searched++;
      searchedIds.push(s.id);
    }
    if (s.loaded) loaded++;
    bytes += s.bytesFetched;
  }
  return { ms: t, searched, segments: e.segments.length, loaded, bytesFetched: bytes, ids: e.hits.map((h) => h.id), how, unbounded, searchedIds };
}

async function pass(col: Collection, queries: Float32Array[]): Promise<QueryObs[]> {
  const out: QueryObs[] = [];
  for (const q of queries) out.push(await observe(col, q));
  return out;
}

function recall(found: string[][], truth: string[][]): number {
  let hits = 0;
  for (let i = 0; i < found.length; i++) {
    const want = new Set(truth[i]);
    for (const id of found[i]!.slice(0, K)) if (want.has(id)) hits++;
  }
  return hits / (found.length * K);
}

/** "tier/how" -> segment visits per query. */
function howPerQuery(obs: QueryObs[]): Record<string, number> {
  const how: Record<string, number> = {};
  for (const o of obs) for (const [k, v] of Object.entries(o.how)) how[k] = (how[k] ?? 0) + v / obs.length;
  return how;
}

interface LayoutResult {
  segments: number;
  meanSearched: number;
  p99Searched: number;
  searchedFraction: number;
  recall: number;
  p50: number;
  p99: number;
  /** "tier/how" -> segment visits per query (first timed pass). */
  how: Record<string, number>;
  unboundedPerQuery: number;
}

async function measureLayout(col: Collection, queries: Float32Array[], truth: string[][], runs: number): Promise<LayoutResult> {
  await pass(col, queries); // warm-up: admission, mapping, JIT
  const passes: QueryObs[][] = [];
  for (let r = 0; r < runs; r++) passes.push(await pass(col, queries));
  const first = passes[0]!;
  const searched = first.map((o) => o.searched);
  const segments = col.segments().length;
  const how = howPerQuery(first);
  const meanSearched = searched.reduce((a, b) => a + b, 0) / searched.length;
  return {
    segments, meanSearched, p99Searched: percentile(searched, 99), searchedFraction: meanSearched / segments,
    recall: recall(first.map((o) => o.ids), truth),
    p50: median(passes.map((p) => percentile(p.map((o) => o.ms), 50))),
    p99: median(passes.map((p) => percentile(p.map((o) => o.ms), 99))),
    how, unboundedPerQuery: first.reduce((a, o) => a + o.unbounded, 0) / first.length,
  };
}

/** Searches one after another until `stop.done` (or for `forMs`); latencies in ms. Between queries
 *  it yields to the event loop, as requests arriving by I/O would: a loop of searches that resolve
 *  on microtasks alone would starve the compaction's pool replies and never see it end. */
async function searchLoop(col: Collection, queries: Float32Array[], stop: { done: boolean }, forMs = Infinity): Promise<number[]> {
  const lat: number[] = [];
  const t0 = performance.now();
  for (let i = 0; !stop.done && performance.now() - t0 < forMs; i++) {
    const s = performance.now();
    await col.search(queries[i % queries.length]!, { k: K });
    lat.push(performance.now() - s);
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  return lat;
}

function tierCounts(col: Collection): Record<string, number> {
  const c: Record<string, number> = { hot: 0, warm: 0, cold: 0 };
  for (const s of col.segments()) c[s.tier] = (c[s.tier] ?? 0) + 1;
  return c;
}

function localBytes(col: Collection): number {
  return col.segments().filter((s) => s.tier !== 'cold').reduce((a, s) => a + s.bytes, 0);
}

// ---- skewed workloads ----------------------------------------------------------------------------

interface StreamQuery {
  hot: boolean;
  q: Float32Array;
}

/** `n` queries: HOT_SHARE of them held-out rows of the hot clusters, the rest of the others. */
function makeStream(labels: Uint32Array, row: (i: number) => Float32Array, from: number, to: number, hot: ReadonlySet<number>, n: number, seed: number): StreamQuery[] {
  const rand = mulberry32(seed);
  const hotRows: number[] = [];
  const tailRows: number[] = [];
  for (let i = from; i < to; i++) (hot.has(labels[i]!) ? hotRows : tailRows).push(i);
  return Array.from({ length: n }, () => {
    const isHot = rand() < HOT_SHARE;
    const rows = isHot ? hotRows : tailRows;
    return { hot: isHot, q: row(rows[Math.floor(rand() * rows.length)]!) };
  });
}

async function skewPass(col: Collection, stream: StreamQuery[]) {
  const obs = await pass(col, stream.map((s) => s.q));
  return { obs, hot: obs.filter((_, i) => stream[i]!.hot), tail: obs.filter((_, i) => !stream[i]!.hot) };
}

/**
 * A hot part of the space: per cluster, one held-out row searched (k=K); the segments it searched
 * are where that cluster's queries land. Segments are taken greedily, each time the one that lets
 * the most clusters search only taken segments, until `want` clusters do; those are the hot set.
 */
async function regionalClusters(
  col: Collection, labels: Uint32Array, row: (i: number) => Float32Array, from: number, to: number, want: number,
): Promise<{ clusters: Set<number>; segments: number }> {
  const probe = new Map<number, Set<string>>();
  for (let i = from; i < to; i++) {
    if (probe.has(labels[i]!)) continue;
    const o = await observe(col, row(i));
    probe.set(labels[i]!, new Set(o.searchedIds));
  }
  const taken = new Set<string>();
  const inside = () => [...probe].filter(([, segs]) => [...segs].every((id) => taken.has(id))).map(([c]) => c);
  while (inside().length < want && taken.size < col.segments().length) {
    let best: string | undefined;
    let bestCount = -1;
    for (const s of col.segments()) {
      if (taken.has(s.id)) continue;
      taken.add(s.id);
      const n = inside().length;
      taken.delete(s.id);
      if (n > bestCount) {
        bestCount = n;
        best = s.id;
      }
    }
    taken.add(best!);
  }
  return { clusters: new Set(inside().sort((a, b) => a - b).slice(0, want)), segments: taken.size };
}

interface SkewResult {
  name: string;
  allHot: { p50: number; hotP50: number; p99: number };
  rounds: { applied: number; failed: number; tiers: Record<string, number>; hotLoadedPerQuery: number }[];
  endTiers: Record<string, number>;
  segCount: number;
  coldFraction: number;
  reloadsPerPass: number;
  hotColdReadsPerQuery: number;
  tailColdReadsPerQuery: number;
  hotBytesFetchedPerQuery: number;
  tailBytesFetchedPerQuery: number;
  hotSearchedPerQuery: number;
  p50: number;
  p99: number;
  hotP50: number;
  workingSet: {
    segments: number; localHeld: number; bestLocalShare: number;
    /** Searches per pass (hot queries, tail queries) of the hot-searched segments left cold, and of the local ones no hot query searched. */
    leftCold: { hot: number; tail: number; hotGroup: boolean }[]; keptForTail: { hot: number; tail: number; hotGroup: boolean }[];
    /** Share of the hot queries' segment searches that went to the heat layout's hot groups. */
    inHotGroups: number;
    /** Bytes of the segments the hot queries searched; local bytes after the last apply. */
    bytes: number; localBytesAfter: number;
  };
  steadyHow: Record<string, number>;
  /** The heat layout's clustering compaction: wall time, segments after, the engine's heat report. */
  relayout: { ms: number; segments: number; heat: HeatLayout | undefined };
}

/** Rounds of (stream, clock step, tiering.apply()), then the steady state, on a budgeted db. */
async function skewedUnderBudget(
  db: Database, col: Collection, clock: ManualClock, streams: { learn: StreamQuery[][]; fresh: StreamQuery[] }, p: ClusterParams, runs: number,
  log: (m: string) => void,
): Promise<Omit<SkewResult, 'name' | 'allHot'>> {
  const rounds: SkewResult['rounds'] = [];
  const step = async () => {
    clock.t += CLOCK_STEP_MS;
    return db.tiering.apply();
  };
  const round = async (label: string, stream: StreamQuery[]) => {
    const x = await skewPass(col, stream);
    const applied = await step();
    const tiers = tierCounts(col);
    const hotLoaded = x.hot.reduce((a, o) => a + o.loaded, 0) / Math.max(1, x.hot.length);
    rounds.push({ applied: applied.applied.length, failed: applied.failed.length, tiers, hotLoadedPerQuery: hotLoaded });
    log(`round ${rounds.length}${label}: ${applied.applied.length} moves (${applied.failed.length} failed), tiers ${JSON.stringify(tiers)}, cold reads/hot query ${hotLoaded.toFixed(2)}`);
  };
  for (const stream of streams.learn) await round('', stream);
  // The heat layout: a clustering compaction of the whole collection (cold segments brought back
  // for it) with the queries of the rounds above as the engine's recent queries, then tiering
  // rounds again so the policy settles on the new segments. From here on the queries are a fresh
  // stream of the same workload (other draws), so the layout is measured on queries it never saw.
  log('db.compact({ cluster: true, includeCold: true }): the layout by heat');
  const tr = performance.now();
  const relayout = (await db.compact({ cluster: true, includeCold: true })).clustered[0];
  const relayoutMs = performance.now() - tr;
  const heat = relayout?.heat;
  log(`heat layout ${ms(relayoutMs)}: ${heat ? `${heat.hotPartitions} of ${heat.partitions} partitions hot (${heat.recurring} recurring, ${heat.joined} through hot queries; ${num(heat.hotRows)} rows, ${pct(heat.hotHeatShare)} of the heat; skew test ${pct(heat.skewHeatShare)}) -> ${heat.hotGroups} segments${heat.unused ? `; unused: ${heat.unused}` : ''}` : 'no heat report'}; ${relayout?.segmentIds.length ?? 0} segments`);
  for (let r = 0; r < p.warmRounds; r++) await round(' (heat layout, fresh stream)', streams.fresh);
  // Steady state: the policy keeps running between passes, as its loop would.
  const steady = [];
  for (let r = 0; r < runs; r++) {
    steady.push(await skewPass(col, streams.fresh));
    await step();
  }
  const endTiers = tierCounts(col);
  const segCount = col.segments().length;
  const perQuery = (xs: QueryObs[][], f: (o: QueryObs) => number) => {
    const flat = xs.flat();
    return flat.reduce((a, o) => a + f(o), 0) / Math.max(1, flat.length);
  };
  // The hot queries' working set: segments they search in one pass, and how those searches
  // spread over them. If it is larger than what the local budget holds, some hot queries must
  // read cold whatever the policy does; the best the policy can do is keep the most searched.
  const visits = (obs: QueryObs[]) => {
    const m = new Map<string, number>();
    for (const o of obs) for (const id of o.searchedIds) m.set(id, (m.get(id) ?? 0) + 1);
    return m;
  };
  const hotVisits = visits(steady[0]!.hot);
  const tailVisits = visits(steady[0]!.tail);
  const visitCounts = [...hotVisits.values()].sort((a, b) => b - a);
  const localHeld = endTiers['hot']! + endTiers['warm']!;
  const totalVisits = visitCounts.reduce((a, b) => a + b, 0);
  // Where the policy's choice differs from the hot working set: hot-searched segments it left
  // cold, and local segments the hot queries never searched (kept for the tail's searches).
  const local = new Set(col.segments().filter((x) => x.tier !== 'cold').map((x) => x.id));
  const bytesOf = new Map(col.segments().map((x) => [x.id, x.bytes]));
  const workingSetBytes = [...hotVisits.keys()].reduce((a, id) => a + (bytesOf.get(id) ?? 0), 0);
  // The hot groups are the last regions (after the k learnt), one per group.
  const regionOf = new Map(col.segments().map((x) => [x.id, x.region ?? -1]));
  const lastRegion = Math.max(-1, ...regionOf.values());
  const isHotGroup = (id: string) => (regionOf.get(id) ?? -1) > lastRegion - (heat?.hotGroups ?? 0);
  const leftCold = [...hotVisits].filter(([id]) => !local.has(id)).map(([id, n]) => ({ hot: n, tail: tailVisits.get(id) ?? 0, hotGroup: isHotGroup(id) }));
  const keptForTail = [...local].filter((id) => !hotVisits.has(id)).map((id) => ({ hot: 0, tail: tailVisits.get(id) ?? 0, hotGroup: isHotGroup(id) }));
  const inHotGroups = [...hotVisits].filter(([id]) => isHotGroup(id)).reduce((a, [, n]) => a + n, 0) / Math.max(1, totalVisits);
  return {
    rounds, endTiers, segCount,
    coldFraction: endTiers['cold']! / segCount,
    // The tier counts are read right after an apply(): a segment demoted there and reloaded by
    // the next pass counts as cold, so how often that happens is reported beside it.
    reloadsPerPass: steady.reduce((a, x) => a + x.obs.reduce((b, o) => b + o.loaded, 0), 0) / steady.length,
    hotColdReadsPerQuery: perQuery(steady.map((x) => x.hot), (o) => o.loaded),
    tailColdReadsPerQuery: perQuery(steady.map((x) => x.tail), (o) => o.loaded),
    hotBytesFetchedPerQuery: perQuery(steady.map((x) => x.hot), (o) => o.bytesFetched),
    tailBytesFetchedPerQuery: perQuery(steady.map((x) => x.tail), (o) => o.bytesFetched),
    hotSearchedPerQuery: perQuery(steady.map((x) => x.hot), (o) => o.searched),
    p50: median(steady.map((x) => percentile(x.obs.map((o) => o.ms), 50))),
    p99: median(steady.map((x) => percentile(x.obs.map((o) => o.ms), 99))),
    hotP50: median(steady.map((x) => percentile(x.hot.map((o) => o.ms), 50))),
    workingSet: {
      segments: hotVisits.size, localHeld,
      bestLocalShare: visitCounts.slice(0, localHeld).reduce((a, b) => a + b, 0) / Math.max(1, totalVisits),
      leftCold, keptForTail, inHotGroups, bytes: workingSetBytes, localBytesAfter: localBytes(col),
    },
    steadyHow: howPerQuery(steady.flatMap((x) => x.obs)),
    relayout: { ms: relayoutMs, segments: relayout?.segmentIds.length ?? 0, heat },
  };
}

// ---- the bench -----------------------------------------------------------------------------------

const met = (ok: boolean) => (ok ? 'PASS' : 'MISS');

export async function runCluster(opts: BenchOptions, p: ClusterParams): Promise<BenchReport> {
  const log = (m: string) => progress('cluster', m);
  const dir = await tempDir(opts, 'cluster');
  const clock = new ManualClock();
  let db: Database | undefined;
  try {
    // Held-out rows: the query pool (same seed: same centres and map). Rows are drawn i.i.d. over
    // the clusters, so ingest order is random cluster order: every segment spans every cluster.
    const pool = Math.max(4 * p.skewed, 4_000);
    log(`generating ${num(p.vectors)} x ${DIM}, ${num(p.clusters)} clusters, + ${num(pool)} held-out query rows`);
    const labels = new Uint32Array(p.vectors + pool);
    const all = clusteredDataset({ count: p.vectors + pool, dim: DIM, clusters: p.clusters, spread: p.spread, seed: SEED, labels });
    const row = (i: number) => all.subarray(i * DIM, (i + 1) * DIM);

    db = await Database.open(dir, dbOptions(p, clock));
    let col = await db.createCollection(COLLECTION, { dimension: DIM, metric: 'l2' });
    const t0 = performance.now();
    for (let at = 0; at < p.vectors; at += BATCH) {
      await col.upsert(Array.from({ length: Math.min(BATCH, p.vectors - at) }, (_, i) => ({ id: `r${at + i}`, vector: row(at + i) })));
    }
    await col.flush();
    const ingestMs = performance.now() - t0;
    log(`ingest + seal ${ms(ingestMs)}: ${col.segments().length} segments of ${num(p.segmentRecords)}`);

    const uniform = Array.from({ length: p.queries }, (_, i) => row(p.vectors + i));
    const truth: string[][] = [];
    for (const q of uniform) truth.push((await col.search(q, { k: K, exact: true })).map((h) => h.id));

    log(`before clustering: ${p.queries} queries x ${opts.runs} runs (explain)`);
    const before = await measureLayout(col, uniform, truth, opts.runs);
    log(`before: ${before.meanSearched.toFixed(2)} of ${before.segments} segments searched, R@10 ${before.recall.toFixed(4)}, p50 ${ms(before.p50)}`);

    // Clustering compaction, with searches running; idle first, on the same layout.
    log(`search p99 idle (${ms(p.idleMs)}), then during db.compact({ cluster: true })`);
    const idle = await searchLoop(col, uniform, { done: false }, p.idleMs);
    const stop = { done: false };
    const loop = monitorEventLoopDelay({ resolution: 5 });
    loop.enable();
    const tasks0 = db.stats().workers.completed;
    const tc = performance.now();
    const compacting = db.compact({ cluster: true }).finally(() => { stop.done = true; });
    const [report, during] = await Promise.all([compacting, searchLoop(col, uniform, stop)]);
    const compactMs = performance.now() - tc;
    loop.disable();
    const cr = report.clustered[0];
    const compact = {
      wallMs: compactMs, planMs: cr?.phases.plan ?? NaN, rewriteMs: cr?.phases.rewrite ?? NaN,
      regions: cr?.regions ?? 0, splitRegions: cr?.splitRegions ?? 0, segmentsAfter: cr?.segmentIds.length ?? 0,
      poolTasks: db.stats().workers.completed - tasks0,
      idleP50: percentile(idle, 50), idleP99: percentile(idle, 99), idleQueries: idle.length,
      duringP50: percentile(during, 50), duringP99: percentile(during, 99), duringQueries: during.length,
      eventLoopDelayP99Ms: loop.percentile(99) / 1e6,
    };
    log(`clustering compaction ${ms(compactMs)} (${compact.regions} regions -> ${compact.segmentsAfter} segments); `
      + `search p99 idle ${ms(compact.idleP99)} (${idle.length} q), during ${ms(compact.duringP99)} (${during.length} q)`);

    const after = await measureLayout(col, uniform, truth, opts.runs);
    log(`after: ${after.meanSearched.toFixed(2)} of ${after.segments} segments searched, R@10 ${after.recall.toFixed(4)}, p50 ${ms(after.p50)}`);

    // ---- skewed workloads ----
    // random: the hot clusters are the first 10% (centres are random, so they lie in every region:
    // the issue's workload). regional: the hot clusters are 10% whose held-out probe row searched
    // only the fewest segments (a hot part of the space, as a topic or tenant would be; chosen by
    // what the search touches, through the public API).
    const hotCount = Math.max(1, Math.round(p.clusters * HOT_CLUSTERS));
    const firstPool = p.vectors + p.queries;
    const randomHot = new Set(Array.from({ length: hotCount }, (_, c) => c));
    const regionalHot = await regionalClusters(col, labels, row, firstPool, p.vectors + pool, hotCount);
    const variants = [
      { name: 'random', hot: randomHot, seed: SEED },
      { name: 'regional', hot: regionalHot.clusters, seed: SEED + 1 },
    ].map((v) => ({
      ...v,
      // Each tiering round draws its own queries (the engine learns from its recent ones, and a
      // workload does not repeat itself); the measured stream is one more draw none of them saw.
      learn: Array.from({ length: p.warmRounds }, (_, r) => makeStream(labels, row, firstPool, p.vectors + pool, v.hot, p.skewed, v.seed + 1000 * (r + 1))),
      fresh: makeStream(labels, row, firstPool, p.vectors + pool, v.hot, p.skewed, v.seed),
    }));
    log(`regional hot set: ${regionalHot.clusters.size} clusters whose probe searched only ${regionalHot.segments} of ${col.segments().length} segments`);

    // The baseline is all hot: every segment promoted (as bench:scale reads its footprint), under
    // the default hot budget, which holds them all at these sizes.
    log(`skewed (${pct(HOT_SHARE)} of queries near ${hotCount} clusters, random and regional): all hot first`);
    for (const s of col.segments()) await db.migrate(s.id, 'hot');
    const allHot = [];
    for (const v of variants) {
      await skewPass(col, v.fresh);
      const passes = [];
      for (let r = 0; r < opts.runs; r++) passes.push(await skewPass(col, v.fresh));
      allHot.push({
        p50: median(passes.map((x) => percentile(x.obs.map((o) => o.ms), 50))),
        hotP50: median(passes.map((x) => percentile(x.hot.map((o) => o.ms), 50))),
        p99: median(passes.map((x) => percentile(x.obs.map((o) => o.ms), 99))),
      });
    }
    const allHotTiers = tierCounts(col);
    const local = localBytes(col);
    await db.close();
    db = undefined;

    const warmBytes = Math.floor(local / 4);
    const skews: SkewResult[] = [];
    for (const [i, v] of variants.entries()) {
      // Reopened per variant: access statistics live in memory, so each starts from none. The
      // recent queries are saved at close: removed, so that each variant's heat layout learns from
      // its own rounds only (not from the all-hot passes or the variant before it).
      await fsp.rm(path.join(dir, 'collections', COLLECTION, QUERY_SAMPLE_FILE), { force: true });
      log(`${v.name}: reopen with warmBytes ${mb(warmBytes)} (1/4 of ${mb(local)} local); ${p.warmRounds} rounds of stream + clock step + tiering.apply()`);
      db = await Database.open(dir, dbOptions(p, clock, { warmBytes }));
      col = db.collection(COLLECTION);
      const r = await skewedUnderBudget(db, col, clock, { learn: v.learn, fresh: v.fresh }, p, opts.runs, log);
      skews.push({ ...r, name: v.name, allHot: allHot[i]! });
      log(`${v.name} steady: ${r.endTiers['cold']} of ${r.segCount} cold, cold reads/hot query ${r.hotColdReadsPerQuery.toFixed(3)}, p50 ${ms(r.p50)} vs all-hot ${ms(allHot[i]!.p50)}`);
      await db.close();
      db = undefined;
    }
    const skew = skews[0]!;
    const regional = skews[1]!;
    const endTiers = skew.endTiers;
    const segCount = skew.segCount;
    const allHotP50 = skew.allHot.p50;

    // ---- report ----
    const skewTargets = (x: SkewResult) => ({
      coldFraction: x.coldFraction, hotColdReads: x.hotColdReadsPerQuery, p50VsAllHot: x.p50 / x.allHot.p50,
    });
    const skewPass_ = (t: ReturnType<typeof skewTargets>) => ({
      coldFraction: t.coldFraction >= TARGETS.coldFraction, hotColdReads: t.hotColdReads <= TARGETS.hotColdReads, p50: t.p50VsAllHot <= TARGETS.p50VsAllHot,
    });
    const rt = skewTargets(skew);
    const gt = skewTargets(regional);
    const targets = {
      searchedFraction: after.searchedFraction, recall: after.recall, compactP99VsIdle: compact.duringP99 / compact.idleP99,
      random: rt, regional: gt,
    };
    const rp = skewPass_(rt);
    const gp = skewPass_(gt);
    const pass_ = {
      afterSearched: targets.searchedFraction <= TARGETS.searchedFraction && targets.recall >= TARGETS.recall,
      coldFraction: rp.coldFraction, hotColdReads: rp.hotColdReads, p50: rp.p50,
      compactP99: targets.compactP99VsIdle <= TARGETS.compactP99VsIdle,
    };
    const sizeNote = `${num(p.vectors)} x ${DIM}, ${num(p.clusters)} clusters (spread ${p.spread}), segmentMaxRecords ${num(p.segmentRecords)}`;
    const layoutRow = (label: string, l: LayoutResult) => [
      label, String(l.segments), l.meanSearched.toFixed(2), l.p99Searched.toFixed(1), pct(l.searchedFraction), l.recall.toFixed(4), ms(l.p50), ms(l.p99),
    ];
    const tiersOf = (t: Record<string, number>) => `${t['hot']}/${t['warm']}/${t['cold']}`;
    const skewRows = (x: SkewResult) => [
      [`${x.name}: all hot (every segment promoted)`, tiersOf(allHotTiers), '0', '0', '-', ms(x.allHot.p50), ms(x.allHot.hotP50), ms(x.allHot.p99)],
      [`${x.name}: under budget, after ${p.warmRounds} tiering rounds`, tiersOf(x.endTiers), x.hotColdReadsPerQuery.toFixed(3),
        x.tailColdReadsPerQuery.toFixed(3), x.hotSearchedPerQuery.toFixed(2), ms(x.p50), ms(x.hotP50), ms(x.p99)],
    ];
    const skewNotes = (x: SkewResult) => [
      `${x.name}: heat layout (db.compact({ cluster: true, includeCold: true }) after round ${p.warmRounds}): ${ms(x.relayout.ms)}, ${x.relayout.segments} segments; `
        + (x.relayout.heat ? `${x.relayout.heat.queries} recent queries, ${x.relayout.heat.partitions} partitions, skew test ${pct(x.relayout.heat.skewHeatShare)}, `
          + `hot set ${x.relayout.heat.hotPartitions} partitions (${x.relayout.heat.recurring} recurring, ${x.relayout.heat.joined} through hot queries, ${num(x.relayout.heat.hotRows)} rows, ${pct(x.relayout.heat.hotHeatShare)} of the heat) -> ${x.relayout.heat.hotGroups} segments`
          + `${x.relayout.heat.unused ? ` (unused: ${x.relayout.heat.unused})` : ''}; partitions ${ms(x.relayout.heat.ms.partitions)}, heat ${ms(x.relayout.heat.ms.heat)}` : 'no heat report'),
      `${x.name}: rounds (stream, clock +${CLOCK_STEP_MS / 60_000} min, db.tiering.apply()): ${x.rounds.map((r, i) => `${i + 1}: ${r.applied} moves, tiers ${tiersOf(r.tiers)}, cold reads/hot q ${r.hotLoadedPerQuery.toFixed(2)}`).join('; ')}`,
      `${x.name}: steady state ${x.reloadsPerPass.toFixed(1)} cold reads per pass; bytes fetched per hot q ${(x.hotBytesFetchedPerQuery / 1e6).toFixed(2)} MB, per tail q ${(x.tailBytesFetchedPerQuery / 1e6).toFixed(2)} MB; `
        + `segment visits per query by tier/how ${JSON.stringify(roundDeep(x.steadyHow))}`,
      `${x.name}: hot queries' working set: they searched ${x.workingSet.segments} of ${x.segCount} segments (${mb(x.workingSet.bytes)}) in one steady pass; `
        + `after apply ${x.workingSet.localHeld} segments are local (${mb(x.workingSet.localBytesAfter)}: the policy brings local bytes down to its 70% low watermark of warmBytes), `
        + `and the ${x.workingSet.localHeld} most searched serve ${pct(x.workingSet.bestLocalShare)} of their segment searches; `
        + `${pct(x.workingSet.inHotGroups)} of their segment searches in the heat layout's hot groups; `
        + `searched by hot queries but left cold: ${x.workingSet.leftCold.length} (searches per pass, hot/tail, * = a hot group: ${x.workingSet.leftCold.map((v) => `${v.hot}/${v.tail}${v.hotGroup ? '*' : ''}`).join(' ') || '-'}); `
        + `local but searched by no hot query: ${x.workingSet.keptForTail.length} (tail searches per pass: ${x.workingSet.keptForTail.map((v) => v.tail).join(' ') || '-'})`,
    ];
    const tables: Table[] = [
      {
        title: `cluster: ${sizeNote}; k=${K}, default ef, no probe; ${p.queries} held-out queries (median of ${opts.runs} runs)`,
        columns: ['layout', 'segments', 'searched/q mean', 'p99', 'of segments', 'R@10 vs exact', 'p50', 'p99'],
        rows: [layoutRow('before (ingest order)', before), layoutRow('after compact({ cluster: true })', after)],
        notes: [
          'searched = segments whose explain `how` is neither pruned nor skipped; latency = wall time of col.explain (search with the report, one code path)',
          `segment visits per query by tier/how: before ${JSON.stringify(roundDeep(before.how))}; after ${JSON.stringify(roundDeep(after.how))}; `
            + `segments met without bounds per query: before ${before.unboundedPerQuery.toFixed(2)}, after ${after.unboundedPerQuery.toFixed(2)}`,
          `clustering compaction: ${ms(compact.wallMs)} wall (plan ${ms(compact.planMs)}, rewrite ${ms(compact.rewriteMs)}), ${compact.regions} regions (${compact.splitRegions} split) -> ${compact.segmentsAfter} segments, ${compact.poolTasks} pool tasks; `
            + `search idle p50 ${ms(compact.idleP50)} p99 ${ms(compact.idleP99)} (${compact.idleQueries} q), during p50 ${ms(compact.duringP50)} p99 ${ms(compact.duringP99)} (${compact.duringQueries} q); event-loop delay p99 ${ms(compact.eventLoopDelayP99Ms)}`,
        ],
      },
      {
        title: `cluster: skewed workloads (${pct(HOT_SHARE)} of ${p.skewed} queries near ${hotCount} of ${p.clusters} clusters), warmBytes ${mb(warmBytes)} = 1/4 of ${mb(local)} local`,
        columns: ['workload / state', 'hot/warm/cold segments', 'cold reads/hot q', 'cold reads/tail q', 'searched/hot q', 'p50', 'p50 hot q', 'p99'],
        rows: [...skewRows(skew), ...skewRows(regional)],
        notes: [
          `random = hot clusters are the first ${hotCount} (random centres: their rows lie in every region); regional = ${regionalHot.clusters.size} clusters whose probe row (a held-out row, k=${K}) searched only ${regionalHot.segments} segment(s), the fewest that hold ${hotCount} clusters`,
          ...skewNotes(skew), ...skewNotes(regional),
          `steady state = ${opts.runs} passes of a fresh stream (same workload, other draws: queries the heat layout never saw) after the rounds, an apply() after each (segments per tier read after the last); cold reads = explain segments with loaded; each workload starts from a reopen (no access statistics, no recent queries)`,
          'all hot = the same stream on the same clustered segments, each promoted with db.migrate(id, "hot"), before reopening under the budget',
        ],
      },
      {
        title: `cluster targets (issue 10; set for 1M x ${DIM}: this run is ${sizeNote})`,
        columns: ['target', 'measured', 'result'],
        rows: [
          [`after clustering: mean segments searched <= ${pct(TARGETS.searchedFraction)} with R@10 >= ${TARGETS.recall}`, `${pct(targets.searchedFraction)}, R@10 ${targets.recall.toFixed(4)}`, met(pass_.afterSearched)],
          ...([[skew, rt, rp], [regional, gt, gp]] as const).flatMap(([x, t, ok]) => [
            [`skewed ${x.name}: >= ${pct(TARGETS.coldFraction)} of segments cold`, `${x.endTiers['cold']} of ${x.segCount} (${pct(t.coldFraction)}) after apply; ${x.reloadsPerPass.toFixed(1)} reloads per pass of ${p.skewed} q`, met(ok.coldFraction)],
            [`skewed ${x.name}: 0 cold reads per query for the hot 90% in steady state`, t.hotColdReads.toFixed(3), met(ok.hotColdReads)],
            [`skewed ${x.name}: p50 <= ${TARGETS.p50VsAllHot}x all-hot p50`, `${ratio(t.p50VsAllHot)} (${ms(x.p50)} vs ${ms(x.allHot.p50)})`, met(ok.p50)],
          ]),
          [`clustering compaction: search p99 during <= ${TARGETS.compactP99VsIdle}x idle`, `${ratio(targets.compactP99VsIdle)} (${ms(compact.duringP99)} vs ${ms(compact.idleP99)})`, met(pass_.compactP99)],
        ],
      },
    ];
    const passed = Object.values(pass_).filter(Boolean).length;
    const regionalPassed = Object.values(gp).filter(Boolean).length;
    return {
      name: 'cluster',
      tables,
      conclusion: `cluster targets: ${passed}/${Object.keys(pass_).length} PASS (skewed = random, the issue's workload); segments searched ${pct(before.searchedFraction)} -> ${pct(after.searchedFraction)} `
        + `(R@10 ${after.recall.toFixed(3)}); skewed random ${pct(skew.coldFraction)} cold, ${skew.hotColdReadsPerQuery.toFixed(2)} cold reads/hot query, p50 ${ratio(rt.p50VsAllHot)} all-hot; `
        + `regional ${regionalPassed}/3 PASS: ${pct(regional.coldFraction)} cold, ${regional.hotColdReadsPerQuery.toFixed(2)} cold reads/hot query, p50 ${ratio(gt.p50VsAllHot)} all-hot`,
      data: roundDeep({ params: p, k: K, seed: SEED, ingestMs, before, after, compact, skewed: skews, targets, pass: pass_, regionalPass: gp }),
    };
  } finally {
    await db?.close();
    await removeDir(dir);
  }
}
