// How the pool stops a running task without killing the process: a stop request and an
// "inside native code" mark, two Int32 cells of a SharedArrayBuffer that travels in the task's input.
//
// Why not just Worker.terminate(): hnswlib-node is built on node-addon-api without
// NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS, so a thread terminated while inside one of its calls
// aborts the whole process ("FATAL ERROR: Error::ThrowAsJavaScriptException napi_throw"): addPoint
// reads its number[] argument element by element and each read fails once termination is pending,
// and an async readIndex/writeIndex still running completes during the thread's teardown and fails
// the same way. Terminating threads mid-build at random moments reproduced it in under 10 tries.
//
// So the pool (StopRequest) first asks; the task (TaskStop) checks between units of work and
// before every native call, and throws a coded error. A task that does not answer within the
// pool's grace period is terminated, but only while it is outside native code. The two cells make
// that race-free (Dekker's handshake over sequentially consistent Atomics): the task marks NATIVE
// and then reads STOP before entering; the pool writes STOP and then reads NATIVE. Both cannot read
// the other's zero, so once the pool has asked and then read NATIVE as 0, the task will never
// enter native code again and terminating it is safe.

import { StratavecError } from '../format/errors.js';

const STOP = 0;
const NATIVE = 1;

/** Why the pool asks a task to stop; the task's error carries the matching code. */
export type StopReason = 'timeout' | 'closing';
const REASONS: readonly StopReason[] = ['timeout', 'closing'];

/** The field of a task's input that carries its stop cells (added by the pool, never by callers). */
export const STOP_FIELD = 'stopSignal';

/** What any task input may carry; tasks read it through TaskStop.of(). */
export interface Stoppable {
  [STOP_FIELD]?: SharedArrayBuffer;
}

/** The pool's side of one run. */
export class StopRequest {
  readonly buffer = new SharedArrayBuffer(2 * Int32Array.BYTES_PER_ELEMENT);
  readonly #cells = new Int32Array(this.buffer);

  /** Asks the task to stop; the first reason given sticks. */
  request(reason: StopReason): void {
    Atomics.compareExchange(this.#cells, STOP, 0, REASONS.indexOf(reason) + 1);
  }

  get reason(): StopReason | undefined {
    return REASONS[Atomics.load(this.#cells, STOP) - 1];
  }

  /**
   * True while the task is inside a native call. Once request() has been made, a false read stays
   * false: the task cannot enter native code again (see the handshake above).
   */
  get inNative(): boolean {
    return Atomics.load(this.#cells, NATIVE) !== 0;
  }
}

const NEVER = new Int32Array(2);

/** The task's side: checks for a stop request and brackets native calls. */
export class TaskStop {
  readonly #cells: Int32Array;

  private constructor(cells: Int32Array) {
    this.#cells = cells;
  }

  /** The stop cells in a task's input, or a TaskStop that is never asked to stop. */
  static of(input: unknown): TaskStop {
    const buf = input !== null && typeof input === 'object' ? (input as Stoppable)[STOP_FIELD] : undefined;
    return new TaskStop(buf instanceof SharedArrayBuffer ? new Int32Array(buf) : NEVER);
  }

  /** A TaskStop that is never asked to stop, for direct (non-pool) callers. */
  static readonly never: TaskStop = new TaskStop(NEVER);

  /** Throws the stop error if the pool has asked this task to stop. */
  check(): void {
    const reason = REASONS[Atomics.load(this.#cells, STOP) - 1];
    if (reason === undefined) return;
    throw new StratavecError(
      reason === 'timeout' ? 'ERR_WORKER_TIMEOUT' : 'ERR_DATABASE_CLOSED',
      reason === 'timeout' ? 'task stopped: it ran past its timeout' : 'task stopped: the pool is closing',
    );
  }

  /**
   * Runs `call` (a call into native code) marked as native, unless a stop was requested, in which
   * case it throws instead. A returned promise keeps the mark until it settles: an async native
   * call is still native work until its completion callback has run.
   */
  readonly native = <T>(call: () => T): T => {
    const cells = this.#cells;
    if (cells === NEVER) return call();
    Atomics.store(cells, NATIVE, 1);
    let result: T;
    try {
      this.check();
      result = call();
    } catch (err) {
      Atomics.store(cells, NATIVE, 0);
      throw err;
    }
    if (result instanceof Promise) {
      return result.finally(() => Atomics.store(cells, NATIVE, 0)) as T;
    }
    Atomics.store(cells, NATIVE, 0);
    return result;
  };
}
