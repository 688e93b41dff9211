// One writer per object-store prefix: the epoch claim at open, the heartbeat that says the holder
// is alive, and the fence every manifest version passes on its way to the bucket. It owns the
// `_writer/` keys and the remote manifest keys' create-only writes; it must never overwrite or
// delete an object another writer made, and never decide what a manifest holds.
//
// The protocol (README "Scale past one machine"): a writer lists `_writer/epoch-*`, judges the
// newest holder alive or not by its heartbeat, and claims epoch n+1 by a conditional create
// (`If-None-Match: *`). Each manifest version is a conditional create of its own key, then a HEAD
// of `_writer/epoch-<mine+1>`: a newer claim means this writer was superseded and the version is
// not acknowledged. Claims are made one epoch at a time and never deleted, so "is there a newer
// writer" is that one HEAD.

import * as os from 'node:os';
import { randomBytes } from 'node:crypto';
import { StratavecError } from '../format/errors.js';
import type { Clock } from './access-stats.js';
import type { ObjectStore } from './object-store.js';

export const WRITER_PREFIX = '_writer/';
const EPOCH_RE = /^_writer\/epoch-(\d{12})$/;
const pad = (n: number) => String(n).padStart(12, '0');
export const epochKey = (epoch: number) => `${WRITER_PREFIX}epoch-${pad(epoch)}`;
export const heartbeatKey = (epoch: number) => `${WRITER_PREFIX}heartbeat-${pad(epoch)}`;
/** Conflicting claims retried before giving up (each round is a LIST and a create). */
const CLAIM_ROUNDS = 5;

export interface WriterClaim {
  epoch: number;
  host: string;
  pid: number;
  startedAt: number;
  nonce: string;
}

interface Heartbeat {
  epoch: number;
  at: number;
  closed?: boolean;
}

export interface FenceOptions {
  clock: Clock;
  /** Claim even if the current holder looks alive (failover when its machine is gone). */
  takeover: boolean;
  /** A holder whose heartbeat is older than this (by our clock) counts as gone. */
  staleMs: number;
}

export interface FenceStats {
  epoch: number;
  fenced: boolean;
  fencedReason: string | undefined;
  /** Clock time of the last heartbeat written, 0 before the first. */
  lastHeartbeat: number;
  heartbeatFailures: number;
  /** Manifest versions this writer created in the bucket. */
  published: number;
}

function parseJson<T>(buf: Buffer | undefined): Partial<T> | undefined {
  if (!buf) return undefined;
  try {
    const v = JSON.parse(buf.toString('utf8')) as unknown;
    return typeof v === 'object' && v !== null ? (v as Partial<T>) : undefined;
  } catch {
    return undefined; // a torn or foreign object says nothing about liveness
  }
}

/** Whether a process on this host with `pid` exists (EPERM: it exists, owned by someone else). */
function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export class WriterFence {
  readonly store: ObjectStore;
  readonly epoch: number;
  readonly #clock: Clock;
  #fenced: StratavecError | undefined;
  #lastHeartbeat = 0;
  #heartbeatFailures = 0;
  #published = 0;

  private constructor(store: ObjectStore, epoch: number, clock: Clock) {
    this.store = store;
    this.epoch = epoch;
    this.#clock = clock;
  }

  /**
   * Claims the prefix: ERR_WRITER_ACTIVE if the newest holder is alive and `takeover` is off (or
   * other openers keep winning the claim); the store's error (ERR_TIER_UNAVAILABLE ...) if it
   * cannot be reached, since a writer that cannot claim must not write.
   */
  static async claim(store: ObjectStore, opts: FenceOptions): Promise<WriterFence> {
    for (let round = 0; round < CLAIM_ROUNDS; round++) {
      const epochs = (await store.list(WRITER_PREFIX))
        .map((o) => EPOCH_RE.exec(o.key))
        .filter((m): m is RegExpExecArray => m !== null)
        .map((m) => Number(m[1]));
      const current = epochs.length === 0 ? 0 : Math.max(...epochs);
      if (current > 0 && !opts.takeover) {
        const why = await WriterFence.#liveness(store, current, opts);
        if (why) {
          throw new StratavecError('ERR_WRITER_ACTIVE',
            `${store.description} is held by writer epoch ${current} (${why}); open with takeover: true if that machine is gone`);
        }
      }
      const claim: WriterClaim = {
        epoch: current + 1, host: os.hostname(), pid: process.pid, startedAt: opts.clock.now(), nonce: randomBytes(8).toString('hex'),
      };
      try {
        await store.put(epochKey(claim.epoch), Buffer.from(JSON.stringify(claim)), { ifNoneMatch: '*' });
      } catch (err) {
        if (err instanceof StratavecError && err.code === 'ERR_OBJECT_EXISTS') continue; // another opener won it: look again
        throw err;
      }
      const fence = new WriterFence(store, claim.epoch, opts.clock);
      await fence.heartbeat();
      return fence;
    }
    throw new StratavecError('ERR_WRITER_ACTIVE', `${store.description}: other writers kept claiming the prefix first (${CLAIM_ROUNDS} rounds)`);
  }

  /** Why the holder of `epoch` counts as alive, or undefined when it is gone. */
  static async #liveness(store: ObjectStore, epoch: number, opts: FenceOptions): Promise<string | undefined> {
    const get = (key: string) => store.get(key).catch((err: unknown) => {
      if (err instanceof StratavecError && err.code === 'ERR_OBJECT_NOT_FOUND') return undefined;
      throw err;
    });
    const hb = parseJson<Heartbeat>(await get(heartbeatKey(epoch)));
    if (hb?.closed === true) return undefined;
    const claim = parseJson<WriterClaim>(await get(epochKey(epoch)));
    if (claim?.host === os.hostname() && typeof claim.pid === 'number' && claim.pid !== process.pid && !pidAlive(claim.pid)) {
      return undefined; // same machine, and its process is gone: no need to wait for staleness
    }
    const at = typeof hb?.at === 'number' ? hb.at : typeof claim?.startedAt === 'number' ? claim.startedAt : undefined;
    if (at === undefined) return 'no readable heartbeat yet';
    const age = opts.clock.now() - at;
    if (age > opts.staleMs) return undefined;
    return `host ${claim?.host ?? '?'} pid ${claim?.pid ?? '?'}, heartbeat ${Math.max(0, Math.round(age))} ms ago, stale after ${opts.staleMs} ms`;
  }

  /**
   * A fence for a database opened while the store could not be reached (option `offline`): it
   * holds no claim, so every write, commit and remote delete is refused with the store's error
   * (ERR_TIER_UNAVAILABLE) until the database is reopened and claims the prefix.
   */
  static unclaimed(store: ObjectStore, clock: Clock, cause: StratavecError): WriterFence {
    const fence = new WriterFence(store, 0, clock);
    fence.#fenced = new StratavecError(cause.code,
      `${store.description} could not be reached at open, so this database holds no writer claim and writes nothing (reopen once the store answers): ${cause.message}`, { cause });
    return fence;
  }

  /** A fence that holds no claim and refuses every commit with `refusal` (a read-only open). */
  static refusing(store: ObjectStore, clock: Clock, refusal: StratavecError): WriterFence {
    const fence = new WriterFence(store, 0, clock);
    fence.#fenced = refusal;
    return fence;
  }

  /** Opened without a claim (WriterFence.unclaimed). */
  get unclaimed(): boolean {
    return this.epoch === 0;
  }

  get fenced(): boolean {
    return this.#fenced !== undefined;
  }

  /** Throws ERR_WRITER_FENCED once this writer is known to be superseded. */
  check(): void {
    if (this.#fenced) throw new StratavecError(this.#fenced.code, this.#fenced.message, { cause: this.#fenced.cause });
  }

  #fence(reason: string): StratavecError {
    this.#fenced ??= new StratavecError('ERR_WRITER_FENCED',
      `writer epoch ${this.epoch} on ${this.store.description} was fenced: ${reason}; it stops writing (reopen to continue from the bucket's state)`);
    return this.#fenced;
  }

  /** Asks the bucket whether a newer epoch exists; fences this writer (and throws) if so. */
  async assertCurrent(): Promise<void> {
    this.check();
    if (await this.store.head(epochKey(this.epoch + 1))) throw this.#fence(`writer epoch ${this.epoch + 1} claimed the prefix`);
  }

  /**
   * Creates manifest version `key` in the bucket. 'ok': created, and this writer was still the
   * newest after it, so the version may be acknowledged. 'taken': the key holds another object,
   * written by an older or our own earlier epoch (a commit whose outcome was lost): the caller
   * commits under the next version number instead. Throws ERR_WRITER_FENCED when superseded.
   */
  async publish(key: string, bytes: Uint8Array): Promise<'ok' | 'taken'> {
    this.check();
    try {
      await this.store.put(key, bytes, { ifNoneMatch: '*' });
    } catch (err) {
      if (!(err instanceof StratavecError) || err.code !== 'ERR_OBJECT_EXISTS') throw err;
      await this.assertCurrent();
      return 'taken';
    }
    await this.assertCurrent();
    this.#published++;
    return 'ok';
  }

  /** Refreshes the heartbeat and learns about a newer writer; failures are counted, not thrown. */
  async heartbeat(closed = false): Promise<void> {
    if (this.#fenced) return;
    const at = this.#clock.now();
    const hb: Heartbeat = closed ? { epoch: this.epoch, at, closed } : { epoch: this.epoch, at };
    try {
      await this.store.put(heartbeatKey(this.epoch), Buffer.from(JSON.stringify(hb)));
      this.#lastHeartbeat = at;
      if (!closed) await this.assertCurrent();
    } catch (err) {
      if (err instanceof StratavecError && err.code === 'ERR_WRITER_FENCED') return;
      this.#heartbeatFailures++;
    }
  }

  stats(): FenceStats {
    return {
      epoch: this.epoch, fenced: this.fenced, fencedReason: this.#fenced?.message,
      lastHeartbeat: this.#lastHeartbeat, heartbeatFailures: this.#heartbeatFailures, published: this.#published,
    };
  }
}
