// Compaction execution for one collection: merges the live rows of planned segments into one new
// segment built in a worker, and commits one manifest version that lists it instead of them. Rows
// deleted or overwritten while it runs are carried over as tombstones. The replaced segments
// become garbage for GC. Planning (which segments) is compaction.ts; this never picks sources.

import { StratavecError } from '../format/errors.js';
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
    const run = () => this.#compact(ids);
    const p = this.#chain.then(run, run);
    this.#chain = p.catch(() => undefined);
    return p;
  }

  #checkOpen(): void {
    if (this.#cat.closed) throw new StratavecError('ERR_DATABASE_CLOSED', `collection ${this.#cat.name} is closed`);
  }

  async #compact(ids: string[]): Promise<CompactionResult> {
    this.#checkOpen();
    const t0 = performance.now();
    const segs = ids.map((id) => this.#cat.require(id)).sort((a, b) => a.meta.seq - b.meta.seq);
    if (new Set(segs).size !== segs.length) throw new StratavecError('ERR_INVALID_ARGUMENT', 'compaction sources repeat a segment');
    // Every source is locked (in seq order: the only multi-segment lock, so no cycle) for the
    // whole rewrite, so no migration moves a source from under it.
    const locked = segs.reduceRight<() => Promise<CompactionResult>>(
      (inner, seg) => () => seg.exclusive(inner),
      () => this.#compactLocked(segs, t0),
    );
    return locked();
  }

  async #compactLocked(planned: SealedSegment[], t0: number): Promise<CompactionResult> {
    this.#checkOpen();
    const name = this.#cat.name;
    // The plan was made before the locks were taken: a source may have been moved to cold,
    // compacted by someone else, or found unreadable since. Merge what is still mergeable.
    const segs: SealedSegment[] = [];
    for (const seg of planned) {
      if (!this.#cat.has(seg.id) || seg.meta.tier !== 'warm' || seg.error) continue;
      try {
        await this.#verifier.readable(seg, true); // CRC-checked (and repaired if need be) before it is merged
        segs.push(seg);
      } catch (err) {
        if (!(err instanceof StratavecError)) throw err;
      }
    }
    if (segs.length === 0 || (segs.length === 1 && segs[0]!.deleted === 0 && planned.length > 1)) {
      return {
        collection: name, sources: planned.map((s) => s.id), segmentId: undefined, records: 0, droppedRows: 0,
        ms: performance.now() - t0, skipped: 'the planned sources moved, were compacted or became unreadable meanwhile',
      };
    }
    const sources = segs.map((seg) => {
      const rows: number[] = [];
      for (let r = 0; r < seg.meta.records; r++) if (seg.tomb[r] === 0) rows.push(r);
      return { seg, rows: Uint32Array.from(rows) };
    });
    const total = sources.reduce((n, s) => n + s.rows.length, 0);
    const records = segs.reduce((n, s) => n + s.meta.records, 0);
    const removed = new Set(segs.map((s) => s.id));
    let added: SealedSegment | undefined;
    let release = () => {};
    if (total > 0) {
      const seq = this.#cat.allocateSeq();
      const id = `${name}.${seq}`;
      const outPath = this.#ctx.warm.pathFor(name, seq);
      const createdAt = this.#ctx.options.clock.now();
      release = this.#ctx.leases.hold([outPath]);
      try {
        const result = await this.#ctx.pool.run('compact', {
          segmentId: id, collection: name, outPath, tmpDir: this.#ctx.tmpDir,
          dimension: this.#cat.dimension, metric: this.#cat.metric, hnsw: this.#cat.manifest.hnsw,
          sources: sources.map(({ seg, rows }) => ({
            path: this.#copies.localPath(seg), rows, expectRawCrcs: seg.meta.sections.map((x) => x.rawCrc),
          })),
          createdAt, seed: seq,
          ...(this.#cat.manifest.indexes ? { indexes: this.#cat.manifest.indexes } : {}),
        });
        added = new SealedSegment({
          id, seq, records: total, deleted: [],
          sections: result.sections.map((x) => ({ kind: x.kind, rawLength: x.rawLength, rawCrc: x.rawCrc })),
          tier: 'warm',
          local: { bytes: result.bytes, storedCrcs: result.sections.map((x) => x.storedCrc), codecs: result.sections.map((x) => x.codec) },
          createdAt,
          ...(result.summary ? { summary: result.summary } : {}),
        });
      } catch (err) {
        release();
        await this.#ctx.warm.remove(outPath);
        throw err;
      }
    }
    const fresh = added;
    // Source rows killed since the snapshot (deletes, overwrites) are tombstones in the new
    // segment: once before the version is built, once more after it is durable (later deletes
    // are in later WAL files).
    const markDead = () => {
      if (!fresh) return;
      let i = 0;
      for (const { seg, rows } of sources) {
        for (const r of rows) {
          if (seg.tomb[r] !== 0) fresh.kill(i);
          i++;
        }
      }
    };
    // The swap is one synchronous step with the commit: a search snapshot holds either the
    // sources or the new segment, and every moved id points at the new one.
    const applied = () => {
      markDead();
      if (fresh) {
        fresh.view = this.#copies.map(fresh);
        fresh.verified = true; // written by the compaction task from CRC-checked sources
        fresh.indexed = true;
        let i = 0;
        for (const { seg, rows } of sources) {
          for (const r of rows) this.#cat.relocate(fresh.view.idAt(i++), seg, r, fresh, i - 1);
        }
      }
      for (const { seg } of sources) this.#refs.retire(seg);
    };
    try {
      await this.#cat.commit({ removed, added: fresh ? [fresh] : [], prepare: markDead, applied });
    } catch (err) {
      if (fresh && !this.#cat.has(fresh.id)) await this.#ctx.warm.remove(this.#copies.localPath(fresh));
      throw err;
    } finally {
      release();
    }
    if (fresh && this.#ctx.options.uploadOnSeal) this.#copies.scheduleUpload(fresh);
    return {
      collection: name, sources: segs.map((s) => s.id), segmentId: fresh?.id, records: total,
      droppedRows: records - total, ms: performance.now() - t0,
    };
  }
}
