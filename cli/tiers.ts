// Tier-migration admin commands: `migrate` (verified moves with progress) and `tiering plan|apply`.
// Progress goes to stderr so `--json` output on stdout stays machine-readable.

import { Database, StratavecError, type DatabaseOptions, type SegmentInfo } from '../engine/index.js';
import { UsageError, mb } from './args.js';

type Tier = 'hot' | 'warm' | 'cold';

/** Expands `all`, `collection:NAME` and plain segment ids into segments. */
function resolveTargets(db: Database, targets: string[]): SegmentInfo[] {
  const all = db.listCollections().flatMap((name) => db.collection(name).segments());
  const out = new Map<string, SegmentInfo>();
  for (const t of targets) {
    const matched = t === 'all' ? all : t.startsWith('collection:') ? all.filter((s) => s.collection === t.slice(11)) : all.filter((s) => s.id === t);
    if (matched.length === 0) throw new UsageError(`no segment matches ${t}`);
    for (const s of matched) out.set(s.id, s);
  }
  return [...out.values()];
}

export async function migrateCommand(dir: string, targets: string[], to: Tier, json: boolean, options: DatabaseOptions): Promise<number> {
  const db = await Database.open(dir, options);
  try {
    const segments = resolveTargets(db, targets);
    const results: Array<Record<string, unknown>> = [];
    let failed = 0;
    const t0 = performance.now();
    let moved = 0;
    for (const [i, seg] of segments.entries()) {
      const prefix = `[${i + 1}/${segments.length}] ${seg.id} ${seg.tier} -> ${to}`;
      try {
        const r = await db.migrate(seg.id, to);
        moved += r.bytes;
        results.push({ ...r, ok: true });
        console.error(`${prefix}: ok, ${mb(r.bytes)} in ${r.ms.toFixed(0)} ms`);
      } catch (err) {
        if (!(err instanceof StratavecError)) throw err;
        failed++;
        results.push({ segmentId: seg.id, from: seg.tier, to, ok: false, code: err.code, message: err.message });
        console.error(`${prefix}: FAILED ${err.code}: ${err.message} (the segment stays ${seg.tier})`);
      }
    }
    const seconds = (performance.now() - t0) / 1000;
    const summary = { moved: results.length - failed, failed, bytes: moved, seconds, mbPerSecond: moved / 1048576 / Math.max(seconds, 1e-9) };
    if (json) console.log(JSON.stringify({ summary, results }));
    else console.log(`${summary.moved} moved, ${failed} failed, ${mb(moved)} in ${seconds.toFixed(1)} s`);
    return failed > 0 ? 1 : 0;
  } finally {
    await db.close();
  }
}

export async function tieringCommand(dir: string, action: 'plan' | 'apply', json: boolean, options: DatabaseOptions): Promise<number> {
  const db = await Database.open(dir, options);
  try {
    if (action === 'plan') {
      const plan = await db.tiering.plan();
      if (json) {
        console.log(JSON.stringify(plan));
      } else {
        const u = plan.usage;
        console.log(`hot ${mb(u.hot.bytes)} of ${mb(u.hot.budget)} -> ${mb(u.hot.after)}; local ${mb(u.warm.bytes)} of ${mb(u.warm.budget)} -> ${mb(u.warm.after)}`);
        for (const m of plan.moves) console.log(`  ${m.segmentId.padEnd(20)} ${m.from} -> ${m.to}  ${m.reason}`);
        for (const n of plan.notes) console.log(`  note: ${n}`);
        if (plan.moves.length === 0) console.log('  no moves');
      }
      return 0;
    }
    const moves = (await db.tiering.plan()).moves.length;
    console.error(`applying up to ${moves} moves`);
    const r = await db.tiering.apply();
    if (json) {
      console.log(JSON.stringify(r));
    } else {
      for (const m of r.applied) console.log(`  ok      ${m.segmentId.padEnd(20)} ${m.from} -> ${m.to}  ${mb(m.bytes)} in ${m.ms.toFixed(0)} ms  (${m.reason})`);
      for (const m of r.failed) console.log(`  FAILED  ${m.segmentId.padEnd(20)} ${m.from} -> ${m.to}  ${m.code}: ${m.message}`);
      console.log(`${r.applied.length} applied, ${r.failed.length} failed`);
    }
    return r.failed.length > 0 ? 1 : 0;
  } finally {
    await db.close();
  }
}
