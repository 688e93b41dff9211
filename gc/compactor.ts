// Compaction execution for one collection: merges the live rows of planned segments into one new
// segment built in a worker (or, through rewrite(), for clustering.ts, into several new segments
// built in parallel), and commits one manifest version that lists them instead of them. Rows
// deleted or overwritten while it runs are carried over as tombstones. The replaced segments
// become garbage for GC. Planning (which segments) is compaction.ts; this never picks sources.

import { StratavecError } from '../format/errors.js';
import { currentRegion, type ManifestClustering } from '../format/manifest.js';
import { SealedSegment } from '../tiers/sealed-segment.js';
import type { SegmentCatalog, TierContext } from '../tiers/segment-catalog.js';
import type { SegmentCopies } from '../tiers/copies.js';
import type { CopyVerifier } from '../tiers/verify.js';
import type { ReferenceSet } from './references.js';

export interface CompactionResult {
  collection: string;
  sources: string[];
  /** The new segment, or undefined when every source row was deleted. */
  segmentId: string | undefined;
  records: number;
  droppedRows: number;
  ms: number;
  /** Why nothing was done: the planned sources changed (moved, compacted, became unreadable). */
  skipped?: string;
}

/** Some rows of one source segment, ascending. */
export interface RewritePart {
  seg: SealedSegment;
  rows: Uint32Array;
}

/** One new segment of a rewrite: the source rows it holds, in order, and its clustering region. */
export interface RewriteOutput {
  parts: RewritePart[];
  region?: number;
}

export class Compactor {
  readonly #ctx: TierContext;
  readonly #cat: SegmentCatalog;
  readonly #copies: SegmentCopies;
  readonly #verifier: CopyVerifier;
  readonly #refs: ReferenceSet;
  #chain: Promise<unknown> = Promise.resolve();

  constructor(ctx: TierContext, catalog: SegmentCatalog, copies: SegmentCopies, verifier: CopyVerifier, refs: ReferenceSet) {
    this.#ctx = ctx;
    this.#cat = catalog;
    this.#copies = copies;
    this.#verifier = verifier;
    this.#refs = refs;
  }

  /**
   * Merges the live rows of `ids` (local, readable segments) into one new segment and commits a
   * manifest that lists it instead of them. One compaction at a time per collection.
   */
  compact(ids: string[]): Promise<CompactionResult> {
    return this.serialized(async () => {
      this.#checkOpen();
      const t0 = performance.now();
      const segs = this.#sources(ids);
      return this.withLocks(segs, () => this.#compactLocked(segs, t0));
    });
  }

  /** Runs `fn` after every compaction of this collection before it: one at a time per collection. */
  serialized<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.#chain.then(fn, fn);
    this.#chain = p.catch(() => undefined);
    return p;
  }

  #checkOpen(): void {
    if (this.#cat.closed) throw new StratavecError('ERR_DATABASE_CLOSED', `collection ${this.#cat.name} is closed`);
  }

  #sources(ids: string[]): SealedSegment[] {
    const segs = ids.map((id) => this.#cat.require(id)).sort((a, b) => a.meta.seq - b.meta.seq);
    if (new Set(segs).size !== segs.length) throw new StratavecError('ERR_INVALID_ARGUMENT', 'compaction sources repeat a segment');
    return segs;
  }

  /**
   * Runs `fn` with every segment of `segs` (seq order) locked, so no migration moves a source from
   * under a rewrite. Taken in seq order: the only multi-segment lock, so no cycle.
   */
  withLocks<T>(segs: SealedSegment[], fn: () => Promise<T>): Promise<T> {
    const sorted = [...segs].sort((a, b) => a.meta.seq - b.meta.seq);
    return sorted.reduceRight<() => Promise<T>>((inner, seg) => () => seg.exclusive(inner), fn)();
  }

  /**
   * Of the planned sources (locked), those still committed, warm and readable, each CRC-checked
   * (and repaired if need be): the plan was made before the locks were taken, so a source may have
   * been moved to cold, compacted by someone else, or found unreadable since.
   */
  async readableSources(planned: SealedSegment[]): Promise<SealedSegment[]> {
    this.#checkOpen();
    const segs: SealedSegment[] = [];
    for (const seg of planned) {
      if (!this.#cat.has(seg.id) || seg.meta.tier !== 'warm' || seg.error) continue;
      try {
        await this.#verifier.readable(seg, true);
        segs.push(seg);
      } catch (err) {
        if (!(err instanceof StratavecError)) throw err;
      }
    }
    return segs;
  }

  /** The live rows of each segment now (the snapshot a rewrite keeps). */
  liveRows(segs: SealedSegment[]): RewritePart[] {
    return segs.map((seg) => {
      const rows: number[] = [];
      for (let r = 0; r < seg.meta.records; r++) if (seg.tomb[r] === 0) rows.push(r);
      return { seg, rows: Uint32Array.from(rows) };
    });
  }

  async #compactLocked(planned: SealedSegment[], t0: number): Promise<CompactionResult> {
    const name = this.#cat.name;
    const segs = await this.readableSources(planned);
    if (segs.length === 0 || (segs.length === 1 && segs[0]!.deleted === 0 && planned.length > 1)) {
      return {
        collection: name, sources: planned.map((s) => s.id), segmentId: undefined, records: 0, droppedRows: 0,
        ms: performance.now() - t0, skipped: 'the planned sources moved, were compacted or became unreadable meanwhile',
      };
    }
    const sources = this.liveRows(segs);
    const total = sources.reduce((n, s) => n + s.rows.length, 0);
    const records = segs.reduce((n, s) => n + s.meta.records, 0);
    // Merging within one region keeps the region (the planner never merges across regions).
    const regions = new Set(segs.map((s) => currentRegion(this.#cat.manifest, s.meta)));
    const region = regions.size === 1 ? [...regions][0] : undefined;
    const outputs: RewriteOutput[] = total > 0 ? [{ parts: sources, ...(region === undefined ? {} : { region }) }] : [];
    const [fresh] = await this.rewrite(segs, outputs);
    return {
      collection: name, sources: segs.map((s) => s.id), segmentId: fresh?.id, records: total,
      droppedRows: records - total, ms: performance.now() - t0,
    };
  }

  /**
   * Writes each output (the given rows of the sources, in order) as a new segment, in pool tasks
   * that run in parallel, and commits ONE manifest version that lists them instead of `removed`
   * (and sets `clustering` when given). Source rows killed while it ran (deletes, overwrites) are
   * carried over as tombstones. Callers hold the locks of every source. Returns the new segments.
   */
  async rewrite(removedSegs: SealedSegment[], outputs: RewriteOutput[], clustering?: ManifestClustering): Promise<SealedSegment[]> {
    this.#checkOpen();
    const name = this.#cat.name;
    const epoch = clustering?.epoch ?? this.#cat.manifest.clustering?.epoch;
    const planned = outputs.map((out) => {
      const seq = this.#cat.allocateSeq();
      return { out, seq, id: `${name}.${seq}`, outPath: this.#ctx.warm.pathFor(name, seq) };
    });
    const release = this.#ctx.leases.hold(planned.map((p) => p.outPath));
    const createdAt = this.#ctx.options.clock.now();
    const written = await Promise.allSettled(planned.map(async ({ out, seq, id, outPath }) => {
      const parts = out.parts.filter((p) => p.rows.length > 0);
      const result = await this.#ctx.pool.run('compact', {
        segmentId: id, collection: name, outPath, tmpDir: this.#ctx.tmpDir,
        dimension: this.#cat.dimension, metric: this.#cat.metric, hnsw: this.#cat.manifest.hnsw,
        sources: parts.map(({ seg, rows }) => ({
          path: this.#copies.localPath(seg), rows, expectRawCrcs: seg.meta.sections.map((x) => x.rawCrc),
        })),
        createdAt, seed: seq,
        ...(this.#cat.manifest.indexes ? { indexes: this.#cat.manifest.indexes } : {}),
      });
      const records = parts.reduce((n, p) => n + p.rows.length, 0);
      return new SealedSegment({
        id, seq, records, deleted: [],
        sections: result.sections.map((x) => ({ kind: x.kind, rawLength: x.rawLength, rawCrc: x.rawCrc })),
        tier: 'warm',
        local: { bytes: result.bytes, storedCrcs: result.sections.map((x) => x.storedCrc), codecs: result.sections.map((x) => x.codec) },
        createdAt,
        ...(result.summary ? { summary: result.summary } : {}),
        ...(out.region !== undefined && epoch !== undefined ? { region: { epoch, index: out.region } } : {}),
      });
    }));
    const failed = written.find((w): w is PromiseRejectedResult => w.status === 'rejected');
    if (failed) {
      release();
      for (const p of planned) await this.#ctx.warm.remove(p.outPath);
      throw failed.reason;
    }
    const fresh = written.map((w) => (w as PromiseFulfilledResult<SealedSegment>).value);
    // Source rows killed since the snapshot (deletes, overwrites) are tombstones in the new
    // segments: once before the version is built, once more after it is durable (later deletes
    // are in later WAL files).
    const markDead = () => {
      fresh.forEach((seg, o) => {
        let i = 0;
        for (const { seg: src, rows } of outputs[o]!.parts) {
          for (const r of rows) {
            if (src.tomb[r] !== 0) seg.kill(i);
            i++;
          }
        }
      });
    };
    // The swap is one synchronous step with the commit: a search snapshot holds either the
    // sources or the new segments, and every moved id points at its new place.
    const applied = () => {
      markDead();
      fresh.forEach((seg, o) => {
        seg.view = this.#copies.map(seg);
        seg.verified = true; // written by the compaction task from CRC-checked sources
        seg.indexed = true;
        let i = 0;
        for (const { seg: src, rows } of outputs[o]!.parts) {
          for (const r of rows) {
            this.#cat.relocate(seg.view.idAt(i), src, r, seg, i);
            i++;
          }
        }
      });
      for (const seg of removedSegs) this.#refs.retire(seg);
    };
    try {
      await this.#cat.commit({
        removed: new Set(removedSegs.map((s) => s.id)), added: fresh, prepare: markDead, applied,
        ...(clustering ? { clustering } : {}),
      });
    } catch (err) {
      for (const seg of fresh) if (!this.#cat.has(seg.id)) await this.#ctx.warm.remove(this.#copies.localPath(seg));
      throw err;
    } finally {
      release();
    }
    if (this.#ctx.options.uploadOnSeal) for (const seg of fresh) this.#copies.scheduleUpload(seg);
    return fresh;
  }
}
