// Crash safety of clustering compaction: a child process (test/helpers/crash-cluster.ts) ingests the
// deterministic workload of crash-writer.ts, then runs `db.compact({ cluster: true })` over and over
// while a paced writer keeps writing. The test SIGKILLs it at seeded points: some ms after the nth
// clustering begins (learning regions, writing segments), right after the nth new segment file
// lands in segments/ (the region segments being written), or on the nth manifest temp file (the
// commit). Then it reopens the directory in this process and checks:
//
// - Database.open does not throw;
// - one committed layout: no id is live in two segments of the manifest (the sources and the new
//   segments are never both listed), and segments/ holds exactly the files the manifest lists
//   (open removed the region segments of a clustering whose commit never happened);
// - the manifest's clustering epoch is the last one the child saw finish, or the next one when the
//   kill landed during a clustering (its commit was durable, the reply lost): nothing in between;
// - every acknowledged record get()s bit-identical, the one write op in flight is wholly applied or
//   absent, count() matches, and search returns only live records with their live vector and payload.
//
// Rounds resume from the state the previous kill left. Seeds are fixed by default (named in every
// message); STRATAVEC_CLUSTER_CRASH_SEED=<seed> (or STRATAVEC_TEST_SEED) tries others.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, watch, type FSWatcher } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Database, type StoredRecord } from '../engine/index.js';
import { loadLatestManifest, type CollectionManifest } from '../format/manifest.js';
import { TEMP_PREFIX } from '../format/fsutil.js';
import { SectionKind, SegmentReader, StringTable } from '../format/segment.js';
import { idOf, mulberry32, opSpec, payloadFor, vectorFor, type WorkloadConfig } from './helpers/crash-writer.js';
import { KillableChild, allIds, baseSeed, checkSearch, diffModel, explainStore, mixSeed, removeScenarioDir, sameVector, type Model } from './helpers/crash-checks.js';
import { databaseOptions, type ClusterCrashConfig } from './helpers/crash-cluster.js';
import { waitFor } from './helpers/tmp.js';

const CHILD = fileURLToPath(new URL('./helpers/crash-cluster.js', import.meta.url));
const BASE_SEED = baseSeed('STRATAVEC_CLUSTER_CRASH_SEED');
const COLLECTION = 'clu';
const ROUNDS = 8;
const SEGMENT_MAX = 300;
/** A round whose trigger never fires is ended by a kill this long after clustering starts. */
const FALLBACK_MS = 4000;
const HARD_KILL_MS = 60_000;

type Strategy =
  | { kind: 'begin'; nth: number; ms: number } // ms after the nth CLUSTER BEGIN
  | { kind: 'segfile'; nth: number; ms: number } // ms after the nth new .seg file once clustering runs
  | { kind: 'manifest'; nth: number; ms: number }; // ms after the nth manifest temp file once clustering runs

const PLAN: Strategy['kind'][] = ['begin', 'segfile', 'manifest', 'begin', 'segfile', 'manifest', 'begin', 'segfile'];

function makeStrategy(kind: Strategy['kind'], rng: () => number): Strategy {
  if (kind === 'begin') return { kind, nth: 1 + Math.floor(rng() * 2), ms: Math.floor(rng() * 250) };
  if (kind === 'segfile') return { kind, nth: 1 + Math.floor(rng() * 4), ms: Math.floor(rng() * 5) };
  return { kind, nth: 1 + Math.floor(rng() * 3), ms: Math.floor(rng() * 4) };
}

const describeStrategy = (s: Strategy) =>
  `${s.kind === 'begin' ? 'clustering' : s.kind === 'segfile' ? 'new .seg' : 'manifest temp'} #${s.nth} +${s.ms}ms`;

interface ChildRun {
  lines: string[];
  begun: number[];
  acked: Set<number>;
  /** A clustering had begun and not ended when the kill landed. */
  midClustering: boolean;
  lastEpoch: number | undefined;
  trigger: string;
}

async function runChild(cfg: ClusterCrashConfig, strategy: Strategy): Promise<ChildRun> {
  const child = new KillableChild(CHILD, cfg);
  child.killAt(HARD_KILL_MS, 'hard limit');
  const colDir = path.join(cfg.dir, 'collections', COLLECTION);
  let watchers: FSWatcher[] = [];
  let begins = 0;
  const startWatching = () => {
    if (watchers.length > 0) return;
    const existing = new Set<string>();
    const seen = new Set<string>();
    let count = 0;
    const segDir = path.join(colDir, 'segments');
    void fsp.readdir(segDir).then((names) => names.forEach((n) => existing.add(n)), () => undefined);
    if (strategy.kind === 'segfile') {
      watchers.push(watch(segDir, (_e, name) => {
        if (child.settled || typeof name !== 'string' || !name.endsWith('.seg') || name.startsWith(TEMP_PREFIX) || existing.has(name) || seen.has(name)) return;
        seen.add(name);
        if (++count >= strategy.nth) child.killAfter(strategy.ms, describeStrategy(strategy));
      }));
    } else if (strategy.kind === 'manifest') {
      watchers.push(watch(path.join(colDir, 'manifest'), (_e, name) => {
        if (child.settled || typeof name !== 'string' || !name.startsWith(TEMP_PREFIX) || seen.has(name)) return;
        seen.add(name);
        if (++count >= strategy.nth) child.killAfter(strategy.ms, describeStrategy(strategy));
      }));
    }
  };
  child.readLines((l) => {
    if (child.settled) return;
    const [tag, , what] = l.split(' ');
    if (tag === 'INGESTED') child.killAt(FALLBACK_MS, 'fallback');
    if (tag === 'CLUSTER' && what === 'BEGIN') {
      begins++;
      if (strategy.kind === 'begin' && begins >= strategy.nth) child.killAfter(strategy.ms, describeStrategy(strategy));
      else startWatching();
    }
  });
  child.assertKilled('clustering child', await child.wait(() => watchers.forEach((w) => w.close())));
  watchers = [];
  const begun: number[] = [];
  const acked = new Set<number>();
  let open = false;
  let lastEpoch: number | undefined;
  for (const l of child.lines) {
    const p = l.split(' ');
    if (p[0] === 'BEGIN') begun.push(Number(p[1]));
    else if (p[0] === 'ACK') acked.add(Number(p[1]));
    else if (p[0] === 'CLUSTER' && p[2] === 'BEGIN') open = true;
    else if (p[0] === 'CLUSTER' && p[2] === 'END') {
      open = false;
      lastEpoch = Number(p[3]);
    } else if (p[0] === 'CLUSTER' && p[2] === 'FAIL') assert.fail(`clustering failed in the child: ${l}`);
  }
  return { lines: child.lines, begun, acked, midClustering: open, lastEpoch, trigger: child.trigger };
}

function diff(w: WorkloadConfig, model: Model, got: (StoredRecord | undefined)[]) {
  return diffModel(w, model, got, (n, want, rec) => {
    if (want === undefined) return `expected absent, found ${JSON.stringify(rec.payload)}`;
    if (rec.id !== idOf(n) || !sameVector(rec.vector, vectorFor(w, want, n))) return `expected the vector written by op ${want}, found another`;
    return `expected payload ${JSON.stringify(payloadFor(w, want, n))}, found ${JSON.stringify(rec.payload)}`;
  });
}

/** Live ids per manifest segment, from the files themselves; an id live in two segments is a broken layout. */
async function liveIdsTwice(colDir: string, m: CollectionManifest): Promise<string[]> {
  const owner = new Map<string, string>();
  const twice: string[] = [];
  for (const s of m.segments) {
    const file = path.join(colDir, 'segments', `${String(s.seq).padStart(8, '0')}.seg`);
    const reader = SegmentReader.open(await fsp.readFile(file));
    reader.verifyAll();
    const ids = StringTable.open(reader.raw(SectionKind.ids), reader.header.count);
    const dead = new Set(s.deleted);
    for (let r = 0; r < s.records; r++) {
      if (dead.has(r)) continue;
      const id = ids.get(r) ?? '';
      const other = owner.get(id);
      if (other !== undefined) twice.push(`${id} in ${other} and ${s.id}`);
      owner.set(id, s.id);
    }
  }
  return twice;
}

test(`clustering compaction survives kill -9 at seeded points (seed ${BASE_SEED}; STRATAVEC_CLUSTER_CRASH_SEED)`, async (t) => {
  const seed = mixSeed(BASE_SEED, 7);
  const w: WorkloadConfig = { seed, dimension: 12, idSpace: 2500, batchMin: 20, batchMax: 80, pDelete: 0.15, pFlush: 0.04 };
  const rng = mulberry32(seed ^ 0xc1);
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'stratavec-clucrash-'));
  const colDir = path.join(dir, 'collections', COLLECTION);
  const opts = databaseOptions({ segmentMaxRecords: SEGMENT_MAX, workers: 2 });
  const model: Model = new Map();
  const problems: string[] = [];
  const tally = { mid: 0, committed: 0, notCommitted: 0 };
  let nextOp = 0;
  let epochBefore = 0;
  let ok = false;
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const strategy = makeStrategy(PLAN[round % PLAN.length]!, rng);
      const where = `seed ${seed} (STRATAVEC_CLUSTER_CRASH_SEED=${BASE_SEED}) round ${round}`;
      const cfg: ClusterCrashConfig = {
        ...w, dir, collection: COLLECTION, segmentMaxRecords: SEGMENT_MAX, workers: 2,
        startOp: nextOp, ingestOps: round === 0 ? 40 : 3, minSegments: round === 0 ? 5 : 0, writeEveryMs: 15,
      };
      const run = await runChild(cfg, strategy);
      nextOp = run.begun.length > 0 ? Math.max(nextOp, ...run.begun.map((op) => op + 1)) : nextOp;
      const known = run.lastEpoch ?? epochBefore;
      const onDisk = await loadLatestManifest(path.join(colDir, 'manifest'));
      const epochAtKill = onDisk?.clustering?.epoch ?? 0;
      assert.ok(epochAtKill === known || (run.midClustering && epochAtKill === known + 1),
        `${where}: the manifest has clustering epoch ${epochAtKill}; the child finished epoch ${known}${run.midClustering ? ' and was in the next' : ''}`);
      let outcome = 'no clustering in flight';
      if (run.midClustering) {
        tally.mid++;
        if (epochAtKill > known) tally.committed++;
        else tally.notCommitted++;
        outcome = epochAtKill > known ? 'in-flight clustering committed (reply lost)' : 'in-flight clustering not committed';
      }
      const ctx = `${where} (kill: ${run.trigger}; ${outcome})`;

      let db: Database;
      try {
        db = await Database.open(dir, opts);
      } catch (err) {
        assert.fail(`${ctx}: Database.open threw: ${(err as Error).stack}`);
      }
      try {
        const col = db.collection(COLLECTION);
        // Open rotates a growing segment the replay filled and does not wait for it: until the
        // rotation has queued its seal, `sealing` is still 0 but the growing segment is full.
        const busy = () => {
          const c = db.stats().collections[COLLECTION];
          return c !== undefined && (c.sealing > 0 || c.growing.rows >= SEGMENT_MAX);
        };
        await waitFor(() => !busy(), 'a seal queued by open', 120_000);
        const man = (await loadLatestManifest(path.join(colDir, 'manifest')))!;
        assert.deepEqual(await liveIdsTwice(colDir, man), [], `${ctx}: ids live in two segments (both layouts committed)`);
        const files = (await fsp.readdir(path.join(colDir, 'segments'))).sort();
        assert.deepEqual(files, man.segments.map((s) => `${String(s.seq).padStart(8, '0')}.seg`).sort(), `${ctx}: segments/ after open`);

        const ids = allIds(w);
        const got = await col.get(ids);
        const inFlight = run.begun.filter((op) => !run.acked.has(op) && opSpec(w, op).kind !== 'flush');
        assert.ok(inFlight.length <= 1, `${ctx}: ${inFlight.length} write ops in flight; the child writes sequentially`);
        const found = explainStore(w, model, run.acked, inFlight, (m) => diff(w, m, got));
        if (!found.match) {
          assert.fail(`${ctx}: the store matches no outcome of the in-flight op [${inFlight.join(', ')}]: ${found.best.count} records differ, e.g.\n  ${found.best.samples.join('\n  ')}`);
        }
        model.clear();
        for (const [k, v] of found.match.model) model.set(k, v);
        assert.equal(col.count(), model.size, `${ctx}: count()`);
        await checkSearch(col, w, model, rng, [{ k: 20 }, { k: 20, exact: true }], ctx, problems);
        epochBefore = man.clustering?.epoch ?? 0;
        t.diagnostic(`round ${round}: kill on ${run.trigger}; ${outcome}; epoch ${epochBefore}; ${model.size} live in ${man.segments.length} segments`);
      } finally {
        await db.close();
      }
    }
    assert.deepEqual(problems, [], `seed ${seed}: search problems`);
    t.diagnostic(`kills mid-clustering: ${tally.mid} (${tally.committed} committed, ${tally.notCommitted} not)`);
    assert.ok(tally.mid >= ROUNDS / 2, `seed ${seed}: only ${tally.mid} of ${ROUNDS} kills landed during a clustering compaction`);
    ok = true;
  } finally {
    await removeScenarioDir(t, dir, ok);
  }
});
