// One writer per bucket prefix, fenced (README "Scale past one machine"):
//  - two writer processes racing on one prefix, many rounds: exactly one acknowledges each
//    manifest version, the loser is fenced, every acknowledged version is in the bucket byte for
//    byte and every acknowledged record survives (Ceph RGW: s3rver ignores If-None-Match);
//  - a live writer makes open fail with ERR_WRITER_ACTIVE; takeover fences it (its next write and
//    commit fail with ERR_WRITER_FENCED) and nothing it committed before is lost;
//  - a writer whose heartbeat is stale by the injectable clock is taken over without takeover;
//  - a killed writer process is taken over without takeover (its pid is gone) and what it
//    acknowledged by a commit is all there;
//  - the conditional create of the object stores: exactly one of many concurrent creates wins.
// Real servers on loopback, real processes; decisions by state, never by elapsed time.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Database, type DatabaseOptions } from '../engine/index.js';
import { openObjectStore } from '../tiers/open-object-store.js';
import { s3ServerKinds, type S3ServerKind, type S3TestServer } from '../harness/s3-servers.js';
import type { BucketWriterConfig } from './helpers/bucket-writer.js';
import { hasCode, track, withTmpDir } from './helpers/tmp.js';

const KINDS = s3ServerKinds();
const WRITER = fileURLToPath(new URL('./helpers/bucket-writer.js', import.meta.url));
const DIM = 8;
const QUIET: DatabaseOptions = { workers: 0, tiering: { intervalMs: 0 }, maintenance: { gcIntervalMs: 0, scrubIntervalMs: 0, compactIntervalMs: 0 } };
const NO_CAS = 's3rver ignores If-None-Match, so conditional creates are not atomic there (README "Scale past one machine")';

function s3Store(server: S3TestServer, prefix: string): BucketWriterConfig['objectStore'] {
  return { url: `s3://${server.bucket}/${prefix}`, endpoint: server.endpoint, credentials: { ...server.credentials }, forcePathStyle: true };
}

const vec = (i: number) => Array.from({ length: DIM }, (_, d) => Math.cos(i * 3 + d));

interface ChildRun {
  child: ChildProcess;
  lines: string[];
  ready: Promise<number>;
  exited: Promise<number | null>;
  onLine(fn: (line: string) => void): void;
}

function runWriter(cfg: BucketWriterConfig): ChildRun {
  const child = spawn(process.execPath, [WRITER, JSON.stringify(cfg)], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines: string[] = [];
  const listeners: Array<(line: string) => void> = [];
  let buf = '';
  let readyResolve!: (epoch: number) => void;
  let readyReject!: (err: Error) => void;
  const ready = new Promise<number>((res, rej) => { readyResolve = res; readyReject = rej; });
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString('utf8');
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      lines.push(line);
      if (line.startsWith('READY ')) readyResolve(Number(line.split(' ')[1]));
      if (line.startsWith('ERR -1 ')) readyReject(new Error(`writer ${cfg.tag} failed to open: ${line}`));
      for (const fn of listeners) fn(line);
    }
  });
  const exited = new Promise<number | null>((res) => child.on('exit', (code) => {
    readyReject(new Error(`writer ${cfg.tag} exited (${code}) before READY: ${lines.join(' | ')}`));
    res(code);
  }));
  return { child, lines, ready, exited, onLine: (fn) => listeners.push(fn) };
}

interface Ack { tag: string; i: number; version: number; sha: string }

function acksOf(tag: string, lines: string[]): Ack[] {
  return lines.filter((l) => l.startsWith('ACK ')).map((l) => {
    const [, i, v, sha] = l.split(' ');
    return { tag, i: Number(i), version: Number(v), sha: sha! };
  });
}

async function bucketObject(server: S3TestServer, key: string): Promise<Buffer> {
  const c = new S3Client({ endpoint: server.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { ...server.credentials } });
  try {
    const out = await c.send(new GetObjectCommand({ Bucket: server.bucket, Key: key }));
    return Buffer.from(await out.Body!.transformToByteArray());
  } finally {
    c.destroy();
  }
}

async function withServer(t: TestContext, kind: S3ServerKind, fn: (server: S3TestServer) => Promise<void>): Promise<void> {
  const server = await kind.start();
  try {
    await fn(server);
  } finally {
    await server.destroy();
  }
  void t;
}

for (const kind of KINDS) {
  // The timeout only catches a hang (the race takes 40-60 s on a loaded 2-core machine).
  test(`[${kind.label}] two writer processes racing on one prefix: one acknowledges each version, the loser is fenced, nothing acknowledged is lost`,
    { skip: kind.skip ?? (kind.label === 's3rver' ? NO_CAS : undefined), timeout: 900_000 }, async (t) => {
      await withServer(t, kind, async (server) => withTmpDir('bucket-race', async (dir) => {
        const prefix = `race-${randomBytes(3).toString('hex')}`;
        const objectStore = s3Store(server, prefix);
        {
          const db = track(await Database.open(path.join(dir, 'setup'), { ...QUIET, objectStore }));
          await db.createCollection('docs', { dimension: DIM });
          await db.close();
        }
        const ROUNDS = 6;
        const COMMITS = 3;
        const acks: Ack[] = [];
        for (let round = 0; round < ROUNDS; round++) {
          const mk = (who: string): ChildRun => runWriter({
            dir: path.join(dir, `r${round}-${who}`), objectStore, tag: `r${round}${who}`, commits: COMMITS, dimension: DIM, takeover: true, waitForGo: true,
          });
          const a = mk('a');
          const b = mk('b');
          const [ea, eb] = await Promise.all([a.ready, b.ready]);
          assert.notEqual(ea, eb, `round ${round}: two writers hold one epoch`);
          a.child.stdin!.write('go\n');
          b.child.stdin!.write('go\n');
          await Promise.all([a.exited, b.exited]);
          const [older, newer] = ea < eb ? [a, b] : [b, a];
          const tagOf = (r: ChildRun) => (r === a ? `r${round}a` : `r${round}b`);
          assert.deepEqual(acksOf(tagOf(older), older.lines), [], `round ${round}: the superseded writer acknowledged a commit: ${older.lines.join(' | ')}`);
          assert.match(older.lines.at(-1) ?? '', /^ERR 0 ERR_WRITER_FENCED /, `round ${round}: the superseded writer was not fenced: ${older.lines.join(' | ')}`);
          assert.equal(newer.lines.at(-1), 'DONE', `round ${round}: the newest writer did not finish: ${newer.lines.join(' | ')}`);
          acks.push(...acksOf(tagOf(older), older.lines), ...acksOf(tagOf(newer), newer.lines));
        }
        // Every acknowledged version once, and in the bucket with exactly the bytes acknowledged.
        const byVersion = new Map<number, Ack>();
        for (const ack of acks) {
          const prev = byVersion.get(ack.version);
          assert.ok(!prev || (prev.tag === ack.tag), `version ${ack.version} acknowledged by ${prev?.tag} and ${ack.tag}`);
          byVersion.set(ack.version, ack);
        }
        for (const ack of byVersion.values()) {
          const body = await bucketObject(server, `${prefix}/docs/manifest/${String(ack.version).padStart(12, '0')}.manifest`);
          assert.equal(createHash('sha256').update(body).digest('hex'), ack.sha, `version ${ack.version} (${ack.tag}) in the bucket differs from what was acknowledged`);
        }
        // Every record whose commit was acknowledged is there, from a fresh directory.
        const db = track(await Database.open(path.join(dir, 'check'), { ...QUIET, objectStore }));
        const col = db.collection('docs');
        const ids = acks.map((a) => `${a.tag}-${a.i}`);
        const got = await col.get(ids);
        assert.deepEqual(ids.filter((_, k) => got[k] === undefined), [], 'acknowledged records lost');
        assert.equal(col.count(), ids.length, 'records nobody acknowledged became visible');
        t.diagnostic(`${ROUNDS} rounds, ${acks.length} acknowledged commits, ${byVersion.size} versions checked`);
        await db.close();
      }));
    });

  test(`[${kind.label}] a live writer holds the prefix; takeover fences it, and what it committed stays`, { skip: kind.skip }, async (t) => {
    await withServer(t, kind, async (server) => withTmpDir('bucket-takeover', async (dir) => {
      const objectStore = s3Store(server, `tk-${randomBytes(3).toString('hex')}`);
      const a = track(await Database.open(path.join(dir, 'a'), { ...QUIET, objectStore }));
      const colA = await a.createCollection('docs', { dimension: DIM });
      await colA.upsert([{ id: 'kept', vector: vec(1) }]);
      await colA.flush();
      await a.flushUploads();
      await colA.upsert([{ id: 'unsealed', vector: vec(2) }]); // acknowledged, in a's WAL only

      await assert.rejects(Database.open(path.join(dir, 'b'), { ...QUIET, objectStore }), hasCode('ERR_WRITER_ACTIVE'));
      const b = track(await Database.open(path.join(dir, 'b'), { ...QUIET, objectStore, takeover: true }));
      assert.equal(b.stats().writer.epoch, a.stats().writer.epoch + 1);
      const colB = b.collection('docs');
      assert.ok((await colB.get(['kept']))[0], 'a committed record is missing after takeover');
      assert.equal((await colB.get(['unsealed']))[0], undefined, 'an unsealed write cannot reach another machine');

      await assert.rejects(colA.flush(), hasCode('ERR_WRITER_FENCED'));
      await assert.rejects(colA.upsert([{ id: 'late', vector: vec(3) }]), hasCode('ERR_WRITER_FENCED'));
      assert.equal(a.stats().writer.fenced, true);
      await colB.upsert([{ id: 'new', vector: vec(4) }]);
      await colB.flush();
      await a.close();
      await b.close();
      const c = track(await Database.open(path.join(dir, 'c'), { ...QUIET, objectStore }));
      const got = await c.collection('docs').get(['kept', 'new', 'late']);
      assert.deepEqual(got.map((r) => r?.id), ['kept', 'new', undefined]);
      await c.close();
    }));
  });
}

test('a writer whose heartbeat is stale by the clock is taken over without takeover; one closed cleanly at once', async () => {
  await withTmpDir('bucket-stale', async (dir) => {
    const objectStore = pathToFileURL(path.join(dir, 'bucket')).href;
    let now = 1_000_000;
    const clock = { now: () => now };
    // The heartbeat timer is real: an hour apart, so no beat of a's (stamped with the fake clock)
    // lands between the clock's moves and b's opens, however slow the machine.
    const HOUR = 3_600_000;
    const opts = { ...QUIET, objectStore, clock, heartbeatMs: HOUR, writerStaleMs: 5 * HOUR };
    const a = track(await Database.open(path.join(dir, 'a'), opts));
    const colA = await a.createCollection('docs', { dimension: DIM });
    await colA.upsert([{ id: 'x', vector: vec(1) }]);
    await colA.flush();
    await a.flushUploads(); // the segment's copy is in the bucket before b adopts it
    now += 4 * HOUR; // inside the staleness limit: a is alive
    await assert.rejects(Database.open(path.join(dir, 'b'), opts), hasCode('ERR_WRITER_ACTIVE'));
    now += 2 * HOUR; // 6 hours since a's last heartbeat: gone
    const b = track(await Database.open(path.join(dir, 'b'), opts));
    assert.ok((await b.collection('docs').get(['x']))[0]);
    await assert.rejects(colA.flush().then(() => colA.upsert([{ id: 'y', vector: vec(2) }])).then(() => colA.flush()), hasCode('ERR_WRITER_FENCED'));
    await b.close();
    // b closed cleanly: c need not wait for staleness (the clock does not move).
    const c = track(await Database.open(path.join(dir, 'c'), opts));
    assert.equal(c.stats().writer.epoch, 3);
    await c.close();
    await a.close();
  });
});

for (const kind of KINDS) {
  test(`[${kind.label}] a killed writer process is taken over without takeover, and every commit it acknowledged is there`, { skip: kind.skip }, async (t) => {
    await withServer(t, kind, async (server) => withTmpDir('bucket-kill', async (dir) => {
      const objectStore = s3Store(server, `kill-${randomBytes(3).toString('hex')}`);
      {
        const db = track(await Database.open(path.join(dir, 'setup'), { ...QUIET, objectStore }));
        await db.createCollection('docs', { dimension: DIM });
        await db.close();
      }
      const w = runWriter({ dir: path.join(dir, 'w'), objectStore, tag: 'k', commits: 1000, dimension: DIM, takeover: false, waitForGo: false });
      await w.ready;
      await new Promise<void>((resolve) => w.onLine((line) => {
        if (acksOf('k', w.lines).length >= 3 && line.startsWith('ACK ')) resolve();
      }));
      w.child.kill('SIGKILL');
      await w.exited;
      const acked = acksOf('k', w.lines);
      const db = track(await Database.open(path.join(dir, 'after'), { ...QUIET, objectStore }));
      const ids = acked.map((a) => `k-${a.i}`);
      const got = await db.collection('docs').get(ids);
      assert.deepEqual(ids.filter((_, k) => !got[k]), [], 'a commit the killed writer acknowledged is lost');
      t.diagnostic(`killed after ${acked.length} acknowledged commits; new writer epoch ${db.stats().writer.epoch}`);
      await db.close();
    }));
  });

  test(`[${kind.label}] conditional create: of 8 concurrent creates of one key exactly one wins`,
    { skip: kind.skip ?? (kind.label === 's3rver' ? NO_CAS : undefined) }, async (t) => {
      await withServer(t, kind, async (server) => {
        const stores = await Promise.all(Array.from({ length: 8 }, () => openObjectStore(s3Store(server, 'cas'))));
        try {
          for (let round = 0; round < 10; round++) {
            const key = `k/${round}`;
            const results = await Promise.allSettled(stores.map((s, i) => s.put(key, Buffer.from(`writer ${i} round ${round}`), { ifNoneMatch: '*' })));
            const winners = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
            assert.equal(winners.length, 1, `round ${round}: winners ${winners.join(',')}: ${results.map((r) => (r.status === 'rejected' ? (r.reason as Error).message : 'ok')).join(' | ')}`);
            for (const r of results) if (r.status === 'rejected') hasCode('ERR_OBJECT_EXISTS')(r.reason);
            assert.equal((await stores[0]!.get(key)).toString(), `writer ${winners[0]} round ${round}`);
          }
        } finally {
          for (const s of stores) await s.close();
        }
      });
    });
}

test('fs store: conditional create is atomic (one winner of 8), same bytes again succeed, a plain put still replaces', async () => {
  await withTmpDir('bucket-fs-cas', async (dir) => {
    const stores = await Promise.all(Array.from({ length: 8 }, () => openObjectStore(pathToFileURL(path.join(dir, 'objects')).href)));
    for (let round = 0; round < 10; round++) {
      const key = `k/${round}`;
      const results = await Promise.allSettled(stores.map((s, i) => s.put(key, Buffer.from(`writer ${i}`), { ifNoneMatch: '*' })));
      const winners = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
      assert.equal(winners.length, 1, `round ${round}: winners ${winners.join(',')}`);
      await stores[0]!.put(key, Buffer.from(`writer ${winners[0]}`), { ifNoneMatch: '*' }); // our own bytes: settled as ours
      await assert.rejects(stores[1]!.put(key, Buffer.from('other'), { ifNoneMatch: '*' }), hasCode('ERR_OBJECT_EXISTS'));
    }
    assert.deepEqual((await fsp.readdir(path.join(dir, 'objects', 'k'))).sort(), Array.from({ length: 10 }, (_, i) => String(i)).sort(), 'temp files left behind');
    await assert.rejects(stores[0]!.put('k/x', Buffer.from('a'), { ifNoneMatch: 'etag' as '*' }), TypeError);
    for (const s of stores) await s.close();
  });
});
