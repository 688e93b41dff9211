// Every move of one collection's segments between tiers, verified at every step: copy, check the
// copy's CRC32s against the manifest, commit a manifest naming the new home, and only then
// release the source. A failure at any step leaves the segment readable where it was; a crash
// between steps leaves an unreferenced copy that the next open removes. Pins live here too: the
// policy never moves a pinned segment, and promotion into hot is a move like any other.

import { StratavecError } from '../format/errors.js';
import { checkTier, type Tier } from '../format/manifest.js';
import { SectionKind } from '../format/segment.js';
import { HnswIndex } from '../index/hnsw.js';
import type { HotLease, HotSegment } from './hot.js';
import type { AccessTracker } from './access-stats.js';
import type { SealedSegment } from './sealed-segment.js';
import type { SegmentView } from './segment-view.js';
import type { SegmentCatalog, TierContext } from './segment-catalog.js';
import { stubKinds, type SegmentCopies } from './copies.js';
import type { CopyVerifier } from './verify.js';

/** Decayed reads before a warm segment is offered to hot (the policy's promoteMinFrequency default). */
const ADMIT_MIN_FREQUENCY = 2;

/**
 * What one query saves when a segment is served from hot instead of in place, in relative units:
 * a graph search does work in proportion to log(rows) x dimension, and native search does it at
 * about twice the in-place speed (bench:mapped), so the saving is proportional to the same. A
 * model rather than measured times: equal segments must weigh equal, or timing noise churns hot.
 */
export function hotSaving(records: number, dimension: number): number {
  return Math.log2(records + 1) * dimension;
}

/** What keeping a segment hot is worth now: decayed query frequency x the saving per query. */
export function hotValue(access: AccessTracker, id: string): number {
  return access.frequency(id) * (access.hotSaving(id) ?? 0);
}

export interface MoveResult {
  segmentId: string;
  from: Tier;
  to: Tier;
  /** Logical bytes of the segment moved (0 when nothing moved). */
  bytes: number;
  ms: number;
}

export class Migrator {
  readonly #ctx: TierContext;
  readonly #cat: SegmentCatalog;
  readonly #copies: SegmentCopies;
  readonly #verifier: CopyVerifier;

  constructor(ctx: TierContext, catalog: SegmentCatalog, copies: SegmentCopies, verifier: CopyVerifier) {
    this.#ctx = ctx;
    this.#cat = catalog;
    this.#copies = copies;
    this.#verifier = verifier;
  }

  /** Where a segment is served from now. */
  tierOf(seg: SealedSegment): Tier {
    if (seg.meta.tier === 'cold') return 'cold';
    return this.#ctx.hot.has(seg.id) ? 'hot' : 'warm';
  }

  /**
   * A lease on the segment's hot entry, loading its HNSW index into memory (promotion) if it is
   * not there: the caller has a verified view of it.
   */
  promote(seg: SealedSegment, view: SegmentView): Promise<HotLease> {
    this.#ctx.access.setHotSaving(seg.id, hotSaving(seg.meta.records, this.#cat.dimension));
    return this.#ctx.hot.lease(seg.id, () => this.#load(seg, view));
  }

  async #load(seg: SealedSegment, view: SegmentView, byRead = false): Promise<HotSegment> {
    const t0 = performance.now();
    const index = await HnswIndex.fromBytes(view.reader.raw(SectionKind.hnsw), this.#cat.dimension, this.#cat.metric, seg.meta.records, this.#ctx.tmpDir);
    this.#ctx.tierStats.promoted(performance.now() - t0);
    this.#ctx.tierStats.migrated('warm->hot', view.size);
    if (byRead) seg.movedAt = this.#ctx.options.clock.now();
    return { view, index };
  }

  /**
   * After a read served `seg` in place: offers it to the hot tier's value-based admission (see
   * HotTier.admit and hotValue), which loads it in the background if it is worth more than what it
   * would displace. Never makes the read wait. Segments read fewer than ADMIT_MIN_FREQUENCY times
   * (decayed) are not offered: a one-off query must not load an index.
   */
  offerHot(seg: SealedSegment, view: SegmentView): boolean {
    const { hot, access } = this.#ctx;
    if (seg.error || hot.has(seg.id) || access.frequency(seg.id) < ADMIT_MIN_FREQUENCY) return false;
    access.setHotSaving(seg.id, hotSaving(seg.meta.records, this.#cat.dimension));
    return hot.admit(seg.id, this.hotBytesEstimate(seg), () => this.#load(seg, view, true));
  }

  /** Memory a segment takes when hot: the mapped file plus hnswlib's graph (index/hnsw.ts). */
  hotBytesEstimate(seg: SealedSegment): number {
    const known = this.#ctx.hot.bytesOf(seg.id);
    if (known !== undefined) return known;
    const M = this.#cat.manifest.hnsw.M;
    return seg.rawBytes + seg.meta.records * (4 * this.#cat.dimension + 8 * M + 124) + 2.6 * 1024 * 1024;
  }

  /** Moves one segment to `to`, verified at every step (see the module comment). */
  migrate(id: string, to: Tier): Promise<MoveResult> {
    checkTier(to);
    const seg = this.#cat.require(id);
    return seg.exclusive(async () => {
      if (this.#cat.closed) throw new StratavecError('ERR_DATABASE_CLOSED', `collection ${this.#cat.name} is closed`);
      if (!this.#cat.has(id)) throw new StratavecError('ERR_SEGMENT_NOT_FOUND', `segment ${id} no longer exists`);
      if (seg.error) throw new StratavecError('ERR_SEGMENT_UNAVAILABLE', `segment ${id} has no readable copy`, { cause: seg.error });
      const from = this.tierOf(seg);
      const t0 = performance.now();
      const done = (bytes: number): MoveResult => ({ segmentId: id, from, to, bytes, ms: performance.now() - t0 });
      if (from === to) return done(0);
      const bytes = seg.rawBytes;
      try {
        if (to === 'cold') {
          this.#ctx.hot.delete(id);
          await this.#demoteToCold(seg);
        } else {
          if (from === 'cold') await this.#copies.rehydrate(seg);
          if (to === 'hot') {
            (await this.promote(seg, await this.#verifier.readable(seg, true))).release();
            if (seg.meta.pinned === 'hot') this.#ctx.hot.pin(id);
          } else {
            this.#ctx.hot.delete(id);
          }
        }
      } catch (err) {
        this.#ctx.tierStats.migrationFailures++;
        throw err;
      }
      if (to !== 'hot' && from !== 'cold' && to !== 'cold') this.#ctx.tierStats.migrated(`${from}->${to}`, 0);
      return done(bytes);
    });
  }

  /** Pins a segment to a tier (moving it there now); the policy never moves a pinned segment. */
  async pin(id: string, tier: Tier): Promise<MoveResult> {
    checkTier(tier);
    const seg = this.#cat.require(id);
    await seg.exclusive(() => this.#cat.commit({ replace: { ...seg.meta, pinned: tier } }));
    const res = await this.migrate(id, tier);
    if (tier === 'hot') this.#ctx.hot.pin(id);
    return res;
  }

  async unpin(id: string): Promise<void> {
    const seg = this.#cat.require(id);
    await seg.exclusive(async () => {
      if (seg.meta.pinned === undefined) return;
      const { pinned: _dropped, ...rest } = seg.meta;
      await this.#cat.commit({ replace: rest });
      this.#ctx.hot.unpin(id);
    });
  }

  async #demoteToCold(seg: SealedSegment): Promise<void> {
    // The stub is cut from the local copy: it must be a verified one (verify may have just
    // withdrawn its trust), repaired from the remote copy first if need be.
    const view = await this.#verifier.readable(seg, true);
    await this.#copies.ensureRemote(seg);
    const local = seg.meta.local;
    const { local: _gone, ...rest } = seg.meta;
    await this.#ctx.leases.with([this.#copies.stubPath(seg)], async () => {
      await this.#copies.writeStub(seg, stubKinds(seg).map((kind) => view.reader.raw(kind)));
      await this.#cat.commit({ replace: { ...rest, tier: 'cold' } });
    });
    seg.coldIds = view.ids;
    seg.verified = undefined;
    seg.view = undefined; // the mapping is released when the last reader drops it; unlink is safe
    await this.#ctx.warm.remove(this.#copies.localPath(seg));
    this.#ctx.tierStats.migrated('warm->cold', local?.bytes ?? 0, 0);
  }
}
