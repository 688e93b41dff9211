// Every segment of a 100,000-vector collection goes hot -> warm -> cold -> warm -> hot, once on the
// default file object store and once on S3 (s3rver on loopback), with byte-identical local segment
// files and identical search results (ids, distances, payloads) at every step. Also: a close and
// reopen while everything is cold (the stubs answer count(), the first search rehydrates), and a
// search restricted to hot and warm that skips cold segments without downloading anything.
//
// Real files, real mmap, real S3 protocol. No timing asserts: only what moved where, and bytes.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { Database, type Collection, type DatabaseOptions, type SearchHit } from '../engine/index.js';
import { clusteredDataset, exactKnn, recallAtK } from '../harness/datasets.js';
import { startS3rver, S3RVER_CREDENTIALS } from '../harness/s3rver.js';
import { track, withTmpDir } from './helpers/tmp.js';

const DIM = 32;
const COUNT = 100_000;
const SEG = 25_000;
const NQ = 30;
const K = 10;
const EF = 64;
const BATCH = 5_000;
const COL = 'docs';

type Tier = 'hot' | 'warm' | 'cold';

let dataset: { base: Float32Array; queries: Float32Array[]; truth: Int32Array } | undefined;

/** 100,000 base rows and 30 queries from the same clustered distribution, and their exact top 10. */
function data(): NonNullable<typeof dataset> {
  if (!dataset) {
    const all = clusteredDataset({ count: COUNT + NQ, dim: DIM, seed: 20240607 });
    const base = all.subarray(0, COUNT * DIM);
    const q = all.subarray(COUNT * DIM);
    const queries = Array.from({ length: NQ }, (_, i) => q.slice(i * DIM, (i + 1) * DIM));
    dataset = { base, queries, truth: exactKnn(base, DIM, COUNT, q, NQ, K, 'l2') };
  }
  return dataset;
}

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** Remote copies under `<collection>/segments/`: key (relative to the store root) -> fingerprint. */
interface RemoteView {
  list(): Promise<Map<string, { size: number; tag: string }>>;
}

function fileRemote(root: string): RemoteView {
  return {
    async list() {
      const out = new Map<string, { size: number; tag: string }>();
      const d = path.join(root, COL, 'segments');
      let names: string[] = [];
      try {
        names = await fsp.readdir(d);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
      for (const n of names.filter((x) => !x.startsWith('.')).sort()) {
        const buf = await fsp.readFile(path.join(d, n));
        out.set(`${COL}/segments/${n}`, { size: buf.length, tag: sha256(buf) });
      }
      return out;
    },
  };
}

function s3Remote(client: S3Client, bucket: string, prefix: string): RemoteView {
  return {
    async list() {
      const out = new Map<string, { size: number; tag: string }>();
      let token: string | undefined;
      for (;;) {
        const page = await client.send(new ListObjectsV2Command({
          Bucket: bucket, Prefix: `${prefix}/${COL}/segments/`, ...(token ? { ContinuationToken: token } : {}),
        }));
        for (const o of page.Contents ?? []) {
          out.set(o.Key!.slice(prefix.length + 1), { size: o.Size ?? -1, tag: o.ETag ?? '' });
        }
        if (!page.IsTruncated) break;
        token = page.NextContinuationToken;
      }
      return out;
    },
  };
}

interface Hits {
  ids: string[];
  distances: number[];
  payloads: unknown[];
}

async function runQueries(col: Collection, opts: { exact?: boolean; tiers?: Tier[] } = {}): Promise<Hits[]> {
  const out: Hits[] = [];
  for (const q of data().queries) {
    const hits: SearchHit[] = await col.search(q, { k: K, ef: EF, exact: opts.exact === true, ...(opts.tiers ? { tiers: opts.tiers } : {}) });
    out.push({ ids: hits.map((h) => h.id), distances: hits.map((h) => h.distance), payloads: hits.map((h) => h.payload) });
  }
  return out;
}

async function roundTrip(dir: string, storeOpts: Pick<DatabaseOptions, 'objectStore'>, remote: RemoteView): Promise<void> {
  const { base, truth } = data();
  const options: DatabaseOptions = {
    ...storeOpts,
    workers: 2,
    segmentMaxRecords: SEG,
    tiering: { intervalMs: 0 },
    objectStoreTuning: { retryBaseMs: 5 },
  };
  let db = track(await Database.open(dir, options));
  let col = await db.createCollection(COL, { dimension: DIM, metric: 'l2', hnsw: { M: 8, efConstruction: 40 } });
  for (let i = 0; i < COUNT; i += BATCH) {
    await col.upsert(Array.from({ length: BATCH }, (_, j) => ({
      id: `v${i + j}`, vector: base.subarray((i + j) * DIM, (i + j + 1) * DIM), payload: { n: i + j, c: (i + j) % 7 },
    })));
  }
  await col.flush();
  await db.flushUploads();

  const segs0 = col.segments();
  assert.equal(segs0.length, COUNT / SEG, 'one segment per segmentMaxRecords rows');
  const ids = segs0.map((s) => s.id);
  for (const s of segs0) {
    assert.equal(s.records, SEG);
    assert.equal(s.tier, 'warm', 'a freshly sealed segment is warm');
    assert.ok(s.remoteBytes !== undefined && s.remoteBytes > 0, `${s.id} was uploaded on seal (write-through)`);
  }
  const mv0 = db.stats().movement;
  assert.equal(mv0.uploads, ids.length);
  assert.equal(mv0.uploadFailures, 0, `no upload failed: ${mv0.lastRemoteError}`);

  const segDir = path.join(dir, 'collections', COL, 'segments');
  const segFile = (seq: number) => path.join(segDir, `${String(seq).padStart(8, '0')}.seg`);
  const stubFile = (seq: number) => path.join(segDir, `${String(seq).padStart(8, '0')}.stub`);
  const original = new Map<string, string>();
  for (const s of segs0) original.set(s.id, sha256(await fsp.readFile(segFile(s.seq))));

  const remote0 = await remote.list();
  assert.deepEqual([...remote0.keys()].sort(), ids.map((id) => `${COL}/segments/${id}`).sort(), 'one remote copy per segment, under <collection>/segments/<id>');
  for (const s of segs0) assert.equal(remote0.get(`${COL}/segments/${s.id}`)!.size, s.remoteBytes, `${s.id}: remote size is what the manifest records`);

  /** Tiers, local bytes, stubs and remote copies as a segment in `tier` must have them. */
  const check = async (step: string, tier: Tier | 'not-cold'): Promise<void> => {
    const segs = col.segments();
    assert.deepEqual(segs.map((s) => s.id), ids, `${step}: same segments`);
    for (const s of segs) {
      if (tier === 'not-cold') assert.notEqual(s.tier, 'cold', `${step}: ${s.id}`);
      else assert.equal(s.tier, tier, `${step}: ${s.id} is ${s.tier}, expected ${tier}`);
      assert.equal(s.records, SEG);
      assert.equal(s.status, 'ok');
      if (s.tier === 'cold') {
        assert.equal(existsSync(segFile(s.seq)), false, `${step}: a cold segment has no local file`);
        assert.equal(existsSync(stubFile(s.seq)), true, `${step}: a cold segment keeps its id stub`);
      } else {
        const h = sha256(await fsp.readFile(segFile(s.seq)));
        assert.equal(h, original.get(s.id), `${step}: ${s.id} local file is byte-identical to the sealed one`);
        assert.equal(existsSync(stubFile(s.seq)), false, `${step}: a local segment has no stub left`);
      }
    }
    // The remote copies never change: not re-uploaded, not rewritten, not deleted.
    assert.deepEqual(await remote.list(), remote0, `${step}: remote copies unchanged`);
    assert.equal(col.count(), COUNT + 3, `${step}: count`);
  };
  const migrations = () => db.stats().movement.migrations;
  const delta = (before: Record<string, number | undefined>, route: string) => (migrations() as Record<string, number | undefined>)[route]! - (before[route] ?? 0);

  // Exact search: the ground truth, and it never promotes (it scans the mapped vectors).
  const E0 = await runQueries(col, { exact: true });
  for (let q = 0; q < NQ; q++) {
    assert.deepEqual(E0[q]!.ids, Array.from(truth.subarray(q * K, (q + 1) * K), (r) => `v${r}`), `query ${q}: exact search equals brute force`);
    for (const p of E0[q]!.payloads) assert.ok(typeof (p as { n: number }).n === 'number');
  }
  // Three records that stay in the growing segment throughout (never flushed), far from every
  // query: the only hits of a search that leaves out the cold tier while everything sealed is cold.
  const growing = ['g0', 'g1', 'g2'];
  await col.upsert(growing.map((id, i) => ({ id, vector: new Float32Array(DIM).fill(1000 + i), payload: { n: -1, c: -1 } })));
  await check('sealed', 'warm');

  // -> hot
  let before = migrations();
  for (const id of ids) await db.migrate(id, 'hot');
  assert.equal(delta(before, 'warm->hot'), ids.length);
  await check('hot', 'hot');
  const H0 = await runQueries(col);
  const recall = recallAtK(H0.map((h) => h.ids.map((id) => Number(id.slice(1)))), truth, K, K);
  assert.ok(recall >= 0.95, `HNSW recall@10 ${recall}`);
  assert.deepEqual(await runQueries(col, { exact: true }), E0, 'hot: exact results');
  await check('hot, after searches', 'hot');

  // hot -> warm
  before = migrations();
  for (const id of ids) await db.migrate(id, 'warm');
  assert.equal(delta(before, 'hot->warm'), ids.length);
  assert.equal(db.stats().tiers.hot.segments, 0);
  await check('warm', 'warm');
  assert.deepEqual(await runQueries(col, { exact: true }), E0, 'warm: exact results');
  await check('warm, after exact searches', 'warm');

  // warm -> cold
  before = migrations();
  for (const id of ids) await db.migrate(id, 'cold');
  assert.equal(delta(before, 'warm->cold'), ids.length);
  await check('cold', 'cold');
  const st = db.stats();
  assert.equal(st.tiers.cold.segments, ids.length);
  assert.equal(st.tiers.warm.segments, 0);
  // Hot and warm only: nothing sealed is there, so the growing segment's records are the only hits,
  // and nothing was downloaded.
  before = migrations();
  for (const h of await runQueries(col, { tiers: ['hot', 'warm'] })) assert.deepEqual(h.ids, growing, 'cold segments are skipped');
  assert.equal(migrations()['cold->warm'] ?? 0, before['cold->warm'] ?? 0, 'no rehydration');
  await check('cold, after hot+warm searches', 'cold');

  // Reopen while cold: the stubs answer count() and ids; still nothing downloaded.
  await db.close();
  db = track(await Database.open(dir, options));
  col = db.collection(COL);
  assert.equal(col.count(), COUNT + 3);
  await check('reopened cold', 'cold');
  for (const h of await runQueries(col, { tiers: ['hot', 'warm'] })) assert.deepEqual(h.ids, growing, 'only the growing records (replayed from the WAL)');
  assert.equal(migrations()['cold->warm'] ?? 0, 0, 'no rehydration by a hot+warm search');
  await check('reopened cold, after hot+warm searches', 'cold');

  // cold -> warm
  before = migrations();
  for (const id of ids) await db.migrate(id, 'warm');
  assert.equal(delta(before, 'cold->warm'), ids.length);
  await check('rehydrated warm', 'warm');
  assert.deepEqual(await runQueries(col, { exact: true }), E0, 'rehydrated warm: exact results');
  await check('rehydrated warm, after exact searches', 'warm');

  // warm -> hot
  before = migrations();
  for (const id of ids) await db.migrate(id, 'hot');
  assert.equal(delta(before, 'warm->hot'), ids.length);
  await check('hot again', 'hot');
  assert.deepEqual(await runQueries(col), H0, 'hot again: HNSW results (ids, distances, payloads)');
  assert.deepEqual(await runQueries(col, { exact: true }), E0, 'hot again: exact results');

  // Everything cold, reopen, and let the first search rehydrate.
  before = migrations();
  for (const id of ids) await db.migrate(id, 'cold');
  assert.equal(delta(before, 'warm->cold'), ids.length, 'hot -> cold counts as one move to cold each');
  await check('cold again', 'cold');
  await db.close();
  db = track(await Database.open(dir, options));
  col = db.collection(COL);
  assert.equal(col.count(), COUNT + 3);
  await check('reopened cold again', 'cold');
  assert.deepEqual(await runQueries(col), H0, 'first search after reopen rehydrates and answers the same');
  assert.equal(migrations()['cold->warm'], ids.length, 'each cold segment rehydrated once');
  await check('rehydrated by search', 'not-cold');
  assert.deepEqual(await runQueries(col, { exact: true }), E0, 'rehydrated by search: exact results');
  const got = await col.get(['v0', 'v24999', 'v25000', 'v99999', 'missing']);
  assert.deepEqual(got.map((r) => r?.payload), [{ n: 0, c: 0 }, { n: 24999, c: 24999 % 7 }, { n: 25000, c: 25000 % 7 }, { n: 99999, c: 99999 % 7 }, undefined]);
  assert.deepEqual(Array.from(got[3]!.vector), Array.from(base.subarray(99999 * DIM, 100000 * DIM)));
  await db.close();
}

test('100,000 vectors: every segment hot -> warm -> cold -> warm -> hot, file object store', { timeout: 600_000 }, () =>
  withTmpDir('tiers-rt-file', async (dir) => {
    await roundTrip(dir, {}, fileRemote(path.join(dir, 'objects')));
  }));

test('100,000 vectors: every segment hot -> warm -> cold -> warm -> hot, S3 (s3rver)', { timeout: 600_000 }, async () => {
  const server = await startS3rver();
  const client = new S3Client({
    endpoint: server.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { ...S3RVER_CREDENTIALS },
  });
  try {
    await withTmpDir('tiers-rt-s3', async (dir) => {
      await roundTrip(dir, {
        objectStore: { url: `s3://${server.bucket}/rt`, endpoint: server.endpoint, forcePathStyle: true, credentials: { ...S3RVER_CREDENTIALS } },
      }, s3Remote(client, server.bucket, 'rt'));
    });
  } finally {
    client.destroy();
    await server.destroy();
  }
});

test('write-through: segments sealed without an upload get their remote copy at the next open with uploadOnSeal on', async () => {
  await withTmpDir('tiers-rt-reupload', async (dir) => {
    const { base } = data();
    const opts: DatabaseOptions = { workers: 1, segmentMaxRecords: 500, tiering: { intervalMs: 0 } };
    // Sealed with no upload: as if close() had dropped the queued uploads (or a crash came first).
    let db = track(await Database.open(dir, { ...opts, uploadOnSeal: false }));
    const col = await db.createCollection(COL, { dimension: DIM, metric: 'l2', hnsw: { M: 8, efConstruction: 40 } });
    for (const from of [0, 500]) {
      await col.upsert(Array.from({ length: 500 }, (_, i) => ({ id: `v${from + i}`, vector: base.subarray((from + i) * DIM, (from + i + 1) * DIM) })));
    }
    await col.flush();
    assert.deepEqual(col.segments().map((s) => [s.tier, s.remoteBytes]), [['warm', undefined], ['warm', undefined]]);
    await db.close();

    // Opened again with uploadOnSeal still off: nothing is uploaded.
    db = track(await Database.open(dir, { ...opts, uploadOnSeal: false }));
    await db.flushUploads();
    assert.equal(db.stats().movement.uploads, 0);
    await db.close();

    // Turned on explicitly: an option not given at open comes from the recorded configuration (off).
    db = track(await Database.open(dir, { ...opts, uploadOnSeal: true }));
    await db.flushUploads();
    const segs = db.collection(COL).segments();
    for (const s of segs) assert.ok(s.remoteBytes !== undefined && s.remoteBytes > 0, `${s.id} has a remote copy after the open`);
    assert.equal(db.stats().movement.uploads, segs.length);
    const remote = fileRemote(path.join(dir, 'objects'));
    assert.equal((await remote.list()).size, segs.length, 'one object per segment in the store');
    await db.close();
  });
});
