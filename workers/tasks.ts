// Worker entry for the piscina pool: one named export per task. Known failures cross the thread
// boundary as plain data ({ code, message }) because structured clone drops the StratavecError class.

import { StratavecError } from '../format/errors.js';
import { seal as sealImpl, type SealTask, type SealResult } from './seal.js';
import { verifySegment as verifyImpl, type VerifyTask, type VerifyResult } from './verify.js';
import * as coldCopy from './cold-copy.js';

export interface TaskFailure {
  failed: { code: string; message: string };
}

async function guard<T>(fn: () => Promise<T>): Promise<T | TaskFailure> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof StratavecError) return { failed: { code: err.code, message: err.message } };
    throw err;
  }
}

export function seal(task: SealTask): Promise<SealResult | TaskFailure> {
  return guard(() => sealImpl(task));
}

export function verifySegment(task: VerifyTask): Promise<VerifyResult | TaskFailure> {
  return guard(() => verifyImpl(task));
}

export function encodeColdCopy(task: Parameters<typeof coldCopy.encodeColdCopy>[0]): Promise<Awaited<ReturnType<typeof coldCopy.encodeColdCopy>> | TaskFailure> {
  return guard(() => coldCopy.encodeColdCopy(task));
}

export function decodeColdCopy(task: Parameters<typeof coldCopy.decodeColdCopy>[0]): Promise<Awaited<ReturnType<typeof coldCopy.decodeColdCopy>> | TaskFailure> {
  return guard(() => coldCopy.decodeColdCopy(task));
}
