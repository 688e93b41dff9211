// The compaction task: merges the live rows of several segment files into one new segment file,
// with its HNSW index rebuilt from scratch. Sources are passed as paths plus the rows to keep, so
// nothing large crosses the thread boundary; each source is CRC-checked against the manifest's
// raw CRCs before a byte of it is used (compaction must never launder corruption into a new,
// trusted file). Like seal, it writes by the crash-safe recipe and never touches a manifest.

import { StratavecError } from '../format/errors.js';
import { mapReadOnly } from '../format/mapped-file.js';
import { SegmentReader, SectionKind, StringTable, HEADER_SIZE, TRAILER_SIZE } from '../format/segment.js';
import { buildSegmentFile, type SealResult, type SegmentTarget } from './seal.js';
import { TaskStop } from './task-stop.js';

export interface CompactSource {
  path: string;
  /** Rows of this source to keep, ascending. */
  rows: Uint32Array;
  /** The manifest's raw CRC32 per section, in table order. */
  expectRawCrcs: number[];
}

export interface CompactTask extends SegmentTarget {
  sources: CompactSource[];
}

/**
 * Maps a source segment file and CRC-checks every section against the manifest's raw CRC32s
 * before any of it is used. `what` names the task in the error.
 */
export function openCheckedSource(src: CompactSource, what: string): SegmentReader {
  const reader = SegmentReader.open(mapReadOnly(src.path, { minSize: HEADER_SIZE + TRAILER_SIZE, sequential: true }));
  reader.verifyAll();
  const secs = reader.sections;
  if (secs.length !== src.expectRawCrcs.length || secs.some((s, i) => s.rawCrc !== src.expectRawCrcs[i])) {
    throw new StratavecError('ERR_SEGMENT_CORRUPT', `${what} source ${src.path}: sections differ from the manifest`);
  }
  return reader;
}

export async function compact(task: CompactTask, stop: TaskStop = TaskStop.never): Promise<SealResult> {
  const dim = task.dimension;
  const total = task.sources.reduce((n, s) => n + s.rows.length, 0);
  const vectors = new Float32Array(total * dim);
  const ids: string[] = [];
  const payloads: (string | null)[] = [];
  for (const src of task.sources) {
    stop.check();
    const reader = openCheckedSource(src, 'compaction');
    const { count } = reader.header;
    if (reader.header.dimension !== dim) throw new StratavecError('ERR_SEGMENT_CORRUPT', `compaction source ${src.path} has dimension ${reader.header.dimension}, expected ${dim}`);
    const vec = reader.vectors();
    const idTable = StringTable.open(reader.raw(SectionKind.ids), count);
    const payloadTable = StringTable.open(reader.raw(SectionKind.payloads), count);
    for (const r of src.rows) {
      if (r >= count) throw new RangeError(`compaction source ${src.path}: row ${r} of ${count}`);
      vectors.set(vec.subarray(r * dim, r * dim + dim), ids.length * dim);
      ids.push(idTable.get(r) ?? '');
      payloads.push(payloadTable.get(r));
    }
  }
  const { sources: _read, ...target } = task;
  return buildSegmentFile({ ...target, vectors, ids, payloads }, stop);
}
