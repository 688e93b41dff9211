// A read replica: a bucket prefix opened read-only on any machine. It follows the writer's
// manifest versions (polling, plus refresh()), serves searches and gets from its own hot and warm
// caches in `cacheDir` (filled from the bucket on use, like any cold segment), and never writes to
// the bucket: its store refuses every write (tiers/read-only-store.ts). It owns the follow loop
// and the replica's staleness; what a collection is and how it is searched is CollectionCore's.

import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { StratavecError, ioError } from '../format/errors.js';
import { TEMP_PREFIX, fsyncDir, mkdirDurable } from '../format/fsutil.js';
import { validateCollectionName } from '../format/names.js';
import type { CollectionManifest } from '../format/manifest.js';
import { openObjectStore } from '../tiers/open-object-store.js';
import { ReadOnlyObjectStore } from '../tiers/read-only-store.js';
import { CollectionCore, tierTotals, type SegmentInfo } from './collection-core.js';
import { Collection, type SearchOptions } from './collection.js';
import { createEngineContext, type EngineContext } from './context.js';
import { DirectoryLock } from './lock.js';
import { checkKnownKeys, fillOptions, positiveInt, type DatabaseOptions, type FilledOptions } from './options.js';
import { Tiering } from './tiering.js';
import { readRemoteManifest, remoteManifestVersions, remoteVersionsOf } from './bucket.js';
import { SegmentRegistry, followedManifest } from './segment-registry.js';
import { residentMemory } from './resident-memory.js';
import type { ExplainResult, SearchHit, StoredRecord } from './read-path.js';

export interface ReplicaOptions extends Pick<DatabaseOptions,
  'hotBytes' | 'warmBytes' | 'workers' | 'workerNice' | 'taskTimeoutMs' | 'clock' | 'warmScanMaxRecords' | 'tiering' | 'objectStoreTuning' | 'compressionMinSavings'> {
  /** The writer's object store (required): the prefix to follow. */
  objectStore: NonNullable<DatabaseOptions['objectStore']>;
  /** How often to look for a newer manifest version of each collection (one HEAD each); 0 turns
   *  polling off (refresh() still works). Default 5 s. */
  refreshIntervalMs?: number;
}

const REPLICA_KEYS = ['objectStore', 'refreshIntervalMs', 'hotBytes', 'warmBytes', 'workers', 'workerNice', 'taskTimeoutMs', 'clock',
  'warmScanMaxRecords', 'tiering', 'objectStoreTuning', 'compressionMinSavings'];
const DEFAULT_REFRESH_MS = 5_000;
/** Every this many polls, one LIST of the prefix finds collections created or dropped since. */
const DISCOVER_EVERY = 12;

export interface ReplicaStats {
  /** Refresh passes that completed, and that failed (bucket unreachable, a torn or foreign version). */
  refreshes: number;
  refreshFailures: number;
  /** Clock time of the last completed refresh (0 before the first). */
  lastRefreshAt: number;
  /** How long since the replica last knew it was current: now - lastRefreshAt. */
  stalenessMs: number;
  lastError: string | undefined;
  /** Requests this replica made to the bucket, and bytes it received. */
  requests: ReturnType<ReadOnlyObjectStore['counts']>;
  /** The writer's manifest version each collection serves. */
  versions: Record<string, number>;
}

export class Replica {
  readonly dir: string;
  readonly options: Readonly<FilledOptions>;
  readonly refreshIntervalMs: number;
  readonly tiering: Tiering;
  readonly #lock: DirectoryLock;
  readonly #store: ReadOnlyObjectStore;
  readonly #ctx: EngineContext;
  readonly #cores = new Map<string, CollectionCore>();
  /** The writer's version each collection is at. */
  readonly #followed = new Map<string, number>();
  readonly #handles = new Map<string, ReplicaCollection>();
  #status: 'open' | 'closing' | 'closed' = 'open';
  #timer: NodeJS.Timeout | undefined;
  #polls = 0;
  #refreshing: Promise<void> | undefined;
  readonly #stats = { refreshes: 0, refreshFailures: 0, lastRefreshAt: 0, lastError: undefined as string | undefined };

  private constructor(dir: string, options: FilledOptions, refreshIntervalMs: number, lock: DirectoryLock, store: ReadOnlyObjectStore) {
    this.dir = dir;
    this.options = Object.freeze(options);
    this.refreshIntervalMs = refreshIntervalMs;
    this.#lock = lock;
    this.#store = store;
    // No writer fence: a replica never commits to the bucket (its local versions are its cache's).
    this.#ctx = createEngineContext(dir, options, store, undefined, () => this.tiering.nudge());
    this.tiering = new Tiering({ collections: () => this.#cores.values(), access: this.#ctx.access, options });
  }

  /**
   * Opens a replica of the bucket prefix `options.objectStore`, caching in `cacheDir` (created if
   * missing; one replica per directory). Collections the cache already holds are served from it;
   * then the bucket is read. If the bucket cannot be reached, the open still succeeds when the
   * cache holds collections (stale, as stats().replica says); otherwise it fails.
   */
  static async open(cacheDir: string, options: ReplicaOptions): Promise<Replica> {
    if (typeof cacheDir !== 'string' || cacheDir.length === 0) throw new TypeError('openReplica expects a cache directory path');
    if (typeof options !== 'object' || options === null) throw new TypeError('openReplica expects options { objectStore, ... }');
    checkKnownKeys('replica option', options, REPLICA_KEYS);
    if (options.objectStore === undefined) throw new StratavecError('ERR_INVALID_ARGUMENT', 'openReplica needs objectStore: the writer\'s bucket prefix');
    const { refreshIntervalMs, ...rest } = options;
    const every = refreshIntervalMs === undefined ? DEFAULT_REFRESH_MS : positiveInt('refreshIntervalMs', refreshIntervalMs, 0, 24 * 3600_000);
    const abs = path.resolve(cacheDir);
    // Nothing of the writer's maintenance runs here: GC, scrub and compaction are the writer's.
    const filled = fillOptions(abs, {
      ...rest, uploadOnSeal: false, statsIntervalMs: 0, recordConfig: false,
      maintenance: { gcIntervalMs: 0, scrubIntervalMs: 0, compactIntervalMs: 0 },
    });
    try {
      await fsp.mkdir(abs, { recursive: true });
    } catch (err) {
      throw ioError(err, `creating ${abs}`);
    }
    const lock = await DirectoryLock.acquire(abs);
    let store: ReadOnlyObjectStore | undefined;
    let replica: Replica | undefined;
    try {
      store = new ReadOnlyObjectStore(await openObjectStore(filled.objectStore, { ...filled.objectStoreTuning, clock: filled.clock }));
      replica = new Replica(abs, filled, every, lock, store);
      await replica.#loadCache();
      await replica.refresh().catch((err: unknown) => {
        if (replica!.#cores.size === 0 || !(err instanceof StratavecError) || err.code !== 'ERR_TIER_UNAVAILABLE') throw err;
      });
    } catch (err) {
      if (replica) await replica.#release();
      else {
        await store?.close();
        await lock.release();
      }
      throw err;
    }
    replica.tiering.start();
    if (every > 0) {
      replica.#timer = setInterval(() => void replica!.#poll(), every);
      replica.#timer.unref();
    }
    return replica;
  }

  /** The collections the cache held at open, as it last followed them. */
  async #loadCache(): Promise<void> {
    const colDir = path.join(this.dir, 'collections');
    await mkdirDurable(colDir);
    await fsp.rm(this.#ctx.tmpDir, { recursive: true, force: true });
    await fsp.mkdir(this.#ctx.tmpDir, { recursive: true });
    for (const name of await fsp.readdir(colDir)) {
      if (name.startsWith(TEMP_PREFIX)) {
        await fsp.rm(path.join(colDir, name), { recursive: true, force: true });
        continue;
      }
      const core = await CollectionCore.open(this.#ctx, path.join(colDir, validateCollectionName(name)));
      this.#cores.set(name, core);
      this.#followed.set(name, core.manifest.followedVersion ?? 0);
    }
  }

  get status(): 'open' | 'closing' | 'closed' {
    return this.#status;
  }

  #checkOpen(): void {
    if (this.#status !== 'open') throw new StratavecError('ERR_DATABASE_CLOSED', `replica ${this.dir} is ${this.#status}`);
  }

  /**
   * Brings every collection up to the writer's newest manifest version, and learns of collections
   * created or dropped since. One pass at a time: a call during a pass waits for it and then runs
   * its own. A failure leaves every collection on the version it served (still consistent).
   */
  refresh(): Promise<void> {
    this.#checkOpen();
    return this.#run(true);
  }

  #run(discover: boolean): Promise<void> {
    const prev = this.#refreshing ?? Promise.resolve();
    const run = prev.catch(() => undefined).then(() => this.#refreshOnce(discover));
    const tracked: Promise<void> = run.finally(() => {
      if (this.#refreshing === tracked) this.#refreshing = undefined;
    });
    this.#refreshing = tracked;
    return tracked;
  }

  #poll(): void {
    if (this.#status !== 'open' || this.#refreshing) return;
    const discover = ++this.#polls % DISCOVER_EVERY === 0;
    this.#run(discover).catch(() => undefined); // recorded in stats by #refreshOnce
  }

  async #refreshOnce(discover: boolean): Promise<void> {
    try {
      const moved = discover ? await this.#discover() : await this.#probe();
      for (const name of [...moved].sort()) {
        if (this.#status !== 'open') return;
        await this.#catchUp(name);
      }
      this.#stats.refreshes++;
      this.#stats.lastRefreshAt = this.options.clock.now();
      this.#stats.lastError = undefined;
    } catch (err) {
      this.#stats.refreshFailures++;
      this.#stats.lastError = (err as Error).message;
      throw err;
    }
  }

  /** One LIST of the prefix: collections dropped since are forgotten; returns those with newer versions. */
  async #discover(): Promise<string[]> {
    const newest = await remoteManifestVersions(this.#store);
    for (const name of [...this.#cores.keys()]) if (!newest.has(name)) await this.#forget(name);
    return [...newest].filter(([name, { version }]) => version > (this.#followed.get(name) ?? 0)).map(([name]) => name);
  }

  /** Collections with a version newer than the one served: one HEAD each. */
  async #probe(): Promise<string[]> {
    const out: string[] = [];
    for (const [name, version] of this.#followed) {
      if (await this.#store.head(this.#ctx.cold.manifestKey(name, version + 1))) out.push(name);
    }
    return out;
  }

  /**
   * Serves the newest version of `name` whose every segment has a copy in the bucket. A writer
   * commits a sealed segment before its upload lands (then commits again with the remote copy),
   * so the very newest version can list a segment the bucket does not hold yet: the replica stays
   * on the version before until the upload's version arrives.
   */
  async #catchUp(name: string): Promise<void> {
    const served = this.#followed.get(name) ?? 0;
    for (const { key, version } of await remoteVersionsOf(this.#store, name)) {
      if (version <= served) break;
      const remote = await readRemoteManifest(this.#store, key, version, name);
      if (remote.segments.some((s) => s.remote === undefined)) continue;
      await this.#follow(name, remote);
      return;
    }
  }

  async #follow(name: string, remote: CollectionManifest): Promise<void> {
    const core = this.#cores.get(name);
    if (core) await core.follow(remote);
    else this.#cores.set(name, await this.#adopt(name, remote));
    this.#followed.set(name, remote.version);
  }

  /** A collection new to this cache: its directory written aside from the bucket's version and renamed in. */
  async #adopt(name: string, remote: CollectionManifest): Promise<CollectionCore> {
    const colDir = path.join(this.dir, 'collections');
    const finalDir = path.join(colDir, name);
    const tmpDir = path.join(colDir, `${TEMP_PREFIX}${name}-${randomBytes(4).toString('hex')}`);
    try {
      await SegmentRegistry.initialize(tmpDir, { ...followedManifest(undefined, remote), version: 1, followedVersion: remote.version });
      await fsp.rm(finalDir, { recursive: true, force: true });
      await fsp.rename(tmpDir, finalDir);
      await fsyncDir(colDir);
    } catch (err) {
      await fsp.rm(tmpDir, { recursive: true, force: true });
      throw ioError(err, `caching collection ${name}`);
    }
    const core = await CollectionCore.open(this.#ctx, finalDir);
    const unreachable = core.unreachableCause();
    if (unreachable) {
      await core.close();
      await fsp.rm(finalDir, { recursive: true, force: true });
      throw unreachable;
    }
    return core;
  }

  /** The writer dropped `name`: its handles throw ERR_COLLECTION_NOT_FOUND, its cache goes. */
  async #forget(name: string): Promise<void> {
    const core = this.#cores.get(name)!;
    this.#cores.delete(name);
    this.#handles.delete(name);
    this.#followed.delete(name);
    for (const s of core.segments()) this.#ctx.access.forget(s.id);
    await core.close();
    await fsp.rm(core.dir, { recursive: true, force: true });
  }

  collection(name: string): ReplicaCollection {
    this.#checkOpen();
    validateCollectionName(name);
    const core = this.#cores.get(name);
    if (!core) throw new StratavecError('ERR_COLLECTION_NOT_FOUND', `collection ${name} does not exist in the bucket (as of the last refresh)`);
    let handle = this.#handles.get(name);
    if (!handle) {
      const check = () => {
        this.#checkOpen();
        if (this.#cores.get(name) !== core) throw new StratavecError('ERR_COLLECTION_NOT_FOUND', `collection ${name} was dropped by the writer`);
      };
      handle = new ReplicaCollection(new Collection(core, check), () => this.#run(true));
      this.#handles.set(name, handle);
    }
    return handle;
  }

  listCollections(): string[] {
    this.#checkOpen();
    return [...this.#cores.keys()].sort();
  }

  stats() {
    this.#checkOpen();
    const now = this.options.clock.now();
    const replica: ReplicaStats = {
      ...this.#stats,
      stalenessMs: this.#stats.lastRefreshAt === 0 ? Infinity : Math.max(0, now - this.#stats.lastRefreshAt),
      requests: this.#store.counts(),
      versions: Object.fromEntries(this.#followed),
    };
    const collections: Record<string, { records: number; segments: number; version: number }> = {};
    for (const [name, core] of this.#cores) {
      collections[name] = { records: core.count(), segments: core.segments().length, version: this.#followed.get(name) ?? 0 };
    }
    const { local, cold } = tierTotals(this.#cores.values());
    const hot = this.#ctx.hot.stats();
    return {
      status: this.#status,
      collections,
      replica,
      tiers: {
        hot,
        warm: { segments: local.segments, bytes: local.bytes, budget: this.options.warmBytes },
        cold: { segments: cold.segments, bytes: cold.bytes, reads: this.#ctx.tierStats.snapshot().coldReads, store: this.#store.description },
      },
      movement: this.#ctx.tierStats.snapshot(),
      search: this.#ctx.searchStats.snapshot(),
      memory: residentMemory(hot.nativeBytes, local.bytes),
      tiering: this.tiering.stats(),
      workers: this.#ctx.pool.stats(),
    };
  }

  #closing: Promise<void> | undefined;

  /** Stops following, waits for the refresh in flight, releases the caches and the lock. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#status = 'closing';
    clearInterval(this.#timer);
    await this.#refreshing?.catch(() => undefined);
    await this.tiering.stop();
    await this.#release();
  }

  async #release(): Promise<void> {
    try {
      for (const core of this.#cores.values()) await core.close().catch(() => undefined);
      this.#ctx.hot.clear();
      await this.#ctx.pool.destroy();
      await this.#store.close();
    } finally {
      await this.#lock.release();
      this.#status = 'closed';
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/**
 * A collection as a replica serves it: searches and gets. Writes throw ERR_READ_ONLY. A read that
 * meets a segment the writer's GC already removed from the bucket (the replica was behind) brings
 * the replica to the current version and is answered from it, once.
 */
export class ReplicaCollection {
  readonly name: string;
  readonly dimension: number;
  readonly metric: Collection['metric'];
  readonly #inner: Collection;
  readonly #catchUp: () => Promise<void>;

  constructor(inner: Collection, catchUp: () => Promise<void>) {
    this.#inner = inner;
    this.#catchUp = catchUp;
    this.name = inner.name;
    this.dimension = inner.dimension;
    this.metric = inner.metric;
  }

  async #again<T>(read: () => Promise<T>): Promise<T> {
    try {
      return await read();
    } catch (err) {
      if (!(err instanceof StratavecError) || (err.code !== 'ERR_OBJECT_NOT_FOUND' && err.code !== 'ERR_SEGMENT_UNAVAILABLE')) throw err;
      await this.#catchUp();
      return read();
    }
  }

  search(query: Float32Array | ArrayLike<number>, options?: SearchOptions): Promise<SearchHit[]> {
    return this.#again(() => this.#inner.search(query, options));
  }

  explain(query: Float32Array | ArrayLike<number>, options?: SearchOptions): Promise<ExplainResult> {
    return this.#again(() => this.#inner.explain(query, options));
  }

  get(ids: string[]): Promise<(StoredRecord | undefined)[]> {
    return this.#again(() => this.#inner.get(ids));
  }

  count(): number {
    return this.#inner.count();
  }

  segments(): SegmentInfo[] {
    return this.#inner.segments();
  }

  upsert(_records: unknown): Promise<never> {
    return readOnly('upsert');
  }

  delete(_ids: unknown): Promise<never> {
    return readOnly('delete');
  }

  flush(): Promise<never> {
    return readOnly('flush');
  }

  createIndex(_indexes: unknown): Promise<never> {
    return readOnly('createIndex');
  }
}

function readOnly(what: string): Promise<never> {
  return Promise.reject(new StratavecError('ERR_READ_ONLY', `${what} on a read replica: writes go to the writer (Database.open on the bucket prefix)`));
}
