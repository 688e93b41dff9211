// Tier-moving commands: `migrate` (verified moves with progress; refuses pinned segments unless
// --force; `--to hot` pins) and `tiering plan|apply`. Hot is the memory of the process serving
// queries: a move to hot made in this short-lived process would be gone when it exits, so `--to
// hot` records a pin instead and `tiering apply` leaves promotions to the serving process.
// Ctrl-C stops after the move in flight; the summary is printed and the lock released.

import { StratavecError, type Database, type SegmentInfo } from '../engine/index.js';
import { UsageError, expectPositionals, flag, str } from './args.js';
import { out, outJson, note, bytes, duration, interrupted, Progress } from './output.js';
import { withDb } from './inspect.js';
import type { Ctx } from './args.js';

type Tier = 'hot' | 'warm' | 'cold';

/** Expands `all`, `collection:NAME` and plain segment ids; an unknown one fails before any move. */
function resolveTargets(db: Database, targets: string[]): SegmentInfo[] {
  const all = db.listCollections().flatMap((name) => db.collection(name).segments());
  const out = new Map<string, SegmentInfo>();
  for (const t of targets) {
    const matched = t === 'all' ? all : t.startsWith('collection:') ? all.filter((s) => s.collection === t.slice(11)) : all.filter((s) => s.id === t);
    if (matched.length === 0 && t !== 'all') throw new StratavecError('ERR_SEGMENT_NOT_FOUND', `no segment matches ${JSON.stringify(t)} (nothing was moved)`);
    for (const s of matched) out.set(s.id, s);
  }
  return [...out.values()];
}

interface MoveOutcome {
  segmentId: string;
  from: string;
  to: string;
  /** moved; refused (pinned elsewhere, no --force); failed; skipped (Ctrl-C before it started). */
  result: 'moved' | 'refused' | 'failed' | 'skipped';
  bytes: number;
  ms: number;
  pinned?: string;
  code?: string;
  message?: string;
}

interface Move {
  seg: SegmentInfo;
  to: Tier;
  /** Record a pin to `to` (and move there) instead of a plain move. */
  pin: boolean;
  reason?: string;
}

/** Runs moves one at a time with progress; stops between moves on Ctrl-C. */
async function runMoves(db: Database, moves: Move[], force: boolean): Promise<{ outcomes: MoveOutcome[]; seconds: number }> {
  const progress = new Progress(moves.length, moves.reduce((n, m) => n + m.seg.bytes, 0));
  const outcomes: MoveOutcome[] = [];
  const t0 = performance.now();
  for (const [i, m] of moves.entries()) {
    const { seg, to } = m;
    const base = { segmentId: seg.id, from: seg.tier, to, ...(seg.pinned ? { pinned: seg.pinned } : {}) };
    const prefix = `[${i + 1}/${moves.length}] ${seg.id} ${seg.tier} -> ${to}`;
    if (interrupted()) {
      outcomes.push({ ...base, result: 'skipped', bytes: 0, ms: 0 });
      continue;
    }
    if (seg.pinned !== undefined && seg.pinned !== to && !force) {
      outcomes.push({ ...base, result: 'refused', bytes: 0, ms: 0, code: 'PINNED', message: `pinned to ${seg.pinned}; --force moves it (and re-pins it to ${to}), unpin releases it` });
      note(`${prefix}: REFUSED, pinned to ${seg.pinned} (--force to move it anyway)`);
      progress.advance(0);
      continue;
    }
    progress.step(`${seg.id} -> ${to}`);
    try {
      const pin = m.pin || (seg.pinned !== undefined && seg.pinned !== to);
      const r = pin ? await db.collection(seg.collection).pin(seg.id, to) : await db.migrate(seg.id, to);
      outcomes.push({ ...base, result: 'moved', bytes: r.bytes, ms: r.ms, ...(pin ? { pinned: to } : {}) });
      note(`${prefix}: ok, ${bytes(r.bytes)} in ${duration(r.ms)}${pin ? ` (pinned to ${to})` : ''}${m.reason ? ` (${m.reason})` : ''}`);
      progress.advance(seg.bytes);
    } catch (err) {
      if (!(err instanceof StratavecError)) {
        progress.finish();
        throw err;
      }
      outcomes.push({ ...base, result: 'failed', bytes: 0, ms: 0, code: err.code, message: err.message });
      note(`${prefix}: FAILED ${err.code}: ${err.message} (the segment stays ${seg.tier})`);
      progress.advance(seg.bytes);
    }
  }
  progress.finish();
  return { outcomes, seconds: (performance.now() - t0) / 1000 };
}

function summarise(outcomes: MoveOutcome[], seconds: number) {
  const count = (r: MoveOutcome['result']) => outcomes.filter((o) => o.result === r).length;
  const moved = outcomes.reduce((n, o) => n + o.bytes, 0);
  const summary = {
    moved: count('moved'), refused: count('refused'), failed: count('failed'), skipped: count('skipped'),
    bytes: moved, seconds, interrupted: interrupted(),
  };
  const exitCode = summary.interrupted ? 130 : summary.failed + summary.refused > 0 ? 1 : 0;
  return { summary, exitCode };
}

function printSummary(s: ReturnType<typeof summarise>['summary']): void {
  out(`${s.moved} moved, ${s.failed} failed, ${s.refused} refused (pinned), ${s.skipped} not started; ${bytes(s.bytes)} in ${s.seconds.toFixed(1)} s` +
    (s.interrupted ? ' (interrupted)' : ''));
}

export async function migrateCommand(ctx: Ctx): Promise<number> {
  const targets = expectPositionals(ctx.command, ctx.p, ['segment-id...']);
  const to = str(ctx.p, 'to');
  if (to === undefined) throw new UsageError('missing --to hot|warm|cold', ctx.command);
  if (to !== 'hot' && to !== 'warm' && to !== 'cold') throw new UsageError(`--to must be hot, warm or cold, got ${JSON.stringify(to)}`, ctx.command);
  const force = flag(ctx.p, 'force');
  return withDb(ctx, async (db) => {
    const segs = resolveTargets(db, targets);
    const { outcomes, seconds } = await runMoves(db, segs.map((seg) => ({ seg, to, pin: to === 'hot' })), force);
    const { summary, exitCode } = summarise(outcomes, seconds);
    if (ctx.json) outJson({ summary, results: outcomes, exitCode });
    else printSummary(summary);
    return exitCode;
  });
}

export async function tieringCommand(ctx: Ctx, action: 'plan' | 'apply'): Promise<number> {
  expectPositionals(ctx.command, ctx.p, []);
  return withDb(ctx, async (db) => {
    const plan = await db.tiering.plan();
    const local = plan.moves.filter((m) => m.to !== 'hot');
    const promotions = plan.moves.filter((m) => m.to === 'hot');
    if (action === 'plan') {
      if (ctx.json) {
        outJson({ ...plan, leftToServingProcess: promotions.map((m) => m.segmentId) });
      } else {
        const u = plan.usage;
        out(`local files ${bytes(u.warm.bytes)} of ${bytes(u.warm.budget)} -> ${bytes(u.warm.after)}`);
        for (const m of plan.moves) out(`  ${m.segmentId.padEnd(20)} ${m.from} -> ${m.to}  ${m.reason}${m.to === 'hot' ? ' (done by the serving process)' : ''}`);
        for (const n of plan.notes) out(`  note: ${n}`);
        if (plan.moves.length === 0) out('  no moves');
      }
      return 0;
    }
    const all = new Map(db.listCollections().flatMap((n) => db.collection(n).segments()).map((s) => [s.id, s]));
    const moves: Move[] = local.flatMap((m) => {
      const seg = all.get(m.segmentId);
      return seg ? [{ seg, to: m.to, pin: false, reason: m.reason }] : [];
    });
    note(`applying ${moves.length} moves${promotions.length ? `; ${promotions.length} promotions to hot are left to the serving process` : ''}`);
    const { outcomes, seconds } = await runMoves(db, moves, false);
    const { summary, exitCode } = summarise(outcomes, seconds);
    if (ctx.json) outJson({ summary, results: outcomes, leftToServingProcess: promotions.map((m) => m.segmentId), notes: plan.notes, exitCode });
    else printSummary(summary);
    return exitCode;
  }, undefined, action === 'plan');
}
