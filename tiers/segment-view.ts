// A read-only view of one sealed segment over a whole-file Buffer (an mmap'd warm file, or bytes
// held in memory): vectors, ids, payloads, id lookup, and an exact scan. Tombstones are not its
// business (the caller passes `accept`); it never writes to the buffer it was given.

import { StratavecError } from '../format/errors.js';
import { SegmentReader, SectionKind, StringTable, lookupRow, type SegmentHeader } from '../format/segment.js';
import { flatSearch, type Neighbors } from '../index/flat.js';
import { PayloadIndex } from '../index/payload-index.js';
import { MappedHnsw } from '../index/mapped-hnsw.js';

export class SegmentView {
  readonly id: string;
  readonly reader: SegmentReader;
  readonly header: SegmentHeader;
  readonly vectors: Float32Array;
  readonly ids: StringTable;
  readonly payloads: StringTable;
  readonly #lookup: Buffer;
  #payloadIndex: PayloadIndex | null | undefined;
  #graph: MappedHnsw | undefined;

  /** Parses and (unless told not to) CRC-checks every section: a view never serves unverified bytes. */
  constructor(id: string, buf: Buffer, opts: { verify?: boolean; expect?: { dimension: number; count: number } } = {}) {
    this.id = id;
    this.reader = SegmentReader.open(buf);
    if (opts.verify !== false) this.reader.verifyAll();
    this.header = this.reader.header;
    const { expect } = opts;
    if (expect && (expect.dimension !== this.header.dimension || expect.count !== this.header.count)) {
      throw new StratavecError('ERR_SEGMENT_CORRUPT',
        `segment ${id}: header says ${this.header.count} x ${this.header.dimension}, manifest says ${expect.count} x ${expect.dimension}`);
    }
    this.vectors = this.reader.vectors();
    this.ids = StringTable.open(this.reader.raw(SectionKind.ids), this.header.count);
    this.payloads = StringTable.open(this.reader.raw(SectionKind.payloads), this.header.count);
    this.#lookup = this.reader.raw(SectionKind.idLookup);
  }

  get count(): number {
    return this.header.count;
  }

  get size(): number {
    return this.reader.size;
  }

  /**
   * The payload indexes (index/payload-index.ts), opened and validated on first use; undefined
   * when the segment was written without any. Its CRC was checked with the other sections.
   */
  /**
   * The segment's HNSW graph searched where it lies in this view's buffer (warm in-place search):
   * opened on first use and kept for the life of the view, which keeps the mapping alive.
   */
  graph(): MappedHnsw {
    this.#graph ??= MappedHnsw.open(this.reader.raw(SectionKind.hnsw), {
      dimension: this.header.dimension, count: this.header.count, metric: this.header.metric,
    });
    return this.#graph;
  }

  get payloadIndex(): PayloadIndex | undefined {
    if (this.#payloadIndex === undefined) {
      this.#payloadIndex = this.reader.entry(SectionKind.payloadIndex)
        ? PayloadIndex.open(this.reader.raw(SectionKind.payloadIndex), this.header.count)
        : null;
    }
    return this.#payloadIndex ?? undefined;
  }

  idAt(row: number): string {
    return this.ids.get(row) ?? '';
  }

  payload(row: number): Record<string, unknown> | undefined {
    const json = this.payloads.get(row);
    return json === null ? undefined : (JSON.parse(json) as Record<string, unknown>);
  }

  vector(row: number): Float32Array {
    const d = this.header.dimension;
    return this.vectors.slice(row * d, row * d + d);
  }

  rowOf(id: string): number {
    return lookupRow(this.#lookup, this.ids, id);
  }

  scan(query: Float32Array, k: number, accept?: (row: number) => boolean): Neighbors {
    return flatSearch(this.vectors, this.header.dimension, this.header.count, query, k, this.header.metric, accept);
  }
}
