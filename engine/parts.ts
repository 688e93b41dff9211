// The engine's building blocks, exported for programs that measure or exercise them on their own
// (the worker-pool, codec and in-place HNSW benchmarks in native-bench/, operator tooling): the
// piscina-backed pool, the section codecs and their entropy rules, the segment file writer and
// reader, the native HNSW wrapper and the in-place searcher over a mapped segment. Package
// export `stratavec/parts`. Not the database API: these may change between minor versions.

export { WorkerPool, type WorkerPoolOptions, type WorkerPoolStats } from '../workers/pool.js';
export { DEFAULT_WORKER_NICE } from '../workers/thread-priority.js';
export {
  shannonEntropy, planeEntropy, defaultEntropySample, chooseCodec, encodeSection, decodeSection, deflateImplFor, levelFor,
  LARGE_SECTION_BYTES, SHUFFLE_ELEMENT_SIZE, type DeflateImpl, type DeflateLevel,
} from '../workers/codec.js';
export { Codec, encodeStringTable, SectionKind, SegmentReader, encodeSegment, writeSegmentFile } from '../format/segment.js';
export { mapReadOnly } from '../format/mapped-file.js';
export { HnswIndex } from '../index/hnsw.js';
export { MappedHnsw, type MappedHnswOptions, type RowFilter } from '../index/mapped-hnsw.js';
