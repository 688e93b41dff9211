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
  /** Each section's kind and raw CRC32 in table order, for the caller to hold against its manifest. */
  kinds: number[];
  rawCrcs: number[];
}

/** What a check of `reader` (already verified) reports. */
export function verifyResult(reader: SegmentReader): VerifyResult {
  const { sections } = reader;
  return { bytes: reader.size, sections: sections.length, kinds: sections.map((s) => s.kind), rawCrcs: sections.map((s) => s.rawCrc) };
}

export async function verifySegment(task: VerifyTask): Promise<VerifyResult> {
  const reader = SegmentReader.open(mapReadOnly(task.path, { minSize: HEADER_SIZE + TRAILER_SIZE, sequential: true }));
  reader.verifyAll();
  return verifyResult(reader);
}
