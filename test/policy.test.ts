// The tiering decision logic without an engine: AccessTracker decay and counts under an injected
// clock, DefaultTieringPolicy rules one by one on hand-built states, then properties over random
// states (no thrash: a plan is a fixed point; budgets met when pins allow; determinism).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AccessTracker, kDefaultAccessOptions } from '../tiers/access-stats.js';
import {
  DefaultTieringPolicy, type DefaultPolicyOptions, type PlannedMove, type SegmentState, type Tier, type TierBudgets, type TieringPlan,
} from '../engine/index.js';
import { kDefaultBudgetsFraction } from '../tiers/policy.js';
import { mulberry32 } from '../harness/datasets.js';
import { hasCode } from './helpers/tmp.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const NOW = 1_700_000_000_000;

function manualClock(t: number): { t: number; now(): number } {
  const c = { t, now: () => c.t };
  return c;
}

function seg(id: string, tier: Tier, more: Partial<SegmentState> = {}): SegmentState {
  return {
    id,
    tier,
    hotBytes: 100,
    localBytes: 100,
    frequency: 1,
    lastAccess: NOW - MIN,
    createdAt: NOW - 10 * HOUR,
    hasRemoteCopy: true,
    available: true,
    ...more,
  };
}

function budgets(hotBytes: number, warmBytes: number, more: Partial<TierBudgets> = {}): TierBudgets {
  return { hotBytes, warmBytes, ...kDefaultBudgetsFraction, ...more };
}

function apply(segments: readonly SegmentState[], plan: TieringPlan): SegmentState[] {
  const to = new Map(plan.moves.map((m) => [m.segmentId, m.to]));
  return segments.map((s) => ({ ...s, tier: to.get(s.id) ?? s.tier }));
}

function usage(segments: readonly SegmentState[]): { hot: number; local: number } {
  let hot = 0;
  let local = 0;
  for (const s of segments) {
    if (s.tier === 'hot') hot += s.hotBytes;
    if (s.tier !== 'cold') local += s.localBytes;
  }
  return { hot, local };
}

function movesOf(plan: TieringPlan): Record<string, string> {
  return Object.fromEntries(plan.moves.map((m) => [m.segmentId, `${m.from}->${m.to}`]));
}

function moveOf(plan: TieringPlan, id: string): PlannedMove {
  const m = plan.moves.find((x) => x.segmentId === id);
  assert.ok(m, `expected a move for ${id}, got ${JSON.stringify(movesOf(plan))}`);
  return m;
}

// ---- AccessTracker ---------------------------------------------------------------------------

test('frequency halves at each half-life and accumulates on access', () => {
  const clock = manualClock(NOW);
  const t = new AccessTracker({ halfLifeMs: 1000, clock });
  t.record('a', 'hot');
  assert.equal(t.frequency('a'), 1);
  clock.t += 1000;
  assert.equal(t.frequency('a'), 0.5);
  clock.t += 1000;
  assert.equal(t.frequency('a'), 0.25);
  t.record('a', 'warm');
  assert.equal(t.frequency('a'), 1.25);
  clock.t += 500;
  assert.ok(Math.abs(t.frequency('a') - 1.25 * Math.SQRT1_2) < 1e-12, `got ${t.frequency('a')}`);
  assert.equal(t.lastAccess('a'), NOW + 2000);
});

test('default half-life is 10 minutes', () => {
  const clock = manualClock(NOW);
  const t = new AccessTracker({ clock });
  assert.equal(t.halfLifeMs, kDefaultAccessOptions.halfLifeMs);
  assert.equal(kDefaultAccessOptions.halfLifeMs, 10 * MIN);
  t.record('a', 'cold');
  clock.t += 10 * MIN;
  assert.equal(t.frequency('a'), 0.5);
});

test('reading frequency does not change it', () => {
  const clock = manualClock(NOW);
  const t = new AccessTracker({ halfLifeMs: 1000, clock });
  t.record('a', 'hot');
  clock.t += 1000;
  t.frequency('a');
  t.frequency('a');
  clock.t += 1000;
  assert.equal(t.frequency('a'), 0.25);
});

test('a clock stepping back never makes accesses count more', () => {
  const clock = manualClock(NOW);
  const t = new AccessTracker({ halfLifeMs: 1000, clock });
  t.record('a', 'hot');
  clock.t += 1000;
  t.record('a', 'hot'); // 0.5 + 1
  clock.t -= 5000;
  assert.equal(t.frequency('a'), 1.5);
  t.record('a', 'hot');
  assert.equal(t.frequency('a'), 2.5);
  assert.equal(t.lastAccess('a'), NOW + 1000, 'lastAccess keeps the latest time');
  clock.t = NOW + 2000;
  assert.equal(t.frequency('a'), 1.25);
});

test('hits are counted per serving tier; unknown segments read as zero; forget drops stats', () => {
  const clock = manualClock(NOW);
  const t = new AccessTracker({ halfLifeMs: 1000, clock });
  t.record('a', 'hot');
  t.record('a', 'hot');
  t.record('a', 'warm');
  t.record('a', 'cold');
  t.record('a', 'cold');
  t.record('a', 'cold');
  t.record('b', 'warm');
  assert.deepEqual(t.hits('a'), { hot: 2, warm: 1, cold: 3 });
  assert.deepEqual(t.hits('b'), { hot: 0, warm: 1, cold: 0 });
  const h = t.hits('a');
  h.hot = 99;
  assert.equal(t.hits('a').hot, 2, 'hits() returns a copy');
  assert.deepEqual(t.snapshot('a'), { frequency: 6, lastAccess: NOW, hits: { hot: 2, warm: 1, cold: 3 } });
  assert.deepEqual(t.snapshot('zzz'), { frequency: 0, lastAccess: undefined, hits: { hot: 0, warm: 0, cold: 0 } });
  assert.equal(t.size, 2);
  t.forget('a');
  assert.equal(t.size, 1);
  assert.equal(t.frequency('a'), 0);
  assert.equal(t.lastAccess('a'), undefined);
  assert.deepEqual(t.hits('a'), { hot: 0, warm: 0, cold: 0 });
});

test('AccessTracker rejects bad options and tiers', () => {
  const clock = manualClock(NOW);
  assert.throws(() => new AccessTracker({ halfLifeMs: 0, clock }), hasCode('ERR_INVALID_ARGUMENT'));
  assert.throws(() => new AccessTracker({ halfLifeMs: Number.NaN, clock }), hasCode('ERR_INVALID_ARGUMENT'));
  assert.throws(() => new AccessTracker({ halfLifeMs: '5' as unknown as number, clock }), TypeError);
  assert.throws(() => new AccessTracker({} as unknown as { clock: typeof clock }), TypeError);
  const t = new AccessTracker({ clock });
  assert.throws(() => t.record('a', 'lukewarm' as Tier), TypeError);
  assert.equal(t.size, 0);
});

// ---- DefaultTieringPolicy: rules ---------------------------------------------------------------

test('hot pressure demotes the least frequent to warm until <= low watermark', () => {
  const freqs = [5, 0.3, 7, 0.1, 2, 9, 0.2, 4, 6, 8];
  const segs = freqs.map((f, i) => seg(`s${i}`, 'hot', { frequency: f, hotBytes: 100, localBytes: 10 }));
  const p = new DefaultTieringPolicy({ promoteMinFrequency: 1 }).plan(segs, budgets(1000, 1e9), NOW);
  assert.deepEqual(movesOf(p), { s3: 'hot->warm', s6: 'hot->warm', s1: 'hot->warm' });
  assert.deepEqual(p.moves.map((m) => m.segmentId), ['s3', 's6', 's1'], 'in the order decided');
  assert.deepEqual(p.usage.hot, { bytes: 1000, budget: 1000, after: 700 });
  assert.deepEqual(p.usage.warm, { bytes: 100, budget: 1e9, after: 100 });
  const m = moveOf(p, 's3');
  assert.equal(m.cause, 'hot-pressure');
  assert.equal(m.bytes, 100);
  assert.match(m.reason, /hot tier at 100% of budget .*> 90% high watermark/);
  assert.match(m.reason, /<= 70% low watermark/);
  assert.match(m.reason, /freq 0\.1, idle 1m/);
});

test('hot pressure ties: oldest last touch first (createdAt if never accessed), then id', () => {
  const segs = [
    seg('b', 'hot', { frequency: 1, lastAccess: NOW - 5 * MIN }),
    seg('a', 'hot', { frequency: 1, lastAccess: NOW - 5 * MIN }),
    seg('c', 'hot', { frequency: 1, lastAccess: NOW - 50 * MIN }),
    seg('d', 'hot', { frequency: 1, lastAccess: undefined, createdAt: NOW - 2 * MIN }),
    seg('e', 'hot', { frequency: 3, lastAccess: NOW - 500 * MIN }),
  ];
  // 500 bytes over a 500 budget: two must go (-> 300 <= 350).
  const p = new DefaultTieringPolicy({ promoteMinFrequency: 100 }).plan(segs, budgets(500, 1e9), NOW);
  assert.deepEqual(Object.keys(movesOf(p)).sort(), ['a', 'c']);
  assert.deepEqual(p.moves.map((m) => m.segmentId), ['c', 'a']);
});

test('give-back: a small demotion made unnecessary by a large one is undone', () => {
  const segs = [
    seg('big', 'hot', { frequency: 5, hotBytes: 85 }),
    seg('small', 'hot', { frequency: 1, hotBytes: 10 }),
  ];
  const policy = new DefaultTieringPolicy({ promoteMinFrequency: 0 });
  const p = policy.plan(segs, budgets(100, 1e9), NOW);
  assert.deepEqual(movesOf(p), { big: 'hot->warm' });
  assert.equal(p.usage.hot.after, 10);
  assert.deepEqual(policy.plan(apply(segs, p), budgets(100, 1e9), NOW).moves, []);
});

test('no pressure at or below the high watermark, even above the low one', () => {
  const segs = [seg('a', 'hot', { hotBytes: 90, frequency: 0 }), seg('w', 'warm', { frequency: 50, hotBytes: 1 })];
  const p = new DefaultTieringPolicy().plan(segs, budgets(100, 1e9), NOW);
  assert.deepEqual(p.moves, [], 'hot at exactly 90%: no demotion; above 70%: no promotion');
});

test('warm pressure demotes to cold, preferring a remote copy at equal frequency', () => {
  const segs = [
    seg('w1', 'warm', { frequency: 0, localBytes: 300, hasRemoteCopy: false, lastAccess: NOW - 9 * HOUR }),
    seg('w2', 'warm', { frequency: 0, localBytes: 300, hasRemoteCopy: true, lastAccess: NOW - 1 * HOUR }),
    seg('w3', 'warm', { frequency: 5, localBytes: 400 }),
  ];
  const p = new DefaultTieringPolicy({ promoteMinFrequency: 100 }).plan(segs, budgets(1e9, 1000), NOW);
  assert.deepEqual(movesOf(p), { w2: 'warm->cold' });
  const m = moveOf(p, 'w2');
  assert.equal(m.cause, 'local-pressure');
  assert.equal(m.bytes, 300);
  assert.match(m.reason, /local disk at 100% of warm budget .*> 90% high watermark/);
  assert.match(m.reason, /freq 0, idle 1h; remote copy exists/);
  assert.deepEqual(p.usage.warm, { bytes: 1000, budget: 1000, after: 700 });

  // Without a remote copy it still goes when it is the least used; the reason says it needs upload.
  const p2 = new DefaultTieringPolicy({ promoteMinFrequency: 100 }).plan(
    [segs[0]!, { ...segs[1]!, frequency: 1 }, segs[2]!], budgets(1e9, 1000), NOW);
  assert.deepEqual(movesOf(p2), { w1: 'warm->cold' });
  assert.match(moveOf(p2, 'w1').reason, /needs upload first/);
});

test('warm pressure demotes by value, hot and warm alike; hot ones go straight to cold', () => {
  const segs = [
    seg('h1', 'hot', { frequency: 1, localBytes: 500, hotBytes: 10 }),
    seg('h2', 'hot', { frequency: 2, localBytes: 500, hotBytes: 10 }),
    seg('w', 'warm', { frequency: 9, localBytes: 300, hotBytes: 10 }),
  ];
  const policy = new DefaultTieringPolicy({ promoteMinFrequency: 100 });
  // 1300 of 1000: the two hot segments, searched less than the warm one, go until <= 700.
  const p = policy.plan(segs, budgets(1e9, 1000), NOW);
  assert.deepEqual(movesOf(p), { h1: 'hot->cold', h2: 'hot->cold' });
  assert.match(moveOf(p, 'h1').reason, /straight from hot/);
  assert.equal(moveOf(p, 'h1').bytes, 500);
  assert.deepEqual(p.usage.hot, { bytes: 20, budget: 1e9, after: 0 });
  assert.deepEqual(p.usage.warm, { bytes: 1300, budget: 1000, after: 300 });

  // With a smaller warm segment, h1 alone brings local usage under the low watermark.
  const small = [segs[0]!, segs[1]!, { ...segs[2]!, localBytes: 100 }];
  const p2 = policy.plan(small, budgets(1e9, 1000), NOW);
  assert.deepEqual(movesOf(p2), { h1: 'hot->cold' });
  assert.equal(p2.usage.warm.after, 600);

  // At equal value the warm one goes first: no loaded index is dropped.
  const tie = [seg('h', 'hot', { frequency: 1, localBytes: 500 }), seg('w', 'warm', { frequency: 1, localBytes: 500 })];
  assert.deepEqual(movesOf(policy.plan(tie, budgets(1e9, 1000), NOW)), { w: 'warm->cold' });
});

test('hot pressure then warm pressure: one move hot -> cold, with both reasons', () => {
  const segs = [
    seg('a', 'hot', { frequency: 0.1, hotBytes: 100, localBytes: 100 }),
    seg('b', 'hot', { frequency: 9, hotBytes: 100, localBytes: 100 }),
  ];
  const p = new DefaultTieringPolicy({ promoteMinFrequency: 100 }).plan(segs, budgets(150, 150), NOW);
  assert.equal(p.moves.length, 1);
  const m = moveOf(p, 'a');
  assert.equal(`${m.from}->${m.to}`, 'hot->cold');
  assert.equal(m.cause, 'local-pressure');
  assert.match(m.reason, /hot tier at 133.3% .*; local disk at 133.3% /);
});

test('pins: a pinned hot segment is never demoted; a pinned-cold hot segment goes cold', () => {
  const segs = [
    seg('pinnedHot', 'hot', { frequency: 0, pinned: 'hot' }),
    seg('pinnedCold', 'hot', { frequency: 99, pinned: 'cold' }),
    seg('pinnedWarm', 'cold', { frequency: 0, pinned: 'warm' }),
    seg('x', 'hot', { frequency: 1 }),
    seg('y', 'hot', { frequency: 2 }),
  ];
  // Hot 400 of 300; pinnedCold leaves (300 > 270 high), the least used unpinned goes: x (200 <= 210 low).
  const p = new DefaultTieringPolicy({ promoteMinFrequency: 100 }).plan(segs, budgets(300, 1e9), NOW);
  assert.deepEqual(movesOf(p), { pinnedCold: 'hot->cold', pinnedWarm: 'cold->warm', x: 'hot->warm' });
  assert.equal(moveOf(p, 'pinnedCold').reason, 'pinned to cold');
  assert.equal(moveOf(p, 'pinnedCold').cause, 'pin');
  assert.equal(moveOf(p, 'pinnedWarm').reason, 'pinned to warm');
  assert.deepEqual(p.moves.map((m) => m.segmentId), ['pinnedCold', 'x', 'pinnedWarm'], 'demotions first, pins first');
  assert.deepEqual(p.notes, []);
});

test('pins that alone exceed a budget are kept, and the reasons say so', () => {
  const segs = [
    seg('p1', 'hot', { frequency: 0, pinned: 'hot', hotBytes: 600 }),
    seg('p2', 'warm', { frequency: 0, pinned: 'hot', hotBytes: 600 }),
    seg('u', 'hot', { frequency: 50, hotBytes: 10 }),
    seg('w', 'warm', { frequency: 50, hotBytes: 10 }),
  ];
  const policy = new DefaultTieringPolicy({ promoteMinFrequency: 1 });
  const p = policy.plan(segs, budgets(1000, 1e9), NOW);
  assert.deepEqual(movesOf(p), { p2: 'warm->hot', u: 'hot->warm' });
  assert.match(moveOf(p, 'p2').reason, /^pinned to hot; pinned and unavailable segments alone use 120% of the hot budget \(> 90% high watermark\); pins are kept$/);
  assert.equal(p.notes.length, 1);
  assert.match(p.notes[0]!, /120% of the hot budget/);
  assert.equal(p.usage.hot.after, 1200);
  assert.deepEqual(policy.plan(apply(segs, p), budgets(1000, 1e9), NOW).moves, [], 'nothing left to move');
});

test('unavailable segments are never moved, pinned, pressured or promotable', () => {
  const segs = [
    seg('uHot', 'hot', { frequency: 0, available: false, hotBytes: 500 }),
    seg('uPinned', 'hot', { frequency: 0, available: false, pinned: 'cold' }),
    seg('uCold', 'cold', { frequency: 99, available: false }),
    seg('uWarmIdle', 'warm', { frequency: 0, available: false, lastAccess: NOW - 99 * HOUR }),
    seg('ok', 'hot', { frequency: 5, hotBytes: 100 }),
  ];
  const p = new DefaultTieringPolicy({ promoteMinFrequency: 1, coldAfterIdleMs: HOUR }).plan(segs, budgets(600, 1e9), NOW);
  assert.deepEqual(movesOf(p), { ok: 'hot->warm' });
  assert.equal(p.usage.hot.after, 600, 'unavailable bytes still count');
});

test('promotion: most frequent first, only while hot usage stays <= low watermark', () => {
  const segs = [
    seg('h', 'hot', { frequency: 0, hotBytes: 400 }),
    seg('a', 'warm', { frequency: 10, hotBytes: 200 }),
    seg('b', 'warm', { frequency: 8, hotBytes: 200 }),
    seg('c', 'warm', { frequency: 6, hotBytes: 50 }),
    seg('d', 'warm', { frequency: 1.99, hotBytes: 10 }),
  ];
  const policy = new DefaultTieringPolicy({ promoteMinFrequency: 2 });
  const p = policy.plan(segs, budgets(1000, 1e9), NOW);
  assert.deepEqual(movesOf(p), { a: 'warm->hot', c: 'warm->hot' });
  assert.deepEqual(p.moves.map((m) => m.segmentId), ['a', 'c']);
  assert.equal(p.usage.hot.after, 650);
  const m = moveOf(p, 'a');
  assert.equal(m.cause, 'promotion');
  assert.equal(m.bytes, 200);
  assert.equal(m.reason, 'freq 10 >= promoteMinFrequency 2: promoting to hot (hot tier 40% -> 60% of budget, within 70% low watermark)');
  assert.deepEqual(policy.plan(apply(segs, p), budgets(1000, 1e9), NOW).moves, [], 'b still does not fit: no thrash');
});

test('promotion from cold: to warm within the local low watermark, straight to hot when both fit', () => {
  const segs = [
    seg('w', 'warm', { frequency: 0, localBytes: 600, hotBytes: 10 }),
    seg('e', 'cold', { frequency: 5, localBytes: 60, hotBytes: 50 }),
    seg('f', 'cold', { frequency: 4, localBytes: 60, hotBytes: 10 }),
    seg('g', 'cold', { frequency: 3, localBytes: 30, hotBytes: 2000 }),
  ];
  const policy = new DefaultTieringPolicy({ promoteMinFrequency: 2 });
  const p = policy.plan(segs, budgets(100, 1000), NOW);
  // local: 600 + e 60 = 660, f would be 720 > 700, g 690 fits; hot: e 50 <= 70, g 2000 does not.
  assert.deepEqual(movesOf(p), { e: 'cold->hot', g: 'cold->warm' });
  assert.match(moveOf(p, 'e').reason, /promoting to warm \(local disk 60% -> 66% of warm budget.*; then promoting to hot \(hot tier 0% -> 50%/);
  assert.equal(moveOf(p, 'e').bytes, 60);
  assert.deepEqual(p.usage.warm, { bytes: 600, budget: 1000, after: 690 });
  assert.deepEqual(policy.plan(apply(segs, p), budgets(100, 1000), NOW).moves, []);
});

test('coldAfterIdleMs: idle warm segments go cold without pressure; idle ones are never promoted', () => {
  const segs = [
    seg('idle', 'warm', { lastAccess: NOW - 2 * HOUR, frequency: 0.001 }),
    seg('never', 'warm', { lastAccess: undefined, createdAt: NOW - 3 * HOUR }),
    seg('fresh', 'warm', { lastAccess: NOW - 30 * MIN, frequency: 0 }),
    seg('idleHot', 'hot', { lastAccess: NOW - 5 * HOUR }),
    seg('idleCold', 'cold', { lastAccess: NOW - 5 * HOUR, frequency: 50 }),
    seg('idlePinned', 'warm', { lastAccess: NOW - 5 * HOUR, pinned: 'warm' }),
  ];
  const policy = new DefaultTieringPolicy({ promoteMinFrequency: 1, coldAfterIdleMs: HOUR });
  const p = policy.plan(segs, budgets(1e9, 1e9), NOW);
  assert.deepEqual(movesOf(p), { idle: 'warm->cold', never: 'warm->cold' });
  assert.equal(moveOf(p, 'idle').cause, 'idle');
  assert.equal(moveOf(p, 'idle').reason, 'idle 2h > coldAfterIdleMs 1h: demoting to cold without budget pressure (freq 0.001)');
  // Without the option nothing idles out, and the frequent cold one is promoted.
  assert.deepEqual(movesOf(new DefaultTieringPolicy({ promoteMinFrequency: 1 }).plan(segs, budgets(1e9, 1e9), NOW)),
    { idleCold: 'cold->hot', never: 'warm->hot' });
});

test('the same input in any order gives the same plan', () => {
  const rand = mulberry32(7);
  const segs = Array.from({ length: 40 }, (_, i) => seg(`s${String(i).padStart(2, '0')}`, (['hot', 'warm', 'cold'] as const)[i % 3]!, {
    frequency: Math.floor(rand() * 3), lastAccess: NOW - Math.floor(rand() * 3) * MIN, hasRemoteCopy: rand() < 0.5,
    pinned: i % 7 === 0 ? (['cold', 'hot', 'warm'] as const)[i % 3] : undefined,
  }));
  const policy = new DefaultTieringPolicy({ promoteMinFrequency: 1, coldAfterIdleMs: 90_000 });
  const b = budgets(1500, 2000);
  const p = policy.plan(segs, b, NOW);
  assert.ok(p.moves.length > 0);
  for (let k = 0; k < 5; k++) {
    const shuffled = [...segs].sort(() => rand() - 0.5);
    assert.deepEqual(policy.plan(shuffled, b, NOW), p);
  }
});

test('plan rejects malformed input', () => {
  const policy = new DefaultTieringPolicy();
  const b = budgets(100, 100);
  assert.throws(() => policy.plan([seg('a', 'hot'), seg('a', 'warm')], b, NOW), hasCode('ERR_INVALID_ARGUMENT'));
  assert.throws(() => policy.plan([seg('a', 'hot', { frequency: Number.NaN })], b, NOW), hasCode('ERR_INVALID_ARGUMENT'));
  assert.throws(() => policy.plan([seg('a', 'hot', { hotBytes: -1 })], b, NOW), hasCode('ERR_INVALID_ARGUMENT'));
  assert.throws(() => policy.plan([seg('a', 'lukewarm' as Tier)], b, NOW), TypeError);
  assert.throws(() => policy.plan([], budgets(100, 100, { lowWatermark: 0.95 }), NOW), hasCode('ERR_INVALID_ARGUMENT'));
  assert.throws(() => policy.plan([], budgets(100, 100, { highWatermark: 1.5 }), NOW), hasCode('ERR_INVALID_ARGUMENT'));
  assert.throws(() => new DefaultTieringPolicy({ promoteMinFrequency: -1 }), hasCode('ERR_INVALID_ARGUMENT'));
  assert.throws(() => new DefaultTieringPolicy({ coldAfterIdleMs: 'soon' as unknown as number }), TypeError);
  assert.equal(policy.name, 'default');
  assert.equal(policy.promoteMinFrequency, 2);
  assert.equal(policy.coldAfterIdleMs, undefined);
});

// ---- Properties over random states ------------------------------------------------------------

const TIERS: readonly Tier[] = ['hot', 'warm', 'cold'];
const RANK: Record<Tier, number> = { cold: 0, warm: 1, hot: 2 };

interface Case {
  segments: SegmentState[];
  budgets: TierBudgets;
  options: DefaultPolicyOptions;
}

function randomCase(rand: () => number): Case {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const n = 1 + Math.floor(rand() * 30);
  const segments: SegmentState[] = [];
  for (let i = 0; i < n; i++) {
    const hotBytes = 1 + Math.floor(rand() * 1000);
    segments.push({
      id: `seg-${Math.floor(rand() * 1e6).toString(36)}-${i}`,
      tier: pick(TIERS),
      hotBytes,
      localBytes: rand() < 0.2 ? hotBytes : 1 + Math.floor(rand() * 1000),
      pinned: rand() < 0.12 ? pick(TIERS) : undefined,
      // Coarse values make ties common, so tie-breaks are exercised.
      frequency: rand() < 0.5 ? Math.floor(rand() * 4) : rand() * 10,
      lastAccess: rand() < 0.2 ? undefined : NOW - Math.floor(rand() * 6) * 30 * MIN,
      createdAt: NOW - 10 * HOUR - Math.floor(rand() * 3) * HOUR,
      hasRemoteCopy: rand() < 0.7,
      available: rand() < 0.9,
    });
  }
  const total = usage(segments.map((s) => ({ ...s, tier: 'hot' as const })));
  const highWatermark = rand() < 0.5 ? 0.9 : 0.5 + rand() * 0.5;
  const lowWatermark = rand() < 0.1 ? highWatermark : rand() * highWatermark;
  return {
    segments,
    budgets: {
      hotBytes: Math.floor(total.hot * (0.05 + rand() * 1.2)),
      warmBytes: Math.floor(total.local * (0.05 + rand() * 1.5)),
      highWatermark,
      lowWatermark,
    },
    options: { promoteMinFrequency: pick([0, 1, 2, 5]), coldAfterIdleMs: pick([undefined, HOUR, 2 * HOUR]) },
  };
}

test('property: plans are valid, meet budgets when pins allow, and are fixed points (200 random states)', () => {
  const rand = mulberry32(0x5eed);
  const seen = { moves: 0, demotions: 0, promotions: 0, pins: 0, idle: 0, localPressure: 0, hotPressure: 0, overPinned: 0 };
  for (let iter = 0; iter < 200; iter++) {
    const c = randomCase(rand);
    const ctx = `case ${iter}: ${JSON.stringify(c)}`;
    const policy = new DefaultTieringPolicy(c.options);
    const minFreq = c.options.promoteMinFrequency!;
    const p = policy.plan(c.segments, c.budgets, NOW);
    const byId = new Map(c.segments.map((s) => [s.id, s]));

    // One move per segment, from where it is, to somewhere else; unavailable never; pins obeyed.
    const ids = p.moves.map((m) => m.segmentId);
    assert.equal(new Set(ids).size, ids.length, ctx);
    for (const m of p.moves) {
      const s = byId.get(m.segmentId);
      assert.ok(s, ctx);
      assert.equal(m.from, s.tier, ctx);
      assert.notEqual(m.to, m.from, ctx);
      assert.ok(s.available, `unavailable segment moved: ${ctx}`);
      if (s.pinned !== undefined) assert.equal(m.to, s.pinned, `pinned segment moved elsewhere: ${ctx}`);
      assert.equal(m.bytes, m.from === 'cold' || m.to === 'cold' ? s.localBytes : s.hotBytes, ctx);
      assert.ok(m.reason.length > 0, ctx);
      switch (m.cause) {
        case 'pin':
          assert.ok(m.reason.startsWith(`pinned to ${m.to}`), `${m.reason}: ${ctx}`);
          seen.pins++;
          break;
        case 'hot-pressure':
        case 'local-pressure':
          assert.ok(RANK[m.to] < RANK[m.from], ctx);
          assert.match(m.reason, /> [\d.]+% high watermark\): demoting least used .*<= [\d.]+% low watermark \(freq /, ctx);
          if (m.cause === 'hot-pressure') seen.hotPressure++;
          else seen.localPressure++;
          break;
        case 'idle':
          assert.equal(m.to, 'cold', ctx);
          assert.match(m.reason, /idle .* > coldAfterIdleMs .*\(freq /, ctx);
          seen.idle++;
          break;
        case 'promotion':
          assert.ok(RANK[m.to] > RANK[m.from], ctx);
          assert.ok(s.frequency >= minFreq, `promoted below promoteMinFrequency: ${ctx}`);
          assert.match(m.reason, /^freq [\d.e-]+ >= promoteMinFrequency .*within [\d.]+% low watermark/, ctx);
          break;
      }
      if (RANK[m.to] > RANK[m.from]) seen.promotions++;
      else seen.demotions++;
    }
    for (const s of c.segments) {
      if (s.available && s.pinned !== undefined && s.pinned !== s.tier) assert.ok(ids.includes(s.id), `pin ignored: ${ctx}`);
    }
    seen.moves += p.moves.length;

    // Reported usage matches the states before and after.
    const after = apply(c.segments, p);
    const u0 = usage(c.segments);
    const u1 = usage(after);
    assert.deepEqual(p.usage, {
      hot: { bytes: u0.hot, budget: c.budgets.hotBytes, after: u1.hot },
      warm: { bytes: u0.local, budget: c.budgets.warmBytes, after: u1.local },
    }, ctx);

    // Budgets: met at the high watermark whenever what cannot move allows it.
    const fixed = usage(after.filter((s) => !s.available || s.pinned !== undefined));
    const highHot = c.budgets.highWatermark * c.budgets.hotBytes;
    const highLocal = c.budgets.highWatermark * c.budgets.warmBytes;
    if (fixed.hot <= highHot) assert.ok(u1.hot <= highHot, `hot ${u1.hot} > ${highHot}: ${ctx}`);
    else seen.overPinned++;
    if (fixed.local <= highLocal) assert.ok(u1.local <= highLocal, `local ${u1.local} > ${highLocal}: ${ctx}`);
    else seen.overPinned++;

    // Promotion only within the low watermark.
    const lowHot = c.budgets.lowWatermark * c.budgets.hotBytes;
    const lowLocal = c.budgets.lowWatermark * c.budgets.warmBytes;
    const up = p.moves.filter((m) => m.cause === 'promotion');
    if (up.some((m) => m.to === 'hot')) assert.ok(u1.hot <= lowHot, `promoted past the hot low watermark: ${ctx}`);
    if (up.some((m) => m.from === 'cold')) assert.ok(u1.local <= lowLocal, `promoted past the local low watermark: ${ctx}`);

    // A hot-pressure demotion is never of a segment more valuable than one left hot, unless it
    // could not have stayed (keeping it too would break the low watermark).
    const value = (s: SegmentState): [number, number, string] => [s.frequency, s.lastAccess ?? s.createdAt, s.id];
    const less = (a: SegmentState, b: SegmentState): boolean => {
      const [fa, ta, ia] = value(a);
      const [fb, tb, ib] = value(b);
      return fa !== fb ? fa < fb : ta !== tb ? ta < tb : ia < ib;
    };
    const keptHot = after.filter((s) => s.tier === 'hot' && s.available && s.pinned === undefined);
    for (const m of p.moves.filter((x) => x.cause === 'hot-pressure')) {
      const s = byId.get(m.segmentId)!;
      if (keptHot.some((k) => less(k, s))) assert.ok(u1.hot + s.hotBytes > lowHot, `needless demotion of ${s.id}: ${ctx}`);
    }

    assert.deepEqual(policy.plan([...c.segments].reverse(), c.budgets, NOW), p, `input order changed the plan: ${ctx}`);

    // No thrash: planning again on the result, at the same time, moves nothing.
    const p2 = policy.plan(after, c.budgets, NOW);
    for (const m2 of p2.moves) {
      const first = p.moves.find((m) => m.segmentId === m2.segmentId);
      assert.ok(first === undefined || m2.to !== first.from, `re-plan reverses ${m2.segmentId}: ${ctx}`);
    }
    assert.deepEqual(p2.moves, [], `re-plan is not empty (${JSON.stringify(movesOf(p2))}): ${ctx}`);
  }
  // The generator must reach every rule, or the properties above prove little.
  for (const [k, v] of Object.entries(seen)) assert.ok(v >= 5, `only ${v} ${k} in 200 cases: ${JSON.stringify(seen)}`);
});
