// Database-wide maintenance: verify (and repair) every copy of every segment, two-phase garbage
// collection, compaction, and the background loops that run them (a rate-limited scrub, GC and
// compaction on intervals). It finds work and decides; each collection does the per-segment part
// under its own locks (CollectionCore), CPU work runs in the pool, and gc/ holds the mark/sweep
// and planning rules.

import { promises as fsp, type Stats } from 'node:fs';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { StratavecError } from '../format/errors.js';
import { TEMP_PREFIX } from '../format/fsutil.js';
import { MarkBook, type GarbageItem, type GcEntry } from '../gc/collector.js';
import { remoteLocation } from '../gc/leases.js';
import type { ObjectInfo } from '../tiers/object-store.js';
import { planCompaction, type CompactionGroup } from '../gc/compaction.js';
import type { CollectionCore, CompactionResult, EngineContext, SegmentCheck } from './collection-core.js';

export interface VerifyOptions {
  /** Fix what can be fixed (see README "Verify and repair"). Default false: report only. */
  repair?: boolean;
  /** Also download and check every remote copy. Default true. */
  remote?: boolean;
  /** Only these collections (default: all). */
  collections?: string[];
  /** Read at most this many bytes per second (local plus remote); default unlimited. */
  bytesPerSecond?: number;
  onProgress?: (p: { done: number; total: number; segmentId: string }) => void;
}

export interface ManifestCheck {
  collection: string;
  version: number;
  status: 'ok' | 'corrupt' | 'repaired';
  detail?: string;
}

export interface VerifyReport {
  repair: boolean;
  segments: SegmentCheck[];
  manifests: ManifestCheck[];
  /** Files and objects no manifest references (what GC will collect). */
  unreferenced: GarbageItem[];
  summary: { segments: number; ok: number; repaired: number; damaged: number; unavailable: number; copies: number; bytesRead: number };
  /** False when the database started closing before every segment was checked. */
  complete: boolean;
  /** Set when the object store could not be listed: remote orphans were not looked for. */
  remoteError?: string;
  ms: number;
}

export interface GcOptions {
  /** Report what would be marked and deleted; change nothing. */
  dryRun?: boolean;
}

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

export interface CompactOptions {
  collections?: string[];
  /** Plan only. */
  dryRun?: boolean;
  smallFraction?: number;
  deletedRatio?: number;
}

export interface CompactReport {
  dryRun: boolean;
  plans: { collection: string; groups: CompactionGroup[] }[];
  results: CompactionResult[];
  ms: number;
}

/** Remote manifest versions kept per collection: readers on other machines may be on the previous one. */
const KEEP_REMOTE_MANIFESTS = 2;
const MANIFEST_KEY_RE = /^(\d{12})\.manifest$/;
/** A temp file younger than this may be mid-write whatever the grace period says (even 0). */
const MIN_TEMP_AGE_MS = 10 * 60_000;

interface LoopStats {
  runs: number;
  lastRunAt: number | undefined;
  lastError: string | undefined;
}

export interface MaintenanceDeps {
  dir: string;
  ctx: EngineContext;
  cores: () => ReadonlyMap<string, CollectionCore>;
}

export class Maintenance {
  readonly #dir: string;
  readonly #ctx: EngineContext;
  readonly #cores: () => ReadonlyMap<string, CollectionCore>;
  #marks: Promise<MarkBook> | undefined;
  #gcChain: Promise<unknown> = Promise.resolve();
  #compactChain: Promise<unknown> = Promise.resolve();
  #stopping = false;
  readonly #timers = new Set<NodeJS.Timeout>();
  readonly #running = new Set<Promise<unknown>>();
  readonly #stats = {
    gc: { runs: 0, lastRunAt: undefined, lastError: undefined, deleted: 0, bytesFreed: 0 } as LoopStats & { deleted: number; bytesFreed: number },
    scrub: { runs: 0, lastRunAt: undefined, lastError: undefined, problems: 0, repaired: 0 } as LoopStats & { problems: number; repaired: number },
    compaction: { runs: 0, lastRunAt: undefined, lastError: undefined, merged: 0, droppedRows: 0 } as LoopStats & { merged: number; droppedRows: number },
  };

  constructor(deps: MaintenanceDeps) {
    this.#dir = deps.dir;
    this.#ctx = deps.ctx;
    this.#cores = deps.cores;
  }

  #selected(names: string[] | undefined): CollectionCore[] {
    const cores = this.#cores();
    if (names === undefined) return [...cores.values()];
    if (!Array.isArray(names)) throw new TypeError('collections must be an array of names');
    return names.map((n) => {
      const core = cores.get(n);
      if (!core) throw new StratavecError('ERR_COLLECTION_NOT_FOUND', `collection ${String(n)} does not exist`);
      return core;
    });
  }

  // ---- verify -----------------------------------------------------------------------------

  async verify(opts: VerifyOptions = {}): Promise<VerifyReport> {
    if (typeof opts !== 'object' || opts === null) throw new TypeError('verify expects an options object');
    const repair = opts.repair === true;
    const remote = opts.remote !== false;
    const rate = opts.bytesPerSecond;
    if (rate !== undefined && !(typeof rate === 'number' && rate > 0)) throw new StratavecError('ERR_INVALID_ARGUMENT', 'bytesPerSecond must be a positive number');
    const t0 = performance.now();
    const cores = this.#selected(opts.collections);
    const work = cores.flatMap((core) => core.segments().map((s) => ({ core, id: s.id })));
    const report: VerifyReport = {
      repair, segments: [], manifests: [], unreferenced: [], complete: true, ms: 0,
      summary: { segments: 0, ok: 0, repaired: 0, damaged: 0, unavailable: 0, copies: 0, bytesRead: 0 },
    };
    for (const core of cores) report.manifests.push(await core.verifyManifest(repair));
    let done = 0;
    for (const { core, id } of work) {
      if (this.#stopping) {
        report.complete = false;
        break;
      }
      const check = await core.verifySegment(id, { repair, remote });
      done++;
      opts.onProgress?.({ done, total: work.length, segmentId: id });
      if (check.status === 'gone') continue;
      report.segments.push(check);
      const s = report.summary;
      s.segments++;
      s[check.status]++;
      s.copies += check.copies.length;
      s.bytesRead += check.copies.reduce((n, c) => n + c.bytes, 0);
      if (rate !== undefined) {
        // Pace to the budget: sleep until the bytes read so far fit in the time spent.
        const ahead = (s.bytesRead / rate) * 1000 - (performance.now() - t0);
        if (ahead > 0) await sleep(ahead, undefined, { ref: false });
      }
    }
    const scan = await this.#scanGarbage(); // database-wide, whatever `collections` says
    report.unreferenced = scan.items;
    if (scan.remoteError) report.remoteError = scan.remoteError;
    report.ms = performance.now() - t0;
    return report;
  }

  // ---- garbage collection -----------------------------------------------------------------

  /** One GC pass: scan, mark what is new, delete what outlived the grace period. Serialised. */
  gc(opts: GcOptions = {}): Promise<GcReport> {
    if (typeof opts !== 'object' || opts === null) throw new TypeError('gc expects an options object');
    const run = () => this.#gc(opts.dryRun === true);
    const p = this.#gcChain.then(run, run);
    this.#gcChain = p.catch(() => undefined);
    return p;
  }

  async #gc(dryRun: boolean): Promise<GcReport> {
    const t0 = performance.now();
    const graceMs = this.#ctx.options.maintenance.gcGraceMs;
    this.#marks ??= MarkBook.load(path.join(this.#dir, 'gc-marks.json'));
    const marks = await this.#marks;
    const { items, remoteError } = await this.#scanGarbage();
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

  /** Everything local or remote that no current manifest references, with the reason. */
  async #scanGarbage(): Promise<{ items: GarbageItem[]; remoteError?: string }> {
    const items: GarbageItem[] = [];
    const cores = this.#cores();
    const colRoot = this.#ctx.warm.root;
    const wallNow = Date.now();
    const graceMs = this.#ctx.options.maintenance.gcGraceMs;
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
      for (const sub of ['manifest', 'wal']) {
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

  async #scanRemote(items: GarbageItem[], cores: ReadonlyMap<string, CollectionCore>): Promise<void> {
    const store = this.#ctx.cold.store;
    const object = (o: ObjectInfo, reason: GarbageItem['reason']) => items.push({
      kind: 'object', location: remoteLocation(o.key), bytes: o.size, reason, identity: objectIdentity(o),
    });
    const refs = new Map<string, ReturnType<CollectionCore['references']>>(); // one snapshot per collection per scan
    const refsOf = (core: CollectionCore) => refs.get(core.name) ?? refs.set(core.name, core.references()).get(core.name)!;
    const manifests = new Map<CollectionCore, { info: ObjectInfo; version: number }[]>();
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

  // ---- compaction ---------------------------------------------------------------------------

  /** Plans and runs compaction; serialised, so two callers never plan the same groups. */
  compact(opts: CompactOptions = {}): Promise<CompactReport> {
    if (typeof opts !== 'object' || opts === null) throw new TypeError('compact expects an options object');
    const run = () => this.#compact(opts);
    const p = this.#compactChain.then(run, run);
    this.#compactChain = p.catch(() => undefined);
    return p;
  }

  async #compact(opts: CompactOptions): Promise<CompactReport> {
    const t0 = performance.now();
    const report: CompactReport = { dryRun: opts.dryRun === true, plans: [], results: [], ms: 0 };
    for (const core of this.#selected(opts.collections)) {
      const groups = planCompaction(core.compactionCandidates(), {
        targetRecords: this.#ctx.options.segmentMaxRecords,
        ...(opts.smallFraction === undefined ? {} : { smallFraction: opts.smallFraction }),
        ...(opts.deletedRatio === undefined ? {} : { deletedRatio: opts.deletedRatio }),
      });
      report.plans.push({ collection: core.name, groups });
      if (report.dryRun) continue;
      for (const g of groups) {
        if (this.#stopping) break;
        report.results.push(await core.compact(g.sources));
      }
    }
    report.ms = performance.now() - t0;
    return report;
  }

  // ---- background loops ---------------------------------------------------------------------

  /** Starts the loops whose interval is not 0. Each run waits for the previous one. */
  start(): void {
    const m = this.#ctx.options.maintenance;
    this.#loop(m.gcIntervalMs, this.#stats.gc, async () => {
      const r = await this.gc();
      this.#stats.gc.deleted += r.deleted;
      this.#stats.gc.bytesFreed += r.bytesFreed;
    });
    this.#loop(m.scrubIntervalMs, this.#stats.scrub, async () => {
      const r = await this.verify({ repair: true, bytesPerSecond: m.scrubBytesPerSecond });
      this.#stats.scrub.problems += r.summary.repaired + r.summary.damaged + r.summary.unavailable;
      this.#stats.scrub.repaired += r.summary.repaired;
    });
    this.#loop(m.compactIntervalMs, this.#stats.compaction, async () => {
      const r = await this.compact();
      this.#stats.compaction.merged += r.results.reduce((n, x) => n + x.sources.length, 0);
      this.#stats.compaction.droppedRows += r.results.reduce((n, x) => n + x.droppedRows, 0);
    });
  }

  #loop(intervalMs: number, stats: LoopStats, body: () => Promise<void>): void {
    if (intervalMs <= 0) return;
    const schedule = () => {
      if (this.#stopping) return;
      const t = setTimeout(() => {
        this.#timers.delete(t);
        const run = body().then(
          () => {
            stats.lastError = undefined;
          },
          (err: unknown) => {
            stats.lastError = err instanceof Error ? err.message : String(err);
          },
        ).finally(() => {
          stats.runs++;
          stats.lastRunAt = this.#ctx.options.clock.now();
          this.#running.delete(run);
          schedule();
        });
        this.#running.add(run);
      }, intervalMs);
      t.unref();
      this.#timers.add(t);
    };
    schedule();
  }

  /** Stops the loops; a verify or compaction in progress stops between segments. */
  async stop(): Promise<void> {
    this.#stopping = true;
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    await Promise.all([...this.#running]);
    await this.#gcChain;
    await this.#compactChain;
  }

  stats() {
    const s = this.#stats;
    return { gc: { ...s.gc }, scrub: { ...s.scrub }, compaction: { ...s.compaction } };
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
