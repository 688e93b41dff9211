// One worker pool per Database: piscina threads running workers/tasks.ts, or the same functions
// inline on the calling thread when `workers` is 0 (for comparison and tiny deployments).
// Owns error mapping from worker failures to coded errors; never holds task data itself.

import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import { StratavecError, type ErrorCode, ErrorCodes } from '../format/errors.js';
import * as tasks from './tasks.js';
import type { TaskFailure } from './tasks.js';

type Tasks = typeof tasks;
export type TaskName = { [K in keyof Tasks]: Tasks[K] extends (input: any) => Promise<any> ? K : never }[keyof Tasks];
type Input<K extends TaskName> = Parameters<Tasks[K]>[0];
type Output<K extends TaskName> = Exclude<Awaited<ReturnType<Tasks[K]>>, TaskFailure>;

export interface WorkerPoolStats {
  threads: number;
  completed: number;
  failed: number;
  queued: number;
}

export class WorkerPool {
  readonly threads: number;
  #piscina: Piscina | undefined;
  #completed = 0;
  #failed = 0;

  constructor(threads: number) {
    this.threads = threads;
    if (threads > 0) {
      this.#piscina = new Piscina({
        filename: fileURLToPath(new URL('./tasks.js', import.meta.url)),
        minThreads: threads,
        maxThreads: threads,
        idleTimeout: 60_000,
      });
    }
  }

  async run<K extends TaskName>(name: K, input: Input<K>): Promise<Output<K>> {
    let out: unknown;
    try {
      out = this.#piscina
        ? await this.#piscina.run(input, { name })
        : await (tasks[name] as (i: Input<K>) => Promise<unknown>)(input);
    } catch (err) {
      this.#failed++;
      throw new StratavecError('ERR_WORKER_FAILED', `worker task ${name} failed: ${(err as Error)?.message ?? err}`, { cause: err });
    }
    const failure = (out as TaskFailure | null)?.failed;
    if (failure) {
      this.#failed++;
      const code = (failure.code in ErrorCodes ? failure.code : 'ERR_WORKER_FAILED') as ErrorCode;
      throw new StratavecError(code, failure.message);
    }
    this.#completed++;
    return out as Output<K>;
  }

  stats(): WorkerPoolStats {
    return { threads: this.threads, completed: this.#completed, failed: this.#failed, queued: this.#piscina?.queueSize ?? 0 };
  }

  async destroy(): Promise<void> {
    await this.#piscina?.destroy();
    this.#piscina = undefined;
  }
}
