// The worker pool's failure modes on real piscina threads: a thread that exits, a task that throws,
// a thread killed by an uncaught error, a task that runs past the timeout, a seal stopped half-way
// through building or writing its file, and a pool destroyed under queued work. Each surfaces as a
// coded error, the pool keeps serving afterwards, and no partial file appears under a final name.
// Fault-injecting tasks live in helpers/faulty-tasks.ts, loaded through the pool's `filename`.

import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { StratavecError } from '../format/errors.js';
import { TEMP_PREFIX } from '../format/fsutil.js';
import { seal } from '../workers/seal.js';
import type { SealTask } from '../workers/seal.js';
import { WorkerPool } from '../workers/pool.js';
import { uniformDataset } from '../harness/datasets.js';
import { hasCode, isTypeError, waitFor, withTmpDir } from './helpers/tmp.js';

const FAULTY = fileURLToPath(new URL('./helpers/faulty-tasks.js', import.meta.url));
/** The seed of the randomised test: fixed, so every run replays the same plan, unless STRATAVEC_TEST_SEED is set. */
const SEED = Number(process.env['STRATAVEC_TEST_SEED'] ?? 1);
/** Whether /proc/self/task lists this process's threads, so a test can watch one exit. */
const PROC_TASKS = existsSync('/proc/self/task');

/** run() for the test-only task names, which the pool's TaskName type does not list. */
function runAny(pool: WorkerPool, name: string, input: unknown): Promise<unknown> {
  return (pool.run as (n: string, i: unknown) => Promise<unknown>)(name, input);
}

async function withPool<T>(threads: number, opts: { taskTimeoutMs?: number; nice?: number }, fn: (pool: WorkerPool) => Promise<T>): Promise<T> {
  const pool = new WorkerPool(threads, { filename: FAULTY, ...opts });
  try {
    return await fn(pool);
  } finally {
    await pool.destroy();
  }
}

/** Resolves to the rejection of `p` (failing if it resolves), for assertions beyond hasCode. */
async function rejectionOf(p: Promise<unknown>): Promise<StratavecError> {
  let err: unknown;
  await assert.rejects(p, (e) => {
    err = e;
    return true;
  });
  assert.ok(err instanceof StratavecError, `expected a StratavecError, got ${String(err)}`);
  return err;
}

function sealTask(dir: string, count: number, dim: number, name = 'c.1.seg'): SealTask {
  const vectors = uniformDataset({ count, dim, seed: 5 });
  const shared = new SharedArrayBuffer(vectors.byteLength);
  new Float32Array(shared).set(vectors);
  return {
    segmentId: 'c.1', collection: 'c', outPath: path.join(dir, 'segments', name), tmpDir: path.join(dir, 'tmp'),
    dimension: dim, metric: 'l2', hnsw: { M: 16, efConstruction: 200, efSearch: 64 },
    vectors: shared, count, rows: null,
    ids: Array.from({ length: count }, (_, i) => `id-${i}`),
    payloads: Array.from({ length: count }, (_, i) => (i % 3 === 0 ? JSON.stringify({ i }) : null)),
    createdAt: 1_700_000_000_000, seed: 1,
  };
}

async function makeDirs(dir: string): Promise<void> {
  await fsp.mkdir(path.join(dir, 'segments'), { recursive: true });
  await fsp.mkdir(path.join(dir, 'tmp'), { recursive: true });
}

/**
 * The segments directory after a stopped seal: no final file, only temp files of that name.
 * `where` starts every message (a seed and trial, say).
 */
async function assertNoFinalFile(task: SealTask, where = ''): Promise<string[]> {
  const names = (await fsp.readdir(path.dirname(task.outPath))).sort();
  const base = path.basename(task.outPath);
  const at = where === '' ? '' : `${where}: `;
  assert.ok(!names.includes(base), `${at}${base} must not exist after a stopped seal; directory holds ${names.join(', ')}`);
  for (const n of names) assert.ok(n.startsWith(`${TEMP_PREFIX}${base}-`), `${at}unexpected file ${n} beside ${base} in [${names.join(', ')}]`);
  return names;
}

/**
 * Runs `attempt` (given its number) up to `tries` times, until one returns true: it provoked the
 * situation it is for. A loaded machine can start a task so late that a timed stop lands before
 * it began; an attempt says so (a string, kept for the message) instead of failing. Fails only if
 * no attempt provoked it.
 */
async function provoke(what: string, tries: number, attempt: (i: number) => Promise<string | true>): Promise<void> {
  const misses: string[] = [];
  for (let i = 0; i < tries; i++) {
    const r = await attempt(i);
    if (r === true) return;
    misses.push(`attempt ${i}: ${r}`);
  }
  assert.fail(`${what}: not provoked in ${tries} attempts (${misses.join('; ')})`);
}

/** Waits until the kernel thread `tid` of this process has exited (its /proc/self/task entry is gone). */
async function threadGone(tid: number, what: string): Promise<void> {
  await waitFor(() => !existsSync(`/proc/self/task/${tid}`), what);
}

describe('worker crashes', () => {
  test('process.exit in a worker is ERR_WORKER_FAILED, and the next task runs on a new thread', async () => {
    await withPool(1, {}, async (pool) => {
      const before = await runAny(pool, 'threadId', {});
      const err = await rejectionOf(runAny(pool, 'exitThread', { code: 3 }));
      assert.equal(err.code, 'ERR_WORKER_FAILED');
      assert.match(err.message, /worker thread running task exitThread exited with code 3/);
      const after = await runAny(pool, 'threadId', {});
      assert.equal(typeof after, 'number');
      assert.notEqual(after, before, 'the exited thread was replaced');
      assert.deepEqual({ ...pool.stats(), queued: 0 }, { threads: 1, nice: 10, completed: 2, failed: 1, timeouts: 0, queued: 0 });
    });
  });

  test('an uncaught error that kills the thread is ERR_WORKER_FAILED naming the error; the pool recovers', async () => {
    await withPool(1, {}, async (pool) => {
      const before = await runAny(pool, 'threadId', {});
      const err = await rejectionOf(runAny(pool, 'throwUncaught', { message: 'stray timer blew up' }));
      assert.equal(err.code, 'ERR_WORKER_FAILED');
      assert.match(err.message, /exited on an uncaught error: stray timer blew up/);
      assert.notEqual(await runAny(pool, 'threadId', {}), before);
    });
  });

  test('a thread that dies with no task on it neither crashes the process nor fails the next task', async () => {
    await withPool(1, {}, async (pool) => {
      const before = await runAny(pool, 'threadId', {});
      const { tid } = (await runAny(pool, 'threadNice', { ms: 0 })) as { tid: number };
      assert.equal(await runAny(pool, 'throwAfterReturn', { message: 'late failure', ms: 20 }), 'returned');
      // The thread dies with no task on it; the next run must go to its replacement, not race it.
      if (PROC_TASKS) {
        await threadGone(tid, 'the thread to die of its late error');
        // threadGone resolves in the timers phase; the thread's error and exit notices, posted
        // before its kernel thread ended, are delivered in the poll phase that follows.
        await new Promise((r) => setImmediate(r));
      } else await new Promise((r) => setTimeout(r, 300));
      const after = await runAny(pool, 'threadId', {});
      assert.notEqual(after, before, 'the late error killed the old thread');
      assert.equal(pool.stats().failed, 0);
    });
  });
  test('a task module that fails to load is ERR_WORKER_FAILED for every run, never a hang', async () => {
    await withTmpDir('pool', async (dir) => {
      const broken = path.join(dir, 'broken-tasks.mjs');
      await fsp.writeFile(broken, "throw new Error('task module failed to load');\nexport async function threadId() { return 1; }\n");
      const pool = new WorkerPool(2, { filename: broken });
      try {
        // piscina gives up replacing threads that die while starting; queued runs must not wait for ever.
        for (let i = 0; i < 3; i++) {
          const err = await rejectionOf(runAny(pool, 'threadId', {}));
          assert.equal(err.code, 'ERR_WORKER_FAILED');
          assert.match(err.message, /task module failed to load/);
        }
        const burst = await Promise.allSettled([1, 2, 3, 4].map(() => runAny(pool, 'threadId', {})));
        for (const r of burst) {
          assert.equal(r.status, 'rejected');
          hasCode('ERR_WORKER_FAILED')((r as PromiseRejectedResult).reason);
        }
        assert.equal(pool.stats().queued, 0);
      } finally {
        await pool.destroy();
      }
    });
  });
});

describe('task errors', () => {
  test('a plain Error thrown in a task is ERR_WORKER_FAILED with its message; the thread lives on', async () => {
    await withPool(1, {}, async (pool) => {
      const before = await runAny(pool, 'threadId', {});
      const err = await rejectionOf(runAny(pool, 'throwPlain', { message: 'plain failure 42' }));
      assert.equal(err.code, 'ERR_WORKER_FAILED');
      assert.equal(err.message, 'worker task throwPlain failed: plain failure 42');
      assert.equal(await runAny(pool, 'threadId', {}), before, 'a thrown error does not cost the thread');
    });
  });

  test('a StratavecError thrown in a real task keeps its code and message, pooled and inline alike', async () => {
    await withTmpDir('pool', async (dir) => {
      const garbage = path.join(dir, 'garbage.seg');
      await fsp.writeFile(garbage, Buffer.alloc(4096, 0x41));
      const cases: [string, unknown, string][] = [
        ['decodeColdCopy', { src: garbage, dest: garbage }, 'ERR_INVALID_ARGUMENT'],
        ['verifySegment', { path: garbage }, 'ERR_SEGMENT_CORRUPT'],
        ['verifySegment', { path: path.join(dir, 'missing.seg') }, 'ERR_SEGMENT_NOT_FOUND'],
        ['encodeColdCopy', { src: '', dest: garbage }, 'ERR_WORKER_FAILED'], // a TypeError in the task
        ['throwPlain', { message: 'same either way' }, 'ERR_WORKER_FAILED'],
        ['noSuchTask', {}, 'ERR_WORKER_FAILED'],
      ];
      const pooled = new WorkerPool(1, { filename: FAULTY });
      const inline = new WorkerPool(0, { filename: FAULTY });
      try {
        for (const [name, input, code] of cases) {
          const a = await rejectionOf(runAny(pooled, name, input));
          const b = await rejectionOf(runAny(inline, name, input));
          assert.equal(a.code, code, `${name} pooled: ${a.message}`);
          assert.equal(b.code, code, `${name} inline: ${b.message}`);
          if (name !== 'noSuchTask') assert.equal(a.message, b.message, `${name}: same message in both modes`);
        }
        assert.equal(pooled.stats().failed, cases.length);
        assert.equal(inline.stats().failed, cases.length);
      } finally {
        await pooled.destroy();
        await inline.destroy();
      }
    });
  });
});

describe('timeouts', () => {
  test('a task past taskTimeoutMs is ERR_WORKER_TIMEOUT (busy loop and timer alike); the pool keeps working', async () => {
    await withTmpDir('pool', async (dir) => {
      await withPool(1, { taskTimeoutMs: 500 }, async (pool) => {
        const first = await runAny(pool, 'threadId', {});
        for (const name of ['spin', 'sleep']) {
          const finished = path.join(dir, `${name}.finished`);
          const err = await rejectionOf(runAny(pool, name, { ms: 20_000, finished }));
          assert.equal(err.code, 'ERR_WORKER_TIMEOUT', err.message);
          // Neither task checks for a stop request, so both threads are terminated after the grace.
          assert.match(err.message, new RegExp(`worker task ${name} ran past the 500 ms task timeout; its thread was terminated$`));
          // Stopped, not waited for: the task never reached its end (and, its thread gone, never will).
          assert.equal(existsSync(finished), false, `${name} ran to its end before run() rejected`);
        }
        assert.equal(await runAny(pool, 'sleep', { ms: 10 }), 10);
        assert.notEqual(await runAny(pool, 'threadId', {}), first, 'the stopped threads were replaced');
        assert.deepEqual(pool.stats(), { threads: 1, nice: 10, completed: 3, failed: 2, timeouts: 2, queued: 0 });
        assert.deepEqual(await fsp.readdir(dir), [], 'a stopped task wrote its end marker after run() rejected');
      });
    });
  });

  test('run() rejects only once the stopped thread has exited, even when native code delays that', async () => {
    await withTmpDir('pool', async (root) => {
      await provoke('a stop during the native call', 5, async (i) => {
        const dir = path.join(root, `attempt-${i}`);
        await fsp.mkdir(dir);
        const [started, inside, marker] = ['started', 'inside', 'marker'].map((n) => path.join(dir, n)) as [string, string, string];
        return withPool(1, { taskTimeoutMs: 200 }, async (pool) => {
          await runAny(pool, 'threadId', {});
          // Asked to stop at 0.2 s; it does not answer (it never checks), so its thread is
          // terminated once the 1 s grace is over, about 1.2 s in. The thread is inside a 3 s
          // native call then, which termination cannot break: it exits only when the call returns.
          const err = await rejectionOf(runAny(pool, 'blockNative', { ms: 3_000, started, inside, marker }));
          assert.equal(err.code, 'ERR_WORKER_TIMEOUT', err.message);
          assert.match(err.message, /its thread was terminated$/, 'the thread exited within the pool\'s exit wait');
          if (!existsSync(inside)) return `terminated before the native call began (${(await fsp.readdir(dir)).join(', ')})`;
          const tid = await fsp.readFile(started, 'utf8');
          if (PROC_TASKS) {
            assert.match(tid, /^\d+$/);
            assert.equal(existsSync(`/proc/self/task/${tid}`), false, `run() rejected while thread ${tid} was still alive`);
          }
          assert.deepEqual(await fsp.readdir(dir), ['inside', 'started'], 'the stopped thread ran no more code after its native call');
          assert.equal(await runAny(pool, 'sleep', { ms: 5 }), 5);
          return true;
        });
      });
    });
  });

  test('thread start-up does not count against the timeout, after creation or after a crash', async () => {
    // Each thread's start-up is held at a gate (helpers/faulty-tasks.ts) that the test opens only
    // after waiting 1.5 s, longer than the 1 s limit, with the run already called; only the 100 ms
    // of the task itself may count. The log shows each run waited for a gated start-up.
    await withTmpDir('pool', async (dir) => {
      const gate = path.join(dir, 'gate');
      const log = `${gate}.log`;
      const runThroughGate = async (pool: WorkerPool): Promise<void> => {
        await fsp.appendFile(log, 'run\n');
        const sleeping = runAny(pool, 'sleep', { ms: 100 });
        sleeping.catch(() => undefined); // awaited below; a rejection must not go unhandled meanwhile
        await new Promise((r) => setTimeout(r, 1_500));
        await fsp.appendFile(log, 'opened\n');
        await fsp.writeFile(gate, '');
        assert.equal(await sleeping, 100);
      };
      let seen = 0;
      /**
       * The log lines since the last call, checked: the run was called, the gate opened, and only
       * then did thread `id` finish starting. (When it began waiting does not matter: a start-up
       * that reached the gate late took that long anyway.)
       */
      const checkPhase = async (id: unknown): Promise<void> => {
        const lines = (await fsp.readFile(log, 'utf8')).trim().split('\n').slice(seen);
        seen += lines.length;
        assert.ok(lines.includes(`waiting ${id}`), `thread ${id} did not start through the gate: ${lines.join(', ')}`);
        assert.deepEqual(lines.filter((l) => l !== `waiting ${id}`), ['run', 'opened', `booted ${id}`], lines.join(', '));
      };
      process.env['STRATAVEC_TEST_BOOT_GATE'] = gate;
      try {
        await withPool(1, { taskTimeoutMs: 1_000 }, async (pool) => {
          await runThroughGate(pool);
          const first = await runAny(pool, 'threadId', {});
          await checkPhase(first);
          await fsp.rm(gate); // closed again before the crash, so the replacement waits at it
          await assert.rejects(runAny(pool, 'exitThread', { code: 1 }), hasCode('ERR_WORKER_FAILED'));
          await runThroughGate(pool);
          const second = await runAny(pool, 'threadId', {});
          assert.notEqual(second, first);
          await checkPhase(second);
          assert.equal(pool.stats().timeouts, 0);
        });
      } finally {
        delete process.env['STRATAVEC_TEST_BOOT_GATE'];
      }
    });
  });

  test('time spent waiting for a thread does not count against the timeout', async () => {
    await withPool(1, { taskTimeoutMs: 1_000 }, async (pool) => {
      await runAny(pool, 'threadId', {}); // the thread is up
      // The last run waits at least 4 x 300 ms for the thread, more than the 1 s limit; each task
      // alone takes 300 ms, far under it.
      const runs = [1, 2, 3, 4, 5].map(() => runAny(pool, 'sleep', { ms: 300 }));
      assert.equal(pool.stats().queued, 4);
      assert.deepEqual(await Promise.all(runs), [300, 300, 300, 300, 300]);
      assert.equal(pool.stats().timeouts, 0);
    });
  });

  test('inline mode cannot time out: the limit is ignored', async () => {
    const pool = new WorkerPool(0, { filename: FAULTY, taskTimeoutMs: 50 });
    try {
      assert.equal(pool.taskTimeoutMs, 0);
      assert.equal(await runAny(pool, 'sleep', { ms: 150 }), 150);
    } finally {
      await pool.destroy();
    }
  });
});

describe('no partial file under the final name', () => {
  test('a real seal timed out mid-build stops itself: no segment file, and its thread seals the next one', async () => {
    await withTmpDir('pool', async (dir) => {
      await makeDirs(dir);
      // 20k x 64 with M 16 / efConstruction 200 takes ~13 s to build here; 2 s stops it early
      // and leaves ample time for the small seal afterwards, even on a loaded machine.
      const big = sealTask(dir, 20_000, 64);
      await withPool(1, { taskTimeoutMs: 2_000 }, async (pool) => {
        const thread = await runAny(pool, 'threadId', {});
        const err = await rejectionOf(pool.run('seal', big));
        assert.equal(err.code, 'ERR_WORKER_TIMEOUT', err.message);
        assert.match(err.message, /^worker task seal ran past the 2000 ms task timeout and was stopped$/);
        assert.equal(await runAny(pool, 'threadId', {}), thread, 'the build ended itself, so its thread was kept');
        assert.deepEqual(await assertNoFinalFile(big), []);
        // Nothing can still appear: run() rejected only after the thread had exited.
        await new Promise((r) => setTimeout(r, 200));
        assert.deepEqual(await fsp.readdir(path.join(dir, 'segments')), []);
        const tmpLeft = await fsp.readdir(path.join(dir, 'tmp'));
        for (const n of tmpLeft) assert.ok(n.startsWith(TEMP_PREFIX), `scratch ${n}`);

        const small = sealTask(dir, 200, 8, 'c.2.seg');
        const res = await pool.run('seal', small);
        assert.equal((await fsp.stat(small.outPath)).size, res.bytes);
        const verified = await pool.run('verifySegment', { path: small.outPath });
        assert.equal(verified.bytes, res.bytes);
      });
    });
  });

  for (const after of ['exit', 'hang'] as const) {
    test(`a seal whose thread ${after === 'exit' ? 'exits' : 'is timed out'} mid-write leaves only a partial .tmp- file`, async () => {
      await withTmpDir('pool', async (dir) => {
        await makeDirs(dir);
        const task = sealTask(dir, 400, 16);
        // The whole file, sealed on this thread elsewhere, for the size of a complete write.
        const whole = await seal({ ...task, outPath: path.join(dir, 'whole.seg') });
        // 'hang': the limit must come after the first write (a 400-row build takes milliseconds),
        // or the stop would find nothing written; 5 s leaves room for a loaded machine.
        await withPool(1, { taskTimeoutMs: after === 'hang' ? 5_000 : 0 }, async (pool) => {
          const err = await rejectionOf(runAny(pool, 'sealStoppedMidWrite', { task, after }));
          if (after === 'exit') {
            assert.equal(err.code, 'ERR_WORKER_FAILED', err.message);
            assert.match(err.message, /exited with code 7/);
          } else {
            assert.equal(err.code, 'ERR_WORKER_TIMEOUT', err.message);
          }
          const names = await assertNoFinalFile(task);
          assert.equal(names.length, 1, `the stopped write left its temp file (it was stopped mid-write): [${names.join(', ')}]`);
          const size = (await fsp.stat(path.join(dir, 'segments', names[0]!))).size;
          assert.ok(size > 0 && size < whole.bytes, `temp file holds ${size} of ${whole.bytes} bytes`);
          // The pool still seals, to the final name.
          const res = await pool.run('seal', task);
          assert.equal(res.bytes, whole.bytes);
          assert.ok((await fsp.readdir(path.join(dir, 'segments'))).includes(path.basename(task.outPath)));
        });
      });
    });
  }
});

describe('stopping a thread inside hnswlib', () => {
  // Terminating a thread inside an hnswlib-node call aborts the whole process (task-stop.ts): with
  // plain termination, a timeout or destroy mid-build took the process down in under 10 tries.
  // The first test below ends this file with SIGABRT when run against that pool.
  test('real seals stopped at random moments, by timeout or by destroy, never abort the process (24 trials)', async () => {
    const seed = SEED;
    let state = seed;
    const random = (): number => {
      state = (Math.imul(state, 1_103_515_245) + 12_345) >>> 0;
      return state / 2 ** 32;
    };
    const outcomes = { finished: 0, timedOut: 0, closed: 0 };
    await withTmpDir('pool', async (root) => {
      for (let trial = 0; trial < 24; trial++) {
        const byTimeout = trial % 2 === 0;
        // A directory per trial: a seal that finished before its stop leaves its final file, which
        // is no business of the next trial's check.
        const dir = path.join(root, `trial-${trial}`);
        await makeDirs(dir);
        const task = sealTask(dir, 3_000, 32, `t${trial}.seg`);
        const where = `seed ${seed} (STRATAVEC_TEST_SEED) trial ${trial}`;
        const pool = new WorkerPool(1, { filename: FAULTY, taskTimeoutMs: byTimeout ? 20 + Math.floor(random() * 400) : 0 });
        try {
          await runAny(pool, 'threadId', {}); // the thread is up, so the stop lands mid-task
          const sealing = pool.run('seal', task).then(() => null, (err: unknown) => err);
          if (!byTimeout) {
            await new Promise((r) => setTimeout(r, Math.floor(random() * 400)));
            await pool.destroy();
          }
          const err = await sealing;
          if (err === null) {
            outcomes.finished++;
            // Finished before the stop: the whole file under its final name, and nothing else.
            assert.deepEqual(await fsp.readdir(path.join(dir, 'segments')), [path.basename(task.outPath)], `${where}: a finished seal`);
            continue;
          }
          assert.ok(err instanceof StratavecError, `${where}: ${String(err)}`);
          assert.equal(err.code, byTimeout ? 'ERR_WORKER_TIMEOUT' : 'ERR_DATABASE_CLOSED', `${where}: ${err.message}`);
          if (byTimeout) outcomes.timedOut++;
          else outcomes.closed++;
          await assertNoFinalFile(task, where);
        } finally {
          await pool.destroy();
        }
      }
    });
    console.log(`# seed ${seed}: ${JSON.stringify(outcomes)}`);
    assert.ok(outcomes.timedOut + outcomes.closed >= 6, `seed ${seed} (STRATAVEC_TEST_SEED): most trials stop mid-seal: ${JSON.stringify(outcomes)}`);
  });

  test('a task inside a long native call is terminated only once the call has returned', async () => {
    await withTmpDir('pool', async (root) => {
      await provoke('a stop request during the native call', 5, async (i) => {
        const dir = path.join(root, `attempt-${i}`);
        await fsp.mkdir(dir);
        const inside = path.join(dir, 'inside');
        const marker = path.join(dir, 'marker');
        return withPool(1, { taskTimeoutMs: 200 }, async (pool) => {
          await runAny(pool, 'threadId', {});
          const err = await rejectionOf(runAny(pool, 'longNativeIgnoringStop', { ms: 2_500, inside, marker }));
          assert.equal(err.code, 'ERR_WORKER_TIMEOUT', err.message);
          // A task that starts after the stop request never enters the call (TaskStop.native
          // refuses): it ends itself, and nothing was tested.
          if (!existsSync(inside)) return `stopped before the native call began: ${err.message}`;
          assert.match(err.message, /its thread was terminated$/);
          // Asked at 0.2 s, grace over at 1.2 s, but the native mark held until 2.5 s: the thread
          // was still running when the call returned (a thread terminated meanwhile runs no more JS).
          assert.ok(existsSync(marker), 'the thread was terminated while inside the native call');
          const said = await fsp.readFile(marker, 'utf8');
          if (said !== 'asked to stop') return `the stop request came only after the native call (${said})`;
          return true;
        });
      });
    });
  });

  test('process.exit() during a build exits with its own code, never SIGABRT (12 trials)', async () => {
    const script = fileURLToPath(new URL('./helpers/exit-mid-seal.js', import.meta.url));
    await withTmpDir('pool', async (dir) => {
      for (let trial = 0; trial < 12; trial++) {
        const res = spawnSync(process.execPath, [script, dir, String(30 + trial * 40)], { encoding: 'utf8', timeout: 60_000 });
        assert.equal(res.stdout.trim(), 'exiting mid-seal', `trial ${trial}: ${res.stderr}`);
        assert.deepEqual({ status: res.status, signal: res.signal }, { status: 3, signal: null }, `trial ${trial}: ${res.stderr.slice(0, 500)}`);
      }
    });
  });
});

describe('destroy', () => {
  test('destroy rejects running and queued tasks with ERR_DATABASE_CLOSED, at once', async () => {
    await withTmpDir('pool', async (dir) => {
      const started = path.join(dir, 'started');
      const finished = path.join(dir, 'finished');
      const pool = new WorkerPool(1, { filename: FAULTY });
      try {
        await runAny(pool, 'threadId', {});
        const running = runAny(pool, 'sleep', { ms: 20_000, started, finished });
        const runningCheck = assert.rejects(running, hasCode('ERR_DATABASE_CLOSED'));
        await waitFor(() => existsSync(started), 'the task to start on its thread'); // not just in run()
        const queued = [1, 2, 3].map(() => runAny(pool, 'sleep', { ms: 10, finished }));
        const checks = [runningCheck, ...queued.map((p) => assert.rejects(p, hasCode('ERR_DATABASE_CLOSED')))];
        assert.equal(pool.stats().queued, 3);
        await pool.destroy();
        await Promise.all(checks);
        // The running task was stopped, not waited for, and no queued one ran.
        assert.deepEqual(await fsp.readdir(dir), ['started'], 'destroy waited for a task to finish');
        assert.deepEqual(pool.stats(), { threads: 1, nice: 10, completed: 1, failed: 4, timeouts: 0, queued: 0 });
        await assert.rejects(runAny(pool, 'threadId', {}), hasCode('ERR_DATABASE_CLOSED'));
      } finally {
        await pool.destroy(); // idempotent
      }
    });
  });

  test('destroy leaves no thread behind, even when a thread it stopped exits only after piscina was destroyed', { skip: !PROC_TASKS && 'needs /proc/self/task' }, async () => {
    // The stopped thread is inside a 3 s native call, so it exits long after the pool has
    // terminated the idle replacement piscina started for it. piscina 5 answers a thread's late
    // 'exit' (one that arrives while it is not destroying) by starting a replacement: before the
    // fix, destroy() resolved and a new thread started 3 s later and stayed.
    await withTmpDir('pool', async (dir) => {
      const threads = async (): Promise<string[]> => (await fsp.readdir('/proc/self/task')).sort();
      const before = new Set(await threads());
      const started = path.join(dir, 'started');
      const pool = new WorkerPool(1, { filename: FAULTY });
      try {
        await runAny(pool, 'threadId', {});
        const inside = path.join(dir, 'inside');
        const running = rejectionOf(runAny(pool, 'blockNative', { ms: 3_000, started, inside, marker: path.join(dir, 'marker') }));
        await waitFor(() => existsSync(inside), 'the task to enter its native call');
        await pool.destroy();
        assert.equal((await running).code, 'ERR_DATABASE_CLOSED');
        const left = (await threads()).filter((t) => !before.has(t));
        const names = await Promise.all(left.map(async (t) => `${t} ${(await fsp.readFile(`/proc/self/task/${t}/comm`, 'utf8').catch(() => '?')).trim()}`));
        assert.deepEqual(names, [], 'threads started since the pool was created and still running after destroy()');
      } finally {
        await pool.destroy();
      }
    });
  });

  test('an inline pool rejects after destroy too', async () => {
    const pool = new WorkerPool(0);
    await pool.destroy();
    await assert.rejects(pool.run('verifySegment', { path: 'x' }), hasCode('ERR_DATABASE_CLOSED'));
  });
});

describe('thread priority', () => {
  /** Nice value of every thread of this process by kernel thread id, from /proc/self/task/<tid>/stat. */
  async function niceByThread(): Promise<Map<number, number>> {
    const out = new Map<number, number>();
    for (const tid of await fsp.readdir('/proc/self/task')) {
      const stat = await fsp.readFile(`/proc/self/task/${tid}/stat`, 'utf8').catch(() => '');
      // Fields after the parenthesised name: state is field 3, nice is field 19.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (fields.length > 17) out.set(Number(tid), Number(fields[16]));
    }
    return out;
  }

  test('pool threads run at the pool\'s nice value; the main thread and libuv\'s threads keep theirs', { skip: process.platform !== 'linux' && 'per-thread nice is Linux only' }, async () => {
    await withTmpDir('pool', async (dir) => {
      await makeDirs(dir);
      for (const nice of [10, 0, 19]) {
        await withPool(2, { nice }, async (pool) => {
          assert.equal(pool.stats().nice, nice);
          // Real work on both threads, fs included (libuv's pool serves the whole process).
          const tasks = [0, 1, 2, 3].map((i) => sealTask(dir, 300, 8, `n${nice}-${i}.seg`));
          await Promise.all(tasks.map((t) => pool.run('seal', t)));
          // Until both threads have answered: a thread that booted late misses the first round,
          // and one the check below does not know as a pool thread would fail it.
          const reported: Array<{ tid: number; nice: number }> = [];
          const poolThreads = new Set<number>();
          for (let round = 0; round < 50 && poolThreads.size < 2; round++) {
            const got = await Promise.all([0, 1, 2, 3].map(() => runAny(pool, 'threadNice', { ms: 50 }) as Promise<{ tid: number; nice: number }>));
            for (const r of got) poolThreads.add(r.tid);
            reported.push(...got);
          }
          assert.equal(poolThreads.size, 2, `pool nice ${nice}: the tasks ran on threads ${[...poolThreads].join('/')}`);
          for (const r of reported) assert.equal(r.nice, nice, `pool thread ${r.tid}`);
          const all = await niceByThread();
          for (const tid of poolThreads) assert.equal(all.get(tid), nice, `/proc says pool thread ${tid} runs at ${all.get(tid)}`);
          for (const [tid, n] of all) {
            if (poolThreads.has(tid) || n === 0) continue;
            const name = (await fsp.readFile(`/proc/self/task/${tid}/comm`, 'utf8').catch(() => '?')).trim();
            assert.fail(`pool nice ${nice}: thread ${tid} (${name}, not a pool thread ${[...poolThreads].join('/')}) runs at nice ${n}`);
          }
        });
      }
    });
  });
});

describe('options', () => {
  test('bad sizes and timeouts are ERR_INVALID_ARGUMENT, wrong types TypeError', () => {
    assert.throws(() => new WorkerPool(1.5), hasCode('ERR_INVALID_ARGUMENT'));
    assert.throws(() => new WorkerPool(-1), hasCode('ERR_INVALID_ARGUMENT'));
    assert.throws(() => new WorkerPool(1, { taskTimeoutMs: -1 }), hasCode('ERR_INVALID_ARGUMENT'));
    assert.throws(() => new WorkerPool(1, { nice: 20 }), hasCode('ERR_INVALID_ARGUMENT'));
    assert.throws(() => new WorkerPool(1, { nice: 2.5 }), hasCode('ERR_INVALID_ARGUMENT'));
    assert.throws(() => new WorkerPool(1, { nice: '5' as unknown as number }), isTypeError);
    assert.throws(() => new WorkerPool(1, { taskTimeoutMs: Number.POSITIVE_INFINITY }), hasCode('ERR_INVALID_ARGUMENT'));
    assert.throws(() => new WorkerPool(1, { taskTimeoutMs: '5' as unknown as number }), isTypeError);
    assert.throws(() => new WorkerPool('2' as unknown as number), isTypeError);
    assert.throws(() => new WorkerPool(1, { filename: '' }), isTypeError);
  });
});
