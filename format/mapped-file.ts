// Read-only memory mapping of a whole file (@riaskov/mmap-io). The mapping outlives the file
// descriptor, which is closed here, and is released when the Buffer is garbage-collected.
// Callers must never truncate or rewrite a mapped file: a vanished page is a SIGBUS.

import { openSync, closeSync, fstatSync } from 'node:fs';
import * as path from 'node:path';
import mmapModule from '@riaskov/mmap-io';
import { StratavecError, ioError } from './errors.js';

// The package's typings declare an ES default export over a CommonJS module; at run time the
// default import *is* module.exports. This cast keeps that knowledge in one place.
const mmap = mmapModule as unknown as {
  map(size: number, prot: number, flags: number, fd: number, offset?: number, advise?: number): Buffer;
  PROT_READ: number;
  MAP_SHARED: number;
  MADV_RANDOM: number;
  MADV_SEQUENTIAL: number;
};

/**
 * Maps `file` read-only. `minSize` rejects files too short to be what the caller expects
 * (mmap of an empty file fails, and a stub is corrupt anyway).
 */
export function mapReadOnly(file: string, opts: { minSize: number; sequential?: boolean }): Buffer {
  let fd: number | undefined;
  try {
    fd = openSync(file, 'r');
    const { size } = fstatSync(fd);
    if (size < opts.minSize) {
      throw new StratavecError('ERR_SEGMENT_CORRUPT', `${path.basename(file)} is ${size} bytes, too short`);
    }
    return mmap.map(size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0, opts.sequential ? mmap.MADV_SEQUENTIAL : mmap.MADV_RANDOM);
  } catch (err) {
    if (err instanceof StratavecError) throw err;
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new StratavecError('ERR_SEGMENT_NOT_FOUND', `${path.basename(file)} is missing`, { cause: err });
    }
    throw ioError(err, `mapping ${path.basename(file)}`);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
