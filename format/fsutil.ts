// Crash-safe file primitives: the temp-file / fsync / rename / fsync-dir recipe every durable file
// in stratavec is written by. Nothing here knows about segments or manifests.

import { promises as fsp, constants as fsc } from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { ioError } from './errors.js';

/** Prefix of every temp file the engine creates; GC and recovery treat such files as garbage. */
export const TEMP_PREFIX = '.tmp-';

export function tempPathFor(finalPath: string): string {
  return path.join(path.dirname(finalPath), `${TEMP_PREFIX}${path.basename(finalPath)}-${randomBytes(6).toString('hex')}`);
}

export async function fsyncDir(dir: string): Promise<void> {
  const fh = await fsp.open(dir, fsc.O_RDONLY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Writes `chunks` to `finalPath` so that after a crash the path holds either the old content or
 * the whole new content: temp file in the same directory, fsync, rename, fsync the directory.
 */
export async function writeFileAtomic(finalPath: string, chunks: Uint8Array | Uint8Array[]): Promise<void> {
  const tmp = tempPathFor(finalPath);
  const list = Array.isArray(chunks) ? chunks : [chunks];
  let fh: fsp.FileHandle | undefined;
  try {
    fh = await fsp.open(tmp, 'wx', 0o644);
    let pos = 0;
    for (const chunk of list) {
      await writeFully(fh, chunk, pos);
      pos += chunk.byteLength;
    }
    await fh.sync();
    await fh.close();
    fh = undefined;
    await fsp.rename(tmp, finalPath);
    await fsyncDir(path.dirname(finalPath));
  } catch (err) {
    if (fh) await fh.close().catch(() => undefined); // already failing; the original error wins
    await fsp.rm(tmp, { force: true }).catch(() => undefined);
    throw ioError(err, `writing ${path.basename(finalPath)}`);
  }
}

/**
 * Writes all of `data` at `position` (or the current offset). On a filling disk write(2) and writev(2) may write less
 * than asked *without* an error (the next call gets ENOSPC); FileHandle.write does not loop, so a
 * file written without this can be silently short.
 */
export async function writeFully(fh: fsp.FileHandle, data: Uint8Array, position?: number): Promise<void> {
  let done = 0;
  while (done < data.byteLength) {
    const { bytesWritten } = await fh.write(data, done, data.byteLength - done, position === undefined ? null : position + done);
    if (bytesWritten === 0) throw Object.assign(new Error('write made no progress'), { code: 'EIO' });
    done += bytesWritten;
  }
}

export async function exists(p: string): Promise<boolean> {
  try {
    await fsp.access(p);
    return true;
  } catch {
    return false; // any access failure means "not usable here"; callers only branch on presence
  }
}

/** Creates `dir` (and parents) and fsyncs its parent so the new entry survives a crash. */
export async function mkdirDurable(dir: string): Promise<void> {
  await fsp.mkdir(dir, { recursive: true });
  await fsyncDir(path.dirname(dir));
}
