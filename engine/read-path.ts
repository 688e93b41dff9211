// The read path of one collection: get by id, and k-nearest-neighbour search across the growing
// segments and every sealed segment where it lies. Per sealed segment, in order of preference:
// hot (native hnswlib index in memory), warm (the HNSW graph searched in place in the mapped file;
// tiny segments scanned exactly), cold (rehydrated, then searched in place: no index load). Segments
// are visited nearest bound first and skipped when their bound cannot beat the current k-th result
// (exact). Filters become row bitmaps per segment. A search reads one synchronous snapshot of its
// sources; bytes of a local copy are served only once verify-on-read has checked them. The read
// path never waits for an index load: hot admission happens in the background (Migrator.offerHot).

import { channel } from 'node:diagnostics_channel';
import type { Tier } from '../format/manifest.js';
import { lowerBound } from '../index/bounds.js';
import { TopK, flatSearchRows, type Neighbors } from '../index/flat.js';
import { toPredicate, type CompiledFilter } from '../index/filter.js';
import { evaluate, countRows, rowsOf, mayMatch } from '../index/filter-eval.js';
import type { SealedSegment } from '../tiers/sealed-segment.js';
import type { SegmentView } from '../tiers/segment-view.js';
import type { CopyVerifier } from '../tiers/verify.js';
import type { Migrator } from '../tiers/migrator.js';
import type { QuerySample } from '../tiers/query-sample.js';
import type { EngineContext } from './context.js';
import { GrowingSegment } from './growing.js';
import type { SegmentRegistry } from './segment-registry.js';
import type { WritePath } from './write-path.js';
import type { Payload } from './filter.js';
import type { SearchHow, SearchStats, SegmentTrace } from './search-stats.js';

export type { SearchHow, SegmentTrace } from './search-stats.js';

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
  filter: CompiledFilter | undefined;
  includePayload: boolean;
  /** Scan every vector instead of a graph (the ground truth). Pruning by bounds stays: it is exact. */
  exact: boolean;
  /** Tiers the search may read; segments elsewhere are skipped, not moved. */
  tiers: ReadonlySet<Tier>;
  /** Search at most this many sealed segments, nearest bound first (as nprobe in IVF): faster,
   *  no longer exact. Undefined: every segment that can matter. */
  probe: number | undefined;
}

export interface ExplainResult {
  hits: SearchHit[];
  ms: number;
  /** Sealed segments in the order the search considered them (nearest bound first). */
  segments: SegmentTrace[];
  /** Unsealed rows searched exactly in memory. */
  growing: { rows: number; ms: number };
}

/** `node:diagnostics_channel` channel with one message per search: { collection, k, ms, hits, segments }. */
export const SEARCH_CHANNEL = 'stratavec:search';
const searchChannel = channel(SEARCH_CHANNEL);

/** A filter passing at most this many rows of a segment is answered by exact distances over just
 *  those rows: below it that beats a filtered graph walk (measured in bench:filter). */
export const FILTER_ROWS_EXACT_MAX = 4_000;
/** A filtered graph walk widens its beam by sqrt(rows / passing), up to this: a selective filter
 *  leaves the graph sparse and the plain ef loses recall. */
const FILTERED_EF_MAX = 1_024;

type Candidate = { row: number; src: GrowingSegment | SegmentView };

export class ReadPath {
  readonly #ctx: EngineContext;
  readonly #reg: SegmentRegistry;
  readonly #verifier: CopyVerifier;
  readonly #migrator: Migrator;
  readonly #writes: WritePath;
  readonly #stats: SearchStats;
  readonly #queries: QuerySample;

  constructor(
    ctx: EngineContext, registry: SegmentRegistry, verifier: CopyVerifier, migrator: Migrator, writes: WritePath, stats: SearchStats,
    queries: QuerySample,
  ) {
    this.#ctx = ctx;
    this.#queries = queries;
    this.#reg = registry;
    this.#verifier = verifier;
    this.#migrator = migrator;
    this.#writes = writes;
    this.#stats = stats;
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
    // A segment whose ids could not be read (no readable copy) may hold any id not found
    // elsewhere: saying "absent" would be a wrong answer.
    const blind = this.#reg.list().find((s) => !s.indexed);
    return ids.map((id) => {
      const loc = this.#reg.locate(id);
      if (!loc && blind) this.#verifier.viewOf(blind); // throws ERR_SEGMENT_UNAVAILABLE
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
    const out = await this.explain(req);
    if (searchChannel.hasSubscribers) {
      searchChannel.publish({ collection: this.#reg.name, k: req.k, ms: out.ms, hits: out.hits.length, segments: out.segments });
    }
    return out.hits;
  }

  /**
   * A search that reports, per segment, where it was, how it was searched or why not, and what it
   * cost. Every search keeps this trace (a few fields per segment; the stats sum it), so explain
   * and search are one code path.
   */
  async explain(req: SearchRequest): Promise<ExplainResult> {
    const t0 = performance.now();
    const { query, k, filter, includePayload } = req;
    this.#queries.record(query);
    // One snapshot of every source, taken synchronously: a seal or compaction committing while
    // this search awaits cannot make it see a row twice (the replaced segment and its
    // replacement) or not at all. Replaced segments stay readable (their mapping outlives the
    // unlink) and GC leaves their files alone while `readers` holds them.
    const sealed = this.#reg.list();
    const growing = this.#writes.growingSegments();
    const top = new TopK(k);
    const cands: Candidate[] = [];
    const push = (res: Neighbors, src: GrowingSegment | SegmentView) => {
      for (let i = 0; i < res.rows.length; i++) {
        cands.push({ row: res.rows[i]!, src });
        top.push(cands.length - 1, res.distances[i]!);
      }
    };
    // Unsealed rows first: they are in memory, and their k-th distance lets bounds prune at once.
    const g0 = performance.now();
    let growingRows = 0;
    const pred = filter ? toPredicate(filter) : undefined;
    for (const g of growing) {
      if (g.live === 0) continue;
      growingRows += g.live;
      push(g.search(query, k, pred ? (r) => pred(g.payload(r)) : undefined), g);
    }
    const growingMs = performance.now() - g0;
    const segments: SegmentTrace[] = [];
    for (const seg of sealed) seg.enter();
    try {
      await this.#searchSealed(sealed, req, top, push, segments);
    } finally {
      for (const seg of sealed) seg.leave();
    }
    const { rows: keys, distances } = top.drain();
    const hits = keys.map((key, i): SearchHit => {
      const { row, src } = cands[key]!;
      const distance = distances[i]!;
      const id = src instanceof GrowingSegment ? src.ids[row]! : src.idAt(row);
      if (!includePayload) return { id, distance };
      const p = src.payload(row);
      return p === undefined ? { id, distance } : { id, distance, payload: src instanceof GrowingSegment ? structuredClone(p) : p };
    });
    this.#stats.add(segments);
    return { hits, ms: performance.now() - t0, segments, growing: { rows: growingRows, ms: growingMs } };
  }

  async #searchSealed(
    sealed: SealedSegment[],
    req: SearchRequest,
    top: TopK,
    push: (res: Neighbors, src: SegmentView) => void,
    trace: SegmentTrace[],
  ): Promise<void> {
    const { query, filter, tiers, probe } = req;
    const metric = this.#reg.metric;
    const order = sealed
      .filter((seg) => seg.live > 0)
      .map((seg) => ({ seg, bound: seg.bounds ? lowerBound(seg.bounds, query, metric) : -Infinity }))
      .sort((a, b) => a.bound - b.bound || a.seg.meta.seq - b.seg.meta.seq);
    let searched = 0;
    for (const { seg, bound } of order) {
      const tier = this.#migrator.tierOf(seg);
      const skip = (how: SearchHow) => trace.push({ id: seg.id, tier, how, ms: 0, loaded: false, bytesFetched: 0, bound });
      if (!tiers.has(tier)) {
        skip('skipped');
        continue;
      }
      // Strictly greater: a row at exactly the k-th distance may still win the tie on row order.
      if (bound > top.worst()) {
        skip('pruned');
        continue;
      }
      if (filter && !mayMatch(filter, seg.meta.summary)) {
        skip('no-match');
        continue;
      }
      if (probe !== undefined && searched >= probe) {
        skip('skipped');
        continue;
      }
      searched++;
      trace.push(await this.#searchOne(seg, tier, bound, req, push));
    }
  }

  async #searchOne(seg: SealedSegment, tier: Tier, bound: number, req: SearchRequest, push: (res: Neighbors, src: SegmentView) => void): Promise<SegmentTrace> {
    const { query, k, ef, filter, exact } = req;
    const { access, tierStats, hot } = this.#ctx;
    const t0 = performance.now();
    const remoteBytes = seg.meta.remote?.bytes ?? 0;
    if (tier === 'cold') tierStats.coldReads++;
    const view = await this.#verifier.readable(seg);
    const loaded = tier === 'cold' && seg.meta.tier === 'warm';
    // A rehydrated segment counts as accessed, so the policy sees what the read brought in.
    access.record(seg.id, tier);
    const { tomb } = seg;
    const dim = this.#reg.dimension;
    let bits: Uint8Array | undefined;
    let passing: number | undefined;
    if (filter) {
      bits = evaluate(filter, view, tomb);
      passing = countRows(bits);
    }
    const done = (how: SearchHow): SegmentTrace => ({
      id: seg.id, tier, how, ms: performance.now() - t0, loaded, bytesFetched: loaded ? remoteBytes : 0, bound,
      ...(passing === undefined ? {} : { passing }),
    });
    if (passing === 0) return done('no-match');
    const accept = bits ? (r: number) => bits![r] === 1 : seg.deleted > 0 ? (r: number) => tomb[r] === 0 : undefined;
    if (bits && (exact || passing! <= FILTER_ROWS_EXACT_MAX)) {
      push(flatSearchRows(view.vectors, dim, rowsOf(bits), query, k, this.#reg.metric), view);
      return done('rows');
    }
    if (exact) {
      tierStats.warmScans++;
      push(view.scan(query, k, accept), view);
      return done('scan');
    }
    const beam = passing === undefined ? ef : Math.min(FILTERED_EF_MAX, Math.max(ef, Math.ceil(ef * Math.sqrt(seg.meta.records / passing))));
    const lease = hot.peek(seg.id);
    if (lease) {
      try {
        push(lease.segment.index.search(query, k, beam, accept), view);
      } finally {
        lease.release();
      }
      return done('hnsw');
    }
    if (seg.meta.records <= this.#ctx.options.warmScanMaxRecords) {
      tierStats.warmScans++;
      push(view.scan(query, k, accept), view);
      return done('scan');
    }
    push(view.graph().search(query, k, beam, bits ? invert(bits) : seg.deleted > 0 ? tomb : undefined), view);
    this.#migrator.offerHot(seg, view);
    return done('mapped-hnsw');
  }
}

/** A pass bitmap (1 = passes) as the exclusion bitmap the in-place searcher takes (1 = out). */
function invert(bits: Uint8Array): Uint8Array {
  const out = new Uint8Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = bits[i]! ^ 1;
  return out;
}
