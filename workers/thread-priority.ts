// CPU priority of pool threads. Maintenance and seals run at a higher nice value than the main
// thread so a search never waits behind them for a core: on this 2-core machine, two busy pool
// threads at nice 0 made search p99 ~14x idle; at nice 10 it stayed at idle (native-bench/README.md).
// RocksDB lowers its compaction threads the same way. Linux only: nice is per thread there, set
// through setpriority() on the thread id; elsewhere this does nothing.

import { readlinkSync } from 'node:fs';
import os from 'node:os';

/** Nice value added to pool threads unless the caller says otherwise. */
export const DEFAULT_WORKER_NICE = 10;
/** The highest (least favoured) nice value Linux accepts. */
export const MAX_NICE = 19;

/** This thread's kernel id, or undefined where /proc/thread-self does not exist (not Linux). */
export function threadKernelId(): number | undefined {
  try {
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
    return Number.isInteger(tid) && tid > 0 ? tid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Lowers the calling thread's priority to `nice` (raising a nice value needs no privilege). Threads
 * this thread starts afterwards inherit it, which is why the pool makes sure libuv's shared thread
 * pool already exists before its workers start. Best effort: where the platform has no per-thread
 * nice, the thread keeps its priority.
 */
export function setThreadNice(nice: number): void {
  const tid = threadKernelId();
  if (tid === undefined) return;
  try {
    if (os.getPriority(tid) < nice) os.setPriority(tid, nice);
  } catch {
    // not permitted here: run at the inherited priority
  }
}
