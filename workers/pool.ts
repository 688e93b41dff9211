// One worker pool per Database: piscina threads running workers/tasks.ts, or the same functions
// inline on the calling thread when `workers` is 0 (for comparison and tiny deployments).
// Owns error mapping from worker failures to coded errors; never holds task data itself.
//
// What a caller of run() can rely on (threads > 0):
// - a StratavecError thrown in the task arrives with its own code (via TaskFailure, tasks.ts);
// - any other error thrown in the task -> ERR_WORKER_FAILED with the task's message;
// - the worker thread died under the task (process.exit, an uncaught error, an OOM abort)
//   -> ERR_WORKER_FAILED saying the worker exited; piscina starts a replacement thread;
// - the task ran past `taskTimeoutMs` -> ERR_WORKER_TIMEOUT;
// - the pool was destroyed before the task finished (queued or running) -> ERR_DATABASE_CLOSED;
// - no thread could start at all (the task module fails to load) -> ERR_WORKER_FAILED; without
//   this check piscina 5 would leave the task queued forever (see the 'error' listener).
// Stopping a running task (timeout, destroy) first asks it to stop (task-stop.ts): real tasks check
// between units of work and before every hnswlib call, and end with the stop's code, leaving their
// thread for the next task. One that has not ended STOP_GRACE_MS later has its thread terminated
// (piscina starts a replacement), but never while it is inside native code: terminating a thread
// inside hnswlib-node aborts the whole process.
// When run() rejects because a thread was terminated or died, it first waits (up to EXIT_WAIT_MS)
// for that thread to have exited, so nothing the task was doing can still land on disk afterwards.
// Tasks write files only by the temp-file + rename recipe (format/fsutil.ts), so a thread stopped
// mid-write leaves at most a `.tmp-*` file, never a partial file under the final name.

import { access } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Worker } from 'node:worker_threads';
import { Piscina } from 'piscina';
import { StratavecError, type ErrorCode, ErrorCodes } from '../format/errors.js';
import * as tasks from './tasks.js';
import type { TaskFailure } from './tasks.js';
import { StopRequest, STOP_FIELD, type StopReason } from './task-stop.js';
import { DEFAULT_WORKER_NICE, MAX_NICE } from './thread-priority.js';

type Tasks = typeof tasks;
export type TaskName = { [K in keyof Tasks]: Tasks[K] extends (input: any) => Promise<any> ? K : never }[keyof Tasks];
type Input<K extends TaskName> = Parameters<Tasks[K]>[0];
type Output<K extends TaskName> = Exclude<Awaited<ReturnType<Tasks[K]>>, TaskFailure>;

export interface WorkerPoolOptions {
  /**
   * Stop a pooled task that has not finished this many milliseconds after it could start. Waiting
   * for a free thread does not count, nor does waiting for a thread to start up (after the pool
   * is created, or the replacement after a crash or timeout: 150 ms to over 1 s under load, to
   * load the task module and hnswlib); should no thread report started within BOOT_ALLOWANCE_MS
   * the clock starts anyway. 0 or absent: no limit. Inline mode (threads 0) cannot stop a task
   * running on the calling thread, so it ignores this (`taskTimeoutMs` reads 0).
   */
  taskTimeoutMs?: number;
  /**
   * CPU priority of the pool's threads as a Unix nice value, 0 (the main thread's) to 19 (least
   * favoured); default DEFAULT_WORKER_NICE (10), so searches on the main thread get a core before
   * maintenance does. Linux only (per-thread nice); ignored elsewhere and in inline mode.
   */
  nice?: number;
  /**
   * The worker module (a path or a file: URL) whose named exports are the tasks; default
   * ./tasks.js next to this file. For tests that add fault-injecting tasks. Inline mode imports
   * it too.
   */
  filename?: string;
}

export interface WorkerPoolStats {
  threads: number;
  /** The nice value asked of the pool's threads (0 in inline mode). */
  nice: number;
  completed: number;
  /** Every failed run, timeouts included. */
  failed: number;
  /** Runs stopped by `taskTimeoutMs` (also counted in `failed`). */
  timeouts: number;
  /** Tasks waiting for a thread. */
  queued: number;
}

/**
 * How long a task asked to stop has to end itself before its thread is terminated. Real tasks end
 * within one HNSW insertion or one section's compression (well under a second).
 */
const STOP_GRACE_MS = 1_000;
/** After the grace period, how often to look again for the task to be outside native code. */
const STOP_POLL_MS = 10;
/** How long a failed run() waits for a stopped or dying thread to exit before it rejects anyway. */
const EXIT_WAIT_MS = 5_000;
/** How long a timed run waits for a started-up thread before its clock starts regardless. */
const BOOT_ALLOWANCE_MS = 10_000;
/**
 * The key of the message a piscina 5 thread posts on its parentPort once it has loaded the task
 * module (dist/common.js READY; not public API). Only used to start task clocks late; were it ever
 * to change, clocks would start after BOOT_ALLOWANCE_MS instead.
 */
export const PISCINA_READY = '_WORKER_READY';
/** setTimeout's ceiling; a larger timeout would fire at once. */
const MAX_TIMEOUT_MS = 2 ** 31 - 1;
/** The error piscina 5 (dist/index.js, onWorkerExit) rejects a task with when its thread exits. */
export const PISCINA_EXIT = /^worker exited with code: (-?\d+)$/;

type TaskModule = Record<string, unknown>;

/**
 * Pools with threads that have not been destroyed. process.exit() terminates every worker thread
 * at once, which aborts the process if one is inside hnswlib (exit code 134 instead of the one
 * asked for; about 1 exit in 8 during a build here). One 'exit' listener asks every running task
 * to stop and waits, briefly and synchronously, until none is inside native code.
 */
const livePools = new Set<WorkerPool>();
/** The longest process exit waits for tasks to leave native code. */
const EXIT_STOP_WAIT_MS = 2_000;
function onProcessExit(): void {
  for (const pool of livePools) pool.stopForExit();
}

/** A run on its way, pooled or inline: what destroy() asks to stop and waits for. */
interface ActiveRun {
  stop: StopRequest;
  /** Resolves once the run has settled (its thread idle again, terminated, or dead). */
  done: Promise<void>;
  /** Pooled runs: terminates the thread once a stop went unanswered (see #requestStop). */
  controller?: AbortController;
  settled: boolean;
  /** The grace-then-poll timer of a stop request. */
  stopTimer?: NodeJS.Timeout;
}

interface PooledRun extends ActiveRun {
  controller: AbortController;
  /** Set when the run was aborted because no thread is left to run it: the error that killed the last one. */
  lost: { error: unknown } | undefined;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export class WorkerPool {
  readonly threads: number;
  readonly taskTimeoutMs: number;
  readonly nice: number;
  #piscina: Piscina | undefined;
  /** Inline mode: the task module (loaded on first use when `filename` was given) and its path. */
  #inline: TaskModule | Promise<TaskModule> | undefined;
  #inlineFile = '';
  #closed = false;
  #completed = 0;
  #failed = 0;
  #timeouts = 0;
  /** Pooled runs holding a thread slot; at most `threads`, so piscina's own queue stays empty. */
  #running = 0;
  #waiting: { name: string; resolve: () => void; reject: (err: unknown) => void }[] = [];
  /** Runs handed to piscina and not yet settled. */
  readonly #inFlight = new Set<PooledRun>();
  /** Every run not yet settled, pooled (the same as #inFlight) and inline. */
  readonly #active = new Set<ActiveRun>();
  #destroying: Promise<void> | undefined;
  /** Every thread piscina has started and that has not exited yet, with a promise of its exit. */
  readonly #exits = new Map<Worker, Promise<void>>();
  /** Threads known to have loaded the task module (a subset of #exits' keys). */
  readonly #started = new Set<Worker>();
  /** Timed runs waiting for a started thread before their clock starts; re-checked on each start. */
  #clockWaiters: (() => void)[] = [];
  /** True while piscina's constructor-time 'workerCreate' events (not yet started threads) arrive. */
  #constructing = true;
  /** Errors that killed a thread (its 'error' event), as opposed to errors a task threw. */
  readonly #threadErrors = new WeakSet<object>();

  constructor(threads: number, options: WorkerPoolOptions = {}) {
    if (typeof threads !== 'number') throw new TypeError('threads must be a number');
    if (!Number.isInteger(threads) || threads < 0) {
      throw new StratavecError('ERR_INVALID_ARGUMENT', `worker pool size must be an integer >= 0, got ${threads}`);
    }
    if (options === null || typeof options !== 'object') throw new TypeError('options must be an object');
    const { taskTimeoutMs = 0, filename, nice = DEFAULT_WORKER_NICE } = options;
    if (typeof taskTimeoutMs !== 'number') throw new TypeError('options.taskTimeoutMs must be a number');
    if (!Number.isFinite(taskTimeoutMs) || taskTimeoutMs < 0 || taskTimeoutMs > MAX_TIMEOUT_MS) {
      throw new StratavecError('ERR_INVALID_ARGUMENT', `taskTimeoutMs must be 0 (none) or a number of ms up to ${MAX_TIMEOUT_MS}, got ${taskTimeoutMs}`);
    }
    if (typeof nice !== 'number') throw new TypeError('options.nice must be a number');
    if (!Number.isInteger(nice) || nice < 0 || nice > MAX_NICE) {
      throw new StratavecError('ERR_INVALID_ARGUMENT', `nice must be an integer from 0 to ${MAX_NICE}, got ${nice}`);
    }
    if (filename !== undefined && (typeof filename !== 'string' || filename === '')) {
      throw new TypeError('options.filename must be a non-empty string');
    }
    this.threads = threads;
    this.taskTimeoutMs = threads > 0 ? taskTimeoutMs : 0;
    this.nice = threads > 0 ? nice : 0;
    const file = filename === undefined
      ? fileURLToPath(new URL('./tasks.js', import.meta.url))
      : filename.startsWith('file:') ? fileURLToPath(filename) : filename;
    if (threads > 0) {
      // A thread inherits its creator's nice value, and libuv starts its shared thread pool (fs,
      // zlib, hnswlib's async calls, for the whole process) on first use: make sure that happens
      // here, at the main thread's priority, and not later from a lowered pool thread.
      if (nice > 0) access(file, () => undefined);
      const piscina = new Piscina({
        filename: file,
        workerData: { nice },
        minThreads: threads,
        maxThreads: threads,
        idleTimeout: 60_000,
        // With atomics on, an idle piscina thread blocks in Atomics.wait, so async work a task
        // left behind (a timer, a stray rejection) only runs once the *next* task arrives, and an
        // error it throws kills that unrelated task. With atomics off an idle thread keeps its
        // event loop turning: such an error surfaces at once, with no task on the thread, as the
        // 'error' event below. Our tasks run for milliseconds to seconds, so the cost is nil.
        atomics: 'disabled',
      });
      // piscina emits 'error' when a thread dies with no task on it (and on a close() timeout);
      // unhandled, the event would throw and take the whole process down. Usually piscina has
      // already started a replacement and no caller is waiting, so there is nothing to map. But a
      // replacement that dies while starting up (its task module throws on load) is not replaced
      // again: piscina sets workerFailsDuringBootstrap and keeps the tasks queued for it in its
      // queue with no thread to run them, for ever. With no thread left, fail those runs instead.
      // (The next run() makes piscina start a thread again, so a transient failure heals.)
      piscina.on('error', (error: unknown) => {
        if (piscina.threads.length > 0) return;
        for (const run of this.#inFlight) {
          if (run.controller.signal.aborted) continue;
          run.lost = { error };
          run.controller.abort();
        }
      });
      piscina.on('workerCreate', () => this.#trackThreads());
      this.#piscina = piscina;
      if (livePools.size === 0) process.on('exit', onProcessExit);
      livePools.add(this);
      // piscina queues its constructor-time 'workerCreate' events as microtasks in its
      // constructor; this one runs after them. Later 'workerCreate' events mean "thread started".
      queueMicrotask(() => {
        this.#constructing = false;
      });
    } else {
      this.#inline = filename === undefined ? (tasks as unknown as TaskModule) : undefined;
      this.#inlineFile = file;
    }
  }

  async run<K extends TaskName>(name: K, input: Input<K>): Promise<Output<K>> {
    let out: unknown;
    let stop: StopRequest | undefined;
    try {
      if (this.#closed) throw this.#closedError(name);
      stop = new StopRequest();
      const sent = { ...(input as object), [STOP_FIELD]: stop.buffer };
      out = this.#piscina ? await this.#runPooled(name, sent, stop) : await this.#runInline(name, sent, stop);
    } catch (err) {
      this.#failed++;
      throw err;
    }
    const failure = (out as TaskFailure | null)?.failed;
    if (failure) {
      this.#failed++;
      // A task that ended because it was asked to stop reports the stop's code; say why here.
      const reason = stop.reason;
      if (reason === 'timeout' && failure.code === 'ERR_WORKER_TIMEOUT') {
        this.#timeouts++;
        throw new StratavecError('ERR_WORKER_TIMEOUT', `worker task ${name} ran past the ${this.taskTimeoutMs} ms task timeout and was stopped`);
      }
      if (reason === 'closing' && failure.code === 'ERR_DATABASE_CLOSED') throw this.#closedError(name);
      const code = (failure.code in ErrorCodes ? failure.code : 'ERR_WORKER_FAILED') as ErrorCode;
      throw new StratavecError(code, failure.message);
    }
    this.#completed++;
    return out as Output<K>;
  }

  /** Registers a run for destroy() to stop and wait for; call the returned function when it settles. */
  #track<R extends Omit<ActiveRun, 'done'>>(run: R): { run: R & ActiveRun; settle: () => void } {
    let resolve!: () => void;
    const active = Object.assign(run, { done: new Promise<void>((r) => (resolve = r)) });
    this.#active.add(active);
    const settle = (): void => {
      if (active.settled) return;
      active.settled = true;
      clearTimeout(active.stopTimer);
      this.#active.delete(active);
      resolve();
    };
    return { run: active, settle };
  }

  /**
   * Inline: same module, same mapping, on this thread. No timeout (a timer cannot fire while the
   * task holds the thread), but destroy() still asks it to stop at its next check.
   */
  async #runInline(name: string, input: unknown, stop: StopRequest): Promise<unknown> {
    const { settle } = this.#track({ stop, settled: false });
    try {
      this.#inline ??= import(pathToFileURL(this.#inlineFile).href) as Promise<TaskModule>;
      const fn = (await this.#inline)[name];
      if (typeof fn !== 'function') throw new Error(`no task ${name} exported from ${this.#inlineFile}`);
      return await (fn as (i: unknown) => Promise<unknown>)(input);
    } catch (err) {
      throw new StratavecError('ERR_WORKER_FAILED', `worker task ${name} failed: ${messageOf(err)}`, { cause: err });
    } finally {
      settle();
    }
  }

  /**
   * Asks a running task to stop. A pooled task that has not ended STOP_GRACE_MS later is
   * terminated as soon as it is outside native code (see task-stop.ts for why that matters).
   */
  #requestStop(run: ActiveRun, reason: StopReason): void {
    if (run.settled || run.stop.reason !== undefined) return;
    run.stop.request(reason);
    const controller = run.controller;
    if (controller === undefined) return;
    const deadline = Date.now() + STOP_GRACE_MS;
    const poll = (): void => {
      if (run.settled) return;
      const left = deadline - Date.now();
      if (left <= 0 && !run.stop.inNative) {
        // piscina rejects the run at once (AbortError), terminates its thread and starts a
        // replacement.
        controller.abort();
        return;
      }
      run.stopTimer = setTimeout(poll, left > 0 ? left : STOP_POLL_MS);
    };
    run.stopTimer = setTimeout(poll, STOP_GRACE_MS);
  }

  async #runPooled(name: string, input: unknown, stop: StopRequest): Promise<unknown> {
    await this.#acquire(name);
    try {
      const piscina = this.#piscina;
      if (this.#closed || piscina === undefined) throw this.#closedError(name);
      const ms = this.taskTimeoutMs;
      // Every run is abortable (to terminate its thread, and for the no-thread-left case above).
      // piscina then counts a thread running it as full: one task per thread anyway.
      const lost: PooledRun['lost'] = undefined;
      const tracked = this.#track({ stop, settled: false, controller: new AbortController(), lost });
      const run: PooledRun = tracked.run;
      let timer: NodeJS.Timeout | undefined;
      let allowance: NodeJS.Timeout | undefined;
      const startClock = (): void => {
        if (run.settled || timer !== undefined) return;
        clearTimeout(allowance);
        timer = setTimeout(() => this.#requestStop(run, 'timeout'), ms);
      };
      const settle = (): void => {
        if (run.settled) return;
        clearTimeout(timer);
        clearTimeout(allowance);
        this.#inFlight.delete(run);
        tracked.settle();
        this.#recheckClocks(); // one run fewer may leave a started thread free for a waiting one
      };
      this.#inFlight.add(run);
      if (ms > 0) {
        allowance = setTimeout(startClock, BOOT_ALLOWANCE_MS);
        this.#whenThreadStarted(run, startClock);
      }
      try {
        return await piscina.run(input, { name, signal: run.controller.signal });
      } catch (err) {
        settle();
        const stopped = await this.#awaitStoppedThreads();
        const tail = stopped ? '' : ` (its thread had not exited ${EXIT_WAIT_MS} ms later)`;
        if (run.stop.reason === 'timeout') {
          this.#timeouts++;
          throw new StratavecError('ERR_WORKER_TIMEOUT', `worker task ${name} ran past the ${ms} ms task timeout; its thread was terminated${tail}`, { cause: err });
        }
        if (this.#closed) throw this.#closedError(name, err);
        if (err !== null && typeof err === 'object' && this.#threadErrors.has(err)) {
          throw new StratavecError('ERR_WORKER_FAILED', `worker thread running task ${name} exited on an uncaught error: ${messageOf(err)}${tail}`, { cause: err });
        }
        const exit = PISCINA_EXIT.exec(messageOf(err));
        if (exit) {
          throw new StratavecError('ERR_WORKER_FAILED', `worker thread running task ${name} exited with code ${exit[1]}${tail}`, { cause: err });
        }
        if (run.lost) {
          throw new StratavecError('ERR_WORKER_FAILED', `no worker thread could start to run task ${name}: ${messageOf(run.lost.error)}`, { cause: run.lost.error });
        }
        throw new StratavecError('ERR_WORKER_FAILED', `worker task ${name} failed: ${messageOf(err)}`, { cause: err });
      } finally {
        settle();
      }
    } finally {
      this.#release();
    }
  }

  /** Waits for a free thread slot; rejects with ERR_DATABASE_CLOSED if the pool is destroyed first. */
  #acquire(name: string): Promise<void> | void {
    if (this.#running < this.threads) {
      this.#running++;
      return;
    }
    return new Promise((resolve, reject) => this.#waiting.push({ name, resolve, reject }));
  }

  #release(): void {
    const next = this.#waiting.shift();
    if (next) next.resolve(); // the slot passes straight to the next run
    else this.#running--;
  }

  /**
   * Starts `run`'s clock once there are at least as many started, live threads as runs handed to
   * piscina, so that a thread that has loaded the task module is there for it. (piscina does not
   * say which thread runs a task; in steady state every thread has started and this is immediate.)
   */
  #whenThreadStarted(run: PooledRun, startClock: () => void): void {
    const check = (): void => {
      if (run.settled) return;
      const live = new Set(this.#piscina?.threads ?? []);
      const started = [...this.#started].filter((w) => live.has(w)).length;
      if (started >= this.#inFlight.size) startClock();
      else this.#clockWaiters.push(check);
    };
    check();
  }

  #threadStarted(worker: Worker): void {
    if (!this.#exits.has(worker)) return; // exited already
    this.#started.add(worker);
    this.#recheckClocks();
  }

  #recheckClocks(): void {
    for (const check of this.#clockWaiters.splice(0)) check();
  }

  /** Notes threads piscina started: their start-up, their exit, and errors that kill them. */
  #trackThreads(): void {
    for (const worker of this.#piscina?.threads ?? []) {
      if (this.#exits.has(worker)) continue;
      // Registered after piscina's own listener: piscina has rejected the task with this very
      // error object by the time it runs, and our catch runs only after (a microtask later).
      worker.on('error', (err: unknown) => {
        if (err !== null && typeof err === 'object') this.#threadErrors.add(err);
      });
      this.#exits.set(worker, new Promise((resolve) => {
        worker.once('exit', () => {
          this.#exits.delete(worker);
          this.#started.delete(worker);
          resolve();
        });
      }));
      if (this.#constructing) {
        // piscina announced this thread before it started; it will post READY once it has
        // loaded the task module (it is the first message any thread posts on parentPort).
        const onMessage = (message: unknown): void => {
          if (message !== null && typeof message === 'object' && PISCINA_READY in message) {
            worker.off('message', onMessage);
            this.#threadStarted(worker);
          }
        };
        worker.on('message', onMessage);
      } else {
        this.#threadStarted(worker); // piscina emits 'workerCreate' for a later thread once it is ready
      }
    }
  }

  /**
   * Waits until every thread piscina has let go of (stopped on abort, died, destroyed) has exited;
   * false if some had not after EXIT_WAIT_MS (stuck in native code that termination cannot break).
   */
  async #awaitStoppedThreads(): Promise<boolean> {
    const live = new Set(this.#piscina?.threads ?? []);
    const stopping = [...this.#exits].filter(([w]) => !live.has(w)).map(([, exited]) => exited);
    if (stopping.length === 0) return true;
    let timer: NodeJS.Timeout | undefined;
    const limit = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), EXIT_WAIT_MS);
    });
    try {
      return await Promise.race([Promise.all(stopping).then(() => true), limit]);
    } finally {
      clearTimeout(timer);
    }
  }

  // Destroying the pool is part of Database.close(), so a task it cuts short (queued, or running
  // and terminated) gets ERR_DATABASE_CLOSED, the code of every call on a closing database, not
  // ERR_WORKER_FAILED: nothing crashed, and a caller must not retry or report it as a fault.
  #closedError(name: string, cause?: unknown): StratavecError {
    return new StratavecError('ERR_DATABASE_CLOSED', `worker pool closed before task ${name} finished`, cause === undefined ? undefined : { cause });
  }

  stats(): WorkerPoolStats {
    return {
      threads: this.threads,
      nice: this.nice,
      completed: this.#completed,
      failed: this.#failed,
      timeouts: this.#timeouts,
      queued: this.#waiting.length + (this.#piscina?.queueSize ?? 0),
    };
  }

  /**
   * Called on process exit (synchronously, so it blocks): asks every running task to stop and waits
   * up to EXIT_STOP_WAIT_MS until none is inside native code, so Node's termination of the threads
   * that follows lands outside hnswlib. Not for other use.
   */
  stopForExit(): void {
    const runs = [...this.#active];
    for (const run of runs) run.stop.request('closing');
    const deadline = Date.now() + EXIT_STOP_WAIT_MS;
    const nap = new Int32Array(new SharedArrayBuffer(4));
    while (runs.some((run) => run.stop.inNative) && Date.now() < deadline) Atomics.wait(nap, 0, 0, 2);
  }

  /**
   * Rejects queued tasks with ERR_DATABASE_CLOSED, asks running ones to stop (they reject the same
   * way, or finish if they were about to), waits for them, then stops every thread. Later run()
   * calls reject with ERR_DATABASE_CLOSED. Idempotent.
   */
  destroy(): Promise<void> {
    this.#destroying ??= this.#destroy();
    return this.#destroying;
  }

  async #destroy(): Promise<void> {
    this.#closed = true;
    for (const w of this.#waiting.splice(0)) w.reject(this.#closedError(w.name));
    const running = [...this.#active];
    for (const run of running) this.#requestStop(run, 'closing');
    await Promise.all(running.map((run) => run.done));
    // A thread terminated for a stop may still be exiting (inside native code, it cannot exit
    // before the call returns). piscina 5 answers an 'exit' that arrives while it is not
    // destroying, even after its destroy() has resolved, by starting a replacement thread that
    // nothing would ever stop: let such threads exit first.
    await this.#awaitStoppedThreads();
    // Every thread is idle now (or already terminated), so piscina terminates none inside native code.
    const piscina = this.#piscina;
    this.#piscina = undefined;
    livePools.delete(this);
    if (livePools.size === 0) process.off('exit', onProcessExit);
    await piscina?.destroy();
  }
}
