// Compaction planning: which segments of a collection to rewrite, and in which groups. Pure: it
// sees sizes and tombstone counts, never files. A segment is worth rewriting when it is small
// (its live rows are under a fraction of the target segment size: searching many small segments
// costs a graph search each) or when a large share of its rows are deleted (tombstones still cost
// index traversal and disk). Candidates are packed in seq order (older data together) into groups
// of at most the target size, each group within one clustering region (clustering.ts); row order
// never matters for correctness, since ids are unique. Pinned segments and cold ones (compacting
// them would pull them back from the object store) are left alone unless asked.

export interface CompactionCandidate {
  id: string;
  seq: number;
  records: number;
  live: number;
  tier: 'hot' | 'warm' | 'cold';
  pinned: boolean;
  /** Unreadable segments are never compacted. */
  available: boolean;
  /** Its current clustering region, if any: segments are only merged with others of the same
   *  region (or, unclustered, with unclustered ones), so compaction never undoes clustering. */
  region?: number;
}

export interface CompactionPlanOptions {
  /** Live rows a merged segment may hold (the collection's segmentMaxRecords). */
  targetRecords: number;
  /** Below this share of targetRecords live rows, a segment is small. Default 0.5. */
  smallFraction?: number;
  /** At or above this share of deleted rows, a segment is rewritten even alone. Default 0.2. */
  deletedRatio?: number;
  includeCold?: boolean;
}

export interface CompactionGroup {
  sources: string[];
  live: number;
  records: number;
  reason: 'merge-small' | 'drop-deleted';
}

export const kDefaultCompaction = Object.freeze({ smallFraction: 0.5, deletedRatio: 0.2 });

export function planCompaction(segments: readonly CompactionCandidate[], opts: CompactionPlanOptions): CompactionGroup[] {
  const smallFraction = opts.smallFraction ?? kDefaultCompaction.smallFraction;
  const deletedRatio = opts.deletedRatio ?? kDefaultCompaction.deletedRatio;
  const target = opts.targetRecords;
  const tombstoned = (s: CompactionCandidate) => s.records > 0 && (s.records - s.live) / s.records >= deletedRatio;
  const eligible = (s: CompactionCandidate) =>
    s.available && !s.pinned && (opts.includeCold === true || s.tier !== 'cold') &&
    (s.live < target * smallFraction || tombstoned(s));

  const groups: CompactionGroup[] = [];
  const open = new Map<number | undefined, CompactionCandidate[]>();
  const close = (current: CompactionCandidate[]) => {
    const live = current.reduce((n, s) => n + s.live, 0);
    const records = current.reduce((n, s) => n + s.records, 0);
    // A lone segment is rewritten only to drop its tombstones; a group always merges.
    if (current.length > 1 || (current.length === 1 && tombstoned(current[0]!))) {
      groups.push({ sources: current.map((s) => s.id), live, records, reason: current.length > 1 ? 'merge-small' : 'drop-deleted' });
    }
  };
  for (const s of [...segments].sort((a, b) => a.seq - b.seq)) {
    if (!eligible(s)) continue;
    const current = open.get(s.region) ?? [];
    const live = current.reduce((n, x) => n + x.live, 0);
    if (current.length > 0 && live + s.live > target) {
      close(current);
      open.set(s.region, [s]);
    } else {
      current.push(s);
      open.set(s.region, current);
    }
  }
  for (const current of open.values()) close(current);
  const firstSeq = new Map(segments.map((x) => [x.id, x.seq]));
  groups.sort((a, b) => firstSeq.get(a.sources[0]!)! - firstSeq.get(b.sources[0]!)!);
  return groups;
}
