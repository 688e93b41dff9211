// The verify task: CRC32-checks every section of a segment file against its own section table.
// Maps the file read-only (no copy into the worker's heap); reports corruption as a coded error.

import { mapReadOnly } from '../format/mapped-file.js';
import { SegmentReader, HEADER_SIZE, TRAILER_SIZE } from '../format/segment.js';

export interface VerifyTask {
  path: string;
}

export interface VerifyResult {
  bytes: number;
  sections: number;
  /** Each section's raw CRC32 in table order, for the caller to hold against its manifest. */
  rawCrcs: number[];
}

export async function verifySegment(task: VerifyTask): Promise<VerifyResult> {
  const reader = SegmentReader.open(mapReadOnly(task.path, { minSize: HEADER_SIZE + TRAILER_SIZE, sequential: true }));
  reader.verifyAll();
  return { bytes: reader.size, sections: reader.sections.length, rawCrcs: reader.sections.map((s) => s.rawCrc) };
}
