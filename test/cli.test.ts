// The admin CLI as an operator runs it: the built dist/cli/main.js as a child process on a real
// database with segments in the warm and cold tiers (cold on a file store outside the directory,
// and on s3rver for the unreachable-store case). Each numbered bug of issue 11 that the CLI fixes
// has a regression test here: a typo'd flag changes nothing and exits 2; a missing directory is
// not created; verify with an unreachable store exits non-zero; migrate without flags uses the
// recorded store; `| head` leaves no stack trace and no LOCK; Ctrl-C finishes the move in flight.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Database, type DatabaseOptions } from '../engine/index.js';
import { startS3rver, S3RVER_CREDENTIALS } from '../harness/s3rver.js';
import { hashTree, hasCode, track, withTmpDir } from './helpers/tmp.js';
import { MAIN, cli, show, type Run } from './helpers/cli-run.js';

const DIM = 8;
const QUIET: DatabaseOptions = { workers: 1, tiering: { intervalMs: 0 }, maintenance: { gcIntervalMs: 0, scrubIntervalMs: 0, compactIntervalMs: 0 } };

/** A shell pipeline `stratavec ARGS | true`: the reader is gone before the CLI writes. */
function cliIntoClosedPipe(args: string[]): Promise<Run> {
  const quoted = [process.execPath, MAIN, ...args].map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(' ');
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-c', `${quoted} | true; exit \${PIPESTATUS[0]}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}


/**
 * An app's database: `segments` sealed segments of 50 rows in collection docs, the first `cold` of
 * them moved to the object store (a file store outside the directory unless given), closed.
 */
async function appDatabase(dir: string, opts: { segments?: number; cold?: number; objectStore?: DatabaseOptions['objectStore'] } = {}): Promise<{ dbDir: string; storeUrl: string | undefined; ids: string[] }> {
  const dbDir = path.join(dir, 'db');
  const storeUrl = opts.objectStore === undefined ? pathToFileURL(path.join(dir, 'extstore')).href : undefined;
  const db = track(await Database.open(dbDir, { ...QUIET, segmentMaxRecords: 50, objectStore: opts.objectStore ?? storeUrl! }));
  const col = await db.createCollection('docs', { dimension: DIM });
  const n = opts.segments ?? 4;
  for (let s = 0; s < n; s++) {
    await col.upsert(Array.from({ length: 50 }, (_, i) => ({ id: `s${s}-${i}`, vector: Array.from({ length: DIM }, (_, j) => s + i * 0.01 + j), payload: { s } })));
    await col.flush();
  }
  await db.flushUploads();
  const ids = col.segments().map((x) => x.id);
  for (const id of ids.slice(0, opts.cold ?? 2)) await db.migrate(id, 'cold');
  await db.close();
  return { dbDir, storeUrl, ids };
}

test('a typo in a flag, or a value given to a switch, exits 2 with one line and changes nothing (issue 11 #1)', async () => {
  await withTmpDir('cli-flags', async (dir) => {
    const { dbDir } = await appDatabase(dir);
    // A delete was left behind so a real compaction or GC would have work to do.
    const db = track(await Database.open(dbDir, QUIET));
    await db.collection('docs').delete(Array.from({ length: 20 }, (_, i) => `s3-${i}`));
    await db.close();
    const before = await hashTree(dbDir);
    for (const args of [
      ['compact', dbDir, '--dry_run'], ['gc', dbDir, '--dryrun'], ['gc', dbDir, '--dry-run=true'], ['gc', dbDir, '-x'],
      ['info', '--verbose', dbDir], ['info', dbDir, '--json=true'], ['migrate', dbDir, 'all', '--to'], ['migrate', dbDir, 'all', '--to', 'cold', '--forse'],
      ['migrate', dbDir, 'all'], ['info', dbDir, 'extra'], ['info', dbDir, '--object-store'], ['info', dbDir, '--object-store', '--json'],
      ['gc', dbDir, '--grace', 'soon'], ['segments', dbDir, 'docs', '--tier', 'lukewarm'], ['nosuch', dbDir], ['tiering', dbDir],
      ['compact', dbDir, '--include-cold'],
    ]) {
      const r = await cli(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${show(r)}`);
      assert.equal(r.stdout, '', args.join(' '));
      const lines = r.stderr.trim().split('\n');
      assert.equal(lines.length, 1, `${args.join(' ')}: one line, got ${r.stderr}`);
      assert.match(lines[0]!, /--help/, args.join(' '));
    }
    assert.deepEqual(await hashTree(dbDir), before, 'no command changed the database');
    // -n is --dry-run: the short form works and is a dry run too.
    const dry = await cli(['gc', dbDir, '-n', '--json']);
    assert.equal(dry.code, 0, show(dry));
    assert.equal((JSON.parse(dry.stdout) as { dryRun: boolean }).dryRun, true);
    assert.deepEqual(await hashTree(dbDir), before, 'gc -n changed nothing');
  });
});

test('help, --version, and usage with no command', async () => {
  const pkg = JSON.parse(await fsp.readFile(fileURLToPath(new URL('../../package.json', import.meta.url)), 'utf8')) as { version: string };
  const v = await cli(['--version']);
  assert.equal(v.code, 0);
  assert.equal(v.stdout.trim(), pkg.version);
  for (const args of [['--help'], ['-h'], ['help']]) {
    const r = await cli(args);
    assert.equal(r.code, 0, show(r));
    for (const word of ['status', 'segment show', 'migrate', 'STRATAVEC_DIR', 'STRATAVEC_OBJECT_STORE', 'STRATAVEC_ENDPOINT', 'exit codes']) assert.ok(r.stdout.includes(word), `${args[0]} mentions ${word}`);
  }
  for (const args of [['help', 'migrate'], ['migrate', '--help'], ['migrate', '-h']]) {
    const r = await cli(args);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /--force/);
    assert.match(r.stdout, /--to TIER/);
  }
  const none = await cli([]);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /usage: stratavec/);
});

test('a directory that is not a database is exit 1 and is not created (issue 11 #2)', async () => {
  await withTmpDir('cli-missing', async (dir) => {
    const missing = path.join(dir, 'nonexistent', 'x', 'y');
    for (const command of ['info', 'verify', 'status', 'gc', 'compact']) {
      const r = await cli([command, missing]);
      assert.equal(r.code, 1, `${command}: ${show(r)}`);
      assert.match(r.stderr, /ERR_DATABASE_NOT_FOUND/);
      assert.equal(existsSync(path.join(dir, 'nonexistent')), false, `${command} created the directory`);
    }
    const empty = path.join(dir, 'empty');
    await fsp.mkdir(empty);
    const r = await cli(['verify', empty]);
    assert.equal(r.code, 1, show(r));
    assert.deepEqual(await fsp.readdir(empty), [], 'verify wrote nothing into an empty directory');
    await assert.rejects(Database.open(missing, { create: false }), hasCode('ERR_DATABASE_NOT_FOUND'));
    assert.equal(existsSync(path.join(dir, 'nonexistent')), false);
  });
});

test('the CLI uses the recorded object store and settings; a different store is refused (issue 11 #4, #5, #9)', async () => {
  await withTmpDir('cli-store', async (dir) => {
    const { dbDir, storeUrl, ids } = await appDatabase(dir);
    const config = JSON.parse(await fsp.readFile(path.join(dbDir, 'config.json'), 'utf8')) as { objectStore: string; segmentMaxRecords: number };
    assert.equal(config.objectStore, storeUrl);
    assert.equal(config.segmentMaxRecords, 50);

    const warm = ids[2]!;
    const r = await cli(['migrate', dbDir, warm, '--to', 'cold', '--json']);
    assert.equal(r.code, 0, show(r));
    const out = JSON.parse(r.stdout) as { summary: { moved: number }; exitCode: number };
    assert.equal(out.summary.moved, 1);
    assert.equal(out.exitCode, 0);
    assert.equal(existsSync(path.join(dbDir, 'objects')), false, 'nothing went to the default store');
    // The app, opened with its own store as always, reads the segment the CLI moved.
    const db = track(await Database.open(dbDir, { ...QUIET, objectStore: storeUrl! }));
    const col = db.collection('docs');
    assert.equal(col.segments().find((s) => s.id === warm)?.tier, 'cold');
    const [rec] = await col.get(['s2-7']);
    assert.equal(rec?.id, 's2-7');
    assert.equal(db.options.segmentMaxRecords, 50, 'an open without options gets the recorded ones');
    await db.close();

    // The CLI plans with the app's settings: compaction's "small" is half of the recorded 50 rows.
    const plan = await cli(['compact', dbDir, '--dry-run', '--json']);
    assert.equal(plan.code, 0, show(plan));
    assert.deepEqual((JSON.parse(plan.stdout) as { plans: Array<{ groups: unknown[] }> }).plans.flatMap((p) => p.groups), [], 'full 50-row segments are not small');

    const other = path.join(dir, 'other');
    for (const store of [other, pathToFileURL(other).href]) {
      const m = await cli(['info', dbDir, '--object-store', store]);
      assert.equal(m.code, 1, show(m));
      assert.match(m.stderr, /ERR_OBJECT_STORE_MISMATCH/);
    }
    assert.equal(existsSync(other), false, 'a mistyped store is not created');
    await assert.rejects(Database.open(dbDir, { ...QUIET, objectStore: pathToFileURL(other).href }), hasCode('ERR_OBJECT_STORE_MISMATCH'));
    const same = await cli(['info', dbDir, '--object-store', fileURLToPath(storeUrl!), '--json']);
    assert.equal(same.code, 0, show(same));

    for (const [args, pattern] of [
      [['info', dbDir, '--object-store', 'file://relative/x'], /three slashes/],
      [['info', dbDir, '--endpoint', 'http://127.0.0.1:1'], /needs --object-store/],
      [['info', dbDir, '--object-store', 'http://example.com/x'], /file:\/\/ and s3:\/\//],
    ] as const) {
      const e = await cli([...args]);
      assert.equal(e.code, 2, show(e));
      assert.match(e.stderr, pattern);
      assert.doesNotMatch(e.stderr, /\n\s+at /, 'no stack trace');
    }
    const envEndpoint = await cli(['info', dbDir], { STRATAVEC_ENDPOINT: 'http://127.0.0.1:1' });
    assert.equal(envEndpoint.code, 2, show(envEndpoint));
    await assert.rejects(Database.open(path.join(dir, 'x'), { objectStore: 'file://relative/x' }), hasCode('ERR_INVALID_ARGUMENT'));
  });
});

test('compact --cluster --include-cold lays out the cold segments too', async () => {
  await withTmpDir('cli-cluster', async (dir) => {
    const { dbDir, ids } = await appDatabase(dir);
    const r = await cli(['compact', dbDir, '--cluster', '--include-cold', '--json']);
    assert.equal(r.code, 0, show(r));
    const report = JSON.parse(r.stdout) as { clustered: Array<{ sources: string[]; records: number; segmentIds: string[] }> };
    assert.deepEqual([...report.clustered[0]!.sources].sort(), [...ids].sort(), 'every segment, the two cold ones included, is a source');
    assert.equal(report.clustered[0]!.records, 200);
    const db = track(await Database.open(dbDir, QUIET));
    const col = db.collection('docs');
    assert.deepEqual(col.segments().map((s) => s.id), report.clustered[0]!.segmentIds);
    assert.ok(col.segments().every((s) => s.tier === 'warm' && s.region !== undefined), JSON.stringify(col.segments()));
    const all = Array.from({ length: 200 }, (_, i) => `s${Math.floor(i / 50)}-${i % 50}`);
    assert.ok((await col.get(all)).every((x, i) => x?.id === all[i]), 'every record is there');
    await db.close();
  });
});

test('compact --cluster lays out with the recent queries the app saved at its close; --by-space ignores them', async () => {
  await withTmpDir('cli-cluster-heat', async (dir) => {
    const { dbDir } = await appDatabase(dir, { cold: 0 });
    const db = track(await Database.open(dbDir, QUIET));
    for (let q = 0; q < 40; q++) await db.collection('docs').search(Array.from({ length: DIM }, (_, j) => (q % 4) + j), { k: 5 });
    await db.close();
    type Report = { clustered: Array<{ heat?: { queries: number; unused?: string } }> };
    const run = async (args: string[]) => {
      const r = await cli(['compact', dbDir, '--cluster', ...args, '--json']);
      assert.equal(r.code, 0, show(r));
      return (JSON.parse(r.stdout) as Report).clustered[0]!;
    };
    const heat = (await run([])).heat;
    assert.equal(heat?.queries, 40, `the CLI's compaction got the app's 40 queries: ${JSON.stringify(heat)}`);
    assert.match(heat?.unused ?? '', /fewer than 256/, 'too few to lay out by: said so');
    assert.equal((await run(['--by-space'])).heat, undefined, '--by-space sends no queries');
    const alone = await cli(['compact', dbDir, '--by-space']);
    assert.equal(alone.code, 2, show(alone));
    assert.match(alone.stderr, /--by-space goes with --cluster/);
  });
});

test('STRATAVEC_DIR and --dir name the database; --json on every command parses and agrees with the API', async () => {
  await withTmpDir('cli-json', async (dir) => {
    const { dbDir, ids } = await appDatabase(dir);
    const viaEnv = await cli(['info', '--json'], { STRATAVEC_DIR: dbDir });
    assert.equal(viaEnv.code, 0, show(viaEnv));
    const viaFlag = await cli(['info', '--dir', dbDir, '--json']);
    assert.deepEqual(JSON.parse(viaFlag.stdout), JSON.parse(viaEnv.stdout));
    // With the variable set, a positional is not taken as the directory: refused, not guessed.
    const stray = await cli(['info', dbDir], { STRATAVEC_DIR: dbDir });
    assert.equal(stray.code, 2, show(stray));

    const db = track(await Database.open(dbDir, QUIET));
    const api = db.collection('docs').segments();
    await db.close();
    const info = JSON.parse((await cli(['info', dbDir, '--json'])).stdout) as Array<{ name: string; segments: Array<{ id: string; tier: string }> }>;
    assert.deepEqual(info[0]!.segments.map((s) => [s.id, s.tier]), api.map((s) => [s.id, s.tier]));
    const status = JSON.parse((await cli(['status', dbDir, '--json'])).stdout) as { tiers: Record<string, { segments: number }>; unavailable: string[] };
    assert.equal(status.tiers['cold']!.segments, api.filter((s) => s.tier === 'cold').length);
    assert.equal(status.tiers['warm']!.segments, api.filter((s) => s.tier === 'warm').length);
    assert.deepEqual(status.unavailable, []);
    const cold = JSON.parse((await cli(['segments', dbDir, 'docs', '--tier', 'cold', '--json'])).stdout) as Array<{ id: string }>;
    assert.deepEqual(cold.map((s) => s.id), api.filter((s) => s.tier === 'cold').map((s) => s.id));
    const one = JSON.parse((await cli(['segment', 'show', dbDir, ids[0]!, '--json'])).stdout) as { id: string; tier: string; copies: string[] };
    assert.equal(one.tier, 'cold');
    assert.deepEqual(one.copies, ['remote', 'stub']);
    for (const args of [['stats', dbDir, '--json'], ['tiering', 'plan', dbDir, '--json'], ['verify', dbDir, '--json'], ['gc', dbDir, '--dry-run', '--json'], ['compact', dbDir, '--dry-run', '--json']]) {
      const r = await cli(args);
      assert.equal(r.code, 0, `${args.join(' ')}: ${show(r)}`);
      assert.doesNotThrow(() => JSON.parse(r.stdout), `${args.join(' ')} prints one JSON document`);
    }
    const text = await cli(['status', dbDir]);
    for (const line of text.stdout.split('\n')) assert.ok(line.length <= 80, `status line over 80 columns: ${line}`);
    assert.match(text.stdout, /KiB/);
    const missing = await cli(['segment', 'show', dbDir, 'docs.99']);
    assert.equal(missing.code, 1, show(missing));
    assert.match(missing.stderr, /ERR_SEGMENT_NOT_FOUND/);
  });
});

test('pins: migrate refuses a pinned segment unless --force; --to hot pins; tiering apply does not redo it (issue 11 #6, #7)', async () => {
  await withTmpDir('cli-pin', async (dir) => {
    const { dbDir, ids } = await appDatabase(dir);
    const [, , a, b] = ids as [string, string, string, string];
    assert.equal((await cli(['pin', dbDir, a, 'warm'])).code, 0);
    const refused = await cli(['migrate', dbDir, a, '--to', 'cold', '--json']);
    assert.equal(refused.code, 1, show(refused));
    const rj = JSON.parse(refused.stdout) as { summary: { refused: number; moved: number }; exitCode: number };
    assert.deepEqual([rj.summary.refused, rj.summary.moved, rj.exitCode], [1, 0, 1]);
    let db = track(await Database.open(dbDir, QUIET));
    assert.equal(db.collection('docs').segments().find((s) => s.id === a)?.tier, 'warm', 'the refused segment did not move');
    await db.close();
    const forced = await cli(['migrate', dbDir, a, '--to', 'cold', '--force']);
    assert.equal(forced.code, 0, show(forced));

    const hot = await cli(['migrate', dbDir, b, '--to', 'hot']);
    assert.equal(hot.code, 0, show(hot));
    db = track(await Database.open(dbDir, QUIET));
    const after = new Map(db.collection('docs').segments().map((s) => [s.id, s]));
    assert.equal(after.get(a)?.tier, 'cold');
    assert.equal(after.get(a)?.pinned, 'cold', '--force re-pins to the new tier');
    assert.equal(after.get(b)?.pinned, 'hot', '--to hot is recorded as a pin');
    // The serving process's tiering policy promotes a hot-pinned segment (and keeps it there).
    assert.ok((await db.tiering.plan()).moves.some((m) => m.segmentId === b && m.to === 'hot'), 'the app plans the pinned promotion');
    await db.tiering.apply();
    assert.equal(db.collection('docs').segments().find((s) => s.id === b)?.tier, 'hot');
    await db.close();
    for (let i = 0; i < 2; i++) {
      const apply = await cli(['tiering', 'apply', dbDir, '--json']);
      assert.equal(apply.code, 0, show(apply));
      const aj = JSON.parse(apply.stdout) as { summary: { moved: number }; results: Array<{ segmentId: string }> };
      assert.ok(!aj.results.some((m) => m.segmentId === b), `run ${i}: the hot pin is not re-applied by the CLI`);
    }
    const un = await cli(['unpin', dbDir, b, '--json']);
    assert.equal(un.code, 0, show(un));
    assert.equal((JSON.parse(un.stdout) as { was: string }).was, 'hot');
  });
});

test('a closed stdout (| true) exits cleanly, without a stack trace, and releases the lock (issue 11 #8)', async () => {
  await withTmpDir('cli-epipe', async (dir) => {
    const { dbDir } = await appDatabase(dir, { segments: 6 });
    for (const args of [['info', dbDir], ['stats', dbDir], ['segments', dbDir, 'docs']]) {
      const r = await cliIntoClosedPipe(args);
      assert.equal(r.code, 0, `${args[0]}: ${show(r)}`);
      assert.doesNotMatch(r.stderr, /EPIPE|\n\s+at /, `${args[0]}: no stack trace`);
      assert.equal(existsSync(path.join(dbDir, 'LOCK')), false, `${args[0]} released the lock`);
    }
  });
});

test('Ctrl-C during a migration finishes the move in flight, prints a summary and releases the lock', async () => {
  await withTmpDir('cli-sigint', async (dir) => {
    const { dbDir, ids } = await appDatabase(dir, { segments: 12, cold: 0 });
    let sent = false;
    const r = await cli(['migrate', dbDir, 'all', '--to', 'cold', '--json'], {}, (err, child) => {
      if (!sent && /\[1\/12\]/.test(err)) {
        sent = true;
        child.kill('SIGINT');
      }
    });
    assert.ok(sent, 'the first move was reported');
    assert.equal(r.signal, null, `handled, not killed by the signal: ${show(r)}`);
    const j = JSON.parse(r.stdout) as { summary: { moved: number; skipped: number; failed: number; interrupted: boolean }; results: Array<{ segmentId: string; result: string }>; exitCode: number };
    // The signal races the remaining moves: it may land after the last one (then all moved, exit 0).
    if (r.code === 130) {
      assert.equal(j.summary.interrupted, true);
      assert.equal(j.exitCode, 130);
      assert.match(r.stderr, /interrupted/);
    } else {
      assert.equal(r.code, 0, show(r));
      assert.equal(j.summary.moved, ids.length);
    }
    assert.equal(j.summary.moved + j.summary.skipped, ids.length);
    assert.equal(j.summary.failed, 0);
    assert.equal(existsSync(path.join(dbDir, 'LOCK')), false, 'lock released');
    const db = track(await Database.open(dbDir, QUIET));
    const tiers = new Map(db.collection('docs').segments().map((s) => [s.id, s.tier]));
    for (const m of j.results) assert.equal(tiers.get(m.segmentId), m.result === 'moved' ? 'cold' : 'warm', `${m.segmentId} ${m.result}`);
    assert.equal(db.collection('docs').count(), ids.length * 50, 'every row still readable');
    await db.close();
  });
});

test('beside a running app: status reads it read-only and adds what the app publishes; commands that need the lock say it is in use', async () => {
  await withTmpDir('cli-running', async (dir) => {
    const { dbDir } = await appDatabase(dir);
    const app = track(await Database.open(dbDir, { ...QUIET, statsIntervalMs: 50 }));
    await app.collection('docs').search(new Float32Array(DIM), { k: 3 });
    const status = await cli(['status', dbDir, '--json']);
    assert.equal(status.code, 0, show(status));
    const sj = JSON.parse(status.stdout) as { collections: Array<{ name: string; records: number }>; serving: { pid: number } | null };
    assert.equal(sj.serving?.pid, process.pid);
    assert.deepEqual(sj.collections.map((c) => [c.name, c.records]), [['docs', 200]]);
    const text = await cli(['status', dbDir]);
    assert.equal(text.code, 0, show(text));
    assert.match(text.stdout, new RegExp(`serving process ${process.pid}`));
    const stats = await cli(['stats', dbDir, '--json']);
    assert.equal((JSON.parse(stats.stdout) as { source: string }).source, 'published');
    const info = await cli(['info', dbDir]);
    assert.equal(info.code, 0, show(info));
    const pin = await cli(['pin', dbDir, 'docs.3', 'cold']);
    assert.equal(pin.code, 1, show(pin));
    assert.match(pin.stderr, /ERR_DATABASE_LOCKED[\s\S]*in use by another process/);
    await app.close();
    const last = JSON.parse(await fsp.readFile(path.join(dbDir, 'stats.json'), 'utf8')) as { open: boolean };
    assert.equal(last.open, false, 'close() publishes a last time');
  });
});

test('verify and gc exit non-zero when the object store is unreachable (issue 11 #3, #10)', async () => {
  const server = await startS3rver();
  try {
    await withTmpDir('cli-s3', async (dir) => {
      const objectStore = { url: `s3://${server.bucket}/cli`, endpoint: server.endpoint, forcePathStyle: true, credentials: { ...S3RVER_CREDENTIALS } };
      const { dbDir, ids } = await appDatabase(dir, { objectStore });
      const config = await fsp.readFile(path.join(dbDir, 'config.json'), 'utf8');
      assert.doesNotMatch(config, /S3RVER|secret|accessKey/i, 'no credentials recorded');
      // Credentials from the environment, as an operator's shell has them; the store from the record.
      const env = { AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId, AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey, AWS_REGION: 'us-east-1' };
      const ok = await cli(['verify', dbDir, '--json'], env);
      assert.equal(ok.code, 0, show(ok));
      await server.stop();
      const down = await cli(['verify', dbDir, '--json'], env);
      assert.equal(down.code, 3, show(down));
      const dj = JSON.parse(down.stdout) as { problems: { unverified: string[] }; exitCode: number };
      assert.equal(dj.exitCode, 3);
      assert.deepEqual(dj.problems.unverified.sort(), ids.slice(0, 2).sort(), 'the cold segments could not be checked');
      const text = await cli(['verify', dbDir], env);
      assert.equal(text.code, 3);
      assert.match(text.stdout, /NOT CHECKED/);
      const gc = await cli(['gc', dbDir, '--json'], env);
      assert.equal(gc.code, 1, show(gc));
      assert.equal((JSON.parse(gc.stdout) as { exitCode: number }).exitCode, 1);
    });
  } finally {
    await server.destroy();
  }
});
