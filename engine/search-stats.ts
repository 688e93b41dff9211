// What searches report: how each sealed segment took part in one search (explain's trace) and
// the same figures summed over every search of a database (db.stats().search).

import type { Tier } from '../format/manifest.js';

/**
 * How one sealed segment took part in a search:
 * hnsw: the native index in memory (hot); mapped-hnsw: the graph searched in place in the mapped
 * file (warm, or cold just rehydrated); scan: exact distances over every live row; rows: exact
 * distances over the rows a filter passed (selective filters); pruned: its bound could not beat the
 * k-th result; no-match: its payload summary or the filter's bitmap left no row; skipped: outside
 * the probe limit or the tiers asked for.
 */
export type SearchHow = 'hnsw' | 'mapped-hnsw' | 'scan' | 'rows' | 'pruned' | 'no-match' | 'skipped';

export interface SegmentTrace {
  id: string;
  /** Where it was when the search reached it. */
  tier: Tier;
  how: SearchHow;
  ms: number;
  /** Rehydrated from the object store for this search. */
  loaded: boolean;
  /** Bytes downloaded for it by this search. */
  bytesFetched: number;
  /** Lower bound of its distance to the query (-Infinity without bounds). */
  bound: number;
  /** Rows a filter passed, when there is a filter and the segment was evaluated. */
  passing?: number;
}


/** Counters of every search of the database (db.stats().search): explain's figures, summed. */
export class SearchStats {
  searches = 0;
  segmentsConsidered = 0;
  readonly how: Record<SearchHow, number> = { hnsw: 0, 'mapped-hnsw': 0, scan: 0, rows: 0, pruned: 0, 'no-match': 0, skipped: 0 };
  rehydrations = 0;
  bytesFetched = 0;

  add(segments: readonly SegmentTrace[]): void {
    this.searches++;
    this.segmentsConsidered += segments.length;
    for (const s of segments) {
      this.how[s.how]++;
      if (s.loaded) this.rehydrations++;
      this.bytesFetched += s.bytesFetched;
    }
  }

  snapshot() {
    return { searches: this.searches, segmentsConsidered: this.segmentsConsidered, how: { ...this.how }, rehydrations: this.rehydrations, bytesFetched: this.bytesFetched };
  }
}
