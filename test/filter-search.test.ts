// Filtered search through the engine against a brute-force filtered scan: random payloads, a set
// of filters over every operator (each with an oracle written here, independently of
// index/filter.ts), across growing, hot, warm and cold segments, with and without payload
// indexes, after deletes and upserts, after reopen and after compaction. Exact search must equal
// the oracle; graph search must return only passing rows.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Database, type Collection, type DatabaseOptions, type Filter } from '../engine/index.js';
import { mulberry32 } from '../harness/datasets.js';
import { track, withTmpDir } from './helpers/tmp.js';

const SEED = Number(process.env.STRATAVEC_TEST_SEED ?? 21);
const DIM = 8;

type P = { lang: string; price: number; tags: string[]; meta?: { ok: boolean | null } };
type Row = { v: Float32Array; p: P };

const LANGS = ['en', 'de', 'fr', 'es'];

function payload(rand: () => number): P {
  const p: P = {
    lang: LANGS[Math.floor(rand() * LANGS.length)]!,
    price: Math.floor(rand() * 100),
    tags: ['t1', 't2', 't3', 't4'].filter(() => rand() < 0.3),
  };
  const m = rand();
  if (m < 0.4) p.meta = { ok: true };
  else if (m < 0.7) p.meta = { ok: false };
  else if (m < 0.8) p.meta = { ok: null };
  return p;
}

/** Each filter with what it means, written out by hand (arrays match if any element does; $ne
 *  and $nin also match a missing field; null matches only a stored null; types never mix). */
const FILTERS: [string, Filter, (p: P) => boolean][] = [
  ['lang equality', { lang: 'en' }, (p) => p.lang === 'en'],
  ['price range', { price: { $gte: 20, $lt: 45 } }, (p) => p.price >= 20 && p.price < 45],
  ['price $lte', { price: { $lte: 3 } }, (p) => p.price <= 3],
  ['tags contains', { tags: 't2' }, (p) => p.tags.includes('t2')],
  ['lang $in', { lang: { $in: ['de', 'es'] } }, (p) => p.lang === 'de' || p.lang === 'es'],
  ['lang $ne', { lang: { $ne: 'en' } }, (p) => p.lang !== 'en'],
  ['lang $nin', { lang: { $nin: ['en', 'de'] } }, (p) => p.lang !== 'en' && p.lang !== 'de'],
  ['nested bool', { 'meta.ok': true }, (p) => p.meta?.ok === true],
  ['nested null', { 'meta.ok': null }, (p) => p.meta !== undefined && p.meta.ok === null],
  ['nested missing', { 'meta.ok': { $exists: false } }, (p) => p.meta === undefined],
  ['$or', { $or: [{ lang: 'fr' }, { price: { $gt: 95 } }] }, (p) => p.lang === 'fr' || p.price > 95],
  ['$and', { $and: [{ lang: 'en' }, { tags: 't1' }, { price: { $lt: 50 } }] }, (p) => p.lang === 'en' && p.tags.includes('t1') && p.price < 50],
  ['$not', { $not: { lang: { $in: ['en', 'de', 'fr'] } } }, (p) => p.lang === 'es'],
  ['type never mixes', { price: '10' }, () => false],
  ['predicate', (p) => (p?.['price'] as number) % 7 === 0, (p) => p.price % 7 === 0],
];

function l2(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i]! - b[i]!) ** 2;
  return s;
}

async function check(col: Collection, live: Map<string, Row>, rand: () => number, label: string): Promise<void> {
  for (const [name, filter, oracle] of FILTERS) {
    for (let q = 0; q < 3; q++) {
      const query = Float32Array.from({ length: DIM }, () => rand() * 2 - 1);
      const want = [...live.entries()].filter(([, r]) => oracle(r.p)).map(([id, r]) => ({ id, d: l2(query, r.v) }))
        .sort((a, b) => a.d - b.d || (a.id < b.id ? -1 : 1)).slice(0, 10);
      const what = `${label}, ${name}, query ${q} (seed ${SEED})`;
      const exact = await col.search(query, { k: 10, exact: true, filter });
      assert.deepEqual(exact.map((h) => h.id), want.map((w) => w.id), what);
      const graph = await col.search(query, { k: 10, filter });
      for (const h of graph) assert.ok(oracle(live.get(h.id)!.p), `${what}: graph search returned ${h.id}, which does not pass`);
      // Recall of the graph path against the oracle: filtered graph search must not collapse.
      if (want.length >= 10) {
        const got = new Set(graph.map((h) => h.id));
        const recall = want.filter((w) => got.has(w.id)).length / want.length;
        assert.ok(recall >= 0.7, `${what}: filtered graph recall ${recall}`);
      }
    }
  }
}

for (const indexed of [true, false]) {
  test(`filtered search equals a brute-force filtered scan across tiers, deletes, upserts, reopen and compaction (${indexed ? 'with' : 'without'} payload indexes, seed ${SEED})`, async () => {
    await withTmpDir('filter-search', async (dir) => {
      const opts: DatabaseOptions = { workers: 1, segmentMaxRecords: 600, warmScanMaxRecords: 50, tiering: { intervalMs: 0 } };
      let db = track(await Database.open(dir, opts));
      let col = await db.createCollection('c', { dimension: DIM, ...(indexed ? { indexes: { lang: 'keyword', price: 'number' } } : {}) });
      const rand = mulberry32(SEED + (indexed ? 0 : 1));
      const live = new Map<string, Row>();
      const write = async (from: number, to: number) => {
        const batch = Array.from({ length: to - from }, (_, i) => {
          const v = Float32Array.from({ length: DIM }, () => rand() * 2 - 1);
          return { id: `r${from + i}`, vector: v, payload: payload(rand) };
        });
        await col.upsert(batch);
        for (const b of batch) live.set(b.id, { v: b.vector, p: b.payload });
      };
      for (let at = 0; at < 3000; at += 600) await write(at, at + 600); // five sealed segments
      await col.flush();
      assert.ok(col.segments().length >= 3, `sealed segments: ${col.segments().length}`);
      await write(3000, 3200); // growing rows
      await db.flushUploads();
      const segs = col.segments();
      await db.migrate(segs[0]!.id, 'cold');
      await db.migrate(segs[1]!.id, 'hot');
      await check(col, live, rand, 'growing + hot + warm + cold');
      // Deletes and upserts (some replacing rows of the cold segment).
      const ids = [...live.keys()];
      const doomed = ids.filter(() => rand() < 0.1);
      await col.delete(doomed);
      for (const id of doomed) live.delete(id);
      const replaced = ids.filter((id) => live.has(id) && rand() < 0.05).map((id) => ({ id, vector: Float32Array.from({ length: DIM }, () => rand() * 2 - 1), payload: payload(rand) }));
      await col.upsert(replaced);
      for (const r of replaced) live.set(r.id, { v: r.vector, p: r.payload });
      await check(col, live, rand, 'after deletes and upserts');
      await db.close();
      db = track(await Database.open(dir, opts));
      col = db.collection('c');
      await check(col, live, rand, 'after reopen');
      await db.compact({ deletedRatio: 0.01 });
      await check(col, live, rand, 'after compaction');
      await db.close();
    });
  });
}

test(`createIndex on an existing collection builds the index into every local segment in the pool; results do not change (seed ${SEED})`, async () => {
  await withTmpDir('filter-reindex', async (dir) => {
    const db = track(await Database.open(dir, { workers: 1, segmentMaxRecords: 500, warmScanMaxRecords: 50, tiering: { intervalMs: 0 } }));
    const col = await db.createCollection('c', { dimension: DIM });
    const rand = mulberry32(SEED + 7);
    const live = new Map<string, Row>();
    for (let at = 0; at < 1500; at += 500) {
      const batch = Array.from({ length: 500 }, (_, i) => ({ id: `r${at + i}`, vector: Float32Array.from({ length: DIM }, () => rand() * 2 - 1), payload: payload(rand) }));
      await col.upsert(batch);
      for (const b of batch) live.set(b.id, { v: b.vector, p: b.payload });
    }
    await col.flush();
    await db.flushUploads();
    const [cold] = col.segments();
    await db.migrate(cold!.id, 'cold');
    await col.delete(['r600', 'r601']);
    live.delete('r600');
    live.delete('r601');
    await check(col, live, rand, 'before createIndex');
    await assert.rejects(col.createIndex({ lang: 'fulltext' as never }), (e: unknown) => (e as { code?: string }).code === 'ERR_INVALID_ARGUMENT');
    await db.migrate(cold!.id, 'cold'); // the searches above rehydrated it
    const rewritten = await col.createIndex({ lang: 'keyword', price: 'number' });
    assert.equal(rewritten.length, 2, `the two local segments were rewritten, the cold one left: ${rewritten}`);
    await check(col, live, rand, 'after createIndex');
    // The rewritten segments now skip a filter no row can match from their summaries alone.
    const e = await col.explain(new Float32Array(DIM), { k: 5, filter: { lang: 'nope' } });
    const bySummary = e.segments.filter((s) => s.how === 'no-match' && s.passing === undefined).map((s) => s.id).sort();
    assert.deepEqual(bySummary, [...rewritten].sort(), JSON.stringify(e.segments));
    assert.equal(col.count(), live.size);
    await db.close();
  });
});
