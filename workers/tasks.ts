// Worker entry for the piscina pool: one named export per task. Known failures cross the thread
// boundary as plain data ({ code, message }) because structured clone drops the StratavecError class.

import { StratavecError } from '../format/errors.js';
import { seal as sealImpl, type SealTask, type SealResult } from './seal.js';
import { verifySegment as verifyImpl, type VerifyTask, type VerifyResult } from './verify.js';
import {
  encodeColdCopy as encodeColdImpl, decodeColdCopy as decodeColdImpl, verifyColdCopy as verifyColdImpl,
  type EncodeColdCopyTask, type EncodeColdCopyResult, type DecodeColdCopyTask, type DecodeColdCopyResult,
  type VerifyColdCopyTask,
} from './cold-copy.js';
import { compact as compactImpl, type CompactTask } from './compact.js';

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

export function encodeColdCopy(task: EncodeColdCopyTask): Promise<EncodeColdCopyResult | TaskFailure> {
  return guard(() => encodeColdImpl(task));
}

export function decodeColdCopy(task: DecodeColdCopyTask): Promise<DecodeColdCopyResult | TaskFailure> {
  return guard(() => decodeColdImpl(task));
}

export function verifyColdCopy(task: VerifyColdCopyTask): Promise<VerifyResult | TaskFailure> {
  return guard(() => verifyColdImpl(task));
}

export function compact(task: CompactTask): Promise<SealResult | TaskFailure> {
  return guard(() => compactImpl(task));
}
