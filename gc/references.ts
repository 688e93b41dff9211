// The reference set of one collection: every location its current manifest names (local segment
// files and stubs, remote copies, the newest manifest version), and the locations of segments
// compaction replaced in this process (so GC can tell a replaced segment from an orphan). GC
// deletes only what is outside this set; it must never shrink while a commit that needs it is
// in flight, which holds because it is computed from the committed segment list.

import { remoteLocation } from '../tiers/leases.js';
import type { SegmentCatalog, TierContext } from '../tiers/segment-catalog.js';
import type { SealedSegment } from '../tiers/sealed-segment.js';

export interface CollectionReferences {
  /** Absolute paths of local segment files and stubs. */
  local: Set<string>;
  /** Object keys of remote copies. */
  remote: Set<string>;
  /** Locations (paths, remoteLocation(key)) of segments compaction replaced. */
  replaced: ReadonlySet<string>;
  manifestVersion: number;
}

/** What GC needs of a collection. */
export interface GcSubject {
  readonly name: string;
  references(): CollectionReferences;
  forgetReplaced(location: string): void;
}

export class ReferenceSet implements GcSubject {
  readonly #ctx: TierContext;
  readonly #cat: SegmentCatalog;
  readonly #replaced = new Set<string>();

  constructor(ctx: TierContext, catalog: SegmentCatalog) {
    this.#ctx = ctx;
    this.#cat = catalog;
  }

  get name(): string {
    return this.#cat.name;
  }

  references(): CollectionReferences {
    const local = new Set<string>();
    const remote = new Set<string>();
    for (const s of this.#cat.list()) {
      local.add(this.#ctx.warm.localFileOf(this.#cat.name, s.meta));
      if (s.meta.remote) remote.add(s.meta.remote.key);
    }
    return { local, remote, replaced: this.#replaced, manifestVersion: this.#cat.manifest.version };
  }

  /** A segment compaction replaced: out of hot and the access statistics; its files stay leased while read. */
  retire(seg: SealedSegment): void {
    this.#ctx.hot.delete(seg.id);
    this.#ctx.access.forget(seg.id);
    const locations = [this.#ctx.warm.pathFor(this.#cat.name, seg.meta.seq)];
    if (seg.meta.remote) locations.push(remoteLocation(seg.meta.remote.key));
    for (const l of locations) this.#replaced.add(l);
    if (seg.readers > 0) seg.onIdle = this.#ctx.leases.hold(locations);
  }

  /** GC deleted a replaced segment's location: stop remembering it. */
  forgetReplaced(location: string): void {
    this.#replaced.delete(location);
  }
}
