// Worker entry for the piscina pool: one named export per task. Known failures cross the thread
// boundary as plain data ({ code, message }) because structured clone drops the StratavecError class.
// Each task gets the TaskStop its input carries (the pool adds it; see task-stop.ts). Loaded in a
// pool thread, the module first lowers that thread's CPU priority to the pool's nice value.

import { isMainThread } from 'node:worker_threads';
import { workerData } from 'piscina';
import { StratavecError } from '../format/errors.js';
import { seal as sealImpl, type SealTask, type SealResult } from './seal.js';
import { verifySegment as verifyImpl, type VerifyTask, type VerifyResult } from './verify.js';
import {
  encodeColdCopy as encodeColdImpl, decodeColdCopy as decodeColdImpl, verifyColdCopy as verifyColdImpl,
  type EncodeColdCopyTask, type EncodeColdCopyResult, type DecodeColdCopyTask, type DecodeColdCopyResult,
  type VerifyColdCopyTask,
} from './cold-copy.js';
import { compact as compactImpl, type CompactTask } from './compact.js';
import { clusterPlan as clusterPlanImpl, type ClusterPlanTask, type ClusterPlanResult } from './cluster.js';
import { TaskStop, type Stoppable } from './task-stop.js';
import { setThreadNice } from './thread-priority.js';

if (!isMainThread) {
  const nice = (workerData as { nice?: unknown } | undefined)?.nice;
  if (typeof nice === 'number' && nice > 0) setThreadNice(nice);
}

export interface TaskFailure {
  failed: { code: string; message: string };
}

async function guard<T>(input: Stoppable, fn: (stop: TaskStop) => Promise<T>): Promise<T | TaskFailure> {
  try {
    return await fn(TaskStop.of(input));
  } catch (err) {
    if (err instanceof StratavecError) return { failed: { code: err.code, message: err.message } };
    throw err;
  }
}

export function seal(task: SealTask & Stoppable): Promise<SealResult | TaskFailure> {
  return guard(task, (stop) => sealImpl(task, stop));
}

export function verifySegment(task: VerifyTask & Stoppable): Promise<VerifyResult | TaskFailure> {
  return guard(task, () => verifyImpl(task));
}

export function encodeColdCopy(task: EncodeColdCopyTask & Stoppable): Promise<EncodeColdCopyResult | TaskFailure> {
  return guard(task, (stop) => encodeColdImpl(task, stop));
}

export function decodeColdCopy(task: DecodeColdCopyTask & Stoppable): Promise<DecodeColdCopyResult | TaskFailure> {
  return guard(task, (stop) => decodeColdImpl(task, stop));
}

export function verifyColdCopy(task: VerifyColdCopyTask & Stoppable): Promise<VerifyResult | TaskFailure> {
  return guard(task, (stop) => verifyColdImpl(task, stop));
}

export function compact(task: CompactTask & Stoppable): Promise<SealResult | TaskFailure> {
  return guard(task, (stop) => compactImpl(task, stop));
}

export function clusterPlan(task: ClusterPlanTask & Stoppable): Promise<ClusterPlanResult | TaskFailure> {
  return guard(task, (stop) => clusterPlanImpl(task, stop));
}
