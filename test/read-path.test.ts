// The read path over collections larger than memory: exact pruning by segment bounds (pruned
// exact results equal brute force, every metric, with deletes and filters), value-based hot
// admission under a uniform workload (each segment loaded at most once, no churn), a segment a
// read rehydrated is not demoted within its residency, and explain() reports what happened.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Database, type Collection, type DatabaseOptions, type ExplainResult } from '../engine/index.js';
import { clusteredDataset, mulberry32 } from '../harness/datasets.js';
import { track, waitFor, withTmpDir } from './helpers/tmp.js';

const SEED = Number(process.env.STRATAVEC_TEST_SEED ?? 5);
const DIM = 16;

type Metric = 'l2' | 'ip' | 'cosine';

function normalized(v: Float32Array): Float32Array {
  let s = 0;
  for (const x of v) s += x * x;
  const inv = 1 / Math.sqrt(s);
  return v.map((x) => x * inv);
}

function distance(metric: Metric, a: Float32Array, b: Float32Array): number {
  if (metric === 'l2') {
    let s = 0;
    for (let i = 0; i < a.length; i++) s += (a[i]! - b[i]!) ** 2;
    return s;
  }
  const x = metric === 'cosine' ? normalized(a) : a;
  const y = metric === 'cosine' ? normalized(b) : b;
  let dot = 0;
  for (let i = 0; i < x.length; i++) dot += x[i]! * y[i]!;
  return 1 - dot;
}

/** Rows in clusters, inserted cluster by cluster so each sealed segment covers a region (bounds prune). */
async function fill(col: Collection, n: number, seed: number): Promise<Map<string, { v: Float32Array; c: number }>> {
  const data = clusteredDataset({ count: n, dim: DIM, clusters: 12, seed, spread: 0.05 });
  const rows = Array.from({ length: n }, (_, i) => ({ i, v: data.slice(i * DIM, i * DIM + DIM) }));
  // Sort by first coordinate so neighbouring rows land in the same segment.
  rows.sort((a, b) => a.v[0]! - b.v[0]! || a.i - b.i);
  const live = new Map<string, { v: Float32Array; c: number }>();
  for (let at = 0; at < n; at += 500) {
    const batch = rows.slice(at, at + 500).map((r) => ({ id: `r${r.i}`, vector: r.v, payload: { c: r.i % 7 } }));
    await col.upsert(batch);
    for (const b of batch) live.set(b.id, { v: b.vector, c: b.payload.c });
  }
  await col.flush();
  return live;
}

test(`exact search with bound pruning equals brute force, every metric, with deletes and filters (seed ${SEED})`, async () => {
  for (const metric of ['l2', 'ip', 'cosine'] as const) {
    await withTmpDir('read-prune', async (dir) => {
      const db = track(await Database.open(dir, { workers: 1, segmentMaxRecords: 1_000, tiering: { intervalMs: 0 } }));
      const col = await db.createCollection('c', { dimension: DIM, metric });
      const live = await fill(col, 6_000, SEED);
      const rand = mulberry32(SEED + 1);
      const doomed = [...live.keys()].filter(() => rand() < 0.1);
      await col.delete(doomed);
      for (const id of doomed) live.delete(id);
      let pruned = 0;
      for (let q = 0; q < 25; q++) {
        const base = [...live.values()][Math.floor(rand() * live.size)]!.v;
        const query = base.map((x) => x + (rand() - 0.5) * 0.02);
        const filter = q % 2 === 0 ? undefined : { c: { $in: [1, 3] } };
        const want = [...live.entries()]
          .filter(([, r]) => filter === undefined || r.c === 1 || r.c === 3)
          .map(([id, r]) => ({ id, d: distance(metric, query, r.v) }))
          .sort((a, b) => a.d - b.d)
          .slice(0, 10);
        const e: ExplainResult = await col.explain(query, { k: 10, exact: true, ...(filter ? { filter } : {}) });
        const label = `${metric}, query ${q}, seed ${SEED}`;
        assert.deepEqual(e.hits.map((h) => h.id), want.map((w) => w.id), label);
        e.hits.forEach((h, i) => assert.ok(Math.abs(h.distance - want[i]!.d) <= 1e-4 * Math.max(1, Math.abs(want[i]!.d)), `${label}: distance ${h.distance} vs ${want[i]!.d}`));
        const kth = e.hits.at(-1)!.distance;
        for (const s of e.segments) {
          if (s.how === 'pruned') {
            pruned++;
            assert.ok(s.bound > kth, `${label}: ${s.id} pruned with bound ${s.bound} <= k-th ${kth}`);
          }
        }
      }
      // Clustered rows in sorted order: most queries need only a few of the segments.
      assert.ok(pruned > 0, `${metric}: bounds pruned nothing in 25 queries (seed ${SEED})`);
      await db.close();
    });
  }
});

async function segmentsOf(dir: string, options: DatabaseOptions, n: number): Promise<Map<string, { v: Float32Array; c: number }>> {
  const db = track(await Database.open(dir, { ...options, hotBytes: 0 }));
  const col = await db.createCollection('c', { dimension: DIM });
  const live = await fill(col, n, SEED + 2);
  await db.flushUploads();
  await db.close();
  return live;
}

test(`a uniform workload over more segments than hot holds: each segment loaded at most once, no churn (seed ${SEED})`, async () => {
  await withTmpDir('read-uniform', async (dir) => {
    const base: DatabaseOptions = { workers: 1, segmentMaxRecords: 2_000, warmScanMaxRecords: 100, tiering: { intervalMs: 0 }, clock: { now: () => 1_000 } };
    const live = await segmentsOf(dir, base, 12_000);
    // A budget for about two of the six segments.
    let db = track(await Database.open(dir, { ...base, hotBytes: 1 << 30 }));
    let col = db.collection('c');
    const one = col.segments()[0]!;
    await db.migrate(one.id, 'hot');
    const perSegment = db.stats().tiers.hot.bytes;
    await db.close();
    const hotBytes = Math.floor((2.5 * perSegment) / 0.9);
    db = track(await Database.open(dir, { ...base, hotBytes }));
    col = db.collection('c');
    const segs = col.segments().map((s) => s.id);
    assert.equal(segs.length, 6);
    const ids = [...live.keys()];
    const rand = mulberry32(SEED + 3);
    const round = async () => {
      // Every segment, evenly: one query near a row of each (rows are sorted, so id ranges differ).
      for (let i = 0; i < 12; i++) {
        const { v } = live.get(ids[Math.floor(rand() * ids.length)]!)!;
        const hits = await col.search(v, { k: 5 });
        assert.ok(hits.length === 5, `seed ${SEED}`);
      }
    };
    const settle = async () => {
      await waitFor(() => { const h = db.stats().tiers.hot; return h.loads === h.admissions; }, 'admitted loads to finish');
    };
    // Warm up until a whole round admits nothing more (bounded): admission loads in the
    // background, one at a time, so how many rounds that takes depends on the machine, not on
    // what is checked below.
    let warmed = db.stats().tiers.hot;
    for (let r = 0; r < 40; r++) {
      await round();
      await settle();
      const now = db.stats().tiers.hot;
      if (r >= 5 && now.admissions === warmed.admissions) break;
      warmed = now;
    }
    warmed = db.stats().tiers.hot;
    assert.ok(warmed.loads >= 2, `hot filled up to its budget (${JSON.stringify(warmed)})`);
    assert.ok(warmed.loads <= segs.length, `each segment loaded at most once: ${warmed.loads} loads of ${segs.length} segments`);
    assert.ok(warmed.bytes <= hotBytes, `hot within budget: ${warmed.bytes} of ${hotBytes}`);
    for (let r = 0; r < 10; r++) await round();
    await settle();
    const after = db.stats().tiers.hot;
    assert.equal(after.loads, warmed.loads, `no index load once warm (seed ${SEED}): ${JSON.stringify({ warmed, after })}`);
    assert.equal(after.evictions, 0, `no churn: nothing admitted was evicted (seed ${SEED})`);
    const s = db.stats().search;
    assert.ok(s.how['mapped-hnsw'] > 0 && s.how.hnsw > 0, `both hot and in-place searches served: ${JSON.stringify(s.how)}`);
    await db.close();
  });
});

test(`a segment a read rehydrated is not demoted within its residency; plan() after apply() plans nothing (seed ${SEED})`, async () => {
  await withTmpDir('read-residency', async (dir) => {
    let now = 1_000_000;
    const base: DatabaseOptions = { workers: 1, segmentMaxRecords: 2_000, tiering: { intervalMs: 0, minResidencyMs: 60_000 }, clock: { now: () => now } };
    const live = await segmentsOf(dir, base, 8_000);
    let db = track(await Database.open(dir, base));
    let col = db.collection('c');
    for (const s of col.segments()) await db.migrate(s.id, 'cold');
    const localOne = col.segments()[0]!.bytes;
    await db.close();
    // Local disk for less than one segment: every rehydration puts the disk over budget.
    db = track(await Database.open(dir, { ...base, warmBytes: Math.floor(localOne * 0.8) }));
    col = db.collection('c');
    const [first] = [...live.values()];
    const e = await col.explain(first!.v, { k: 3 });
    const loaded = e.segments.filter((s) => s.loaded);
    assert.ok(loaded.length >= 1, `the search rehydrated what it needed: ${JSON.stringify(e.segments)}`);
    for (const s of loaded) {
      assert.equal(s.tier, 'cold');
      const info = col.segments().find((x) => x.id === s.id)!;
      assert.equal(info.tier, 'warm', `${s.id} is warm after the read`);
      assert.equal(s.bytesFetched, info.remoteBytes, `${s.id}: explain's bytes are the remote copy's`);
    }
    const within = await db.tiering.plan();
    for (const s of loaded) {
      assert.ok(!within.moves.some((m) => m.segmentId === s.id), `${s.id} demoted within its residency: ${JSON.stringify(within.moves)}`);
    }
    await db.tiering.apply();
    assert.deepEqual((await db.tiering.plan()).moves, [], 'plan() after apply() at the same instant');
    now += 60_001;
    const later = await db.tiering.plan();
    assert.ok(later.moves.some((m) => loaded.some((s) => s.id === m.segmentId) && m.to === 'cold'), `after the residency the budget is enforced: ${JSON.stringify(later.moves)}`);
    await db.close();
  });
});

test('explain: every sealed segment reported once, hits equal search(), stats count what explain showed', async () => {
  await withTmpDir('read-explain', async (dir) => {
    const db = track(await Database.open(dir, { workers: 1, segmentMaxRecords: 1_500, warmScanMaxRecords: 100, tiering: { intervalMs: 0 } }));
    const col = await db.createCollection('c', { dimension: DIM, indexes: { c: 'number' } });
    const live = await fill(col, 6_000, SEED + 4);
    await col.upsert([{ id: 'growing', vector: new Float32Array(DIM).fill(0.1), payload: { c: 99 } }]);
    const [v] = [...live.values()];
    const before = db.stats().search;
    const e = await col.explain(v!.v, { k: 7 });
    const hits = await col.search(v!.v, { k: 7 });
    assert.deepEqual(e.hits, hits);
    assert.deepEqual(e.segments.map((s) => s.id).sort(), col.segments().map((s) => s.id).sort());
    assert.equal(e.growing.rows, 1);
    for (const s of e.segments) assert.ok(['mapped-hnsw', 'hnsw', 'scan', 'pruned'].includes(s.how), `${s.id}: ${s.how}`);
    const bounds = e.segments.map((s) => s.bound);
    assert.deepEqual(bounds, [...bounds].sort((a, b) => a - b), 'nearest bound first');
    const after = db.stats().search;
    assert.equal(after.searches - before.searches, 2);
    assert.equal(after.how.pruned - before.how.pruned, 2 * e.segments.filter((s) => s.how === 'pruned').length);
    // A filter no segment can match is answered from the summaries alone.
    const none = await col.explain(v!.v, { k: 3, filter: { c: 1234 } });
    assert.deepEqual(none.hits, []);
    assert.ok(none.segments.every((s) => s.how === 'no-match'), JSON.stringify(none.segments));
    await db.close();
  });
});
