// The bucket is enough to restore (README "Scale past one machine"):
//  - a database written on one directory, opened from an empty directory with only the object
//    store: the same collections, every segment cold until used, identical search and get results
//    (deletes included); the requests that open made are counted (diagnostic, not asserted);
//  - the bucket unreachable during that open: a clear coded error, and the next open succeeds;
//  - maxUnsealedMs: rows written and never flushed reach the bucket by themselves (decided by
//    state: the segment count, never by elapsed time);
//  - a corrupt or foreign remote manifest is skipped (recorded in stats), never adopted, and a
//    dropped collection does not come back from the bucket;
//  - offline: an open that cannot reach the store fails, unless `offline`, which reads locally
//    and refuses every write until a reopen claims the prefix.
// s3rver and Ceph RGW on loopback; real files and mmap.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Database, type DatabaseOptions } from '../engine/index.js';
import { clusteredDataset } from '../harness/datasets.js';
import { startFaultProxy, startS3rver, S3RVER_CREDENTIALS } from '../harness/s3rver.js';
import { s3ServerKinds, type S3TestServer } from '../harness/s3-servers.js';
import { openObjectStore } from '../tiers/open-object-store.js';
import { hasCode, track, waitFor, withTmpDir } from './helpers/tmp.js';

const KINDS = s3ServerKinds();
const DIM = 16;
const PER_SEG = 600;
const COUNT = 3 * PER_SEG;
const NQ = 10;
const SEED = 4242;
const rows = clusteredDataset({ count: COUNT + NQ, dim: DIM, seed: SEED });
const vec = (r: number) => rows.subarray(r * DIM, (r + 1) * DIM);
const QUIET: DatabaseOptions = { workers: 2, segmentMaxRecords: PER_SEG, tiering: { intervalMs: 0 }, maintenance: { gcIntervalMs: 0, scrubIntervalMs: 0, compactIntervalMs: 0 } };

function s3(server: S3TestServer, prefix: string, endpoint = server.endpoint): DatabaseOptions['objectStore'] {
  return { url: `s3://${server.bucket}/${prefix}`, endpoint, credentials: { ...server.credentials }, forcePathStyle: true };
}

/** Writes 3 sealed segments (payload { i, even }), deletes every 7th row, and closes. */
async function writeAndClose(dir: string, objectStore: DatabaseOptions['objectStore']) {
  const db = track(await Database.open(dir, { ...QUIET, objectStore }));
  const col = await db.createCollection('docs', { dimension: DIM, metric: 'l2' });
  await db.createCollection('empty', { dimension: 4 });
  for (let s = 0; s < 3; s++) {
    await col.upsert(Array.from({ length: PER_SEG }, (_, k) => {
      const i = s * PER_SEG + k;
      return { id: `id-${i}`, vector: vec(i), payload: { i, even: i % 2 === 0 } };
    }));
  }
  await col.flush();
  await col.delete(Array.from({ length: COUNT }, (_, i) => `id-${i}`).filter((_, i) => i % 7 === 0));
  await col.flush(); // the tombstones go into a manifest version
  await db.flushUploads();
  const results = [];
  for (let q = 0; q < NQ; q++) {
    results.push(await col.search(vec(COUNT + q), { k: 10 }));
    results.push(await col.search(vec(COUNT + q), { k: 5, filter: { even: true } }));
  }
  const probe = ['id-0', 'id-1', 'id-700', 'id-1799', 'id-7'];
  const got = await col.get(probe);
  await db.close();
  return { results, probe, got };
}

for (const kind of KINDS) {
  test(`[${kind.label}] an empty directory restores from the bucket alone: cold segments, identical results`, { skip: kind.skip }, async (t) => {
    const server = await kind.start();
    const proxy = await startFaultProxy(server.endpoint);
    try {
      await withTmpDir('bucket-restore', async (dir) => {
        const prefix = `rs-${randomBytes(3).toString('hex')}`;
        const before = await writeAndClose(path.join(dir, 'origin'), s3(server, prefix));

        const n0 = proxy.requests.length;
        const t0 = performance.now();
        const db = track(await Database.open(path.join(dir, 'restored'), { ...QUIET, objectStore: s3(server, prefix, proxy.endpoint) }));
        const openMs = performance.now() - t0;
        const openRequests = proxy.requests.slice(n0);
        assert.deepEqual(db.listCollections(), ['docs', 'empty']);
        const col = db.collection('docs');
        assert.ok(col.segments().length >= 3);
        assert.deepEqual([...new Set(col.segments().map((s) => s.tier))], ['cold'], 'restored segments start cold');
        assert.equal(col.count(), COUNT - Math.ceil(COUNT / 7));

        const n1 = proxy.requests.length;
        const t1 = performance.now();
        const results = [];
        for (let q = 0; q < NQ; q++) {
          results.push(await col.search(vec(COUNT + q), { k: 10 }));
          results.push(await col.search(vec(COUNT + q), { k: 5, filter: { even: true } }));
        }
        const firstSearchesMs = performance.now() - t1;
        assert.deepEqual(results, before.results, `seed ${SEED}: restored search results differ`);
        assert.deepEqual(await col.get(before.probe), before.got, `seed ${SEED}: restored get differs`);
        const byMethod = (reqs: typeof openRequests) => Object.entries(reqs.reduce<Record<string, number>>((m, r) => {
          const k = r.method + (r.url.includes('list-type') ? ' LIST' : '');
          m[k] = (m[k] ?? 0) + 1;
          return m;
        }, {})).map(([k, v]) => `${k} ${v}`).join(', ');
        t.diagnostic(`restore open: ${openMs.toFixed(0)} ms, ${openRequests.length} requests (${byMethod(openRequests)}) for ${col.segments().length} segments; ` +
          `first ${2 * NQ} searches (rehydrating): ${firstSearchesMs.toFixed(0)} ms, ${proxy.requests.length - n1} requests`);

        // The restored database is the writer now, and its commits reach the bucket.
        await col.upsert([{ id: 'after-restore', vector: vec(1) }]);
        await col.flush();
        await db.close();
        const again = track(await Database.open(path.join(dir, 'third'), { ...QUIET, objectStore: s3(server, prefix) }));
        assert.ok((await again.collection('docs').get(['after-restore']))[0]);
        await again.close();
      });
    } finally {
      await proxy.stop();
      await server.destroy();
    }
  });

  test(`[${kind.label}] the bucket unreachable during a restore is a coded error; the next open succeeds`, { skip: kind.skip }, async () => {
    const server = await kind.start();
    const proxy = await startFaultProxy(server.endpoint);
    try {
      await withTmpDir('bucket-restore-down', async (dir) => {
        const prefix = `rd-${randomBytes(3).toString('hex')}`;
        const before = await writeAndClose(path.join(dir, 'origin'), s3(server, prefix));
        const opts = { ...QUIET, objectStore: s3(server, prefix, proxy.endpoint), objectStoreTuning: { retries: 1, retryBaseMs: 1 } };
        proxy.fault = () => 'reset';
        await assert.rejects(Database.open(path.join(dir, 'restored'), opts), hasCode('ERR_TIER_UNAVAILABLE'));
        // Down in the middle: the claim and the listing pass, the segment reads fail.
        proxy.fault = (r) => (r.method === 'GET' && r.url.includes('/segments/') ? 'reset' : 'pass');
        await assert.rejects(Database.open(path.join(dir, 'restored'), opts), hasCode('ERR_TIER_UNAVAILABLE'));
        proxy.fault = () => 'pass';
        const db = track(await Database.open(path.join(dir, 'restored'), opts));
        const col = db.collection('docs');
        const results = [];
        for (let q = 0; q < NQ; q++) {
          results.push(await col.search(vec(COUNT + q), { k: 10 }));
          results.push(await col.search(vec(COUNT + q), { k: 5, filter: { even: true } }));
        }
        assert.deepEqual(results, before.results, `seed ${SEED}: results after an interrupted restore differ`);
        await db.close();
      });
    } finally {
      await proxy.stop();
      await server.destroy();
    }
  });

  test(`[${kind.label}] maxUnsealedMs: rows never flushed reach the bucket by themselves`, { skip: kind.skip }, async () => {
    const server = await kind.start();
    try {
      await withTmpDir('bucket-unsealed', async (dir) => {
        const objectStore = s3(server, `mu-${randomBytes(3).toString('hex')}`);
        const db = track(await Database.open(path.join(dir, 'w'), { ...QUIET, objectStore, maxUnsealedMs: 100 }));
        const col = await db.createCollection('docs', { dimension: DIM });
        await col.upsert([{ id: 'a', vector: vec(1) }, { id: 'b', vector: vec(2) }]);
        await waitFor(() => col.segments().some((s) => s.remoteBytes !== undefined), 'the age seal and its upload');
        // The writer's machine is gone (its process still holds the claim): fail over.
        const other = track(await Database.open(path.join(dir, 'other'), { ...QUIET, objectStore, takeover: true }));
        const got = await other.collection('docs').get(['a', 'b']);
        assert.deepEqual(got.map((r) => r?.id), ['a', 'b']);
        await other.close();
        await db.close();
      });
    } finally {
      await server.destroy();
    }
  });
}

test('options: takeover, heartbeatMs, writerStaleMs and maxUnsealedMs are validated', async () => {
  await withTmpDir('bucket-options', async (dir) => {
    await assert.rejects(Database.open(dir, { takeover: 'yes' as unknown as boolean }), TypeError);
    await assert.rejects(Database.open(dir, { maxUnsealedMs: -1 }), hasCode('ERR_INVALID_ARGUMENT'));
    await assert.rejects(Database.open(dir, { heartbeatMs: 5 }), hasCode('ERR_INVALID_ARGUMENT'));
    await assert.rejects(Database.open(dir, { heartbeatMs: 1000, writerStaleMs: 1000 }), hasCode('ERR_INVALID_ARGUMENT'));
    await assert.rejects(Database.open(dir, { writerStaleMs: '1' as unknown as number }), TypeError);
    await assert.rejects(Database.open(dir, { offline: 1 as unknown as boolean }), TypeError);
  });
});

test('[fs] open skips a corrupt or foreign remote manifest (recorded in stats, never adopted); a dropped collection stays dropped', async () => {
  await withTmpDir('bucket-skip', async (dir) => {
    const objectStore = pathToFileURL(path.join(dir, 'bucket')).href;
    const origin = path.join(dir, 'origin');
    let db = track(await Database.open(origin, { ...QUIET, objectStore }));
    const col = await db.createCollection('docs', { dimension: DIM });
    await col.upsert(Array.from({ length: 50 }, (_, i) => ({ id: `id-${i}`, vector: vec(i) })));
    await col.flush();
    const gone = await db.createCollection('gone', { dimension: DIM });
    await gone.upsert([{ id: 'g', vector: vec(0) }]);
    await gone.flush();
    await db.flushUploads();
    await db.dropCollection('gone');
    const version = db.stats().collections['docs']!.manifestVersion;
    await db.close();

    const store = await openObjectStore(objectStore);
    try {
      const key = (name: string, v: number) => `${name}/manifest/${String(v).padStart(12, '0')}.manifest`;
      assert.deepEqual(await store.list('gone/manifest/'), [], 'the drop left remote manifests');
      // Not a manifest at all, and a valid manifest of docs filed under another collection's name.
      await store.put(key('ghost', 1), randomBytes(100));
      await store.put(key('other', version), await store.get(key('docs', version)));

      const restored = track(await Database.open(path.join(dir, 'restored'), { ...QUIET, objectStore }));
      assert.deepEqual(restored.listCollections(), ['docs'], 'only the valid collection was adopted');
      assert.match(restored.stats().movement.lastRemoteError ?? '', /other\/manifest\/.*belongs to collection "docs".*skipped, not adopted/);
      assert.deepEqual((await restored.collection('docs').get(['id-7']))[0]?.vector, vec(7));
      await restored.close();
      // lastRemoteError holds the last warning only: the next phase's must be the one left.
      await store.delete(key('other', version));
      await store.delete(key('ghost', 1));

      // The newest version of a collection held locally is corrupt in the bucket: the local state
      // stays the authority, and the next commit goes above that number.
      await store.put(key('docs', version + 1), randomBytes(100));
      db = track(await Database.open(origin, { ...QUIET, objectStore }));
      assert.deepEqual(db.listCollections(), ['docs'], 'the dropped collection came back');
      assert.match(db.stats().movement.lastRemoteError ?? '', /docs\/manifest\/.*kept the local collection/);
      const c = db.collection('docs');
      assert.equal(c.count(), 50);
      await c.upsert([{ id: 'late', vector: vec(60) }]);
      await c.flush();
      const now = db.stats().collections['docs']!.manifestVersion;
      assert.ok(now > version + 1, `committed at v${now}, at or below the corrupt v${version + 1}`);
      assert.ok(await store.head(key('docs', now)), `v${now} is in the bucket`);
      await db.close();
    } finally {
      await store.close();
    }
  });
});

test('[s3rver] offline: with the store unreachable the open fails, unless offline, which reads locally and writes nothing until a reopen claims', async () => {
  const server = await startS3rver();
  const proxy = await startFaultProxy(server.endpoint);
  try {
    await withTmpDir('bucket-offline', async (dir) => {
      const objectStore = { url: `s3://${server.bucket}/offline`, endpoint: proxy.endpoint, credentials: { ...S3RVER_CREDENTIALS }, forcePathStyle: true };
      const opts: DatabaseOptions = { ...QUIET, objectStore, objectStoreTuning: { retries: 0 } };
      const dbDir = path.join(dir, 'db');
      let db = track(await Database.open(dbDir, opts));
      const col = await db.createCollection('docs', { dimension: DIM });
      await col.upsert(Array.from({ length: 20 }, (_, i) => ({ id: `id-${i}`, vector: vec(i) })));
      await col.flush();
      await db.flushUploads();
      await db.close();

      proxy.fault = () => 'reset'; // the store stops answering
      await assert.rejects(Database.open(dbDir, opts), hasCode('ERR_TIER_UNAVAILABLE'));
      db = track(await Database.open(dbDir, { ...opts, offline: true }));
      const c = db.collection('docs');
      assert.deepEqual((await c.get(['id-3']))[0]?.vector, vec(3), 'local reads work offline');
      assert.equal((await c.search(vec(3), { k: 1 }))[0]?.id, 'id-3');
      await assert.rejects(c.upsert([{ id: 'x', vector: vec(30) }]), hasCode('ERR_TIER_UNAVAILABLE'));
      await assert.rejects(db.dropCollection('docs'), hasCode('ERR_TIER_UNAVAILABLE'));
      await assert.rejects(db.createCollection('more', { dimension: 4 }), hasCode('ERR_TIER_UNAVAILABLE'));
      assert.deepEqual(db.listCollections(), ['docs']);
      proxy.fault = () => 'pass'; // back while open: still no claim, still nothing written
      await assert.rejects(c.upsert([{ id: 'x', vector: vec(30) }]), hasCode('ERR_TIER_UNAVAILABLE'));
      await db.close();

      // Reopened with the store back: the open claims the prefix, and writes and drops work again.
      db = track(await Database.open(dbDir, { ...opts, offline: true }));
      await db.collection('docs').upsert([{ id: 'x', vector: vec(30) }]);
      assert.equal(db.collection('docs').count(), 21);
      await db.dropCollection('docs');
      await db.close();
      db = track(await Database.open(dbDir, opts));
      assert.deepEqual(db.listCollections(), [], 'the dropped collection came back from the bucket');
      await db.close();
    });
  } finally {
    await proxy.stop();
    await server.destroy();
  }
});
