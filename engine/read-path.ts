// The read path of one collection: get by id and k-nearest-neighbour search across the growing
// segments and every sealed segment, in whatever tier it lies. A search reads one synchronous
// snapshot of its sources, so a seal or compaction committing meanwhile never makes it see a row
// twice or not at all; bytes of a local copy are served only once verify-on-read has checked them.

import type { Tier } from '../format/manifest.js';
import type { SealedSegment } from '../tiers/sealed-segment.js';
import type { SegmentView } from '../tiers/segment-view.js';
import type { CopyVerifier } from '../tiers/verify.js';
import type { Migrator } from '../tiers/migrator.js';
import type { EngineContext } from './context.js';
import { GrowingSegment } from './growing.js';
import type { SegmentRegistry } from './segment-registry.js';
import type { WritePath } from './write-path.js';
import type { Payload } from './filter.js';

export interface SearchHit {
  id: string;
  distance: number;
  payload?: Payload;
}

export interface StoredRecord {
  id: string;
  vector: Float32Array;
  payload?: Payload;
}

export interface SearchRequest {
  query: Float32Array;
  k: number;
  ef: number;
  filter: ((p: Payload | undefined) => boolean) | undefined;
  includePayload: boolean;
  /** Scan every vector instead of the HNSW graph (the ground truth). */
  exact: boolean;
  /** Tiers the search may read; segments elsewhere are skipped, not moved. */
  tiers: ReadonlySet<Tier>;
}

type Candidate = { d: number; row: number; src: GrowingSegment | SegmentView };

export class ReadPath {
  readonly #ctx: EngineContext;
  readonly #reg: SegmentRegistry;
  readonly #verifier: CopyVerifier;
  readonly #migrator: Migrator;
  readonly #writes: WritePath;

  constructor(ctx: EngineContext, registry: SegmentRegistry, verifier: CopyVerifier, migrator: Migrator, writes: WritePath) {
    this.#ctx = ctx;
    this.#reg = registry;
    this.#verifier = verifier;
    this.#migrator = migrator;
    this.#writes = writes;
  }

  async get(ids: string[]): Promise<(StoredRecord | undefined)[]> {
    // A record in a cold segment is read by rehydrating its segment, as a search would.
    const sealed = new Set<SealedSegment>();
    for (const id of ids) {
      const loc = this.#reg.locate(id);
      if (loc && !(loc.seg instanceof GrowingSegment)) sealed.add(loc.seg);
    }
    // Awaiting one segment can let a migration move another; re-check until all are readable at once.
    for (let attempt = 0; ; attempt++) {
      for (const seg of sealed) await this.#verifier.readable(seg);
      if ([...sealed].every((seg) => seg.view) || attempt === 3) break;
    }
    return ids.map((id) => {
      const loc = this.#reg.locate(id);
      if (!loc) return undefined;
      const { seg, row } = loc;
      if (seg instanceof GrowingSegment) {
        const payload = seg.payload(row);
        return payload === undefined ? { id, vector: seg.vector(row) } : { id, vector: seg.vector(row), payload: structuredClone(payload) };
      }
      const view = this.#verifier.viewOf(seg);
      this.#ctx.access.record(seg.id, this.#ctx.hot.has(seg.id) ? 'hot' : 'warm');
      const payload = view.payload(row);
      return payload === undefined ? { id, vector: view.vector(row) } : { id, vector: view.vector(row), payload };
    });
  }

  async search(req: SearchRequest): Promise<SearchHit[]> {
    const { query, k, filter, includePayload } = req;
    const cands: Candidate[] = [];
    // One snapshot of every source, taken synchronously: a seal or compaction committing while
    // this search awaits cannot make it see a row twice (the replaced segment and its
    // replacement) or not at all. Replaced segments stay readable (their mapping outlives the
    // unlink) and GC leaves their files alone while `readers` holds them.
    const sealed = this.#reg.list();
    const growing = this.#writes.growingSegments();
    for (const seg of sealed) seg.enter();
    try {
      await this.#searchSealed(sealed, cands, req);
    } finally {
      for (const seg of sealed) seg.leave();
    }
    for (const g of growing) {
      if (g.live === 0) continue;
      const res = g.search(query, k, filter ? (r) => filter(g.payload(r)) : undefined);
      for (let i = 0; i < res.rows.length; i++) cands.push({ d: res.distances[i]!, row: res.rows[i]!, src: g });
    }
    cands.sort((a, b) => a.d - b.d);
    if (cands.length > k) cands.length = k;
    return cands.map(({ d, row, src }) => {
      const id = src instanceof GrowingSegment ? src.ids[row]! : src.idAt(row);
      if (!includePayload) return { id, distance: d };
      const p = src.payload(row);
      return p === undefined ? { id, distance: d } : { id, distance: d, payload: src instanceof GrowingSegment ? structuredClone(p) : p };
    });
  }

  /**
   * How a warm segment answers: small segments, and segments too big for the whole hot budget,
   * are scanned exactly over the mapping; the rest are promoted (their index loaded into hot).
   */
  #warmMode(seg: SealedSegment): 'scan' | 'promote' {
    if (seg.meta.records <= this.#ctx.options.warmScanMaxRecords) return 'scan';
    if ((seg.meta.local?.bytes ?? 0) * 2 > this.#ctx.options.hotBytes) return 'scan';
    return 'promote';
  }

  async #searchSealed(sealed: SealedSegment[], cands: Candidate[], req: SearchRequest): Promise<void> {
    const { query, k, ef, filter, exact, tiers } = req;
    const { hot, access, tierStats } = this.#ctx;
    for (const seg of sealed) {
      if (seg.live === 0) continue;
      const tier = this.#migrator.tierOf(seg);
      if (!tiers.has(tier)) continue;
      if (tier === 'cold') tierStats.coldReads++;
      const readable = await this.#verifier.readable(seg);
      const mode = exact ? 'scan' : hot.has(seg.id) ? 'hnsw' : this.#warmMode(seg) === 'scan' ? 'scan' : 'hnsw';
      // Exact search scans the mapped vectors and never needs the index (nor promotion).
      const lease = mode === 'hnsw' ? await this.#migrator.promote(seg, readable) : undefined;
      try {
        const view = lease ? lease.segment.view : readable;
        access.record(seg.id, tier);
        const { tomb } = seg;
        const accept = filter
          ? (r: number) => tomb[r] === 0 && filter(view.payload(r))
          : seg.deleted > 0 ? (r: number) => tomb[r] === 0 : undefined;
        let res;
        if (lease) {
          res = lease.segment.index.search(query, k, ef, accept);
        } else {
          tierStats.warmScans++;
          res = view.scan(query, k, accept);
        }
        for (let i = 0; i < res.rows.length; i++) cands.push({ d: res.distances[i]!, row: res.rows[i]!, src: view });
      } finally {
        lease?.release();
      }
    }
  }
}
