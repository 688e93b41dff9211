// The recent queries of one collection: a ring of the last query vectors searched (as searched:
// normalised for cosine). Clustering compaction reads it to learn where the workload goes, and
// packs the most searched parts of the space into the same segments so the tiering policy can keep
// them local and leave the rest cold (README "Clustering compaction").
//
// The ring is saved in the collection's directory (`recent-queries.bin`) at close and on the
// background compaction loop, and loaded at open, so a clustering compaction run after a restart,
// or by the CLI once the app has closed, still lays rows out by how they were searched. It is a
// hint, not data: a missing, torn, corrupt or foreign file starts the ring empty (never an error),
// and a crash loses the queries since the last save.

import { promises as fsp } from 'node:fs';
import { crc32 } from '../format/crc32.js';
import { writeFileAtomic } from '../format/fsutil.js';

/** Most queries kept; fewer at high dimensions (QUERY_SAMPLE_BYTES). */
export const QUERY_SAMPLE_MAX = 4096;
/** Memory the ring may take per collection. */
export const QUERY_SAMPLE_BYTES = 4 * 1024 * 1024;

/** The saved ring's file name, in the collection's directory. */
export const QUERY_SAMPLE_FILE = 'recent-queries.bin';

// Bytes (little-endian): magic | u32 version | u32 dimension | u32 count | f32 queries[count *
// dimension], oldest first | u32 CRC32 of everything before it.
const MAGIC = 0x51525653; // "SVRQ" read as a little-endian u32
const VERSION = 1;
const HEADER = 16;

export class QuerySample {
  readonly dimension: number;
  readonly capacity: number;
  readonly #ring: Float32Array;
  /** Queries recorded since open, loaded ones included (the ring holds the last `capacity`). */
  #seen = 0;
  /** `#seen` when the ring last matched its file (loaded or saved). */
  #stored = 0;

  constructor(dimension: number, capacity = Math.max(1, Math.min(QUERY_SAMPLE_MAX, Math.floor(QUERY_SAMPLE_BYTES / (4 * dimension))))) {
    this.dimension = dimension;
    this.capacity = capacity;
    this.#ring = new Float32Array(capacity * dimension);
  }

  record(query: Float32Array): void {
    if (query.length !== this.dimension) return;
    this.#ring.set(query, (this.#seen % this.capacity) * this.dimension);
    this.#seen++;
  }

  /** Queries recorded since open (loaded ones included). */
  get seen(): number {
    return this.#seen;
  }

  /** How many the ring holds now. */
  get size(): number {
    return Math.min(this.#seen, this.capacity);
  }

  /** A copy of the queries held, `size * dimension` (order does not matter to its readers). */
  snapshot(): Float32Array {
    return this.#ring.slice(0, this.size * this.dimension);
  }

  /** True when queries were recorded since the ring was loaded or saved. */
  get unsaved(): boolean {
    return this.#seen !== this.#stored;
  }

  /** The queries held, oldest first, in the file's layout. */
  encode(): Buffer {
    const n = this.size;
    const dim = this.dimension;
    const out = Buffer.alloc(HEADER + 4 * n * dim + 4);
    out.writeUInt32LE(MAGIC, 0);
    out.writeUInt32LE(VERSION, 4);
    out.writeUInt32LE(dim, 8);
    out.writeUInt32LE(n, 12);
    const floats = new Float32Array(out.buffer, out.byteOffset + HEADER, n * dim);
    const oldest = this.#seen > this.capacity ? this.#seen % this.capacity : 0;
    for (let i = 0; i < n; i++) {
      const slot = (oldest + i) % this.capacity;
      floats.set(this.#ring.subarray(slot * dim, (slot + 1) * dim), i * dim);
    }
    out.writeUInt32LE(crc32(out.subarray(0, out.length - 4)), out.length - 4);
    return out;
  }

  /**
   * Replaces the ring's content with the queries in `bytes` (the newest `capacity` of them), and
   * returns how many it took; 0, leaving the ring as it was, when the bytes are not a whole file
   * of this dimension.
   */
  decode(bytes: Uint8Array): number {
    const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (buf.length < HEADER + 4 || buf.readUInt32LE(0) !== MAGIC || buf.readUInt32LE(4) !== VERSION) return 0;
    const dim = buf.readUInt32LE(8);
    const count = buf.readUInt32LE(12);
    if (dim !== this.dimension || buf.length !== HEADER + 4 * count * dim + 4) return 0;
    if (crc32(buf.subarray(0, buf.length - 4)) !== buf.readUInt32LE(buf.length - 4)) return 0;
    const take = Math.min(count, this.capacity);
    // A copy: the file's floats need not be 4-byte aligned in `bytes`.
    const floats = new Float32Array(new Uint8Array(buf.subarray(HEADER + 4 * (count - take) * dim, buf.length - 4)).buffer);
    for (let i = 0; i < floats.length; i++) if (!Number.isFinite(floats[i]!)) return 0;
    this.#ring.fill(0);
    this.#ring.set(floats);
    this.#seen = take;
    this.#stored = take;
    return take;
  }

  /** Writes the ring to `file` (crash-safe: the old file or the whole new one). */
  async save(file: string): Promise<void> {
    const seen = this.#seen;
    await writeFileAtomic(file, this.encode());
    this.#stored = seen;
  }

  /** Loads `file` if it holds queries of this dimension; how many it loaded (0 when it did not). */
  async load(file: string): Promise<number> {
    let bytes: Buffer;
    try {
      bytes = await fsp.readFile(file);
    } catch {
      return 0; // none saved yet, or unreadable: the ring starts empty
    }
    return this.decode(bytes);
  }
}
