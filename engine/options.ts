// Database options: typed once, defaults in one frozen object, validated and merged once at the
// edge (Database.open). Everything below the engine receives FilledOptions and trusts it.

import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { StratavecError } from '../format/errors.js';
import { indexDeclarationProblem, type PayloadIndexes } from '../format/payload-schema.js';
import type { TieringPolicy } from '../tiers/policy.js';
import { DEFAULT_WORKER_NICE, MAX_NICE } from '../workers/thread-priority.js';

/** S3 settings: `{ url: 's3://bucket/prefix', endpoint?, region?, credentials?, forcePathStyle? }`. */
export type { S3Settings as S3ObjectStoreOptions } from '../tiers/object-store.js';
import type { S3Settings as S3ObjectStoreOptions } from '../tiers/object-store.js';

/** Time source in ms since the epoch (declared in tiers/, the lowest room that needs it). */
export type { Clock } from '../tiers/access-stats.js';
import type { Clock } from '../tiers/access-stats.js';

export interface DatabaseOptions {
  /** Where cold copies live: `file:///abs/dir` (default `<dir>/objects`) or S3 settings. */
  objectStore?: string | S3ObjectStoreOptions;
  /** Byte budget of the hot tier (in-memory segments with a live HNSW index). */
  hotBytes?: number;
  /** Byte budget of the warm tier (local segment files). */
  warmBytes?: number;
  /** Worker threads for seals and maintenance; 0 runs tasks inline on the calling thread. */
  workers?: number;
  /** A growing segment is sealed once it holds this many rows. */
  segmentMaxRecords?: number;
  /** Time source (ms since epoch) for timestamps and schedules; injectable for tests. */
  clock?: Clock;
  /** Upload each segment to the object store when it is sealed (write-through). Default true;
   *  false defers the upload until the segment is demoted to cold. */
  uploadOnSeal?: boolean;
  /** A warm segment with at most this many records is searched by exact scan of its mapped
   *  vectors instead of being promoted to hot (see README "Tiers"). */
  warmScanMaxRecords?: number;
  tiering?: TieringOptions;
  maintenance?: MaintenanceOptions;
  /** A cold section is stored compressed only if that saves at least this fraction. Default 0.1. */
  compressionMinSavings?: number;
  /** A pool task running longer than this fails with ERR_WORKER_TIMEOUT; 0 (default) never. */
  taskTimeoutMs?: number;
  /** Unix nice value of the pool's threads (Linux), 0-19: above 0, searches get a core before
   *  seals and maintenance do. Default 10. */
  workerNice?: number;
  /** Transfer tuning for the object store. */
  objectStoreTuning?: { multipartThreshold?: number; partSize?: number; retries?: number; retryBaseMs?: number };
  /** Claim the object-store prefix even if another writer's heartbeat is fresh, fencing it
   *  (failover when that machine is gone). Default false: such an open fails with ERR_WRITER_ACTIVE. */
  takeover?: boolean;
  /** The writer refreshes its heartbeat object (and learns of a newer writer) this often. Default 5 s. */
  heartbeatMs?: number;
  /** A writer whose heartbeat is older than this counts as gone: open claims without takeover.
   *  Must exceed heartbeatMs (and the clock skew between machines). Default 30 s. */
  writerStaleMs?: number;
  /** Seal the growing segment once its oldest row is this old, so the bucket is at most about
   *  this far behind the acknowledged writes. 0 (default): seal only at segmentMaxRecords or flush(). */
  maxUnsealedMs?: number;
  /** The object store cannot be reached at open: open anyway, without the writer claim, for local
   *  reads, verify and local GC; every write, commit and remote delete then fails with
   *  ERR_TIER_UNAVAILABLE until a reopen claims the prefix. Default false: the open fails. */
  offline?: boolean;
  /** Create the database when `dir` holds none (default true). false: ERR_DATABASE_NOT_FOUND
   *  instead, so a mistyped path never becomes an empty database (admin tools pass false). */
  create?: boolean;
  /** Record the options given here in `<dir>/config.json` (default true), so later opens that
   *  omit them use them. false: they apply to this session only (README "Recorded configuration"). */
  recordConfig?: boolean;
  /** The database's objects were moved to `objectStore`: record the new location instead of
   *  failing with ERR_OBJECT_STORE_MISMATCH. Default false. */
  relocateObjectStore?: boolean;
  /** How often db.stats() is written to `<dir>/stats.json` for tools outside the process (the
   *  admin CLI); 0 never. Default 10 s. */
  statsIntervalMs?: number;
  /** Open to look, beside a process that has the database open for writing: no directory lock,
   *  no writer claim, nothing written in `dir` (README "Read-only open"). Every mutating call then
   *  fails with ERR_READ_ONLY. Implies `create: false` and `recordConfig: false`. Default false. */
  readOnly?: boolean;
}

export interface TieringOptions {
  /** The decision logic; default: DefaultTieringPolicy (README "Tiering policy"). */
  policy?: TieringPolicy;
  /** Background loop period in ms; 0 turns the loop off (plan/apply still work). Default 30 s. */
  intervalMs?: number;
  /** Fractions of hotBytes / warmBytes: above high the policy demotes down to low. */
  highWatermark?: number;
  lowWatermark?: number;
  /** Half-life of the decayed access frequency. Default 10 minutes. */
  halfLifeMs?: number;
  /** The default policy does not demote a segment within this long of a read rehydrating it or
   *  loading it into hot (no tier ping-pong). Default 60 s. */
  minResidencyMs?: number;
}

/** Background maintenance (README "Maintenance"). An interval of 0 turns that loop off. */
export interface MaintenanceOptions {
  /** How often garbage collection runs. Default 10 minutes. */
  gcIntervalMs?: number;
  /** How long something stays garbage before GC deletes it. Default 1 hour. */
  gcGraceMs?: number;
  /** How often the scrub (verify with repair, every copy) runs. Default 24 hours. */
  scrubIntervalMs?: number;
  /** The scrub's read budget. Default 32 MiB/s. */
  scrubBytesPerSecond?: number;
  /** How often compaction looks for small or tombstone-heavy segments. Default 10 minutes. */
  compactIntervalMs?: number;
  /** Background clustering compaction (README "Clustering compaction"): on each compaction run, a
   *  collection whose local segments hold at least this many unclustered live rows is clustered.
   *  Default 0: never in the background (`db.compact({ cluster: true })` still works). */
  clusterMinUnclusteredRows?: number;
  /** ...and only if those are at least this fraction of its local live rows, so that a large
   *  clustered collection is not rewritten for a few new segments. Default 0.2. */
  clusterMinUnclusteredFraction?: number;
}

export interface FilledOptions {
  objectStore: string | S3ObjectStoreOptions;
  hotBytes: number;
  warmBytes: number;
  workers: number;
  segmentMaxRecords: number;
  clock: Clock;
  uploadOnSeal: boolean;
  warmScanMaxRecords: number;
  tiering: { policy: TieringPolicy | undefined; intervalMs: number; highWatermark: number; lowWatermark: number; halfLifeMs: number; minResidencyMs: number };
  maintenance: Required<MaintenanceOptions>;
  compressionMinSavings: number;
  taskTimeoutMs: number;
  workerNice: number;
  objectStoreTuning: { multipartThreshold?: number; partSize?: number; retries?: number; retryBaseMs?: number };
  takeover: boolean;
  heartbeatMs: number;
  writerStaleMs: number;
  maxUnsealedMs: number;
  offline: boolean;
  create: boolean;
  recordConfig: boolean;
  relocateObjectStore: boolean;
  statsIntervalMs: number;
  readOnly: boolean;
}

export const kDefaultOptions = Object.freeze({
  hotBytes: 1024 * 1024 * 1024,
  warmBytes: 16 * 1024 * 1024 * 1024,
  // Chosen from `npm run bench:seal` (native-bench/seal.ts): see README "Segment size".
  segmentMaxRecords: 100_000,
  clock: Object.freeze({ now: () => Date.now() }) as Clock,
  uploadOnSeal: true,
  // From `npm run bench:tiers` (warm exact scan vs promotion): at 5,000 rows promotion paid for
  // itself after ~4 queries; below ~2,000 its fixed cost (and ~2.6 MB of hnswlib overhead per
  // index) needs 8-36 queries. See README "Tiers".
  warmScanMaxRecords: 2_000,
  tiering: Object.freeze({ intervalMs: 30_000, highWatermark: 0.9, lowWatermark: 0.7, halfLifeMs: 10 * 60_000, minResidencyMs: 60_000 }),
  // workers/codec.ts DEFAULT_MIN_SAVINGS: below a 10% saving, decoding costs more than the bytes.
  compressionMinSavings: 0.1,
  heartbeatMs: 5_000,
  // Six missed heartbeats: a writer stalled by a long GC pause or a slow bucket is not declared dead.
  writerStaleMs: 30_000,
  maintenance: Object.freeze({
    gcIntervalMs: 10 * 60_000,
    gcGraceMs: 60 * 60_000,
    scrubIntervalMs: 24 * 3600_000,
    scrubBytesPerSecond: 32 * 1024 * 1024,
    compactIntervalMs: 10 * 60_000,
    clusterMinUnclusteredRows: 0,
    clusterMinUnclusteredFraction: 0.2,
  }),
});

const MAX_SEGMENT_RECORDS = 10_000_000;

/** An integer option in [min, max]: TypeError for a non-number, ERR_INVALID_ARGUMENT out of range. */
export function positiveInt(name: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number') throw new TypeError(`option ${name} must be a number, got ${typeof v}`);
  if (!Number.isSafeInteger(v) || v < min || v > max) {
    throw new StratavecError('ERR_INVALID_ARGUMENT', `option ${name} must be an integer in [${min}, ${max}], got ${v}`);
  }
  return v;
}

/** Every key each options object takes: a misspelt key is an error, never silently ignored. */
const KNOWN_KEYS = {
  options: ['objectStore', 'hotBytes', 'warmBytes', 'workers', 'segmentMaxRecords', 'clock', 'uploadOnSeal', 'warmScanMaxRecords',
    'tiering', 'maintenance', 'compressionMinSavings', 'taskTimeoutMs', 'workerNice', 'objectStoreTuning', 'create', 'recordConfig',
    'relocateObjectStore', 'statsIntervalMs', 'takeover', 'heartbeatMs', 'writerStaleMs', 'maxUnsealedMs', 'offline', 'readOnly'],
  // Derived from the defaults, so a new nested option is known the moment it has a default.
  tiering: ['policy', ...Object.keys(kDefaultOptions.tiering)],
  maintenance: Object.keys(kDefaultOptions.maintenance),
  objectStore: ['url', 'endpoint', 'region', 'credentials', 'forcePathStyle'],
  objectStoreTuning: ['multipartThreshold', 'partSize', 'retries', 'retryBaseMs'],
};

/** Throws ERR_INVALID_ARGUMENT naming the first key of `obj` not in `known` (undefined values count too). */
export function checkKnownKeys(what: string, obj: object, known: readonly string[]): void {
  for (const key of Object.keys(obj)) {
    if (known.includes(key)) continue;
    const near = known.find((k) => k.toLowerCase() === key.toLowerCase().replace(/[-_]/g, ''));
    throw new StratavecError('ERR_INVALID_ARGUMENT',
      `unknown ${what} ${JSON.stringify(key)}${near ? ` (did you mean ${near}?)` : ''}; known: ${known.join(', ')}`);
  }
}

export function fillOptions(dir: string, options: DatabaseOptions = {}): FilledOptions {
  if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object');
  const o = options;
  checkKnownKeys('option', o, KNOWN_KEYS.options);
  for (const sub of ['tiering', 'maintenance', 'objectStoreTuning'] as const) {
    const v = o[sub];
    if (typeof v === 'object' && v !== null) checkKnownKeys(`${sub} option`, v, KNOWN_KEYS[sub]);
  }
  if (typeof o.objectStore === 'object' && o.objectStore !== null) checkKnownKeys('objectStore option', o.objectStore, KNOWN_KEYS.objectStore);
  let objectStore: string | S3ObjectStoreOptions = pathToFileURL(path.join(dir, 'objects')).href;
  if (o.objectStore !== undefined) {
    if (typeof o.objectStore === 'string') {
      if (!/^(file|s3):\/\//.test(o.objectStore)) {
        throw new StratavecError('ERR_INVALID_ARGUMENT', 'objectStore must be a file:// or s3:// URL');
      }
      if (o.objectStore.startsWith('file:')) checkFileUrl(o.objectStore);
      objectStore = o.objectStore;
    } else if (typeof o.objectStore === 'object' && o.objectStore !== null && typeof o.objectStore.url === 'string') {
      if (!o.objectStore.url.startsWith('s3://')) throw new StratavecError('ERR_INVALID_ARGUMENT', 'objectStore.url must be an s3:// URL');
      objectStore = { ...o.objectStore };
    } else {
      throw new TypeError('objectStore must be a URL string or { url, endpoint?, region?, credentials?, forcePathStyle? }');
    }
  }
  const clock = o.clock ?? kDefaultOptions.clock;
  if (typeof clock.now !== 'function') throw new TypeError('clock must have a now() method');
  const readOnly = o.readOnly === undefined ? false : bool('readOnly', o.readOnly);
  if (readOnly && o.create === true) throw new StratavecError('ERR_INVALID_ARGUMENT', 'option readOnly cannot be combined with create: true (a read-only open never creates a database)');
  return {
    objectStore,
    hotBytes: o.hotBytes === undefined ? kDefaultOptions.hotBytes : positiveInt('hotBytes', o.hotBytes, 0, Number.MAX_SAFE_INTEGER),
    warmBytes: o.warmBytes === undefined ? kDefaultOptions.warmBytes : positiveInt('warmBytes', o.warmBytes, 1, Number.MAX_SAFE_INTEGER),
    workers: o.workers === undefined ? os.availableParallelism() : positiveInt('workers', o.workers, 0, 256),
    segmentMaxRecords: o.segmentMaxRecords === undefined
      ? kDefaultOptions.segmentMaxRecords
      : positiveInt('segmentMaxRecords', o.segmentMaxRecords, 1, MAX_SEGMENT_RECORDS),
    clock,
    uploadOnSeal: o.uploadOnSeal === undefined ? kDefaultOptions.uploadOnSeal : bool('uploadOnSeal', o.uploadOnSeal),
    warmScanMaxRecords: o.warmScanMaxRecords === undefined
      ? kDefaultOptions.warmScanMaxRecords
      : positiveInt('warmScanMaxRecords', o.warmScanMaxRecords, 0, MAX_SEGMENT_RECORDS),
    tiering: fillTiering(o.tiering),
    maintenance: fillMaintenance(o.maintenance),
    compressionMinSavings: fraction('compressionMinSavings', o.compressionMinSavings, kDefaultOptions.compressionMinSavings, true),
    taskTimeoutMs: o.taskTimeoutMs === undefined ? 0 : positiveInt('taskTimeoutMs', o.taskTimeoutMs, 0, 24 * 3600_000),
    workerNice: o.workerNice === undefined ? DEFAULT_WORKER_NICE : positiveInt('workerNice', o.workerNice, 0, MAX_NICE),
    objectStoreTuning: { ...(o.objectStoreTuning ?? {}) },
    create: readOnly ? false : o.create === undefined ? true : bool('create', o.create),
    recordConfig: readOnly ? false : o.recordConfig === undefined ? true : bool('recordConfig', o.recordConfig),
    relocateObjectStore: o.relocateObjectStore === undefined ? false : bool('relocateObjectStore', o.relocateObjectStore),
    statsIntervalMs: o.statsIntervalMs === undefined ? 10_000 : positiveInt('statsIntervalMs', o.statsIntervalMs, 0, 24 * 3600_000),
    readOnly,
    ...fillWriter(o),
  };
}

function fillWriter(o: DatabaseOptions): Pick<FilledOptions, 'takeover' | 'heartbeatMs' | 'writerStaleMs' | 'maxUnsealedMs' | 'offline'> {
  const day = 24 * 3600_000;
  const heartbeatMs = o.heartbeatMs === undefined ? kDefaultOptions.heartbeatMs : positiveInt('heartbeatMs', o.heartbeatMs, 10, day);
  const writerStaleMs = o.writerStaleMs === undefined ? kDefaultOptions.writerStaleMs : positiveInt('writerStaleMs', o.writerStaleMs, 1, 7 * day);
  if (writerStaleMs <= heartbeatMs) {
    throw new StratavecError('ERR_INVALID_ARGUMENT', `option writerStaleMs (${writerStaleMs}) must exceed heartbeatMs (${heartbeatMs}): a live writer would look gone between heartbeats`);
  }
  return {
    takeover: o.takeover === undefined ? false : bool('takeover', o.takeover),
    heartbeatMs,
    writerStaleMs,
    maxUnsealedMs: o.maxUnsealedMs === undefined ? 0 : positiveInt('maxUnsealedMs', o.maxUnsealedMs, 0, 7 * day),
    offline: o.offline === undefined ? false : bool('offline', o.offline),
  };
}

/** `file://relative/x` parses with host `relative`: a clear error here, not a TypeError from fs. */
function checkFileUrl(url: string): void {
  try {
    if (!path.isAbsolute(fileURLToPath(url))) throw new Error('not absolute');
  } catch (err) {
    throw new StratavecError('ERR_INVALID_ARGUMENT', `objectStore ${JSON.stringify(url)} must be file:///absolute/path (three slashes: file://x/y names host x)`, { cause: err });
  }
}

function bool(name: string, v: unknown): boolean {
  if (typeof v !== 'boolean') throw new TypeError(`option ${name} must be a boolean`);
  return v;
}

function fraction(name: string, v: unknown, fallback: number, zeroOk = false): number {
  if (v === undefined) return fallback;
  if (typeof v !== 'number') throw new TypeError(`option ${name} must be a number`);
  if (!((zeroOk ? v >= 0 : v > 0) && v <= 1)) throw new StratavecError('ERR_INVALID_ARGUMENT', `option ${name} must be in ${zeroOk ? '[0' : '(0'}, 1], got ${v}`);
  return v;
}

function fillTiering(t: TieringOptions | undefined): FilledOptions['tiering'] {
  if (t !== undefined && (typeof t !== 'object' || t === null)) throw new TypeError('option tiering must be an object');
  const d = kDefaultOptions.tiering;
  const o = t ?? {};
  if (o.policy !== undefined && typeof o.policy.plan !== 'function') throw new TypeError('tiering.policy must have a plan() method');
  const high = fraction('tiering.highWatermark', o.highWatermark, d.highWatermark);
  const low = fraction('tiering.lowWatermark', o.lowWatermark, d.lowWatermark);
  if (low > high) throw new StratavecError('ERR_INVALID_ARGUMENT', `tiering.lowWatermark (${low}) must not exceed highWatermark (${high})`);
  return {
    policy: o.policy,
    intervalMs: o.intervalMs === undefined ? d.intervalMs : positiveInt('tiering.intervalMs', o.intervalMs, 0, 24 * 3600_000),
    highWatermark: high,
    lowWatermark: low,
    halfLifeMs: o.halfLifeMs === undefined ? d.halfLifeMs : positiveInt('tiering.halfLifeMs', o.halfLifeMs, 1, Number.MAX_SAFE_INTEGER),
    minResidencyMs: o.minResidencyMs === undefined ? d.minResidencyMs : positiveInt('tiering.minResidencyMs', o.minResidencyMs, 0, Number.MAX_SAFE_INTEGER),
  };
}

function fillMaintenance(m: MaintenanceOptions | undefined): Required<MaintenanceOptions> {
  if (m !== undefined && (typeof m !== 'object' || m === null)) throw new TypeError('option maintenance must be an object');
  const d = kDefaultOptions.maintenance;
  const o = m ?? {};
  const day = 24 * 3600_000;
  const pick = (key: Exclude<keyof MaintenanceOptions, 'clusterMinUnclusteredFraction'>, min: number, max: number) =>
    o[key] === undefined ? d[key] : positiveInt(`maintenance.${key}`, o[key], min, max);
  return {
    gcIntervalMs: pick('gcIntervalMs', 0, 7 * day),
    gcGraceMs: pick('gcGraceMs', 0, 365 * day),
    scrubIntervalMs: pick('scrubIntervalMs', 0, 365 * day),
    scrubBytesPerSecond: pick('scrubBytesPerSecond', 1, Number.MAX_SAFE_INTEGER),
    compactIntervalMs: pick('compactIntervalMs', 0, 7 * day),
    clusterMinUnclusteredRows: pick('clusterMinUnclusteredRows', 0, Number.MAX_SAFE_INTEGER),
    clusterMinUnclusteredFraction: fraction('maintenance.clusterMinUnclusteredFraction', o.clusterMinUnclusteredFraction, d.clusterMinUnclusteredFraction, true),
  };
}

/**
 * A collection's `indexes` option, checked: `{ path: 'keyword' | 'number' | 'bool' }`. A non-object
 * is a TypeError; a bad path or an unknown type is ERR_INVALID_ARGUMENT. Empty means none.
 */
export function fillIndexes(v: unknown): PayloadIndexes | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new TypeError("option indexes must be an object { path: 'keyword' | 'number' | 'bool' }");
  const problem = indexDeclarationProblem(v);
  if (problem !== undefined) throw new StratavecError('ERR_INVALID_ARGUMENT', `option ${problem}`);
  const out: PayloadIndexes = { ...(v as PayloadIndexes) };
  return Object.keys(out).length === 0 ? undefined : out;
}
