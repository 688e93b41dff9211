// Section codecs for cold copies: entropy-based choice of none / deflate / byte-shuffle + deflate,
// the byte shuffle, and two interchangeable raw-deflate implementations (fflate, node:zlib).
// Decoding never trusts a length it was given: output is inflated into a buffer of exactly the
// recorded size, and anything else (short, long, malformed) is ERR_SEGMENT_CORRUPT.
//
// Stored byte formats (what a codec id in a segment's section table means):
//   none (0)            the raw bytes.
//   deflate (1)         RFC 1951 raw deflate of the raw bytes (no zlib or gzip wrapper).
//   shuffleDeflate (2)  raw deflate of byteShuffle(raw, 4): the element size is fixed at 4 by the
//                       codec id, since float32 and u32 are the only numeric types a segment holds.
// Either implementation decodes what the other wrote: both speak plain RFC 1951.

import * as zlib from 'node:zlib';
import { deflateSync as fflateDeflateSync, inflateSync as fflateInflateSync } from 'fflate';
import { StratavecError } from '../format/errors.js';
import { crc32 } from '../format/crc32.js';
import { Codec } from '../format/segment.js';

export type DeflateImpl = 'fflate' | 'zlib';
export type DeflateLevel = 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9;

/** The element width shuffleDeflate shuffles by; part of that codec's definition (see above). */
export const SHUFFLE_ELEMENT_SIZE = 4;
/** Default of `minSavings`: a compressed section is kept only if it is at least 10% smaller. */
export const DEFAULT_MIN_SAVINGS = 0.1;
/** Default entropy sample: 16 windows of 4 KiB spread over the data. */
export const DEFAULT_ENTROPY_SAMPLE = 64 * 1024;
const SAMPLE_WINDOWS = 16;
/** At or above this (bits/byte) on both estimates, deflate cannot save enough to be worth a try. */
export const HIGH_ENTROPY = 7.5;
/** The per-plane estimate must beat the plain one by this much (bits/byte) to pick the shuffle. */
export const SHUFFLE_MARGIN = 0.25;
/**
 * Deflate's best case is about 1032:1 (a 258-byte match in two bits); a section table claiming
 * more than that for its stored bytes is lying, and we refuse before allocating the raw size.
 */
const MAX_INFLATE_RATIO = 1032;
const INFLATE_SLACK = 4096;

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function corrupt(message: string, cause?: unknown): StratavecError {
  return new StratavecError('ERR_SEGMENT_CORRUPT', `section codec: ${message}`, cause === undefined ? undefined : { cause });
}

function invalid(message: string): StratavecError {
  return new StratavecError('ERR_INVALID_ARGUMENT', message);
}

function checkBytes(data: unknown, what: string): asserts data is Uint8Array {
  if (!(data instanceof Uint8Array)) throw new TypeError(`${what} must be a Uint8Array`);
}

// ---------------------------------------------------------------------------------------------
// Entropy

/**
 * Byte windows to estimate from: the whole input when it fits in `sample`, else SAMPLE_WINDOWS
 * windows spread evenly from head to tail (a section's head alone is often unrepresentative: the
 * string table's offset array, a header). Window starts are multiples of `align` so that byte j of
 * a window is byte j of an element.
 */
function sampleWindows(data: Uint8Array, sample: number, align: number): Uint8Array[] {
  if (data.length <= sample) return [data];
  let w = Math.floor(sample / SAMPLE_WINDOWS);
  w -= w % align;
  if (w < align) return [data.subarray(0, Math.max(align, sample - (sample % align)))];
  const span = data.length - w;
  const out: Uint8Array[] = [];
  for (let i = 0; i < SAMPLE_WINDOWS; i++) {
    let start = Math.floor((span * i) / (SAMPLE_WINDOWS - 1));
    start -= start % align;
    out.push(data.subarray(start, start + w));
  }
  return out;
}

function entropyOfCounts(counts: Uint32Array, from: number, total: number): number {
  if (total === 0) return 0;
  let h = 0;
  for (let b = from; b < from + 256; b++) {
    const c = counts[b]!;
    if (c !== 0) {
      const p = c / total;
      h -= p * Math.log2(p);
    }
  }
  return h;
}

function checkSample(sample: number): void {
  if (!Number.isInteger(sample) || sample < 1) throw invalid(`sample must be a positive integer, got ${sample}`);
}

/**
 * Order-0 Shannon entropy in bits per byte (0..8) over a sample of up to `sample` bytes taken as
 * evenly spread windows. An empty input has entropy 0.
 */
export function shannonEntropy(bytes: Uint8Array, sample = DEFAULT_ENTROPY_SAMPLE): number {
  checkBytes(bytes, 'bytes');
  checkSample(sample);
  const counts = new Uint32Array(256);
  let total = 0;
  for (const w of sampleWindows(bytes, sample, 1)) {
    for (let i = 0; i < w.length; i++) counts[w[i]!]!++;
    total += w.length;
  }
  return entropyOfCounts(counts, 0, total);
}

/**
 * Entropy of the byte-shuffled sample. Order-0 entropy is blind to byte order, so shuffling the
 * sample and measuring it again would give the same number; what the shuffle buys deflate is that
 * each byte plane becomes a long run with its own statistics (float exponents, the high bytes of
 * small or sorted integers). So this is the mean of the per-plane entropies, H(byte | position in
 * element), which is never above the plain figure and drops exactly when the planes differ.
 * Trailing bytes past the last whole element are left out.
 */
export function planeEntropy(bytes: Uint8Array, elementSize: number, sample = DEFAULT_ENTROPY_SAMPLE): number {
  checkBytes(bytes, 'bytes');
  checkSample(sample);
  if (!Number.isInteger(elementSize) || elementSize < 1 || elementSize > 256) {
    throw invalid(`elementSize must be an integer in 1..256, got ${elementSize}`);
  }
  const counts = new Uint32Array(256 * elementSize);
  let elements = 0;
  for (const w of sampleWindows(bytes, sample, elementSize)) {
    const n = Math.floor(w.length / elementSize);
    for (let e = 0, at = 0; e < n; e++) {
      for (let j = 0; j < elementSize; j++, at++) counts[j * 256 + w[at]!]!++;
    }
    elements += n;
  }
  if (elements === 0) return 0;
  let h = 0;
  for (let j = 0; j < elementSize; j++) h += entropyOfCounts(counts, j * 256, elements);
  return h / elementSize;
}

// ---------------------------------------------------------------------------------------------
// Byte shuffle (blosc style)

function checkElementSize(elementSize: number): void {
  if (!Number.isInteger(elementSize) || elementSize < 1) throw invalid(`elementSize must be a positive integer, got ${elementSize}`);
}

/**
 * Transposes `src` as n elements of `elementSize` bytes: plane j (bytes [j*n, (j+1)*n)) holds byte
 * j of every element, in element order. Trailing bytes that do not fill an element are copied as
 * they are after the planes.
 */
export function byteShuffle(src: Uint8Array, elementSize: number): Uint8Array {
  checkBytes(src, 'src');
  checkElementSize(elementSize);
  const n = Math.floor(src.length / elementSize);
  const out = new Uint8Array(src.length);
  if (elementSize === 4 && LITTLE_ENDIAN_HOST && src.byteOffset % 4 === 0) {
    // One aligned 32-bit load per element instead of four byte loads: about 2x on 4 MiB here.
    const words = new Uint32Array(src.buffer, src.byteOffset, n);
    const n2 = 2 * n;
    const n3 = 3 * n;
    for (let i = 0; i < n; i++) {
      const w = words[i]!;
      out[i] = w;
      out[n + i] = w >>> 8;
      out[n2 + i] = w >>> 16;
      out[n3 + i] = w >>> 24;
    }
  } else {
    for (let j = 0; j < elementSize; j++) {
      const base = j * n;
      for (let i = 0, at = j; i < n; i++, at += elementSize) out[base + i] = src[at]!;
    }
  }
  const tail = n * elementSize;
  if (tail < src.length) out.set(src.subarray(tail), tail);
  return out;
}

/** Inverse of byteShuffle with the same elementSize. */
export function byteUnshuffle(src: Uint8Array, elementSize: number): Uint8Array {
  checkBytes(src, 'src');
  checkElementSize(elementSize);
  const n = Math.floor(src.length / elementSize);
  const out = new Uint8Array(src.length);
  if (elementSize === 4 && LITTLE_ENDIAN_HOST) {
    const words = new Uint32Array(out.buffer, 0, n);
    const n2 = 2 * n;
    const n3 = 3 * n;
    for (let i = 0; i < n; i++) {
      words[i] = (src[i]! | (src[n + i]! << 8) | (src[n2 + i]! << 16) | (src[n3 + i]! << 24)) >>> 0;
    }
  } else {
    for (let j = 0; j < elementSize; j++) {
      const base = j * n;
      for (let i = 0, at = j; i < n; i++, at += elementSize) out[at] = src[base + i]!;
    }
  }
  const tail = n * elementSize;
  if (tail < src.length) out.set(src.subarray(tail), tail);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Raw deflate, two implementations

function asBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

function checkImpl(impl: unknown): asserts impl is DeflateImpl {
  if (impl !== 'fflate' && impl !== 'zlib') throw invalid(`deflate implementation must be 'fflate' or 'zlib', got ${String(impl)}`);
}

function checkLevel(level: unknown): asserts level is DeflateLevel {
  if (!Number.isInteger(level) || (level as number) < 1 || (level as number) > 9) throw invalid(`deflate level must be an integer in 1..9, got ${String(level)}`);
}

/**
 * Raw deflate of `data`. With `limit`, gives up (returns undefined) once the output would pass
 * `limit` bytes: zlib stops as soon as it knows; fflate has no such hook and is checked after.
 */
export function deflateRaw(data: Uint8Array, level: DeflateLevel, impl: DeflateImpl, limit?: number): Uint8Array | undefined {
  checkBytes(data, 'data');
  checkLevel(level);
  checkImpl(impl);
  if (impl === 'fflate') {
    const out = fflateDeflateSync(data, { level });
    return limit !== undefined && out.length > limit ? undefined : out;
  }
  try {
    // 64 KiB output chunks: the size check below runs per chunk, so a hopeless section is
    // abandoned within 64 KiB of the limit instead of being compressed to the end.
    return zlib.deflateRawSync(data, { level, chunkSize: 64 * 1024, maxOutputLength: limit === undefined ? undefined : Math.max(1, limit) });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') return undefined;
    throw err;
  }
}

/**
 * Inflates a raw deflate stream that must decode to exactly `rawLength` bytes. The output buffer
 * is allocated once at rawLength + 1 and the decoder is stopped from writing past it, so the extra
 * byte is what reveals a stream that decodes to more than it should; fewer bytes, a malformed or
 * truncated stream are caught too. Every failure is ERR_SEGMENT_CORRUPT.
 */
export function inflateRaw(stored: Uint8Array, rawLength: number, impl: DeflateImpl): Uint8Array {
  checkBytes(stored, 'stored');
  checkImpl(impl);
  checkRawLength(rawLength);
  if (rawLength > stored.length * MAX_INFLATE_RATIO + INFLATE_SLACK) {
    throw corrupt(`${stored.length} stored bytes cannot inflate to ${rawLength}`);
  }
  let out: Uint8Array;
  try {
    if (impl === 'fflate') {
      // fflate writes into `out` and silently drops bytes past its end; it returns the prefix
      // it wrote, so a full rawLength + 1 means the stream had more to say.
      out = fflateInflateSync(stored, { out: new Uint8Array(rawLength + 1) });
    } else {
      // One output chunk of rawLength + 1, so zlib returns a view of it without a concat, and
      // maxOutputLength turns any excess into an error instead of more allocations.
      out = zlib.inflateRawSync(asBuffer(stored), { chunkSize: Math.max(64, rawLength + 1), maxOutputLength: Math.max(1, rawLength) });
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException)?.code === 'ERR_BUFFER_TOO_LARGE') throw corrupt(`deflate stream decodes to more than ${rawLength} bytes`, err);
    throw corrupt(`deflate stream does not decode (${impl}): ${(err as Error)?.message ?? String(err)}`, err);
  }
  if (out.length !== rawLength) {
    throw corrupt(`deflate stream decodes to ${out.length > rawLength ? 'more than' : out.length} bytes, expected ${rawLength}`);
  }
  return out;
}

function checkRawLength(rawLength: number): void {
  if (!Number.isSafeInteger(rawLength) || rawLength < 0) throw invalid(`rawLength must be a non-negative integer, got ${rawLength}`);
}

// ---------------------------------------------------------------------------------------------
// Which implementation is faster here

/*
 * Measured here (2-vCPU KVM Xeon @ 2.5 GHz, Node 20.20, fflate 0.8.3; 4 MiB inputs, best of 2-4
 * runs, MB/s of raw bytes in process CPU time because the host was shared at load 9-14):
 *   compress    zlib 2.5-4x fflate at the same level: text L1 66 vs 24, L6 11 vs 6; shuffled
 *               float32 L6 17 vs 5; shuffled HNSW L1 98 vs 24.
 *   decompress  zlib 5-9x fflate: text 550 vs 70-100; shuffled float32 1000-1300 vs 110-350;
 *               HNSW 600 vs 100.
 * So zlib wins both directions here, and the probe below picked it every time (10 of 10 runs).
 * Ratios barely differ, except that fflate finds the short far matches zlib skips (its TOO_FAR
 * rule): unshuffled sorted u32 0.41 vs 0.73, id strings 0.36 vs 0.46. Selection never relies on
 * that: sorted u32 gets the shuffle, where both reach 0.29-0.31.
 *
 * The probe repeats a small version of this at first use in each thread, so another machine or
 * Node decides for itself. It costs 135-215 ms of CPU here, nearly all of it fflate's JIT warming
 * up (warm, a 32 KiB piece takes 2.4 ms in fflate against 0.9 ms in zlib); it runs once per thread,
 * lazily, before the first section is coded. STRATAVEC_DEFLATE=fflate|zlib pins both directions
 * and skips it (benchmarks, tests, or a host where the probe is noisy).
 */
const PROBE_BYTES = 256 * 1024;
const PROBE_PIECE = 32 * 1024;
const PROBE_BLOCK = 8 * 1024;
const PROBE_LEVEL: DeflateLevel = 3;
let chosen: { compress: DeflateImpl; decompress: DeflateImpl } | undefined;

/**
 * Piece `p` of the probe sample: 32 KiB, deterministic, switching every 8 KiB between text,
 * float32, sorted u32 and noise, so that every piece holds all four kinds of section content.
 * Pieces are made on demand: a clear race never needs the whole 256 KiB.
 */
function probePiece(p: number): Uint8Array {
  const out = new Uint8Array(PROBE_PIECE);
  let s = (0x9e3779b9 ^ Math.imul(p + 1, 0x85ebca6b)) >>> 0 || 1;
  const rand = (): number => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
  const words = ['the', 'vector', 'segment', 'of', 'and', 'payload', 'a', 'search', 'to', 'index', 'in', 'cold', 'tier', 'id'];
  const q = PROBE_BLOCK / 4;
  let at = 0;
  while (at < PROBE_BLOCK) {
    const w = words[Math.floor(rand() * rand() * words.length)]!;
    for (let i = 0; i < w.length && at < PROBE_BLOCK; i++) out[at++] = w.charCodeAt(i);
    if (at < PROBE_BLOCK) out[at++] = rand() < 0.1 ? 46 : 32;
  }
  const floats = new Float32Array(out.buffer, PROBE_BLOCK, q);
  for (let i = 0; i < q; i++) floats[i] = Math.sin(i * 0.01) + (rand() - 0.5) * 0.2;
  const ints = new Uint32Array(out.buffer, 2 * PROBE_BLOCK, q);
  for (let i = 0, v = p * q * 100; i < q; i++) ints[i] = v += 1 + Math.floor(rand() * 200);
  for (let i = 3 * PROBE_BLOCK; i < PROBE_PIECE; i++) out[i] = rand() * 256;
  return out;
}

/**
 * Times `run` for both implementations piece by piece, alternating which goes first. Piece 0 is a
 * warm-up (fflate's first calls run cold JS). Compares the best time per piece, not the sum: on a
 * busy host a descheduled thread only ever adds time, so the minimum is the cost of the work
 * itself. Stops once one side is more than twice as fast over three timed pieces; the gap
 * measured here is 2.5-9x, so the rest of the sample is only used when the race is close.
 */
function race(run: (impl: DeflateImpl, piece: number) => void, pieces: number): DeflateImpl {
  run('fflate', 0);
  run('zlib', 0);
  const best = { fflate: Infinity, zlib: Infinity };
  for (let p = 1; p < pieces; p++) {
    for (const impl of (p % 2 === 1 ? ['fflate', 'zlib'] : ['zlib', 'fflate']) as DeflateImpl[]) {
      const t = performance.now();
      run(impl, p);
      best[impl] = Math.min(best[impl], performance.now() - t);
    }
    if (p >= 3 && (best.fflate > 2 * best.zlib || best.zlib > 2 * best.fflate)) break;
  }
  return best.fflate < best.zlib ? 'fflate' : 'zlib';
}

function probe(): { compress: DeflateImpl; decompress: DeflateImpl } {
  const pieces: Uint8Array[] = [];
  const piece = (p: number): Uint8Array => (pieces[p] ??= probePiece(p));
  const packed: Uint8Array[] = [];
  const count = PROBE_BYTES / PROBE_PIECE;
  const compress = race((impl, p) => deflateRaw(piece(p), PROBE_LEVEL, impl), count);
  const decompress = race((impl, p) => inflateRaw((packed[p] ??= deflateRaw(piece(p), PROBE_LEVEL, 'zlib')!), PROBE_PIECE, impl), count);
  return { compress, decompress };
}

/** The faster implementation for `direction`: STRATAVEC_DEFLATE if set, else measured once and cached. */
export function deflateImplFor(direction: 'compress' | 'decompress'): DeflateImpl {
  if (direction !== 'compress' && direction !== 'decompress') throw invalid(`direction must be 'compress' or 'decompress', got ${String(direction)}`);
  const forced = process.env['STRATAVEC_DEFLATE'];
  if (forced !== undefined && forced !== '') {
    if (forced !== 'fflate' && forced !== 'zlib') throw invalid(`STRATAVEC_DEFLATE must be 'fflate' or 'zlib', got ${JSON.stringify(forced)}`);
    return forced;
  }
  chosen ??= probe();
  return chosen[direction];
}

// ---------------------------------------------------------------------------------------------
// Selection

export interface ChooseOptions {
  /** Width of the numbers the bytes hold; 4 (float32, u32) lets the shuffle be considered. */
  elementSize?: number;
  /** Keep a compressed result only if it saves at least this fraction (0..1); default 0.1. */
  minSavings?: number;
  /** Entropy sample size in bytes; default 1/16 of the data, between 4 and 64 KiB. */
  sample?: number;
}

export interface CodecChoice {
  codec: number;
  /** Deflate level (1..9); 0 for none. */
  level: number;
  /** Order-0 entropy of the sample, bits/byte. */
  entropy: number;
  /** Mean per-plane entropy of the sample, when an elementSize of 4 was given. */
  shuffledEntropy?: number;
}

/*
 * Level by the entropy deflate will see (the plain figure, or the per-plane one when shuffling):
 *
 *   entropy (bits/byte)   level   typical sections
 *   < 2.5                 1       SIFT-like small-integer floats, HNSW links (both shuffled)
 *   2.5 .. < 3.5          4       (the gap between numeric and text-like sections)
 *   >= 3.5                6       text and JSON payloads, id strings, float mantissas, sorted u32
 *
 * Why: the lower the entropy, the more of the redundancy sits in long, obvious matches and
 * skewed literals that level 1's shallow match search (zlib: chains of 4, no lazy matching)
 * already takes, so effort buys little.
 * Measured (zlib, share of raw saved at L1 -> L6, 4-6 MiB inputs): SIFT-like floats 75.6% ->
 * 77.9%, siftsmall 74.1% -> 76.4%, HNSW 73.2% -> 75.4%: 3% more savings for 5x the CPU (67 -> 13
 * MB/s). At higher entropy deflate saves less overall
 * and more of what it saves comes from short matches only the lazy, deeper search finds: text
 * 63% -> 69%, payloads 70% -> 75%, gaussian float32 15.4% -> 18.4% (a fifth more savings, which
 * also keeps such a section clear of the 10% bar). Level 9 adds under 0.5% of raw over 6 at
 * 1.5-5x the time, so 6 is the ceiling. Decompression speed does not depend on the level.
 */
export function levelForEntropy(entropy: number): DeflateLevel {
  if (entropy < 2.5) return 1;
  if (entropy < 3.5) return 4;
  return 6;
}

/**
 * Sections at least this large are compressed at level 1 whatever their entropy. Cold copies are
 * made on the migration path, and there speed is the constraint: on a 50k x 128 segment
 * (`npm run bench:tiers`) level 6 spent 4.4 s on the vectors (saving 15% of them) and 3.5 s on the
 * HNSW section (25%), which made a warm -> cold move 0.1x a raw PUT; level 1 keeps 86% / 76.5%
 * of raw, i.e. nearly the same savings, at about 3x the speed.
 */
export const LARGE_SECTION_BYTES = 4 * 1024 * 1024;

/**
 * Byte-shuffled numeric data is compressed at level 1 at any size: its gain is in the Huffman
 * stage (the near-constant exponent planes), and the longer match search of higher levels finds
 * little in mantissa bytes. On sealed 2,000- and 5,000-row segments (128-d clustered vectors,
 * node:zlib) level 6 stored shuffled vectors at 1.174 vs 1.160:1 and the shuffled HNSW section at
 * 1.371 vs 1.342:1, for 1.5-2.3x the time. Text is different: realistic payload JSON is 5.08:1
 * at level 6 against 3.93:1 at level 1 (`npm run bench:workers`), so plain sections keep the
 * entropy rule below LARGE_SECTION_BYTES. chooseCodec's rule; exported for the bench, which
 * reports the level a section stored as `none` would have had.
 */
export function levelFor(entropy: number, size: number, shuffled: boolean): DeflateLevel {
  return shuffled || size >= LARGE_SECTION_BYTES ? 1 : levelForEntropy(entropy);
}

/**
 * The default sample: 1/16 of the section, between 4 KiB and 64 KiB. A fixed 64 KiB sample cost
 * 8% of the compression time of a 140 KB ids section (`npm run bench:workers`), over the 5%
 * budget; 1/16 keeps every section near 1%, and a 256-bin histogram of 4 KiB is still ~16
 * samples a bin.
 */
export function defaultEntropySample(length: number): number {
  return Math.min(DEFAULT_ENTROPY_SAMPLE, Math.max(4096, Math.ceil(length / 16)));
}

function checkChooseOptions(opts: ChooseOptions, length: number): { elementSize: number | undefined; minSavings: number; sample: number } {
  if (opts === null || typeof opts !== 'object') throw new TypeError('options must be an object');
  const { elementSize, minSavings = DEFAULT_MIN_SAVINGS, sample = defaultEntropySample(length) } = opts;
  if (elementSize !== undefined && elementSize !== 1 && elementSize !== SHUFFLE_ELEMENT_SIZE) {
    throw invalid(`elementSize must be 1 or ${SHUFFLE_ELEMENT_SIZE} (the width shuffleDeflate is defined for), got ${elementSize}`);
  }
  if (typeof minSavings !== 'number' || !(minSavings >= 0 && minSavings < 1)) throw invalid(`minSavings must be in [0, 1), got ${String(minSavings)}`);
  checkSample(sample);
  return { elementSize: elementSize === SHUFFLE_ELEMENT_SIZE ? elementSize : undefined, minSavings, sample };
}

/**
 * Picks a codec and level from the entropy of a sample, without compressing anything: none when
 * both estimates are near 8 bits/byte (random bytes, already-compressed data), shuffleDeflate when
 * the per-plane estimate is clearly below the plain one, deflate otherwise.
 */
export function chooseCodec(data: Uint8Array, opts: ChooseOptions = {}): CodecChoice {
  checkBytes(data, 'data');
  const { elementSize, sample } = checkChooseOptions(opts, data.byteLength);
  const entropy = shannonEntropy(data, sample);
  if (elementSize === undefined) {
    return entropy >= HIGH_ENTROPY ? { codec: Codec.none, level: 0, entropy } : { codec: Codec.deflate, level: levelFor(entropy, data.byteLength, false), entropy };
  }
  const shuffledEntropy = planeEntropy(data, elementSize, sample);
  if (entropy >= HIGH_ENTROPY && shuffledEntropy >= HIGH_ENTROPY) return { codec: Codec.none, level: 0, entropy, shuffledEntropy };
  if (shuffledEntropy <= entropy - SHUFFLE_MARGIN) {
    return { codec: Codec.shuffleDeflate, level: levelFor(shuffledEntropy, data.byteLength, true), entropy, shuffledEntropy };
  }
  return { codec: Codec.deflate, level: levelFor(entropy, data.byteLength, false), entropy, shuffledEntropy };
}

export interface EncodeOptions extends ChooseOptions {
  /** Deflate implementation; default: the faster one here (deflateImplFor('compress')). */
  impl?: DeflateImpl;
}

export interface EncodedSection {
  codec: number;
  level: number;
  /** The bytes to store: `data` itself when codec is none. */
  stored: Uint8Array;
  rawLength: number;
  rawCrc: number;
  storedCrc: number;
  entropy: number;
  shuffledEntropy?: number;
}

/**
 * Encodes one section: chooseCodec, then compress, then keep the result only if it is at most
 * (1 - minSavings) of the raw size; otherwise the section is stored raw (codec none), so random
 * bytes always come back as none whatever the estimate said.
 */
export function encodeSection(data: Uint8Array, opts: EncodeOptions = {}): EncodedSection {
  checkBytes(data, 'data');
  const { minSavings } = checkChooseOptions(opts, data.byteLength);
  const impl = opts.impl ?? deflateImplFor('compress');
  checkImpl(impl);
  const choice = chooseCodec(data, opts);
  const rawCrc = crc32(data);
  const asNone = (): EncodedSection => ({
    codec: Codec.none, level: 0, stored: data, rawLength: data.length, rawCrc, storedCrc: rawCrc,
    entropy: choice.entropy, ...(choice.shuffledEntropy === undefined ? {} : { shuffledEntropy: choice.shuffledEntropy }),
  });
  if (choice.codec === Codec.none || data.length === 0) return asNone();
  const limit = Math.floor((1 - minSavings) * data.length);
  const input = choice.codec === Codec.shuffleDeflate ? byteShuffle(data, SHUFFLE_ELEMENT_SIZE) : data;
  const stored = deflateRaw(input, choice.level as DeflateLevel, impl, limit);
  if (stored === undefined) return asNone();
  return { ...choice, stored, rawLength: data.length, rawCrc, storedCrc: crc32(stored) };
}

/**
 * The raw bytes of a stored section. The output is exactly `rawLength` bytes or the call fails
 * with ERR_SEGMENT_CORRUPT; CRC checks are the caller's (it has the section table).
 */
export function decodeSection(stored: Uint8Array, codec: number, rawLength: number, impl?: DeflateImpl): Uint8Array {
  checkBytes(stored, 'stored');
  checkRawLength(rawLength);
  if (impl !== undefined) checkImpl(impl);
  switch (codec) {
    case Codec.none:
      if (stored.length !== rawLength) throw corrupt(`unencoded section is ${stored.length} bytes, expected ${rawLength}`);
      return stored;
    case Codec.deflate:
      return inflateRaw(stored, rawLength, impl ?? deflateImplFor('decompress'));
    case Codec.shuffleDeflate:
      return byteUnshuffle(inflateRaw(stored, rawLength, impl ?? deflateImplFor('decompress')), SHUFFLE_ELEMENT_SIZE);
    default:
      throw corrupt(`unknown codec ${codec}`);
  }
}
