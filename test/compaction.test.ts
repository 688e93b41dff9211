// Compaction: the planner's rules (pure), and the engine's rewrite through the public API:
// segment count and deleted ratio go down, every search and get answers exactly as before, writes
// that land while a compaction runs (deletes, overwrites of rows being merged) survive it and a
// reopen, and a segment whose rows are all deleted simply goes.

import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Database, type DatabaseOptions, type Collection } from '../engine/index.js';
import { planCompaction, type CompactionCandidate } from '../gc/compaction.js';
import { mulberry32 } from '../harness/datasets.js';
import { track, withTmpDir } from './helpers/tmp.js';

const DIM = 12;
const QUIET = { tiering: { intervalMs: 0 }, maintenance: { gcIntervalMs: 0, scrubIntervalMs: 0, compactIntervalMs: 0 } } as const;
const openDb = (dir: string, o: DatabaseOptions = {}) => Database.open(dir, { workers: 2, segmentMaxRecords: 400, ...QUIET, ...o }).then(track);

describe('planCompaction', () => {
  const seg = (seq: number, records: number, live: number, extra: Partial<CompactionCandidate> = {}): CompactionCandidate => ({
    id: `c.${seq}`, seq, records, live, tier: 'warm', pinned: false, available: true, ...extra,
  });

  test('small segments are packed in seq order up to the target', () => {
    const groups = planCompaction([seg(3, 100, 100), seg(1, 150, 150), seg(2, 120, 120), seg(4, 160, 160), seg(5, 900, 900)], { targetRecords: 400 });
    assert.deepEqual(groups.map((g) => g.sources), [['c.1', 'c.2', 'c.3'], ['c.4']].filter((g) => g.length > 1));
    assert.equal(groups[0]!.live, 370);
    assert.equal(groups[0]!.reason, 'merge-small');
  });

  test('a lone segment is rewritten only for its tombstones', () => {
    assert.deepEqual(planCompaction([seg(1, 1000, 100)], { targetRecords: 400 }).map((g) => [g.sources, g.reason]), [[['c.1'], 'drop-deleted']]);
    assert.deepEqual(planCompaction([seg(1, 100, 100)], { targetRecords: 400 }), []);
    assert.deepEqual(planCompaction([seg(1, 1000, 900)], { targetRecords: 400 }), [], '10% deleted is under the 20% default');
    assert.equal(planCompaction([seg(1, 1000, 900)], { targetRecords: 400, deletedRatio: 0.1 }).length, 1);
  });

  test('pinned, cold and unavailable segments are left alone', () => {
    const segs = [seg(1, 50, 50, { pinned: true }), seg(2, 50, 50, { tier: 'cold' }), seg(3, 50, 50, { available: false }), seg(4, 50, 50)];
    assert.deepEqual(planCompaction(segs, { targetRecords: 400 }), []);
    assert.deepEqual(planCompaction(segs, { targetRecords: 400, includeCold: true }).map((g) => g.sources), [['c.2', 'c.4']]);
  });
});

type Rec = { vector: Float32Array; payload: { n: number; tag: string } };

async function fill(col: Collection, model: Map<string, Rec>, rand: () => number, batches: number, rows: number): Promise<void> {
  for (let b = 0; b < batches; b++) {
    const recs = Array.from({ length: rows }, (_, i) => {
      const id = `r${model.size + i}`;
      return { id, vector: Float32Array.from({ length: DIM }, () => rand() * 2 - 1), payload: { n: model.size + i, tag: `b${b}` } };
    });
    await col.upsert(recs);
    for (const r of recs) model.set(r.id, { vector: r.vector, payload: r.payload });
    await col.flush(); // one small segment per batch
  }
}

/** Exact answers for the queries, plus every record by get(): the state compaction must keep. */
async function snapshot(col: Collection, queries: Float32Array[], ids: string[]) {
  const hits = [];
  for (const q of queries) hits.push(await col.search(q, { k: 10, exact: true, includePayload: true }));
  return { hits, records: await col.get(ids) };
}

function checkAgainstModel(records: Awaited<ReturnType<Collection['get']>>, ids: string[], model: Map<string, Rec>): void {
  records.forEach((r, i) => {
    const want = model.get(ids[i]!);
    if (!want) return assert.equal(r, undefined, `${ids[i]} was deleted`);
    assert.ok(r, `${ids[i]} is missing`);
    assert.deepEqual(r.vector, want.vector, `${ids[i]} vector`);
    assert.deepEqual(r.payload, want.payload, `${ids[i]} payload`);
  });
}

const deletedRatio = (col: Collection) => {
  const segs = col.segments();
  return segs.reduce((n, s) => n + s.deleted, 0) / segs.reduce((n, s) => n + s.records, 0);
};

describe('compaction through the engine', () => {
  test('fewer segments, no tombstones, identical answers, before and after reopen', async () => {
    await withTmpDir('compact', async (dir) => {
      const rand = mulberry32(7);
      const model = new Map<string, Rec>();
      let db = await openDb(dir);
      let col = await db.createCollection('docs', { dimension: DIM });
      await fill(col, model, rand, 6, 120);
      const gone = [...model.keys()].filter((_, i) => i % 3 === 0);
      await col.delete(gone);
      for (const id of gone) model.delete(id);
      const ids = [...model.keys(), ...gone];
      const queries = Array.from({ length: 20 }, () => Float32Array.from({ length: DIM }, () => rand() * 2 - 1));
      const before = await snapshot(col, queries, ids);
      checkAgainstModel(before.records, ids, model);
      assert.equal(col.segments().length, 6);
      assert.ok(deletedRatio(col) > 0.3);

      const report = await db.compact();
      assert.equal(report.results.length, report.plans[0]!.groups.length);
      assert.ok(report.results.length >= 1);
      const after = col.segments();
      assert.ok(after.length <= 2, `6 small segments of 80 live rows pack into <= 2 of 400, got ${after.length}`);
      assert.equal(deletedRatio(col), 0);
      assert.equal(after.reduce((n, s) => n + s.live, 0), model.size);
      assert.equal(report.results.reduce((n, r) => n + r.droppedRows, 0), gone.length);
      assert.deepEqual(await snapshot(col, queries, ids), before);
      // HNSW answers over the merged segments still find each stored vector itself.
      for (const [id, rec] of [...model].slice(0, 50)) assert.equal((await col.search(rec.vector, { k: 1 }))[0]?.id, id);

      await db.close();
      db = await openDb(dir);
      col = db.collection('docs');
      assert.equal(col.segments().length, after.length);
      assert.deepEqual(await snapshot(col, queries, ids), before);
      const v = await db.verify();
      assert.equal(v.summary.ok, after.length, JSON.stringify(v.segments));
      await db.close();
    });
  });

  test('deletes and overwrites that land while a compaction runs survive it and a reopen', async () => {
    await withTmpDir('compact-race', async (dir) => {
      const rand = mulberry32(11);
      const model = new Map<string, Rec>();
      let db = await openDb(dir);
      let col = await db.createCollection('docs', { dimension: DIM });
      await fill(col, model, rand, 4, 150);
      const ids = [...model.keys()];
      let done = false;
      const compaction = db.compact({ smallFraction: 1 }).finally(() => {
        done = true;
      });
      let during = 0;
      for (let i = 0; i < ids.length && !done; i += 7) {
        const id = ids[i]!;
        if (i % 2 === 0) {
          await col.delete([id]);
          model.delete(id);
        } else {
          const rec = { vector: Float32Array.from({ length: DIM }, () => rand()), payload: { n: -i, tag: 'rewritten' } };
          await col.upsert([{ id, ...rec }]);
          model.set(id, rec);
        }
        if (!done) during++;
      }
      const report = await compaction;
      assert.ok(report.results.length > 0);
      assert.ok(during > 0, 'some writes landed while the compaction ran');
      checkAgainstModel(await col.get(ids), ids, model);
      assert.equal(col.count(), model.size);
      await col.flush();
      await db.close();
      db = await openDb(dir);
      col = db.collection('docs');
      checkAgainstModel(await col.get(ids), ids, model);
      assert.equal(col.count(), model.size);
      // No id is live twice: an exact search at each rewritten vector finds it once.
      for (const [id, rec] of model) {
        if (rec.payload.tag !== 'rewritten') continue;
        const hits = await col.search(rec.vector, { k: 5, exact: true });
        assert.equal(hits.filter((h) => h.id === id).length, 1, id);
      }
      await db.close();
    });
  });

  test('a segment whose rows are all deleted goes without a replacement; inline pool works the same', async () => {
    await withTmpDir('compact-empty', async (dir) => {
      const rand = mulberry32(3);
      const model = new Map<string, Rec>();
      const db = await openDb(dir, { workers: 0 });
      const col = await db.createCollection('docs', { dimension: DIM });
      await fill(col, model, rand, 2, 100);
      const first = [...model.keys()].slice(0, 100);
      await col.delete(first);
      for (const id of first) model.delete(id);
      const seg = col.segments()[0]!;
      assert.equal(seg.live, 0);
      const report = await db.compact({ smallFraction: 0 });
      assert.deepEqual(report.results.map((r) => [r.sources, r.segmentId, r.records]), [[[seg.id], undefined, 0]]);
      assert.equal(col.segments().length, 1);
      checkAgainstModel(await col.get([...model.keys(), ...first]), [...model.keys(), ...first], model);
      const gc = await db.gc({ dryRun: true });
      assert.ok(gc.entries.some((e) => e.reason === 'replaced-segment' && e.location.endsWith('00000001.seg')), 'the dropped segment is garbage');
      await db.close();
    });
  });

  test('a dry run plans and changes nothing; cold segments are not compacted', async () => {
    await withTmpDir('compact-dry', async (dir) => {
      const rand = mulberry32(5);
      const model = new Map<string, Rec>();
      const db = await openDb(dir);
      const col = await db.createCollection('docs', { dimension: DIM });
      await fill(col, model, rand, 3, 50);
      await db.flushUploads();
      const segs = col.segments();
      await db.migrate(segs[0]!.id, 'cold');
      const plan = await db.compact({ dryRun: true });
      assert.deepEqual(plan.plans[0]!.groups.map((g) => g.sources), [[segs[1]!.id, segs[2]!.id]]);
      assert.equal(plan.results.length, 0);
      assert.deepEqual(col.segments().map((s) => s.id), segs.map((s) => s.id));
      await db.compact();
      assert.equal(col.segments().length, 2);
      assert.equal(col.segments()[0]!.id, segs[0]!.id, 'the cold segment stayed');
      const ids = [...model.keys()];
      checkAgainstModel(await col.get(ids), ids, model);
      await db.close();
    });
  });
});
