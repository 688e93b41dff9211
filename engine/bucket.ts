// Opening a writer on a shared bucket: which collections the bucket holds (the newest manifest
// version of each) and how each is reconciled with the local directory. Adopted from the bucket
// (an empty directory: a restore; or the local copy was superseded by a newer writer), kept (in
// step), or published again (the local directory is ahead). It never deletes local data: a
// superseded local collection is moved to `superseded/` with its WAL, for an operator to inspect.

import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { StratavecError, ioError } from '../format/errors.js';
import { TEMP_PREFIX, fsyncDir } from '../format/fsutil.js';
import { decodeManifest, MAX_MANIFEST_BYTES, type CollectionManifest } from '../format/manifest.js';
import { COLLECTION_NAME_RE } from '../format/names.js';
import type { ObjectStore } from '../tiers/object-store.js';
import { SegmentRegistry } from './segment-registry.js';

const MANIFEST_KEY_RE = /^([^/]+)\/manifest\/(\d{12})\.manifest$/;

/** Collection name -> newest manifest version in the bucket (one LIST of the whole prefix). */
export async function remoteManifestVersions(store: ObjectStore): Promise<Map<string, { version: number; key: string }>> {
  const out = new Map<string, { version: number; key: string }>();
  for (const o of await store.list('')) {
    const m = MANIFEST_KEY_RE.exec(o.key);
    if (!m || !COLLECTION_NAME_RE.test(m[1]!)) continue;
    const version = Number(m[2]);
    if ((out.get(m[1]!)?.version ?? 0) < version) out.set(m[1]!, { version, key: o.key });
  }
  return out;
}

/** Every manifest version of `collection` in the bucket (one LIST), newest first. */
export async function remoteVersionsOf(store: ObjectStore, collection: string): Promise<{ version: number; key: string }[]> {
  const out: { version: number; key: string }[] = [];
  for (const o of await store.list(`${collection}/manifest/`)) {
    const m = MANIFEST_KEY_RE.exec(o.key);
    if (m && m[1] === collection) out.push({ version: Number(m[2]), key: o.key });
  }
  return out.sort((a, b) => b.version - a.version);
}

/** One remote manifest version of `collection`, CRC- and schema-checked; ERR_MANIFEST_CORRUPT
 *  names the key (a torn or foreign object, or one naming another collection or version). */
export async function readRemoteManifest(store: ObjectStore, key: string, version: number, collection: string): Promise<CollectionManifest> {
  const buf = await store.get(key);
  if (buf.length > MAX_MANIFEST_BYTES) throw new StratavecError('ERR_MANIFEST_CORRUPT', `remote manifest ${key} is over the ${MAX_MANIFEST_BYTES}-byte cap`);
  let m: CollectionManifest;
  try {
    m = decodeManifest(buf, key);
  } catch (err) {
    if (err instanceof StratavecError && err.code === 'ERR_MANIFEST_CORRUPT') throw err;
    throw new StratavecError('ERR_MANIFEST_CORRUPT', `remote manifest ${key} cannot be decoded`, { cause: err });
  }
  if (m.version !== version) throw new StratavecError('ERR_MANIFEST_CORRUPT', `remote manifest ${key} holds version ${m.version}`);
  if (m.collection !== collection) throw new StratavecError('ERR_MANIFEST_CORRUPT', `remote manifest ${key} belongs to collection ${JSON.stringify(m.collection)}`);
  return m;
}

export interface Reconciliation {
  /** Replace the local collection (if any) by the bucket's newest version. */
  adopt: boolean;
  /** Commit the local state as a new version so the bucket has it. */
  publish: boolean;
  /** Commits must go above this version (the bucket holds it). */
  floor: number;
}

/**
 * What to do with one collection. The writer epoch recorded in each version decides whose state
 * is newer: a newer writer's versions win over anything local; a local directory of the same (or
 * a newer) lineage wins, and is published if the bucket lacks its newest version.
 */
export function reconcile(local: CollectionManifest | undefined, remote: CollectionManifest | undefined): Reconciliation {
  if (!remote) return { adopt: false, publish: true, floor: 0 };
  if (!local) return { adopt: true, publish: false, floor: remote.version };
  if ((remote.writer ?? 0) > (local.writer ?? 0)) return { adopt: true, publish: false, floor: remote.version };
  const inStep = remote.version === local.version && remote.writer === local.writer;
  return { adopt: false, publish: !inStep, floor: remote.version };
}

/**
 * The local form of a bucket manifest: every segment cold (its remote copy is the only one here;
 * id stubs are rebuilt from it when the collection opens). A segment the bucket has no copy of
 * (sealed, never uploaded before its writer went away) stays listed, and opens unavailable:
 * reads that need it fail with ERR_SEGMENT_UNAVAILABLE rather than answer without its rows.
 */
export function adoptedManifest(remote: CollectionManifest): CollectionManifest {
  return {
    ...remote,
    segments: remote.segments.map((s) => {
      const { local: _local, ...rest } = s;
      return { ...rest, tier: 'cold' as const };
    }),
  };
}

/** Writes the adopted collection directory aside and renames it into place (moving a superseded one out first). */
export async function adoptCollection(dbDir: string, remote: CollectionManifest): Promise<void> {
  const colDir = path.join(dbDir, 'collections');
  const finalDir = path.join(colDir, remote.collection);
  const tmpDir = path.join(colDir, `${TEMP_PREFIX}${remote.collection}-${randomBytes(4).toString('hex')}`);
  try {
    await SegmentRegistry.initialize(tmpDir, adoptedManifest(remote));
    if (await fsp.stat(finalDir).then(() => true, () => false)) {
      const aside = path.join(dbDir, 'superseded');
      await fsp.mkdir(aside, { recursive: true });
      await fsp.rename(finalDir, path.join(aside, `${remote.collection}-${Date.now()}-${randomBytes(3).toString('hex')}`));
      await fsyncDir(aside);
    }
    await fsp.rename(tmpDir, finalDir);
    await fsyncDir(colDir);
  } catch (err) {
    await fsp.rm(tmpDir, { recursive: true, force: true });
    throw ioError(err, `adopting collection ${remote.collection} from the bucket`);
  }
}
