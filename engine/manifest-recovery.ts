// Manifest recovery from the bucket: a collection whose newest local manifest file is corrupt (or
// whose manifest directory is empty) cannot be opened, since falling back to an older local
// version could lose rows whose WAL is gone. The bucket holds every acknowledged version (a
// writer creates it there before it acknowledges a commit), so the newest good remote version
// that is not older than the newest good local one is restored. Nothing is deleted: corrupt files
// are moved to `<collection>/quarantine/`, a superseded collection to `superseded/` (bucket.ts).

import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { StratavecError, ioError } from '../format/errors.js';
import { fsyncDir, writeFileAtomic } from '../format/fsutil.js';
import { encodeManifest, listManifestVersions, manifestFileName, readManifestFile, type CollectionManifest } from '../format/manifest.js';
import type { ObjectStore } from '../tiers/object-store.js';
import { openObjectStore } from '../tiers/open-object-store.js';
import { adoptCollection, readRemoteManifest, remoteVersionsOf } from './bucket.js';
import { CONFIG_FILE, isDatabase, listCollectionNames, mergeRecorded, readConfig } from './config.js';
import { DirectoryLock } from './lock.js';
import { fillOptions, type DatabaseOptions } from './options.js';
import { SegmentRegistry } from './segment-registry.js';

/** What recovery found and did for one collection. */
export interface ManifestRecovery {
  collection: string;
  /** ok: the newest local file is sound, nothing to do. restored: the remote copy of a version of
   *  this directory's own lineage was written back (its WAL and segment files still apply).
   *  adopted: the bucket's newest version is another writer's, so the collection was taken from
   *  the bucket as a restore would (the old directory moved to superseded/). failed: no good
   *  remote version at least as new as the newest good local one; the collection stays unopenable. */
  action: 'ok' | 'restored' | 'adopted' | 'failed';
  /** The newest local manifest file's version, and the newest one that reads back good. */
  localNewest: number | undefined;
  localGood: number | undefined;
  /** The newest remote version that reads back good (undefined if none, or not looked at). */
  remoteGood: number | undefined;
  /** The version the collection opens at now (ok, restored, adopted). */
  version: number | undefined;
  /** Files moved aside, relative to the database directory. */
  quarantined: string[];
  detail: string;
}

export interface RepairManifestsOptions extends DatabaseOptions {
  /** Report what would be done; change nothing. */
  dryRun?: boolean;
}

/**
 * Checks the newest manifest of every collection in `dir` and restores a corrupt or missing one
 * from the object store (see the module comment). Takes the directory lock, so it runs only while
 * no process has the database open; it needs the store, and makes no writer claim (it writes
 * nothing to the bucket). Options as for Database.open (the recorded object store by default).
 */
export async function repairManifests(dir: string, options: RepairManifestsOptions = {}): Promise<ManifestRecovery[]> {
  if (typeof dir !== 'string' || dir.length === 0) throw new TypeError('repairManifests expects a directory path');
  if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object');
  const { dryRun, ...rest } = options;
  if (dryRun !== undefined && typeof dryRun !== 'boolean') throw new TypeError('dryRun must be a boolean');
  const abs = path.resolve(dir);
  fillOptions(abs, rest); // bad options fail before anything is touched
  if (!(await isDatabase(abs))) throw new StratavecError('ERR_DATABASE_NOT_FOUND', `${abs} is not a stratavec database (no ${CONFIG_FILE} or collections/ in it)`);
  const lock = await DirectoryLock.acquire(abs);
  let store: ObjectStore | undefined;
  try {
    const filled = fillOptions(abs, mergeRecorded(abs, rest, await readConfig(abs)));
    store = await openObjectStore(filled.objectStore, { ...filled.objectStoreTuning, clock: filled.clock });
    const names = await listCollectionNames(abs);
    const out: ManifestRecovery[] = [];
    for (const name of names) out.push(await recoverOne(abs, name, store, dryRun === true));
    return out;
  } finally {
    await store?.close();
    await lock.release();
  }
}

async function tryRead(file: string): Promise<CollectionManifest | undefined> {
  try {
    return await readManifestFile(file);
  } catch (err) {
    if (err instanceof StratavecError && err.code === 'ERR_MANIFEST_CORRUPT') return undefined;
    throw err;
  }
}

async function recoverOne(dbDir: string, name: string, store: ObjectStore, dryRun: boolean): Promise<ManifestRecovery> {
  const cdir = path.join(dbDir, 'collections', name);
  const mdir = SegmentRegistry.manifestDir(cdir);
  const versions = await listManifestVersions(mdir);
  const r: ManifestRecovery = {
    collection: name, action: 'ok', localNewest: versions.at(-1), localGood: undefined, remoteGood: undefined,
    version: undefined, quarantined: [], detail: '',
  };
  // The newest good local version; `bad` are the unreadable files above it.
  const bad: number[] = [];
  let localGood: CollectionManifest | undefined;
  for (const v of [...versions].reverse()) {
    const m = await tryRead(path.join(mdir, manifestFileName(v)));
    if (m && m.version === v && m.collection === name) {
      localGood = m;
      break;
    }
    bad.push(v);
  }
  r.localGood = localGood?.version;
  if (bad.length === 0 && localGood) {
    r.version = localGood.version;
    r.detail = `newest manifest v${localGood.version} is sound`;
    return r;
  }
  const what = versions.length === 0 ? 'no manifest file' : `manifest file${bad.length > 1 ? 's' : ''} ${bad.map((v) => `v${v}`).join(', ')} unreadable`;

  // The newest good remote version (read newest first; a corrupt one is skipped, as open does).
  let remote: { m: CollectionManifest; bytes: Buffer } | undefined;
  try {
    for (const k of await remoteVersionsOf(store, name)) {
      if (k.version < (localGood?.version ?? 0)) break;
      try {
        const m = await readRemoteManifest(store, k.key, k.version, name);
        remote = { m, bytes: encodeManifest(m) };
        break;
      } catch (err) {
        if (!(err instanceof StratavecError) || err.code !== 'ERR_MANIFEST_CORRUPT') throw err;
      }
    }
  } catch (err) {
    if (!(err instanceof StratavecError)) throw err;
    return { ...r, action: 'failed', detail: `${what}; the object store could not be read: ${err.message}` };
  }
  r.remoteGood = remote?.m.version;
  if (!remote) {
    return { ...r, action: 'failed', detail: `${what}; the object store holds no good version${localGood ? ` at or above the newest good local one (v${localGood.version})` : ''}` };
  }
  const m = remote.m;
  // Our own lineage: the same writer epoch as the newest good local version (or, with none, the
  // very version the corrupt file is). Its WAL and segment files here are the ones it names.
  const own = localGood ? (m.writer ?? 0) === (localGood.writer ?? 0) : m.version === r.localNewest;
  r.version = m.version;
  if (!own) {
    r.action = 'adopted';
    r.detail = `${what}; the bucket's v${m.version} is writer ${m.writer ?? 0}'s${localGood ? `, not this directory's (writer ${localGood.writer ?? 0})` : ''}: adopted from the bucket (the old directory kept in superseded/)`;
    if (!dryRun) await adoptCollection(dbDir, m);
    return r;
  }
  r.action = 'restored';
  r.detail = `${what}; restored v${m.version} from the object store`;
  // Unreadable files at or above the restored version are moved aside so it is the newest.
  const aside = bad;
  const qdir = path.join(cdir, 'quarantine');
  for (const v of aside) r.quarantined.push(path.relative(dbDir, path.join(qdir, `${manifestFileName(v)}-${Date.now()}`)));
  if (dryRun) return r;
  try {
    await fsp.mkdir(qdir, { recursive: true });
    for (let i = 0; i < aside.length; i++) await fsp.rename(path.join(mdir, manifestFileName(aside[i]!)), path.join(dbDir, r.quarantined[i]!));
    await fsyncDir(qdir);
    await writeFileAtomic(path.join(mdir, manifestFileName(m.version)), remote.bytes);
    await fsyncDir(mdir);
  } catch (err) {
    throw ioError(err, `restoring the manifest of ${name}`);
  }
  return r;
}
