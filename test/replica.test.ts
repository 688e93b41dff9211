// Read replicas (README "Scale past one machine"), on s3rver and Ceph RGW:
//  - a replica of a writer's prefix answers searches and gets exactly as the writer does, writes
//    are ERR_READ_ONLY, and the bucket is byte-for-byte what it was (it never writes);
//  - it follows the writer's versions (upserts, overwrites, deletes, new and dropped collections);
//  - it never serves a torn version: while a writer replaces one batch of ids per commit, every
//    state the replica shows holds exactly one whole batch, in commit order;
//  - across the writer's compaction and GC (the replica behind, its segments deleted from the
//    bucket), a read catches up and answers from the current version;
//  - the bucket unreachable mid-refresh: the refresh fails with a coded error, cached segments
//    keep serving, staleness shows in stats, and the next refresh recovers;
//  - options are checked; a reopened replica serves its cache with the bucket down.
// Real files and mmap; the S3 protocol over loopback.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import { Database, type Collection, type DatabaseOptions, type Replica } from '../engine/index.js';
import { clusteredDataset } from '../harness/datasets.js';
import { s3ServerKinds, type S3TestServer } from '../harness/s3-servers.js';
import { openObjectStore } from '../tiers/open-object-store.js';
import { hasCode, track, withTmpDir } from './helpers/tmp.js';

const KINDS = s3ServerKinds();
const DIM = 16;
const PER_SEG = 400;
const SEED = 515;
const rows = clusteredDataset({ count: 4 * PER_SEG + 20, dim: DIM, seed: SEED });
const vec = (r: number) => rows.subarray(r * DIM, (r + 1) * DIM);
const QUERIES = Array.from({ length: 8 }, (_, q) => vec(4 * PER_SEG + q));
const QUIET: DatabaseOptions = { workers: 1, segmentMaxRecords: PER_SEG, tiering: { intervalMs: 0 }, maintenance: { gcIntervalMs: 0, scrubIntervalMs: 0, compactIntervalMs: 0 } };
const REPLICA = { workers: 1, refreshIntervalMs: 0, tiering: { intervalMs: 0 } };

function s3(server: S3TestServer, prefix: string): NonNullable<DatabaseOptions['objectStore']> {
  return { url: `s3://${server.bucket}/${prefix}`, endpoint: server.endpoint, credentials: { ...server.credentials }, forcePathStyle: true };
}

/** What a collection answers: exact top-10 and a filtered top-5 for every query, and some gets. */
type Readable = Pick<Collection, 'search' | 'get'>;
async function answers(col: Readable, ids: string[]) {
  const out: unknown[] = [];
  for (const q of QUERIES) {
    out.push(await col.search(q, { k: 10, exact: true }));
    out.push(await col.search(q, { k: 5, exact: true, filter: { even: true } }));
  }
  out.push(await col.get(ids));
  return out;
}

const batch = (from: number, n: number, tag = 'id') => Array.from({ length: n }, (_, k) => ({ id: `${tag}-${from + k}`, vector: vec(from + k), payload: { i: from + k, even: (from + k) % 2 === 0 } }));
const PROBE = ['id-0', 'id-7', 'id-401', 'id-799', 'id-1200', 'nope'];

/** The bucket's objects (key, size, etag): a replica must leave it exactly so. */
async function bucketState(objectStore: NonNullable<DatabaseOptions['objectStore']>) {
  const store = await openObjectStore(objectStore);
  try {
    return (await store.list('')).map((o) => `${o.key} ${o.size} ${o.etag ?? ''}`);
  } finally {
    await store.close();
  }
}

for (const kind of KINDS) {
  test(`[${kind.label}] a replica answers as the writer does, follows its versions, and never writes to the bucket`, { skip: kind.skip }, async () => {
    const server = await kind.start();
    try {
      await withTmpDir('replica', async (dir) => {
        const objectStore = s3(server, `rp-${randomBytes(3).toString('hex')}`);
        // No heartbeat rewrite during the test: the bucket must stay byte for byte what it was
        // while the replica works, and only the writer may change it.
        const db = track(await Database.open(path.join(dir, 'writer'), { ...QUIET, objectStore, heartbeatMs: 3_600_000, writerStaleMs: 7_200_000 }));
        const col = await db.createCollection('docs', { dimension: DIM });
        await col.upsert(batch(0, 2 * PER_SEG));
        await col.flush();
        await col.delete(['id-7', 'id-14']);
        await col.flush();
        await db.flushUploads();

        const bucketBefore = await bucketState(objectStore);
        const replica = track(await Database.openReplica(path.join(dir, 'replica'), { ...REPLICA, objectStore }));
        const rc = replica.collection('docs');
        assert.deepEqual(replica.listCollections(), ['docs']);
        assert.equal(rc.count(), col.count());
        assert.deepEqual([...new Set(rc.segments().map((s) => s.tier))], ['cold'], 'a fresh replica starts cold');
        assert.deepEqual(await answers(rc, PROBE), await answers(col, PROBE), `seed ${SEED}: replica answers differ from the writer's`);
        const hnsw = await rc.search(QUERIES[0]!, { k: 10 });
        assert.equal(hnsw.length, 10);
        await assert.rejects(rc.upsert([{ id: 'x', vector: vec(0) }]), hasCode('ERR_READ_ONLY'));
        await assert.rejects(rc.delete(['id-0']), hasCode('ERR_READ_ONLY'));
        await assert.rejects(rc.flush(), hasCode('ERR_READ_ONLY'));
        assert.deepEqual(await bucketState(objectStore), bucketBefore, 'the replica changed the bucket');
        const reads = replica.stats().replica.requests;
        assert.ok(reads.gets > 0 && reads.bytesIn > 0, `the replica counted its GETs: ${JSON.stringify(reads)}`);

        // The writer moves on: a new segment, overwrites, deletes, a new collection.
        await col.upsert(batch(2 * PER_SEG, PER_SEG));
        await col.upsert([{ id: 'id-0', vector: vec(3 * PER_SEG + 5), payload: { i: -1, even: true } }]);
        await col.delete(['id-401']);
        await col.flush();
        const other = await db.createCollection('other', { dimension: 4 });
        await other.upsert([{ id: 'o', vector: [1, 2, 3, 4] }]);
        await other.flush();
        await db.flushUploads();
        await replica.refresh();
        assert.deepEqual(replica.listCollections(), ['docs', 'other']);
        assert.equal(rc.count(), col.count());
        assert.deepEqual(await answers(rc, PROBE), await answers(col, PROBE), `seed ${SEED}: answers differ after the writer's next versions`);
        assert.equal(replica.stats().replica.versions['docs'], db.stats().collections['docs']!.manifestVersion);
        assert.deepEqual((await replica.collection('other').get(['o']))[0]?.vector, new Float32Array([1, 2, 3, 4]));

        await db.dropCollection('other');
        await replica.refresh();
        assert.deepEqual(replica.listCollections(), ['docs']);
        assert.throws(() => replica.collection('other'), hasCode('ERR_COLLECTION_NOT_FOUND'));
        await replica.close();
        await db.close();
      });
    } finally {
      await server.destroy();
    }
  });

  test(`[${kind.label}] a replica never shows a torn version: one whole batch per state, in commit order`, { skip: kind.skip }, async (t) => {
    const server = await kind.start();
    try {
      await withTmpDir('replica-torn', async (dir) => {
        const objectStore = s3(server, `rt-${randomBytes(3).toString('hex')}`);
        const db = track(await Database.open(path.join(dir, 'writer'), { ...QUIET, workers: 0, objectStore }));
        const col = await db.createCollection('docs', { dimension: DIM });
        const N = 12;
        // Each commit replaces the same N ids with round r's vectors: a torn state would hold
        // 0 or 2N live rows, or mix rounds.
        const round = async (r: number) => {
          await col.upsert(Array.from({ length: N }, (_, k) => ({ id: `k-${k}`, vector: vec(r * N + k), payload: { r } })));
          await col.flush();
        };
        await round(0);
        await db.flushUploads();
        const replica = track(await Database.openReplica(path.join(dir, 'replica'), { ...REPLICA, objectStore }));
        const rc = replica.collection('docs');
        const ROUNDS = 10;
        const seen: number[] = [];
        let lastVersion = 0;
        let checks = 0;
        const check = async () => {
          checks++;
          const v = replica.stats().replica.versions['docs']!;
          assert.ok(v >= lastVersion, `versions went back: ${lastVersion} -> ${v}`);
          lastVersion = v;
          assert.equal(rc.count(), N, `version ${v}: ${rc.count()} live rows, not ${N}`);
          const got = await rc.get(Array.from({ length: N }, (_, k) => `k-${k}`));
          const rounds = new Set(got.map((g) => (g?.payload as { r: number } | undefined)?.r));
          assert.equal(rounds.size, 1, `version ${v} mixes rounds ${[...rounds].join(', ')}`);
          const r = [...rounds][0]!;
          assert.ok(seen.length === 0 || r >= seen.at(-1)!, `round went back: ${seen.at(-1)} -> ${r}`);
          if (seen.at(-1) !== r) seen.push(r);
          // Searches see the same state: every hit is a row of that round.
          const hits = await rc.search(vec(r * N), { k: N, exact: true });
          assert.equal(hits.length, N);
          assert.ok(hits.every((h) => (h.payload as { r: number }).r === r), `version ${v}: a search mixed rounds`);
          return r;
        };
        for (let r = 1; r <= ROUNDS; r++) {
          // Refreshes race the writer's round (seal commit, upload, upload commit) ...
          let done = false;
          const writing = round(r).then(() => db.flushUploads()).finally(() => {
            done = true;
          });
          while (!done) {
            // Reads run while the refresh switches versions, so a torn switch would be seen.
            let refreshed = false;
            const refreshing = replica.refresh().finally(() => {
              refreshed = true;
            });
            while (!refreshed) {
              await check();
              await new Promise((resolve) => setImmediate(resolve));
            }
            await refreshing;
          }
          await writing;
          // ... and once the round is in the bucket, the replica shows exactly it.
          await replica.refresh();
          assert.equal(await check(), r, `after round ${r} landed`);
        }
        assert.equal(seen.at(-1), ROUNDS, `the replica reached the last round (saw ${seen.join(' ')})`);
        t.diagnostic(`rounds the replica showed: ${seen.join(' ')}; checks: ${checks}`);
        await replica.close();
        await db.close();
      });
    } finally {
      await server.destroy();
    }
  });
}

for (const kind of KINDS) {
  test(`[${kind.label}] across the writer's compaction and GC, a stale replica catches up on read`, { skip: kind.skip }, async () => {
    const server = await kind.start();
    try {
      await withTmpDir('replica-gc', async (dir) => {
        const objectStore = s3(server, `rg-${randomBytes(3).toString('hex')}`);
        const db = track(await Database.open(path.join(dir, 'writer'), { ...QUIET, objectStore, maintenance: { ...QUIET.maintenance, gcGraceMs: 0 } }));
        const col = await db.createCollection('docs', { dimension: DIM });
        for (let s = 0; s < 3; s++) {
          await col.upsert(batch(s * 100, 100));
          await col.flush();
        }
        await db.flushUploads();
        const replica = track(await Database.openReplica(path.join(dir, 'replica'), { ...REPLICA, objectStore }));
        const rc = replica.collection('docs');
        const before = replica.stats().replica.versions['docs']!;

        // Small segments merge; GC with no grace deletes the sources from the bucket.
        const report = await db.compact();
        assert.ok(report.results.length > 0, 'compaction merged the small segments');
        await db.flushUploads();
        for (let i = 0; i < 2; i++) await db.gc();
        assert.ok(replica.stats().replica.versions['docs'] === before, 'the replica did not refresh by itself');

        const expected = await answers(col, PROBE);
        assert.deepEqual(await answers(rc, PROBE), expected, 'the stale replica answered from a version whose segments are gone');
        assert.ok(replica.stats().replica.versions['docs']! > before, 'the read brought the replica to the current version');
        await replica.close();
        await db.close();
      });
    } finally {
      await server.destroy();
    }
  });

  test(`[${kind.label}] the bucket unreachable mid-refresh: cached segments keep serving, staleness shows, the next refresh recovers`, { skip: kind.skip }, async () => {
    const server = await kind.start();
    try {
      await withTmpDir('replica-down', async (dir) => {
        const objectStore = s3(server, `rd-${randomBytes(3).toString('hex')}`);
        const db = track(await Database.open(path.join(dir, 'writer'), { ...QUIET, objectStore }));
        const col = await db.createCollection('docs', { dimension: DIM });
        await col.upsert(batch(0, PER_SEG));
        await col.flush();
        await db.flushUploads();
        let now = 1_000_000;
        const clock = { now: () => now };
        const replica: Replica = track(await Database.openReplica(path.join(dir, 'replica'), {
          ...REPLICA, objectStore, clock, objectStoreTuning: { retries: 1, retryBaseMs: 1 },
        }));
        const rc = replica.collection('docs');
        const expected = await answers(col, PROBE);
        assert.deepEqual(await answers(rc, PROBE), expected); // every segment is now cached locally
        assert.equal(replica.stats().replica.stalenessMs, 0);

        await server.stop();
        now += 60_000;
        await assert.rejects(replica.refresh(), hasCode('ERR_TIER_UNAVAILABLE'));
        const stats = replica.stats().replica;
        assert.equal(stats.stalenessMs, 60_000);
        assert.equal(stats.refreshFailures, 1);
        assert.ok(stats.lastError, 'the refresh error is in stats');
        assert.deepEqual(await answers(rc, PROBE), expected, 'cached segments stopped serving with the bucket down');
        await replica.close();

        // A replica reopened on its cache serves it while the bucket is still down.
        const again = track(await Database.openReplica(path.join(dir, 'replica'), { ...REPLICA, objectStore, clock, objectStoreTuning: { retries: 1, retryBaseMs: 1 } }));
        assert.deepEqual(await answers(again.collection('docs'), PROBE), expected, 'the reopened replica lost its cache');
        assert.equal(again.stats().replica.refreshFailures, 1);

        await server.restart();
        await again.refresh();
        assert.equal(again.stats().replica.lastError, undefined);
        assert.equal(again.stats().replica.stalenessMs, 0);
        await again.close();
        await db.close();
      });
    } finally {
      await server.destroy();
    }
  });
}

test('replica options are checked; one replica per cache directory', async () => {
  await withTmpDir('replica-options', async (dir) => {
    const objectStore = `file://${path.join(dir, 'bucket')}`;
    const db = track(await Database.open(path.join(dir, 'writer'), { ...QUIET, objectStore }));
    await db.createCollection('docs', { dimension: 4 });
    const cache = path.join(dir, 'replica');
    await assert.rejects(Database.openReplica(cache, {} as never), hasCode('ERR_INVALID_ARGUMENT'));
    await assert.rejects(Database.openReplica(cache, { objectStore, refreshIntervalMS: 5 } as never), hasCode('ERR_INVALID_ARGUMENT'));
    await assert.rejects(Database.openReplica(cache, { objectStore, segmentMaxRecords: 5 } as never), hasCode('ERR_INVALID_ARGUMENT'));
    await assert.rejects(Database.openReplica(cache, { objectStore, refreshIntervalMs: -1 }), hasCode('ERR_INVALID_ARGUMENT'));
    await assert.rejects(Database.openReplica(cache, { objectStore, refreshIntervalMs: '5' as never }), TypeError);
    const r = track(await Database.openReplica(cache, { ...REPLICA, objectStore }));
    assert.deepEqual(r.listCollections(), ['docs']);
    await assert.rejects(Database.openReplica(cache, { ...REPLICA, objectStore }), hasCode('ERR_DATABASE_LOCKED'));
    await r.close();
    await db.close();
  });
});
