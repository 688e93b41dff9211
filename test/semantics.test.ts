// Engine semantics through the public API: replacement, deletion and re-insertion wherever a record
// lives (growing segment, sealed by flush, sealed by size, frozen while sealing) and after reopen;
// search ordering, k, filters and payload options; distance meaning per metric; the collection
// catalog; SegmentInfo. Every check compares against an in-test model of what must be stored.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Database, type DatabaseOptions, type Collection, type Payload, type SearchHit, type SearchOptions } from '../engine/index.js';
import { mulberry32 } from '../harness/datasets.js';
import { track, hasCode, waitFor, withTmpDir } from './helpers/tmp.js';

const openDb = (dir: string, options?: DatabaseOptions): Promise<Database> => Database.open(dir, options).then(track);

const DIM = 8;
// Sealed segments answer through HNSW (warmScanMaxRecords 0), the path that must honour tombstones
// and filters inside the graph search; the search test also runs with exact scans of warm segments.
const OPTS: DatabaseOptions = { workers: 1, warmScanMaxRecords: 0 };
type Metric = 'l2' | 'cosine' | 'ip';
type Rec = { vector: Float32Array; payload?: Payload };

/** What the collection must hold: id -> the current (stored-form) vector and payload. */
class Model {
  readonly live = new Map<string, Rec>();
  /** Every id ever written or deleted, so get() of gone ids is checked too. */
  readonly touched = new Set<string>();
  /** Vectors that were replaced or deleted: queries at them must never find the old version. */
  readonly ghosts: Float32Array[] = [];
  readonly metric: Metric;

  constructor(metric: Metric = 'l2') {
    this.metric = metric;
  }

  stored(v: Float32Array): Float32Array {
    return this.metric === 'cosine' ? normalized(v) : Float32Array.from(v);
  }

  async upsert(col: Collection, recs: { id: string; vector: Float32Array; payload?: Payload }[]): Promise<void> {
    await col.upsert(recs);
    this.applyUpsert(recs);
  }

  applyUpsert(recs: { id: string; vector: Float32Array; payload?: Payload }[]): void {
    for (const r of recs) {
      const old = this.live.get(r.id);
      if (old) this.ghosts.push(old.vector);
      this.live.set(r.id, r.payload === undefined ? { vector: this.stored(r.vector) } : { vector: this.stored(r.vector), payload: structuredClone(r.payload) });
      this.touched.add(r.id);
    }
  }

  async delete(col: Collection, ids: string[]): Promise<void> {
    await col.delete(ids);
    this.applyDelete(ids);
  }

  applyDelete(ids: string[]): void {
    for (const id of ids) {
      const old = this.live.get(id);
      if (old) this.ghosts.push(old.vector);
      this.live.delete(id);
      this.touched.add(id);
    }
  }
}

function normalized(v: Float32Array): Float32Array {
  let s = 0;
  for (const x of v) s += x * x;
  const inv = 1 / Math.sqrt(s);
  return Float32Array.from(v, (x) => x * inv);
}

function distance(metric: Metric, q: Float32Array, v: Float32Array): number {
  if (metric === 'l2') {
    let s = 0;
    for (let i = 0; i < q.length; i++) s += (q[i]! - v[i]!) ** 2;
    return s;
  }
  const a = metric === 'cosine' ? normalized(q) : q;
  let d = 0;
  for (let i = 0; i < a.length; i++) d += a[i]! * v[i]!;
  return 1 - d;
}

const close = (a: number, b: number) => Math.abs(a - b) <= 1e-4 * Math.max(1, Math.abs(b));

function randVec(rand: () => number, dim = DIM): Float32Array {
  return Float32Array.from({ length: dim }, () => rand() * 2 - 1);
}

function makeRecs(from: number, to: number, rand: () => number, tag = 'v1'): { id: string; vector: Float32Array; payload?: Payload }[] {
  const out: { id: string; vector: Float32Array; payload?: Payload }[] = [];
  for (let i = from; i < to; i++) {
    const vector = randVec(rand);
    // Every 7th record has no payload: it must never match an equality filter.
    out.push(i % 7 === 6 ? { id: `r${i}`, vector } : { id: `r${i}`, vector, payload: { n: i, group: i % 3, tag } });
  }
  return out;
}

type FilterFn = (p: Payload | undefined) => boolean;

/**
 * Searches and checks the answer against the model: nearest first, at most k, no id twice, every
 * hit a live id whose *current* vector is at the reported distance (so an old version can never
 * pass), payload as stored (or absent when not asked for), and the distances equal to the exact
 * top-k over the model (ef is high enough that HNSW over these small segments is exact).
 */
async function checkSearch(
  col: Collection, model: Model, query: Float32Array,
  opts: { k: number; filter?: Payload | FilterFn; includePayload?: boolean; exact?: boolean; label: string },
): Promise<SearchHit[]> {
  const { k, label } = opts;
  const searchOpts = { k, ef: 400, filter: opts.filter, includePayload: opts.includePayload, exact: opts.exact } as SearchOptions;
  const hits = await col.search(query, searchOpts);
  const pred: FilterFn | undefined = typeof opts.filter === 'function'
    ? opts.filter
    : opts.filter
      ? (p) => p !== undefined && Object.entries(opts.filter as Payload).every(([f, v]) => JSON.stringify(p[f]) === JSON.stringify(v))
      : undefined;
  const expected = [...model.live.entries()]
    .filter(([, r]) => !pred || pred(r.payload))
    .map(([id, r]) => ({ id, d: distance(model.metric, query, r.vector) }))
    .sort((a, b) => a.d - b.d)
    .slice(0, k);
  assert.equal(hits.length, expected.length, `${label}: ${hits.length} hits, expected ${expected.length}`);
  const seen = new Set<string>();
  for (let i = 0; i < hits.length; i++) {
    const h = hits[i]!;
    assert.ok(!seen.has(h.id), `${label}: id ${h.id} returned twice`);
    seen.add(h.id);
    const rec = model.live.get(h.id);
    assert.ok(rec, `${label}: hit ${h.id} is not a live record`);
    assert.ok(close(h.distance, distance(model.metric, query, rec.vector)),
      `${label}: hit ${h.id} at ${h.distance}, but its current vector is at ${distance(model.metric, query, rec.vector)} (stale version?)`);
    if (pred) assert.ok(pred(rec.payload), `${label}: hit ${h.id} does not pass the filter`);
    if (opts.includePayload === false) {
      assert.ok(!('payload' in h), `${label}: payload returned although includePayload is false`);
    } else if (rec.payload === undefined) {
      assert.equal(h.payload, undefined, `${label}: ${h.id} has no payload`);
    } else {
      assert.deepEqual(h.payload, rec.payload, `${label}: payload of ${h.id}`);
    }
    if (i > 0) assert.ok(h.distance >= hits[i - 1]!.distance, `${label}: hits not nearest first at ${i}`);
    assert.ok(close(h.distance, expected[i]!.d), `${label}: hit ${i} at ${h.distance}, exact answer has ${expected[i]!.d} (${expected[i]!.id})`);
  }
  return hits;
}

/** count, get of every id ever touched, and searches at live, ghost and random points. */
async function checkAll(col: Collection, model: Model, label: string, seed = 99): Promise<void> {
  assert.equal(col.count(), model.live.size, `${label}: count`);
  const ids = [...model.touched];
  const got = await col.get(ids);
  assert.equal(got.length, ids.length);
  for (let i = 0; i < ids.length; i++) {
    const want = model.live.get(ids[i]!);
    const rec = got[i];
    if (!want) {
      assert.equal(rec, undefined, `${label}: get(${ids[i]}) should be undefined`);
      continue;
    }
    assert.ok(rec, `${label}: get(${ids[i]}) is missing`);
    assert.equal(rec.id, ids[i]);
    assert.ok(rec.vector instanceof Float32Array);
    assert.deepEqual(Array.from(rec.vector), Array.from(want.vector), `${label}: vector of ${ids[i]}`);
    if (want.payload === undefined) assert.ok(!('payload' in rec) || rec.payload === undefined, `${label}: ${ids[i]} has no payload`);
    else assert.deepEqual(rec.payload, want.payload, `${label}: payload of ${ids[i]}`);
  }
  const rand = mulberry32(seed);
  const liveVecs = [...model.live.values()].map((r) => r.vector);
  const queries: Float32Array[] = [
    ...model.ghosts.slice(-15),
    ...Array.from({ length: 5 }, () => liveVecs[Math.floor(rand() * liveVecs.length)]!).filter(Boolean),
    ...Array.from({ length: 5 }, () => randVec(rand)),
  ];
  for (const [i, q] of queries.entries()) {
    await checkSearch(col, model, q, { k: 10, label: `${label} q${i}` });
  }
}

function statsOf(db: Database, name: string) {
  return db.stats().collections[name]!;
}

test('growing segment: upsert replaces, delete removes, re-insert works, absent deletes are no-ops; same after reopen', async () => {
  await withTmpDir('sem-grow', async (dir) => {
    const rand = mulberry32(1);
    const model = new Model();
    let db = await openDb(dir, OPTS);
    let col = await db.createCollection('c', { dimension: DIM });
    await model.upsert(col, makeRecs(0, 120, rand));
    await checkAll(col, model, 'after insert');

    // Replace 30 (new vectors and payloads), delete 20, delete absent ids, re-insert 5 deleted.
    await model.upsert(col, makeRecs(0, 30, rand, 'v2'));
    assert.equal(col.count(), 120, 'replacement leaves count unchanged');
    await model.delete(col, Array.from({ length: 20 }, (_, i) => `r${40 + i}`));
    assert.equal(col.count(), 100);
    await col.delete(['nope', 'r40', 'also-absent']); // r40 is already gone
    model.touched.add('nope');
    assert.equal(col.count(), 100, 'deleting absent ids is a no-op');
    await model.upsert(col, makeRecs(40, 45, rand, 'v3'));
    await checkAll(col, model, 'growing, mutated');
    assert.deepEqual(col.segments(), [], 'nothing sealed yet');
    assert.equal(statsOf(db, 'c').growing.live, model.live.size);

    await db.close();
    db = await openDb(dir, OPTS);
    col = db.collection('c');
    await checkAll(col, model, 'growing, reopened');
    // A replacement of a replayed record, then reopen again.
    await model.upsert(col, makeRecs(1, 2, rand, 'v4'));
    await model.delete(col, ['r2']);
    await db.close();
    db = await openDb(dir, OPTS);
    col = db.collection('c');
    await checkAll(col, model, 'growing, reopened twice');
    await db.close();
  });
});

test('sealed by flush: replacing or deleting a sealed record tombstones it; tombstones survive reopen', async () => {
  await withTmpDir('sem-flush', async (dir) => {
    const rand = mulberry32(2);
    const model = new Model();
    let db = await openDb(dir, OPTS);
    let col = await db.createCollection('c', { dimension: DIM });
    await model.upsert(col, makeRecs(0, 200, rand));
    await col.flush();
    let segs = col.segments();
    assert.equal(segs.length, 1);
    assert.equal(segs[0]!.records, 200);
    assert.equal(segs[0]!.deleted, 0);
    assert.equal(statsOf(db, 'c').growing.rows, 0, 'flush empties the growing segment');
    await checkAll(col, model, 'sealed');

    await model.upsert(col, makeRecs(0, 25, rand, 'v2')); // replaces sealed rows
    await model.delete(col, Array.from({ length: 25 }, (_, i) => `r${100 + i}`));
    await col.delete(['r100', 'ghost-1']); // already deleted / never existed
    model.touched.add('ghost-1');
    await model.upsert(col, makeRecs(100, 105, rand, 'v3')); // re-insert deleted sealed ids
    segs = col.segments();
    assert.equal(segs.length, 1);
    assert.equal(segs[0]!.deleted, 50, '25 replaced + 25 deleted rows are tombstoned');
    assert.equal(segs[0]!.live, 150);
    assert.equal(col.count(), 180);
    await checkAll(col, model, 'sealed + growing, mutated');

    await col.flush();
    assert.equal(col.segments().length, 2);
    assert.deepEqual(col.segments().map((s) => s.records), [200, 30]);
    await checkAll(col, model, 'two sealed');

    await db.close();
    db = await openDb(dir, OPTS);
    col = db.collection('c');
    segs = col.segments();
    assert.deepEqual(segs.map((s) => [s.records, s.deleted, s.live]), [[200, 50, 150], [30, 0, 30]]);
    await checkAll(col, model, 'two sealed, reopened');

    // Mutate sealed rows of a reopened database without flushing: tombstones come from WAL replay.
    await model.upsert(col, makeRecs(150, 160, rand, 'v4'));
    await model.delete(col, ['r0', 'r1', 'r101', 'r199']);
    await db.close();
    db = await openDb(dir, OPTS);
    col = db.collection('c');
    await checkAll(col, model, 'tombstones replayed from the WAL');
    await col.flush();
    await db.close();
    db = await openDb(dir, OPTS);
    col = db.collection('c');
    await checkAll(col, model, 'tombstones committed by a later seal');
    assert.equal(col.segments().reduce((n, s) => n + s.live, 0), model.live.size);
    await db.close();
  });
});

test('sealed by segmentMaxRecords: several segments, replacements and deletes across them, reopen', async () => {
  await withTmpDir('sem-max', async (dir) => {
    const rand = mulberry32(3);
    const model = new Model();
    let db = await openDb(dir, { ...OPTS, segmentMaxRecords: 64 });
    let col = await db.createCollection('c', { dimension: DIM });
    for (let i = 0; i < 320; i += 40) await model.upsert(col, makeRecs(i, i + 40, rand));
    // Rotation happens at batch boundaries once 64 rows are reached: 80-row segments.
    await waitFor(() => col.segments().length >= 3 && statsOf(db, 'c').sealing === 0, 'three automatic seals');
    const segs = col.segments();
    assert.ok(segs.length >= 3, `${segs.length} sealed segments`);
    assert.ok(segs.every((s) => s.records >= 64), `each sealed segment holds >= segmentMaxRecords rows: ${segs.map((s) => s.records)}`);
    await checkAll(col, model, 'auto-sealed');

    // Touch every segment: replace and delete ids spread over all of them.
    const spread = (step: number, off: number) => Array.from({ length: 320 / step }, (_, i) => i * step + off);
    await model.upsert(col, spread(16, 3).map((i) => makeRecs(i, i + 1, rand, 'v2')[0]!));
    await model.delete(col, spread(16, 7).map((i) => `r${i}`));
    await model.upsert(col, spread(32, 7).map((i) => makeRecs(i, i + 1, rand, 'v3')[0]!)); // re-insert half of them
    await checkAll(col, model, 'auto-sealed, mutated');

    await db.close();
    db = await openDb(dir, { ...OPTS, segmentMaxRecords: 64 });
    col = db.collection('c');
    await checkAll(col, model, 'auto-sealed, reopened');
    await db.close();
  });
});

test('frozen while sealing: writes racing a seal are neither lost nor resurrected; searches during the seal stay exact', async (t) => {
  await withTmpDir('sem-frozen', async (dir) => {
    const rand = mulberry32(4);
    const model = new Model();
    const N = 1500;
    let db = await openDb(dir, { ...OPTS, segmentMaxRecords: N });
    let col = await db.createCollection('c', { dimension: DIM });
    const first = makeRecs(0, N, rand);
    const replaced = makeRecs(0, 100, rand, 'v2');
    const deleted = Array.from({ length: 100 }, (_, i) => `r${200 + i}`);
    const reinserted = makeRecs(250, 260, rand, 'v3');
    // Issued without waiting: the first batch fills the segment and starts its rotation, so the
    // rest land while those rows are frozen and being sealed.
    const p1 = col.upsert(first);
    const p2 = col.upsert(replaced);
    const p3 = col.delete(deleted);
    const p4 = col.upsert(reinserted);
    await Promise.all([p1, p2, p3, p4]);
    model.applyUpsert(first);
    model.applyUpsert(replaced);
    model.applyDelete(deleted);
    model.applyUpsert(reinserted);
    t.diagnostic(`sealing in progress after the racing writes: ${statsOf(db, 'c').sealing}`);
    assert.equal(col.count(), N - 90);
    await checkAll(col, model, 'frozen');

    // More writes that hit the frozen rows, then searches on every event-loop turn until the seal
    // is committed: no duplicate ids, no old versions, at any instant.
    await model.upsert(col, makeRecs(500, 520, rand, 'v4'));
    await model.delete(col, ['r600', 'r601']);
    const qs = [...model.ghosts.slice(-10), randVec(rand)];
    let rounds = 0;
    while ((statsOf(db, 'c').sealing > 0 || rounds < 5) && rounds < 2000) {
      await new Promise((r) => setImmediate(r));
      await checkSearch(col, model, qs[rounds % qs.length]!, { k: 10, label: `during seal, round ${rounds}` });
      rounds++;
    }
    t.diagnostic(`${rounds} searches ran while the seal was in progress`);
    await waitFor(() => statsOf(db, 'c').sealing === 0, 'the seal');
    const segs = col.segments();
    assert.equal(segs.length, 1);
    // The seal snapshots the frozen rows when it starts; rows that died after that are written and
    // tombstoned. Either way exactly the first batch's survivors are live in the segment.
    const survivors = [...model.live.keys()].filter((id) => Number(id.slice(1)) < N && !replaced.some((r) => r.id === id)
      && !reinserted.some((r) => r.id === id) && !(Number(id.slice(1)) >= 500 && Number(id.slice(1)) < 520)).length;
    assert.equal(segs[0]!.live, survivors, 'live rows of the sealed segment');
    assert.equal(segs[0]!.live, segs[0]!.records - segs[0]!.deleted);
    assert.ok(segs[0]!.records <= N && segs[0]!.records >= survivors);
    await checkAll(col, model, 'after the seal');
    await col.flush();
    await checkAll(col, model, 'after flush');
    await db.close();
    db = await openDb(dir, { ...OPTS, segmentMaxRecords: N });
    col = db.collection('c');
    await checkAll(col, model, 'frozen writes, reopened');
    await db.close();
  });
});

test('close + reopen with a frozen range still unsealed keeps every acknowledged write', async () => {
  await withTmpDir('sem-close-frozen', async (dir) => {
    const rand = mulberry32(5);
    const model = new Model();
    let db = await openDb(dir, { ...OPTS, segmentMaxRecords: 300 });
    let col = await db.createCollection('c', { dimension: DIM });
    const a = makeRecs(0, 300, rand);
    const b = makeRecs(0, 50, rand, 'v2');
    const pa = col.upsert(a);
    const pb = col.upsert(b);
    const pc = col.delete(['r60', 'r61']);
    await Promise.all([pa, pb, pc]);
    model.applyUpsert(a);
    model.applyUpsert(b);
    model.applyDelete(['r60', 'r61']);
    await db.close(); // waits for the seal
    db = await openDb(dir, { ...OPTS, segmentMaxRecords: 300 });
    col = db.collection('c');
    await checkAll(col, model, 'reopened after a racing seal');
    await db.close();
  });
});

for (const [mode, opts] of [['HNSW', OPTS], ['warm scan', { ...OPTS, warmScanMaxRecords: 1_000_000 }]] as const) test(`search (${mode}): nearest first, k respected, object and predicate filters, includePayload false, across growing and sealed`, async () => {
  await withTmpDir('sem-search', async (dir) => {
    const rand = mulberry32(6);
    const model = new Model();
    const db = await openDb(dir, opts);
    const col = await db.createCollection('c', { dimension: DIM });
    await model.upsert(col, makeRecs(0, 150, rand));
    await col.flush();
    await model.upsert(col, makeRecs(150, 300, rand));
    await col.flush();
    await model.upsert(col, makeRecs(300, 420, rand)); // growing
    await model.upsert(col, makeRecs(10, 20, rand, 'v2')); // replacements of sealed rows
    await model.delete(col, ['r160', 'r161', 'r310']);
    assert.equal(col.segments().length, 2);

    const queries = Array.from({ length: 8 }, () => randVec(rand));
    for (const [qi, q] of queries.entries()) {
      for (const k of [1, 3, 10, 50]) await checkSearch(col, model, q, { k, label: `q${qi} k=${k}` });
      const g1 = await checkSearch(col, model, q, { k: 10, filter: { group: 1 }, label: `q${qi} {group:1}` });
      assert.equal(g1.length, 10);
      assert.ok(g1.every((h) => (h.payload as Payload).group === 1));
      await checkSearch(col, model, q, { k: 10, filter: { group: 2, tag: 'v2' }, label: `q${qi} {group:2,tag:v2}` });
      await checkSearch(col, model, q, { k: 5, filter: { tag: 'nothing-has-this' }, label: `q${qi} no match` });
      const pred = (p: Payload | undefined) => p === undefined || (p['n'] as number) % 10 === 3;
      await checkSearch(col, model, q, { k: 10, filter: pred, label: `q${qi} predicate` });
      await checkSearch(col, model, q, { k: 10, exact: true, label: `q${qi} exact` });
      await checkSearch(col, model, q, { k: 10, exact: true, filter: { group: 0 }, label: `q${qi} exact {group:0}` });
      const bare = await checkSearch(col, model, q, { k: 10, includePayload: false, label: `q${qi} includePayload false` });
      assert.ok(bare.every((h) => Object.keys(h).sort().join() === 'distance,id'), 'hits are just { id, distance }');
    }
    // Filters must see payload-less records as non-matching, and predicates must see undefined.
    const none = await col.search(queries[0]!, { k: 500, filter: (p) => p === undefined });
    assert.equal(none.length, [...model.live.values()].filter((r) => r.payload === undefined).length);
    // k larger than the collection returns everything live.
    const all = await col.search(queries[1]!, { k: 1000, ef: 1000 });
    assert.equal(all.length, model.live.size);
    assert.deepEqual(new Set(all.map((h) => h.id)), new Set(model.live.keys()));
    await db.close();
  });
});

for (const metric of ['cosine', 'ip'] as const) {
  test(`${metric}: distances are 1 - dot${metric === 'cosine' ? ' of normalized vectors; stored vectors come back normalized' : ' of the vectors as given'}`, async () => {
    await withTmpDir(`sem-${metric}`, async (dir) => {
      const rand = mulberry32(metric === 'cosine' ? 7 : 8);
      const model = new Model(metric);
      let db = await openDb(dir, OPTS);
      let col = await db.createCollection('m', { dimension: DIM, metric });
      assert.equal(col.metric, metric);
      // Scaled vectors: cosine must not care, ip must.
      const scaled = (from: number, to: number) => makeRecs(from, to, rand).map((r, i) => ({ ...r, vector: r.vector.map((x) => x * (0.5 + (i % 5))) }));
      await model.upsert(col, scaled(0, 150));
      await col.flush();
      await model.upsert(col, scaled(150, 250));
      await model.upsert(col, scaled(0, 10)); // replace sealed rows
      const [got] = await col.get(['r200']);
      if (metric === 'cosine') {
        const n = Math.hypot(...got!.vector);
        assert.ok(Math.abs(n - 1) < 1e-5, `stored cosine vector has norm ${n}`);
      }
      for (let i = 0; i < 6; i++) {
        const q = randVec(rand).map((x) => x * 3);
        const hits = await checkSearch(col, model, q, { k: 10, label: `${metric} q${i}` });
        for (const h of hits) {
          const v = model.live.get(h.id)!.vector;
          const a = metric === 'cosine' ? normalized(q) : q;
          let dot = 0;
          for (let j = 0; j < DIM; j++) dot += a[j]! * v[j]!;
          assert.ok(close(h.distance, 1 - dot), `${metric}: ${h.distance} vs 1 - dot = ${1 - dot}`);
          if (metric === 'cosine') assert.ok(h.distance >= -1e-5 && h.distance <= 2 + 1e-5);
        }
      }
      // A record's own direction is at cosine distance 0 whatever its length.
      if (metric === 'cosine') {
        const [r] = await col.get(['r3']);
        const hits = await col.search(r!.vector.map((x) => x * 42), { k: 1 });
        assert.equal(hits[0]!.id, 'r3');
        assert.ok(Math.abs(hits[0]!.distance) < 1e-5);
      }
      await checkAll(col, model, metric);
      await db.close();
      db = await openDb(dir, OPTS);
      col = db.collection('m');
      assert.equal(col.metric, metric);
      await checkAll(col, model, `${metric} reopened`);
      await db.close();
    });
  });
}

test('collections: list, exists, drop (old handles fail, name reusable, empty), survives reopen', async () => {
  await withTmpDir('sem-cols', async (dir) => {
    const rand = mulberry32(9);
    let db = await openDb(dir, OPTS);
    assert.deepEqual(db.listCollections(), []);
    const b = await db.createCollection('b', { dimension: DIM });
    const a = await db.createCollection('a-1', { dimension: 4, metric: 'ip' });
    assert.deepEqual(db.listCollections(), ['a-1', 'b']);
    assert.equal(db.collection('b'), b, 'collection() hands back the same handle');
    await assert.rejects(db.createCollection('b', { dimension: DIM }), hasCode('ERR_COLLECTION_EXISTS'));
    await assert.rejects(db.createCollection('b', { dimension: 3, metric: 'cosine' }), hasCode('ERR_COLLECTION_EXISTS'));
    await b.upsert(makeRecs(0, 50, rand));
    await b.flush();
    await b.upsert(makeRecs(50, 60, rand));
    await a.upsert([{ id: 'x', vector: [1, 2, 3, 4] }]);

    await db.dropCollection('b');
    assert.deepEqual(db.listCollections(), ['a-1']);
    for (const call of [
      () => b.count(), () => b.segments(),
    ]) assert.throws(call, hasCode('ERR_COLLECTION_NOT_FOUND'));
    for (const call of [
      () => b.upsert(makeRecs(0, 1, rand)), () => b.delete(['r1']), () => b.get(['r1']),
      () => b.search(randVec(rand), { k: 1 }), () => b.flush(),
    ]) await assert.rejects(call(), hasCode('ERR_COLLECTION_NOT_FOUND'));
    assert.throws(() => db.collection('b'), hasCode('ERR_COLLECTION_NOT_FOUND'));
    await assert.rejects(db.dropCollection('b'), hasCode('ERR_COLLECTION_NOT_FOUND'));
    assert.equal(a.count(), 1, 'other collections are untouched');

    const b2 = await db.createCollection('b', { dimension: 3, metric: 'cosine' });
    assert.notEqual(b2, b);
    assert.equal(b2.count(), 0);
    assert.equal(b2.dimension, 3);
    assert.deepEqual(b2.segments(), []);
    assert.deepEqual(await b2.get(['r1', 'r55']), [undefined, undefined]);
    assert.deepEqual(await b2.search([1, 0, 0], { k: 5 }), []);
    assert.throws(() => b.count(), hasCode('ERR_COLLECTION_NOT_FOUND'), 'a handle of the dropped collection stays dead');
    await b2.upsert([{ id: 'y', vector: [0, 1, 0] }]);

    await db.close();
    db = await openDb(dir, OPTS);
    assert.deepEqual(db.listCollections(), ['a-1', 'b']);
    const b3 = db.collection('b');
    assert.equal(b3.count(), 1);
    assert.equal(b3.dimension, 3);
    assert.equal(b3.metric, 'cosine');
    assert.deepEqual(await b3.get(['r1']), [undefined], 'nothing of the dropped collection came back');
    await assert.rejects(db.createCollection('a-1', { dimension: 4 }), hasCode('ERR_COLLECTION_EXISTS'));
    await db.dropCollection('a-1');
    await db.dropCollection('b');
    assert.deepEqual(db.listCollections(), []);
    await db.close();
    db = await openDb(dir, OPTS);
    assert.deepEqual(db.listCollections(), []);
    await db.close();
  });
});

test('segments(): ids, seq, records, deleted, live, bytes, tier and status are consistent', async () => {
  await withTmpDir('sem-segs', async (dir) => {
    const rand = mulberry32(10);
    let db = await openDb(dir, OPTS);
    let col = await db.createCollection('s', { dimension: DIM });
    await col.upsert(makeRecs(0, 100, rand));
    await col.flush();
    await col.upsert(makeRecs(100, 160, rand));
    await col.flush();
    await col.delete(['r1', 'r2', 'r3', 'r150']);
    await col.upsert(makeRecs(4, 6, rand, 'v2'));
    await col.flush(); // growing holds 2 rows -> third segment
    const check = (label: string) => {
      const segs = col.segments();
      assert.equal(segs.length, 3, label);
      const seqs = segs.map((s) => s.seq);
      assert.deepEqual(seqs, [...seqs].sort((x, y) => x - y), `${label}: ordered by seq`);
      assert.equal(new Set(segs.map((s) => s.id)).size, 3, `${label}: unique ids`);
      for (const s of segs) {
        assert.equal(s.collection, 's');
        assert.ok(s.id.length > 0);
        assert.ok(['hot', 'warm'].includes(s.tier), `${label}: tier ${s.tier}`);
        assert.equal(s.live, s.records - s.deleted, `${label}: live = records - deleted`);
        assert.ok(s.bytes > s.records * DIM * 4, `${label}: ${s.bytes} bytes holds ${s.records} vectors`);
        assert.equal(s.status, 'ok');
        assert.ok(!s.pinned, `${label}: not pinned`);
        assert.ok(Number.isFinite(s.createdAt) && s.createdAt > 0);
      }
      assert.deepEqual(segs.map((s) => [s.records, s.deleted, s.live]), [[100, 5, 95], [60, 1, 59], [2, 0, 2]], label);
      assert.equal(segs.reduce((n, s) => n + s.live, 0), col.count());
    };
    check('before search');
    await col.search(randVec(rand), { k: 3 });
    check('after search');
    await db.close();
    db = await openDb(dir, OPTS);
    col = db.collection('s');
    check('reopened');
    await db.close();
  });
});
