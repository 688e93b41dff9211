// The admin CLI beside a running app, and the recovery of a corrupt manifest from the bucket. A
// child process (test/helpers/app-writer.ts) holds the database open and writes; the CLI's
// look-only commands open it read-only and must work and change nothing (the directory's files and
// the object store's objects compared byte for byte before and after), the API's read-only open
// must refuse every mutating call with ERR_READ_ONLY, and commands that need the database closed
// must say it is in use. `segment show` is checked against col.describeSegment and the app's
// published access statistics.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Database, publishedAccess, readPublishedStats, type DatabaseOptions, type SegmentDetail } from '../engine/index.js';
import { flipByte, hashTree, hasCode, track, withTmpDir } from './helpers/tmp.js';
import { TEMP_PREFIX } from '../format/fsutil.js';
import { cli, show } from './helpers/cli-run.js';
import { rowVector, type AppWriterConfig } from './helpers/app-writer.js';

const WRITER = fileURLToPath(new URL('./helpers/app-writer.js', import.meta.url));
const DIM = 8;
const QUIET: DatabaseOptions = { workers: 1, tiering: { intervalMs: 0 }, maintenance: { gcIntervalMs: 0, scrubIntervalMs: 0, compactIntervalMs: 0 } };

/** 4 sealed segments of 50 rows (`s<seg>-<i>`), the first 2 cold on a file store outside `dir/db`,
 *  one warm segment pinned to hot, and 10 acknowledged rows `wal-<i>` only in the WAL. */
async function appDatabase(dir: string): Promise<{ dbDir: string; storeDir: string; ids: string[]; segs: string[] }> {
  const dbDir = path.join(dir, 'db');
  const storeDir = path.join(dir, 'extstore');
  const db = track(await Database.open(dbDir, { ...QUIET, segmentMaxRecords: 50, objectStore: pathToFileURL(storeDir).href }));
  const col = await db.createCollection('docs', { dimension: DIM });
  const ids: string[] = [];
  for (let s = 0; s < 4; s++) {
    await col.upsert(Array.from({ length: 50 }, (_, i) => ({ id: `s${s}-${i}`, vector: rowVector(`s${s}`, i, DIM), payload: { tag: `s${s}`, i } })));
    await col.flush();
    for (let i = 0; i < 50; i++) ids.push(`s${s}-${i}`);
  }
  await db.flushUploads();
  const segs = col.segments().map((x) => x.id);
  for (const id of segs.slice(0, 2)) await db.migrate(id, 'cold');
  await col.pin(segs[3]!, 'hot');
  await col.upsert(Array.from({ length: 10 }, (_, i) => ({ id: `wal-${i}`, vector: rowVector('wal', i, DIM), payload: { tag: 'wal', i } })));
  for (let i = 0; i < 10; i++) ids.push(`wal-${i}`);
  await db.close();
  return { dbDir, storeDir, ids, segs };
}

/** Every id's record is there with the vector and payload it was written with. */
async function checkRecords(db: Database, ids: string[], what: string): Promise<void> {
  const got = await db.collection('docs').get(ids);
  for (let k = 0; k < ids.length; k++) {
    const r = got[k];
    assert.ok(r, `${what}: ${ids[k]} is there`);
    const [tag, i] = [ids[k]!.slice(0, ids[k]!.lastIndexOf('-')), Number(ids[k]!.slice(ids[k]!.lastIndexOf('-') + 1))];
    assert.deepEqual(r.payload, { tag, i }, `${what}: payload of ${ids[k]}`);
    assert.deepEqual(Array.from(r.vector), rowVector(tag, i, DIM).map((x) => Math.fround(x)), `${what}: vector of ${ids[k]}`);
  }
}

class AppProcess {
  readonly child: ChildProcessWithoutNullStreams;
  readonly #lines: AsyncIterator<string>;
  constructor(cfg: AppWriterConfig) {
    this.child = spawn(process.execPath, [WRITER, JSON.stringify(cfg)], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    this.child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    this.child.on('exit', (code) => {
      if (code !== 0 && code !== null) process.stderr.write(`app-writer exited ${code}: ${stderr}\n`);
    });
    this.#lines = createInterface({ input: this.child.stdout })[Symbol.asyncIterator]();
  }
  async next(): Promise<string> {
    const r = await this.#lines.next();
    if (r.done) throw new Error('app-writer closed its stdout');
    if (r.value.startsWith('ERR')) throw new Error(`app-writer: ${r.value}`);
    return r.value;
  }
  async send(cmd: string): Promise<string> {
    this.child.stdin.write(`${cmd}\n`);
    return this.next();
  }
  async quit(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const gone = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.stdin.write('quit\n');
    await gone;
  }
}

/**
 * The app's published view, stats.json, is rewritten (through a temp file) whenever its figures
 * change, and its memory figures change at every tick: the walk skips both names.
 */
const notStats = (rel: string) => rel === 'stats.json' || rel.startsWith(`${TEMP_PREFIX}stats.json-`);
const scratchDirs = async () => new Set((await fsp.readdir(os.tmpdir())).filter((n) => n.startsWith('stratavec-ro-')));

/**
 * Runs `body` with the temp directory (TMPDIR, which the cli() children inherit) set to a fresh
 * one under `dir`: the read-only scratch directories counted are this test's alone, not those of
 * another test file's commands running beside it.
 */
async function withOwnTmpdir<T>(dir: string, body: () => Promise<T>): Promise<T> {
  const saved = process.env['TMPDIR'];
  process.env['TMPDIR'] = path.join(dir, 'tmpdir');
  await fsp.mkdir(process.env['TMPDIR']);
  try {
    return await body();
  } finally {
    if (saved === undefined) delete process.env['TMPDIR'];
    else process.env['TMPDIR'] = saved;
  }
}

test('beside a running writer: look-only commands work and change nothing; the rest say the database is in use; the API refuses writes with ERR_READ_ONLY', async () => {
  await withTmpDir('cli-ro', async (dir) => withOwnTmpdir(dir, async () => {
    const { dbDir, storeDir, ids, segs } = await appDatabase(dir);
    // Heartbeats far apart, so that the bucket holds still while it is compared.
    const app = new AppProcess({ dir: dbDir, dimension: DIM, touch: ['s2-0', 's2-1', 's3-0'], options: { ...QUIET, statsIntervalMs: 50, heartbeatMs: 600_000, writerStaleMs: 1_200_000 } });
    try {
      const pid = Number((await app.next()).split(' ')[1]);
      assert.equal(await app.send('write live 15'), `OK ${ids.length + 15}`); // acknowledged, in the WAL only
      for (let i = 0; i < 15; i++) ids.push(`live-${i}`);
      // Wait for the app to publish its figures after that write.
      for (let t = 0; t < 200; t++) {
        const p = await readPublishedStats(dbDir).catch(() => undefined);
        if ((p?.stats as { collections?: { docs?: { records: number } } } | undefined)?.collections?.docs?.records === ids.length) break;
        await new Promise((r) => setTimeout(r, 25));
      }
      const scratchBefore = await scratchDirs();
      const before = await hashTree(dbDir, notStats);
      const storeBefore = await hashTree(storeDir);

      const json = async (args: string[]) => {
        const r = await cli([...args, '--json']);
        assert.equal(r.code, 0, `${args.join(' ')}: ${show(r)}`);
        return JSON.parse(r.stdout) as Record<string, unknown>;
      };
      const status = await json(['status', dbDir]) as { collections: Array<{ records: number }>; tiers: Record<string, { segments: number }>; serving: { pid: number } | null };
      assert.equal(status.collections[0]!.records, ids.length, 'the read-only view replays the WAL the app is appending to');
      assert.equal(status.tiers['cold']!.segments, 2);
      assert.equal(status.serving?.pid, pid, 'status shows the serving process');
      const info = await json(['info', dbDir]) as unknown as Array<{ segments: Array<{ id: string }> }>;
      assert.deepEqual(info[0]!.segments.map((s) => s.id), segs);
      const list = await json(['segments', dbDir, 'docs']) as unknown as Array<{ id: string; pinned?: string }>;
      assert.equal(list.find((s) => s.id === segs[3])?.pinned, 'hot');
      const verify = await json(['verify', dbDir]) as { exitCode: number; summary: { ok: number }; manifests: Array<{ status: string }> };
      assert.equal(verify.exitCode, 0);
      assert.equal(verify.summary.ok, segs.length);
      await json(['tiering', 'plan', dbDir]);
      const gc = await json(['gc', dbDir, '--dry-run']) as { dryRun: boolean };
      assert.equal(gc.dryRun, true);
      await json(['compact', dbDir, '--dry-run']);
      await json(['stats', dbDir]);
      for (const args of [['status', dbDir], ['segment', 'show', dbDir, segs[2]!]]) {
        const r = await cli(args);
        assert.equal(r.code, 0, `${args.join(' ')}: ${show(r)}`);
        for (const line of r.stdout.split('\n')) assert.ok(line.length <= 80, `${args[0]}: line over 80 columns: ${line}`);
      }

      // segment show against the API and the app's published access counts.
      const ro = track(await Database.open(dbDir, { readOnly: true, workers: 1 }));
      const published = await readPublishedStats(dbDir);
      assert.ok(published?.access, 'the app publishes access statistics');
      for (const id of [segs[0]!, segs[2]!, segs[3]!]) {
        const shown = await json(['segment', 'show', dbDir, id]) as unknown as SegmentDetail & { copies: string[]; access: { source: string; pid: number; frequency: number; hits: Record<string, number> } };
        const api = await ro.collection('docs').describeSegment(id);
        assert.deepEqual(shown.sections, JSON.parse(JSON.stringify(api.sections)), `${id}: sections as the API has them`);
        assert.deepEqual([shown.local ?? null, shown.remote ?? null, shown.rawBytes], JSON.parse(JSON.stringify([api.local, api.remote, api.rawBytes])), `${id}: copies`);
        assert.ok(api.remote, `${id} has a remote copy`);
        assert.ok(api.sections.reduce((n, s) => n + s.remote!.storedBytes!, 0) < api.remote.bytes, `${id}: sections fit in the object`);
        for (const s of api.sections) {
          assert.ok(['none', 'deflate', 'shuffleDeflate'].includes(s.remote!.codec), `${id} ${s.name}: codec ${s.remote!.codec}`);
          assert.equal(s.remote!.ratio, s.remote!.storedBytes! / s.rawBytes);
          if (api.tier !== 'cold') assert.deepEqual([s.local!.codec, s.local!.storedBytes], ['none', s.rawBytes], `${id} ${s.name}: the local file is raw`);
        }
        assert.equal(api.remote.ratio, api.remote.bytes / api.rawBytes);
        assert.equal(shown.access.source, 'published');
        assert.equal(shown.access.pid, pid);
        const fromFile = publishedAccess(published!, id, published!.writtenAt);
        if (id === segs[0]) {
          assert.equal(fromFile, undefined, 'the app never read the cold segment');
          assert.equal(shown.access.frequency, 0);
          continue;
        }
        assert.ok(fromFile, `${id}: the app read it`);
        assert.ok(shown.access.frequency > 0 && shown.access.frequency <= fromFile.frequency, `${id}: frequency ${shown.access.frequency} decayed from ${fromFile.frequency}`);
        assert.deepEqual(shown.access.hits, fromFile.hits);
        assert.equal(Object.values(shown.access.hits).reduce((a, b) => a + b, 0), id === segs[2] ? 2 : 1, `${id}: one hit per id read`);
      }
      const text = await cli(['segment', 'show', dbDir, segs[0]!]);
      assert.match(text.stdout, /^section +raw +local codec/m);
      assert.match(text.stdout, /^vectors /m);
      assert.match(text.stdout, new RegExp(`process ${pid}'s published stats`));

      // Reads through the API's read-only open, beside the writer: every record, cold ones too.
      await checkRecords(ro, ids, 'read-only open');
      assert.equal((await ro.collection('docs').search(rowVector('s0', 3, DIM), { k: 1 }))[0]?.id, 's0-3');
      const col = ro.collection('docs');
      for (const [what, call] of [
        ['upsert', () => col.upsert([{ id: 'x', vector: new Float32Array(DIM) }])], ['delete', () => col.delete(['s0-1'])], ['flush', () => col.flush()],
        ['pin', () => col.pin(segs[2]!, 'cold')], ['unpin', () => col.unpin(segs[3]!)], ['createIndex', () => col.createIndex({ tag: 'keyword' })],
        ['createCollection', () => ro.createCollection('other', { dimension: 2 })], ['dropCollection', () => ro.dropCollection('docs')],
        ['migrate', () => ro.migrate(segs[2]!, 'cold')], ['compact', () => ro.compact()], ['gc', () => ro.gc()],
        ['verify repair', () => ro.verify({ repair: true })], ['tiering apply', () => ro.tiering.apply()],
      ] as const) {
        await assert.rejects(call(), hasCode('ERR_READ_ONLY'), what);
      }
      assert.equal((await ro.gc({ dryRun: true })).dryRun, true);
      await ro.close();

      for (const args of [['pin', dbDir, segs[2]!, 'cold'], ['migrate', dbDir, segs[2]!, '--to', 'cold'], ['gc', dbDir], ['verify', dbDir, '--repair'], ['compact', dbDir], ['repair-manifest', dbDir]]) {
        const r = await cli(args);
        assert.equal(r.code, 1, `${args.join(' ')}: ${show(r)}`);
        assert.match(r.stderr, /ERR_DATABASE_LOCKED/, args.join(' '));
        assert.match(r.stderr, /in use by another process/, args.join(' '));
      }

      assert.deepEqual(await hashTree(dbDir, notStats), before, 'nothing in the directory changed');
      assert.deepEqual(await hashTree(storeDir), storeBefore, 'nothing in the object store changed');
      const leftover = [...(await scratchDirs())].filter((n) => !scratchBefore.has(n));
      assert.deepEqual(leftover, [], 'scratch directories removed at close');

      // While the app commits versions and drops WAL files, read-only opens still see a
      // consistent state: every acknowledged row, never an error.
      const churn = app.send('churn c 6');
      let opens = 0;
      for (let k = 0; k < 4; k++) {
        const view = await Database.open(dbDir, { readOnly: true, workers: 1 });
        try {
          assert.ok(view.collection('docs').count() >= ids.length, `view ${k}: ${view.collection('docs').count()} rows`);
          await checkRecords(view, ids, `view ${k}`);
          opens++;
        } finally {
          await view.close();
        }
      }
      assert.equal(await churn, `OK ${ids.length + 120}`);
      assert.equal(opens, 4);
    } finally {
      await app.quit();
    }
    assert.equal(existsSync(path.join(dbDir, 'LOCK')), false);
  }));
});

test('a corrupt newest manifest: commands point at repair-manifest; verify --repair restores it from the bucket and every record reads back', async () => {
  await withTmpDir('cli-manifest', async (dir) => {
    const { dbDir, ids, segs } = await appDatabase(dir);
    const mdir = path.join(dbDir, 'collections', 'docs', 'manifest');
    const newest = (await fsp.readdir(mdir)).filter((n) => n.endsWith('.manifest')).sort().at(-1)!;
    const size = (await fsp.stat(path.join(mdir, newest))).size;
    await flipByte(path.join(mdir, newest), size - 10);
    await assert.rejects(Database.open(dbDir, QUIET), hasCode('ERR_MANIFEST_CORRUPT'));

    const blocked = await cli(['status', dbDir]);
    assert.equal(blocked.code, 1, show(blocked));
    assert.match(blocked.stderr, /ERR_MANIFEST_CORRUPT[\s\S]*repair-manifest/);

    const before = await hashTree(dbDir);
    const dry = await cli(['repair-manifest', dbDir, '--dry-run', '--json']);
    assert.equal(dry.code, 0, show(dry));
    const dj = JSON.parse(dry.stdout) as { collections: Array<{ action: string; version: number }> };
    assert.equal(dj.collections[0]!.action, 'restored');
    assert.deepEqual(await hashTree(dbDir), before, 'a dry run changes nothing');

    const repair = await cli(['verify', dbDir, '--repair', '--json']);
    assert.equal(repair.code, 0, show(repair));
    const rj = JSON.parse(repair.stdout) as { manifestRecovery: Array<{ collection: string; action: string; version: number; quarantined: string[] }>; manifests: Array<{ status: string }>; exitCode: number };
    assert.deepEqual(rj.manifestRecovery.map((m) => [m.collection, m.action, m.version]), [['docs', 'restored', Number(newest.slice(0, 12))]]);
    assert.equal(rj.manifestRecovery[0]!.quarantined.length, 1);
    assert.ok(existsSync(path.join(dbDir, rj.manifestRecovery[0]!.quarantined[0]!)), 'the corrupt file is kept in quarantine');
    assert.deepEqual(rj.manifests.map((m) => m.status), ['ok']);

    const again = await cli(['repair-manifest', dbDir]);
    assert.equal(again.code, 0, show(again));
    assert.match(again.stdout, /docs: ok/);

    const db = track(await Database.open(dbDir, QUIET));
    const col = db.collection('docs');
    assert.deepEqual(col.segments().map((s) => [s.id, s.tier === 'hot' ? 'warm' : s.tier, s.pinned]),
      segs.map((id, k) => [id, k < 2 ? 'cold' : 'warm', k === 3 ? 'hot' : undefined]), 'segments, tiers and pins as before');
    assert.equal(col.count(), ids.length);
    await checkRecords(db, ids, 'after the restore');
    await db.close();
  });
});

test('repair-manifest with no good remote version says so and exits 3, changing nothing', async () => {
  await withTmpDir('cli-manifest-lost', async (dir) => {
    const { dbDir, storeDir } = await appDatabase(dir);
    const mdir = path.join(dbDir, 'collections', 'docs', 'manifest');
    const newest = (await fsp.readdir(mdir)).filter((n) => n.endsWith('.manifest')).sort().at(-1)!;
    await flipByte(path.join(mdir, newest), 40);
    // The bucket's copy of that version is gone too (older ones are older than the local good one).
    await fsp.rm(path.join(storeDir, 'docs', 'manifest'), { recursive: true, force: true });
    const before = await hashTree(dbDir);
    const r = await cli(['repair-manifest', dbDir, '--json']);
    assert.equal(r.code, 3, show(r));
    const j = JSON.parse(r.stdout) as { collections: Array<{ action: string; detail: string }>; failed: string[] };
    assert.equal(j.collections[0]!.action, 'failed');
    assert.deepEqual(j.failed, ['docs']);
    assert.deepEqual(await hashTree(dbDir), before);
    await assert.rejects(Database.open(dbDir, QUIET), hasCode('ERR_MANIFEST_CORRUPT'));
  });
});

test('readOnly: checked as an option; on a closed database it removes no leftover, truncates no torn WAL tail, writes no stub', async () => {
  await withTmpDir('ro-api', async (dir) => {
    await assert.rejects(Database.open(path.join(dir, 'none'), { readOnly: true }), hasCode('ERR_DATABASE_NOT_FOUND'));
    assert.equal(existsSync(path.join(dir, 'none')), false, 'nothing created');
    await assert.rejects(Database.open(path.join(dir, 'none'), { readOnly: true, create: true }), hasCode('ERR_INVALID_ARGUMENT'));
    await assert.rejects(Database.open(path.join(dir, 'none'), { readOnly: 'yes' as unknown as boolean }), TypeError);

    const { dbDir, ids, segs } = await appDatabase(dir);
    const col = path.join(dbDir, 'collections', 'docs');
    const wal = (await fsp.readdir(path.join(col, 'wal'))).sort().at(-1)!;
    // A crash mid-append: half a frame at the end of the WAL. Plus what a crashed seal and a
    // crashed manifest write leave, and a cold segment's id stub gone.
    await fsp.appendFile(path.join(col, 'wal', wal), Buffer.from([200, 0, 0, 0, 1, 2, 3]));
    await fsp.writeFile(path.join(col, 'segments', '00000099.seg'), 'left by a crashed seal');
    await fsp.writeFile(path.join(col, 'manifest', '.tmp-000000000099.manifest'), 'half');
    const stub = (await fsp.readdir(path.join(col, 'segments'))).find((n) => n.endsWith('.stub'))!;
    await fsp.rm(path.join(col, 'segments', stub));
    const before = await hashTree(dbDir);
    const db = track(await Database.open(dbDir, { readOnly: true, workers: 1 }));
    assert.equal(db.readOnly, true);
    assert.equal(db.collection('docs').count(), ids.length, 'every acknowledged row, the torn frame left out');
    await checkRecords(db, ids, 'read-only open of a crashed database');
    assert.deepEqual(db.collection('docs').segments().map((s) => s.status), segs.map(() => 'ok'), 'the stubless cold segment read its ids from the bucket');
    const v = await db.verify();
    assert.ok(v.segments.some((s) => s.copies.some((c) => c.copy === 'stub' && c.status === 'missing')), 'verify reports the missing stub');
    await db.close();
    assert.deepEqual(await hashTree(dbDir), before, 'nothing in the directory changed');
    // The next writable open cleans up as usual.
    const w = track(await Database.open(dbDir, QUIET));
    assert.equal(w.collection('docs').count(), ids.length);
    await w.close();
    assert.equal(existsSync(path.join(col, 'segments', '00000099.seg')), false);
  });
});
