// The tiering policy: from per-segment sizes, access statistics, pins and tier budgets, decide which
// segments move between hot, warm and cold, each move with a reason. Pure and deterministic: it reads
// no clock (the caller passes `now`), touches no file and never migrates anything (the engine does).
//
// How DefaultTieringPolicy decides (quoted by the README):
//
//  Usage. hot usage = the `hotBytes` of hot segments (memory); local usage = the `localBytes` of hot
//  and warm segments (a hot segment keeps its file). A move's effect on both is counted as soon as it
//  is planned, so every later step sees the usage the earlier moves leave behind.
//
//  1. Unavailable segments (`available: false`) never move; they count where they are.
//  2. Pins first: an available segment pinned to a tier it is not in moves there ("pinned to X").
//     Pinned segments are never chosen by any later step. Their bytes count against the budgets; if
//     pinned and unavailable segments alone exceed a budget's high watermark the reasons and
//     `notes` say so, and pins are still kept.
//  3. Hot pressure: if hot usage > highWatermark * hotBytes, hot segments are demoted to warm, least
//     valuable first, until hot usage <= lowWatermark * hotBytes (or nothing movable is left).
//     Least valuable = lowest decayed frequency; ties: oldest last touch (lastAccess, or createdAt
//     for a segment never accessed), then id.
//  4. Idle (only if `coldAfterIdleMs` is set): a segment headed for warm whose last touch is more
//     than `coldAfterIdleMs` ago goes cold even without pressure. Idle segments are never promoted.
//  5. Warm pressure: if local usage > highWatermark * warmBytes, segments are demoted to cold, least
//     valuable first, until local usage <= lowWatermark * warmBytes, warm and hot ones alike (a hot
//     segment goes straight to cold; one step 3 just demoted makes one move, hot -> cold). Value,
//     not tier: a hot segment nothing searches any more must not keep its place while a warm one
//     searched every pass goes cold (a hot tier with room never demotes it otherwise).
//     Among equal frequencies a segment that already has a remote copy goes first (no upload),
//     then a warm one before a hot one (no loaded index dropped); one without a remote copy can
//     still go, the engine uploads it before releasing the local file.
//  6. Give-back: greedy demotion overshoots when a large segment goes last, so demotions that turn
//     out unnecessary are undone, most valuable first, while usage stays <= the low watermark: first
//     the cold demotions of step 5 (local usage), then the warm demotions of step 3 (hot usage).
//  7. Promotion: cold segments with frequency >= promoteMinFrequency go warm, most valuable first,
//     each only if local usage stays <= the low watermark; then warm ones (including those just
//     promoted from cold, whose one move becomes cold -> hot) go hot while hot usage stays <= the
//     low watermark. Promotion never starts pressure (low <= high), so nothing it does is undone by
//     the next plan.
//  Minimum residency: a segment that entered its tier less than `minResidencyMs` ago (rehydrated
//  or loaded into hot: `residentSince`) is not chosen by steps 3-5, so what a read just brought in
//  is not sent back by the next pass; the notes say when that leaves a budget over its watermark.
//  8. Every plan is a fixed point: applying it and planning again at the same `now` plans nothing
//     (unless pins or unavailable segments alone exceed a budget, when there is nothing to move).
//     Any segment not promoted was rejected at a usage no higher than the final one.
//  9. Deterministic: the same input in any order gives the same plan (explicit tie-breaks on id,
//     compared by UTF-16 code units, never by locale). At most one move per segment, never to the
//     tier it is in. Moves are ordered demotions first, so executing them in order frees space
//     before using it; within each group pins come first, then the order decided.

import type { Tier } from '../format/manifest.js';
import { StratavecError } from '../format/errors.js';

export type { Tier };

export interface SegmentState {
  id: string;
  tier: Tier;
  /** Memory the segment takes (or would take) when hot: vectors plus its HNSW index. */
  hotBytes: number;
  /** Size of its local file (the one it has when hot or warm, or would have once rehydrated). */
  localBytes: number;
  pinned?: Tier | undefined;
  /** Decayed access count (AccessTracker.frequency) at `now`. */
  frequency: number;
  lastAccess?: number | undefined;
  createdAt: number;
  hasRemoteCopy: boolean;
  /** false: no verified copy can be reached right now; such a segment is never moved. */
  available: boolean;
  /** When it entered its current tier (rehydrated, promoted, demoted; else created). A segment
   *  younger in its tier than minResidencyMs is not demoted: no ping-pong with the read path. */
  residentSince?: number | undefined;
}

export interface TierBudgets {
  hotBytes: number;
  warmBytes: number;
  /** Fraction of a budget above which demotion starts. */
  highWatermark: number;
  /** Fraction of a budget demotion brings usage down to, and promotion never goes above. */
  lowWatermark: number;
}

export type MoveCause = 'pin' | 'hot-pressure' | 'local-pressure' | 'idle' | 'promotion';

export interface PlannedMove {
  segmentId: string;
  from: Tier;
  to: Tier;
  /** Human-readable and specific: which budget, how full, which watermark, the segment's numbers. */
  reason: string;
  /** What decided the move (the last step that moved it, e.g. 'local-pressure' for hot -> cold after hot pressure). */
  cause: MoveCause;
  /** Bytes the move copies or releases: `hotBytes` between hot and warm, `localBytes` when cold is involved. */
  bytes: number;
}

export interface TierUsage {
  /** Usage now. */
  bytes: number;
  budget: number;
  /** Usage once every move of the plan is done. */
  after: number;
}

export interface TieringPlan {
  moves: PlannedMove[];
  /** `hot`: memory of hot segments; `warm`: local disk used by hot and warm segment files. */
  usage: { hot: TierUsage; warm: TierUsage };
  /** Conditions the plan cannot fix, e.g. pinned segments alone exceeding a budget. */
  notes: string[];
}

/** The strategy users swap: it only decides; the engine validates and executes the moves. */
export interface TieringPolicy {
  readonly name: string;
  plan(segments: readonly SegmentState[], budgets: TierBudgets, now: number): TieringPlan;
}

export interface DefaultPolicyOptions {
  /** A warm or cold segment is promoted only at or above this decayed frequency. Default 2. */
  promoteMinFrequency?: number;
  /** If set, warm segments not touched for longer than this go cold without pressure. Default unset. */
  coldAfterIdleMs?: number | undefined;
  /** A segment that entered its tier less than this long ago (a read rehydrated it, it was
   *  promoted) is not demoted, even under pressure; the plan's notes say when that leaves a budget
   *  over its high watermark. Default 60 s. */
  minResidencyMs?: number;
}

export const kDefaultPolicyOptions = Object.freeze({
  // With the default 10-minute half-life: about two accesses in the last few minutes, or a steady
  // rate of one access every seven minutes.
  promoteMinFrequency: 2,
  coldAfterIdleMs: undefined as number | undefined,
  minResidencyMs: 60_000,
});

export const kDefaultBudgetsFraction = Object.freeze({ highWatermark: 0.9, lowWatermark: 0.7 });

const RANK: Record<Tier, number> = { cold: 0, warm: 1, hot: 2 };

interface Step {
  cause: MoveCause;
  from: Tier;
  reason: string;
  seq: number;
}

/** One segment's state while planning: where it is headed and the steps that sent it there. */
interface Work {
  s: SegmentState;
  target: Tier;
  /** Neither pinned nor unavailable: later steps may choose it. */
  movable: boolean;
  steps: Step[];
}

/** Usage as planned so far; every target change goes through here so the totals never drift. */
class Ledger {
  hot = 0;
  local = 0;
  #seq = 0;

  constructor(works: readonly Work[]) {
    for (const w of works) this.#add(w, 1);
  }

  move(w: Work, to: Tier, cause: MoveCause, reason: string): void {
    w.steps.push({ cause, from: w.target, reason, seq: this.#seq++ });
    this.#set(w, to);
  }

  undo(w: Work): void {
    const step = w.steps.pop();
    if (step === undefined) throw new Error('tiering policy: undo without a step');
    this.#set(w, step.from);
  }

  #set(w: Work, to: Tier): void {
    this.#add(w, -1);
    w.target = to;
    this.#add(w, 1);
  }

  #add(w: Work, sign: 1 | -1): void {
    if (w.target === 'hot') this.hot += sign * w.s.hotBytes;
    if (w.target !== 'cold') this.local += sign * w.s.localBytes;
  }
}

function cmp(a: number | string, b: number | string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function lastTouch(s: SegmentState): number {
  return s.lastAccess ?? s.createdAt;
}

/** Least valuable first: lowest frequency, then oldest last touch, then id. */
function leastValuable(a: Work, b: Work): number {
  return cmp(a.s.frequency, b.s.frequency) || cmp(lastTouch(a.s), lastTouch(b.s)) || cmp(a.s.id, b.s.id);
}

function mostValuable(a: Work, b: Work): number {
  return leastValuable(b, a);
}

/** For demotion to cold: as leastValuable, but at equal frequency one with a remote copy first,
 *  then one headed for warm before one headed for hot. */
function cheapestToCold(a: Work, b: Work): number {
  return cmp(a.s.frequency, b.s.frequency)
    || cmp(Number(b.s.hasRemoteCopy), Number(a.s.hasRemoteCopy))
    || cmp(RANK[a.target], RANK[b.target])
    || cmp(lastTouch(a.s), lastTouch(b.s))
    || cmp(a.s.id, b.s.id);
}

function fmtPct(used: number, budget: number): string {
  if (budget <= 0) return used > 0 ? 'over 100%' : '0%';
  return `${Number(((used / budget) * 100).toFixed(1))}%`;
}

function fmtFraction(f: number): string {
  return `${Number((f * 100).toFixed(1))}%`;
}

function fmtBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${Number(v.toFixed(1))} ${units[i]}`;
}

function fmtDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${Math.round(ms / 1000)}s`;
  if (ms < 3_600_000) return `${Math.round(ms / 60_000)}m`;
  if (ms < 48 * 3_600_000) return `${Number((ms / 3_600_000).toFixed(1))}h`;
  return `${Number((ms / 86_400_000).toFixed(1))}d`;
}

function fmtFreq(f: number): string {
  return String(f >= 0.01 || f === 0 ? Number(f.toFixed(2)) : Number(f.toPrecision(2)));
}

function finiteNumber(what: string, v: unknown, min: number): number {
  if (typeof v !== 'number') throw new TypeError(`${what} must be a number, got ${typeof v}`);
  if (!Number.isFinite(v) || v < min) {
    throw new StratavecError('ERR_INVALID_ARGUMENT', `${what} must be a finite number >= ${min}, got ${v}`);
  }
  return v;
}

function isTier(v: unknown): v is Tier {
  return v === 'hot' || v === 'warm' || v === 'cold';
}

function checkBudgets(b: TierBudgets): void {
  if (typeof b !== 'object' || b === null) throw new TypeError('budgets must be an object');
  finiteNumber('budgets.hotBytes', b.hotBytes, 0);
  finiteNumber('budgets.warmBytes', b.warmBytes, 0);
  finiteNumber('budgets.highWatermark', b.highWatermark, 0);
  finiteNumber('budgets.lowWatermark', b.lowWatermark, 0);
  if (b.highWatermark > 1 || b.lowWatermark > b.highWatermark) {
    throw new StratavecError('ERR_INVALID_ARGUMENT',
      `watermarks must satisfy 0 <= low <= high <= 1, got low ${b.lowWatermark}, high ${b.highWatermark}`);
  }
}

function checkSegments(segments: readonly SegmentState[]): void {
  if (!Array.isArray(segments)) throw new TypeError('segments must be an array');
  const seen = new Set<string>();
  for (const s of segments) {
    if (typeof s?.id !== 'string') throw new TypeError('segment id must be a string');
    if (seen.has(s.id)) throw new StratavecError('ERR_INVALID_ARGUMENT', `segment ${s.id} appears twice in the tiering input`);
    seen.add(s.id);
    if (!isTier(s.tier)) throw new TypeError(`segment ${s.id}: tier must be 'hot', 'warm' or 'cold'`);
    if (s.pinned !== undefined && !isTier(s.pinned)) throw new TypeError(`segment ${s.id}: pinned must be a tier or undefined`);
    // A NaN here would make the sort order, and so the plan, depend on input order.
    finiteNumber(`segment ${s.id} hotBytes`, s.hotBytes, 0);
    finiteNumber(`segment ${s.id} localBytes`, s.localBytes, 0);
    finiteNumber(`segment ${s.id} frequency`, s.frequency, 0);
    finiteNumber(`segment ${s.id} createdAt`, s.createdAt, -Infinity);
    if (s.lastAccess !== undefined) finiteNumber(`segment ${s.id} lastAccess`, s.lastAccess, -Infinity);
    if (s.residentSince !== undefined) finiteNumber(`segment ${s.id} residentSince`, s.residentSince, -Infinity);
  }
}

export class DefaultTieringPolicy implements TieringPolicy {
  readonly name: string = 'default';
  readonly promoteMinFrequency: number;
  readonly coldAfterIdleMs: number | undefined;
  readonly minResidencyMs: number;

  constructor(options: DefaultPolicyOptions = {}) {
    if (typeof options !== 'object' || options === null) throw new TypeError('policy options must be an object');
    this.promoteMinFrequency = options.promoteMinFrequency === undefined
      ? kDefaultPolicyOptions.promoteMinFrequency
      : finiteNumber('promoteMinFrequency', options.promoteMinFrequency, 0);
    this.coldAfterIdleMs = options.coldAfterIdleMs === undefined
      ? kDefaultPolicyOptions.coldAfterIdleMs
      : finiteNumber('coldAfterIdleMs', options.coldAfterIdleMs, 0);
    this.minResidencyMs = options.minResidencyMs === undefined
      ? kDefaultPolicyOptions.minResidencyMs
      : finiteNumber('minResidencyMs', options.minResidencyMs, 0);
  }

  plan(segments: readonly SegmentState[], budgets: TierBudgets, now: number): TieringPlan {
    checkSegments(segments);
    checkBudgets(budgets);
    finiteNumber('now', now, -Infinity);

    const works: Work[] = segments
      .map((s) => ({ s, target: s.tier, movable: s.available && s.pinned === undefined, steps: [] as Step[] }))
      .sort((a, b) => cmp(a.s.id, b.s.id));
    const ledger = new Ledger(works);
    const usageBefore = { hot: ledger.hot, local: ledger.local };
    const highHot = budgets.highWatermark * budgets.hotBytes;
    const lowHot = budgets.lowWatermark * budgets.hotBytes;
    const highLocal = budgets.highWatermark * budgets.warmBytes;
    const lowLocal = budgets.lowWatermark * budgets.warmBytes;
    const high = fmtFraction(budgets.highWatermark);
    const low = fmtFraction(budgets.lowWatermark);
    const notes: string[] = [];
    const idleFor = (s: SegmentState): number => Math.max(0, now - lastTouch(s));
    const isIdle = (s: SegmentState): boolean => this.coldAfterIdleMs !== undefined && idleFor(s) > this.coldAfterIdleMs;
    const stats = (s: SegmentState): string => `freq ${fmtFreq(s.frequency)}, idle ${fmtDuration(idleFor(s))}`;
    const settled = (w: Work): boolean => w.s.residentSince === undefined || now - w.s.residentSince >= this.minResidencyMs;
    const young = new Set<string>();
    const demotable = (w: Work): boolean => {
      if (!w.movable) return false;
      if (settled(w)) return true;
      young.add(w.s.id);
      return false;
    };

    // Pins. What cannot move (pinned once moved, unavailable where it is) may alone exceed a budget.
    let fixedHot = 0;
    let fixedLocal = 0;
    for (const w of works) {
      if (w.movable) continue;
      const at = w.s.available ? (w.s.pinned as Tier) : w.s.tier;
      if (at === 'hot') fixedHot += w.s.hotBytes;
      if (at !== 'cold') fixedLocal += w.s.localBytes;
    }
    const hotExcess = fixedHot > highHot
      ? `pinned and unavailable segments alone use ${fmtPct(fixedHot, budgets.hotBytes)} of the hot budget (> ${high} high watermark); pins are kept`
      : undefined;
    const localExcess = fixedLocal > highLocal
      ? `pinned and unavailable segments alone use ${fmtPct(fixedLocal, budgets.warmBytes)} of the warm (local disk) budget (> ${high} high watermark); pins are kept`
      : undefined;
    if (hotExcess !== undefined) notes.push(hotExcess);
    if (localExcess !== undefined) notes.push(localExcess);
    for (const w of works) {
      const pin = w.s.pinned;
      if (!w.s.available || pin === undefined || pin === w.s.tier) continue;
      const parts = [`pinned to ${pin}`];
      if (pin === 'hot' && hotExcess !== undefined) parts.push(hotExcess);
      if (pin !== 'cold' && localExcess !== undefined) parts.push(localExcess);
      ledger.move(w, pin, 'pin', parts.join('; '));
    }

    // Hot pressure: demote to warm.
    const hotDemoted: Work[] = [];
    if (ledger.hot > highHot) {
      const level = `hot tier at ${fmtPct(ledger.hot, budgets.hotBytes)} of budget (${fmtBytes(ledger.hot)} of ${fmtBytes(budgets.hotBytes)}, > ${high} high watermark)`;
      for (const w of works.filter((x) => x.target === 'hot' && demotable(x)).sort(leastValuable)) {
        if (ledger.hot <= lowHot) break;
        ledger.move(w, 'warm', 'hot-pressure', `${level}: demoting least used to warm until <= ${low} low watermark (${stats(w.s)})`);
        hotDemoted.push(w);
      }
    }

    // Idle: what is headed for warm and untouched too long goes cold.
    if (this.coldAfterIdleMs !== undefined) {
      for (const w of works) {
        if (w.target !== 'warm' || !isIdle(w.s) || !settled(w) || !w.movable) continue;
        ledger.move(w, 'cold', 'idle',
          `idle ${fmtDuration(idleFor(w.s))} > coldAfterIdleMs ${fmtDuration(this.coldAfterIdleMs)}: demoting to cold without budget pressure (freq ${fmtFreq(w.s.frequency)})`);
      }
    }

    // Warm (local disk) pressure: demote to cold by value, warm and hot alike.
    const coldDemoted: Work[] = [];
    if (ledger.local > highLocal) {
      const level = `local disk at ${fmtPct(ledger.local, budgets.warmBytes)} of warm budget (${fmtBytes(ledger.local)} of ${fmtBytes(budgets.warmBytes)}, > ${high} high watermark)`;
      for (const w of works.filter((x) => x.target !== 'cold' && demotable(x)).sort(cheapestToCold)) {
        if (ledger.local <= lowLocal) break;
        const copy = w.s.hasRemoteCopy ? 'remote copy exists' : 'needs upload first';
        const from = w.target === 'hot' ? '; straight from hot' : '';
        ledger.move(w, 'cold', 'local-pressure',
          `${level}: demoting least used to cold until <= ${low} low watermark (${stats(w.s)}; ${copy}${from})`);
        coldDemoted.push(w);
      }
    }

    // Give-back. Cold demotions first: restoring one that was hot adds at most what step 3 left in
    // memory, so it cannot start hot pressure. Then the hot demotions still headed for warm.
    for (const w of [...coldDemoted].sort(mostValuable)) {
      if (ledger.local + w.s.localBytes <= lowLocal) ledger.undo(w);
    }
    for (const w of [...hotDemoted].sort(mostValuable)) {
      if (w.target !== 'warm' || w.steps.at(-1)?.cause !== 'hot-pressure') continue;
      if (ledger.hot + w.s.hotBytes <= lowHot) ledger.undo(w);
    }

    // Promotion, never above the low watermark.
    const frequentEnough = (s: SegmentState): string =>
      `freq ${fmtFreq(s.frequency)} >= promoteMinFrequency ${fmtFreq(this.promoteMinFrequency)}`;
    const promotable = (w: Work): boolean => w.movable && w.s.frequency >= this.promoteMinFrequency && !isIdle(w.s);
    for (const w of works.filter((x) => promotable(x) && x.s.tier === 'cold' && x.target === 'cold').sort(mostValuable)) {
      const after = ledger.local + w.s.localBytes;
      if (after > lowLocal) continue;
      ledger.move(w, 'warm', 'promotion',
        `${frequentEnough(w.s)}: promoting to warm (local disk ${fmtPct(ledger.local, budgets.warmBytes)} -> ${fmtPct(after, budgets.warmBytes)} of warm budget, within ${low} low watermark)`);
    }
    // Hot-origin segments headed for warm were already offered their place back above.
    for (const w of works.filter((x) => promotable(x) && x.s.tier !== 'hot' && x.target === 'warm').sort(mostValuable)) {
      const after = ledger.hot + w.s.hotBytes;
      if (after > lowHot) continue;
      const reason = `promoting to hot (hot tier ${fmtPct(ledger.hot, budgets.hotBytes)} -> ${fmtPct(after, budgets.hotBytes)} of budget, within ${low} low watermark)`;
      ledger.move(w, 'hot', 'promotion',
        w.steps.length > 0 ? `then ${reason}` : `${frequentEnough(w.s)}: ${reason}`);
    }

    if (young.size > 0 && (ledger.hot > highHot || ledger.local > highLocal)) {
      notes.push(`a budget stays above its ${high} high watermark: ${young.size} segment(s) entered their tier less than minResidencyMs ${fmtDuration(this.minResidencyMs)} ago and are not demoted yet`);
    }

    const moves: (PlannedMove & { seq: number; up: boolean })[] = [];
    for (const w of works) {
      if (w.target === w.s.tier) continue;
      const first = w.steps[0];
      const last = w.steps.at(-1);
      if (first === undefined || last === undefined) throw new Error(`tiering policy: segment ${w.s.id} moved without a step`);
      const from = w.s.tier;
      const to = w.target;
      moves.push({
        segmentId: w.s.id,
        from,
        to,
        reason: w.steps.map((st) => st.reason).join('; '),
        cause: last.cause,
        bytes: from === 'cold' || to === 'cold' ? w.s.localBytes : w.s.hotBytes,
        seq: first.seq,
        up: RANK[to] > RANK[from],
      });
    }
    moves.sort((a, b) => cmp(Number(a.up), Number(b.up)) || cmp(a.seq, b.seq));

    return {
      moves: moves.map(({ seq: _seq, up: _up, ...m }) => m),
      usage: {
        hot: { bytes: usageBefore.hot, budget: budgets.hotBytes, after: ledger.hot },
        warm: { bytes: usageBefore.local, budget: budgets.warmBytes, after: ledger.local },
      },
      notes,
    };
  }
}
