// `stratavec demo`: generates a clustered synthetic dataset (no download), ingests it durably,
// searches it, and prints recall against exact search, timings, and the tier of every segment.
// Uses only the public API, like any user program.

import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Database } from '../engine/index.js';

export interface DemoOptions {
  dir?: string;
  count: number;
  dimension: number;
  queries: number;
  segmentMaxRecords: number;
  workers?: number;
  json: boolean;
}

/** Seeded PRNG so every demo run sees the same data. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Points scattered around `clusters` random centres: the shape of real embedding data. */
function clustered(count: number, dim: number, clusters: number, seed: number): Float32Array {
  const rnd = prng(seed);
  const gauss = () => Math.sqrt(-2 * Math.log(rnd() || 1e-12)) * Math.cos(2 * Math.PI * rnd());
  const centres = Float32Array.from({ length: clusters * dim }, () => rnd() * 20 - 10);
  const out = new Float32Array(count * dim);
  for (let i = 0; i < count; i++) {
    const c = Math.floor(rnd() * clusters);
    for (let j = 0; j < dim; j++) out[i * dim + j] = centres[c * dim + j]! + gauss();
  }
  return out;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

export async function runDemo(o: DemoOptions, log: (line: string) => void): Promise<Record<string, unknown>> {
  const dir = o.dir ?? (await fsp.mkdtemp(path.join(os.tmpdir(), 'stratavec-demo-')));
  const { count, dimension: dim } = o;
  log(`generating ${count} x ${dim} clustered vectors (+${o.queries} queries)`);
  const data = clustered(count + o.queries, dim, 64, 42);
  const db = await Database.open(dir, { segmentMaxRecords: o.segmentMaxRecords, ...(o.workers === undefined ? {} : { workers: o.workers }) });
  try {
    if (db.listCollections().includes('demo')) await db.dropCollection('demo');
    const col = await db.createCollection('demo', { dimension: dim, metric: 'l2' });

    const t0 = performance.now();
    for (let b = 0; b < count; b += 1000) {
      const batch = [];
      for (let i = b; i < Math.min(count, b + 1000); i++) {
        batch.push({ id: `doc-${i}`, vector: data.subarray(i * dim, i * dim + dim), payload: { n: i, bucket: i % 10 } });
      }
      await col.upsert(batch);
      if ((b / 1000) % 10 === 9) log(`  ingested ${b + 1000}/${count}`);
    }
    const ingestMs = performance.now() - t0;
    const t1 = performance.now();
    await col.flush();
    const flushMs = performance.now() - t1;
    log(`ingested ${count} in ${(ingestMs / 1000).toFixed(2)} s (${Math.round(count / (ingestMs / 1000))} vectors/s durable); final flush ${flushMs.toFixed(0)} ms`);

    const queries = Array.from({ length: o.queries }, (_, q) => data.subarray((count + q) * dim, (count + q + 1) * dim));
    const tFirst = performance.now();
    await col.search(queries[0]!, { k: 10 });
    const firstMs = performance.now() - tFirst;
    const annMs: number[] = [];
    const exactMs: number[] = [];
    let hits = 0;
    for (const q of queries) {
      let t = performance.now();
      const ann = await col.search(q, { k: 10, ef: 64, includePayload: false });
      annMs.push(performance.now() - t);
      t = performance.now();
      const exact = await col.search(q, { k: 10, exact: true, includePayload: false });
      exactMs.push(performance.now() - t);
      const truth = new Set(exact.map((h) => h.id));
      hits += ann.filter((h) => truth.has(h.id)).length;
    }
    const recall = hits / (queries.length * 10);
    const filtered = await col.search(queries[0]!, { k: 5, filter: { bucket: 3 } });

    const segments = col.segments();
    const summary = {
      dir, count, dimension: dim, segmentMaxRecords: o.segmentMaxRecords,
      ingest: { seconds: ingestMs / 1000, vectorsPerSecond: count / (ingestMs / 1000), finalFlushMs: flushMs },
      search: {
        queries: queries.length, k: 10, ef: 64, recallAt10: recall,
        firstQueryMs: firstMs, p50Ms: median(annMs), qps: 1000 / (annMs.reduce((a, b) => a + b, 0) / annMs.length),
        exactP50Ms: median(exactMs),
      },
      filteredExample: filtered.map((h) => ({ id: h.id, bucket: h.payload?.bucket })),
      segments: segments.map((s) => ({ id: s.id, tier: s.tier, records: s.records, deleted: s.deleted, bytes: s.bytes })),
    };
    if (!o.json) {
      log('');
      log(`recall@10 vs exact search: ${recall.toFixed(4)} over ${queries.length} queries (ef=64)`);
      log(`search: first query ${firstMs.toFixed(1)} ms (maps segments and searches them in place; hot admission loads indexes in the background), then p50 ${median(annMs).toFixed(3)} ms, ${summary.search.qps.toFixed(0)} QPS; exact p50 ${median(exactMs).toFixed(2)} ms`);
      log(`filter {bucket: 3}: ${filtered.map((h) => `${h.id}(${String(h.payload?.bucket)})`).join(' ')}`);
      log('');
      log('segment          tier  records  deleted        bytes');
      for (const s of segments) {
        log(`${s.id.padEnd(16)} ${s.tier.padEnd(5)} ${String(s.records).padStart(8)} ${String(s.deleted).padStart(8)} ${String(s.bytes).padStart(12)}`);
      }
      log(`data kept in ${dir}`);
    }
    return summary;
  } finally {
    await db.close();
  }
}
