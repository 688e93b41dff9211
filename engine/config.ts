// The database's recorded configuration, `<dir>/config.json`: where its object store is and the
// options that change what the engine does on disk (segment size, budgets, tiering, maintenance),
// so every process that opens the directory (the app, the admin CLI) works with the same settings.
// It never holds credentials or process-local settings (workers, clock, timeouts, tuning).

import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { StratavecError, ioError } from '../format/errors.js';
import { TEMP_PREFIX, writeFileAtomic } from '../format/fsutil.js';
import { COLLECTION_NAME_RE } from '../format/names.js';
import type { DatabaseOptions, FilledOptions, MaintenanceOptions, S3ObjectStoreOptions } from './options.js';

export const CONFIG_FILE = 'config.json';
const CONFIG_FORMAT = 1;
/** How the default store (`<dir>/objects`) is recorded: relative, so a moved directory keeps it. */
const DEFAULT_STORE = './objects';

/** An object store as recorded: a file URL, DEFAULT_STORE, or S3 settings without credentials. */
export type RecordedStore = string | Omit<S3ObjectStoreOptions, 'credentials'>;

export interface RecordedConfig {
  format: typeof CONFIG_FORMAT;
  objectStore: RecordedStore;
  hotBytes: number;
  warmBytes: number;
  segmentMaxRecords: number;
  uploadOnSeal: boolean;
  warmScanMaxRecords: number;
  compressionMinSavings: number;
  tiering: { intervalMs: number; highWatermark: number; lowWatermark: number; halfLifeMs: number };
  maintenance: Required<MaintenanceOptions>;
}

/** The collections of a database directory, by name (sorted), without temporaries. */
export async function listCollectionNames(dbDir: string): Promise<string[]> {
  const colDir = path.join(dbDir, 'collections');
  try {
    return (await fsp.readdir(colDir)).filter((n) => !n.startsWith(TEMP_PREFIX) && COLLECTION_NAME_RE.test(n)).sort();
  } catch (err) {
    throw ioError(err, `listing ${colDir}`);
  }
}

/** A directory holds a database if it has a recorded configuration or a collections directory
 *  (databases made before the configuration was recorded have only the latter). */
export async function isDatabase(dir: string): Promise<boolean> {
  for (const name of [CONFIG_FILE, 'collections']) {
    try {
      await fsp.stat(path.join(dir, name));
      return true;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw ioError(err, `looking for a database in ${dir}`);
    }
  }
  return false;
}

export async function readConfig(dir: string): Promise<RecordedConfig | undefined> {
  let text: string;
  try {
    text = await fsp.readFile(path.join(dir, CONFIG_FILE), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw ioError(err, `reading ${CONFIG_FILE}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new StratavecError('ERR_CONFIG_CORRUPT', `${path.join(dir, CONFIG_FILE)} is not valid JSON`, { cause: err });
  }
  const c = parsed as Partial<RecordedConfig> | null;
  if (typeof c !== 'object' || c === null || c.format !== CONFIG_FORMAT || c.objectStore === undefined) {
    throw new StratavecError('ERR_CONFIG_CORRUPT', `${path.join(dir, CONFIG_FILE)} is not a stratavec configuration (format ${CONFIG_FORMAT})`);
  }
  return c as RecordedConfig;
}

export async function writeConfig(dir: string, config: RecordedConfig): Promise<void> {
  await writeFileAtomic(path.join(dir, CONFIG_FILE), Buffer.from(`${JSON.stringify(config, null, 2)}\n`));
}

/** The recorded store as an `objectStore` option for `dir`. */
export function storeOption(dir: string, s: RecordedStore): string | S3ObjectStoreOptions {
  if (s === DEFAULT_STORE) return pathToFileURL(path.join(dir, 'objects')).href;
  return typeof s === 'string' ? s : { ...s };
}

/** What identifies a store: the file URL, or the bucket and prefix. Endpoint, region and path
 *  style are how to reach it (one bucket may be reached through a proxy or another hostname),
 *  so a change of those is recorded, not refused. */
function storeIdentity(s: string | S3ObjectStoreOptions): string {
  const strip = (u: string) => u.replace(/\/+$/, '');
  if (typeof s === 'string') return strip(s.startsWith('file:') ? new URL(s).href : s);
  return strip(s.url);
}

function describeStore(s: string | S3ObjectStoreOptions): string {
  return typeof s === 'string' ? s : `${s.url}${s.endpoint === undefined ? '' : ` (endpoint ${s.endpoint})`}`;
}

/**
 * The options to open with: those given win; those not given come from the record. Opening with
 * an object store other than the recorded one is ERR_OBJECT_STORE_MISMATCH unless
 * `relocateObjectStore` says the objects were moved there.
 */
export function mergeRecorded(dir: string, given: DatabaseOptions, rec: RecordedConfig | undefined): DatabaseOptions {
  if (rec === undefined) return given;
  const recordedStore = storeOption(dir, rec.objectStore);
  if (given.objectStore !== undefined && given.relocateObjectStore !== true && storeIdentity(given.objectStore) !== storeIdentity(recordedStore)) {
    throw new StratavecError('ERR_OBJECT_STORE_MISMATCH',
      `${dir} records its object store as ${describeStore(recordedStore)}, not ${describeStore(given.objectStore)}; ` +
      'open without objectStore to use the recorded one, or pass relocateObjectStore: true if its objects were moved');
  }
  let objectStore = given.objectStore ?? recordedStore;
  // Same place, given as a bare URL string: keep the recorded endpoint, region and path style.
  if (typeof objectStore === 'string' && typeof recordedStore === 'object' && storeIdentity(objectStore) === storeIdentity(recordedStore.url)) {
    objectStore = recordedStore;
  }
  return {
    ...given,
    objectStore,
    hotBytes: given.hotBytes ?? rec.hotBytes,
    warmBytes: given.warmBytes ?? rec.warmBytes,
    segmentMaxRecords: given.segmentMaxRecords ?? rec.segmentMaxRecords,
    uploadOnSeal: given.uploadOnSeal ?? rec.uploadOnSeal,
    warmScanMaxRecords: given.warmScanMaxRecords ?? rec.warmScanMaxRecords,
    compressionMinSavings: given.compressionMinSavings ?? rec.compressionMinSavings,
    tiering: { ...rec.tiering, ...defined(given.tiering ?? {}) },
    maintenance: { ...rec.maintenance, ...defined(given.maintenance ?? {}) },
  };
}

/** Drops keys whose value is undefined, so they do not hide a recorded value in a spread. */
function defined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** The record of a database opened with `o`: credentials and process-local settings left out. */
export function configOf(dir: string, o: FilledOptions): RecordedConfig {
  let objectStore: RecordedStore;
  if (typeof o.objectStore === 'string') {
    objectStore = storeIdentity(o.objectStore) === storeIdentity(storeOption(dir, DEFAULT_STORE)) ? DEFAULT_STORE : o.objectStore;
  } else {
    const { credentials: _never, ...rest } = o.objectStore;
    objectStore = rest;
  }
  const { intervalMs, highWatermark, lowWatermark, halfLifeMs } = o.tiering;
  return {
    format: CONFIG_FORMAT,
    objectStore,
    hotBytes: o.hotBytes,
    warmBytes: o.warmBytes,
    segmentMaxRecords: o.segmentMaxRecords,
    uploadOnSeal: o.uploadOnSeal,
    warmScanMaxRecords: o.warmScanMaxRecords,
    compressionMinSavings: o.compressionMinSavings,
    tiering: { intervalMs, highWatermark, lowWatermark, halfLifeMs },
    maintenance: { ...o.maintenance },
  };
}

/** Deep equality of two records (plain JSON data). */
export function sameConfig(a: RecordedConfig | undefined, b: RecordedConfig): boolean {
  return a !== undefined && JSON.stringify(sortKeys(a)) === JSON.stringify(sortKeys(b));
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (typeof v !== 'object' || v === null) return v;
  return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortKeys((v as Record<string, unknown>)[k])]));
}
