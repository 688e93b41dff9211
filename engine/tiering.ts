// db.tiering: feeds the tiering policy the state of every segment (sizes, pins, decayed access
// frequency, budgets) and executes its plan through verified migrations. Runs on an interval and
// on budget pressure; plan() is a dry run. The policy decides; this module only gathers and acts.

import { StratavecError, isStratavecError, readOnlyError } from '../format/errors.js';
import type { AccessTracker } from '../tiers/access-stats.js';
import { DefaultTieringPolicy, type TieringPlan, type TieringPolicy, type SegmentState, type TierBudgets } from '../tiers/policy.js';
import { TIERS } from '../format/manifest.js';
import type { MoveResult } from '../tiers/migrator.js';
import type { CollectionCore } from './collection-core.js';
import type { FilledOptions } from './options.js';

export interface AppliedMove extends MoveResult {
  reason: string;
}

export interface FailedMove {
  segmentId: string;
  from: string;
  to: string;
  reason: string;
  code: string;
  message: string;
}

export interface ApplyResult {
  plan: TieringPlan;
  applied: AppliedMove[];
  failed: FailedMove[];
}

export interface TieringHost {
  collections(): Iterable<CollectionCore>;
  access: AccessTracker;
  options: FilledOptions;
}

export class Tiering {
  readonly policy: TieringPolicy;
  readonly #host: TieringHost;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<ApplyResult> | undefined;
  #runs = 0;
  #lastError: string | undefined;

  constructor(host: TieringHost) {
    this.#host = host;
    this.policy = host.options.tiering.policy ?? new DefaultTieringPolicy({ minResidencyMs: host.options.tiering.minResidencyMs });
  }

  get budgets(): TierBudgets {
    const o = this.#host.options;
    return { hotBytes: o.hotBytes, warmBytes: o.warmBytes, highWatermark: o.tiering.highWatermark, lowWatermark: o.tiering.lowWatermark };
  }

  #states(): { states: SegmentState[]; owners: Map<string, CollectionCore> } {
    const { access } = this.#host;
    const states: SegmentState[] = [];
    const owners = new Map<string, CollectionCore>();
    for (const core of this.#host.collections()) {
      for (const { seg, tier, hotBytesEstimate } of core.segmentStates()) {
        owners.set(seg.id, core);
        const snap = access.snapshot(seg.id);
        states.push({
          id: seg.id, tier, hotBytes: hotBytesEstimate,
          localBytes: seg.rawBytes,
          pinned: seg.meta.pinned, frequency: snap.frequency, lastAccess: snap.lastAccess,
          createdAt: seg.meta.createdAt, hasRemoteCopy: seg.meta.remote !== undefined,
          available: seg.error === undefined,
          residentSince: seg.movedAt,
        });
      }
    }
    return { states, owners };
  }

  /** The moves the policy would make now, each with its reason. Changes nothing. */
  async plan(): Promise<TieringPlan> {
    return this.policy.plan(this.#states().states, this.budgets, this.#host.options.clock.now());
  }

  /** Plans and executes the moves in order (demotions first). One run at a time. */
  apply(): Promise<ApplyResult> {
    if (this.#host.options.readOnly) return Promise.reject(readOnlyError('tiering apply'));
    this.#running ??= this.#apply().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  async #apply(): Promise<ApplyResult> {
    const { states, owners } = this.#states();
    const plan = this.policy.plan(states, this.budgets, this.#host.options.clock.now());
    const applied: AppliedMove[] = [];
    const failed: FailedMove[] = [];
    const byId = new Map(states.map((st) => [st.id, st]));
    for (const move of plan.moves) {
      const core = owners.get(move.segmentId);
      // A policy is user code: its moves are checked against the rules it is meant to keep.
      const refused = this.#refusal(move, byId.get(move.segmentId), core);
      if (refused || !core) {
        failed.push({ ...move, code: 'ERR_INVALID_ARGUMENT', message: refused ?? `segment ${move.segmentId} does not exist` });
        continue;
      }
      try {
        applied.push({ ...(await core.migrate(move.segmentId, move.to)), reason: move.reason });
      } catch (err) {
        if (!isStratavecError(err)) throw err;
        // One failed move (e.g. the object store is down) must not stop the others.
        failed.push({ segmentId: move.segmentId, from: move.from, to: move.to, reason: move.reason, code: err.code, message: err.message });
      }
    }
    this.#runs++;
    return { plan, applied, failed };
  }

  #refusal(move: TieringPlan['moves'][number], state: SegmentState | undefined, core: CollectionCore | undefined): string | undefined {
    if (!state || !core) return `segment ${String(move.segmentId)} does not exist`;
    if (!TIERS.includes(move.to)) return `policy ${this.policy.name} named tier ${String(move.to)}, which does not exist`;
    if (move.from !== state.tier) return `policy ${this.policy.name} planned ${move.from} -> ${move.to}, but the segment is ${state.tier}`;
    if (state.pinned !== undefined && move.to !== state.pinned) return `segment is pinned to ${state.pinned}`;
    if (!state.available) return 'segment is unavailable';
    return undefined;
  }

  /** Starts the background loop (no-op when intervalMs is 0). The timer never keeps Node alive. */
  start(): void {
    const ms = this.#host.options.tiering.intervalMs;
    if (ms === 0 || this.#timer) return;
    this.#timer = setInterval(() => this.#tick(), ms);
    this.#timer.unref();
  }

  /** Runs the policy soon, e.g. after a seal grew the local tier. */
  nudge(): void {
    if (this.#host.options.tiering.intervalMs === 0 || this.#host.options.readOnly) return;
    setImmediate(() => this.#tick()).unref();
  }

  #tick(): void {
    this.apply().then(
      (r) => {
        this.#lastError = r.failed[0] ? `${r.failed[0].code}: ${r.failed[0].message}` : undefined;
      },
      (err: unknown) => {
        this.#lastError = err instanceof StratavecError ? `${err.code}: ${err.message}` : String(err);
      },
    );
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#running?.catch(() => undefined);
  }

  stats() {
    return { policy: this.policy.name, runs: this.#runs, intervalMs: this.#host.options.tiering.intervalMs, lastError: this.#lastError };
  }
}
