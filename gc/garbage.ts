// Garbage collection across the database: scan for what no current manifest references (local
// files, remote objects, incomplete uploads), mark it, and delete it once it has stayed garbage
// for the grace period, is not leased and is still unreferenced when checked again right before
// the delete (MarkBook in collector.ts holds the two-phase rule). It never deletes what a
// collection's reference set names, and never touches a path or key outside our layout.

import { promises as fsp, type Stats } from 'node:fs';
import * as path from 'node:path';
import { StratavecError } from '../format/errors.js';
import { TEMP_PREFIX } from '../format/fsutil.js';
import { remoteLocation } from '../tiers/leases.js';
import type { ObjectInfo } from '../tiers/object-store.js';
import type { TierContext } from '../tiers/segment-catalog.js';
import { MarkBook, type GarbageItem, type GcEntry } from './collector.js';
import type { GcSubject } from './references.js';

export interface GcReport {
  dryRun: boolean;
  graceMs: number;
  entries: GcEntry[];
  deleted: number;
  bytesFreed: number;
  ms: number;
  /** Set when the object store could not be listed: only local garbage was collected. */
  remoteError?: string;
}

/** Remote manifest versions kept per collection: readers on other machines may be on the previous one. */
const KEEP_REMOTE_MANIFESTS = 2;
const MANIFEST_KEY_RE = /^(\d{12})\.manifest$/;
/** A temp file younger than this may be mid-write whatever the grace period says (even 0). */
const MIN_TEMP_AGE_MS = 10 * 60_000;

export interface GarbageCollectorDeps {
  /** The database directory (trash/, gc-marks.json, top-level temp files). */
  dir: string;
  ctx: TierContext;
  graceMs: () => number;
  subjects: () => ReadonlyMap<string, GcSubject>;
}

export class GarbageCollector {
  readonly #dir: string;
  readonly #ctx: TierContext;
  readonly #graceMs: () => number;
  readonly #cores: () => ReadonlyMap<string, GcSubject>;
  #marks: Promise<MarkBook> | undefined;
  #gcChain: Promise<unknown> = Promise.resolve();

  constructor(deps: GarbageCollectorDeps) {
    this.#dir = deps.dir;
    this.#ctx = deps.ctx;
    this.#graceMs = deps.graceMs;
    this.#cores = deps.subjects;
  }

  /** One GC pass: scan, mark what is new, delete what outlived the grace period. Serialised. */
  gc(opts: { dryRun?: boolean } = {}): Promise<GcReport> {
    if (typeof opts !== 'object' || opts === null) throw new TypeError('gc expects an options object');
    const run = () => this.#gc(opts.dryRun === true);
    const p = this.#gcChain.then(run, run);
    this.#gcChain = p.catch(() => undefined);
    return p;
  }

  async #gc(dryRun: boolean): Promise<GcReport> {
    const t0 = performance.now();
    const graceMs = this.#graceMs();
    this.#marks ??= MarkBook.load(path.join(this.#dir, 'gc-marks.json'));
    const marks = await this.#marks;
    const { items, remoteError } = await this.scan();
    const { leases } = this.#ctx;
    const entries = await marks.sweep(items, {
      now: this.#ctx.options.clock.now(),
      graceMs,
      dryRun,
      isLeased: (item) => leases.has(item.location) || (item.kind === 'upload' && leases.has(remoteLocation(uploadKey(item.location)))),
      stillGarbage: (item) => this.#stillGarbage(item),
      remove: (item) => this.#remove(item),
      unscanned: (loc) => remoteError !== undefined && (loc.startsWith('remote:') || loc.startsWith('upload:')),
    });
    if (!dryRun) await marks.save();
    const deleted = entries.filter((e) => e.action === 'deleted');
    return {
      dryRun, graceMs, entries, deleted: deleted.length,
      bytesFreed: deleted.reduce((n, e) => n + e.bytes, 0), ms: performance.now() - t0,
      ...(remoteError ? { remoteError } : {}),
    };
  }

  /** Everything local or remote that no current manifest references, with the reason (verify reports it too). */
  async scan(): Promise<{ items: GarbageItem[]; remoteError?: string }> {
    const items: GarbageItem[] = [];
    const cores = this.#cores();
    const colRoot = this.#ctx.warm.root;
    const wallNow = Date.now();
    const graceMs = this.#graceMs();
    const file = async (full: string, reason: GarbageItem['reason']) => {
      const st = await statOrUndefined(full);
      if (!st) return;
      // A temp file has no lease (its writer is mid-recipe); only one older than the grace
      // period by the wall clock can be a crash's leftover.
      if (reason === 'temp-file' && wallNow - st.mtimeMs < Math.max(graceMs, MIN_TEMP_AGE_MS)) return;
      items.push({ kind: 'file', location: full, bytes: st.isDirectory() ? 0 : st.size, reason, identity: fileIdentity(st) });
    };
    for (const name of await readdirOrEmpty(colRoot)) {
      const full = path.join(colRoot, name);
      if (name.startsWith(TEMP_PREFIX)) {
        await file(full, 'temp-file');
        continue;
      }
      const core = cores.get(name);
      if (!core) continue; // being created right now, or not ours: never touched
      const refs = core.references();
      for (const f of await readdirOrEmpty(path.join(full, 'segments'))) {
        const p = path.join(full, 'segments', f);
        if (f.startsWith(TEMP_PREFIX)) await file(p, 'temp-file');
        else if (!refs.local.has(p)) await file(p, refs.replaced.has(p) ? 'replaced-segment' : 'unreferenced-file');
      }
      for (const sub of ['', 'manifest', 'wal']) { // '': the recent-queries file's own temp files
        for (const f of await readdirOrEmpty(path.join(full, sub))) if (f.startsWith(TEMP_PREFIX)) await file(path.join(full, sub, f), 'temp-file');
      }
      for (const f of await readdirOrEmpty(path.join(full, 'quarantine'))) await file(path.join(full, 'quarantine', f), 'quarantined');
    }
    for (const f of await readdirOrEmpty(path.join(this.#dir, 'trash'))) await file(path.join(this.#dir, 'trash', f), 'dropped-collection');
    for (const f of await readdirOrEmpty(this.#dir)) if (f.startsWith(TEMP_PREFIX)) await file(path.join(this.#dir, f), 'temp-file'); // e.g. a marks save cut short

    try {
      await this.#scanRemote(items, cores);
    } catch (err) {
      // An unreachable store must not stop local collection (nor lose a verify's findings).
      if (!(err instanceof StratavecError)) throw err;
      return { items, remoteError: err.message };
    }
    return { items };
  }

  async #scanRemote(items: GarbageItem[], cores: ReadonlyMap<string, GcSubject>): Promise<void> {
    const store = this.#ctx.cold.store;
    const object = (o: ObjectInfo, reason: GarbageItem['reason']) => items.push({
      kind: 'object', location: remoteLocation(o.key), bytes: o.size, reason, identity: objectIdentity(o),
    });
    const refs = new Map<string, ReturnType<GcSubject['references']>>(); // one snapshot per collection per scan
    const refsOf = (core: GcSubject) => refs.get(core.name) ?? refs.set(core.name, core.references()).get(core.name)!;
    const manifests = new Map<GcSubject, { info: ObjectInfo; version: number }[]>();
    for (const o of await store.list('')) {
      const [coll, kind, rest, ...extra] = o.key.split('/');
      if (coll === undefined || rest === undefined || extra.length > 0) continue; // not our layout: left alone
      const m = kind === 'manifest' ? MANIFEST_KEY_RE.exec(rest) : null;
      if (kind !== 'segments' && !m) continue;
      const core = cores.get(coll);
      if (!core) {
        object(o, 'dropped-collection');
      } else if (m) {
        manifests.set(core, [...(manifests.get(core) ?? []), { info: o, version: Number(m[1]) }]);
      } else if (!refsOf(core).remote.has(o.key)) {
        object(o, refsOf(core).replaced.has(remoteLocation(o.key)) ? 'replaced-segment' : 'unreferenced-object');
      }
    }
    for (const [core, list] of manifests) {
      // A version above the collection's own is a dropped collection's of the same name (left
      // behind when the store was unreachable): never count it among the ones kept.
      const current = refsOf(core).manifestVersion;
      for (const m of list) if (m.version > current) object(m.info, 'dropped-collection');
      const ours = list.filter((m) => m.version <= current).sort((a, b) => b.version - a.version);
      for (const m of ours.slice(KEEP_REMOTE_MANIFESTS)) object(m.info, 'old-manifest');
    }
    for (const u of await store.listIncompleteUploads('')) {
      items.push({ kind: 'upload', location: `upload:${u.key}#${u.uploadId}`, bytes: 0, reason: 'incomplete-upload', identity: u.uploadId });
    }
  }

  /**
   * Re-checked right before a delete: still the same file or object that was marked (a new one
   * under the same name gets its own grace period), and still unreferenced.
   */
  async #stillGarbage(item: GarbageItem): Promise<boolean> {
    if (item.kind === 'file') {
      const st = await statOrUndefined(item.location);
      if (!st || fileIdentity(st) !== item.identity) return false;
    } else if (item.kind === 'object') {
      const info = await this.#ctx.cold.store.head(item.location.slice('remote:'.length));
      if (!info || objectIdentity(info) !== item.identity) return false;
    }
    return this.#unreferenced(item);
  }

  #unreferenced(item: GarbageItem): boolean {
    const cores = this.#cores();
    if (item.kind === 'file') {
      const rel = path.relative(this.#ctx.warm.root, item.location).split(path.sep);
      const core = rel.length === 3 && rel[1] === 'segments' ? cores.get(rel[0]!) : undefined;
      return !core?.references().local.has(item.location);
    }
    if (item.kind === 'object') {
      const key = item.location.slice('remote:'.length);
      const core = cores.get(key.split('/')[0]!);
      if (item.kind === 'object' && key.split('/')[1] === 'manifest') {
        // old-manifest, or a dropped namesake's newer version: still not one this collection
        // will write again unless its own version has caught up with it.
        const v = Number(MANIFEST_KEY_RE.exec(key.split('/')[2] ?? '')?.[1]);
        return !core || item.reason === 'old-manifest' || v > core.references().manifestVersion;
      }
      if (item.reason === 'dropped-collection') return !core;
      return !core?.references().remote.has(key);
    }
    return true; // an incomplete upload is never referenced; an in-flight one holds a lease
  }

  async #remove(item: GarbageItem): Promise<void> {
    // A superseded writer's references are stale: what looks unreferenced to it may be the newer
    // writer's. So every remote delete first asks the bucket whether we are still the writer.
    if (item.kind !== 'file') await this.#ctx.fence?.assertCurrent();
    if (item.kind === 'file') {
      await fsp.rm(item.location, { recursive: true, force: true });
    } else if (item.kind === 'object') {
      await this.#ctx.cold.store.delete(item.location.slice('remote:'.length));
    } else {
      const key = uploadKey(item.location);
      await this.#ctx.cold.store.abortUpload(key, item.location.slice(item.location.lastIndexOf('#') + 1));
    }
    for (const core of this.#cores().values()) core.forgetReplaced(item.location);
  }

  /** Waits for the pass in progress. */
  async idle(): Promise<void> {
    await this.#gcChain;
  }
}

function fileIdentity(st: Stats): string {
  return `${st.size}:${st.mtimeMs}`;
}

function objectIdentity(o: { size: number; etag?: string; lastModified: number }): string {
  return `${o.size}:${o.etag?.replaceAll('"', '') ?? o.lastModified}`;
}

function uploadKey(location: string): string {
  return location.slice('upload:'.length, location.lastIndexOf('#'));
}

async function readdirOrEmpty(dir: string): Promise<string[]> {
  try {
    return await fsp.readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

async function statOrUndefined(p: string): Promise<Stats | undefined> {
  try {
    return await fsp.stat(p);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}
