// A sealed, committed segment as a collection tracks it in memory: its manifest entry, its
// tombstones, and its local view (the mapped file when warm or hot, the id stub when cold).
// State changes that must survive a crash go through the manifest; this object only mirrors it.

import type { StratavecError } from '../format/errors.js';
import type { ManifestSegment } from '../format/manifest.js';
import type { StringTable } from '../format/segment.js';
import type { SegmentBounds } from '../index/bounds.js';
import type { SegmentView } from './segment-view.js';

export class SealedSegment {
  /** The committed manifest entry; replaced (never mutated) when a commit changes it. */
  meta: ManifestSegment;
  readonly tomb: Uint8Array;
  deleted = 0;
  /** The mapped local file, present while the segment is warm or hot. */
  view: SegmentView | undefined;
  /** Ids of a cold segment, from its local stub (so opening never needs the object store). */
  coldIds: StringTable | undefined;
  /** Why the segment cannot be read, when it cannot. */
  error: StratavecError | undefined;
  /** Serialises migrations of this segment. */
  busy: Promise<unknown> = Promise.resolve();
  /** A rehydration in flight, shared by every search that needs it. */
  rehydrating: Promise<void> | undefined;
  /** Whether every section of the local file was CRC-checked since it was mapped (true), or the
   *  check in flight; undefined until the first read needs it. */
  verified: true | Promise<void> | undefined;
  /** Whether its rows are in the collection's id -> location map (false if unreadable at open). */
  indexed = false;
  /** When a read last brought it closer (rehydrated it from cold, or admitted it to hot), by the
   *  database clock: the tiering policy does not demote it again within its minimum residency.
   *  Explicit moves (migrate, the policy's own plan) leave it alone. */
  movedAt: number | undefined;
  /** Where its rows lie (centroids and radii), when its file has a bounds section; kept in memory
   *  for every tier so a search can order and skip segments without I/O. */
  bounds: SegmentBounds | undefined;
  /** Searches reading it now; a segment compaction replaced keeps a GC lease until this is 0. */
  readers = 0;
  /** Called when `readers` drops to 0 (set when the segment is replaced while being read). */
  onIdle: (() => void) | undefined;

  constructor(meta: ManifestSegment) {
    this.meta = meta;
    this.tomb = new Uint8Array(meta.records);
    for (const r of meta.deleted) this.kill(r);
  }

  get id(): string {
    return this.meta.id;
  }

  /** Raw (logical) bytes of the segment: its sections undecoded, whatever tier it is in. */
  get rawBytes(): number {
    return this.meta.sections.reduce((n, x) => n + x.rawLength, 0);
  }

  get live(): number {
    return this.meta.records - this.deleted;
  }

  kill(row: number): void {
    if (this.tomb[row] === 0) {
      this.tomb[row] = 1;
      this.deleted++;
    }
  }

  deletedRows(): number[] {
    const out: number[] = [];
    for (let r = 0; r < this.tomb.length; r++) if (this.tomb[r] === 1) out.push(r);
    return out;
  }

  enter(): void {
    this.readers++;
  }

  leave(): void {
    if (--this.readers === 0 && this.onIdle) {
      const idle = this.onIdle;
      this.onIdle = undefined;
      idle();
    }
  }

  /** Runs `fn` after every earlier migration of this segment has settled. */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.busy.then(fn, fn);
    this.busy = run.catch(() => undefined);
    return run;
  }
}
