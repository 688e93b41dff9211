// The parts of a Database that every collection shares, as the engine hands them down: the tier
// context (pool, tiers, statistics, leases) plus the database's filled options.

import * as path from 'node:path';
import type { TierContext } from '../tiers/segment-catalog.js';
import type { ObjectStore } from '../tiers/object-store.js';
import type { WriterFence } from '../tiers/writer-fence.js';
import { WorkerPool } from '../workers/pool.js';
import { HotTier } from '../tiers/hot.js';
import { WarmTier } from '../tiers/warm.js';
import { ColdTier } from '../tiers/cold.js';
import { AccessTracker } from '../tiers/access-stats.js';
import { TierStats } from '../tiers/tier-stats.js';
import { LeaseSet } from '../tiers/leases.js';
import { hotValue } from '../tiers/migrator.js';
import type { FilledOptions } from './options.js';
import { SearchStats } from './search-stats.js';

export interface EngineContext extends TierContext {
  options: FilledOptions;
  /** Every search's figures, summed (db.stats().search). */
  searchStats: SearchStats;
}

/** The shared parts of a database (or a read replica) in `dir`: its pool, tiers and statistics. */
/** `tmpDir`: scratch downloads (default `<dir>/tmp`; a read-only open uses one outside `dir`). */
export function createEngineContext(dir: string, options: FilledOptions, store: ObjectStore, fence: WriterFence | undefined, nudgeTiering: () => void, tmpDir = path.join(dir, 'tmp')): EngineContext {
  const pool = new WorkerPool(options.workers, { taskTimeoutMs: options.taskTimeoutMs, nice: options.workerNice });
  const access = new AccessTracker({ clock: options.clock, halfLifeMs: options.tiering.halfLifeMs });
  return {
    pool,
    hot: new HotTier(options.hotBytes, {
      ceilingBytes: options.hotBytes * options.tiering.highWatermark,
      valueOf: (id) => hotValue(access, id),
    }),
    warm: new WarmTier(path.join(dir, 'collections')),
    cold: new ColdTier(store, pool, tmpDir, { minSavings: options.compressionMinSavings }),
    access,
    tierStats: new TierStats(),
    leases: new LeaseSet(),
    tmpDir,
    options,
    nudgeTiering,
    fence,
    searchStats: new SearchStats(),
  };
}
