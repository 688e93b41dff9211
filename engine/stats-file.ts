// The running database's published statistics, `<dir>/stats.json`: db.stats() written every
// `statsIntervalMs` (and once at close), so an operator's tools can see the counters of the
// process that holds the lock (hit ratios, loads, migrations, uploads) without opening it.
// Written by rename from a temp file (readers never see half a file), not fsynced: it is a view,
// not data, and is never read back by the engine.

import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { TEMP_PREFIX } from '../format/fsutil.js';
import { StratavecError, ioError } from '../format/errors.js';
import { decayedCount, type AccessSnapshot, type TierHits } from '../tiers/access-stats.js';

/** Per-segment access counts as the access tracker stores them (undecayed, as of `at`). */
export interface PublishedAccess {
  halfLifeMs: number;
  segments: Record<string, { value: number; at: number; lastAccess: number; hits: TierHits }>;
}

export const STATS_FILE = 'stats.json';

export interface PublishedStats {
  pid: number;
  /** ms since the epoch (the database's clock). */
  writtenAt: number;
  /** How often it is checked while open (rewritten when a figure changed; when only the memory
   *  figures did, every MEMORY_REFRESH_TICKS checks). */
  intervalMs: number;
  /** false in the last write, made by close(). */
  open: boolean;
  stats: unknown;
  /** The running process's per-segment access statistics (see publishedAccess). */
  access?: PublishedAccess;
}

/**
 * Ticks an otherwise unchanged database waits before it rewrites the file for its memory figures
 * alone: those (the JS heap above all) move at every tick, and an idle database should not rewrite
 * its file every tick for them.
 */
export const MEMORY_REFRESH_TICKS = 6;

export class StatsPublisher {
  readonly #file: string;
  readonly #intervalMs: number;
  readonly #snapshot: () => unknown;
  readonly #now: () => number;
  readonly #access: (() => PublishedAccess) | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** The last figures written, but for the memory section: see MEMORY_REFRESH_TICKS. */
  #last = '';
  /** Ticks since the last write. */
  #unchanged = 0;
  #writing: Promise<void> = Promise.resolve();

  constructor(dir: string, intervalMs: number, snapshot: () => unknown, now: () => number, access?: () => PublishedAccess) {
    this.#access = access;
    this.#file = path.join(dir, STATS_FILE);
    this.#intervalMs = intervalMs;
    this.#snapshot = snapshot;
    this.#now = now;
  }

  start(): void {
    if (this.#intervalMs === 0) return;
    this.#publish(true);
    this.#timer = setInterval(() => this.#publish(true), this.#intervalMs);
    this.#timer.unref();
  }

  /** Stops the timer and writes the final figures (open: false). */
  async stop(): Promise<void> {
    if (this.#timer === undefined) return;
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#publish(false);
    await this.#writing;
  }

  #publish(open: boolean): void {
    let body: string;
    try {
      // A JSON copy: what is compared is what would be written.
      const parsed = JSON.parse(JSON.stringify({ stats: this.#snapshot(), access: this.#access?.() })) as Pick<PublishedStats, 'stats' | 'access'>;
      const key = JSON.stringify({ open, ...parsed }, function (this: unknown, k: string, v: unknown) {
        return k === 'memory' && this === parsed.stats ? undefined : v;
      });
      if (key === this.#last && ++this.#unchanged < MEMORY_REFRESH_TICKS) return;
      this.#last = key;
      this.#unchanged = 0;
      const doc: PublishedStats = { pid: process.pid, writtenAt: this.#now(), intervalMs: this.#intervalMs, open, stats: parsed.stats, ...(parsed.access ? { access: parsed.access } : {}) };
      body = `${JSON.stringify(doc)}\n`;
    } catch {
      return; // a snapshot that cannot be taken now: the next tick or the final write covers it
    }
    // One write at a time, in order: a slow disk must not let an older snapshot land last.
    this.#writing = this.#writing.then(async () => {
      const tmp = path.join(path.dirname(this.#file), `${TEMP_PREFIX}${STATS_FILE}-${process.pid}`);
      try {
        await fsp.writeFile(tmp, body);
        await fsp.rename(tmp, this.#file);
      } catch {
        await fsp.rm(tmp, { force: true }).catch(() => undefined); // a view only: a failed write is retried next tick
      }
    });
  }
}

/** The statistics a database's process last published in `dir`, or undefined if none. */
export async function readPublishedStats(dir: string): Promise<PublishedStats | undefined> {
  let text: string;
  try {
    text = await fsp.readFile(path.join(path.resolve(dir), STATS_FILE), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw ioError(err, `reading ${STATS_FILE}`);
  }
  try {
    return JSON.parse(text) as PublishedStats;
  } catch (err) {
    throw new StratavecError('ERR_IO', `${STATS_FILE} in ${dir} is not JSON`, { cause: err });
  }
}

/** One segment's access statistics as a published file has them, its count decayed to `now`;
 *  undefined when the file has none for it (never accessed by that process). */
export function publishedAccess(p: PublishedStats, segmentId: string, now = Date.now()): (AccessSnapshot & { halfLifeMs: number }) | undefined {
  const e = p.access?.segments[segmentId];
  if (!p.access || !e) return undefined;
  return { frequency: decayedCount(e.value, e.at, now, p.access.halfLifeMs), lastAccess: e.lastAccess, hits: { ...e.hits }, halfLifeMs: p.access.halfLifeMs };
}
