// The immutable segment file: byte layout, encoder, and a reader that checks every number against
// the file before use. Bytes only (no codecs, no policy); it must never trust an unchecked length,
// allocate in proportion to a number read from the file, or fail with anything but ERR_SEGMENT_CORRUPT.
//
// Layout (little-endian): 64-byte header | sections, each at a 64-byte-aligned offset, zero padding
// between | section table (48 bytes per entry) at an aligned offset | 32-byte trailer. Alignment is
// what makes a Float32Array over the vectors valid straight off an mmap (page aligned) or readFile.

import { StratavecError } from './errors.js';
import { crc32 } from './crc32.js';
import { writeFileAtomic } from './fsutil.js';

export const SEGMENT_MAGIC = 'STRVSEG1';
export const SEGMENT_END_MAGIC = 'STRVEND1';
export const SEGMENT_FORMAT_VERSION = 1;
export const HEADER_SIZE = 64;
export const TRAILER_SIZE = 32;
export const SECTION_ENTRY_SIZE = 48;
export const SECTION_ALIGN = 64;

export const MAX_DIMENSION = 65536;
export const MAX_RECORDS = 2 ** 31 - 1;
export const MAX_SECTIONS = 64;
/** Cap on a section's decoded size: what a reader may ever be asked to allocate for one section. */
export const MAX_SECTION_RAW = 2 ** 30;

/**
 * Section kinds. Unknown kinds are tolerated on read so a newer writer can add sections. `bounds`
 * (centroids and radii, index/bounds.ts holds its layout) and `payloadIndex` (index/payload-index.ts)
 * are optional: files written before them have none; such segments are never pruned by bounds, and
 * their filters are evaluated by a payload scan.
 */
export const SectionKind = { meta: 1, vectors: 2, ids: 3, payloads: 4, hnsw: 5, idLookup: 6, bounds: 7, payloadIndex: 8 } as const;
export type SectionKindName = keyof typeof SectionKind;

/** Codec ids only: the codecs themselves live in workers/, the format just records which one. */
export const Codec = { none: 0, deflate: 1, shuffleDeflate: 2 } as const;
const KNOWN_CODECS: ReadonlySet<number> = new Set(Object.values(Codec));

/** Distance metric of a collection; what each means is documented in index/distance.ts. The
 *  position in METRICS is the code stored in segment headers: never reorder. */
export type Metric = 'l2' | 'ip' | 'cosine';
export const METRICS: readonly Metric[] = Object.freeze(['l2', 'ip', 'cosine'] as const);

export function isMetric(value: unknown): value is Metric {
  return value === 'l2' || value === 'ip' || value === 'cosine';
}

export interface SegmentHeader {
  formatVersion: number;
  dimension: number;
  metric: Metric;
  count: number;
}

export interface SectionEntry {
  kind: number;
  codec: number;
  offset: number;
  storedLength: number;
  rawLength: number;
  storedCrc: number;
  rawCrc: number;
}

export interface SectionInput {
  kind: number;
  /** The stored bytes (already encoded when codec != none); several chunks avoid a concat. */
  data: Uint8Array | Uint8Array[];
  codec?: number;
  /** Required when codec != none; derived from `data` otherwise. */
  rawLength?: number;
  rawCrc?: number;
}

export interface EncodedSegment {
  /** Header, padding, the caller's section buffers (not copied), table and trailer, in file order. */
  chunks: Uint8Array[];
  size: number;
  header: SegmentHeader;
  sections: SectionEntry[];
}

export interface SegmentTrailer {
  tableOffset: number;
  sectionCount: number;
  tableCrc: number;
  headerCrc: number;
}

const MAGIC_BYTES = Buffer.from(SEGMENT_MAGIC, 'latin1');
const END_MAGIC_BYTES = Buffer.from(SEGMENT_END_MAGIC, 'latin1');
const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const TWO_32 = 0x1_0000_0000;
const KIND_NAMES: ReadonlyMap<number, string> = new Map(Object.entries(SectionKind).map(([k, v]) => [v, k]));

function corrupt(message: string, cause?: unknown): StratavecError {
  return new StratavecError('ERR_SEGMENT_CORRUPT', `segment corrupt: ${message}`, cause === undefined ? undefined : { cause });
}

function invalid(message: string): StratavecError {
  return new StratavecError('ERR_INVALID_ARGUMENT', message);
}

function kindLabel(kind: number): string {
  return KIND_NAMES.get(kind) ?? `kind ${kind}`;
}

function dataView(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

function asBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

/** u64 as a number; values past 2^53 cannot be a real offset or length, so they are corruption. */
function readU64(dv: DataView, at: number, what: string): number {
  const lo = dv.getUint32(at, true);
  const hi = dv.getUint32(at + 4, true);
  if (hi > 0x1f_ffff) throw corrupt(`${what} does not fit in 2^53`);
  return hi * TWO_32 + lo;
}

function writeU64(dv: DataView, at: number, value: number): void {
  dv.setUint32(at, value % TWO_32, true);
  dv.setUint32(at + 4, Math.floor(value / TWO_32), true);
}

function hasBytes(buf: Uint8Array, at: number, expected: Uint8Array): boolean {
  for (let i = 0; i < expected.length; i++) if (buf[at + i] !== expected[i]) return false;
  return true;
}

// Arithmetic rather than bit masks: offsets may pass 2^31, where `& ~63` would wrap.
function alignUp(n: number): number {
  return Math.ceil(n / SECTION_ALIGN) * SECTION_ALIGN;
}

function isU32(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= 0xffff_ffff;
}

export function metricCode(metric: Metric): number {
  const code = METRICS.indexOf(metric);
  if (code < 0) throw invalid(`unknown metric ${JSON.stringify(metric)}; expected one of ${METRICS.join(', ')}`);
  return code;
}

export function metricName(code: number): Metric {
  const name = METRICS[code];
  if (name === undefined) throw corrupt(`unknown metric code ${code}`);
  return name;
}

function checkDimension(dimension: number): void {
  if (!Number.isInteger(dimension) || dimension < 1 || dimension > MAX_DIMENSION) {
    throw invalid(`dimension must be an integer in 1..${MAX_DIMENSION}, got ${dimension}`);
  }
}

// The reader rejects a vectors or idLookup section whose size disagrees with the header; the
// writer checks the same rule so it can never produce a file its own reader refuses.
function expectedRawLength(kind: number, header: { dimension: number; count: number }): number | undefined {
  if (kind === SectionKind.vectors) return header.count * header.dimension * 4;
  if (kind === SectionKind.idLookup) return 4 + 4 * header.count;
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Writing

export function encodeSegment(
  header: { dimension: number; metric: Metric; count: number },
  sections: SectionInput[],
): EncodedSegment {
  checkDimension(header.dimension);
  const metric = metricCode(header.metric);
  if (!Number.isInteger(header.count) || header.count < 0 || header.count > MAX_RECORDS) {
    throw invalid(`count must be an integer in 0..${MAX_RECORDS}, got ${header.count}`);
  }
  if (!Array.isArray(sections)) throw new TypeError('sections must be an array');
  if (sections.length > MAX_SECTIONS) throw invalid(`a segment holds at most ${MAX_SECTIONS} sections, got ${sections.length}`);

  const headerBuf = Buffer.alloc(HEADER_SIZE);
  const hv = dataView(headerBuf);
  headerBuf.set(MAGIC_BYTES, 0);
  hv.setUint32(8, SEGMENT_FORMAT_VERSION, true);
  hv.setUint32(12, header.dimension, true);
  hv.setUint32(16, metric, true);
  hv.setUint32(20, header.count, true);
  hv.setUint32(24, 0, true); // flags
  const headerCrc = crc32(headerBuf.subarray(0, 60));
  hv.setUint32(60, headerCrc, true);

  const chunks: Uint8Array[] = [headerBuf];
  const entries: SectionEntry[] = [];
  const seen = new Set<number>();
  let offset = HEADER_SIZE;

  for (const s of sections) {
    if (!isU32(s.kind) || s.kind === 0) throw invalid(`section kind must be an integer in 1..2^32-1, got ${s.kind}`);
    if (seen.has(s.kind)) throw invalid(`duplicate section ${kindLabel(s.kind)}`);
    seen.add(s.kind);
    const codec = s.codec ?? Codec.none;
    if (!KNOWN_CODECS.has(codec)) throw invalid(`section ${kindLabel(s.kind)}: unknown codec ${codec}`);
    const parts = Array.isArray(s.data) ? s.data : [s.data];
    let storedLength = 0;
    let storedCrc = 0;
    for (const p of parts) {
      if (!(p instanceof Uint8Array)) throw new TypeError(`section ${kindLabel(s.kind)}: data must be Uint8Array chunks`);
      storedLength += p.length;
      storedCrc = crc32(p, storedCrc);
    }
    let rawLength: number;
    let rawCrc: number;
    if (codec === Codec.none) {
      if ((s.rawLength !== undefined && s.rawLength !== storedLength) || (s.rawCrc !== undefined && s.rawCrc !== storedCrc)) {
        throw invalid(`section ${kindLabel(s.kind)}: rawLength/rawCrc given for an unencoded section disagree with its data`);
      }
      rawLength = storedLength;
      rawCrc = storedCrc;
    } else {
      if (s.rawLength === undefined || s.rawCrc === undefined) {
        throw invalid(`section ${kindLabel(s.kind)}: rawLength and rawCrc are required when codec is ${codec}`);
      }
      if (!Number.isSafeInteger(s.rawLength) || s.rawLength < 0 || !isU32(s.rawCrc)) {
        throw invalid(`section ${kindLabel(s.kind)}: rawLength must be a non-negative integer and rawCrc a u32`);
      }
      rawLength = s.rawLength;
      rawCrc = s.rawCrc;
    }
    if (rawLength > MAX_SECTION_RAW) throw invalid(`section ${kindLabel(s.kind)} is ${rawLength} bytes raw; the cap is ${MAX_SECTION_RAW}`);
    const expected = expectedRawLength(s.kind, header);
    if (expected !== undefined && rawLength !== expected) {
      throw invalid(`section ${kindLabel(s.kind)} is ${rawLength} bytes raw; count ${header.count} and dimension ${header.dimension} need ${expected}`);
    }

    entries.push({ kind: s.kind, codec, offset, storedLength, rawLength, storedCrc, rawCrc });
    for (const p of parts) if (p.length > 0) chunks.push(p);
    offset += storedLength;
    const padded = alignUp(offset);
    if (padded > offset) chunks.push(Buffer.alloc(padded - offset));
    offset = padded;
  }

  const tableOffset = offset;
  const tail = Buffer.alloc(entries.length * SECTION_ENTRY_SIZE + TRAILER_SIZE);
  const tv = dataView(tail);
  entries.forEach((e, i) => {
    const at = i * SECTION_ENTRY_SIZE;
    tv.setUint32(at, e.kind, true);
    tv.setUint32(at + 4, e.codec, true);
    writeU64(tv, at + 8, e.offset);
    writeU64(tv, at + 16, e.storedLength);
    writeU64(tv, at + 24, e.rawLength);
    tv.setUint32(at + 32, e.storedCrc, true);
    tv.setUint32(at + 36, e.rawCrc, true);
  });
  const tableLength = entries.length * SECTION_ENTRY_SIZE;
  const t = tableLength;
  writeU64(tv, t, tableOffset);
  tv.setUint32(t + 8, entries.length, true);
  tv.setUint32(t + 12, crc32(tail.subarray(0, tableLength)), true);
  tv.setUint32(t + 16, headerCrc, true);
  tail.set(END_MAGIC_BYTES, t + 24);
  chunks.push(tail);

  return {
    chunks,
    size: tableOffset + tail.length,
    header: { formatVersion: SEGMENT_FORMAT_VERSION, dimension: header.dimension, metric: header.metric, count: header.count },
    sections: entries,
  };
}

/** Writes an encoded segment by the crash-safe recipe (temp file, fsync, rename, fsync dir). */
export async function writeSegmentFile(path: string, encoded: EncodedSegment): Promise<void> {
  await writeFileAtomic(path, encoded.chunks);
}

// ---------------------------------------------------------------------------------------------
// Reading: each parse step checks its numbers against the bytes actually present before use.

export function parseHeader(buf: Uint8Array): SegmentHeader {
  if (!(buf instanceof Uint8Array)) throw new TypeError('header must be a Uint8Array');
  if (buf.length < HEADER_SIZE) throw corrupt(`header truncated (${buf.length} of ${HEADER_SIZE} bytes)`);
  if (!hasBytes(buf, 0, MAGIC_BYTES)) throw corrupt('bad header magic');
  const dv = dataView(buf);
  if (crc32(buf.subarray(0, 60)) !== dv.getUint32(60, true)) throw corrupt('header CRC mismatch');
  const formatVersion = dv.getUint32(8, true);
  if (formatVersion !== SEGMENT_FORMAT_VERSION) throw corrupt(`unsupported format version ${formatVersion}`);
  const dimension = dv.getUint32(12, true);
  if (dimension < 1 || dimension > MAX_DIMENSION) throw corrupt(`dimension ${dimension} outside 1..${MAX_DIMENSION}`);
  const metric = metricName(dv.getUint32(16, true));
  const count = dv.getUint32(20, true);
  if (count > MAX_RECORDS) throw corrupt(`record count ${count} exceeds ${MAX_RECORDS}`);
  const flags = dv.getUint32(24, true);
  // Version 1 defines no flags; a set bit means a writer we do not understand, so refuse it.
  if (flags !== 0) throw corrupt(`unknown header flags 0x${flags.toString(16)}`);
  return { formatVersion, dimension, metric, count };
}

export function parseTrailer(tail: Uint8Array, fileSize: number): SegmentTrailer {
  if (!(tail instanceof Uint8Array)) throw new TypeError('trailer must be a Uint8Array');
  if (!Number.isSafeInteger(fileSize) || fileSize < HEADER_SIZE + TRAILER_SIZE) {
    throw corrupt(`file of ${fileSize} bytes is too small to be a segment`);
  }
  if (tail.length !== TRAILER_SIZE) throw corrupt(`trailer is ${tail.length} bytes, expected ${TRAILER_SIZE}`);
  if (!hasBytes(tail, 24, END_MAGIC_BYTES)) throw corrupt('bad trailer magic (truncated or not a segment)');
  const dv = dataView(tail);
  const tableOffset = readU64(dv, 0, 'table offset');
  const sectionCount = dv.getUint32(8, true);
  const tableCrc = dv.getUint32(12, true);
  const headerCrc = dv.getUint32(16, true);
  if (dv.getUint32(20, true) !== 0) throw corrupt('trailer reserved field is not zero');
  if (sectionCount > MAX_SECTIONS) throw corrupt(`trailer claims ${sectionCount} sections; the cap is ${MAX_SECTIONS}`);
  if (tableOffset < HEADER_SIZE || tableOffset % SECTION_ALIGN !== 0) throw corrupt(`table offset ${tableOffset} is not an aligned offset past the header`);
  // The table and trailer end the file exactly: this pins tableOffset and sectionCount to the real
  // file size, so a truncated or extended file cannot pass.
  if (tableOffset + sectionCount * SECTION_ENTRY_SIZE + TRAILER_SIZE !== fileSize) {
    throw corrupt(`table at ${tableOffset} with ${sectionCount} entries does not end a ${fileSize}-byte file`);
  }
  return { tableOffset, sectionCount, tableCrc, headerCrc };
}

export function parseSectionTable(table: Uint8Array, trailer: SegmentTrailer, fileSize: number): SectionEntry[] {
  if (!(table instanceof Uint8Array)) throw new TypeError('table must be a Uint8Array');
  if (trailer.sectionCount > MAX_SECTIONS || trailer.tableOffset + trailer.sectionCount * SECTION_ENTRY_SIZE + TRAILER_SIZE !== fileSize) {
    throw corrupt('trailer disagrees with the file size');
  }
  if (table.length !== trailer.sectionCount * SECTION_ENTRY_SIZE) {
    throw corrupt(`section table is ${table.length} bytes, expected ${trailer.sectionCount * SECTION_ENTRY_SIZE}`);
  }
  if (crc32(table) !== trailer.tableCrc) throw corrupt('section table CRC mismatch');

  const dv = dataView(table);
  const entries: SectionEntry[] = [];
  const kinds = new Set<number>();
  for (let i = 0; i < trailer.sectionCount; i++) {
    const at = i * SECTION_ENTRY_SIZE;
    const kind = dv.getUint32(at, true);
    const label = kindLabel(kind);
    const codec = dv.getUint32(at + 4, true);
    const offset = readU64(dv, at + 8, `section ${label} offset`);
    const storedLength = readU64(dv, at + 16, `section ${label} stored length`);
    const rawLength = readU64(dv, at + 24, `section ${label} raw length`);
    const storedCrc = dv.getUint32(at + 32, true);
    const rawCrc = dv.getUint32(at + 36, true);
    if (dv.getUint32(at + 40, true) !== 0 || dv.getUint32(at + 44, true) !== 0) throw corrupt(`section ${label}: reserved bytes are not zero`);
    if (kind === 0) throw corrupt('section kind 0');
    if (kinds.has(kind)) throw corrupt(`duplicate section ${label}`);
    kinds.add(kind);
    if (!KNOWN_CODECS.has(codec)) throw corrupt(`section ${label}: unknown codec ${codec}`);
    if (offset < HEADER_SIZE || offset % SECTION_ALIGN !== 0) throw corrupt(`section ${label}: offset ${offset} is not aligned past the header`);
    if (offset > trailer.tableOffset || storedLength > trailer.tableOffset - offset) {
      throw corrupt(`section ${label}: [${offset}, +${storedLength}) runs past the section area (ends at ${trailer.tableOffset})`);
    }
    if (rawLength > MAX_SECTION_RAW) throw corrupt(`section ${label}: raw length ${rawLength} exceeds the ${MAX_SECTION_RAW}-byte cap`);
    if (codec === Codec.none && (rawLength !== storedLength || rawCrc !== storedCrc)) {
      throw corrupt(`section ${label}: unencoded section with differing raw and stored length or CRC`);
    }
    entries.push({ kind, codec, offset, storedLength, rawLength, storedCrc, rawCrc });
  }
  const byOffset = [...entries].sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < byOffset.length; i++) {
    const prev = byOffset[i - 1]!;
    const cur = byOffset[i]!;
    if (prev.offset + prev.storedLength > cur.offset) throw corrupt(`sections ${kindLabel(prev.kind)} and ${kindLabel(cur.kind)} overlap`);
  }
  return entries;
}

/**
 * A validated view over a whole segment file held in one Buffer (read or mmap'd). Accessors hand
 * out subarrays of that Buffer, so they live as long as it does: never unmap while one is in use.
 */
export class SegmentReader {
  readonly header: SegmentHeader;
  readonly sections: SectionEntry[];
  readonly size: number;
  readonly #buf: Buffer;
  readonly #tableOffset: number;
  readonly #byKind: ReadonlyMap<number, SectionEntry>;

  private constructor(buf: Buffer, header: SegmentHeader, sections: SectionEntry[], tableOffset: number) {
    this.#buf = buf;
    this.header = header;
    this.sections = sections;
    this.size = buf.length;
    this.#tableOffset = tableOffset;
    this.#byKind = new Map(sections.map((s) => [s.kind, s]));
  }

  /** Checks structure (header, trailer, table, sizes); section CRCs are verifySection/verifyAll. */
  static open(buf: Buffer): SegmentReader {
    if (!(buf instanceof Uint8Array)) throw new TypeError('SegmentReader.open needs a Buffer');
    const b = asBuffer(buf);
    const size = b.length;
    if (size < HEADER_SIZE + TRAILER_SIZE) throw corrupt(`file of ${size} bytes is too small to be a segment`);
    const header = parseHeader(b.subarray(0, HEADER_SIZE));
    const trailer = parseTrailer(b.subarray(size - TRAILER_SIZE), size);
    if (trailer.headerCrc !== b.readUInt32LE(60)) throw corrupt('trailer does not belong to this header');
    const table = b.subarray(trailer.tableOffset, trailer.tableOffset + trailer.sectionCount * SECTION_ENTRY_SIZE);
    const sections = parseSectionTable(table, trailer, size);
    for (const s of sections) {
      const expected = expectedRawLength(s.kind, header);
      if (expected !== undefined && s.rawLength !== expected) {
        throw corrupt(`section ${kindLabel(s.kind)} is ${s.rawLength} bytes raw; the header's count and dimension need ${expected}`);
      }
    }
    return new SegmentReader(b, header, sections, trailer.tableOffset);
  }

  entry(kind: number): SectionEntry | undefined {
    return this.#byKind.get(kind);
  }

  #require(kind: number): SectionEntry {
    const e = this.#byKind.get(kind);
    if (!e) throw corrupt(`section ${kindLabel(kind)} is missing`);
    return e;
  }

  /** The stored bytes, zero-copy. */
  stored(kind: number): Buffer {
    const e = this.#require(kind);
    return this.#buf.subarray(e.offset, e.offset + e.storedLength);
  }

  /** The raw bytes of an unencoded section, zero-copy; an encoded one must go through a codec. */
  raw(kind: number): Buffer {
    const e = this.#require(kind);
    if (e.codec !== Codec.none) throw corrupt(`section ${kindLabel(kind)} is encoded (codec ${e.codec}); decode it before use`);
    return this.#buf.subarray(e.offset, e.offset + e.storedLength);
  }

  verifySection(kind: number): void {
    const e = this.#require(kind);
    const actual = crc32(this.#buf.subarray(e.offset, e.offset + e.storedLength));
    if (actual !== e.storedCrc) {
      throw corrupt(`section ${kindLabel(kind)} CRC mismatch (stored ${e.storedCrc.toString(16)}, computed ${actual.toString(16)})`);
    }
  }

  /**
   * Every section's CRC, plus the padding between sections, which must be zero: with that, every
   * byte of the file is under some check, so a flipped bit anywhere is found, not just in data.
   */
  verifyAll(): void {
    for (const s of this.sections) this.verifySection(s.kind);
    const byOffset = [...this.sections].sort((a, b) => a.offset - b.offset);
    let pos = HEADER_SIZE;
    for (const s of [...byOffset, { kind: -1, offset: this.#tableOffset, storedLength: 0 }]) {
      for (let i = pos; i < s.offset; i++) {
        if (this.#buf[i] !== 0) throw corrupt(`non-zero padding byte at ${i}`);
      }
      pos = Math.max(pos, s.offset + s.storedLength);
    }
  }

  /**
   * The vectors as float32, row-major. Zero-copy when the bytes are 4-byte aligned in memory (they
   * are for mmap and readFile buffers, the section being 64-aligned in the file); a copy otherwise,
   * or on a big-endian host, where the little-endian bytes must be swapped.
   */
  vectors(): Float32Array {
    const n = this.header.count * this.header.dimension;
    const bytes = this.raw(SectionKind.vectors);
    if (bytes.length !== n * 4) throw corrupt(`vectors section is ${bytes.length} bytes, expected ${n * 4}`);
    if (LITTLE_ENDIAN_HOST && bytes.byteOffset % 4 === 0) return new Float32Array(bytes.buffer, bytes.byteOffset, n);
    const out = new Float32Array(n);
    if (LITTLE_ENDIAN_HOST) {
      new Uint8Array(out.buffer).set(bytes);
    } else {
      const dv = dataView(bytes);
      for (let i = 0; i < n; i++) out[i] = dv.getFloat32(i * 4, true);
    }
    return out;
  }
}

// ---------------------------------------------------------------------------------------------
// String tables (ids, payloads): u32 count, u32 offsets[count + 1] relative to the start of the
// bytes area, then the UTF-8 bytes. A zero-length entry is null: ids and JSON payloads are never
// empty, so nothing real is lost by that.

export function encodeStringTable(values: ReadonlyArray<string | null>): Buffer {
  const n = values.length;
  const start = 4 + 4 * (n + 1);
  const ends = new Uint32Array(n);
  let total = 0;
  for (let i = 0; i < n; i++) {
    const v = values[i];
    if (v !== null) {
      if (typeof v !== 'string') throw new TypeError(`string table entry ${i} must be a string or null`);
      if (v.length === 0) throw invalid(`string table entry ${i} is empty; empty reads back as null, so it cannot be stored`);
      total += Buffer.byteLength(v, 'utf8');
      if (start + total > MAX_SECTION_RAW) throw invalid(`string table exceeds the ${MAX_SECTION_RAW}-byte section cap at entry ${i}`);
    }
    ends[i] = total;
  }
  const buf = Buffer.alloc(start + total);
  buf.writeUInt32LE(n, 0);
  // Offsets in one block copy: the section is little-endian, as is every host this copy runs on.
  if (LITTLE_ENDIAN_HOST) buf.set(new Uint8Array(ends.buffer), 8);
  else for (let i = 0; i < n; i++) buf.writeUInt32LE(ends[i]!, 8 + 4 * i);
  // One write of the joined strings (join turns null into '') is far cheaper than a write per
  // entry. It is only wrong when lone surrogates at a boundary pair up across entries, which can
  // only shrink the bytes (6 -> 4): then redo it entry by entry, exactly as byteLength measured.
  if (buf.write(values.join(''), start, 'utf8') !== total) {
    let at = start;
    for (let i = 0; i < n; i++) {
      const v = values[i];
      if (v) at += buf.write(v, at, 'utf8');
    }
  }
  return buf;
}

export class StringTable {
  readonly count: number;
  readonly #buf: Buffer;
  readonly #dv: DataView;
  readonly #dataStart: number;

  private constructor(buf: Buffer, count: number) {
    this.#buf = buf;
    this.#dv = dataView(buf);
    this.count = count;
    this.#dataStart = 4 + 4 * (count + 1);
  }

  /** Validates the whole offset array once (O(count)) so that get() can trust it. */
  static open(buf: Buffer, expectedCount?: number): StringTable {
    if (!(buf instanceof Uint8Array)) throw new TypeError('StringTable.open needs a Buffer');
    const b = asBuffer(buf);
    if (b.length < 8) throw corrupt(`string table of ${b.length} bytes is truncated`);
    const dv = dataView(b);
    const count = dv.getUint32(0, true);
    if (expectedCount !== undefined && count !== expectedCount) throw corrupt(`string table holds ${count} entries, expected ${expectedCount}`);
    const dataStart = 4 + 4 * (count + 1);
    if (dataStart > b.length) throw corrupt(`string table claims ${count} entries but is only ${b.length} bytes`);
    const dataLength = b.length - dataStart;
    if (dv.getUint32(4, true) !== 0) throw corrupt('string table offsets do not start at 0');
    let prev = 0;
    for (let i = 1; i <= count; i++) {
      const o = dv.getUint32(4 + 4 * i, true);
      if (o < prev || o > dataLength) throw corrupt(`string table offset ${i} (${o}) is out of order or past the ${dataLength} data bytes`);
      prev = o;
    }
    if (prev !== dataLength) throw corrupt(`string table data is ${dataLength} bytes but its offsets end at ${prev}`);
    return new StringTable(b, count);
  }

  #range(i: number): [number, number] {
    if (!Number.isInteger(i) || i < 0 || i >= this.count) throw invalid(`string table index ${i} outside 0..${this.count - 1}`);
    return [this.#dataStart + this.#dv.getUint32(4 + 4 * i, true), this.#dataStart + this.#dv.getUint32(8 + 4 * i, true)];
  }

  /** Zero-copy view of entry i's UTF-8 bytes (empty for null). */
  getBytes(i: number): Buffer {
    const [s, e] = this.#range(i);
    return this.#buf.subarray(s, e);
  }

  get(i: number): string | null {
    const [s, e] = this.#range(i);
    return s === e ? null : this.#buf.toString('utf8', s, e);
  }

  /**
   * Buffer.compare(entry i, key) without making a Buffer for the entry: a plain loop beats the
   * native call's argument checks on id-sized keys, and lookups call this ~log2(count) times.
   */
  compareBytes(i: number, key: Uint8Array): number {
    const [s, e] = this.#range(i);
    const buf = this.#buf;
    const n = Math.min(e - s, key.length);
    for (let j = 0; j < n; j++) {
      const d = buf[s + j]! - key[j]!;
      if (d !== 0) return d < 0 ? -1 : 1;
    }
    const d = e - s - key.length;
    return d === 0 ? 0 : d < 0 ? -1 : 1;
  }
}

// ---------------------------------------------------------------------------------------------
// Id lookup: u32 count, then the row numbers sorted by their ids' UTF-8 bytes (Buffer.compare
// order), so a point lookup is a binary search over the mapped file with no index to build.

// Well-formed UTF-16 compared in code-point order, which is UTF-8 byte order. Plain `<` compares
// code units, which puts U+10000.. (surrogates D800-DFFF) below U+E000-U+FFFF; remapping the
// first differing unit fixes exactly that. At the first difference of well-formed strings, a
// surrogate is a lead surrogate of a code point above every BMP character, or both are.
function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x !== y) {
      if (x >= 0xd800 && y >= 0xd800) {
        x = x < 0xe000 ? x + 0x2000 : x - 0x800;
        y = y < 0xe000 ? y + 0x2000 : y - 0x800;
      }
      return x - y;
    }
  }
  return a.length - b.length;
}

const LONE_SURROGATE = /\p{Cs}/u;
const NEEDS_CODE_POINT_ORDER = /[\ud800-\uffff]/;

export function encodeIdLookup(ids: ReadonlyArray<string>): Buffer {
  const n = ids.length;
  let wide = false;
  for (let i = 0; i < n; i++) {
    const id = ids[i];
    if (typeof id !== 'string') throw new TypeError(`id ${i} must be a string`);
    if (id.length === 0) throw invalid(`id ${i} is empty`);
    if (!wide && NEEDS_CODE_POINT_ORDER.test(id)) {
      // Lone surrogates all encode to U+FFFD in UTF-8, so two distinct JS ids would collide on disk.
      if (LONE_SURROGATE.test(id)) throw invalid(`id ${i} is not well-formed UTF-16 (lone surrogate)`);
      wide = true;
    } else if (wide && LONE_SURROGATE.test(id)) {
      throw invalid(`id ${i} is not well-formed UTF-16 (lone surrogate)`);
    }
  }
  const rows = new Array<number>(n);
  for (let i = 0; i < n; i++) rows[i] = i;
  // Without any code unit >= U+D800, code-unit order already is byte order, and `<` is native.
  if (wide) rows.sort((a, b) => compareCodePoints(ids[a]!, ids[b]!));
  else rows.sort((a, b) => (ids[a]! < ids[b]! ? -1 : ids[a]! > ids[b]! ? 1 : 0));
  for (let i = 1; i < n; i++) {
    // Well-formed strings are equal exactly when their UTF-8 bytes are.
    if (ids[rows[i - 1]!] === ids[rows[i]!]) throw invalid(`duplicate id ${JSON.stringify(ids[rows[i]!])} (rows ${rows[i - 1]} and ${rows[i]})`);
  }
  const out = Buffer.alloc(4 + 4 * n);
  out.writeUInt32LE(n, 0);
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  for (let i = 0; i < n; i++) view.setUint32(4 + 4 * i, rows[i]!, true);
  return out;
}

/** Row of `id`, or -1. Checks every row number it reads, so a bad lookup cannot index out of range. */
export function lookupRow(lookup: Buffer, ids: StringTable, id: string): number {
  if (lookup.length < 4) throw corrupt(`id lookup of ${lookup.length} bytes is truncated`);
  const dv = dataView(lookup);
  const n = dv.getUint32(0, true);
  if (n !== ids.count || lookup.length !== 4 + 4 * n) {
    throw corrupt(`id lookup holds ${n} rows in ${lookup.length} bytes; the ids table holds ${ids.count}`);
  }
  const key = Buffer.from(id, 'utf8');
  let lo = 0;
  let hi = n - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const row = dv.getUint32(4 + 4 * mid, true);
    if (row >= n) throw corrupt(`id lookup row ${row} is out of range (count ${n})`);
    const c = ids.compareBytes(row, key);
    if (c === 0) return row;
    if (c < 0) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}
