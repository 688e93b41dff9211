// Read-only open beside the directory's writer (option `readOnly`): each collection loaded at one
// consistent manifest version, its segments attached and its WAL replayed in memory only. It owns
// the scratch directory (under os.tmpdir(), never under the database) and the retry when the
// writer commits while we read. It must never write, rename or remove anything in the database.

import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { StratavecError, ioError } from '../format/errors.js';
import { listManifestVersions } from '../format/manifest.js';
import { CollectionCore } from './collection-core.js';
import { listCollectionNames } from './config.js';
import type { EngineContext } from './context.js';
import { SegmentRegistry } from './segment-registry.js';

/** Loads of one collection retried when the writer commits a new version meanwhile. */
const ROUNDS = 8;

/** A scratch directory of this open's own (cold segments fetched for a read, verify downloads). */
export async function makeScratchDir(): Promise<string> {
  try {
    return await fsp.mkdtemp(path.join(os.tmpdir(), 'stratavec-ro-'));
  } catch (err) {
    throw ioError(err, 'creating a scratch directory for a read-only open');
  }
}

async function newestVersion(dir: string): Promise<number | undefined> {
  return (await listManifestVersions(SegmentRegistry.manifestDir(dir))).at(-1);
}

/**
 * Every collection in `<dbDir>/collections` (directories a writer is building aside are skipped).
 * A collection is accepted only if its newest manifest version is the same after its segments
 * were attached and its WAL read as before: the writer drops WAL files and segment files only
 * after committing a newer version, so an unchanged newest version means nothing we read was cut
 * from under us. Otherwise it is loaded again.
 */
export async function openCollectionsReadOnly(ctx: EngineContext, dbDir: string): Promise<Map<string, CollectionCore>> {
  const names = await listCollectionNames(dbDir);
  const out = new Map<string, CollectionCore>();
  try {
    for (const name of names) {
      const core = await openAtStableVersion(ctx, path.join(dbDir, 'collections', name));
      if (core) out.set(name, core);
    }
  } catch (err) {
    for (const core of out.values()) await core.close().catch(() => undefined); // the load error is the one to report
    throw err;
  }
  return out;
}

async function openAtStableVersion(ctx: EngineContext, dir: string): Promise<CollectionCore | undefined> {
  let last: StratavecError | undefined;
  for (let round = 0; round < ROUNDS; round++) {
    if (round > 0) await sleep(10 * round);
    const before = await newestVersion(dir);
    // Dropped by the writer between the listing and now (it moves the directory to trash/).
    if (before === undefined && !(await fsp.stat(dir).then(() => true, () => false))) return undefined;
    let core: CollectionCore;
    try {
      core = await CollectionCore.open(ctx, dir);
    } catch (err) {
      if (!(err instanceof StratavecError)) throw err;
      last = err;
      // A file we listed was removed by a commit (manifest pruned, WAL dropped), or we read a
      // WAL frame while it was being appended: read again. Anything else is real.
      if ((await newestVersion(dir)) !== before || err.code === 'ERR_WAL_CORRUPT' || err.code === 'ERR_IO') continue;
      throw err;
    }
    if ((await newestVersion(dir)) === core.manifest.version) return core;
    await core.close();
  }
  throw last ?? new StratavecError('ERR_IO', `collection ${path.basename(dir)}: the writer committed new versions faster than a read-only open could read one (${ROUNDS} tries)`);
}
