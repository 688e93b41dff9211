// The engine side of the scale bench, run in a child process of its own (forked by scale.ts) so
// that its RSS is the engine's alone, not the bench's dataset and raw indexes. It answers one
// request at a time over IPC and measures inside itself; it must never hold raw hnswlib indexes.

import { Database, type Collection, type DatabaseOptions } from '../engine/index.js';
import { clusteredDataset } from '../harness/datasets.js';
import { residentMemory } from './report.js';

export interface ChildRequest {
  id: number;
  op: string;
  args: Record<string, unknown>;
}

export interface ChildReply {
  id: number;
  ok: boolean;
  value?: unknown;
  error?: string;
}

/** What a search pass hands back; latencies in ms, ids as row numbers. */
export interface EnginePassResult {
  n: number;
  lat: number[];
  found: number[][];
  wallMs: number;
  cpuUs: number;
  /** db.stats() before and after, the parts that count per-query work. */
  before: CounterSnapshot;
  after: CounterSnapshot;
  rss: ReturnType<typeof residentMemory>;
}

export interface CounterSnapshot {
  hot: Record<string, unknown>;
  tiers: Record<string, unknown>;
  movement: Record<string, unknown>;
}

/** `col.explain` as the read-path rewrite adds it; feature-detected, absent today. */
type Explainable = Collection & {
  explain?: (q: Float32Array, o: { k: number; ef?: number; filter?: unknown }) => Promise<{
    hits: unknown[]; ms: number; segments: Record<string, unknown>[];
  }>;
};

let db: Database | undefined;
let col: Explainable | undefined;
const COLLECTION = 'bench';

function json<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T;
}

function counters(): CounterSnapshot {
  const s = db!.stats() as unknown as { tiers: Record<string, Record<string, unknown>>; movement: Record<string, unknown> };
  return json({ hot: s.tiers['hot'] ?? {}, tiers: s.tiers, movement: s.movement });
}

function rows(flat: Float32Array, dim: number): Float32Array[] {
  return Array.from({ length: flat.length / dim }, (_, i) => flat.subarray(i * dim, (i + 1) * dim));
}

const ops: Record<string, (a: Record<string, unknown>) => Promise<unknown>> = {
  async open(a) {
    db = await Database.open(a['dir'] as string, a['options'] as DatabaseOptions);
    const names = db.listCollections();
    col = (names.includes(COLLECTION)
      ? db.collection(COLLECTION)
      : await db.createCollection(COLLECTION, { dimension: a['dim'] as number, metric: 'l2', hnsw: a['hnsw'] as { M: number; efConstruction: number } })) as Explainable;
    return { rss: residentMemory(), explain: typeof col.explain === 'function' };
  },

  /** Regenerates the parent's dataset from its seed (cheaper than 512 MB over IPC) and ingests it. */
  async ingest(a) {
    const count = a['count'] as number;
    const dim = a['dim'] as number;
    const batch = a['batch'] as number;
    const all = clusteredDataset({ count: count + (a['nq'] as number), dim, seed: a['seed'] as number });
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    for (let start = 0; start < count; start += batch) {
      const end = Math.min(count, start + batch);
      const recs = [];
      for (let r = start; r < end; r++) recs.push({ id: String(r), vector: all.subarray(r * dim, (r + 1) * dim) });
      await col!.upsert(recs);
    }
    const ingestMs = performance.now() - t0;
    await col!.flush();
    const flushMs = performance.now() - t0 - ingestMs;
    await db!.flushUploads();
    const uploadsMs = performance.now() - t0 - ingestMs - flushMs;
    const cpu = process.cpuUsage(c0);
    const st = db!.stats() as unknown as { collections: Record<string, { seal?: unknown }> };
    return { ingestMs, flushMs, uploadsMs, cpuMs: (cpu.user + cpu.system) / 1000, seal: json(st.collections[COLLECTION]?.seal), segments: json(col!.segments()) };
  },

  segments: async () => json(col!.segments()),
  stats: async () => json(db!.stats()),
  rss: async () => residentMemory(),
  flushUploads: async () => db!.flushUploads(),

  async migrate(a) {
    const t0 = performance.now();
    const tier = a['tier'] as 'hot' | 'warm' | 'cold';
    const where = new Map(col!.segments().map((s) => [s.id, s.tier]));
    for (const id of a['ids'] as string[]) if (where.get(id) !== tier) await db!.migrate(id, tier);
    return { ms: performance.now() - t0 };
  },

  /**
   * Searches the queries in order, `reps` times over, one awaited call at a time, until all are
   * done or `maxMs` has passed with at least `minQueries` done (a pass under a budget that reloads
   * segments per query would otherwise take minutes). Ids are row numbers (String(row) on ingest).
   */
  async search(a) {
    const qs = rows(a['queries'] as Float32Array, a['dim'] as number);
    const { k, ef, reps, maxMs, minQueries } = a as { k: number; ef: number; reps: number; maxMs: number; minQueries: number };
    const lat: number[] = [];
    const found: number[][] = [];
    const before = counters();
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    outer: for (let rep = 0; rep < reps; rep++) {
      for (const q of qs) {
        if (lat.length >= minQueries && performance.now() - t0 > maxMs) break outer;
        const s = performance.now();
        const hits = await col!.search(q, { k, ef });
        lat.push(performance.now() - s);
        if (rep === 0) found.push(hits.map((h) => Number(h.id)));
      }
    }
    const wallMs = performance.now() - t0;
    const cpu = process.cpuUsage(c0);
    const r: EnginePassResult = { n: lat.length, lat, found, wallMs, cpuUs: cpu.user + cpu.system, before, after: counters(), rss: residentMemory() };
    return r;
  },

  /** One timed search (a first query): ms, and the counters it moved. */
  async one(a) {
    const before = counters();
    const s = performance.now();
    const hits = await col!.search(a['query'] as Float32Array, { k: a['k'] as number, ef: a['ef'] as number });
    const t = performance.now() - s;
    return { ms: t, hits: hits.length, before, after: counters(), segments: json(col!.segments()) };
  },

  /** `col.explain` over the queries, if the engine has it: the per-segment records as they came. */
  async explain(a) {
    if (typeof col!.explain !== 'function') return { available: false };
    const qs = rows(a['queries'] as Float32Array, a['dim'] as number);
    const out: { ms: number; segments: Record<string, unknown>[] }[] = [];
    for (const q of qs) {
      const e = await col!.explain(q, { k: a['k'] as number, ef: a['ef'] as number });
      out.push({ ms: e.ms, segments: json(e.segments as unknown as Record<string, unknown>[]) });
    }
    return { available: true, queries: out };
  },

  async close() {
    await db?.close();
    db = undefined;
    return null;
  },
};

process.on('message', (m: ChildRequest) => {
  const fn = ops[m.op];
  const reply = (r: ChildReply) => process.send!(r);
  if (!fn) {
    reply({ id: m.id, ok: false, error: `unknown op ${m.op}` });
    return;
  }
  fn(m.args).then(
    (value) => reply({ id: m.id, ok: true, value }),
    (err: unknown) => reply({ id: m.id, ok: false, error: (err as Error)?.stack ?? String(err) }),
  );
});
process.on('disconnect', () => {
  void db?.close().finally(() => process.exit(0));
  if (!db) process.exit(0);
});
