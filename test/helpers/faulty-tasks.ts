// A worker module for pool tests: every real task (re-exported unchanged) plus test-only tasks that
// fail in each way a worker can: exit the thread, throw, die on an uncaught error, run too long,
// and be stopped half-way through writing a real segment file. Loaded by
// `new WorkerPool(n, { filename })`; never by the engine.

import { execFileSync } from 'node:child_process';
import { appendFileSync, existsSync, promises as fsp, writeFileSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { isMainThread, threadId as ownThreadId } from 'node:worker_threads';
import { seal } from '../../workers/tasks.js';
import type { SealTask } from '../../workers/seal.js';
import { TaskStop, type Stoppable } from '../../workers/task-stop.js';
import { threadKernelId } from '../../workers/thread-priority.js';

export * from '../../workers/tasks.js';

// A start-up held at a gate, for the test that thread start-up is not billed to a task's timeout:
// a worker thread created while STRATAVEC_TEST_BOOT_GATE names a file does not finish loading this
// module (so piscina does not report it ready) until that file exists. It logs `waiting <id>` and
// then `booted <id>` to `<gate>.log`, so the test can check the order against its own lines.
const bootGate = process.env['STRATAVEC_TEST_BOOT_GATE'];
if (!isMainThread && bootGate !== undefined && bootGate !== '') {
  appendFileSync(`${bootGate}.log`, `waiting ${ownThreadId}\n`);
  while (!existsSync(bootGate)) await new Promise((resolve) => setTimeout(resolve, 10));
  appendFileSync(`${bootGate}.log`, `booted ${ownThreadId}\n`);
}

/** The id of the thread that ran it (0 on the main thread): shows which thread a pool used. */
export async function threadId(): Promise<number> {
  return ownThreadId;
}

/** The thread's kernel id and nice value, after holding the thread for `ms` (so parallel calls spread over threads). */
export async function threadNice(input: { ms: number }): Promise<{ tid: number; nice: number }> {
  await new Promise((resolve) => setTimeout(resolve, input.ms));
  const tid = threadKernelId();
  if (tid === undefined) throw new Error('no /proc/thread-self here');
  return { tid, nice: os.getPriority(tid) };
}

/** Ends its thread with `code` (in a worker, process.exit stops only that thread). */
export async function exitThread(input: { code: number }): Promise<never> {
  process.exit(input.code);
}

/** Throws a plain Error (not a StratavecError) from inside the task. */
export async function throwPlain(input: { message: string }): Promise<never> {
  throw new Error(input.message);
}

/** Throws from a timer while the task is pending: an uncaught error that kills the thread. */
export function throwUncaught(input: { message: string }): Promise<never> {
  setTimeout(() => {
    throw new Error(input.message);
  }, 0);
  return new Promise<never>(() => undefined);
}

/** Returns at once, leaving a timer behind that throws after `ms`: a fault with no task on the thread. */
export async function throwAfterReturn(input: { message: string; ms: number }): Promise<string> {
  setTimeout(() => {
    throw new Error(input.message);
  }, input.ms);
  return 'returned';
}

/**
 * Waits `ms` on a timer (the event loop stays free), then returns `ms`. Writes `started` (when
 * given) as it begins and `finished` just before it returns, so a test can see where it got to.
 */
export async function sleep(input: { ms: number; started?: string; finished?: string }): Promise<number> {
  if (input.started !== undefined) writeFileSync(input.started, 'started');
  await new Promise((resolve) => setTimeout(resolve, input.ms));
  if (input.finished !== undefined) writeFileSync(input.finished, 'finished');
  return input.ms;
}

/** Busy-loops for `ms` without yielding (only thread termination can stop it early), then writes `finished` if given. */
export async function spin(input: { ms: number; finished?: string }): Promise<number> {
  const end = Date.now() + input.ms;
  let x = 0;
  while (Date.now() < end) x++;
  if (input.finished !== undefined) writeFileSync(input.finished, 'finished');
  return x > 0 ? input.ms : 0;
}

/**
 * A blocking call into native code for `ms` that termination cannot break: a synchronous child
 * process, which writes `inside` as it starts, so the file shows the thread had entered the call.
 */
function nativeBlock(ms: number, inside: string): void {
  execFileSync('sh', ['-c', ': > "$1" && sleep "$2"', 'native-block', inside, String(ms / 1000)]);
}

/**
 * Writes its thread's kernel id (or '' where there is none) to `started`, then blocks its thread
 * in native code for `ms` (nativeBlock: `inside` appears once it is in), then writes `marker`. A
 * thread stopped meanwhile exits once the call returns, before any more JavaScript runs, so the
 * marker must never appear.
 */
export async function blockNative(input: { ms: number; started: string; inside: string; marker: string }): Promise<string> {
  writeFileSync(input.started, String(threadKernelId() ?? ''));
  nativeBlock(input.ms, input.inside);
  writeFileSync(input.marker, 'written after the block');
  return 'finished';
}

/**
 * The real seal task, except that the first FileHandle.write (the segment's first chunk, into its
 * `.tmp-*` file: seal's only FileHandle writes are writeFileAtomic's) completes and then the
 * thread either exits (`after: 'exit'`) or hangs until the pool's timeout stops it. The thread is
 * never reused: the patch dies with it.
 */
export async function sealStoppedMidWrite(input: { task: SealTask; after: 'exit' | 'hang' }): Promise<unknown> {
  const probe = await fsp.open(fileURLToPath(import.meta.url), 'r');
  const proto = Object.getPrototypeOf(probe) as { write: (...args: unknown[]) => Promise<unknown> };
  await probe.close();
  const write = proto.write;
  proto.write = async function (this: unknown, ...args: unknown[]): Promise<unknown> {
    await write.apply(this, args);
    if (input.after === 'exit') process.exit(7);
    return new Promise(() => undefined);
  };
  return seal(input.task);
}

/**
 * Marks itself inside native code for `ms` (nativeBlock stands in for a long native call; `inside`
 * appears once it is in), writes `marker` while still marked, then ignores the stop request and
 * spins: the pool must wait for the mark to clear before it terminates the thread. Had it
 * terminated the thread during the call, no JavaScript would run after it and the marker would
 * never appear. The marker is written inside the mark because the pool may terminate the thread
 * the moment the mark clears: written after it, a loaded machine could lose that race (CI did).
 * It says whether the pool had asked the task to stop by the time the call returned
 * (`asked to stop` / `not asked`).
 */
export async function longNativeIgnoringStop(input: { ms: number; inside: string; marker: string } & Stoppable): Promise<never> {
  const stop = TaskStop.of(input);
  stop.native(() => {
    nativeBlock(input.ms, input.inside);
    let asked = false;
    try {
      stop.check();
    } catch {
      asked = true;
    }
    writeFileSync(input.marker, asked ? 'asked to stop' : 'not asked');
  });
  for (;;) {
    // ignores the stop request
  }
}
