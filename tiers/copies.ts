// The copies of one collection's segments and the verified transfers between them: the local
// file, a cold segment's id stub, the remote object. Write-through uploads, rehydration
// (download + decode + map), stubs cut from a verified local copy or rebuilt from the remote one,
// and the worker-side CRC check of a local file. Every transfer is checked against the
// manifest's CRC32s before the manifest is switched; nothing here decides when a copy moves.
// Read-only (options.readOnly): copies are read, never written; a cold segment a read needs is
// fetched to the scratch directory and mapped from there, a missing stub read from the remote
// copy into memory, and a bad local copy is reported (the segment unavailable), not repaired.

import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { StratavecError } from '../format/errors.js';
import { crc32 } from '../format/crc32.js';
import { mapReadOnly } from '../format/mapped-file.js';
import {
  SectionKind, StringTable, encodeSegment, writeSegmentFile, SegmentReader, HEADER_SIZE, TRAILER_SIZE, Codec,
} from '../format/segment.js';
import { decodeSection } from '../workers/codec.js';
import { decodeBounds, readSegmentBounds } from '../index/bounds.js';
import { remoteLocation } from './leases.js';
import type { SealedSegment } from './sealed-segment.js';
import type { SegmentView } from './segment-view.js';
import type { SegmentCatalog, TierContext } from './segment-catalog.js';

/** The sections a cold segment's id stub holds, in file order: its ids and id lookup, and its
 *  bounds when it has them (so a search can skip it without fetching anything). */
export function stubKinds(seg: SealedSegment): number[] {
  const kinds: number[] = [SectionKind.ids, SectionKind.idLookup];
  if (seg.meta.sections.some((x) => x.kind === SectionKind.bounds)) kinds.push(SectionKind.bounds);
  return kinds;
}

export class SegmentCopies {
  readonly #ctx: TierContext;
  readonly #cat: SegmentCatalog;
  #uploads: Promise<void> = Promise.resolve();

  constructor(ctx: TierContext, catalog: SegmentCatalog) {
    this.#ctx = ctx;
    this.#cat = catalog;
  }

  localPath(seg: SealedSegment): string {
    return this.#ctx.warm.pathFor(this.#cat.name, seg.meta.seq);
  }

  stubPath(seg: SealedSegment): string {
    return this.#ctx.warm.stubPathFor(this.#cat.name, seg.meta.seq);
  }

  /** Maps a warm segment's local file (structure checked, CRCs not: see CopyVerifier). */
  map(seg: SealedSegment, file?: string): SegmentView {
    const view = this.#ctx.warm.mapSegment(this.#cat.name, seg.meta, this.#cat.dimension, file);
    seg.bounds ??= readSegmentBounds(view.reader); // CRC-checked: a bad one is a bad file
    return view;
  }

  /**
   * CRC-checks a local segment file (or, with `kinds`, a stub holding only those sections) in a
   * worker, and holds its sections' raw CRC32s against the manifest's. Resolves the bytes read
   * and, when the file is bad or missing, the ERR_SEGMENT_CORRUPT / ERR_SEGMENT_NOT_FOUND that
   * says so; any other failure (I/O, the pool) rejects.
   */
  async inspect(seg: SealedSegment, file: string, kinds?: readonly number[]): Promise<{ bytes: number; fault?: StratavecError }> {
    const want = kinds ? seg.meta.sections.filter((x) => kinds.includes(x.kind)) : seg.meta.sections;
    try {
      const r = await this.#ctx.pool.run('verifySegment', { path: file });
      if (r.kinds.length !== want.length || want.some((x, i) => r.kinds[i] !== x.kind || r.rawCrcs[i] !== x.rawCrc)) {
        return { bytes: r.bytes, fault: new StratavecError('ERR_SEGMENT_CORRUPT', `segment ${seg.id}: ${path.basename(file)}'s sections differ from the manifest`) };
      }
      return { bytes: r.bytes };
    } catch (err) {
      if (err instanceof StratavecError && (err.code === 'ERR_SEGMENT_CORRUPT' || err.code === 'ERR_SEGMENT_NOT_FOUND')) return { bytes: 0, fault: err };
      throw err;
    }
  }

  /**
   * Moves a bad local file aside to quarantine/ (kept for inspection; GC collects it) and
   * downloads a verified one from the remote copy. Throws ERR_SEGMENT_UNAVAILABLE, with `seg.error`
   * set, when there is no remote copy or it cannot be fetched.
   */
  async refetchLocal(seg: SealedSegment, cause: StratavecError): Promise<void> {
    if (this.#ctx.options.readOnly) {
      seg.error = cause;
      throw new StratavecError('ERR_SEGMENT_UNAVAILABLE', `segment ${seg.id}: local copy is bad, and a read-only open does not repair it (verify --repair does): ${cause.message}`, { cause });
    }
    const file = this.localPath(seg);
    const qdir = path.join(this.#cat.dir, 'quarantine');
    await fsp.mkdir(qdir, { recursive: true });
    await fsp.rename(file, path.join(qdir, `${path.basename(file)}-${Date.now()}`)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
    this.#ctx.tierStats.repairs++;
    const remote = seg.meta.remote;
    if (!remote) {
      seg.error = cause;
      throw new StratavecError('ERR_SEGMENT_UNAVAILABLE', `segment ${seg.id}: local copy is bad and there is no remote copy: ${cause.message}`, { cause });
    }
    try {
      const down = await this.#ctx.leases.with([file], () => this.#ctx.cold.download(remote, file, seg.meta.sections.map((x) => x.rawCrc)));
      this.#ctx.tierStats.migrated('cold->warm', down.rawBytes, down.bytes);
    } catch (err) {
      seg.error = err instanceof StratavecError ? err : cause;
      throw new StratavecError('ERR_SEGMENT_UNAVAILABLE', `segment ${seg.id}: local copy is bad and the remote copy could not be fetched`, { cause: err });
    }
  }

  // ---- remote copies ----------------------------------------------------------------------

  /** Queues a write-through upload; failures are counted in stats and retried by a later demotion. */
  scheduleUpload(seg: SealedSegment): void {
    if (this.#ctx.options.readOnly) return;
    this.#uploads = this.#uploads.then(() => seg.exclusive(async () => {
      if (this.#cat.closed || !this.#cat.has(seg.id) || seg.meta.remote || seg.meta.tier !== 'warm') return;
      await this.ensureRemote(seg);
    })).catch((err: unknown) => {
      this.#ctx.tierStats.uploadFailures++;
      this.#ctx.tierStats.lastRemoteError = err instanceof Error ? err.message : String(err);
    });
  }

  /** Waits for the write-through uploads queued so far. */
  async drainUploads(): Promise<void> {
    await this.#uploads;
  }

  /**
   * Makes sure a verified remote copy exists and is recorded in the manifest. `force` uploads
   * again even when the recorded copy looks present (verify found it corrupt).
   */
  async ensureRemote(seg: SealedSegment, force = false): Promise<void> {
    const { cold, tierStats } = this.#ctx;
    const remote = seg.meta.remote;
    if (remote && !force) {
      const info = await cold.store.head(remote.key);
      if (info && info.size === remote.bytes) return;
      // The recorded copy vanished or changed size: upload again from the local copy.
    }
    const key = cold.segmentKey(this.#cat.name, seg.id);
    await this.#ctx.leases.with([remoteLocation(key)], async () => {
      const up = await cold.upload(this.localPath(seg), key, seg.meta.sections.map((x) => x.rawCrc));
      await this.#cat.commit({ replace: { ...seg.meta, remote: { key, bytes: up.bytes, storedCrcs: up.storedCrcs, codecs: up.codecs } } });
      tierStats.bytesTransferred += up.bytes;
    });
    tierStats.uploads++;
    // The commit above published the manifest version that records this copy (SegmentRegistry).
  }

  // ---- stubs --------------------------------------------------------------------------------

  /** Writes the id stub of a segment about to go cold: ids and the id lookup, raw. */
  async writeStub(seg: SealedSegment, sections: Uint8Array[]): Promise<void> {
    const kinds = stubKinds(seg);
    const enc = encodeSegment({ dimension: this.#cat.dimension, metric: this.#cat.metric, count: seg.meta.records },
      kinds.map((kind, i) => ({ kind, data: sections[i]! })));
    const want = seg.meta.sections.filter((x) => kinds.includes(x.kind));
    if (enc.sections.some((e, i) => e.rawCrc !== want[i]?.rawCrc)) {
      throw new StratavecError('ERR_SEGMENT_CORRUPT', `segment ${seg.id}: the id stub's sections differ from the manifest`);
    }
    await writeSegmentFile(this.stubPath(seg), enc);
  }

  /**
   * The ids of a cold segment from its local stub; a missing or corrupt stub is rebuilt from the
   * remote copy's ids section (two ranged GETs for the table, one for the section).
   */
  async loadStub(seg: SealedSegment): Promise<StringTable> {
    const file = this.stubPath(seg);
    const kinds = stubKinds(seg);
    try {
      const { fault } = await this.inspect(seg, file, kinds); // CRCs checked in a worker
      if (!fault) {
        const reader = SegmentReader.open(mapReadOnly(file, { minSize: HEADER_SIZE + TRAILER_SIZE }));
        seg.bounds ??= readSegmentBounds(reader);
        return StringTable.open(reader.raw(SectionKind.ids), seg.meta.records);
      }
    } catch (err) {
      if (!(err instanceof StratavecError)) throw err;
    }
    const remote = seg.meta.remote;
    if (!remote) throw new StratavecError('ERR_SEGMENT_UNAVAILABLE', `cold segment ${seg.id} has no remote copy recorded`);
    const table = await this.#ctx.cold.readTable(remote.key, remote.bytes);
    const raw = async (kind: number) => {
      const e = table.find((x) => x.kind === kind);
      if (!e) throw new StratavecError('ERR_SEGMENT_CORRUPT', `remote copy ${remote.key} has no section ${kind}`);
      const stored = await this.#ctx.cold.readSection(remote.key, e);
      return Buffer.from(e.codec === Codec.none ? stored : decodeSection(stored, e.codec, e.rawLength));
    };
    const sections: Buffer[] = [];
    for (const kind of kinds) sections.push(await raw(kind));
    if (this.#ctx.options.readOnly) {
      // Kept in memory only, checked as writeStub would check it.
      const want = seg.meta.sections.filter((x) => kinds.includes(x.kind));
      if (sections.some((b, i) => crc32(b) !== want[i]?.rawCrc)) {
        throw new StratavecError('ERR_SEGMENT_CORRUPT', `segment ${seg.id}: the remote copy's id sections differ from the manifest`);
      }
    } else {
      await this.writeStub(seg, sections); // checked against the manifest before it is written
    }
    const b = kinds.indexOf(SectionKind.bounds);
    if (b >= 0) seg.bounds ??= decodeBounds(sections[b]!, { dimension: this.#cat.dimension, rows: seg.meta.records });
    return StringTable.open(sections[0]!, seg.meta.records);
  }

  // ---- rehydration ------------------------------------------------------------------------

  /** Shares one rehydration among every reader that needs the segment. */
  rehydrateShared(seg: SealedSegment): Promise<void> {
    if (seg.view) return Promise.resolve();
    if (seg.error) return Promise.reject(new StratavecError('ERR_SEGMENT_UNAVAILABLE', `segment ${seg.id} has no readable copy`, { cause: seg.error }));
    seg.rehydrating ??= seg.exclusive(async () => {
      if (seg.view) return;
      await this.rehydrate(seg);
      seg.movedAt = this.#ctx.options.clock.now(); // a read brought it in: see SealedSegment.movedAt
    }).finally(() => {
      seg.rehydrating = undefined;
    });
    return seg.rehydrating;
  }

  /** Cold -> warm: download, verify, decode into the local file, commit, map. Caller holds seg.exclusive. */
  async rehydrate(seg: SealedSegment): Promise<void> {
    const remote = seg.meta.remote;
    if (!remote) throw new StratavecError('ERR_SEGMENT_UNAVAILABLE', `cold segment ${seg.id} has no remote copy recorded`);
    if (this.#ctx.options.readOnly) return this.#fetchToScratch(seg, remote);
    const dest = this.localPath(seg);
    const down = await this.#ctx.leases.with([dest], async () => {
      const d = await this.#ctx.cold.download(remote, dest, seg.meta.sections.map((x) => x.rawCrc));
      const local = { bytes: d.rawBytes, storedCrcs: d.sections.map((x) => x.storedCrc), codecs: d.sections.map((x) => x.codec) };
      try {
        await this.#cat.commit({ replace: { ...seg.meta, tier: 'warm', local } });
      } catch (err) {
        await this.#ctx.warm.remove(dest);
        throw err;
      }
      return d;
    });
    seg.view = this.map(seg);
    seg.verified = true; // decodeColdCopy checked every stored and raw CRC32
    seg.coldIds = undefined;
    await fsp.rm(this.stubPath(seg), { force: true });
    this.#ctx.tierStats.rehydrated(down.ms);
    this.#ctx.tierStats.migrated('cold->warm', down.rawBytes, down.bytes);
  }

  /**
   * Read-only: a verified copy of a cold segment in the scratch directory, mapped, then unlinked
   * (the mapping keeps it until the view goes); the manifest and the segment's tier stay as they are.
   */
  async #fetchToScratch(seg: SealedSegment, remote: NonNullable<SealedSegment['meta']['remote']>): Promise<void> {
    const dest = path.join(this.#ctx.tmpDir, `${seg.id}-${randomBytes(4).toString('hex')}.seg`);
    try {
      const down = await this.#ctx.cold.download(remote, dest, seg.meta.sections.map((x) => x.rawCrc));
      seg.view = this.map(seg, dest);
      seg.verified = true; // decodeColdCopy checked every stored and raw CRC32
      this.#ctx.tierStats.rehydrated(down.ms);
    } finally {
      await fsp.rm(dest, { force: true });
    }
  }
}
