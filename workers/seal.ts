// The seal task: turns a frozen growing segment into one immutable segment file (HNSW index,
// segment bounds and the declared payload indexes built here).
// Runs in a pool worker, or inline when `workers: 0`. It reads vectors straight out of the growing
// segment's SharedArrayBuffer and writes the file by the crash-safe recipe; it never touches the
// manifest (the engine commits the result).

import {
  encodeSegment, writeSegmentFile, encodeStringTable, encodeIdLookup, SectionKind,
  type SectionEntry, type SectionInput,
} from '../format/segment.js';
import type { PayloadIndexes, PayloadSummary } from '../format/payload-schema.js';
import { HnswIndex, type HnswParams, type Metric } from '../index/hnsw.js';
import { computeBounds, encodeBounds } from '../index/bounds.js';
import { buildPayloadIndex } from '../index/payload-index.js';
import { TaskStop } from './task-stop.js';

/** The new segment a seal or a compaction writes: its identity, shape and where it goes. */
export interface SegmentTarget {
  segmentId: string;
  collection: string;
  outPath: string;
  tmpDir: string;
  dimension: number;
  metric: Metric;
  hnsw: HnswParams;
  createdAt: number;
  /** HNSW level generator seed, so a rebuild is reproducible. */
  seed: number;
  /** The collection's declared payload indexes (manifest `indexes`); none when absent or empty. */
  indexes?: PayloadIndexes;
}

export interface SealTask extends SegmentTarget {
  /** The growing segment's vector storage (row-major float32), shared, not copied. */
  vectors: SharedArrayBuffer;
  /** Rows of the growing segment in the growing storage. */
  count: number;
  /** Live rows to keep, ascending; null keeps all `count` rows. */
  rows: Uint32Array | null;
  /** Ids and payload JSON of the kept rows, in output order. */
  ids: string[];
  payloads: (string | null)[];
}

export interface SealResult {
  bytes: number;
  sections: SectionEntry[];
  buildMs: number;
  writeMs: number;
  /** Of buildMs, the time spent computing the segment bounds (k-means + radii). */
  boundsMs: number;
  /** Per indexed field, what the segment holds (for the manifest); absent without indexes. */
  summary?: PayloadSummary;
}

export async function seal(task: SealTask, stop: TaskStop = TaskStop.never): Promise<SealResult> {
  const { dimension: dim, rows } = task;
  const all = new Float32Array(task.vectors, 0, task.count * dim);
  let vectors: Float32Array;
  if (rows === null) {
    vectors = all;
  } else {
    vectors = new Float32Array(rows.length * dim);
    for (let i = 0; i < rows.length; i++) vectors.set(all.subarray(rows[i]! * dim, rows[i]! * dim + dim), i * dim);
  }
  const n = task.ids.length;
  if (vectors.length !== n * dim) throw new RangeError(`seal: ${vectors.length / dim} vectors for ${n} ids`);

  return buildSegmentFile({ ...task, vectors }, stop);
}

/** What a new segment file is made of; shared by seal and compaction. */
export interface SegmentContents extends SegmentTarget {
  /** `ids.length` rows, row-major. */
  vectors: Float32Array;
  ids: string[];
  payloads: (string | null)[];
}

/**
 * Builds the HNSW index and the bounds over `vectors` and writes the segment file by the crash-safe
 * recipe. Every hnswlib call goes through `stop`, so a stop request ends the build within one
 * insertion; the bounds' k-means checks it between iterations.
 */
export async function buildSegmentFile(c: SegmentContents, stop: TaskStop = TaskStop.never): Promise<SealResult> {
  const dim = c.dimension;
  const n = c.ids.length;
  const { vectors } = c;
  const t0 = performance.now();
  const bounds = encodeBounds(computeBounds(vectors, dim, n, { seed: c.seed, check: () => stop.check(), nativeCall: stop.native }));
  const boundsMs = performance.now() - t0;
  const index = HnswIndex.build(vectors, dim, n, c.metric, c.hnsw, { seed: c.seed, nativeCall: stop.native });
  const indexBytes = await index.toBytes(c.tmpDir, stop.native);
  stop.native(() => index.dispose());
  stop.check();
  const payloadIndex = c.indexes && Object.keys(c.indexes).length > 0 ? buildPayloadIndex(c.payloads, c.indexes) : undefined;
  const t1 = performance.now();

  const meta = Buffer.from(JSON.stringify({
    segmentId: c.segmentId, collection: c.collection, createdAt: c.createdAt,
    dimension: dim, metric: c.metric, count: n, hnsw: c.hnsw,
  }));
  const sections: SectionInput[] = [
    { kind: SectionKind.meta, data: meta },
    { kind: SectionKind.vectors, data: new Uint8Array(vectors.buffer, vectors.byteOffset, vectors.byteLength) },
    { kind: SectionKind.ids, data: encodeStringTable(c.ids) },
    { kind: SectionKind.payloads, data: encodeStringTable(c.payloads) },
    { kind: SectionKind.hnsw, data: indexBytes },
    { kind: SectionKind.idLookup, data: encodeIdLookup(c.ids) },
    // Last, so the sections every older file has keep their places in the table.
    { kind: SectionKind.bounds, data: bounds },
  ];
  if (payloadIndex) sections.push({ kind: SectionKind.payloadIndex, data: payloadIndex.bytes });
  const encoded = encodeSegment({ dimension: dim, metric: c.metric, count: n }, sections);
  stop.check();
  await writeSegmentFile(c.outPath, encoded);
  const t2 = performance.now();
  const result: SealResult = { bytes: encoded.size, sections: encoded.sections, buildMs: t1 - t0, writeMs: t2 - t1, boundsMs };
  if (payloadIndex) result.summary = payloadIndex.summary;
  return result;
}
