// Garbage collection through the public API, with an injected clock: orphans of every kind are
// found, marked, kept through the grace period and deleted after it (a replaced file or object
// starts a new grace period); a dry run deletes nothing and writes no marks; and with the clock
// pushed far past the grace period on every pass, GC running flat out beside writes, searches,
// migrations and compactions never deletes anything referenced or leased. Also: a search in flight
// keeps the files of a segment compaction replaced, the background loop collects on its own and
// stops at close, and reproductions of the engine bugs these tests found.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, promises as fsp } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { CreateMultipartUploadCommand, PutObjectCommand, S3Client, UploadPartCommand } from '@aws-sdk/client-s3';
import { Database, StratavecError, type Collection, type DatabaseOptions, type SearchHit } from '../engine/index.js';
import type { GcReport, GarbageItem, GcEntry } from '../engine/index.js';
import type { ObjectStore } from '../tiers/object-store.js';
import { openObjectStore } from '../tiers/open-object-store.js';
import { mulberry32 } from '../harness/datasets.js';
import { startS3rver, S3RVER_CREDENTIALS } from '../harness/s3rver.js';
import { s3ServerKinds } from '../harness/s3-servers.js';
import { flipByte, hashTree, track, waitFor, withTmpDir } from './helpers/tmp.js';

/** The S3 GC case runs on s3rver and on Ceph RGW (one cluster for this file). */
const KINDS = s3ServerKinds();

const DIM = 8;
/** The grace period: injected-clock ms for marks, and the wall-clock age a temp file needs. */
const G = 60_000;
const T0 = 1_700_000_000_000;
/**
 * How long the interleaving test keeps everything running at once (STRATAVEC_GC_RACE_MS), at
 * least: it goes on until every actor has done its part (see `enough`), however slow the machine.
 */
const RACE_MS = Number(process.env['STRATAVEC_GC_RACE_MS'] ?? 6000);
/** Wall time after which the interleaving test stops even if some actor never got its work done (then it fails). */
const RACE_LIMIT_MS = Math.max(RACE_MS, 120_000);

interface FakeClock {
  t: number;
  now(): number;
}

function fakeClock(): FakeClock {
  const c: FakeClock = { t: T0, now: () => c.t };
  return c;
}

function openDb(dir: string, clock: FakeClock, o: DatabaseOptions = {}): Promise<Database> {
  return Database.open(dir, {
    workers: 2,
    segmentMaxRecords: 200,
    clock,
    tiering: { intervalMs: 0 },
    ...o,
    maintenance: { gcGraceMs: G, gcIntervalMs: 0, scrubIntervalMs: 0, compactIntervalMs: 0, ...o.maintenance },
  }).then(track);
}

function s3Settings(endpoint: string, bucket: string, prefix: string, credentials: { accessKeyId: string; secretAccessKey: string } = S3RVER_CREDENTIALS): DatabaseOptions['objectStore'] {
  return { url: `s3://${bucket}/${prefix}`, endpoint, forcePathStyle: true, credentials: { ...credentials } };
}

/** A second handle on the database's default object store (`<dir>/objects`), to plant and look. */
function fsStore(dir: string): Promise<ObjectStore> {
  return openObjectStore(pathToFileURL(path.join(dir, 'objects')).href);
}

const pad8 = (n: number) => String(n).padStart(8, '0');
const segDir = (dir: string, col: string) => path.join(dir, 'collections', col, 'segments');
const segFile = (dir: string, col: string, seq: number) => path.join(segDir(dir, col), `${pad8(seq)}.seg`);
const stubFile = (dir: string, col: string, seq: number) => path.join(segDir(dir, col), `${pad8(seq)}.stub`);
const seqOf = (id: string) => Number(id.slice(id.lastIndexOf('.') + 1));
const hours = (h: number) => new Date(Date.now() - h * 3600_000);

/** Writes a file (creating its directory) and backdates it by `ageHours` of wall-clock time. */
async function plantFile(file: string, bytes: number | Buffer, ageHours = 0): Promise<void> {
  await fsp.mkdir(path.dirname(file), { recursive: true });
  await fsp.writeFile(file, typeof bytes === 'number' ? randomBytes(bytes) : bytes);
  if (ageHours > 0) await fsp.utimes(file, hours(ageHours), hours(ageHours));
}

/** Whether what a GC location names still exists: a path, `remote:<key>` or `upload:<key>#<id>`. */
async function present(store: ObjectStore, location: string): Promise<boolean> {
  if (location.startsWith('remote:')) return (await store.head(location.slice('remote:'.length))) !== undefined;
  if (location.startsWith('upload:')) {
    const id = location.slice(location.lastIndexOf('#') + 1);
    return (await store.listIncompleteUploads('')).some((u) => u.uploadId === id);
  }
  return existsSync(location);
}

const byLocation = (r: GcReport) => new Map(r.entries.map((e) => [e.location, e]));
const reasons = (r: GcReport | GarbageItem[]) => new Map((Array.isArray(r) ? r : r.entries).map((e) => [e.location, e.reason]));
const actions = (r: GcReport) => [...new Set(r.entries.map((e) => e.action))].sort();

// ---- records --------------------------------------------------------------------------------

interface Rec {
  id: string;
  vector: Float32Array;
  payload: { n: number };
}

function makeRec(n: number, prefix = 'r'): Rec {
  const rand = mulberry32(n * 7919 + 13);
  return { id: `${prefix}${n}`, vector: Float32Array.from({ length: DIM }, () => rand() * 2 - 1), payload: { n } };
}

/** `batches` flushed batches of `rows` records numbered from `first`: one segment each. */
async function fill(col: Collection, first: number, batches: number, rows: number, prefix = 'r'): Promise<Rec[]> {
  const out: Rec[] = [];
  for (let b = 0; b < batches; b++) {
    const recs = Array.from({ length: rows }, (_, i) => makeRec(first + b * rows + i, prefix));
    await col.upsert(recs);
    await col.flush();
    out.push(...recs);
  }
  return out;
}

async function checkRecords(col: Collection, recs: Rec[], what: string): Promise<void> {
  const got = await col.get(recs.map((r) => r.id));
  recs.forEach((want, i) => {
    const r = got[i];
    assert.ok(r, `${what}: ${want.id} is missing`);
    assert.deepEqual(r.vector, want.vector, `${what}: ${want.id} vector`);
    assert.deepEqual(r.payload, want.payload, `${what}: ${want.id} payload`);
  });
  assert.equal(col.count(), recs.length, `${what}: count()`);
}

/** db.verify(): every segment and every copy of it ok. */
async function checkVerify(db: Database, what: string): Promise<void> {
  const v = await db.verify();
  assert.ok(v.complete, `${what}: verify did not finish`);
  for (const s of v.segments) {
    assert.equal(s.status, 'ok', `${what}: segment ${s.segmentId} is ${s.status}: ${JSON.stringify(s.copies)}`);
    for (const c of s.copies) assert.equal(c.status, 'ok', `${what}: ${c.copy} copy of ${s.segmentId} (${c.location}) is ${c.status}: ${c.detail ?? ''}`);
  }
}

// ---- orphans of every kind ------------------------------------------------------------------

interface Planted {
  /** location -> the reason GC must give. */
  expected: Map<string, GcEntry['reason']>;
  /** A temp file a writer could be filling right now: never a GC candidate. */
  freshTemp: string;
  /** The records of collection docs. */
  recs: Rec[];
}

/**
 * Builds collection docs (5 flushed segments, uploaded) and leaves, on the default fs object
 * store, one orphan of every kind GC collects, each made the way the engine (or a crash) makes it.
 */
async function plantOrphans(dir: string, db: Database, store: ObjectStore): Promise<Planted> {
  const expected = new Map<string, GcEntry['reason']>();
  const col = await db.createCollection('docs', { dimension: DIM });
  const recs = await fill(col, 0, 5, 50);
  await db.flushUploads();

  // Replaced segments: compaction merges docs.1-4 (200 live rows, the target) into docs.6; their
  // local files and remote copies are garbage.
  const compacted = await db.compact({ smallFraction: 1 });
  assert.deepEqual(compacted.results.map((r) => [r.sources, r.segmentId]), [[['docs.1', 'docs.2', 'docs.3', 'docs.4'], 'docs.6']]);
  await db.flushUploads();
  for (let seq = 1; seq <= 4; seq++) {
    expected.set(segFile(dir, 'docs', seq), 'replaced-segment');
    expected.set(`remote:docs/segments/docs.${seq}`, 'replaced-segment');
  }

  // A dropped collection whose segment copies stayed behind. A drop needs the bucket (its remote
  // manifests must go first, or the next open adopts it again): with the store away it is
  // refused and changes nothing; once back, the drop deletes the manifests and, best effort, the
  // copies. A copy it could not delete (the store failed after the manifests went) is planted.
  const gone = await db.createCollection('gone', { dimension: DIM });
  const goneRecs = await fill(gone, 0, 2, 20);
  await db.flushUploads();
  const objects = path.join(dir, 'objects');
  const goneBefore = (await store.list('gone/')).map((o) => o.key);
  await fsp.rename(objects, `${objects}-away`);
  try {
    await assert.rejects(db.dropCollection('gone'), (err: unknown) => err instanceof StratavecError && err.code === 'ERR_TIER_UNAVAILABLE');
  } finally {
    await fsp.rename(`${objects}-away`, objects);
  }
  await checkRecords(db.collection('gone'), goneRecs, 'after the refused drop');
  assert.deepEqual((await store.list('gone/')).map((o) => o.key), goneBefore, 'the refused drop changed the bucket');
  await db.dropCollection('gone');
  assert.deepEqual((await store.list('gone/')).map((o) => o.key), [], 'the drop left objects behind');
  await store.put('gone/segments/gone.1', randomBytes(400));
  expected.set('remote:gone/segments/gone.1', 'dropped-collection');
  // ... and objects under the prefix of a collection that never existed here.
  await store.put('ghost/segments/ghost.1', randomBytes(300));
  await store.put('ghost/manifest/000000000001.manifest', randomBytes(100));
  expected.set('remote:ghost/segments/ghost.1', 'dropped-collection');
  expected.set('remote:ghost/manifest/000000000001.manifest', 'dropped-collection');
  // A drop that crashed half-way leaves its directory in trash/.
  const trashed = path.join(dir, 'trash', 'old-0badcafe');
  await plantFile(path.join(trashed, 'segments', '00000001.seg'), 2000);
  expected.set(trashed, 'dropped-collection');

  // A quarantined copy: a flipped byte in docs.5's file, found and repaired by verify.
  const file5 = segFile(dir, 'docs', 5);
  await flipByte(file5, Math.floor((await fsp.stat(file5)).size / 2));
  const repaired = await db.verify({ repair: true });
  assert.deepEqual(repaired.segments.map((s) => [s.segmentId, s.status]), [['docs.5', 'repaired'], ['docs.6', 'ok']]);
  const qdir = path.join(dir, 'collections', 'docs', 'quarantine');
  const quarantined = await fsp.readdir(qdir);
  assert.equal(quarantined.length, 1);
  expected.set(path.join(qdir, quarantined[0]!), 'quarantined');

  // Unreferenced local files: a segment file and a stub no manifest names (a crashed seal or move).
  await fsp.copyFile(segFile(dir, 'docs', 6), segFile(dir, 'docs', 90000001));
  await plantFile(stubFile(dir, 'docs', 90000002), 700);
  expected.set(segFile(dir, 'docs', 90000001), 'unreferenced-file');
  expected.set(stubFile(dir, 'docs', 90000002), 'unreferenced-file');

  // Temp files a crashed write left (older than the grace period by the wall clock), in every
  // directory that has them, and a collection directory a crashed createCollection left.
  const colDir = path.join(dir, 'collections', 'docs');
  for (const f of [
    path.join(colDir, 'segments', '.tmp-00000007.seg-0a0b0c0d0e0f'),
    path.join(colDir, 'manifest', '.tmp-000000000099.manifest-0a0b0c0d0e0f'),
    path.join(colDir, 'wal', '.tmp-000000000099.wal-0a0b0c0d0e0f'),
    path.join(colDir, '.tmp-recent-queries.bin-0a0b0c0d0e0f'),
  ]) {
    await plantFile(f, 500, 3);
    expected.set(f, 'temp-file');
  }
  const halfMade = path.join(dir, 'collections', '.tmp-newcol-0badf00d');
  await plantFile(path.join(halfMade, 'manifest', '000000000001.manifest'), 100);
  await fsp.utimes(halfMade, hours(3), hours(3));
  expected.set(halfMade, 'temp-file');
  // Fresh: its writer may be mid-recipe (temp files hold no lease), so it is never a candidate.
  const freshTemp = path.join(colDir, 'segments', '.tmp-00000008.seg-0f0e0d0c0b0a');
  await plantFile(freshTemp, 500);

  // An unreferenced remote copy (a crashed upload), and a multipart upload a crashed putFile
  // left: its directory under .uploads/ with the record and part of the data (fs-object-store.ts).
  await store.put('docs/segments/docs.999', randomBytes(500));
  expected.set('remote:docs/segments/docs.999', 'unreferenced-object');
  const uploadId = randomBytes(16).toString('hex');
  const uploadDir = path.join(objects, '.uploads', uploadId);
  await plantFile(path.join(uploadDir, 'upload.json'), Buffer.from(JSON.stringify({ key: 'docs/segments/docs.998', initiated: T0 })));
  await plantFile(path.join(uploadDir, 'data'), 4096);
  expected.set(`upload:docs/segments/docs.998#${uploadId}`, 'incomplete-upload');

  // Remote manifests: every upload put one; all but the newest two are old.
  const manifests = (await store.list('docs/manifest/')).map((o) => o.key).sort();
  assert.ok(manifests.length >= 4, `${manifests.length} remote manifests`);
  for (const k of manifests.slice(0, -2)) expected.set(`remote:${k}`, 'old-manifest');

  return { expected, freshTemp, recs };
}

describe('GC finds, keeps and deletes orphans', () => {
  test('every kind is marked, kept through the grace period, and deleted after it', async () => {
    await withTmpDir('gc-orphans', async (dir) => {
      const clock = fakeClock();
      let db = await openDb(dir, clock);
      const store = await fsStore(dir);
      try {
        const { expected, freshTemp, recs } = await plantOrphans(dir, db, store);
        // What verify calls unreferenced is what GC collects.
        assert.deepEqual(reasons((await db.verify()).unreferenced), expected);

        const first = await db.gc();
        assert.deepEqual(reasons(first), expected);
        assert.deepEqual(actions(first), ['marked']);
        for (const e of first.entries) assert.deepEqual([e.markedAt, e.deletableAt], [T0, T0 + G], e.location);
        assert.equal(first.deleted, 0);

        clock.t = T0 + G - 1;
        const early = await db.gc();
        assert.deepEqual(reasons(early), expected);
        assert.deepEqual(actions(early), ['waiting']);
        assert.equal(early.deleted, 0);
        for (const loc of expected.keys()) assert.ok(await present(store, loc), `${loc} deleted before its grace period ended`);

        clock.t = T0 + G;
        const due = await db.gc();
        assert.deepEqual(reasons(due), expected);
        assert.deepEqual(actions(due), ['deleted'], JSON.stringify(due.entries.filter((e) => e.action !== 'deleted')));
        assert.equal(due.deleted, expected.size);
        assert.equal(due.bytesFreed, due.entries.reduce((n, e) => n + e.bytes, 0));
        for (const loc of expected.keys()) assert.equal(await present(store, loc), false, `${loc} survived its deletion`);
        assert.ok(existsSync(freshTemp), 'a fresh temp file is never collected');

        clock.t += 10 * G;
        assert.deepEqual((await db.gc()).entries, [], 'nothing left to collect');
        await checkVerify(db, 'after GC');
        assert.deepEqual((await db.verify()).unreferenced, []);
        await checkRecords(db.collection('docs'), recs, 'after GC');

        await db.close();
        db = await openDb(dir, clock);
        await checkRecords(db.collection('docs'), recs, 'after reopen');
        await checkVerify(db, 'after reopen');
        await db.close();
      } finally {
        await store.close();
      }
    });
  });

  test('a file or object replaced under the same name starts a new grace period; marks survive a reopen', async () => {
    await withTmpDir('gc-identity', async (dir) => {
      const clock = fakeClock();
      let db = await openDb(dir, clock);
      const store = await fsStore(dir);
      try {
        const col = await db.createCollection('docs', { dimension: DIM });
        const recs = await fill(col, 0, 1, 30);
        await db.flushUploads();
        const obj = 'remote:docs/segments/docs.777';
        const file = segFile(dir, 'docs', 90000003);
        await store.put('docs/segments/docs.777', randomBytes(100));
        await plantFile(file, 100);
        const watched = (r: GcReport) => [obj, file].map((l) => {
          const e = byLocation(r).get(l);
          return [e?.action, e?.markedAt];
        });

        assert.deepEqual(watched(await db.gc()), [['marked', T0], ['marked', T0]]);
        clock.t = T0 + G / 2;
        await store.put('docs/segments/docs.777', randomBytes(150));
        await plantFile(file, 150);
        assert.deepEqual(watched(await db.gc()), [['marked', T0 + G / 2], ['marked', T0 + G / 2]], 'a replacement is marked anew');
        clock.t = T0 + G;
        assert.deepEqual(watched(await db.gc()), [['waiting', T0 + G / 2], ['waiting', T0 + G / 2]], 'the first grace period no longer counts');
        assert.ok((await present(store, obj)) && existsSync(file));

        // Marks are persisted: after a reopen the object keeps its mark and goes on time. (The
        // local file does not get there: open removes unreferenced segment files itself.)
        await db.close();
        db = await openDb(dir, clock);
        assert.equal(existsSync(file), false, 'open removed the unreferenced segment file');
        clock.t = T0 + G / 2 + G;
        const r = await db.gc();
        assert.deepEqual([byLocation(r).get(obj)?.action, byLocation(r).get(obj)?.markedAt], ['deleted', T0 + G / 2]);
        assert.equal(await present(store, obj), false);
        await checkRecords(db.collection('docs'), recs, 'after GC');
        await db.close();
      } finally {
        await store.close();
      }
    });
  });

  for (const kind of KINDS) test(`on S3 (${kind.label}): orphan objects, old manifests, a dropped prefix and an incomplete multipart upload; a new ETag restarts the grace period`, { skip: kind.skip }, async () => {
    const server = await kind.start();
    const client = new S3Client({ endpoint: server.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { ...server.credentials } });
    const store = await openObjectStore({ url: `s3://${server.bucket}/gcs3`, endpoint: server.endpoint, forcePathStyle: true, credentials: { ...server.credentials } });
    try {
      await withTmpDir('gc-s3', async (dir) => {
        const clock = fakeClock();
        const db = await openDb(dir, clock, { objectStore: s3Settings(server.endpoint, server.bucket, 'gcs3', server.credentials) });
        const col = await db.createCollection('docs', { dimension: DIM });
        const recs = await fill(col, 0, 4, 40);
        await db.flushUploads();
        const compacted = await db.compact({ smallFraction: 1 });
        assert.deepEqual(compacted.results.map((r) => r.sources), [['docs.1', 'docs.2', 'docs.3', 'docs.4']]);
        await db.flushUploads();

        const expected = new Map<string, GcEntry['reason']>();
        for (let seq = 1; seq <= 4; seq++) {
          expected.set(segFile(dir, 'docs', seq), 'replaced-segment');
          expected.set(`remote:docs/segments/docs.${seq}`, 'replaced-segment');
        }
        const put = (key: string, body: Buffer) => client.send(new PutObjectCommand({ Bucket: server.bucket, Key: `gcs3/${key}`, Body: body }));
        await put('docs/segments/docs.999', Buffer.alloc(100, 'a'));
        expected.set('remote:docs/segments/docs.999', 'unreferenced-object');
        await put('ghost/segments/ghost.3', Buffer.alloc(100, 'g'));
        expected.set('remote:ghost/segments/ghost.3', 'dropped-collection');
        const created = await client.send(new CreateMultipartUploadCommand({ Bucket: server.bucket, Key: 'gcs3/docs/segments/docs.998' }));
        const uploadId = created.UploadId!;
        await client.send(new UploadPartCommand({ Bucket: server.bucket, Key: 'gcs3/docs/segments/docs.998', UploadId: uploadId, PartNumber: 1, Body: Buffer.alloc(1000, 'p') }));
        expected.set(`upload:docs/segments/docs.998#${uploadId}`, 'incomplete-upload');
        const manifests = (await store.list('docs/manifest/')).map((o) => o.key).sort();
        assert.ok(manifests.length >= 4);
        for (const k of manifests.slice(0, -2)) expected.set(`remote:${k}`, 'old-manifest');

        const first = await db.gc();
        assert.deepEqual(reasons(first), expected);
        assert.deepEqual(actions(first), ['marked']);
        assert.match(byLocation(first).get('remote:docs/segments/docs.999')?.identity ?? '', /^\d+:[0-9a-f]{32}$/, 'an S3 object is identified by its ETag');

        // Same size, other bytes: only the ETag tells the new object from the old one.
        clock.t = T0 + G / 2;
        await put('docs/segments/docs.999', Buffer.alloc(100, 'b'));
        const mid = await db.gc();
        assert.deepEqual([byLocation(mid).get('remote:docs/segments/docs.999')?.action, byLocation(mid).get('remote:docs/segments/docs.999')?.markedAt], ['marked', T0 + G / 2]);
        assert.equal(mid.deleted, 0);

        clock.t = T0 + G;
        const due = await db.gc();
        assert.deepEqual(reasons(due), expected);
        for (const [loc, e] of byLocation(due)) {
          assert.equal(e.action, loc === 'remote:docs/segments/docs.999' ? 'waiting' : 'deleted', `${loc}: ${e.error ?? ''}`);
        }
        assert.deepEqual(await server.pendingUploads(), [], 'the multipart upload was aborted');
        for (const loc of expected.keys()) assert.equal(await present(store, loc), loc === 'remote:docs/segments/docs.999', loc);

        clock.t = T0 + G / 2 + G;
        const last = await db.gc();
        assert.deepEqual([...byLocation(last)].map(([l, e]) => [l, e.action]), [['remote:docs/segments/docs.999', 'deleted']]);
        assert.equal(await present(store, 'remote:docs/segments/docs.999'), false);
        await checkVerify(db, 'after GC');
        await checkRecords(col, recs, 'after GC');
        await db.close();
      });
    } finally {
      await store.close();
      client.destroy();
      await server.destroy();
    }
  });
});

// ---- dry run --------------------------------------------------------------------------------

/** The whole directory tree by content, plus every object and upload the store lists. */
async function snapshotAll(dir: string, store: ObjectStore) {
  const marks = path.join(dir, 'gc-marks.json');
  return {
    tree: await hashTree(dir),
    objects: await store.list(''),
    uploads: await store.listIncompleteUploads(''),
    marksMtime: existsSync(marks) ? (await fsp.stat(marks)).mtimeMs : undefined,
  };
}

/**
 * For the tests that compare whole snapshots: no heartbeat rewrite (objects/_writer) and no stats
 * file rewrite (stats.json, whose memory figures change every tick) lands between two of them.
 */
const HOLD_STILL = { heartbeatMs: 3_600_000, writerStaleMs: 7_200_000, statsIntervalMs: 0 } as const;

describe('GC dry run', () => {
  test('deletes nothing and writes no marks, before and past the grace period', async () => {
    await withTmpDir('gc-dry', async (dir) => {
      const clock = fakeClock();
      const db = await openDb(dir, clock, HOLD_STILL);
      const store = await fsStore(dir);
      try {
        const { expected, recs } = await plantOrphans(dir, db, store);

        // Never run before: it would mark everything, and writes no mark file.
        let before = await snapshotAll(dir, store);
        const fresh = await db.gc({ dryRun: true });
        assert.equal(fresh.dryRun, true);
        assert.deepEqual(reasons(fresh), expected);
        assert.deepEqual(actions(fresh), ['would-mark']);
        assert.deepEqual(await snapshotAll(dir, store), before);
        assert.equal(existsSync(path.join(dir, 'gc-marks.json')), false);

        // Marked for real, then a dry run past the grace period: it would delete everything.
        await db.gc();
        const late = path.join(segDir(dir, 'docs'), '.tmp-late-0a0b0c0d0e0f');
        await plantFile(late, 300, 3); // an orphan the real pass did not see
        clock.t = T0 + G;
        before = await snapshotAll(dir, store);
        const dry = await db.gc({ dryRun: true });
        assert.equal(dry.deleted, 0);
        assert.equal(dry.bytesFreed, 0);
        for (const e of dry.entries) assert.equal(e.action, e.location === late ? 'would-mark' : 'would-delete', e.location);
        assert.equal(dry.entries.length, expected.size + 1);
        assert.deepEqual(await snapshotAll(dir, store), before, 'the dry run changed the directory or the store');

        // The real pass at the same instant: everything marked before goes; the late orphan is
        // marked now, so the dry run did not mark it.
        const real = await db.gc();
        for (const e of real.entries) assert.equal(e.action, e.location === late ? 'marked' : 'deleted', `${e.location} ${e.error ?? ''}`);
        assert.equal(byLocation(real).get(late)?.markedAt, T0 + G);
        await checkRecords(db.collection('docs'), recs, 'after GC');
        await db.close();
      } finally {
        await store.close();
      }
    });
  });
});

// ---- safety under interleaving --------------------------------------------------------------

/**
 * A minimal HTTP proxy that forwards every request unless `hold` says to keep it back; held
 * requests go on when `release()` is called. Lets a test stop a download half-way, for as long
 * as it likes, without timeouts.
 */
interface GateProxy {
  endpoint: string;
  hold: (method: string, url: string) => boolean;
  held: number;
  release(): void;
  stop(): Promise<void>;
}

async function startGateProxy(target: string): Promise<GateProxy> {
  const t = new URL(target);
  const waiting: Array<() => void> = [];
  const gate: GateProxy = {
    endpoint: '',
    hold: () => false,
    held: 0,
    release: () => {
      for (const go of waiting.splice(0)) go();
    },
    stop: async () => undefined,
  };
  const server = http.createServer((req, res) => {
    const forward = () => {
      const up = http.request({ host: t.hostname, port: t.port, method: req.method, path: req.url, headers: req.headers }, (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        upRes.pipe(res);
      });
      up.on('error', () => req.socket.destroy());
      req.pipe(up);
    };
    if (gate.hold(req.method ?? 'GET', req.url ?? '/')) {
      gate.held++;
      waiting.push(forward);
    } else {
      forward();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  gate.endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  gate.stop = async () => {
    gate.release();
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await closed;
  };
  return gate;
}

/** One write to one id, as the interleaving test's model records it. `state` null: deleted. */
interface Op {
  issued: number;
  acked: number | undefined;
  state: { v: number } | null;
}

/**
 * The writes of the single writer, on a logical clock that ticks when an op is issued and when it
 * is acknowledged. A read that started at tick t0 and ended at t1 may see, for an id, the state
 * the last op acknowledged by t0 left, or that of any op issued by t1 and not acknowledged by t0.
 */
class History {
  tick = 0;
  readonly #ops = new Map<string, Op[]>();

  begin(ids: string[], state: (i: number) => Op['state']): Op[] {
    const issued = ++this.tick;
    return ids.map((id, i) => {
      const op: Op = { issued, acked: undefined, state: state(i) };
      const list = this.#ops.get(id) ?? [];
      list.push(op);
      this.#ops.set(id, list);
      return op;
    });
  }

  end(ops: Op[]): void {
    const acked = ++this.tick;
    for (const op of ops) op.acked = acked;
  }

  allowed(id: string, t0: number, t1: number): Array<Op['state']> {
    let base: Op['state'] = null;
    const out: Array<Op['state']> = [];
    for (const op of this.#ops.get(id) ?? []) {
      if (op.acked !== undefined && op.acked <= t0) base = op.state;
      else if (op.issued <= t1) out.push(op.state);
    }
    out.push(base);
    return out;
  }

  ids(): string[] {
    return [...this.#ops.keys()];
  }
}

const vectors = new Map<number, Float32Array>();
function vectorOf(v: number): Float32Array {
  let vec = vectors.get(v);
  if (!vec) {
    const rand = mulberry32(v * 2654435761 + 7);
    vec = Float32Array.from({ length: DIM }, () => rand() * 2 - 1);
    vectors.set(v, vec);
  }
  return vec;
}

function l2(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i]! - b[i]!) ** 2;
  return s;
}

const codeOf = (err: unknown) => (err instanceof StratavecError ? err.code : undefined);
const describeErr = (err: unknown) => (err instanceof Error ? `${codeOf(err) ?? err.name}: ${err.message}` : String(err));

describe('GC never deletes what is referenced or leased', () => {
  test('writes, searches, migrations, compactions and GC flat out, the clock past the grace period on every pass', { timeout: RACE_LIMIT_MS + 120_000 }, async (t) => {
    await withTmpDir('gc-race', async (dir) => {
      const clock = fakeClock();
      // Uploads above 4 KiB go in parts, so GC also meets multipart uploads in flight.
      const options: DatabaseOptions = { segmentMaxRecords: 150, objectStoreTuning: { multipartThreshold: 4096, partSize: 4096 } };
      let db = await openDb(dir, clock, options);
      const col = await db.createCollection('docs', { dimension: DIM });
      const h = new History();
      let version = 0;
      const put = async (ids: string[]) => {
        const first = version + 1;
        version += ids.length;
        const ops = h.begin(ids, (i) => ({ v: first + i }));
        await col.upsert(ids.map((id, i) => ({ id, vector: vectorOf(first + i), payload: { id, v: first + i } })));
        h.end(ops);
      };
      // Records that never change, in five small segments: compaction has work from the start.
      const stable = Array.from({ length: 150 }, (_, i) => `s${i}`);
      for (let b = 0; b < 150; b += 30) {
        await put(stable.slice(b, b + 30));
        await col.flush();
      }
      await db.flushUploads();
      const stableVersion = new Map(stable.map((id) => [id, (h.allowed(id, h.tick, h.tick)[0] as { v: number }).v]));

      const failures: string[] = [];
      let stop = false;
      const fail = (who: string, err: unknown) => {
        failures.push(`${who}: ${err instanceof assert.AssertionError ? err.message : describeErr(err)}`);
        stop = true;
      };
      const n = { writes: 0, deletes: 0, flushes: 0, searches: 0, gets: 0, moves: 0, movedAway: 0, compactions: 0, merged: 0, skippedGroups: 0, gcRuns: 0 };
      const gcActions = new Map<string, number>();
      const deleted: GcEntry[] = [];

      const checkState = (id: string, got: { v: number } | null, t0: number, t1: number, what: string) => {
        const allowed = h.allowed(id, t0, t1);
        const ok = got === null ? allowed.includes(null) : allowed.some((s) => s !== null && s.v === got.v);
        assert.ok(ok, `${what}: ${id} is ${got === null ? 'absent' : `v${got.v}`}; allowed ${allowed.map((s) => (s ? `v${s.v}` : 'absent')).join(', ')} (ticks ${t0}-${t1})`);
      };
      const checkHits = (hits: SearchHit[], query: Float32Array, t0: number, t1: number, what: string) => {
        for (const hit of hits) {
          const p = hit.payload as { id?: unknown; v?: unknown } | undefined;
          assert.ok(p && p.id === hit.id && typeof p.v === 'number', `${what}: ${hit.id} came with payload ${JSON.stringify(p)}`);
          checkState(hit.id, { v: p.v }, t0, t1, what);
          const d = l2(query, vectorOf(p.v));
          assert.ok(Math.abs(hit.distance - d) <= 1e-4 * Math.max(1, d), `${what}: ${hit.id} at ${hit.distance}, its vector is at ${d}`);
        }
      };

      const rand = mulberry32(2024);
      const pick = <T>(xs: readonly T[]) => xs[Math.floor(rand() * xs.length)]!;
      const mutable = Array.from({ length: 500 }, (_, i) => `m${i}`);
      const sample = (k: number) => [...new Set(Array.from({ length: k }, () => pick(mutable)))];

      const writer = async () => {
        try {
          while (!stop) {
            const x = rand();
            if (x < 0.65) {
              await put(sample(10 + Math.floor(rand() * 40)));
              n.writes++;
            } else if (x < 0.92) {
              const ids = sample(3 + Math.floor(rand() * 15));
              const ops = h.begin(ids, () => null);
              await col.delete(ids);
              h.end(ops);
              n.deletes++;
            } else {
              await col.flush();
              n.flushes++;
            }
            await new Promise((r) => setImmediate(r));
          }
        } catch (err) {
          fail('writer', err);
        }
      };

      const reader = async (seed: number) => {
        const r = mulberry32(seed);
        try {
          while (!stop) {
            let t0 = h.tick;
            if (r() < 0.5) {
              // A stable record's own vector: an exact search must find it first, at distance 0.
              const id = stable[Math.floor(r() * stable.length)]!;
              const q = vectorOf(stableVersion.get(id)!);
              const hits = await col.search(q, { k: 5, exact: true });
              assert.equal(hits[0]?.id, id, `exact search for stable ${id} found ${hits[0]?.id}`);
              assert.equal(hits[0]?.distance, 0);
              checkHits(hits, q, t0, h.tick, 'exact search');
            } else {
              const q = Float32Array.from({ length: DIM }, () => r() * 2 - 1);
              const exact = r() < 0.5;
              const hits = await col.search(q, { k: 10, exact });
              checkHits(hits, q, t0, h.tick, exact ? 'exact search' : 'search');
            }
            n.searches++;
            const ids = [...sample(25), ...Array.from({ length: 5 }, () => stable[Math.floor(r() * stable.length)]!)];
            t0 = h.tick;
            const got = await col.get(ids);
            const t1 = h.tick;
            got.forEach((rec, i) => {
              const id = ids[i]!;
              if (!rec) return checkState(id, null, t0, t1, 'get');
              const p = rec.payload as { id: string; v: number };
              assert.equal(p.id, id, `get(${id}) returned the payload of ${p.id}`);
              checkState(id, { v: p.v }, t0, t1, 'get');
              assert.deepEqual(rec.vector, vectorOf(p.v), `get(${id}) v${p.v}: vector`);
            });
            n.gets++;
            await new Promise((res) => setImmediate(res));
          }
        } catch (err) {
          fail('reader', err);
        }
      };

      const migrator = async () => {
        const tiers = ['hot', 'warm', 'cold'] as const;
        while (!stop) {
          const segs = col.segments();
          if (segs.length === 0) {
            await sleep(5);
            continue;
          }
          const id = pick(segs).id;
          try {
            await db.migrate(id, pick(tiers));
            n.moves++;
          } catch (err) {
            // Compacted away between segments() and the move: fine, as long as it is really gone.
            if (codeOf(err) === 'ERR_SEGMENT_NOT_FOUND' && !col.segments().some((s) => s.id === id)) n.movedAway++;
            else fail(`migrate ${id}`, err);
          }
          await sleep(1);
        }
      };

      const compactor = async () => {
        while (!stop) {
          try {
            // A group whose sources moved or were compacted since the plan is skipped, never an
            // error (the race reproduced in 'GC regressions'): any rejection is a failure.
            const r = await db.compact({ smallFraction: 1, deletedRatio: 0.1 });
            n.compactions++;
            for (const res of r.results) {
              if (res.skipped === undefined) n.merged++;
              else n.skippedGroups++;
            }
          } catch (err) {
            fail('compact', err);
          }
          await sleep(5);
        }
      };

      const collector = async () => {
        try {
          while (!stop) {
            clock.t += 2 * G;
            const r = await db.gc();
            n.gcRuns++;
            for (const e of r.entries) {
              const key = `${e.reason}/${e.action}`;
              gcActions.set(key, (gcActions.get(key) ?? 0) + 1);
              if (e.action === 'failed') fail('gc', new Error(`could not delete ${e.location}: ${e.error}`));
              if (e.action === 'deleted') deleted.push(e);
            }
            await new Promise((res) => setImmediate(res));
          }
        } catch (err) {
          fail('gc', err);
        }
      };

      // Everything the assertions below need to have happened at least once. The run lasts
      // RACE_MS to give the races time to happen, and then until this holds: a slow machine makes
      // it longer, never a failure (unless it still does not hold after RACE_LIMIT_MS).
      const enough = () => n.searches > 0 && n.writes > 0 && n.moves > 0 && n.merged > 0 && n.gcRuns > 2 &&
        deleted.some((e) => e.reason === 'replaced-segment');
      const supervisor = async () => {
        const start = Date.now();
        while (!stop) {
          const ran = Date.now() - start;
          if ((ran >= RACE_MS && enough()) || ran >= RACE_LIMIT_MS) stop = true;
          else await sleep(20);
        }
      };
      await Promise.all([writer(), reader(1), reader(2), migrator(), compactor(), collector(), supervisor()]);
      t.diagnostic(`ops: ${JSON.stringify(n)}`);
      t.diagnostic(`gc entries (reason/action): ${[...gcActions].sort().map(([k, v]) => `${k} ${v}`).join(', ')}`);
      assert.deepEqual(failures, [], `operations failed while GC ran:\n  ${failures.slice(0, 10).join('\n  ')}`);
      assert.ok(n.searches > 0 && n.writes > 0 && n.moves > 0 && n.merged > 0 && n.gcRuns > 2, `everything ran: ${JSON.stringify(n)}`);
      assert.ok(deleted.some((e) => e.reason === 'replaced-segment'), 'GC deleted replaced segments meanwhile');

      // Quiet now: every record as the model says, every copy of every segment good.
      await col.flush();
      await db.flushUploads();
      const movement = db.stats().movement;
      assert.equal(movement.uploadFailures, 0, `uploads failed: ${movement.lastRemoteError}`);
      assert.equal(movement.migrationFailures, 0);
      const end = h.tick;
      const everyId = h.ids();
      const expectFinal = async (c: Collection, what: string) => {
        const got = await c.get(everyId);
        let live = 0;
        got.forEach((rec, i) => {
          const want = h.allowed(everyId[i]!, end, end);
          assert.equal(want.length, 1);
          const s = want[0]!;
          if (s === null) return assert.equal(rec, undefined, `${what}: ${everyId[i]} was deleted`);
          live++;
          assert.ok(rec, `${what}: ${everyId[i]} v${s.v} is missing`);
          assert.deepEqual(rec.payload, { id: everyId[i], v: s.v }, `${what}: ${everyId[i]} payload`);
          assert.deepEqual(rec.vector, vectorOf(s.v), `${what}: ${everyId[i]} vector`);
        });
        assert.equal(c.count(), live, `${what}: count()`);
      };
      await expectFinal(col, 'after the run');
      await checkVerify(db, 'after the run');

      // Nothing GC deleted is referenced by a segment now.
      const referenced = new Set<string>();
      for (const s of col.segments()) {
        referenced.add(s.tier === 'cold' ? stubFile(dir, 'docs', s.seq) : segFile(dir, 'docs', s.seq));
        if (s.remoteBytes !== undefined) referenced.add(`remote:docs/segments/${s.id}`);
      }
      const wrong = deleted.filter((e) => referenced.has(e.location));
      assert.deepEqual(wrong.map((e) => `${e.location} (${e.reason})`), [], 'GC deleted locations current segments reference');

      // Left alone for two passes, every leftover of the run goes.
      clock.t += 2 * G;
      await db.gc();
      clock.t += 2 * G;
      const sweep = await db.gc();
      assert.ok(sweep.entries.every((e) => e.action === 'deleted'), JSON.stringify(sweep.entries.filter((e) => e.action !== 'deleted')));
      assert.deepEqual((await db.verify()).unreferenced, []);

      await db.close();
      db = await openDb(dir, clock, options);
      await expectFinal(db.collection('docs'), 'after reopen');
      await checkVerify(db, 'after reopen');
      await db.close();
    });
  });

  test('a search in flight on a segment compaction replaces keeps its files leased until it finishes', async () => {
    // A search snapshots the segment list and holds every segment in it (SealedSegment.enter)
    // until it returns; compaction retiring a held segment leases its files. The search is held
    // mid-flight for real: its snapshot is [docs.1, docs.2 (cold), docs.3] and the download that
    // rehydrates docs.2 is kept back at a proxy in front of s3rver, so the search sits in an await
    // while compaction replaces docs.1 and docs.3 and GC runs past the grace period.
    const server = await startS3rver();
    const gate = await startGateProxy(server.endpoint);
    const store = await openObjectStore({ url: `s3://${server.bucket}/lease`, endpoint: server.endpoint, forcePathStyle: true, credentials: { ...S3RVER_CREDENTIALS } });
    try {
      await withTmpDir('gc-lease', async (dir) => {
        const clock = fakeClock();
        const db = await openDb(dir, clock, { objectStore: s3Settings(gate.endpoint, server.bucket, 'lease') });
        const col = await db.createCollection('docs', { dimension: DIM });
        const recs = await fill(col, 0, 3, 50);
        await db.flushUploads();
        assert.deepEqual(col.segments().map((s) => s.id), ['docs.1', 'docs.2', 'docs.3']);
        const query = makeRec(10_000).vector;
        const expected = await col.search(query, { k: 20, exact: true });
        await db.migrate('docs.2', 'cold');

        gate.hold = (method, url) => method === 'GET' && url.split('?')[0]!.endsWith('/lease/docs/segments/docs.2');
        const searching = col.search(query, { k: 20, exact: true });
        searching.catch(() => undefined); // awaited below; a failure must not go unhandled meanwhile
        await waitFor(() => gate.held > 0, 'the search to start downloading docs.2', 30_000);

        const compacted = await db.compact({ smallFraction: 1 });
        assert.deepEqual(compacted.results.map((r) => [r.sources, r.segmentId]), [[['docs.1', 'docs.3'], 'docs.4']]);
        const replaced = [segFile(dir, 'docs', 1), segFile(dir, 'docs', 3), 'remote:docs/segments/docs.1', 'remote:docs/segments/docs.3'];
        const of = (r: GcReport) => replaced.map((l) => `${byLocation(r).get(l)?.reason}/${byLocation(r).get(l)?.action}`);
        assert.deepEqual(of(await db.gc()), replaced.map(() => 'replaced-segment/marked'));
        clock.t = T0 + 5 * G;
        assert.deepEqual(of(await db.gc()), replaced.map(() => 'replaced-segment/leased'), 'held by the search in flight');
        for (const l of replaced) assert.ok(await present(store, l), `${l} deleted while a search held it`);
        assert.equal(gate.held, 1, 'the search is still waiting for its download');

        gate.hold = () => false;
        gate.release();
        assert.deepEqual(await searching, expected, 'the search read the replaced segments to the end');
        clock.t += G;
        assert.deepEqual(of(await db.gc()), replaced.map(() => 'replaced-segment/deleted'), 'released when the search returned');
        for (const l of replaced) assert.equal(await present(store, l), false, `${l} survived`);
        assert.deepEqual(await col.search(query, { k: 20, exact: true }), expected);
        await db.flushUploads();
        await checkRecords(col, recs, 'after GC');
        await checkVerify(db, 'after GC');
        await db.close();
      });
    } finally {
      await store.close();
      await gate.stop();
      await server.destroy();
    }
  });
});

// ---- the background loop --------------------------------------------------------------------

describe('background GC', () => {
  test('deletes an orphan on its own, counts its runs, and stops at close', async () => {
    await withTmpDir('gc-loop', async (dir) => {
      const clock = fakeClock();
      const db = await openDb(dir, clock, { maintenance: { gcIntervalMs: 50 } });
      const col = await db.createCollection('docs', { dimension: DIM });
      const recs = await fill(col, 0, 1, 30);
      await db.flushUploads();
      // Every commit publishes a manifest version; all but the newest two are old and go as well.
      const store = await fsStore(dir);
      const oldManifests = (await store.list('docs/manifest/')).sort((a, b) => (a.key < b.key ? -1 : 1)).slice(0, -2);
      await store.close();
      const oldBytes = oldManifests.reduce((n, o) => n + o.size, 0);
      const orphan = path.join(dir, 'objects', 'docs', 'segments', 'docs.999');
      const temp = path.join(segDir(dir, 'docs'), '.tmp-00000009.seg-0a0b0c0d0e0f');
      await plantFile(orphan, 500);
      await plantFile(temp, 300, 3);
      const want = 2 + oldManifests.length;
      // The clock runs fast: a grace period every 20 ms of wall time.
      const ticker = setInterval(() => {
        clock.t += G;
      }, 20);
      try {
        // The files go inside a pass; the stats count them when the pass returns.
        await waitFor(() => !existsSync(orphan) && !existsSync(temp) && db.stats().maintenance.gc.deleted >= want, 'the background GC to delete the orphans', 30_000);
        const gc = db.stats().maintenance.gc;
        assert.ok(gc.runs >= 2, `${gc.runs} runs`);
        assert.equal(gc.deleted, want, `the two orphans and ${oldManifests.length} old manifests`);
        assert.equal(gc.bytesFreed, 800 + oldBytes);
        assert.equal(gc.lastError, undefined);
        await checkRecords(col, recs, 'after background GC');
        // How long the open loop takes for three more passes on this machine, now: the closed loop
        // below is watched for at least that long, so a loop that outlived close() would show.
        const runsBefore = db.stats().maintenance.gc.runs;
        const t0 = Date.now();
        await waitFor(() => db.stats().maintenance.gc.runs >= runsBefore + 3, 'three more background GC passes', 30_000);
        const threePasses = Date.now() - t0;
        await db.close();

        // Closed: the loop is gone, so a new orphan stays and the marks file is never rewritten.
        const marks = path.join(dir, 'gc-marks.json');
        const marksMtime = (await fsp.stat(marks)).mtimeMs;
        const later = path.join(dir, 'objects', 'docs', 'segments', 'docs.998');
        await plantFile(later, 500);
        await sleep(Math.max(500, 2 * threePasses));
        assert.ok(existsSync(later), 'GC ran after close');
        assert.equal((await fsp.stat(marks)).mtimeMs, marksMtime, 'the marks file was rewritten after close');
      } finally {
        clearInterval(ticker);
      }
    });
  });
});

// ---- regressions: engine bugs these tests found (each failed before its fix) -----------------------

describe('GC regressions', () => {
  test('a dry run leaves a stale multipart temp directory of the fs store alone', async () => {
    // FsObjectStore.listIncompleteUploads removes `.uploads/.tmp-*` directories older than an hour
    // as it lists; GC calls it on every pass, so a dry run deletes them (and no pass reports them).
    await withTmpDir('gc-dry-upload-tmp', async (dir) => {
      const clock = fakeClock();
      const db = await openDb(dir, clock, HOLD_STILL);
      const col = await db.createCollection('docs', { dimension: DIM });
      await fill(col, 0, 1, 20);
      await db.flushUploads();
      const stale = path.join(dir, 'objects', '.uploads', `.tmp-${randomBytes(16).toString('hex')}`);
      await plantFile(path.join(stale, 'upload.json'), Buffer.from('{"key":"docs/segments/docs.5","initiated":0}'));
      await fsp.utimes(stale, hours(2), hours(2));
      const before = await hashTree(dir);
      const dry = await db.gc({ dryRun: true });
      assert.equal(dry.deleted, 0);
      assert.ok(existsSync(stale), 'the dry run deleted .uploads/.tmp-* (a crashed putFile\'s half-made upload directory)');
      assert.deepEqual(await hashTree(dir), before);
      await db.close();
    });
  });

  test('a crashed put on the fs store leaves a temp file beside the object that GC eventually removes', async () => {
    // writeChunksAtomic writes `<dir>/.tmp-<name>-<hex>` beside the object; a crash before the
    // rename leaves it. FsObjectStore.list skips internal names, nothing else looks: it stays forever.
    await withTmpDir('gc-fs-store-temp', async (dir) => {
      const clock = fakeClock();
      const db = await openDb(dir, clock);
      const col = await db.createCollection('docs', { dimension: DIM });
      await fill(col, 0, 1, 20);
      await db.flushUploads();
      const leftover = path.join(dir, 'objects', 'docs', 'segments', '.tmp-docs.2-0a0b0c0d0e0f');
      await plantFile(leftover, 5000, 3);
      await db.gc();
      clock.t += 2 * G;
      await db.gc();
      clock.t += 2 * G;
      await db.gc();
      assert.equal(existsSync(leftover), false, 'a 3-hour-old temp file of the object store survived GC');
      await db.close();
    });
  });

  test('a re-created collection keeps its own remote manifests; those of the dropped one go', async () => {
    // The bug: dropped while the store was unreachable, its remote objects stayed; a collection
    // of the same name was created before GC collected them, and GC, sorting all remote manifests
    // under the name together, kept the dropped one's higher versions as the newest two and
    // deleted the live collection's current ones as 'old-manifest'. Since writers are fenced, a
    // drop needs the bucket and deletes the remote manifests first, so this checks that contract
    // and that GC keeps the re-created collection's newest manifests.
    await withTmpDir('gc-recreate', async (dir) => {
      const clock = fakeClock();
      const db = await openDb(dir, clock);
      const store = await fsStore(dir);
      try {
        let col = await db.createCollection('docs', { dimension: DIM });
        const first = await fill(col, 0, 6, 20);
        await db.flushUploads();
        const objects = path.join(dir, 'objects');
        await fsp.rename(objects, `${objects}-away`);
        try {
          // A drop needs the bucket (the dropped collection's remote manifests must go, or the
          // next open adopts it again): refused while the store is away, and nothing changes.
          await assert.rejects(db.dropCollection('docs'), (err: unknown) => err instanceof StratavecError && err.code === 'ERR_TIER_UNAVAILABLE');
        } finally {
          await fsp.rename(`${objects}-away`, objects);
        }
        await checkRecords(db.collection('docs'), first, 'after the refused drop');
        await db.dropCollection('docs');
        assert.deepEqual((await store.list('docs/manifest/')).map((o) => o.key), [], 'the drop left remote manifests');
        col = await db.createCollection('docs', { dimension: DIM });
        const recs = await fill(col, 1000, 2, 20);
        await db.flushUploads();
        const version = db.stats().collections['docs']!.manifestVersion;
        const mine = (await store.list('docs/manifest/')).map((o) => o.key).filter((k) => Number(k.slice(-21, -9)) <= version);
        assert.ok(mine.length >= 2, `the new collection uploaded ${mine.length} manifests`);
        const newest = mine.sort().slice(-2);

        await db.gc();
        clock.t += 2 * G;
        await db.gc();
        const left = (await store.list('docs/manifest/')).map((o) => o.key);
        for (const k of newest) assert.ok(left.includes(k), `GC deleted ${k}, one of the live collection's two newest remote manifests (it is at v${version})`);
        const foreign = left.filter((k) => Number(k.slice(-21, -9)) > version);
        assert.deepEqual(foreign, [], `remote manifests newer than the live collection (the dropped one's) survived`);
        await checkRecords(col, recs, 'after GC');
        await db.close();
      } finally {
        await store.close();
      }
    });
  });

  test('a compaction racing the demotion of a planned source does not fail', async () => {
    // db.compact() plans from the tiers of the moment, then locks each group's sources; a source
    // demoted to cold in between makes the whole call reject with ERR_INVALID_ARGUMENT, and the
    // groups after it are not compacted.
    await withTmpDir('gc-compact-race', async (dir) => {
      const clock = fakeClock();
      const db = await openDb(dir, clock);
      const col = await db.createCollection('docs', { dimension: DIM });
      const recs = await fill(col, 0, 3, 30);
      await db.flushUploads();
      const demotion = db.migrate('docs.1', 'cold');
      const compaction = db.compact({ smallFraction: 1 });
      compaction.catch(() => undefined); // checked below, once the demotion is done
      await demotion;
      await assert.doesNotReject(compaction);
      await checkRecords(col, recs, 'after the race');
      await db.close();
    });
  });

  test('two compactions at once (the background loop and a caller) do not fail', async () => {
    // Both plan the same groups; the second to lock a source finds it compacted away and rejects
    // with ERR_SEGMENT_NOT_FOUND.
    await withTmpDir('gc-compact-twice', async (dir) => {
      const clock = fakeClock();
      const db = await openDb(dir, clock);
      const col = await db.createCollection('docs', { dimension: DIM });
      const recs = await fill(col, 0, 3, 30);
      const results = await Promise.allSettled([db.compact({ smallFraction: 1 }), db.compact({ smallFraction: 1 })]);
      assert.deepEqual(results.map((r) => (r.status === 'rejected' ? describeErr(r.reason) : 'ok')), ['ok', 'ok']);
      assert.equal(col.segments().length, 1);
      await checkRecords(col, recs, 'after both');
      await db.close();
    });
  });
});

describe('GC with the object store down', () => {
  test('local garbage is still collected, remote marks are kept, and the report says why remote was skipped', async () => {
    await withTmpDir('gc-store-down', async (dir) => {
      const clock = fakeClock();
      const db = await openDb(dir, clock);
      const col = await db.createCollection('docs', { dimension: DIM });
      await fill(col, 0, 1, 20);
      await db.flushUploads();
      const store = db.options.objectStore as string;
      const objects = new URL(store);
      const orphanKey = path.join(objects.pathname, 'docs', 'segments', 'docs.999');
      await plantFile(orphanKey, 100);
      const localOrphan = path.join(dir, 'collections', 'docs', 'segments', '00000999.seg');
      await plantFile(localOrphan, 100);
      // Every commit published a manifest version: all but the newest two are old-manifest garbage.
      const oldManifests = (await fsStore(dir).then(async (s) => {
        try {
          return (await s.list('docs/manifest/')).map((o) => `remote:${o.key}`).sort().slice(0, -2);
        } finally {
          await s.close();
        }
      }));
      const first = await db.gc();
      assert.equal(first.remoteError, undefined);
      assert.deepEqual(first.entries.map((e) => [e.location, e.action]).sort(),
        [[localOrphan, 'marked'], ['remote:docs/segments/docs.999', 'marked'], ...oldManifests.map((m) => [m, 'marked'])].sort());
      await fsp.rename(objects.pathname, `${objects.pathname}-away`); // the store's root is gone
      clock.t += 2 * G;
      const down = await db.gc();
      assert.match(down.remoteError ?? '', /./, 'the report says remote was not scanned');
      assert.deepEqual(down.entries.map((e) => [e.location, e.action]), [[localOrphan, 'deleted']]);
      assert.equal(existsSync(localOrphan), false);
      await fsp.rename(`${objects.pathname}-away`, objects.pathname);
      const back = await db.gc();
      assert.deepEqual(back.entries.map((e) => [e.location, e.action]).sort(),
        [['remote:docs/segments/docs.999', 'deleted'], ...oldManifests.map((m) => [m, 'deleted'])].sort(), 'the remote marks survived the outage');
      await db.close();
    });
  });
});
