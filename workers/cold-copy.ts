// The cold-copy tasks: a raw (warm) segment file to a per-section compressed copy for the object
// store, and a compressed copy back to the raw file, byte for byte. Pure functions of paths, run in
// a pool worker or inline. They verify before they write (never compress or restore garbage) and
// write only by the crash-safe recipe, so a failure leaves nothing at `dest`.

import * as path from 'node:path';
import { readFile } from 'node:fs/promises';
import { StratavecError, ioError } from '../format/errors.js';
import { crc32 } from '../format/crc32.js';
import { mapReadOnly } from '../format/mapped-file.js';
import {
  Codec, encodeSegment, writeSegmentFile, SegmentReader, SectionKind, HEADER_SIZE, TRAILER_SIZE,
  type SectionEntry, type SectionInput,
} from '../format/segment.js';
import { verifyResult, type VerifyResult } from './verify.js';
import { encodeSection, decodeSection, deflateImplFor, SHUFFLE_ELEMENT_SIZE, type DeflateImpl } from './codec.js';
import { TaskStop } from './task-stop.js';

export interface EncodeColdCopyTask {
  /** The raw segment file (a warm file, or any valid segment). */
  src: string;
  /** Where the compressed copy goes; must differ from src. */
  dest: string;
  /** Keep a section compressed only if it saves at least this fraction; default 0.1. */
  minSavings?: number;
}

export interface SectionChoice {
  kind: number;
  codec: number;
  level: number;
  entropy: number;
  shuffledEntropy?: number;
}

export interface EncodeColdCopyResult {
  /** Size of the compressed copy. */
  bytes: number;
  /** Its section table; every rawCrc equals the source's. */
  sections: SectionEntry[];
  /** Size of the source file. */
  rawBytes: number;
  /** Per section, in table order: what the entropy selection picked and why. */
  choices: SectionChoice[];
  ms: number;
}

export interface DecodeColdCopyTask {
  /** The compressed copy (e.g. a downloaded object). */
  src: string;
  /** The raw segment file to produce; must differ from src. */
  dest: string;
  /** The raw CRC32 of each section in table order, as the manifest recorded them. */
  expectRawCrcs?: number[];
}

export interface VerifyColdCopyTask {
  /** The compressed copy (e.g. a downloaded object). */
  src: string;
  /** The raw CRC32 of each section in table order, as the manifest recorded them. */
  expectRawCrcs: number[];
}

export interface DecodeColdCopyResult {
  /** Size of the raw file written. */
  bytes: number;
  /** Its section table (all codec none). */
  sections: SectionEntry[];
  ms: number;
}

function corrupt(message: string): StratavecError {
  return new StratavecError('ERR_SEGMENT_CORRUPT', `segment corrupt: ${message}`);
}

function kindName(kind: number): string {
  return Object.entries(SectionKind).find(([, v]) => v === kind)?.[0] ?? `kind ${kind}`;
}

/**
 * Which sections are 4-byte numbers, so that the shuffle is worth considering: vectors (float32);
 * the HNSW section, hnswlib's level-0 records (u32 links, float32 vector, u64 label) and u32 upper
 * links, all 4-aligned (shuffled 0.27 of raw against 0.34 plain on siftsmall, M 16); and the id
 * lookup, u32 row numbers below the count, whose high-byte planes are nearly constant; the bounds,
 * u32 fields then float32 radii and centroids. The rest (meta JSON, string tables) are offered as
 * plain bytes. The entropy test still decides.
 */
function elementSizeFor(kind: number): number | undefined {
  return kind === SectionKind.vectors || kind === SectionKind.hnsw || kind === SectionKind.idLookup || kind === SectionKind.bounds
    ? SHUFFLE_ELEMENT_SIZE : undefined;
}

function checkPaths(task: { src: unknown; dest: unknown }): { src: string; dest: string } {
  if (task === null || typeof task !== 'object') throw new TypeError('task must be an object');
  const { src, dest } = task;
  if (typeof src !== 'string' || src === '') throw new TypeError('task.src must be a non-empty path');
  if (typeof dest !== 'string' || dest === '') throw new TypeError('task.dest must be a non-empty path');
  if (path.resolve(src) === path.resolve(dest)) {
    throw new StratavecError('ERR_INVALID_ARGUMENT', `src and dest are the same file (${dest}); a segment is never rewritten in place`);
  }
  return { src, dest };
}

/**
 * Opens `file` and checks every byte of it: structure, each section's stored CRC, the padding.
 * A raw local segment is mapped; a downloaded temp copy is read into memory instead, because a
 * mapping would keep the deleted temp file's disk space in use until garbage collection, which on
 * a nearly full disk is the space the next attempt needs.
 */
async function openVerified(file: string, how: 'map' | 'read'): Promise<SegmentReader> {
  let buf: Buffer;
  if (how === 'map') {
    buf = mapReadOnly(file, { minSize: HEADER_SIZE + TRAILER_SIZE, sequential: true });
  } else {
    try {
      buf = await readFile(file);
    } catch (err) {
      throw ioError(err, `reading ${path.basename(file)}`);
    }
  }
  const reader = SegmentReader.open(buf);
  reader.verifyAll();
  return reader;
}

/** A section's raw bytes, decoded when stored encoded, checked against its raw CRC either way. */
function rawSection(reader: SegmentReader, s: SectionEntry, impl: DeflateImpl): Uint8Array {
  const stored = reader.stored(s.kind);
  if (s.codec === Codec.none) return stored; // verifyAll checked it, and for none rawCrc == storedCrc
  const raw = decodeSection(stored, s.codec, s.rawLength, impl);
  const actual = crc32(raw);
  if (actual !== s.rawCrc) {
    throw corrupt(`section ${kindName(s.kind)} decodes to CRC ${actual.toString(16)}, its table says ${s.rawCrc.toString(16)}`);
  }
  return raw;
}

export async function encodeColdCopy(task: EncodeColdCopyTask, stop: TaskStop = TaskStop.never): Promise<EncodeColdCopyResult> {
  const t0 = performance.now();
  const { src, dest } = checkPaths(task);
  const { minSavings } = task;
  if (minSavings !== undefined && typeof minSavings !== 'number') throw new TypeError('task.minSavings must be a number');
  const reader = await openVerified(src, 'map');
  const compressImpl = deflateImplFor('compress');
  const decompressImpl = deflateImplFor('decompress');

  const inputs: SectionInput[] = [];
  const choices: SectionChoice[] = [];
  for (const s of reader.sections) {
    stop.check(); // between sections: compressing one can take a second
    const raw = rawSection(reader, s, decompressImpl);
    const elementSize = elementSizeFor(s.kind);
    const enc = encodeSection(raw, {
      impl: compressImpl,
      ...(elementSize === undefined ? {} : { elementSize }),
      ...(minSavings === undefined ? {} : { minSavings }),
    });
    if (enc.codec !== Codec.none) {
      // The cold copy may become the only copy: read each compressed section back before
      // trusting it (inflate runs at several times deflate's speed, so this costs little).
      const back = decodeSection(enc.stored, enc.codec, enc.rawLength, decompressImpl);
      if (crc32(back) !== s.rawCrc) throw new StratavecError('ERR_WORKER_FAILED', `section ${kindName(s.kind)} did not survive its own round trip through codec ${enc.codec}`);
    }
    inputs.push({ kind: s.kind, data: enc.stored, codec: enc.codec, rawLength: enc.rawLength, rawCrc: enc.rawCrc });
    choices.push({
      kind: s.kind, codec: enc.codec, level: enc.level, entropy: enc.entropy,
      ...(enc.shuffledEntropy === undefined ? {} : { shuffledEntropy: enc.shuffledEntropy }),
    });
  }
  const { dimension, metric, count } = reader.header;
  const encoded = encodeSegment({ dimension, metric, count }, inputs);
  encoded.sections.forEach((e, i) => {
    if (e.rawCrc !== reader.sections[i]!.rawCrc) throw new StratavecError('ERR_WORKER_FAILED', `section ${kindName(e.kind)} changed while being encoded`);
  });
  await writeSegmentFile(dest, encoded);
  return { bytes: encoded.size, sections: encoded.sections, rawBytes: reader.size, choices, ms: performance.now() - t0 };
}

function checkExpectRawCrcs(expect: unknown): number[] | undefined {
  if (expect === undefined) return undefined;
  if (!Array.isArray(expect) || !expect.every((c) => Number.isInteger(c) && c >= 0 && c <= 0xffff_ffff)) {
    throw new TypeError('task.expectRawCrcs must be an array of u32 CRCs');
  }
  return expect as number[];
}

/** Opens a compressed copy, checks every stored byte, and holds its table against `expect`. */
async function openCopy(src: string, expect: number[] | undefined): Promise<SegmentReader> {
  const reader = await openVerified(src, 'read');
  const sections = reader.sections;
  if (expect !== undefined) {
    // Before any inflating: a copy of some other segment, or another version, fails here cheaply.
    if (expect.length !== sections.length) throw corrupt(`copy holds ${sections.length} sections, the manifest expects ${expect.length}`);
    sections.forEach((s, i) => {
      if (s.rawCrc !== expect[i]) {
        throw corrupt(`section ${kindName(s.kind)} has raw CRC ${s.rawCrc.toString(16)}, the manifest expects ${expect[i]!.toString(16)}`);
      }
    });
  }
  return reader;
}

export async function decodeColdCopy(task: DecodeColdCopyTask, stop: TaskStop = TaskStop.never): Promise<DecodeColdCopyResult> {
  const t0 = performance.now();
  const { src, dest } = checkPaths(task);
  const reader = await openCopy(src, checkExpectRawCrcs(task.expectRawCrcs));
  const sections = reader.sections;
  const impl = deflateImplFor('decompress');
  const inputs: SectionInput[] = sections.map((s) => {
    stop.check();
    return { kind: s.kind, data: rawSection(reader, s, impl) };
  });
  const { dimension, metric, count } = reader.header;
  const encoded = encodeSegment({ dimension, metric, count }, inputs);
  // encodeSegment derived each rawCrc from the bytes it was given; rawSection already matched
  // them to the copy's table, so this only guards against a change in how the table is built.
  encoded.sections.forEach((e, i) => {
    if (e.rawCrc !== sections[i]!.rawCrc) throw corrupt(`section ${kindName(e.kind)} changed while being restored`);
  });
  await writeSegmentFile(dest, encoded);
  return { bytes: encoded.size, sections: encoded.sections, ms: performance.now() - t0 };
}

/**
 * Checks a compressed copy as a restore would, without writing anything: every stored CRC, the
 * padding, the table against the manifest, and every section decoded and its raw CRC checked.
 */
export async function verifyColdCopy(task: VerifyColdCopyTask, stop: TaskStop = TaskStop.never): Promise<VerifyResult> {
  if (task === null || typeof task !== 'object' || typeof task.src !== 'string') throw new TypeError('task.src must be a path');
  const expect = checkExpectRawCrcs(task.expectRawCrcs);
  if (expect === undefined) throw new TypeError('task.expectRawCrcs is required');
  const reader = await openCopy(task.src, expect);
  const impl = deflateImplFor('decompress');
  for (const s of reader.sections) {
    stop.check();
    rawSection(reader, s, impl);
  }
  return verifyResult(reader);
}
