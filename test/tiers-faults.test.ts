// Faults on the way to and from the cold tier. Each gives a coded error, the segment stays where it
// was, and nothing stored is lost: once the fault is gone the same searches give the same answers.
//
//  - the S3 server stopped in the middle of a warm -> cold move (after the PUT, before the checks)
//  - a cold segment while the S3 server is down (search, get, and a search over hot + warm only)
//  - the bucket removed
//  - the remote copy overwritten with garbage, truncated, one byte flipped, or deleted
//    (on S3 and on the file store)
//  - wrong credentials: the secret never shows in errors, inspect output, stats or files
//  - the local disk full during rehydration, and during a manifest commit (a small tmpfs; skipped,
//    with a message, where it cannot be mounted)
//  - 503 SlowDown a few times, then success thanks to retries; and past the retries, a clean failure
//
// Real S3 servers on loopback (s3rver; Ceph RGW, which checks signatures), real files and mmap.
// No timing asserts.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes, createHash } from 'node:crypto';
import { existsSync, promises as fsp, statfsSync } from 'node:fs';
import * as path from 'node:path';
import { inspect } from 'node:util';
import { pathToFileURL } from 'node:url';
import {
  DeleteBucketCommand, DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client,
} from '@aws-sdk/client-s3';
import { Database, StratavecError, type Collection, type DatabaseOptions, type ErrorCode } from '../engine/index.js';
import { TEMP_PREFIX } from '../format/fsutil.js';
import { clusteredDataset } from '../harness/datasets.js';
import { startFaultProxy, startS3rver, S3RVER_CREDENTIALS } from '../harness/s3rver.js';
import { s3ServerKinds, type S3TestServer } from '../harness/s3-servers.js';
import { track, withTmpDir } from './helpers/tmp.js';

const DIM = 16;
const PER_SEG = 1_500;
const COUNT = 2 * PER_SEG;
const NQ = 10;
const COL = 'docs';

const rows = clusteredDataset({ count: COUNT + NQ, dim: DIM, seed: 31337 });
const vec = (r: number) => rows.subarray(r * DIM, (r + 1) * DIM);
const queries = Array.from({ length: NQ }, (_, i) => vec(COUNT + i));

type Hit = { id: string; distance: number };

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

type Server = Pick<S3TestServer, 'bucket' | 'credentials'> & { endpoint: string };

function s3Client(server: Server): S3Client {
  return new S3Client({ endpoint: server.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { ...server.credentials } });
}

/** Options for `server`'s bucket under `prefix`, reached at `endpoint` (a proxy, or the server). */
function s3Options(endpoint: string, server: Server, prefix: string): DatabaseOptions['objectStore'] {
  return { url: `s3://${server.bucket}/${prefix}`, endpoint, forcePathStyle: true, credentials: { ...server.credentials } };
}

/** The S3 cases below run on s3rver and on Ceph RGW (one cluster for this file). */
const KINDS = s3ServerKinds();

interface Fixture {
  db: Database;
  col: Collection;
  dir: string;
  options: DatabaseOptions;
  /** Segment ids, in seq order: rows [0, 1500) and [1500, 3000). */
  segs: [string, string];
  /** Search results of every query while everything was local. */
  baseline: Hit[][];
}

/** Two sealed segments of 1,500 x 16 (payload { i }), baseline results taken while they are warm. */
async function fixture(dir: string, extra: DatabaseOptions, opened: Database[] = []): Promise<Fixture> {
  const options: DatabaseOptions = {
    workers: 2,
    segmentMaxRecords: PER_SEG,
    tiering: { intervalMs: 0 },
    ...extra,
    objectStoreTuning: { retries: 2, retryBaseMs: 1, ...(extra.objectStoreTuning ?? {}) },
  };
  const db = track(await Database.open(dir, options));
  opened.push(db);
  const col = await db.createCollection(COL, { dimension: DIM, hnsw: { M: 8, efConstruction: 32 } });
  for (let b = 0; b < COUNT; b += PER_SEG) {
    await col.upsert(Array.from({ length: PER_SEG }, (_, j) => ({ id: `p${b + j}`, vector: vec(b + j), payload: { i: b + j } })));
  }
  await col.flush();
  await db.flushUploads();
  const infos = col.segments();
  assert.equal(infos.length, 2);
  const baseline = await searchAll(col);
  return { db, col, dir, options, segs: [infos[0]!.id, infos[1]!.id], baseline };
}

async function searchAll(col: Collection, tiers?: Array<'hot' | 'warm' | 'cold'>): Promise<Hit[][]> {
  const out: Hit[][] = [];
  for (const q of queries) {
    const hits = await col.search(q, { k: 10, includePayload: true, ...(tiers ? { tiers } : {}) });
    for (const h of hits) assert.equal((h.payload as { i: number }).i, Number(h.id.slice(1)), `payload of ${h.id} is its own`);
    out.push(hits.map((h) => ({ id: h.id, distance: h.distance })));
  }
  return out;
}

/** The exact top 10 ids over segment 2's rows only (what a search that skips segment 1 must give). */
function segment2Answers(): string[][] {
  return queries.map((q) => {
    const all: Array<{ id: string; d: number }> = [];
    for (let r = PER_SEG; r < COUNT; r++) {
      let d = 0;
      const v = vec(r);
      for (let j = 0; j < DIM; j++) d += (q[j]! - v[j]!) ** 2;
      all.push({ id: `p${r}`, d });
    }
    return all.sort((a, b) => a.d - b.d).slice(0, 10).map((h) => h.id);
  });
}

const segFile = (f: Fixture, seq: number) => path.join(f.dir, 'collections', COL, 'segments', `${String(seq).padStart(8, '0')}.seg`);
const stubFile = (f: Fixture, seq: number) => path.join(f.dir, 'collections', COL, 'segments', `${String(seq).padStart(8, '0')}.stub`);
const seqOf = (id: string) => Number(id.slice(id.lastIndexOf('.') + 1));

function tierOf(f: Fixture, id: string): string {
  const s = f.col.segments().find((x) => x.id === id);
  assert.ok(s, `segment ${id} is still listed`);
  return s.tier;
}

/** Cold, with its stub and without a local file or any temp file left behind. */
async function assertStillCold(f: Fixture, id: string, what: string): Promise<void> {
  assert.equal(tierOf(f, id), 'cold', `${what}: segments() says cold`);
  assert.equal(existsSync(segFile(f, seqOf(id))), false, `${what}: no local segment file`);
  assert.equal(existsSync(stubFile(f, seqOf(id))), true, `${what}: the id stub is kept`);
  assert.deepEqual(await tempFiles(f.dir), [], `${what}: no temp file left behind`);
}

async function tempFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const d of [path.join(dir, 'collections', COL, 'segments'), path.join(dir, 'tmp')]) {
    for (const n of await fsp.readdir(d).catch(() => [] as string[])) if (n.startsWith(TEMP_PREFIX)) out.push(path.join(d, n));
  }
  return out;
}

/** Rejects with a StratavecError whose code is one of `codes`; returns it. */
async function rejectsWith(p: Promise<unknown>, codes: ErrorCode[], what: string): Promise<StratavecError> {
  let caught: unknown;
  try {
    await p;
  } catch (err) {
    caught = err;
  }
  assert.ok(caught !== undefined, `${what}: expected a rejection with ${codes.join(' or ')}, but it resolved`);
  assert.ok(caught instanceof StratavecError, `${what}: expected a StratavecError, got ${String(caught)}`);
  assert.ok(codes.includes(caught.code), `${what}: expected ${codes.join(' or ')}, got ${caught.code}: ${caught.message}`);
  return caught;
}

/** Only hits of segment 2 (rows >= 1500), exactly those a scan of segment 2 gives. */
function assertSegment2Only(got: Hit[][], what: string): void {
  const want = segment2Answers();
  got.forEach((hits, q) => {
    assert.deepEqual(hits.map((h) => h.id), want[q], `${what}: query ${q}`);
  });
}

// ---------------------------------------------------------------------------------------------

for (const kind of KINDS) test(`[${kind.label}] the server stopped in the middle of warm -> cold: ERR_TIER_UNAVAILABLE, still warm and searchable; after restart the move succeeds`, { timeout: 120_000, skip: kind.skip }, async () => {
  const server = await kind.start();
  const proxy = await startFaultProxy(server.endpoint);
  try {
    await withTmpDir('faults-stop-move', async (dir) => {
      const f = await fixture(dir, { objectStore: s3Options(proxy.endpoint, server, 'stop'), uploadOnSeal: false });
      const [id] = f.segs;
      const local = sha256(await fsp.readFile(segFile(f, seqOf(id))));
      // Let the upload's PUT through, then take the server down at the next request (the check).
      let sawPut = false;
      let stopping: Promise<void> | undefined;
      proxy.fault = (r) => {
        if (stopping) return 'pass'; // forwarded to a stopped server: the client sees a reset
        if (r.method === 'PUT' && r.url.includes('/segments/')) {
          sawPut = true;
          return 'pass';
        }
        if (sawPut) {
          stopping = server.stop();
          return 'reset';
        }
        return 'pass';
      };
      await rejectsWith(f.db.migrate(id, 'cold'), ['ERR_TIER_UNAVAILABLE'], 'migrate with the server gone');
      assert.ok(stopping, 'the server was stopped during the move');
      await stopping;
      assert.equal(tierOf(f, id), 'warm');
      assert.equal(sha256(await fsp.readFile(segFile(f, seqOf(id)))), local, 'the local file is untouched');
      assert.equal(existsSync(stubFile(f, seqOf(id))), false);
      assert.equal(f.col.segments()[0]!.remoteBytes, undefined, 'no remote copy was recorded');
      assert.deepEqual(await searchAll(f.col), f.baseline, 'searchable as before, with the store down');
      assert.equal(f.db.stats().movement.migrationFailures, 1);
      assert.deepEqual(await tempFiles(dir), []);

      await server.restart();
      proxy.fault = () => 'pass';
      const res = await f.db.migrate(id, 'cold');
      assert.equal(res.to, 'cold');
      assert.equal(tierOf(f, id), 'cold');
      assert.equal(existsSync(segFile(f, seqOf(id))), false);
      const client = s3Client(server);
      try {
        const head = await client.send(new HeadObjectCommand({ Bucket: server.bucket, Key: `stop/${COL}/segments/${id}` }));
        assert.equal(head.ContentLength, f.col.segments()[0]!.remoteBytes);
      } finally {
        client.destroy();
      }
      assert.deepEqual(await searchAll(f.col), f.baseline, 'rehydrated: same answers');
      assert.equal(f.col.count(), COUNT);
      await f.db.close();
    });
  } finally {
    await proxy.stop();
    await server.destroy();
  }
});

for (const kind of KINDS) test(`[${kind.label}] a cold segment while the server is down: search and get give ERR_TIER_UNAVAILABLE, hot+warm search works; after restart the same answers`, { timeout: 120_000, skip: kind.skip }, async () => {
  const server = await kind.start();
  try {
    await withTmpDir('faults-down', async (dir) => {
      const f = await fixture(dir, { objectStore: s3Options(server.endpoint, server, 'down') });
      const [id] = f.segs;
      await f.db.migrate(id, 'cold');
      await server.stop();
      await rejectsWith(f.col.search(queries[0]!, { k: 10 }), ['ERR_TIER_UNAVAILABLE'], 'search reaching the cold segment');
      await rejectsWith(f.col.get(['p3']), ['ERR_TIER_UNAVAILABLE'], 'get of a record in the cold segment');
      await rejectsWith(f.db.migrate(id, 'warm'), ['ERR_TIER_UNAVAILABLE'], 'explicit rehydration');
      await assertStillCold(f, id, 'store down');
      assertSegment2Only(await searchAll(f.col, ['hot', 'warm']), 'hot + warm search with the store down');
      const [rec] = await f.col.get([`p${PER_SEG + 7}`]);
      assert.deepEqual(Array.from(rec!.vector), Array.from(vec(PER_SEG + 7)), 'a warm record is still readable');
      assert.equal(f.col.count(), COUNT, 'count() comes from the stub, no store needed');

      await server.restart();
      assert.deepEqual(await searchAll(f.col), f.baseline, 'after restart: the same answers');
      assert.equal(tierOf(f, id), 'warm', 'rehydrated by the search');
      const [back] = await f.col.get(['p3']);
      assert.deepEqual(Array.from(back!.vector), Array.from(vec(3)));
      await f.db.close();
    });
  } finally {
    await server.destroy();
  }
});

for (const kind of KINDS) test(`[${kind.label}] the bucket removed: rehydration gives a coded error and the segment stays cold; the warm one still answers`, { timeout: 120_000, skip: kind.skip }, async () => {
  const server = await kind.start();
  const client = s3Client(server);
  try {
    await withTmpDir('faults-bucket', async (dir) => {
      const f = await fixture(dir, { objectStore: s3Options(server.endpoint, server, 'gone') });
      const [id] = f.segs;
      await f.db.migrate(id, 'cold');
      const listed = await client.send(new ListObjectsV2Command({ Bucket: server.bucket }));
      assert.ok((listed.Contents ?? []).length >= 2, 'segments (and manifests) were uploaded');
      for (const o of listed.Contents ?? []) await client.send(new DeleteObjectCommand({ Bucket: server.bucket, Key: o.Key! }));
      await client.send(new DeleteBucketCommand({ Bucket: server.bucket }));

      const err = await rejectsWith(f.db.migrate(id, 'warm'), ['ERR_TIER_UNAVAILABLE'], 'rehydrate from a deleted bucket');
      assert.match(err.message, /bucket/i, 'the message says what is wrong');
      await rejectsWith(f.col.search(queries[0]!, { k: 10 }), ['ERR_TIER_UNAVAILABLE'], 'search reaching the cold segment');
      await assertStillCold(f, id, 'bucket removed');
      assert.equal(f.col.segments().find((s) => s.id === id)!.records, PER_SEG);
      assertSegment2Only(await searchAll(f.col, ['hot', 'warm']), 'hot + warm search without a bucket');
      await f.db.close();
    });
  } finally {
    client.destroy();
    await server.destroy();
  }
});

/** Reads, writes and deletes the remote copy of a segment behind the engine's back. */
interface RemoteHands {
  read(id: string): Promise<Buffer>;
  write(id: string, bytes: Uint8Array): Promise<void>;
  remove(id: string): Promise<void>;
}

async function damagedRemoteCopies(f: Fixture, hands: RemoteHands): Promise<void> {
  const [id] = f.segs;
  await f.db.migrate(id, 'cold');
  await assertStillCold(f, id, 'moved cold');
  const original = await hands.read(id);
  assert.equal(original.length, f.col.segments()[0]!.remoteBytes);
  const flipped = Buffer.from(original);
  flipped[Math.floor(flipped.length / 2)]! ^= 0x01;
  const garbage = randomBytes(original.length);
  const damage: Array<{ name: string; apply: () => Promise<void>; codes: ErrorCode[] }> = [
    { name: 'overwritten with garbage of the same length', apply: () => hands.write(id, garbage), codes: ['ERR_SEGMENT_CORRUPT'] },
    { name: 'truncated to half', apply: () => hands.write(id, original.subarray(0, original.length >> 1)), codes: ['ERR_SEGMENT_CORRUPT'] },
    { name: 'one byte flipped in the middle', apply: () => hands.write(id, flipped), codes: ['ERR_SEGMENT_CORRUPT'] },
    { name: 'deleted', apply: () => hands.remove(id), codes: ['ERR_OBJECT_NOT_FOUND', 'ERR_SEGMENT_UNAVAILABLE'] },
  ];
  for (const d of damage) {
    await d.apply();
    await rejectsWith(f.db.migrate(id, 'warm'), d.codes, `${d.name}: rehydrate`);
    await assertStillCold(f, id, `${d.name}, after a failed rehydration`);
    // Never an answer built without (or from a bad copy of) the cold segment.
    for (const q of queries.slice(0, 3)) {
      await rejectsWith(f.col.search(q, { k: 10 }), d.codes, `${d.name}: search`);
      await rejectsWith(f.col.search(q, { k: 10, exact: true }), d.codes, `${d.name}: exact search`);
    }
    await rejectsWith(f.col.get(['p0']), d.codes, `${d.name}: get`);
    await assertStillCold(f, id, `${d.name}, after failed searches`);
    assertSegment2Only(await searchAll(f.col, ['hot', 'warm']), `${d.name}: hot + warm search`);
    // Put the good copy back: nothing was lost.
    await hands.write(id, original);
    assert.deepEqual(await searchAll(f.col), f.baseline, `${d.name}: with the good copy back, the same answers`);
    assert.equal(tierOf(f, id), 'warm');
    await f.db.migrate(id, 'cold');
    await assertStillCold(f, id, `${d.name}: cold again`);
  }
  assert.equal(f.col.count(), COUNT);
}

for (const kind of KINDS) test(`[${kind.label}] S3: remote copy garbage / truncated / flipped -> ERR_SEGMENT_CORRUPT, deleted -> ERR_OBJECT_NOT_FOUND; stays cold, no wrong answers`, { timeout: 180_000, skip: kind.skip }, async () => {
  const server = await kind.start();
  const client = s3Client(server);
  const key = (id: string) => `bad/${COL}/segments/${id}`;
  try {
    await withTmpDir('faults-corrupt-s3', async (dir) => {
      const f = await fixture(dir, { objectStore: s3Options(server.endpoint, server, 'bad') });
      await damagedRemoteCopies(f, {
        read: async (id) => {
          const out = await client.send(new GetObjectCommand({ Bucket: server.bucket, Key: key(id) }));
          return Buffer.from(await out.Body!.transformToByteArray());
        },
        write: async (id, bytes) => {
          await client.send(new PutObjectCommand({ Bucket: server.bucket, Key: key(id), Body: bytes, ContentLength: bytes.length }));
        },
        remove: async (id) => {
          await client.send(new DeleteObjectCommand({ Bucket: server.bucket, Key: key(id) }));
        },
      });
      await f.db.close();
    });
  } finally {
    client.destroy();
    await server.destroy();
  }
});

test('file store: remote copy garbage / truncated / flipped -> ERR_SEGMENT_CORRUPT, deleted -> ERR_OBJECT_NOT_FOUND; stays cold, no wrong answers', { timeout: 180_000 }, () =>
  withTmpDir('faults-corrupt-fs', async (dir) => {
    const f = await fixture(dir, {});
    const file = (id: string) => path.join(dir, 'objects', COL, 'segments', id);
    await damagedRemoteCopies(f, {
      read: (id) => fsp.readFile(file(id)),
      write: (id, bytes) => fsp.writeFile(file(id), bytes),
      remove: (id) => fsp.rm(file(id)),
    });
    await f.db.close();
  }));

for (const kind of KINDS) test(`[${kind.label}] wrong credentials: a coded error, and the secret never appears in errors, inspect output, stats or any file`, { timeout: 120_000, skip: kind.skip }, async () => {
  const server = await kind.start();
  const secret = `wrong-secret-${randomBytes(12).toString('hex')}`;
  const keyId = `AKIAWRONG${randomBytes(6).toString('hex').toUpperCase()}`;
  const token = `session-token-${randomBytes(12).toString('hex')}`;
  try {
    await withTmpDir('faults-creds', async (dir) => {
      const f = await fixture(dir, { objectStore: s3Options(server.endpoint, server, 'creds') });
      const [coldId, warmId] = f.segs;
      await f.db.migrate(coldId, 'cold');
      await f.db.close();

      const errors: unknown[] = [];
      const stats: string[] = [];
      // s3rver does not check the signature (a wrong secret with its own key id is accepted), so
      // the rejected credentials are an unknown key id (InvalidAccessKeyId, 403) with a secret;
      // both strings must stay out of everything. Twice, to check a second open as well. A server
      // that checks SigV4 also gets the real key id with a wrong secret (SignatureDoesNotMatch).
      for (const credentials of [
        { accessKeyId: keyId, secretAccessKey: secret },
        { accessKeyId: keyId, secretAccessKey: secret, sessionToken: token },
        ...(kind.checksSignatures ? [{ accessKeyId: server.credentials.accessKeyId, secretAccessKey: secret }] : []),
      ]) {
        // A writer claims the prefix at open (README "Scale past one machine"), so rejected
        // credentials now stop the open itself, with a coded error that must not leak them.
        errors.push(await rejectsWith(Database.open(dir, {
          ...f.options,
          objectStore: { url: `s3://${server.bucket}/creds`, endpoint: server.endpoint, forcePathStyle: true, credentials },
        }), ['ERR_TIER_UNAVAILABLE'], 'open (claiming the prefix)'));
      }
      {
        // The same database with the right credentials still has everything.
        const db = track(await Database.open(dir, f.options));
        assert.equal(db.collection(COL).count(), COUNT);
        stats.push(JSON.stringify(db.stats()));
        await db.close();
      }
      for (const [i, err] of errors.entries()) {
        const texts = [
          (err as Error).message,
          JSON.stringify(err),
          inspect(err, { depth: 8 }),
          inspect(err, { depth: 8, showHidden: true }),
          String((err as Error).stack),
        ];
        for (let c: unknown = (err as Error).cause; c; c = (c as Error).cause) texts.push(String((c as Error).message), inspect(c, { depth: 8 }));
        for (const t of texts) {
          assert.ok(!t.includes(secret), `error ${i} leaks the secret: ${t}`);
          assert.ok(!t.includes(keyId), `error ${i} leaks the access key id: ${t}`);
          assert.ok(!t.includes(token), `error ${i} leaks the session token: ${t}`);
        }
      }
      for (const s of stats) {
        assert.ok(!s.includes(secret), 'db.stats() leaks the secret');
        assert.ok(!s.includes(keyId), 'db.stats() leaks the access key id');
        assert.ok(!s.includes(token), 'db.stats() leaks the session token');
      }
      // Nothing on disk, anywhere under the database directory.
      const needles = [Buffer.from(secret), Buffer.from(keyId), Buffer.from(token)];
      const walk = async (d: string): Promise<void> => {
        for (const e of await fsp.readdir(d, { withFileTypes: true })) {
          const p = path.join(d, e.name);
          if (e.isDirectory()) await walk(p);
          else if (e.isFile()) {
            const bytes = await fsp.readFile(p);
            for (const n of needles) assert.equal(bytes.indexOf(n), -1, `${path.relative(dir, p)} contains a credential`);
          }
        }
      };
      await walk(dir);

      // The right credentials again: nothing was lost.
      const db = track(await Database.open(dir, f.options));
      f.db = db;
      f.col = db.collection(COL);
      assert.deepEqual(await searchAll(f.col), f.baseline);
      await db.close();
    });
  } finally {
    await server.destroy();
  }
});

/**
 * Runs `fn` with a database directory on a fresh 8 MiB tmpfs (cold copies stay off it), then
 * closes every database it opened and unmounts. Skips, saying why, where mounting is not allowed.
 */
async function onSmallDisk(t: TestContext, tag: string, fn: (mnt: string, dir: string, objects: string, opened: Database[]) => Promise<void>): Promise<void> {
  await withTmpDir(tag, async (outer) => {
    const mnt = path.join(outer, 'mnt');
    await fsp.mkdir(mnt);
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', mnt], { stdio: 'pipe' });
    } catch (err) {
      t.skip(`cannot mount a tmpfs here (${String((err as Error).message).split('\n')[0]}); the disk-full case is not exercised`);
      return;
    }
    const opened: Database[] = [];
    try {
      await fn(mnt, path.join(mnt, 'db'), path.join(outer, 'objects'), opened);
    } finally {
      // Unmapped and closed before the unmount, whatever happened.
      for (const db of opened) await db.close().catch(() => undefined);
      try {
        execFileSync('umount', [mnt], { stdio: 'pipe' });
      } catch {
        execFileSync('umount', ['-l', mnt], { stdio: 'pipe' });
      }
    }
  });
}

const freeBytes = (p: string): number => {
  const s = statfsSync(p);
  return s.bavail * s.bsize;
};

/** Leaves about `room` bytes free on the filesystem of `mnt` (replacing an earlier filler). */
async function fillDisk(mnt: string, room: number): Promise<string> {
  const filler = path.join(mnt, 'filler');
  await fsp.rm(filler, { force: true });
  await fsp.writeFile(filler, Buffer.alloc(Math.max(0, freeBytes(mnt) - room)));
  return filler;
}

test('local disk full during rehydration (tmpfs): ERR_DISK_FULL, the segment stays cold, and the database works once space is freed', { timeout: 120_000 }, (t) =>
  onSmallDisk(t, 'faults-enospc', async (mnt, dir, objects, opened) => {
    const f = await fixture(dir, { objectStore: pathToFileURL(objects).href }, opened);
    const [id] = f.segs;
    await f.db.migrate(id, 'cold');
    await assertStillCold(f, id, 'moved cold');
    const rawBytes = f.col.segments()[0]!.bytes;
    const remoteBytes = f.col.segments()[0]!.remoteBytes!;
    // First almost no room (the download of the compressed copy fails), then room for the
    // compressed copy and part of the raw file decoded from it.
    let filler = '';
    for (const [stage, room] of [['download', 16 * 1024], ['decode', remoteBytes + Math.floor(rawBytes / 2)]] as const) {
      filler = await fillDisk(mnt, room);
      assert.ok(freeBytes(mnt) < remoteBytes + rawBytes, `${stage}: the disk has ${freeBytes(mnt)} bytes free, less than the ${remoteBytes} + ${rawBytes} rehydration needs`);
      await rejectsDiskFull(f.db.migrate(id, 'warm'), `${stage}: rehydrate on a full disk`);
      await assertStillCold(f, id, `${stage}: disk full, migrate`);
      await rejectsDiskFull(f.col.search(queries[0]!, { k: 10 }), `${stage}: search on a full disk`);
      await assertStillCold(f, id, `${stage}: disk full, search`);
      assertSegment2Only(await searchAll(f.col, ['hot', 'warm']), `${stage}: hot + warm search on a full disk`);
    }

    await fsp.rm(filler);
    assert.deepEqual(await searchAll(f.col), f.baseline, 'space freed: the same answers');
    assert.equal(tierOf(f, id), 'warm');
    await f.col.upsert([{ id: 'after', vector: new Float32Array(DIM).fill(1e3) }]);
    assert.equal(f.col.count(), COUNT + 1);
    await f.db.close();
    const db = track(await Database.open(dir, f.options));
    opened.push(db);
    assert.equal(db.collection(COL).count(), COUNT + 1, 'reopens with everything');
    await db.close();
  }));

test('a manifest commit on a full disk (tmpfs): a coded error, and after freeing space the database reopens with everything', { timeout: 120_000 }, (t) =>
  onSmallDisk(t, 'faults-enospc-manifest', async (mnt, dir, objects, opened) => {
    const f = await fixture(dir, { objectStore: pathToFileURL(objects).href }, opened);
    const [, b] = f.segs;
    // Tombstones are listed in the manifest: 1,400 of them make it span a few 4 KiB pages.
    const doomed = Array.from({ length: 1_400 }, (_, i) => `p${PER_SEG + i}`);
    await f.col.delete(doomed);
    const expected = await searchAll(f.col);
    const mdir = path.join(dir, 'collections', COL, 'manifest');
    const manifests = async () => (await fsp.readdir(mdir)).filter((n) => !n.startsWith('.')).sort();
    const newestBefore = (await manifests()).at(-1)!;
    // One page free: the next manifest (several pages) cannot be written whole.
    const filler = await fillDisk(mnt, 4096);
    let pinError: unknown;
    try {
      await f.col.pin(b, 'warm'); // a commit and nothing else (the segment is warm already)
    } catch (err) {
      pinError = err;
    }
    const newestAfter = (await manifests()).at(-1)!;
    const written = path.join(mdir, newestAfter);
    const sizeAfter = (await fsp.stat(written)).size;
    await fsp.rm(filler);
    await f.db.close();
    // Whatever pin() said, the newest manifest on disk must be a whole one: reopen must work.
    let reopened: Database | undefined;
    try {
      reopened = track(await Database.open(dir, f.options));
    } catch (err) {
      assert.fail(`reopen after the disk-full commit failed: ${(err as StratavecError).code} ${(err as Error).message}; `
        + `pin() ${pinError ? `rejected with ${(pinError as StratavecError).code}` : 'resolved'}, newest manifest ${newestBefore} -> ${newestAfter} (${sizeAfter} bytes)`);
    }
    opened.push(reopened);
    const col = reopened.collection(COL);
    assert.equal(col.count(), COUNT - doomed.length, 'every acknowledged delete is still there');
    f.col = col;
    assert.deepEqual(await searchAll(col), expected, 'same answers after the reopen');
    // And the failure was reported, as the README promises: ERR_DISK_FULL, the write rolled back.
    assert.ok(pinError instanceof StratavecError, `pin() on a full disk must fail with ERR_DISK_FULL, but it ${pinError ? `threw ${String(pinError)}` : 'resolved'} (newest manifest ${newestAfter}, ${sizeAfter} bytes)`);
    assert.equal(pinError.code, 'ERR_DISK_FULL');
    assert.equal(newestAfter, newestBefore, 'no new manifest version is left behind by the failed commit');
    await reopened.close();
  }));

async function rejectsDiskFull(p: Promise<unknown>, what: string): Promise<void> {
  const err = await rejectsWith(p, ['ERR_DISK_FULL', 'ERR_IO'], what);
  if (err.code === 'ERR_IO') {
    assert.equal((err.cause as NodeJS.ErrnoException | undefined)?.code, 'ENOSPC', `${what}: ERR_IO must carry the ENOSPC cause: ${err.message}`);
  }
}

test('503 SlowDown a few times, then success: the move to cold succeeds by retrying; past the retry limit, ERR_TIER_UNAVAILABLE and the segment stays warm', { timeout: 120_000 }, async () => {
  const server = { ...(await startS3rver()), credentials: { ...S3RVER_CREDENTIALS } };
  const proxy = await startFaultProxy(server.endpoint);
  try {
    await withTmpDir('faults-slowdown', async (dir) => {
      const RETRIES = 3;
      const f = await fixture(dir, {
        objectStore: s3Options(proxy.endpoint, server, 'slow'), uploadOnSeal: false, objectStoreTuning: { retries: RETRIES, retryBaseMs: 1 },
      });
      const [a, b] = f.segs;
      const slowDown = { status: 503, code: 'SlowDown', message: 'Please reduce your request rate.' };

      // Transient: the first three requests of the move are refused, then everything passes.
      let faulted = 0;
      const from = proxy.requests.length;
      proxy.fault = () => (faulted < RETRIES ? (faulted++, slowDown) : 'pass');
      const res = await f.db.migrate(a, 'cold');
      assert.equal(res.to, 'cold');
      assert.equal(faulted, RETRIES);
      const seen = proxy.requests.slice(from);
      assert.ok(seen.length > RETRIES, 'requests went through after the faults');
      // The first request was retried as such: the same method and path RETRIES more times.
      for (let i = 1; i <= RETRIES; i++) {
        assert.equal(`${seen[i]!.method} ${seen[i]!.url.split('?')[0]}`, `${seen[0]!.method} ${seen[0]!.url.split('?')[0]}`, `request ${i} retries request 0`);
      }
      assert.equal(tierOf(f, a), 'cold');
      let st = f.db.stats().movement;
      assert.equal(st.migrations['warm->cold'], 1);
      assert.equal(st.migrationFailures, 0);

      // Persistent: every request refused; retries + 1 attempts, then a coded error.
      const from2 = proxy.requests.length;
      proxy.fault = () => slowDown;
      const err = await rejectsWith(f.db.migrate(b, 'cold'), ['ERR_TIER_UNAVAILABLE'], 'SlowDown beyond the retries');
      assert.match(err.message, /SlowDown|503/);
      assert.equal(proxy.requests.length - from2, RETRIES + 1, 'one request, tried 1 + retries times');
      assert.equal(tierOf(f, b), 'warm');
      assert.equal(existsSync(segFile(f, seqOf(b))), true);
      st = f.db.stats().movement;
      assert.equal(st.migrationFailures, 1);
      assert.equal(st.migrations['warm->cold'], 1);

      proxy.fault = () => 'pass';
      await f.db.migrate(b, 'cold');
      assert.equal(tierOf(f, b), 'cold');
      assert.deepEqual(await searchAll(f.col), f.baseline, 'both rehydrated: the same answers');
      await f.db.close();
    });
  } finally {
    await proxy.stop();
    await server.destroy();
  }
});
