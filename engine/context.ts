// The parts of a Database that every collection shares, as the engine hands them down: the tier
// context (pool, tiers, statistics, leases) plus the database's filled options.

import type { TierContext } from '../tiers/segment-catalog.js';
import type { FilledOptions } from './options.js';
import type { SearchStats } from './read-path.js';

export interface EngineContext extends TierContext {
  options: FilledOptions;
  /** Every search's figures, summed (db.stats().search). */
  searchStats: SearchStats;
}
