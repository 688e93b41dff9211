// The cold tier: segment copies in an ObjectStore, compressed per section. Owns the object key
// layout and the verified transfer of a segment between a local raw file and its remote
// compressed copy (the codec work runs in the pool). It never changes a manifest: the engine
// commits only after a transfer here has verified the copy.

import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { StratavecError } from '../format/errors.js';
import { TEMP_PREFIX } from '../format/fsutil.js';
import { parseTrailer, parseSectionTable, TRAILER_SIZE, type SectionEntry } from '../format/segment.js';
import type { WorkerPool } from '../workers/pool.js';
import type { GetToFileOptions, ObjectStore } from './object-store.js';

/**
 * Downloads that only feed a worker's decode or check and are removed right after skip the
 * fsyncs: the scratch file is never a copy anything depends on (a restored segment file is
 * written durably by the decode task itself). See #withScratchCopy.
 */
const SCRATCH: GetToFileOptions = { durable: false };

/** What the manifest records of a remote copy. */
export interface RemoteCopy {
  key: string;
  bytes: number;
  storedCrcs: number[];
  codecs: number[];
}

export interface TransferResult {
  /** Bytes that crossed the wire (compressed). */
  bytes: number;
  /** Raw (logical) bytes of the segment. */
  rawBytes: number;
  sections: SectionEntry[];
  ms: number;
}

export class ColdTier {
  readonly store: ObjectStore;
  readonly #pool: WorkerPool;
  readonly #tmpDir: string;
  readonly #minSavings: number | undefined;

  constructor(store: ObjectStore, pool: WorkerPool, tmpDir: string, opts: { minSavings?: number } = {}) {
    this.store = store;
    this.#pool = pool;
    this.#tmpDir = tmpDir;
    this.#minSavings = opts.minSavings;
  }

  segmentKey(collection: string, segmentId: string): string {
    return `${collection}/segments/${segmentId}`;
  }

  manifestKey(collection: string, version: number): string {
    return `${collection}/manifest/${String(version).padStart(12, '0')}.manifest`;
  }

  #tmp(tag: string): string {
    return path.join(this.#tmpDir, `${TEMP_PREFIX}${tag}-${randomBytes(6).toString('hex')}`);
  }

  /**
   * Compresses the raw local file `src` in a worker, uploads it under `key`, and checks the
   * remote copy: its size, and its section table read back by a ranged GET, must be what was
   * written; the raw CRC32s must equal `expectRawCrcs` (the manifest's).
   */
  async upload(src: string, key: string, expectRawCrcs: number[]): Promise<RemoteCopy & TransferResult> {
    const t0 = performance.now();
    const tmp = this.#tmp('up');
    try {
      const enc = await this.#pool.run('encodeColdCopy', { src, dest: tmp, ...(this.#minSavings === undefined ? {} : { minSavings: this.#minSavings }) });
      checkRawCrcs(enc.sections, expectRawCrcs, key);
      await this.store.putFile(key, tmp);
      const info = await this.store.head(key);
      if (!info || info.size !== enc.bytes) {
        throw new StratavecError('ERR_SEGMENT_CORRUPT', `remote copy ${key} has ${info?.size ?? 'no'} bytes after upload, expected ${enc.bytes}`);
      }
      const remote = await this.readTable(key, enc.bytes);
      for (let i = 0; i < enc.sections.length; i++) {
        if (remote[i]?.storedCrc !== enc.sections[i]!.storedCrc) {
          throw new StratavecError('ERR_SEGMENT_CORRUPT', `remote copy ${key}: section table differs from the one uploaded`);
        }
      }
      return {
        key, bytes: enc.bytes, rawBytes: enc.rawBytes, sections: enc.sections, ms: performance.now() - t0,
        storedCrcs: enc.sections.map((s) => s.storedCrc), codecs: enc.sections.map((s) => s.codec),
      };
    } finally {
      await fsp.rm(tmp, { force: true });
    }
  }

  /**
   * Downloads `remote` and decodes it in a worker into the raw segment file `dest` (written by
   * the crash-safe recipe), checking every stored CRC32 and every raw CRC32 against the manifest.
   * On any failure `dest` does not exist afterwards.
   */
  async download(remote: RemoteCopy, dest: string, expectRawCrcs: number[]): Promise<TransferResult> {
    const t0 = performance.now();
    try {
      return await this.#withScratchCopy(remote, 'down', async (src, bytes) => {
        const dec = await this.#pool.run('decodeColdCopy', { src, dest, expectRawCrcs });
        return { bytes, rawBytes: dec.bytes, sections: dec.sections, ms: performance.now() - t0 };
      });
    } catch (err) {
      await fsp.rm(dest, { force: true });
      throw err;
    }
  }

  /**
   * Checks a remote copy end to end without keeping it: downloads it to a temp file and, in a
   * worker, checks its size, every stored CRC32, and every decoded section against the manifest's
   * raw CRC32s. Throws ERR_OBJECT_NOT_FOUND (missing), ERR_SEGMENT_CORRUPT (bad), or the store's
   * own error (unreachable: that says nothing about the copy).
   */
  async verify(remote: RemoteCopy, expectRawCrcs: number[]): Promise<{ bytes: number; ms: number }> {
    const t0 = performance.now();
    return this.#withScratchCopy(remote, 'check', async (src, bytes) => {
      await this.#pool.run('verifyColdCopy', { src, expectRawCrcs });
      return { bytes, ms: performance.now() - t0 };
    });
  }

  /**
   * Downloads `remote` to a scratch file, checks its size against the manifest, hands it to `use`,
   * and removes it. No fsyncs (SCRATCH): the file is read once, by a worker, and never kept.
   */
  async #withScratchCopy<T>(remote: RemoteCopy, tag: string, use: (file: string, bytes: number) => Promise<T>): Promise<T> {
    const tmp = this.#tmp(tag);
    try {
      const got = await this.store.getToFile(remote.key, tmp, SCRATCH);
      if (got !== remote.bytes) {
        throw new StratavecError('ERR_SEGMENT_CORRUPT', `remote copy ${remote.key} is ${got} bytes, the manifest says ${remote.bytes}`);
      }
      return await use(tmp, got);
    } finally {
      await fsp.rm(tmp, { force: true });
    }
  }

  /** The section table of a remote copy, by two ranged GETs (trailer, then table). */
  async readTable(key: string, size: number): Promise<SectionEntry[]> {
    if (size < TRAILER_SIZE) throw new StratavecError('ERR_SEGMENT_CORRUPT', `remote copy ${key} is too short`);
    const tail = await this.store.get(key, { offset: size - TRAILER_SIZE, length: TRAILER_SIZE });
    const trailer = parseTrailer(tail, size);
    const table = await this.store.get(key, { offset: trailer.tableOffset, length: size - TRAILER_SIZE - trailer.tableOffset });
    return parseSectionTable(table, trailer, size);
  }

  /** The stored bytes of one section of a remote copy (one ranged GET). */
  async readSection(key: string, entry: SectionEntry): Promise<Buffer> {
    const buf = await this.store.get(key, { offset: entry.offset, length: entry.storedLength });
    if (buf.length !== entry.storedLength) throw new StratavecError('ERR_SEGMENT_CORRUPT', `remote copy ${key} is shorter than its section table`);
    return buf;
  }
}

function checkRawCrcs(sections: SectionEntry[], expect: number[], what: string): void {
  if (sections.length !== expect.length || sections.some((s, i) => s.rawCrc !== expect[i])) {
    throw new StratavecError('ERR_SEGMENT_CORRUPT', `${what}: section CRC32s differ from the manifest`);
  }
}
