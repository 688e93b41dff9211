// Tier budgets far below the data size: 60,000 x 32 in 12 segments, a hot budget of about three
// hot segments and a warm (local disk) budget of about four segment files. A mixed workload (reads
// concentrated on a few segments, searches over hot and warm only, full searches that rehydrate
// everything, upserts, replacements, deletes, explicit promotions) runs in rounds; after every
// `db.tiering.apply()` each tier is within its high watermark, pins hold, and `plan()` was a dry
// run whose every move has a reason. Searches stay correct across all tiers: recall@10 of HNSW
// search >= 0.95 against exact search, and exact search equals a brute-force scan of what the
// test knows is live. The clock is injected and advanced by hand, so decay is deterministic and
// the background loop is off (intervalMs 0): the test drives the policy.
//
// Also: a custom TieringPolicy is the one consulted (dry run and apply), with the configured
// budgets and the injected clock; and the engine does not let a plan break a pin or name a tier
// that does not exist.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { Database, type Collection, type DatabaseOptions, type SegmentInfo } from '../engine/index.js';
import type { PlannedMove, SegmentState, TierBudgets, TieringPlan, TieringPolicy } from '../engine/index.js';
import { clusteredDataset, mulberry32 } from '../harness/datasets.js';
import { track, waitFor, withTmpDir } from './helpers/tmp.js';

const DIM = 32;
const COUNT = 60_000;
const SEG = 5_000;
const COL = 'docs';
const HIGH = 0.9;
const LOW = 0.7;
const HALF_LIFE = 60_000;

type Tier = 'hot' | 'warm' | 'cold';

function l2(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i]! - b[i]!;
    s += d * d;
  }
  return s;
}

/** The exact top k of `live` by a plain scan in the test (no engine code). */
function bruteForce(live: Map<string, Float32Array>, q: Float32Array, k: number): string[] {
  const best: Array<{ id: string; d: number }> = [];
  for (const [id, v] of live) {
    const d = l2(q, v);
    if (best.length < k || d < best[best.length - 1]!.d) {
      best.push({ id, d });
      best.sort((x, y) => x.d - y.d);
      if (best.length > k) best.pop();
    }
  }
  return best.map((x) => x.id);
}

const tiersOf = (segs: SegmentInfo[]): Record<string, Tier> => Object.fromEntries(segs.map((s) => [s.id, s.tier]));
const localBytes = (segs: SegmentInfo[]): number => segs.filter((s) => s.tier !== 'cold').reduce((n, s) => n + s.bytes, 0);

test('budgets far below the data: each tier within its high watermark after every apply, pins hold, searches stay correct', { timeout: 600_000 }, () =>
  withTmpDir('tiers-budget', async (dir) => {
    const all = clusteredDataset({ count: COUNT + 20_000, dim: DIM, clusters: 48, seed: 4242 });
    const vec = (row: number) => all.slice(row * DIM, (row + 1) * DIM);
    let nextRow = COUNT; // rows past COUNT feed new records and replacement vectors
    const live = new Map<string, Float32Array>();

    let now = 1_750_000_000_000;
    const clock = { now: () => now };
    // minResidencyMs 0: this test holds the policy to its budgets after every apply, even for
    // segments a search just rehydrated (the residency rule is tested in tiers-residency.test).
    const common: DatabaseOptions = {
      workers: 2, segmentMaxRecords: SEG, clock,
      tiering: { intervalMs: 0, halfLifeMs: HALF_LIFE, highWatermark: HIGH, lowWatermark: LOW, minResidencyMs: 0 },
    };

    // Sizing run: default (huge) budgets, so nothing moves; learn a segment's file and hot sizes.
    let db = track(await Database.open(dir, common));
    let col: Collection = await db.createCollection(COL, { dimension: DIM, hnsw: { M: 8, efConstruction: 40 } });
    for (let i = 0; i < COUNT; i += 5_000) {
      const batch = Array.from({ length: 5_000 }, (_, j) => ({ id: `r${i + j}`, vector: vec(i + j), payload: { c: (i + j) % 8 } }));
      await col.upsert(batch);
      for (const r of batch) live.set(r.id, r.vector);
    }
    await col.flush();
    await db.flushUploads();
    let segs = col.segments();
    assert.equal(segs.length, COUNT / SEG);
    assert.ok(segs.every((s) => s.tier === 'warm' && s.remoteBytes !== undefined));
    const segBytes = Math.max(...segs.map((s) => s.bytes));
    await db.migrate(segs[0]!.id, 'hot');
    const hotPer = db.stats().tiers.hot.bytes;
    assert.ok(hotPer > 0);
    await db.close();

    const hotBytes = Math.floor(3 * hotPer);
    const warmBytes = Math.floor(4 * segBytes);
    const totalLocal = segs.reduce((n, s) => n + s.bytes, 0);
    assert.ok(totalLocal > 2.5 * warmBytes, 'the warm budget is far below the data size');
    db = track(await Database.open(dir, { ...common, hotBytes, warmBytes }));
    col = db.collection(COL);
    assert.equal(col.count(), COUNT);

    const ids = col.segments().map((s) => s.id);
    const pinnedCold = ids[11]!;
    const pinnedHot = ids[0]!;
    await col.pin(pinnedCold, 'cold');
    await col.pin(pinnedHot, 'hot');
    assert.equal(tiersOf(col.segments())[pinnedCold], 'cold');
    assert.equal(tiersOf(col.segments())[pinnedHot], 'hot');

    const causes = new Set<string>();
    let maxHotSeen = 0;
    let maxLocalSeen = 0;

    /** Waits for seals and uploads in flight, then: dry run, apply, and the budget assertions. */
    const applyAndCheck = async (label: string): Promise<void> => {
      await waitFor(() => db.stats().collections[COL]!.sealing === 0, 'seals to finish');
      await col.flush(); // seals what is growing, so no seal runs during plan and apply
      await db.flushUploads();
      const before = col.segments();
      maxHotSeen = Math.max(maxHotSeen, db.stats().tiers.hot.bytes);
      maxLocalSeen = Math.max(maxLocalSeen, localBytes(before));
      const planned = await db.tiering.plan();
      assert.deepEqual(tiersOf(col.segments()), tiersOf(before), `${label}: plan() is a dry run`);
      assert.equal(db.stats().tiering.runs, runs, `${label}: plan() is not a run`);
      for (const m of planned.moves) {
        assert.ok(typeof m.reason === 'string' && m.reason.length > 10, `${label}: move of ${m.segmentId} has a reason: ${JSON.stringify(m.reason)}`);
        assert.equal(m.from, tiersOf(before)[m.segmentId], `${label}: move of ${m.segmentId} starts where it is`);
        assert.notEqual(m.from, m.to);
        if (m.segmentId === pinnedCold) assert.equal(m.to, 'cold', `${label}: the pinned-cold segment only ever moves to cold`);
        assert.notEqual(m.segmentId, pinnedHot, `${label}: the pinned-hot segment never moves`);
      }
      const res = await db.tiering.apply();
      runs++;
      assert.deepEqual(res.failed, [], `${label}: no move failed`);
      assert.deepEqual(res.plan.moves, planned.moves, `${label}: apply executes the plan the dry run showed`);
      for (const m of res.plan.moves) causes.add(m.cause);

      const after = col.segments();
      const hot = db.stats().tiers.hot.bytes;
      const local = localBytes(after);
      assert.ok(hot <= HIGH * hotBytes, `${label}: hot usage ${hot} <= ${HIGH} * ${hotBytes}`);
      assert.ok(local <= HIGH * warmBytes, `${label}: local usage ${local} <= ${HIGH} * ${warmBytes}`);
      const count = (tier: Tier) => after.filter((s) => s.tier === tier).length;
      console.log(`${label}: ${planned.moves.length} moves; hot ${hot} / ${hotBytes} (max before ${maxHotSeen}), local ${local} / ${warmBytes}; hot ${count('hot')}, warm ${count('warm')}, cold ${count('cold')}`);
      const t = tiersOf(after);
      assert.equal(t[pinnedCold], 'cold', `${label}: pinned cold stays cold`);
      assert.equal(t[pinnedHot], 'hot', `${label}: pinned hot stays hot`);
      for (const s of after) {
        assert.equal(s.status, 'ok');
        const file = path.join(dir, 'collections', COL, 'segments', `${String(s.seq).padStart(8, '0')}.seg`);
        assert.equal(existsSync(file), s.tier !== 'cold', `${label}: ${s.id} (${s.tier}) local file presence`);
      }
      assert.equal(db.stats().tiers.cold.segments, after.filter((s) => s.tier === 'cold').length);
    };
    let runs = db.stats().tiering.runs;

    /** Recall@10 of HNSW search against exact search, over every tier; exact against brute force. */
    const checkSearches = async (label: string, seed: number): Promise<void> => {
      const rand = mulberry32(seed);
      let hits = 0;
      const nq = 20;
      for (let q = 0; q < nq; q++) {
        const query = vec(COUNT + 19_000 + Math.floor(rand() * 1000));
        const approx = await col.search(query, { k: 10, ef: 64, includePayload: false });
        const exact = await col.search(query, { k: 10, exact: true, includePayload: false });
        assert.deepEqual(exact.map((h) => h.id), bruteForce(live, query, 10), `${label}: exact search equals brute force (query ${q})`);
        const want = new Set(exact.map((h) => h.id));
        for (const h of approx) {
          assert.ok(live.has(h.id), `${label}: search returned ${h.id}, which is not live`);
          if (want.has(h.id)) hits++;
        }
      }
      const recall = hits / (nq * 10);
      assert.ok(recall >= 0.95, `${label}: recall@10 ${recall} >= 0.95`);
    };

    await applyAndCheck('initial');

    const rand = mulberry32(99);
    const ROUNDS = 4;
    for (let round = 0; round < ROUNDS; round++) {
      now += 5 * 60_000; // five half-lives: last round's accesses have mostly decayed
      const original = col.segments().filter((s) => s.seq <= COUNT / SEG && s.id !== pinnedCold && s.id !== pinnedHot);
      // This round's favourites: two of the original segments, different each round.
      const favourites = [original[(2 * round + 1) % original.length]!, original[(2 * round + 5) % original.length]!];
      for (const fav of favourites) {
        const seq0 = (fav.seq - 1) * SEG; // the initial segments hold rows r[(seq-1)*SEG, seq*SEG)
        for (let rep = 0; rep < 3; rep++) {
          const wanted = Array.from({ length: 40 }, () => `r${seq0 + Math.floor(rand() * SEG)}`);
          const got = await col.get(wanted);
          got.forEach((r, i) => {
            const want = live.get(wanted[i]!);
            if (want === undefined) assert.equal(r, undefined);
            else assert.deepEqual(Array.from(r!.vector), Array.from(want), `get ${wanted[i]}`);
          });
        }
      }
      // Searches over hot and warm only, filtered: no rehydration, never a record that is not live.
      for (let i = 0; i < 5; i++) {
        const c = Math.floor(rand() * 8);
        const hits = await col.search(vec(COUNT + 19_000 + i), { k: 10, filter: { c }, tiers: ['hot', 'warm'] });
        for (const h of hits) {
          assert.ok(live.has(h.id), `filtered search returned ${h.id}, not live`);
          assert.equal((h.payload as { c: number }).c, c);
        }
      }
      // Explicit promotions (as an operator or a burst would cause): pressure on the hot tier.
      const promote = col.segments().filter((s) => s.tier !== 'hot' && s.id !== pinnedCold && s.id !== pinnedHot).slice(0, 3);
      for (const s of promote) await db.migrate(s.id, 'hot');
      // Writes: new records, replacements (some in cold segments), deletes.
      const fresh = Array.from({ length: 1_000 }, () => {
        const row = nextRow++;
        return { id: `n${row}`, vector: vec(row), payload: { c: row % 8 } };
      });
      const replacedIds = new Set<string>();
      while (replacedIds.size < 200) replacedIds.add(`r${Math.floor(rand() * COUNT)}`);
      const replaced = [...replacedIds].map((id) => ({ id, vector: vec(nextRow++), payload: { c: 7 } }));
      await col.upsert(fresh);
      await col.upsert(replaced);
      for (const r of [...fresh, ...replaced]) live.set(r.id, r.vector);
      const doomed = new Set<string>();
      while (doomed.size < 150) {
        const id = `r${Math.floor(rand() * COUNT)}`;
        if (!replacedIds.has(id)) doomed.add(id);
      }
      await col.delete([...doomed]);
      for (const id of doomed) live.delete(id);
      assert.equal(col.count(), live.size);

      await applyAndCheck(`round ${round}`);
      // Every search below reaches every tier: cold segments are rehydrated, so the next round
      // starts over budget on local disk.
      await checkSearches(`round ${round}`, 1000 + round);
    }
    await applyAndCheck('final');
    assert.ok(causes.has('local-pressure'), `local pressure was exercised (causes: ${[...causes].join(', ')})`);
    assert.ok(maxLocalSeen > HIGH * warmBytes, `the workload pushed local usage over its high watermark (max ${maxLocalSeen})`);
    assert.ok(maxHotSeen > HIGH * hotBytes, `the workload pushed hot usage over its high watermark (max ${maxHotSeen} of ${hotBytes})`);

    // Unpinned, the formerly pinned segments are the policy's again; data is intact after reopen.
    await col.unpin(pinnedHot);
    await col.unpin(pinnedCold);
    await applyAndCheck('unpinned');
    await db.close();
    db = track(await Database.open(dir, { ...common, hotBytes, warmBytes }));
    col = db.collection(COL);
    assert.equal(col.count(), live.size);
    await checkSearches('reopened', 7);
    await db.close();
  }));

/** A policy that is nothing like the default: every other segment (by id) cold, the rest hot. */
class AlternatingPolicy implements TieringPolicy {
  readonly name = 'test-alternating';
  readonly calls: Array<{ segments: SegmentState[]; budgets: TierBudgets; now: number }> = [];
  extra: PlannedMove[] = [];

  plan(segments: readonly SegmentState[], budgets: TierBudgets, now: number): TieringPlan {
    this.calls.push({ segments: segments.map((s) => ({ ...s })), budgets: { ...budgets }, now });
    // Segment ids are `<collection>.<seq>`.
    const seq = (s: SegmentState) => Number(s.id.slice(s.id.lastIndexOf('.') + 1));
    const sorted = [...segments].sort((a, b) => seq(a) - seq(b));
    const moves: PlannedMove[] = [];
    sorted.forEach((s, i) => {
      const to: Tier = i % 2 === 0 ? 'cold' : 'hot';
      if (s.tier !== to && s.pinned === undefined) {
        moves.push({ segmentId: s.id, from: s.tier, to, reason: `alternating: position ${i} goes ${to}`, cause: to === 'cold' ? 'local-pressure' : 'promotion', bytes: s.localBytes });
      }
    });
    return {
      moves: [...moves, ...this.extra],
      usage: { hot: { bytes: 0, budget: budgets.hotBytes, after: 0 }, warm: { bytes: 0, budget: budgets.warmBytes, after: 0 } },
      notes: [],
    };
  }
}

async function smallCollection(dir: string, options: DatabaseOptions): Promise<{ db: Database; col: Collection; rows: Float32Array }> {
  const db = track(await Database.open(dir, { workers: 2, segmentMaxRecords: 1_000, ...options }));
  const col = await db.createCollection(COL, { dimension: 16, hnsw: { M: 8, efConstruction: 32 } });
  const rows = clusteredDataset({ count: 4_000, dim: 16, seed: 5 });
  for (let b = 0; b < 4_000; b += 1_000) {
    await col.upsert(Array.from({ length: 1_000 }, (_, j) => ({ id: `x${b + j}`, vector: rows.subarray((b + j) * 16, (b + j + 1) * 16) })));
  }
  await col.flush();
  await db.flushUploads();
  return { db, col, rows };
}

test('a custom TieringPolicy is the one consulted, with the configured budgets and clock, and its plan is executed', { timeout: 300_000 }, () =>
  withTmpDir('tiers-policy', async (dir) => {
    let now = 1_800_000_000_000;
    const policy = new AlternatingPolicy();
    const { db, col, rows } = await smallCollection(dir, {
      clock: { now: () => now }, hotBytes: 1 << 30, warmBytes: 1 << 30,
      tiering: { policy, intervalMs: 0, highWatermark: 0.8, lowWatermark: 0.5 },
    });
    const segs = col.segments();
    assert.equal(segs.length, 4);
    assert.equal(db.stats().tiering.policy, 'test-alternating');
    {
      const before = tiersOf(col.segments());
      now += 1234;
      const planned = await db.tiering.plan();
      assert.deepEqual(tiersOf(col.segments()), before, 'plan() moves nothing');
      assert.equal(policy.calls.length, 1);
      const call = policy.calls[0]!;
      assert.deepEqual(call.budgets, { hotBytes: 1 << 30, warmBytes: 1 << 30, highWatermark: 0.8, lowWatermark: 0.5 });
      assert.equal(call.now, now, 'the injected clock');
      assert.deepEqual(call.segments.map((s) => s.id).sort(), segs.map((s) => s.id).sort());
      for (const s of call.segments) {
        const info = segs.find((x) => x.id === s.id)!;
        assert.equal(s.tier, info.tier);
        assert.equal(s.localBytes, info.bytes);
        assert.equal(s.hasRemoteCopy, true);
        assert.equal(s.available, true);
      }
      // Under these budgets the default policy would move nothing; this one moves all four.
      assert.equal(planned.moves.length, 4);

      const res = await db.tiering.apply();
      assert.deepEqual(res.failed, []);
      assert.equal(res.applied.length, 4);
      for (const a of res.applied) assert.match(a.reason, /^alternating: /);
      const byseq = col.segments().sort((a, b) => a.seq - b.seq).map((s) => s.tier);
      assert.deepEqual(byseq, ['cold', 'hot', 'cold', 'hot']);
      // Data intact: every record is found by exact search, cold ones by rehydration.
      for (const i of [0, 999, 1000, 2500, 3999]) {
        const [hit] = await col.search(rows.subarray(i * 16, (i + 1) * 16), { k: 1, exact: true });
        assert.equal(hit!.id, `x${i}`);
      }
      assert.equal(db.stats().tiering.runs, 1);
    }
    await db.close();
  }));

/** A policy whose plan is whatever the test scripts next. */
function scriptedPolicy(): TieringPolicy & { next: PlannedMove[] } {
  return {
    name: 'test-scripted',
    next: [],
    plan(_segments, budgets) {
      return {
        moves: this.next,
        usage: { hot: { bytes: 0, budget: budgets.hotBytes, after: 0 }, warm: { bytes: 0, budget: budgets.warmBytes, after: 0 } },
        notes: [],
      };
    },
  };
}

test('a pin holds against a custom policy whose plan ignores it', { timeout: 300_000 }, () =>
  withTmpDir('tiers-policy-pin', async (dir) => {
    const policy = scriptedPolicy();
    const { db, col } = await smallCollection(dir, { tiering: { policy, intervalMs: 0 } });
    const [a, b] = col.segments();
    await col.pin(a!.id, 'warm');
    policy.next = [
      { segmentId: a!.id, from: 'warm', to: 'cold', reason: 'ignores the pin', cause: 'local-pressure', bytes: a!.bytes },
      { segmentId: b!.id, from: 'warm', to: 'cold', reason: 'an ordinary move', cause: 'local-pressure', bytes: b!.bytes },
    ];
    const res = await db.tiering.apply();
    const tiers = tiersOf(col.segments());
    assert.equal(tiers[b!.id], 'cold', 'the unpinned segment moved as planned');
    assert.equal(tiers[a!.id], 'warm', `the segment pinned warm was moved by a policy's plan (applied: ${JSON.stringify(res.applied.map((m) => `${m.segmentId} ${m.from}->${m.to}`))})`);
    await db.close();
  }));

test('a custom plan naming a tier that does not exist is refused with a coded error, and nothing moves', { timeout: 300_000 }, () =>
  withTmpDir('tiers-policy-tier', async (dir) => {
    const policy = scriptedPolicy();
    const { db, col } = await smallCollection(dir, { tiering: { policy, intervalMs: 0 } });
    const [, b] = col.segments();
    await db.migrate(b!.id, 'hot');
    policy.next = [{ segmentId: b!.id, from: 'hot', to: 'lukewarm' as Tier, reason: 'bogus', cause: 'promotion', bytes: 0 }];
    const res = await db.tiering.apply();
    assert.deepEqual(res.applied.map((m) => `${m.from}->${m.to}`), [], 'no bogus move is reported applied');
    assert.equal(res.failed.length, 1);
    assert.equal(res.failed[0]!.code, 'ERR_INVALID_ARGUMENT');
    assert.equal(tiersOf(col.segments())[b!.id], 'hot', 'the segment stays where it was');
    assert.deepEqual(Object.keys(db.stats().movement.migrations).filter((r) => !/^(hot|warm|cold)->(hot|warm|cold)$/.test(r)), [], 'no made-up route in stats');
    await db.close();
  }));
