// The public Database: lifecycle (opening | open | closing | closed), the directory lock, the
// collection catalog (one directory per collection), and the shared parts every collection uses:
// worker pool, hot, warm and cold tiers, access statistics, the tiering loop. It validates;
// CollectionCore does the work.

import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { StratavecError, ioError, readOnlyError } from '../format/errors.js';
import { TEMP_PREFIX, fsyncDir, mkdirDurable } from '../format/fsutil.js';
import { MANIFEST_FORMAT, type CollectionManifest } from '../format/manifest.js';
import { validateCollectionName } from '../format/names.js';
import { DEFAULT_HNSW_PARAMS, type HnswParams } from '../index/hnsw.js';
import { METRICS, isMetric, type Metric } from '../format/segment.js';
import type { ObjectStore } from '../tiers/object-store.js';
import { openObjectStore } from '../tiers/open-object-store.js';
import { CollectionCore, tierTotals } from './collection-core.js';
import { createEngineContext, type EngineContext } from './context.js';
import { checkTier, type Tier } from '../format/manifest.js';
import type { MoveResult } from '../tiers/migrator.js';
import { Tiering } from './tiering.js';
import { Maintenance, type VerifyOptions, type VerifyReport, type GcOptions, type GcReport, type CompactOptions, type CompactReport } from './maintenance.js';
import { Collection } from './collection.js';
import { DirectoryLock } from './lock.js';
import { fillOptions, fillIndexes, type DatabaseOptions, type FilledOptions } from './options.js';
import type { PayloadIndexes } from '../format/payload-schema.js';
import { loadLatestManifest } from '../format/manifest.js';
import { WriterFence } from '../tiers/writer-fence.js';
import { SegmentRegistry } from './segment-registry.js';
import { adoptCollection, readRemoteManifest, reconcile, remoteManifestVersions } from './bucket.js';
import { StatsPublisher } from './stats-file.js';
import { residentMemory } from './resident-memory.js';
import { Replica, type ReplicaOptions } from './replica.js';
import { CONFIG_FILE, configOf, isDatabase, mergeRecorded, readConfig, sameConfig, writeConfig, type RecordedConfig } from './config.js';
import { makeScratchDir, openCollectionsReadOnly } from './read-only.js';
import { repairManifests, type ManifestRecovery, type RepairManifestsOptions } from './manifest-recovery.js';

export interface CollectionOptions {
  dimension: number;
  metric?: Metric;
  hnsw?: Partial<HnswParams>;
  /** Payload paths to index per segment, for filtered search: `{ lang: 'keyword', price: 'number' }`
   *  (README "Filters"). Filters on other paths still work, by a scan of the payloads. */
  indexes?: PayloadIndexes;
}

export type DatabaseStatus = 'opening' | 'open' | 'closing' | 'closed';


export class Database {
  readonly dir: string;
  readonly options: Readonly<FilledOptions>;
  #status: DatabaseStatus = 'opening';
  readonly #lock: Pick<DirectoryLock, 'release'>;
  readonly #ctx: EngineContext;
  readonly #cores = new Map<string, CollectionCore>();
  readonly #handles = new Map<string, Collection>();
  /** The tiering policy, its dry run (`plan()`), `apply()`, and the background loop. */
  readonly tiering: Tiering;

  readonly #fence: WriterFence;
  #heartbeat: NodeJS.Timeout | undefined;

  private constructor(dir: string, options: FilledOptions, lock: Pick<DirectoryLock, 'release'>, store: ObjectStore, fence: WriterFence, scratch?: string) {
    this.#fence = fence;
    this.dir = dir;
    this.options = Object.freeze(options);
    this.#lock = lock;
    this.#ctx = createEngineContext(dir, options, store, fence, () => this.tiering.nudge(), scratch);
    this.tiering = new Tiering({ collections: () => this.#cores.values(), access: this.#ctx.access, options });
    this.#maintenance = new Maintenance({ dir, ctx: this.#ctx, cores: () => this.#cores });
    this.#publisher = new StatsPublisher(dir, options.statsIntervalMs, () => this.#snapshot(), () => options.clock.now(),
      () => ({ halfLifeMs: this.#ctx.access.halfLifeMs, segments: this.#ctx.access.entries() }));
  }

  readonly #publisher: StatsPublisher;

  readonly #maintenance: Maintenance;

  /** Opens (creating if missing, unless `create: false`) the database in `dir`, recovering every
   *  collection. Options not given come from the recorded configuration (engine/config.ts). */
  static async open(dir: string, options: DatabaseOptions = {}): Promise<Database> {
    if (typeof dir !== 'string' || dir.length === 0) throw new TypeError('Database.open expects a directory path');
    const abs = path.resolve(dir);
    const given = fillOptions(abs, options); // bad options fail before anything is touched
    if (given.readOnly) return Database.#openReadOnly(abs, options);
    if (!given.create && !(await isDatabase(abs))) {
      throw new StratavecError('ERR_DATABASE_NOT_FOUND', `${abs} is not a stratavec database (no ${CONFIG_FILE} or collections/ in it)`);
    }
    try {
      await fsp.mkdir(abs, { recursive: true });
      await fsyncDir(path.dirname(abs));
    } catch (err) {
      throw ioError(err, `creating ${abs}`);
    }
    const lock = await DirectoryLock.acquire(abs);
    let store: ObjectStore | undefined;
    let fence: WriterFence;
    let filled: FilledOptions;
    let config: RecordedConfig | undefined; // to record once the open has succeeded
    try {
      // Read under the lock: a concurrent first open cannot record a different store meanwhile.
      const recorded = await readConfig(abs);
      filled = fillOptions(abs, mergeRecorded(abs, options, recorded));
      config = configOf(abs, filled);
      if (sameConfig(recorded, config) || !filled.recordConfig) config = undefined;
      if (typeof filled.objectStore === 'string' && filled.objectStore.startsWith('file:')) {
        await fsp.mkdir(new URL(filled.objectStore), { recursive: true });
      }
      store = await openObjectStore(filled.objectStore, { ...filled.objectStoreTuning, clock: filled.clock });
      // One writer per prefix: a writer that cannot claim it (held, or the bucket unreachable) must not write.
      try {
        fence = await WriterFence.claim(store, { clock: filled.clock, takeover: filled.takeover, staleMs: filled.writerStaleMs });
      } catch (err) {
        if (!filled.offline || !(err instanceof StratavecError) || err.code !== 'ERR_TIER_UNAVAILABLE') throw err;
        fence = WriterFence.unclaimed(store, filled.clock, err);
      }
    } catch (err) {
      await store?.close();
      await lock.release();
      throw err;
    }
    const db = new Database(abs, filled, lock, store, fence);
    try {
      await db.#load();
      // Recorded only after recovery succeeded: a refused open changes nothing on disk.
      if (config) await writeConfig(abs, config);
    } catch (err) {
      for (const core of db.#cores.values()) await core.close().catch(() => undefined); // the load error is the one to report
      await fence.heartbeat(true); // a failed open must not leave a claim that looks alive
      await db.#ctx.pool.destroy();
      await store.close();
      await lock.release();
      throw err;
    }
    db.#status = 'open';
    db.tiering.start();
    db.#maintenance.start();
    if (!fence.unclaimed) {
      db.#heartbeat = setInterval(() => void fence.heartbeat(), filled.heartbeatMs);
      db.#heartbeat.unref();
    }
    db.#publisher.start();
    return db;
  }

  /** Opens a read replica of a writer's bucket prefix on this machine (engine/replica.ts, README
   *  "Scale past one machine"): searches and gets from its own caches in `cacheDir`, never writing
   *  to the bucket, following the writer's manifest versions. */
  static openReplica(cacheDir: string, options: ReplicaOptions): Promise<Replica> {
    return Replica.open(cacheDir, options);
  }

  // ---- read-only open (engine/read-only.ts): no lock, no claim, nothing written in `dir` ----

  static async #openReadOnly(abs: string, options: DatabaseOptions): Promise<Database> {
    if (!(await isDatabase(abs))) {
      throw new StratavecError('ERR_DATABASE_NOT_FOUND', `${abs} is not a stratavec database (no ${CONFIG_FILE} or collections/ in it)`);
    }
    const filled = fillOptions(abs, mergeRecorded(abs, options, await readConfig(abs)));
    const store = await openObjectStore(filled.objectStore, { ...filled.objectStoreTuning, clock: filled.clock });
    // Unclaimed, as the offline path's: any commit that slipped past the ERR_READ_ONLY guards
    // is refused there too, and nothing is ever put in the bucket (no claim, no heartbeat).
    const fence = WriterFence.refusing(store, filled.clock, readOnlyError('committing a manifest version'));
    let scratch: string | undefined;
    let db: Database | undefined;
    try {
      scratch = await makeScratchDir();
      db = new Database(abs, filled, { release: async () => undefined }, store, fence, scratch);
      for (const [name, core] of await openCollectionsReadOnly(db.#ctx, abs)) db.#cores.set(name, core);
    } catch (err) {
      if (db) await db.#ctx.pool.destroy();
      await store.close();
      if (scratch) await fsp.rm(scratch, { recursive: true, force: true });
      throw err;
    }
    db.#status = 'open'; // no tiering, maintenance, heartbeat or stats publishing
    return db;
  }

  /**
   * Restores each collection's newest manifest from the object store when the local file is
   * corrupt or missing (engine/manifest-recovery.ts; README "Verify and repair"). Run while the
   * database is closed: it takes the directory lock. `dryRun` reports and changes nothing.
   */
  static repairManifests(dir: string, options?: RepairManifestsOptions): Promise<ManifestRecovery[]> {
    return repairManifests(dir, options);
  }

  /** True for a database opened with `readOnly: true`. */
  get readOnly(): boolean {
    return this.options.readOnly;
  }

  #checkWritable(what: string): void {
    if (this.options.readOnly) throw readOnlyError(what);
  }

  get status(): DatabaseStatus {
    return this.#status;
  }

  async #load(): Promise<void> {
    const colDir = path.join(this.dir, 'collections');
    await mkdirDurable(colDir);
    await fsp.rm(this.#ctx.tmpDir, { recursive: true, force: true });
    await fsp.mkdir(this.#ctx.tmpDir, { recursive: true });
    // A drop that crashed half-way left its directory in trash/; finish it.
    await fsp.rm(path.join(this.dir, 'trash'), { recursive: true, force: true });
    const local = new Set<string>();
    for (const name of await fsp.readdir(colDir)) {
      if (name.startsWith(TEMP_PREFIX)) {
        await fsp.rm(path.join(colDir, name), { recursive: true, force: true });
        continue;
      }
      local.add(validateCollectionName(name));
    }
    // The bucket is the shared tier: what it holds is adopted or reconciled (engine/bucket.ts).
    const store = this.#ctx.cold.store;
    // Offline (no claim): the local directory as it is; the bucket is reconciled at the next open.
    const offline = this.#fence.unclaimed;
    const remote = offline ? new Map<string, { version: number; key: string }>() : await remoteManifestVersions(store);
    for (const name of [...new Set([...local, ...remote.keys()])].sort()) {
      const r = remote.get(name);
      let remoteM: CollectionManifest | undefined;
      try {
        remoteM = r ? await readRemoteManifest(store, r.key, r.version, name) : undefined;
      } catch (err) {
        if (!(err instanceof StratavecError) || err.code !== 'ERR_MANIFEST_CORRUPT') throw err;
        // A corrupt or foreign object under the prefix is never adopted, and never stops the
        // open: without a local copy it is skipped (GC collects it as a dropped collection);
        // with one, the local state stays the authority and commits go above that version.
        this.#ctx.tierStats.lastRemoteError = `${err.message}: ${local.has(name) ? 'kept the local collection' : 'skipped, not adopted'}`;
        if (!local.has(name)) continue;
      }
      const localM = local.has(name) ? await loadLatestManifest(SegmentRegistry.manifestDir(path.join(colDir, name))) : undefined;
      const plan = offline ? { adopt: false, publish: false, floor: 0 }
        : remoteM || !r ? reconcile(localM, remoteM) : { adopt: false, publish: true, floor: r.version };
      if (plan.adopt) await adoptCollection(this.dir, remoteM!);
      const core = await CollectionCore.open(this.#ctx, path.join(colDir, name));
      this.#cores.set(name, core);
      const unreachable = core.unreachableCause();
      if (unreachable) {
        // A restore that could not read the bucket would serve a collection of unavailable
        // segments; fail the open instead (the next open resumes where this one stopped).
        throw new StratavecError('ERR_TIER_UNAVAILABLE', `collection ${name}: the object store stopped answering while its segments were attached: ${unreachable.message}`, { cause: unreachable });
      }
      core.raiseVersionFloor(plan.floor);
      if (plan.publish) await core.republish();
    }
  }

  #checkOpen(): void {
    if (this.#status !== 'open') throw new StratavecError('ERR_DATABASE_CLOSED', `database ${this.dir} is ${this.#status}`);
  }

  async createCollection(name: string, options: CollectionOptions): Promise<Collection> {
    this.#checkOpen();
    validateCollectionName(name);
    if (typeof options !== 'object' || options === null) throw new TypeError('createCollection expects options { dimension, metric?, hnsw? }');
    const { dimension } = options;
    if (typeof dimension !== 'number') throw new TypeError('dimension must be a number');
    if (!Number.isInteger(dimension) || dimension < 1 || dimension > 65536) {
      throw new StratavecError('ERR_INVALID_ARGUMENT', `dimension must be an integer in [1, 65536], got ${dimension}`);
    }
    const metric = options.metric ?? 'l2';
    if (!isMetric(metric)) throw new StratavecError('ERR_INVALID_ARGUMENT', `metric must be one of ${METRICS.join(', ')}, got ${String(metric)}`);
    const hnsw = { ...DEFAULT_HNSW_PARAMS, ...(options.hnsw ?? {}) };
    for (const [key, [min, max]] of Object.entries({ M: [2, 128], efConstruction: [1, 10_000], efSearch: [1, 10_000] })) {
      const v = hnsw[key as keyof HnswParams];
      if (!Number.isInteger(v) || v < min! || v > max!) throw new StratavecError('ERR_INVALID_ARGUMENT', `hnsw.${key} must be an integer in [${min}, ${max}]`);
    }
    const indexes = fillIndexes(options.indexes);
    this.#checkWritable('createCollection');
    if (this.#cores.has(name)) throw new StratavecError('ERR_COLLECTION_EXISTS', `collection ${name} already exists`);

    const colDir = path.join(this.dir, 'collections');
    const finalDir = path.join(colDir, name);
    const tmpDir = path.join(colDir, `${TEMP_PREFIX}${name}-${randomBytes(4).toString('hex')}`);
    const manifest: CollectionManifest = {
      format: MANIFEST_FORMAT, collection: name, version: 1, dimension, metric, hnsw,
      createdAt: this.options.clock.now(), nextSegmentSeq: 1, walSeq: 1, segments: [],
      ...(indexes ? { indexes } : {}),
    };
    try {
      // Built aside and renamed into place, so a crash never leaves a half-made collection.
      await CollectionCore.initialize(tmpDir, manifest);
      await fsp.rename(tmpDir, finalDir);
      await fsyncDir(colDir);
    } catch (err) {
      await fsp.rm(tmpDir, { recursive: true, force: true });
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EEXIST' || code === 'ENOTEMPTY') throw new StratavecError('ERR_COLLECTION_EXISTS', `collection ${name} already exists`, { cause: err });
      throw ioError(err, `creating collection ${name}`);
    }
    const core = await CollectionCore.open(this.#ctx, finalDir);
    try {
      await core.republish(); // the bucket learns of it before the caller does
    } catch (err) {
      await core.close().catch(() => undefined); // the publish failure is the error to report
      await fsp.rm(finalDir, { recursive: true, force: true });
      throw err;
    }
    this.#cores.set(name, core);
    return this.collection(name);
  }

  collection(name: string): Collection {
    this.#checkOpen();
    validateCollectionName(name);
    const core = this.#cores.get(name);
    if (!core) throw new StratavecError('ERR_COLLECTION_NOT_FOUND', `collection ${name} does not exist`);
    let handle = this.#handles.get(name);
    if (!handle) {
      handle = new Collection(core, () => {
        this.#checkOpen();
        if (this.#cores.get(name) !== core) throw new StratavecError('ERR_COLLECTION_NOT_FOUND', `collection ${name} was dropped`);
      });
      this.#handles.set(name, handle);
    }
    return handle;
  }

  listCollections(): string[] {
    this.#checkOpen();
    return [...this.#cores.keys()].sort();
  }

  /** Removes a collection and all its data. Its handles then throw ERR_COLLECTION_NOT_FOUND. */
  async dropCollection(name: string): Promise<void> {
    this.#checkOpen();
    validateCollectionName(name);
    const core = this.#cores.get(name);
    if (!core) throw new StratavecError('ERR_COLLECTION_NOT_FOUND', `collection ${name} does not exist`);
    this.#checkWritable('dropCollection');
    // Only the prefix's current writer may delete its remote objects, and a drop needs the bucket:
    // the collection's remote manifest versions must be gone before its local directory is, or
    // the next open would adopt it again from them (engine/bucket.ts). With the store unreachable
    // (or this writer fenced) the drop is a coded error that changes nothing.
    await this.#fence.assertCurrent();
    this.#cores.delete(name);
    this.#handles.delete(name);
    await core.close(); // no commit can publish a version after this
    try {
      await this.#deleteRemoteManifests(name);
    } catch (err) {
      // Back as it was: the directory is untouched, so the collection reopens from it (and if
      // even that fails, the next Database.open recovers it; the drop's error is the one to report).
      // Handles taken before the drop belong to the closed core: take a new one with collection().
      try {
        this.#cores.set(name, await CollectionCore.open(this.#ctx, core.dir));
      } catch (reopenErr) {
        this.#ctx.tierStats.lastRemoteError = `drop ${name}: reopening after the failed drop: ${(reopenErr as Error).message}`;
      }
      throw err;
    }
    for (const s of core.segments()) this.#ctx.access.forget(s.id);
    const trash = path.join(this.dir, 'trash');
    await fsp.mkdir(trash, { recursive: true });
    const dest = path.join(trash, `${name}-${randomBytes(4).toString('hex')}`);
    try {
      await fsp.rename(core.dir, dest);
      await fsyncDir(path.join(this.dir, 'collections'));
    } catch (err) {
      throw ioError(err, `dropping collection ${name}`);
    }
    await fsp.rm(dest, { recursive: true, force: true });
    // The segment copies go too; what cannot be deleted now (store down since) is left for
    // garbage collection, which finds a prefix without a collection ('dropped-collection').
    const store = this.#ctx.cold.store;
    try {
      for (const o of await store.list(`${name}/`)) await store.delete(o.key);
    } catch (err) {
      this.#ctx.tierStats.lastRemoteError = `drop ${name}: ${(err as Error).message}`;
    }
  }

  /** Deletes every remote manifest version of `name`, newest first; throws if one cannot be. */
  async #deleteRemoteManifests(name: string): Promise<void> {
    const store = this.#ctx.cold.store;
    const keys = (await store.list(`${name}/manifest/`)).map((o) => o.key).sort().reverse();
    for (const key of keys) {
      // A remote delete is only ever made by the current writer (as GC does it).
      await this.#fence.assertCurrent();
      await store.delete(key);
    }
  }

  #coreOfSegment(segmentId: string): CollectionCore {
    if (typeof segmentId !== 'string') throw new TypeError('segment id must be a string');
    const name = segmentId.slice(0, segmentId.lastIndexOf('.'));
    const core = this.#cores.get(name);
    if (!core || !core.hasSegment(segmentId)) throw new StratavecError('ERR_SEGMENT_NOT_FOUND', `segment ${segmentId} does not exist`);
    return core;
  }

  /**
   * Moves segments between tiers, verified at every step: copy, check CRC32s against the
   * manifest, commit, then release the source. A failed move leaves its segment where it was.
   */
  async migrate(segmentId: string, tier: Tier): Promise<MoveResult> {
    this.#checkOpen();
    checkTier(tier);
    return this.#coreOfSegment(segmentId).migrate(segmentId, tier);
  }

  /**
   * Checks every copy of every segment (local files, id stubs, remote objects) and each
   * collection's manifest against reality, and lists what no manifest references. With
   * `repair: true`, fixes what it can: see README "Verify and repair".
   */
  async verify(options: VerifyOptions = {}): Promise<VerifyReport> {
    this.#checkOpen();
    if (options?.repair === true) this.#checkWritable('verify with repair');
    return this.#maintenance.verify(options);
  }

  /**
   * One garbage-collection pass: marks what no manifest references, deletes what stayed garbage
   * for the grace period and is not in use. `dryRun: true` reports and changes nothing.
   */
  async gc(options: GcOptions = {}): Promise<GcReport> {
    this.#checkOpen();
    if (options?.dryRun !== true) this.#checkWritable('gc without dryRun');
    return this.#maintenance.gc(options);
  }

  /** Merges small segments and drops deleted rows (README "Compaction"); `dryRun` plans only;
   *  `cluster: true` rewrites every local segment into regions (README "Clustering compaction"). */
  async compact(options: CompactOptions = {}): Promise<CompactReport> {
    this.#checkOpen();
    if (options?.dryRun !== true) this.#checkWritable('compact without dryRun');
    return this.#maintenance.compact(options);
  }

  /** Waits until every write-through upload queued so far has finished (or failed). */
  async flushUploads(): Promise<void> {
    this.#checkOpen();
    for (const core of this.#cores.values()) await core.drainUploads();
  }

  stats() {
    this.#checkOpen();
    return this.#snapshot();
  }

  #snapshot() {
    const collections: Record<string, ReturnType<CollectionCore['stats']>> = {};
    for (const [name, core] of this.#cores) collections[name] = core.stats();
    const { local, cold } = tierTotals(this.#cores.values());
    const tiers = {
      hot: { ...this.#ctx.hot.stats() },
      // every local segment file is mapped while open
      warm: { segments: local.segments, bytes: local.bytes, budget: this.options.warmBytes, scans: 0, mappedBytes: local.bytes },
      cold: { segments: cold.segments, bytes: cold.bytes, reads: 0, store: this.#ctx.cold.store.description },
    };
    const moves = this.#ctx.tierStats.snapshot();
    tiers.warm.scans = moves.warmScans;
    tiers.cold.reads = moves.coldReads;
    return {
      status: this.#status,
      collections,
      tiers,
      movement: moves,
      search: this.#ctx.searchStats.snapshot(),
      memory: residentMemory(tiers.hot.nativeBytes, tiers.warm.mappedBytes),
      tiering: this.tiering.stats(),
      maintenance: this.#maintenance.stats(),
      workers: this.#ctx.pool.stats(),
      writer: this.#fence.stats(),
    };
  }

  #closing: Promise<void> | undefined;

  /** Waits for in-flight writes and seals, then releases the pool and the lock. Idempotent:
   *  every call resolves when the database is closed. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#status = 'closing';
    try {
      clearInterval(this.#heartbeat);
      await this.tiering.stop();
      await this.#maintenance.stop();
      await this.#publisher.stop();
      for (const core of this.#cores.values()) await core.close();
      // Says "gone" so the next writer need not wait for staleness (best effort: a crash cannot).
      await this.#fence.heartbeat(true);
      this.#ctx.hot.clear();
      await this.#ctx.pool.destroy();
      await this.#ctx.cold.store.close();
      if (this.options.readOnly) await fsp.rm(this.#ctx.tmpDir, { recursive: true, force: true });
    } finally {
      await this.#lock.release();
      this.#status = 'closed';
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
