// Database lifecycle: the status states, idempotent close (sequential and concurrent), disposal
// with `await using`, close draining in-flight writes and seals, and inline (workers: 0) execution
// answering exactly like the worker pool.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Database, type Collection, type DatabaseOptions, type SearchHit } from '../engine/index.js';
import { clusteredDataset } from '../harness/datasets.js';
import { hasCode, track, waitFor, withTmpDir } from './helpers/tmp.js';

const openDb = (dir: string, options?: DatabaseOptions): Promise<Database> => Database.open(dir, options).then(track);

const DIM = 8;

function recs(from: number, to: number, tag = 'v1') {
  const out = [];
  for (let i = from; i < to; i++) {
    out.push({ id: `r${i}`, vector: Float32Array.from({ length: DIM }, (_, j) => Math.sin(i * 7.1 + j * 1.3)), payload: { i, tag } });
  }
  return out;
}

test('status: open after Database.open, closing as soon as close() is called, closed when it resolves', async () => {
  await withTmpDir('life-status', async (dir) => {
    const db = await openDb(dir, { workers: 1 });
    // 'opening' is internal: Database.open hands out the instance only once it is open.
    assert.equal(db.status, 'open');
    const col = await db.createCollection('c', { dimension: DIM });
    await col.upsert(recs(0, 10));
    const seen: string[] = [db.status];
    const closing = db.close();
    seen.push(db.status);
    // While closing, new work is refused.
    assert.throws(() => db.listCollections(), hasCode('ERR_DATABASE_CLOSED'));
    await assert.rejects(col.upsert(recs(10, 11)), hasCode('ERR_DATABASE_CLOSED'));
    await closing;
    seen.push(db.status);
    assert.deepEqual(seen, ['open', 'closing', 'closed']);
    assert.throws(() => db.stats(), hasCode('ERR_DATABASE_CLOSED'));
  });
});

test('close is idempotent when called again after it resolved', async () => {
  await withTmpDir('life-close-seq', async (dir) => {
    const db = await openDb(dir, { workers: 1 });
    await db.createCollection('c', { dimension: DIM });
    await db.close();
    await db.close();
    await db.close();
    assert.equal(db.status, 'closed');
    const db2 = await openDb(dir, { workers: 1 });
    assert.deepEqual(db2.listCollections(), ['c']);
    await db2.close();
  });
});

test('concurrent close() calls all resolve only once the database is closed and the lock released', async () => {
  await withTmpDir('life-close-conc', async (dir) => {
    const db = await openDb(dir, { workers: 1 });
    const col = await db.createCollection('c', { dimension: DIM });
    await col.upsert(recs(0, 200));
    const first = db.close();
    const second = db.close();
    await second;
    assert.equal(db.status, 'closed', 'the second close() resolved while the first was still closing');
    // Whoever awaited either close() may reopen the directory straight away.
    const db2 = await openDb(dir, { workers: 1 });
    await first;
    assert.equal(db2.collection('c').count(), 200);
    await db2.close();
  });
});

test('await using closes the database at the end of the block, also when the block throws', async () => {
  await withTmpDir('life-using', async (dir) => {
    let outer: Database | undefined;
    {
      await using db = await Database.open(dir, { workers: 1 });
      outer = db;
      const col = await db.createCollection('c', { dimension: DIM });
      await col.upsert(recs(0, 20));
      assert.equal(db.status, 'open');
    }
    assert.equal(outer.status, 'closed');
    // The lock is released: the directory opens again, with the data.
    {
      await using db = await Database.open(dir, { workers: 1 });
      assert.equal(db.collection('c').count(), 20);
    }
    await assert.rejects(async () => {
      await using db = await Database.open(dir, { workers: 1 });
      outer = db;
      await db.collection('c').upsert(recs(20, 25));
      throw new Error('boom');
    }, /boom/);
    assert.equal(outer.status, 'closed');
    {
      await using db = await Database.open(dir, { workers: 1 });
      assert.equal(db.collection('c').count(), 25);
    }
  });
});

test('close waits for in-flight upserts and deletes: they resolve and are durable', async () => {
  await withTmpDir('life-inflight', async (dir) => {
    let db = await openDb(dir, { workers: 1 });
    const col = await db.createCollection('c', { dimension: DIM });
    await col.upsert(recs(0, 100));
    const pending = [col.upsert(recs(100, 2100)), col.upsert(recs(0, 10, 'v2')), col.delete(['r50', 'r51'])];
    const closed = db.close();
    const outcomes = await Promise.allSettled(pending);
    await closed;
    for (const [i, o] of outcomes.entries()) assert.equal(o.status, 'fulfilled', `write ${i} issued before close: ${o.status === 'rejected' ? String(o.reason) : ''}`);
    db = await openDb(dir, { workers: 1 });
    const c = db.collection('c');
    assert.equal(c.count(), 2098);
    const got = await c.get(['r0', 'r50', 'r2099']);
    assert.deepEqual(got[0]!.payload, { i: 0, tag: 'v2' });
    assert.equal(got[1], undefined);
    assert.ok(got[2]);
    await db.close();
  });
});

test('close waits for a seal started by segmentMaxRecords and for a flush in progress', async () => {
  await withTmpDir('life-seal', async (dir) => {
    let db = await openDb(dir, { workers: 1, segmentMaxRecords: 1000 });
    const col = await db.createCollection('c', { dimension: DIM });
    const write = col.upsert(recs(0, 1000)); // reaches segmentMaxRecords: a seal starts
    await write;
    await col.upsert(recs(1000, 1300));
    const flushing = col.flush();
    await db.close();
    await flushing;
    db = await openDb(dir, { workers: 1, segmentMaxRecords: 1000 });
    const c = db.collection('c');
    assert.deepEqual(c.segments().map((s) => s.records), [1000, 300], 'both seals were committed before close returned');
    assert.equal(db.stats().collections['c']!.growing.rows, 0);
    assert.equal(c.count(), 1300);
    await db.close();
  });
});

async function buildFor(dir: string, workers: number): Promise<{ db: Database; col: Collection }> {
  const db = await openDb(dir, { workers, segmentMaxRecords: 300, warmScanMaxRecords: 0 });
  assert.equal(db.stats().workers.threads, workers);
  const col = await db.createCollection('w', { dimension: 32, hnsw: { efConstruction: 64 } });
  const data = clusteredDataset({ count: 1000, dim: 32, seed: 5 });
  for (let s = 0; s < 1000; s += 100) {
    const batch = [];
    for (let r = s; r < s + 100; r++) batch.push({ id: `p${r}`, vector: data.subarray(r * 32, (r + 1) * 32), payload: { r, odd: r % 2 === 1 } });
    await col.upsert(batch);
  }
  await waitFor(() => col.segments().length === 3 && db.stats().collections['w']!.sealing === 0, `three seals with workers: ${workers}`);
  await col.delete(['p3', 'p600', 'p950']);
  return { db, col };
}

test('workers: 0 (inline) gives the same segments and the same search results as a worker pool', async () => {
  await withTmpDir('life-inline', async (dirA) => {
    await withTmpDir('life-pool', async (dirB) => {
      const inline = await buildFor(dirA, 0);
      const pooled = await buildFor(dirB, 2);
      const shape = (c: Collection) => c.segments().map((s) => [s.records, s.deleted, s.bytes]);
      assert.deepEqual(shape(inline.col), shape(pooled.col));
      assert.equal(inline.col.count(), pooled.col.count());
      const queries = clusteredDataset({ count: 30, dim: 32, seed: 6 });
      const strip = (hits: SearchHit[]) => hits.map((h) => [h.id, Math.fround(h.distance)]);
      for (let q = 0; q < 30; q++) {
        const v = queries.subarray(q * 32, (q + 1) * 32);
        for (const opts of [{ k: 10 }, { k: 25, ef: 30 }, { k: 10, filter: { odd: true } }]) {
          const a = await inline.col.search(v, opts);
          const b = await pooled.col.search(v, opts);
          assert.equal(a.length, opts.k);
          assert.deepEqual(strip(a), strip(b), `query ${q} ${JSON.stringify(opts)}`);
        }
      }
      await inline.db.close();
      await pooled.db.close();
    });
  });
});
