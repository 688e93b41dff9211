// The segment registry of one collection: its committed manifest, the live sealed segments in seq
// order, and the id -> location map. The manifest commit is the only writer of the segment list:
// a version is made durable first, and only then is the in-memory list switched, in one
// synchronous step with whatever readers must see alongside it (ManifestChange.applied).

import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { StratavecError } from '../format/errors.js';
import { loadLatestManifest, writeManifest, encodeManifest, manifestFileName, type CollectionManifest } from '../format/manifest.js';
import { fsyncDir } from '../format/fsutil.js';
import type { WriterFence } from '../tiers/writer-fence.js';
import type { Metric, StringTable } from '../format/segment.js';
import { SealedSegment } from '../tiers/sealed-segment.js';
import type { ManifestChange, SegmentCatalog } from '../tiers/segment-catalog.js';
import type { GrowingSegment } from './growing.js';

/** Where an id's live record is: a row of a growing or a sealed segment. */
export interface Location {
  seg: GrowingSegment | SealedSegment;
  row: number;
}

/** Where a writer's manifest versions go besides the local directory (the shared bucket). */
export interface ManifestRemote {
  fence: WriterFence;
  /** The object key of version `version` of this collection. */
  key(version: number): string;
}

/** Commits that find their version number taken (outcome-lost commits of our own, an older
 *  writer's unacknowledged version) move on to the next number at most this many times. */
const TAKEN_ROUNDS = 8;

export interface ManifestCheck {
  collection: string;
  version: number;
  status: 'ok' | 'corrupt' | 'repaired';
  detail?: string;
}

export class SegmentRegistry implements SegmentCatalog {
  readonly name: string;
  readonly dir: string;
  readonly dimension: number;
  readonly metric: Metric;
  #manifest: CollectionManifest;
  readonly #sealed = new Map<string, SealedSegment>(); // insertion order = seq order
  readonly #locations = new Map<string, Location>();
  #nextSeq: number;
  #commitChain: Promise<unknown> = Promise.resolve();
  #closed = false;
  readonly #remote: ManifestRemote | undefined;
  /** The highest version number known to be taken in the bucket (commits go above it). */
  #versionFloor: number;

  private constructor(dir: string, manifest: CollectionManifest, remote: ManifestRemote | undefined) {
    this.#remote = remote;
    this.#versionFloor = manifest.version;
    this.dir = dir;
    this.name = manifest.collection;
    this.dimension = manifest.dimension;
    this.metric = manifest.metric;
    this.#manifest = manifest;
    this.#nextSeq = manifest.nextSegmentSeq;
    for (const meta of manifest.segments) this.#sealed.set(meta.id, new SealedSegment(meta));
  }

  static manifestDir(dir: string): string {
    return path.join(dir, 'manifest');
  }

  /** Writes the directory of a new collection; the caller renames it into place. */
  static async initialize(dir: string, manifest: CollectionManifest): Promise<void> {
    await fsp.mkdir(path.join(dir, 'segments'), { recursive: true });
    await fsp.mkdir(path.join(dir, 'wal'), { recursive: true });
    await fsp.mkdir(SegmentRegistry.manifestDir(dir), { recursive: true });
    await writeManifest(SegmentRegistry.manifestDir(dir), manifest);
  }

  /** The registry as the newest valid manifest on disk has it (segments not yet attached). */
  static async load(dir: string, remote?: ManifestRemote): Promise<SegmentRegistry> {
    const manifest = await loadLatestManifest(SegmentRegistry.manifestDir(dir));
    if (!manifest) throw new StratavecError('ERR_MANIFEST_CORRUPT', `collection at ${path.basename(dir)} has no manifest`);
    return new SegmentRegistry(dir, manifest, remote);
  }

  /** The bucket holds versions up to `version` (open found it ahead): commit above it. */
  raiseVersionFloor(version: number): void {
    this.#versionFloor = Math.max(this.#versionFloor, version);
  }

  get manifest(): Readonly<CollectionManifest> {
    return this.#manifest;
  }

  get closed(): boolean {
    return this.#closed;
  }

  markClosed(): void {
    this.#closed = true;
  }

  checkOpen(): void {
    if (this.#closed) throw new StratavecError('ERR_DATABASE_CLOSED', `collection ${this.name} is closed`);
  }

  // ---- segments -----------------------------------------------------------------------------

  has(id: string): boolean {
    return this.#sealed.has(id);
  }

  require(id: string): SealedSegment {
    const seg = this.#sealed.get(id);
    if (!seg) throw new StratavecError('ERR_SEGMENT_NOT_FOUND', `segment ${id} does not exist in collection ${this.name}`);
    return seg;
  }

  list(): SealedSegment[] {
    return [...this.#sealed.values()];
  }

  get size(): number {
    return this.#sealed.size;
  }

  allocateSeq(): number {
    return this.#nextSeq++;
  }

  /**
   * Commits the segment list as the next manifest version, with `added` appended, `replace`
   * substituted for the entry of the same id and `removed` left out; `walSeq` defaults to the
   * current one. Versions are written one at a time, in call order. The in-memory list and
   * `meta` change only after the version is durable, together with `applied`.
   */
  commit(change: ManifestChange): Promise<void> {
    const run = async () => {
      this.#remote?.fence.check();
      change.prepare?.();
      const segs = [...this.#sealed.values()].filter((s) => !change.removed?.has(s.id));
      if (change.added) segs.push(...change.added);
      const base: CollectionManifest = {
        ...this.#manifest,
        version: Math.max(this.#manifest.version, this.#versionFloor) + 1,
        nextSegmentSeq: this.#nextSeq,
        walSeq: change.walSeq ?? this.#manifest.walSeq,
        ...(change.clustering ? { clustering: change.clustering } : {}),
        ...(change.indexes ? { indexes: change.indexes } : {}),
        segments: segs.map((s) => ({ ...(change.replace?.id === s.id ? change.replace : s.meta), deleted: s.deletedRows() })),
      };
      const next = await this.#writeVersion(base);
      this.#manifest = next;
      if (change.replace) {
        const seg = this.#sealed.get(change.replace.id);
        if (seg) seg.meta = change.replace;
      }
      for (const id of change.removed ?? []) this.#sealed.delete(id);
      for (const seg of change.added ?? []) this.#sealed.set(seg.id, seg);
      change.applied?.();
    };
    const p = this.#commitChain.then(run, run);
    this.#commitChain = p.catch(() => undefined);
    return p;
  }

  /**
   * A read replica's step to the writer's version `remote` (engine/replica.ts): it is written as
   * the next local version (local copies kept, see followedManifest), then, in one synchronous step,
   * the segment list becomes `remote`'s: kept segments take their new entry and new tombstones,
   * `added` (attached beforehand) join, the rest leave; `applied` runs in the same step. Rows that
   * died and segments that left are taken out of the id map before new segments are indexed, so
   * no reader sees an id twice or an upserted id missing.
   */
  follow(remote: CollectionManifest, added: SealedSegment[], idsOf: (seg: SealedSegment) => StringTable | undefined): Promise<SealedSegment[]> {
    const run = async () => {
      const next = followedManifest(this.#manifest, remote);
      const versioned = { ...next, version: this.#manifest.version + 1, followedVersion: remote.version };
      await writeManifest(SegmentRegistry.manifestDir(this.dir), versioned);
      const fresh = new Map(added.map((s) => [s.id, s]));
      const keep = new Set(next.segments.map((m) => m.id));
      const left = [...this.#sealed.values()].filter((s) => !keep.has(s.id));
      const forget = (seg: SealedSegment, row: number, ids: StringTable | undefined) => {
        const id = ids?.get(row);
        if (id === undefined || id === null) return;
        const loc = this.#locations.get(id);
        if (loc && loc.seg === seg && loc.row === row) this.#locations.delete(id);
      };
      for (const seg of left) {
        const ids = idsOf(seg);
        for (let r = 0; r < seg.meta.records; r++) if (seg.tomb[r] === 0) forget(seg, r, ids);
      }
      const before = new Map(this.#sealed);
      for (const meta of next.segments) {
        const seg = before.get(meta.id);
        if (!seg) continue;
        const ids = idsOf(seg);
        for (const r of meta.deleted) {
          if (seg.tomb[r] === 0) forget(seg, r, ids);
          seg.kill(r);
        }
        seg.meta = meta;
      }
      this.#manifest = versioned;
      this.#nextSeq = next.nextSegmentSeq;
      this.#sealed.clear();
      for (const meta of next.segments) {
        const seg = before.get(meta.id) ?? fresh.get(meta.id);
        if (seg) this.#sealed.set(meta.id, seg);
      }
      for (const seg of added) {
        const ids = idsOf(seg);
        if (ids && !seg.error) this.index(seg, ids);
      }
      return left;
    };
    const p = this.#commitChain.then(run, run);
    this.#commitChain = p.catch(() => undefined);
    return p;
  }

  /**
   * Makes `m` durable: the local file, then (for a writer on a shared bucket) the create-only
   * remote version, which is where fencing happens. A version the bucket refuses is removed
   * locally again, so that the local newest never runs ahead of what was acknowledged; a taken
   * number moves the commit to the next one.
   */
  async #writeVersion(m: CollectionManifest): Promise<CollectionManifest> {
    const mdir = SegmentRegistry.manifestDir(this.dir);
    if (!this.#remote) {
      await writeManifest(mdir, m);
      return m;
    }
    const { fence } = this.#remote;
    let next: CollectionManifest = { ...m, writer: fence.epoch };
    for (let round = 0; ; round++) {
      await writeManifest(mdir, next);
      let outcome: 'ok' | 'taken';
      try {
        outcome = await fence.publish(this.#remote.key(next.version), encodeManifest(next));
      } catch (err) {
        await this.#unwrite(next.version);
        throw err;
      }
      if (outcome === 'ok') {
        this.#versionFloor = next.version;
        return next;
      }
      await this.#unwrite(next.version);
      if (round + 1 >= TAKEN_ROUNDS) {
        throw new StratavecError('ERR_IO', `collection ${this.name}: manifest versions up to ${next.version} were all taken in the bucket`);
      }
      next = { ...next, version: next.version + 1 };
    }
  }

  async #unwrite(version: number): Promise<void> {
    const mdir = SegmentRegistry.manifestDir(this.dir);
    // If this fails the version stays on disk unacknowledged; open reconciles it with the bucket.
    await fsp.rm(path.join(mdir, manifestFileName(version)), { force: true }).catch(() => undefined);
    await fsyncDir(mdir).catch(() => undefined);
  }

  /**
   * Checks the newest manifest file on disk against the one in memory (the authority while the
   * collection is open); with `repair`, a bad or missing file is replaced by writing the
   * in-memory version again as the next version.
   */
  async verifyManifest(repair: boolean): Promise<ManifestCheck> {
    const want = encodeManifest(this.#manifest);
    let detail: string | undefined;
    try {
      const m = await loadLatestManifest(SegmentRegistry.manifestDir(this.dir));
      if (!m) detail = 'no manifest file';
      else if (!encodeManifest(m).equals(want)) detail = `newest file is version ${m.version}, differs from the one in use (v${this.#manifest.version})`;
    } catch (err) {
      if (!(err instanceof StratavecError)) throw err;
      detail = err.message;
    }
    const version = this.#manifest.version;
    if (detail === undefined) return { collection: this.name, version, status: 'ok' };
    if (!repair) return { collection: this.name, version, status: 'corrupt', detail };
    await this.commit({});
    return { collection: this.name, version: this.#manifest.version, status: 'repaired', detail };
  }

  // ---- the id -> location map -----------------------------------------------------------

  get count(): number {
    return this.#locations.size;
  }

  locate(id: string): Location | undefined {
    return this.#locations.get(id);
  }

  /** `id` now lives at (seg, row); its previous record, if any, is killed. */
  place(id: string, seg: GrowingSegment, row: number): void {
    this.kill(id);
    this.#locations.set(id, { seg, row });
  }

  /** Kills the live record of `id`, if any. */
  kill(id: string): void {
    const loc = this.#locations.get(id);
    if (!loc) return;
    loc.seg.kill(loc.row);
    this.#locations.delete(id);
  }

  relocate(id: string, from: object, fromRow: number, seg: SealedSegment, row: number): void {
    const loc = this.#locations.get(id);
    if (loc && loc.seg === from && loc.row === fromRow) this.#locations.set(id, { seg, row });
  }

  /**
   * Puts a segment's live rows into the id -> location map. At open the manifest guarantees an id
   * is live in one segment at most; a segment indexed later (revived after it was unreadable) may
   * hold ids written again since, and those newer records win.
   */
  index(seg: SealedSegment, ids: StringTable): void {
    for (let r = 0; r < seg.meta.records; r++) {
      if (seg.tomb[r] !== 0) continue;
      const id = ids.get(r) ?? '';
      if (this.#locations.has(id)) seg.kill(r);
      else this.#locations.set(id, { seg, row: r });
    }
    seg.indexed = true;
  }
}

/**
 * What a read replica records locally for the writer's version `remote`: the writer's segment
 * list, tombstones and clustering, with the replica's own copies: a segment it holds locally stays
 * warm with its local copy, every other one is cold (its remote copy). Pins are the writer's
 * business; a replica's tiers are its own cache.
 */
export function followedManifest(local: CollectionManifest | undefined, remote: CollectionManifest): CollectionManifest {
  const mine = new Map((local?.segments ?? []).map((s) => [s.id, s]));
  return {
    ...remote,
    segments: remote.segments.map((s) => {
      const { local: _writerCopy, pinned: _pin, ...rest } = s;
      const held = mine.get(s.id);
      return held?.tier === 'warm' && held.local ? { ...rest, tier: 'warm' as const, local: held.local } : { ...rest, tier: 'cold' as const };
    }),
  };
}
