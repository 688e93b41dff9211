// Trust in a segment's copies: verify-on-read (every section of a local file CRC-checked in a
// worker once per mapping, before any byte is served; a bad one quarantined and fetched again
// from the object store) and verify/repair across every copy (local file or stub, remote object).
// It never serves bytes it has not checked, and never marks a segment unavailable while a good
// copy exists.

import * as path from 'node:path';
import { StratavecError } from '../format/errors.js';
import { SectionKind, type StringTable } from '../format/segment.js';
import type { SealedSegment } from './sealed-segment.js';
import type { SegmentView } from './segment-view.js';
import type { SegmentCatalog, TierContext } from './segment-catalog.js';
import { stubKinds, type SegmentCopies } from './copies.js';

/** One copy of a segment as verify found it. */
export interface CopyCheck {
  copy: 'local' | 'stub' | 'remote';
  /** A path relative to the database directory, or the object key. */
  location: string;
  /** absent: no remote copy was made yet (its upload is queued, failed, or was cut by a close):
   *  not damage, but the local file is the only copy; repair uploads one. */
  status: 'ok' | 'missing' | 'corrupt' | 'unreachable' | 'absent';
  detail?: string;
  /** What repair did about it. */
  action?: 'refetched' | 'reuploaded' | 'uploaded' | 'rebuilt' | 'quarantined';
  /** Bytes read to check it. */
  bytes: number;
}

export interface SegmentCheck {
  segmentId: string;
  collection: string;
  tier: 'hot' | 'warm' | 'cold';
  /** ok: every copy checked is good; repaired: it was not, and now is; damaged: a copy is bad and
   *  was not (or could not be) repaired, but the segment is still served from a good one;
   *  unavailable: no good copy, reads fail with ERR_SEGMENT_UNAVAILABLE; gone: compacted away
   *  while verify ran. */
  status: 'ok' | 'repaired' | 'damaged' | 'unavailable' | 'gone';
  copies: CopyCheck[];
}

/** Missing or corrupt: a copy to repair. Unreachable says nothing about the copy itself. */
const isBad = (c: CopyCheck) => c.status === 'missing' || c.status === 'corrupt';

export class CopyVerifier {
  readonly #ctx: TierContext;
  readonly #cat: SegmentCatalog;
  readonly #copies: SegmentCopies;

  constructor(ctx: TierContext, catalog: SegmentCatalog, copies: SegmentCopies) {
    this.#ctx = ctx;
    this.#cat = catalog;
    this.#copies = copies;
  }

  // ---- at open ------------------------------------------------------------------------------

  /**
   * The ids of a segment being opened, from a structurally sound local copy: a warm segment's
   * file is mapped (its id table CRC-checked before the location map is built from it), a cold
   * one's stub read. A damaged local file is quarantined and fetched again from the remote copy
   * right here, so damage noticed at open costs a download, not the segment. Sets `seg.error`
   * and returns undefined when no good copy can be had.
   */
  async attach(seg: SealedSegment): Promise<StringTable | undefined> {
    try {
      if (seg.meta.tier !== 'warm') {
        seg.coldIds = await this.#copies.loadStub(seg); // rebuilt from the remote copy if need be
        return seg.coldIds;
      }
      try {
        return this.#mapChecked(seg).ids;
      } catch (err) {
        if (!(err instanceof StratavecError) || seg.meta.remote === undefined) throw err;
        await this.#copies.refetchLocal(seg, err); // throws (seg.error set) when it cannot
        const ids = this.#mapChecked(seg).ids;
        seg.verified = true; // decodeColdCopy checked every stored and raw CRC32
        return ids;
      }
    } catch (err) {
      if (!(err instanceof StratavecError)) throw err;
      seg.error ??= err;
      return undefined;
    }
  }

  #mapChecked(seg: SealedSegment): SegmentView {
    const view = this.#copies.map(seg);
    // The id table is what the location map is built from, so it is checked before it is trusted.
    view.reader.verifySection(SectionKind.ids);
    seg.view = view;
    return view;
  }

  // ---- verify on read ---------------------------------------------------------------------

  viewOf(seg: SealedSegment): SegmentView {
    if (seg.error) throw new StratavecError('ERR_SEGMENT_UNAVAILABLE', `segment ${seg.id} has no readable copy: ${seg.error.message}`, { cause: seg.error });
    if (!seg.view) throw new StratavecError('ERR_SEGMENT_UNAVAILABLE', `segment ${seg.id} is cold and was not rehydrated`);
    return seg.view;
  }

  /**
   * Makes a segment's local copy safe to read: rehydrated if cold, and every section CRC-checked
   * (once per mapping, in a worker) before any of its bytes are served. A local copy that fails
   * is quarantined and replaced from the remote copy when there is one; otherwise the segment is
   * marked unavailable and every read of it fails with ERR_SEGMENT_UNAVAILABLE.
   * `locked`: the caller already runs inside seg.exclusive (a migration), so repair runs inline.
   */
  async readable(seg: SealedSegment, locked = false): Promise<SegmentView> {
    // A demotion may land while we await; the view captured after the last await stays valid
    // (the mapping outlives the unlink), so a read that got one can finish on it.
    for (let attempt = 0; attempt < 3; attempt++) {
      if (!seg.view && !seg.error) await (locked ? this.#copies.rehydrate(seg) : this.#copies.rehydrateShared(seg));
      if (seg.verified !== true) await this.#verifyOnce(seg, locked);
      if (seg.view && seg.verified === true) return seg.view;
    }
    return this.viewOf(seg);
  }

  #verifyOnce(seg: SealedSegment, locked: boolean): Promise<void> {
    if (seg.verified === true) return Promise.resolve();
    seg.verified ??= this.#verifyLocal(seg, locked).then(
      () => {
        seg.verified = true;
      },
      (err: unknown) => {
        seg.verified = undefined;
        throw err;
      },
    );
    return seg.verified;
  }

  async #verifyLocal(seg: SealedSegment, locked: boolean): Promise<void> {
    this.viewOf(seg);
    const { fault } = await this.#copies.inspect(seg, this.#copies.localPath(seg));
    if (fault) await (locked ? this.#repairLocal(seg, fault) : seg.exclusive(() => this.#repairLocal(seg, fault)));
  }

  /** A bad local copy: out of hot, quarantined, fetched again from the object store, mapped. */
  async #repairLocal(seg: SealedSegment, cause: StratavecError): Promise<void> {
    this.#ctx.hot.delete(seg.id);
    seg.view = undefined;
    await this.#copies.refetchLocal(seg, cause);
    seg.view = this.#copies.map(seg);
  }

  /** A verify found the local copy bad: no byte of it is served until it is checked again. */
  distrust(seg: SealedSegment): void {
    seg.verified = undefined;
    this.#ctx.hot.delete(seg.id);
  }

  // ---- verify and repair across copies ----------------------------------------------------

  /**
   * Checks every copy of one segment against the manifest's CRC32s: the local file (or a cold
   * segment's id stub) and, with `remote`, the object-store copy. With `repair`: a bad local copy
   * is quarantined and re-fetched from a good remote one; a bad or missing remote copy is
   * re-uploaded from a good local one; a segment with no good copy is marked unavailable; an
   * unavailable segment whose copies are good again (restored by an operator) comes back.
   * Without `repair`, a bad local copy is still no longer trusted: the next read re-checks it.
   */
  verifySegment(id: string, tier: () => SegmentCheck['tier'], opts: { repair: boolean; remote: boolean }): Promise<SegmentCheck> {
    const check: SegmentCheck = { segmentId: id, collection: this.#cat.name, tier: 'warm', status: 'gone', copies: [] };
    if (!this.#cat.has(id)) return Promise.resolve(check);
    const seg = this.#cat.require(id);
    return seg.exclusive(async () => {
      if (!this.#cat.has(id) || this.#cat.closed) return check;
      check.tier = tier();
      const warm = seg.meta.tier === 'warm';
      const local = await this.#checkFile(seg, warm ? 'local' : 'stub');
      check.copies.push(local);
      const wantRemote = opts.remote && (seg.meta.remote !== undefined || (warm && this.#ctx.options.uploadOnSeal));
      const remote = wantRemote ? await this.#checkRemote(seg) : undefined;
      if (remote) check.copies.push(remote);
      if (warm && isBad(local)) this.distrust(seg);
      if (opts.repair) await this.#repairCopies(seg, local, remote);
      const bad = check.copies.filter(isBad);
      const noGoodCopy = warm ? isBad(local) && (remote === undefined || isBad(remote)) && local.action !== 'refetched' : remote !== undefined && isBad(remote);
      if (seg.error || (noGoodCopy && !opts.repair)) check.status = 'unavailable';
      else if (bad.length === 0) check.status = 'ok';
      else check.status = bad.every((c) => c.action !== undefined && c.action !== 'quarantined') ? 'repaired' : 'damaged';
      return check;
    });
  }

  #relative(file: string): string {
    return path.relative(path.dirname(this.#ctx.warm.root), file);
  }

  /** The local copy of a warm segment (`local`) or a cold segment's id stub, as verify reports it. */
  async #checkFile(seg: SealedSegment, copy: 'local' | 'stub'): Promise<CopyCheck> {
    const file = copy === 'local' ? this.#copies.localPath(seg) : this.#copies.stubPath(seg);
    const out: CopyCheck = { copy, location: this.#relative(file), status: 'ok', bytes: 0 };
    try {
      const { bytes, fault } = await this.#copies.inspect(seg, file, copy === 'stub' ? stubKinds(seg) : undefined);
      out.bytes = bytes;
      if (fault) {
        out.status = fault.code === 'ERR_SEGMENT_NOT_FOUND' ? 'missing' : 'corrupt';
        out.detail = fault.message;
      }
    } catch (err) {
      if (!(err instanceof StratavecError)) throw err;
      out.status = 'unreachable'; // an I/O or pool failure: the file may be fine
      out.detail = err.message;
    }
    return out;
  }

  async #checkRemote(seg: SealedSegment): Promise<CopyCheck> {
    const remote = seg.meta.remote;
    const key = remote?.key ?? this.#ctx.cold.segmentKey(this.#cat.name, seg.id);
    const out: CopyCheck = { copy: 'remote', location: key, status: 'ok', bytes: 0 };
    if (!remote) {
      out.status = 'absent';
      out.detail = 'no remote copy yet';
      return out;
    }
    try {
      out.bytes = (await this.#ctx.cold.verify(remote, seg.meta.sections.map((x) => x.rawCrc))).bytes;
    } catch (err) {
      if (!(err instanceof StratavecError)) throw err;
      out.status = err.code === 'ERR_OBJECT_NOT_FOUND' ? 'missing' : err.code === 'ERR_SEGMENT_CORRUPT' ? 'corrupt' : 'unreachable';
      out.detail = err.message;
    }
    return out;
  }

  /** Runs inside seg.exclusive. Each repair is verified by the code that makes it. */
  async #repairCopies(seg: SealedSegment, local: CopyCheck, remote: CopyCheck | undefined): Promise<void> {
    const warm = seg.meta.tier === 'warm';
    if (warm && isBad(local)) {
      const cause = new StratavecError('ERR_SEGMENT_CORRUPT', `segment ${seg.id}: local copy ${local.status}: ${local.detail ?? ''}`);
      try {
        await this.#repairLocal(seg, cause); // quarantine, then download + verify, or mark unavailable
        local.action = 'refetched';
        seg.verified = true;
      } catch (err) {
        if (!(err instanceof StratavecError)) throw err;
        local.action = 'quarantined';
        local.detail = err.message;
      }
    }
    const localGood = warm && (local.status === 'ok' || local.action === 'refetched');
    if (remote && (isBad(remote) || remote.status === 'absent')) {
      if (localGood) {
        try {
          await this.#copies.ensureRemote(seg, true);
          remote.action = remote.status === 'absent' ? 'uploaded' : 'reuploaded';
        } catch (err) {
          if (!(err instanceof StratavecError)) throw err;
          remote.detail = `re-upload failed: ${err.message}`;
        }
      } else if (!warm) {
        seg.error = new StratavecError('ERR_SEGMENT_CORRUPT', `cold segment ${seg.id}: remote copy ${remote.status}: ${remote.detail ?? ''}`);
      }
    }
    const remoteGood = remote?.status === 'ok' || remote?.action === 'reuploaded' || remote?.action === 'uploaded';
    if (!warm && isBad(local) && !seg.error && (remote === undefined || remoteGood)) {
      try {
        seg.coldIds = await this.#copies.loadStub(seg); // rebuilt from the remote copy's ids section
        local.action = 'rebuilt';
      } catch (err) {
        if (!(err instanceof StratavecError)) throw err;
        local.detail = `rebuild failed: ${err.message}`;
      }
    }
    // An operator restored a copy: an unavailable segment whose copies now check out comes back.
    if (seg.error && (warm ? localGood : remoteGood && (local.status === 'ok' || local.action === 'rebuilt'))) {
      await this.#revive(seg);
    }
  }

  async #revive(seg: SealedSegment): Promise<void> {
    let ids: StringTable;
    if (seg.meta.tier === 'warm') {
      seg.view ??= this.#copies.map(seg);
      seg.verified = true;
      ids = seg.view.ids;
    } else {
      ids = seg.coldIds ?? (await this.#copies.loadStub(seg));
      seg.coldIds = ids;
    }
    seg.error = undefined;
    if (!seg.indexed) {
      this.#cat.index(seg, ids);
      // Rows found superseded while indexing are tombstones now; make them durable.
      await this.#cat.commit({});
    }
  }
}
