// The warm tier: segment files on local disk, mapped read-only with mmap. Owns the local segment
// directory layout (segment files and cold segments' id stubs) and the mapping of a segment file
// into a SegmentView. Files here are immutable: never truncated or rewritten while mapped (a
// mapped page that vanishes is a SIGBUS); a file is replaced only by writing a new one under a
// new name, and unlinked only after its last reader is gone or while a mapping keeps it alive.

import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { mapReadOnly } from '../format/mapped-file.js';
import type { ManifestSegment } from '../format/manifest.js';
import { HEADER_SIZE, TRAILER_SIZE } from '../format/segment.js';
import { SegmentView } from './segment-view.js';

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

  /** The id stub a cold segment keeps locally (its ids and id lookup, so open needs no I/O). */
  stubPathFor(collection: string, seq: number): string {
    return path.join(this.dirFor(collection), `${String(seq).padStart(8, '0')}.stub`);
  }

  /** The local file a committed segment must have: its segment file when warm, its stub when cold. */
  localFileOf(collection: string, meta: Pick<ManifestSegment, 'tier' | 'seq'>): string {
    return meta.tier === 'warm' ? this.pathFor(collection, meta.seq) : this.stubPathFor(collection, meta.seq);
  }

  /** Maps a segment file read-only; unlinking it later is safe on POSIX, rewriting it is not. */
  map(file: string): Buffer {
    return mapReadOnly(file, { minSize: HEADER_SIZE + TRAILER_SIZE });
  }

  /**
   * Maps a warm segment's file as a view, checking its structure and shape (not its CRCs: that is
   * verify-on-read's job, in a worker). Throws ERR_SEGMENT_CORRUPT / ERR_SEGMENT_NOT_FOUND.
   * `file`: another copy of it (a read-only open's scratch download).
   */
  mapSegment(collection: string, meta: Pick<ManifestSegment, 'id' | 'seq' | 'records'>, dimension: number, file = this.pathFor(collection, meta.seq)): SegmentView {
    const buf = this.map(file);
    return new SegmentView(meta.id, buf, { verify: false, expect: { dimension, count: meta.records } });
  }

  async remove(file: string): Promise<void> {
    await fsp.rm(file, { force: true });
  }
}
