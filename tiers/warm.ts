// The warm tier: segment files on local disk, mapped read-only with mmap. Owns the local segment
// directory layout. Files here are immutable: never truncated or rewritten while mapped (a mapped
// page that vanishes is a SIGBUS); a file is replaced only by writing a new one under a new name.

import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { mapReadOnly } from '../format/mapped-file.js';
import { HEADER_SIZE, TRAILER_SIZE } from '../format/segment.js';

export class WarmTier {
  readonly root: string;

  constructor(root: string) {
    this.root = root;
  }

  dirFor(collection: string): string {
    return path.join(this.root, collection, 'segments');
  }

  pathFor(collection: string, seq: number): string {
    return path.join(this.dirFor(collection), `${String(seq).padStart(8, '0')}.seg`);
  }

  /** Maps a segment file read-only; unlinking it later is safe on POSIX, rewriting it is not. */
  map(file: string): Buffer {
    return mapReadOnly(file, { minSize: HEADER_SIZE + TRAILER_SIZE });
  }

  async remove(file: string): Promise<void> {
    await fsp.rm(file, { force: true });
  }
}
