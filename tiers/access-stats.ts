// Per-segment access statistics the tiering policy reads: an exponentially decayed access count,
// the last access time and hits per serving tier. In memory, O(1) per call. It decides nothing and
// reads time only through the injected Clock, so decay is testable without waiting.

import type { Tier } from '../format/manifest.js';
import { StratavecError } from '../format/errors.js';

/** Time source in ms. Structurally the same as engine's `Clock`, declared here so tiers/ need not import engine/. */
export interface Clock {
  now(): number;
}

export interface TierHits {
  hot: number;
  warm: number;
  cold: number;
}

export interface AccessSnapshot {
  /** Decayed access count at the time of the snapshot; 0 for a segment never seen. */
  frequency: number;
  lastAccess: number | undefined;
  hits: TierHits;
}

export interface AccessTrackerOptions {
  /** After this long without access a segment's frequency has halved. Default 10 minutes. */
  halfLifeMs?: number;
  clock: Clock;
}

export const kDefaultAccessOptions = Object.freeze({
  halfLifeMs: 10 * 60 * 1000,
});

interface Entry {
  /** Decayed count as of `at`; decayed further lazily on read, so a record costs O(1). */
  value: number;
  at: number;
  lastAccess: number;
  hits: TierHits;
}

export class AccessTracker {
  readonly halfLifeMs: number;
  readonly #clock: Clock;
  readonly #entries = new Map<string, Entry>();
  readonly #saving = new Map<string, number>();

  constructor(opts: AccessTrackerOptions) {
    if (typeof opts !== 'object' || opts === null) throw new TypeError('AccessTracker options must be an object');
    if (typeof opts.clock?.now !== 'function') throw new TypeError('clock must have a now() method');
    const halfLifeMs = opts.halfLifeMs ?? kDefaultAccessOptions.halfLifeMs;
    if (typeof halfLifeMs !== 'number') throw new TypeError(`halfLifeMs must be a number, got ${typeof halfLifeMs}`);
    if (!Number.isFinite(halfLifeMs) || halfLifeMs <= 0) {
      throw new StratavecError('ERR_INVALID_ARGUMENT', `halfLifeMs must be a positive finite number, got ${halfLifeMs}`);
    }
    this.halfLifeMs = halfLifeMs;
    this.#clock = opts.clock;
  }

  /** Segments with statistics. */
  get size(): number {
    return this.#entries.size;
  }

  /** A search or get touched the segment, served from `servedFrom`. */
  record(segmentId: string, servedFrom: Tier): void {
    if (servedFrom !== 'hot' && servedFrom !== 'warm' && servedFrom !== 'cold') {
      throw new TypeError(`servedFrom must be 'hot', 'warm' or 'cold', got ${String(servedFrom)}`);
    }
    const now = this.#clock.now();
    const e = this.#entries.get(segmentId);
    if (e === undefined) {
      const hits = { hot: 0, warm: 0, cold: 0 };
      hits[servedFrom] = 1;
      this.#entries.set(segmentId, { value: 1, at: now, lastAccess: now, hits });
      return;
    }
    e.value = this.#decayed(e, now) + 1;
    // A clock that steps back must not make old accesses count more: time only moves forward here.
    e.at = Math.max(e.at, now);
    e.lastAccess = Math.max(e.lastAccess, now);
    e.hits[servedFrom] += 1;
  }

  frequency(segmentId: string): number {
    const e = this.#entries.get(segmentId);
    return e === undefined ? 0 : this.#decayed(e, this.#clock.now());
  }

  lastAccess(segmentId: string): number | undefined {
    return this.#entries.get(segmentId)?.lastAccess;
  }

  hits(segmentId: string): TierHits {
    const h = this.#entries.get(segmentId)?.hits;
    return h === undefined ? { hot: 0, warm: 0, cold: 0 } : { ...h };
  }

  /**
   * What serving one query of the segment from hot saves over serving it in place, in relative
   * units (Migrator.hotSaving: a model of graph-search work, so equal segments weigh equal and
   * timing noise cannot make the hot tier churn).
   */
  setHotSaving(segmentId: string, saving: number): void {
    if (saving >= 0) this.#saving.set(segmentId, saving);
  }

  hotSaving(segmentId: string): number | undefined {
    return this.#saving.get(segmentId);
  }

  /** Drops a segment's statistics (it was compacted away or dropped). */
  forget(segmentId: string): void {
    this.#entries.delete(segmentId);
    this.#saving.delete(segmentId);
  }

  /** Every entry as stored (count as of `at`, undecayed), for a reader in another process to
   *  decay with decayedCount: it changes only when a segment is accessed. */
  entries(): Record<string, { value: number; at: number; lastAccess: number; hits: TierHits }> {
    const out: Record<string, { value: number; at: number; lastAccess: number; hits: TierHits }> = {};
    for (const [id, e] of this.#entries) out[id] = { value: e.value, at: e.at, lastAccess: e.lastAccess, hits: { ...e.hits } };
    return out;
  }

  snapshot(segmentId: string): AccessSnapshot {
    return { frequency: this.frequency(segmentId), lastAccess: this.lastAccess(segmentId), hits: this.hits(segmentId) };
  }

  #decayed(e: Entry, now: number): number {
    return decayedCount(e.value, e.at, now, this.halfLifeMs);
  }
}

/** A count of `value` as of `at`, decayed to `now` (halving every `halfLifeMs`). */
export function decayedCount(value: number, at: number, now: number, halfLifeMs: number): number {
  const dt = now - at;
  return dt <= 0 ? value : value * Math.pow(2, -dt / halfLifeMs);
}
