// hnswlib's saveIndex format as HnswIndex.build writes it: the header layout and the structural
// checks, split into passes so the native loader (hnsw.ts) and the in-place searcher
// (mapped-hnsw.ts) share one definition. Reads only; never trusts a field before checking it.

import { endianness } from 'node:os';
import { StratavecError } from '../format/errors.js';

/** hnswlib-node caps M at 10000; M = 1 makes its level multiplier 1/ln(1) infinite. */
export const MAX_M = 10000;
/** Bounds `ef`, which sizes the candidate heaps of a search (hnswlib's and mapped-hnsw's). */
export const MAX_EF = 1 << 20;
/** The search-time ef of an index that does not say otherwise (hnswlib's files do not record it). */
export const DEFAULT_EF_SEARCH = 64;

/** The fields of hnswlib's saveIndex header that the structural check established. */
export interface HnswFileInfo {
  count: number;
  M: number;
  efConstruction: number;
  maxLevel: number;
}

/** Everything needed to find a node's links, vector and label, all checked against the length. */
export interface HnswLayout extends HnswFileInfo {
  dim: number;
  /** Links per node on levels >= 1 (= M); level 0 keeps maxM0 = 2M. */
  maxM: number;
  maxM0: number;
  /** Bytes per level-0 record: u32 link header, maxM0 u32 links, the vector, an 8-byte label. */
  perElem: number;
  /** Byte offset of the vector inside a level-0 record (right after the links). */
  dataOffset: number;
  /** Byte offset of the label inside a level-0 record (right after the vector). */
  labelOffset: number;
  /** Internal id the search starts from; < count when count > 0. */
  entryPoint: number;
  /** First byte after the level-0 records, where the upper-level link lists start. */
  level0End: number;
}

// hnswlib's saveIndex header: native-endian PODs written one after another (x86-64/arm64 sizes:
// size_t 8, int 4, tableint 4, double 8). All offsets below are byte offsets into the file.
const H_OFFSET_LEVEL0 = 0; //   size_t, always 0
const H_MAX_ELEMENTS = 8; //    size_t, capacity the index was created with
const H_CUR_COUNT = 16; //      size_t, elements present
const H_SIZE_PER_ELEM = 24; //  size_t, bytes per level-0 record
const H_LABEL_OFFSET = 32; //   size_t, offset of the 8-byte label in a level-0 record
const H_OFFSET_DATA = 40; //    size_t, offset of the vector in a level-0 record
const H_MAX_LEVEL = 48; //      int, top level of the graph (-1 when empty)
const H_ENTRY_POINT = 52; //    tableint, internal id the search starts from
const H_MAX_M = 56; //          size_t, links per node on levels >= 1
const H_MAX_M0 = 64; //         size_t, links per node on level 0
const H_M = 72; //              size_t
const H_MULT = 80; //           double, level generation multiplier
const H_EF_CONSTRUCTION = 88; // size_t
export const HNSW_HEADER_BYTES = 96;
/** No graph of ours gets near this: expected top level is log_M(count), about 6 for M=16. */
export const MAX_LEVEL_CAP = 64;

export function hnswCorrupt(message: string, cause?: unknown): StratavecError {
  return new StratavecError('ERR_SEGMENT_CORRUPT', `HNSW index: ${message}`, cause === undefined ? undefined : { cause });
}

function viewOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * Parses and checks the header against what build() writes for `count` rows of `dim` float32s,
 * and that the level-0 records fit in `bytes`. O(1): reads nothing past the header.
 */
export function readHnswLayout(bytes: Uint8Array, dim: number, count: number): HnswLayout {
  if (endianness() !== 'LE') throw hnswCorrupt('hnswlib files are native-endian; only little-endian hosts are supported');
  const len = bytes.length;
  if (len < HNSW_HEADER_BYTES) throw hnswCorrupt(`file is ${len} bytes, shorter than the ${HNSW_HEADER_BYTES}-byte header`);
  const view = viewOf(bytes);
  // size_t fields: the high word must be 0; every legitimate value is far below 2^32.
  const u64 = (off: number, what: string): number => {
    if (view.getUint32(off + 4, true) !== 0) throw hnswCorrupt(`${what} is out of range`);
    return view.getUint32(off, true);
  };

  const curCount = u64(H_CUR_COUNT, 'element count');
  if (curCount !== count) throw hnswCorrupt(`holds ${curCount} elements, expected ${count}`);
  if (u64(H_OFFSET_LEVEL0, 'level-0 offset') !== 0) throw hnswCorrupt('level-0 offset is not 0');
  // build() always creates the index with capacity max(count, 1); anything larger would only make
  // loadIndex allocate memory the segment does not need.
  const maxElements = u64(H_MAX_ELEMENTS, 'capacity');
  if (maxElements !== Math.max(count, 1)) throw hnswCorrupt(`capacity ${maxElements} does not match ${count} elements`);
  const M = u64(H_M, 'M');
  if (M < 2 || M > MAX_M) throw hnswCorrupt(`M = ${M} is out of range`);
  const maxM = u64(H_MAX_M, 'maxM');
  const maxM0 = u64(H_MAX_M0, 'maxM0');
  if (maxM !== M || maxM0 !== 2 * M) throw hnswCorrupt(`degree bounds ${maxM}/${maxM0} do not match M = ${M}`);
  const linksLevel0 = 4 + 4 * maxM0;
  const dataBytes = 4 * dim;
  const perElem = u64(H_SIZE_PER_ELEM, 'record size');
  if (perElem !== linksLevel0 + dataBytes + 8) throw hnswCorrupt(`record size ${perElem} does not fit dimension ${dim} and M = ${M}`);
  if (u64(H_OFFSET_DATA, 'data offset') !== linksLevel0) throw hnswCorrupt('vector offset does not follow the level-0 links');
  const labelOffset = u64(H_LABEL_OFFSET, 'label offset');
  if (labelOffset !== linksLevel0 + dataBytes) throw hnswCorrupt('label offset does not follow the vector');
  const mult = view.getFloat64(H_MULT, true);
  if (!(mult > 0) || !Number.isFinite(mult)) throw hnswCorrupt('level multiplier is not a positive number');
  const efConstruction = u64(H_EF_CONSTRUCTION, 'efConstruction');
  const maxLevel = view.getInt32(H_MAX_LEVEL, true);
  const entryPoint = view.getUint32(H_ENTRY_POINT, true);
  const layout: HnswLayout = {
    count, M, efConstruction, maxLevel, dim, maxM, maxM0, perElem, dataOffset: linksLevel0, labelOffset, entryPoint,
    level0End: HNSW_HEADER_BYTES + count * perElem,
  };
  if (count === 0) {
    if (len !== HNSW_HEADER_BYTES) throw hnswCorrupt('an empty index has bytes after its header');
    return layout;
  }
  if (maxLevel < 0 || maxLevel > MAX_LEVEL_CAP) throw hnswCorrupt(`top level ${maxLevel} is out of range`);
  if (entryPoint >= count) throw hnswCorrupt(`entry point ${entryPoint} is not an element`);
  if (layout.level0End > len) throw hnswCorrupt(`file is ${len} bytes, the level-0 records alone need ${layout.level0End}`);
  return layout;
}

/** Every node's level and where its upper-level link lists start. */
export interface HnswUpperLevels {
  levels: Uint8Array;
  /** Byte offset of node i's level-1 list (meaningful only where levels[i] > 0). */
  upperAt: Float64Array;
}

/**
 * Pass 1: walks the upper-level link-list sizes after level 0 (O(count) reads of one word each),
 * checks they are whole levels, not above the top level, end exactly at the end of the file, and
 * that the entry point is on the top level. Does not look inside the lists.
 */
export function scanHnswUpperLevels(bytes: Uint8Array, layout: HnswLayout): HnswUpperLevels {
  const { count, maxM, maxLevel, entryPoint } = layout;
  const view = viewOf(bytes);
  const len = bytes.length;
  const linksPerLevel = 4 + 4 * maxM;
  const levels = new Uint8Array(count);
  const upperAt = new Float64Array(count);
  let pos = layout.level0End;
  for (let i = 0; i < count; i++) {
    if (pos + 4 > len) throw hnswCorrupt(`link lists end early, at node ${i}`);
    const size = view.getUint32(pos, true);
    pos += 4;
    if (size % linksPerLevel !== 0) throw hnswCorrupt(`node ${i}: link-list size ${size} is not a whole number of levels`);
    const level = size / linksPerLevel;
    if (level > maxLevel) throw hnswCorrupt(`node ${i} is on level ${level}, above the top level ${maxLevel}`);
    if (pos + size > len) throw hnswCorrupt(`node ${i}: link lists run past the end of the file`);
    levels[i] = level;
    upperAt[i] = pos;
    pos += size;
  }
  if (pos !== len) throw hnswCorrupt(`${len - pos} unexpected bytes after the link lists`);
  if (count > 0 && levels[entryPoint] !== maxLevel) throw hnswCorrupt(`entry point ${entryPoint} is not on the top level ${maxLevel}`);
  return { levels, upperAt };
}

/**
 * Pass 2a: every upper-level link list holds at most maxM links, each to an element present on
 * that level. Reads only the upper-level lists (about 1/M of the nodes have any).
 */
export function checkHnswUpperLinks(bytes: Uint8Array, layout: HnswLayout, upper: HnswUpperLevels): void {
  const { count, maxM } = layout;
  const { levels, upperAt } = upper;
  const view = viewOf(bytes);
  const linksPerLevel = 4 + 4 * maxM;
  for (let i = 0; i < count; i++) {
    for (let lv = 1, at = upperAt[i]!; lv <= levels[i]!; lv++, at += linksPerLevel) {
      const n = view.getUint32(at, true);
      if (n > maxM) throw hnswCorrupt(`node ${i}: level-${lv} link count ${n} exceeds ${maxM}`);
      for (let j = 0; j < n; j++) {
        const nb = view.getUint32(at + 4 + 4 * j, true);
        if (nb >= count || levels[nb]! < lv) throw hnswCorrupt(`node ${i}: level-${lv} link to an element not on that level`);
      }
    }
  }
}

/**
 * Pass 2b: every level-0 link list is within the degree bound with a clear delete mark and links
 * only to elements; labels are a permutation of 0..count-1 (with `identity`, exactly label i at
 * node i, which is what build() produces: it inserts rows in order). Reads every level-0 record.
 */
export function checkHnswLevel0(bytes: Uint8Array, layout: HnswLayout, opts?: { identity?: boolean }): void {
  const { count, maxM0, perElem, labelOffset } = layout;
  const view = viewOf(bytes);
  const identity = opts?.identity === true;
  const seen = identity ? undefined : new Uint8Array(count);
  for (let i = 0; i < count; i++) {
    const rec = HNSW_HEADER_BYTES + i * perElem;
    // The whole 32-bit header, not just hnswlib's 16-bit count: byte 2 is the delete mark, which
    // build() never sets; byte 3 is unused and zero.
    const n0 = view.getUint32(rec, true);
    if (n0 > maxM0) throw hnswCorrupt(`node ${i}: level-0 link header ${n0} exceeds ${maxM0}`);
    for (let j = 0; j < n0; j++) {
      if (view.getUint32(rec + 4 + 4 * j, true) >= count) throw hnswCorrupt(`node ${i}: level-0 link to a missing element`);
    }
    if (view.getUint32(rec + labelOffset + 4, true) !== 0) throw hnswCorrupt(`node ${i}: label out of range`);
    const label = view.getUint32(rec + labelOffset, true);
    if (seen === undefined) {
      if (label !== i) throw hnswCorrupt(`node ${i} has label ${label}; build() labels node i with row i`);
    } else {
      if (label >= count || seen[label] !== 0) throw hnswCorrupt(`node ${i}: label ${label} is out of range or repeated`);
      seen[label] = 1;
    }
  }
}

/**
 * Checks that `bytes` is an hnswlib index file that hnswlib can load and search without reading
 * out of bounds, for `count` elements of `dim` float32s built by `HnswIndex.build`.
 *
 * Why this exists: hnswlib's loadIndex only checks that the link-list lengths add up to the file
 * length. Anything else (an entry point or neighbour id past the end, a level that the node does
 * not have, a huge capacity) loads fine and then segfaults or aborts the whole process on the first
 * search, or allocates whatever the header asks for. So before hnswlib sees a file we verify the
 * header against what we built (dimension, count, M, record layout, capacity = count), every
 * level-0 and upper-level link list (count within the degree bound, delete mark clear, every
 * neighbour id < count and present on that level), every label (a permutation of 0..count-1), the
 * entry point (on the top level), and that the link lists end exactly at the end of the file. This
 * is O(file size), a few ms for 100k x 128, and reads nothing twice. Vector values themselves are
 * not checked (a flipped bit there cannot crash hnswlib; the segment's CRC32 catches it).
 */
export function checkHnswIndexBytes(bytes: Uint8Array, dim: number, count: number): HnswFileInfo {
  const layout = readHnswLayout(bytes, dim, count);
  const info: HnswFileInfo = { count, M: layout.M, efConstruction: layout.efConstruction, maxLevel: layout.maxLevel };
  if (count === 0) return info;
  const upper = scanHnswUpperLevels(bytes, layout);
  checkHnswLevel0(bytes, layout);
  checkHnswUpperLinks(bytes, layout, upper);
  return info;
}
