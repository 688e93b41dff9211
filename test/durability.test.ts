// Crash durability: a child process (test/helpers/crash-writer.ts) upserts, replaces, deletes and
// flushes, reporting every op it begins and every op whose promise resolved; the test SIGKILLs it at
// random moments (after a random number of acknowledgements, after a random delay, which may land
// during recovery, while a seal is queued or running, during a flush), then reopens the directory
// in this process and checks it against a model of the acknowledged ops:
//
// - Database.open does not throw;
// - every acknowledged record is present with a bit-identical vector and an equal payload, every
//   acknowledged delete and replacement holds, and count() matches;
// - each op begun but not acknowledged is wholly applied or wholly absent (some subset of the
//   in-flight ops explains the store exactly; nothing is half-present);
// - search returns only live records, each with the model's payload and a distance computed from
//   the model's vector (never a replaced or deleted version);
// - after close, no temp file remains and every segment file is one the manifest lists.
//
// Each round resumes from the state the previous kill left, so recovery of torn WAL tails, orphan
// segment files from killed seals and leftover temp files is exercised over and over. Randomness is
// seeded, with a fixed base seed by default (helpers/crash-checks.ts baseSeed): the seed is in each
// test's name and every assertion message; rerun with STRATAVEC_DURABILITY_SEED=<seed> (or
// STRATAVEC_TEST_SEED) to try others (kill timing still varies with machine speed, the workload and
// kill plan do not).

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, watch, type FSWatcher } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import { Database, type StoredRecord } from '../engine/index.js';
import { loadLatestManifest } from '../format/manifest.js';
import { encodeWalFrame, readWal } from '../format/wal.js';
import { TEMP_PREFIX } from '../format/fsutil.js';
import { idOf, mulberry32, opSpec, payloadFor, vectorFor, type WorkloadConfig, type WriterConfig } from './helpers/crash-writer.js';
import { KillableChild, allIds, baseSeed, checkSearch, diffModel, explainStore, mixSeed, removeScenarioDir, sameVector, type Model, type SearchCheck } from './helpers/crash-checks.js';

const WRITER = fileURLToPath(new URL('./helpers/crash-writer.js', import.meta.url));
const BASE_SEED = baseSeed('STRATAVEC_DURABILITY_SEED');
const COLLECTION = 'crash';
/** A round whose kill trigger never fires is ended by this kill anyway (no assertion on time). */
const FALLBACK_KILL_MS = 8000;

type Strategy =
  | { kind: 'acks'; n: number } // kill on the n-th ACK line
  | { kind: 'delay'; ms: number } // kill ms after spawn (small values land in open/recovery)
  | { kind: 'seal'; nth: number; ms: number } // kill ms after the nth time a seal gets queued
  | { kind: 'flush'; nth: number; ms: number } // kill ms after the nth flush op begins
  // Kill ms after the nth temp file appears in segments/ (a seal writing its file) or manifest/ (a
  // commit): aims at the windows between temp write, rename, manifest commit and WAL drop.
  | { kind: 'segfile'; nth: number; ms: number }
  | { kind: 'manifest'; nth: number; ms: number };

interface Scenario {
  name: string;
  segmentMaxRecords: number;
  workers: number;
  rounds: number;
  workload: Omit<WorkloadConfig, 'seed'>;
  plan: Strategy['kind'][];
}

interface Totals {
  kills: number;
  sealInFlight: number;
  sealFilesOnDisk: number;
  commitWindow: number;
  tornTails: number;
  injectedTears: number;
  duringOpen: number;
  inFlightApplied: number;
  inFlightDropped: number;
}

const totals: Totals = {
  kills: 0, sealInFlight: 0, sealFilesOnDisk: 0, commitWindow: 0, tornTails: 0, injectedTears: 0, duringOpen: 0, inFlightApplied: 0, inFlightDropped: 0,
};

// ---- the child ------------------------------------------------------------------------------

interface ChildRun {
  lines: string[];
  stderr: string;
  begun: number[];
  acked: Set<number>;
  opened: boolean;
  /** The child's last SEAL report said a frozen range was queued or sealing. */
  sealQueued: boolean;
  /** A flush op had begun and not returned. */
  flushOpen: boolean;
  trigger: string;
}

async function runChild(cfg: WriterConfig, strategy: Strategy): Promise<ChildRun> {
  const child = new KillableChild(WRITER, cfg);
  let acks = 0;
  let sealStarts = 0;
  let flushes = 0;
  let frozen = 0;
  child.killAt(FALLBACK_KILL_MS, 'fallback');
  if (strategy.kind === 'delay') child.killAfter(strategy.ms, `delay ${strategy.ms}ms`);
  let watcher: FSWatcher | undefined;
  if (strategy.kind === 'segfile' || strategy.kind === 'manifest') {
    const watched = path.join(cfg.dir, 'collections', COLLECTION, strategy.kind === 'segfile' ? 'segments' : 'manifest');
    const seenTemps = new Set<string>();
    try {
      watcher = watch(watched, (_event, name) => {
        if (child.settled || typeof name !== 'string' || !name.startsWith(TEMP_PREFIX) || seenTemps.has(name)) return;
        seenTemps.add(name);
        if (seenTemps.size >= strategy.nth) child.killAfter(strategy.ms, `${strategy.kind} temp #${strategy.nth} +${strategy.ms}ms`);
      });
    } catch {
      // No collection yet (first round): a delay kill instead.
      child.killAfter(500 + strategy.ms * 50, `delay ${500 + strategy.ms * 50}ms (no ${path.basename(watched)}/ to watch yet)`);
    }
  }

  child.readLines((l) => {
    if (child.settled) return;
    const [tag, a] = l.split(' ');
    if (tag === 'ACK' && strategy.kind === 'acks' && ++acks >= strategy.n) {
      child.killAfter(0, `ack #${strategy.n}`);
    } else if (tag === 'SEAL' && strategy.kind === 'seal') {
      const f = Number(a);
      if (f > 0 && frozen === 0 && ++sealStarts >= strategy.nth) child.killAfter(strategy.ms, `seal #${strategy.nth} +${strategy.ms}ms`);
      frozen = f;
    } else if (tag === 'BEGIN' && strategy.kind === 'flush' && opSpec(cfg, Number(a)).kind === 'flush' && ++flushes >= strategy.nth) {
      child.killAfter(strategy.ms, `flush #${strategy.nth} +${strategy.ms}ms`);
    }
  });
  child.assertKilled('writer', await child.wait(() => watcher?.close()));

  const { lines, stderr, trigger } = child;
  const begun: number[] = [];
  const acked = new Set<number>();
  let opened = false;
  let sealQueued = false;
  const openFlushes = new Set<number>();
  for (const l of lines) {
    const [tag, a] = l.split(' ');
    if (tag === 'OPEN') opened = true;
    else if (tag === 'BEGIN') {
      begun.push(Number(a));
      if (opSpec(cfg, Number(a)).kind === 'flush') openFlushes.add(Number(a));
    } else if (tag === 'ACK') {
      acked.add(Number(a));
      openFlushes.delete(Number(a));
    } else if (tag === 'SEAL') sealQueued = Number(a) > 0;
    else if (tag === 'ERR') assert.fail(`writer reported an error: ${l}`);
  }
  return { lines, stderr, begun, acked, opened, sealQueued, flushOpen: openFlushes.size > 0, trigger };
}

// ---- disk evidence (before reopen) and hygiene (after close) ---------------------------------

interface DiskState {
  exists: boolean;
  walSeq: number;
  /** WAL files below the manifest's walSeq: a commit landed, the WAL drop after it did not. */
  staleWals: string[];
  /** Files in the database's scratch dir (HNSW serialisation of a seal in progress). */
  scratch: string[];
  segTemps: string[];
  orphanSegs: string[];
  missingSegs: string[];
  manifestTemps: string[];
  walTemps: string[];
  walFiles: string[];
  tornBytes: number;
}

async function scanCollection(dir: string, dimension: number): Promise<DiskState> {
  const colDir = path.join(dir, 'collections', COLLECTION);
  const state: DiskState = { exists: false, walSeq: 0, staleWals: [], scratch: [], segTemps: [], orphanSegs: [], missingSegs: [], manifestTemps: [], walTemps: [], walFiles: [], tornBytes: 0 };
  try {
    await fsp.access(colDir);
  } catch {
    return state;
  }
  state.exists = true;
  state.scratch = await fsp.readdir(path.join(dir, 'tmp')).catch(() => []);
  const manifest = await loadLatestManifest(path.join(colDir, 'manifest'));
  state.walSeq = manifest?.walSeq ?? 0;
  const known = new Set((manifest?.segments ?? []).map((s) => `${String(s.seq).padStart(8, '0')}.seg`));
  const segs = await fsp.readdir(path.join(colDir, 'segments'));
  state.segTemps = segs.filter((n) => n.startsWith(TEMP_PREFIX));
  state.orphanSegs = segs.filter((n) => n.endsWith('.seg') && !n.startsWith(TEMP_PREFIX) && !known.has(n));
  state.missingSegs = [...known].filter((n) => !segs.includes(n));
  state.manifestTemps = (await fsp.readdir(path.join(colDir, 'manifest'))).filter((n) => n.startsWith(TEMP_PREFIX));
  const wal = (await fsp.readdir(path.join(colDir, 'wal'))).sort();
  state.walTemps = wal.filter((n) => n.startsWith(TEMP_PREFIX));
  state.walFiles = wal.filter((n) => n.endsWith('.wal'));
  state.staleWals = state.walFiles.filter((n) => Number(n.slice(0, 12)) < state.walSeq);
  for (const f of state.walFiles) state.tornBytes += (await readWal(path.join(colDir, 'wal', f), dimension)).tornBytes;
  return state;
}

/**
 * Appends the first part of an upsert frame (optionally followed by zeros, as a file extended but
 * never written looks after a crash) to the newest WAL file: the tail a write cut short by the crash
 * leaves. Its records were never acknowledged, so recovery must drop it whole.
 */
async function injectTornTail(dir: string, w: WorkloadConfig, rng: () => number): Promise<string> {
  const walDir = path.join(dir, 'collections', COLLECTION, 'wal');
  const last = (await fsp.readdir(walDir)).filter((n) => /^\d{12}\.wal$/.test(n)).sort().at(-1);
  if (last === undefined) return '';
  const records = Array.from({ length: 40 }, (_, i) => ({ id: idOf(i * 7), vector: vectorFor(w, 0x7fff0000 + i, i), payloadJson: '{"torn":true}' }));
  const frame = encodeWalFrame({ type: 'upsert', records }, w.dimension);
  const cut = 1 + Math.floor(rng() * (frame.length - 1));
  const zeros = rng() < 0.5 ? Buffer.alloc(1 + Math.floor(rng() * 4096)) : Buffer.alloc(0);
  await fsp.appendFile(path.join(walDir, last), Buffer.concat([frame.subarray(0, cut), zeros]));
  return `; injected torn tail (${cut} of ${frame.length} B${zeros.length ? ` + ${zeros.length} zero B` : ''}) into ${last}`;
}

// ---- the model ------------------------------------------------------------------------------

/** Which op's version a stored record is, for failure messages. */
function identify(w: WorkloadConfig, n: number, rec: StoredRecord, lastOp: number): string {
  for (let op = lastOp; op >= 0; op--) {
    const spec = opSpec(w, op);
    if (spec.kind === 'upsert' && spec.ids.includes(n) && sameVector(vectorFor(w, op, n), rec.vector)) {
      const payloadOk = isDeepStrictEqual(rec.payload, payloadFor(w, op, n));
      return `the version written by op ${op}${payloadOk ? '' : ' but with a different payload'}`;
    }
  }
  return `a vector no op wrote (payload ${JSON.stringify(rec.payload)})`;
}

function diff(w: WorkloadConfig, model: Model, got: (StoredRecord | undefined)[], lastOp: number) {
  return diffModel(w, model, got, (n, want, rec) =>
    `expected ${want === undefined ? 'absent' : `the version written by op ${want}`}, found ${identify(w, n, rec, lastOp)}`);
}

/** The searches after each reopen: three plain, one filtered. */
const SEARCHES: SearchCheck[] = [{ k: 25 }, { k: 25 }, { k: 25 }, { k: 15, grp: 2 }];

// ---- the scenario driver --------------------------------------------------------------------

function makeStrategy(kind: Strategy['kind'], rng: () => number): Strategy {
  switch (kind) {
    case 'acks':
      return { kind, n: 1 + Math.floor(rng() * 30) };
    case 'delay':
      // A third land in the child's startup/open/recovery, the rest in the write stream.
      return { kind, ms: rng() < 0.33 ? Math.floor(rng() * 400) : 400 + Math.floor(rng() * 2500) };
    case 'seal':
      return { kind, nth: 1 + Math.floor(rng() * 2), ms: rng() < 0.25 ? 0 : Math.floor(rng() * 120) };
    case 'flush':
      return { kind, nth: 1 + Math.floor(rng() * 2), ms: rng() < 0.25 ? 0 : Math.floor(rng() * 60) };
    case 'segfile':
    case 'manifest':
      return { kind, nth: 1 + Math.floor(rng() * 3), ms: rng() < 0.5 ? 0 : Math.floor(rng() * 15) };
  }
}

async function runScenario(t: TestContext, sc: Scenario, index: number): Promise<void> {
  const seed = mixSeed(BASE_SEED, index);
  const w: WorkloadConfig = { ...sc.workload, seed };
  const rng = mulberry32(seed ^ 0x5eed);
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'stratavec-durability-'));
  const model: Model = new Map();
  let nextOp = 0;
  let ok = false;
  const searchProblems: string[] = [];
  try {
    for (let round = 0; round < sc.rounds; round++) {
      const strategy = makeStrategy(sc.plan[round % sc.plan.length]!, rng);
      const depth = 1 + Math.floor(rng() * 3);
      const where = `${sc.name} seed=${seed} (STRATAVEC_DURABILITY_SEED=${BASE_SEED}) round ${round}`;
      const cfg: WriterConfig = {
        ...w, dir, collection: COLLECTION, segmentMaxRecords: sc.segmentMaxRecords, workers: sc.workers, startOp: nextOp, depth,
      };
      const t0 = performance.now();
      const run = await runChild(cfg, strategy);
      const t1 = performance.now();
      const inFlight = run.begun.filter((op) => !run.acked.has(op)).sort((a, b) => a - b);
      const disk = await scanCollection(dir, w.dimension);
      totals.kills++;
      const sealFiles = disk.segTemps.length > 0 || disk.orphanSegs.length > 0 || disk.scratch.length > 0;
      const commitWindow = disk.manifestTemps.length > 0 || disk.staleWals.length > 0;
      if (run.sealQueued || run.flushOpen) totals.sealInFlight++;
      if (sealFiles) totals.sealFilesOnDisk++;
      if (commitWindow) totals.commitWindow++;
      if (disk.tornBytes > 0) totals.tornTails++;
      if (!run.opened) totals.duringOpen++;
      assert.deepEqual(disk.missingSegs, [], `${where}: the manifest lists segment files that are not on disk`);
      const injected = disk.exists && rng() < 0.3 ? await injectTornTail(dir, w, rng) : '';
      if (injected) totals.injectedTears++;

      // Reopen: must not throw, whatever the kill interrupted.
      let db: Database;
      try {
        db = await Database.open(dir, { segmentMaxRecords: sc.segmentMaxRecords, workers: sc.workers });
      } catch (err) {
        assert.fail(`${where}: Database.open after the kill threw: ${(err as Error).stack}`);
      }
      let outcome = '';
      try {
        // Recovery removed what the killed process left in flight: its temp files (random names, so
        // a seal running in this process cannot have recreated them) and the HNSW scratch files.
        const colDir = path.join(dir, 'collections', COLLECTION);
        const leftovers = [
          ...disk.segTemps.map((n) => path.join(colDir, 'segments', n)),
          ...disk.manifestTemps.map((n) => path.join(colDir, 'manifest', n)),
          ...disk.walTemps.map((n) => path.join(colDir, 'wal', n)),
          ...disk.scratch.map((n) => path.join(dir, 'tmp', n)),
        ];
        for (const f of leftovers) {
          assert.equal(await fsp.access(f).then(() => true, () => false), false, `${where}: ${path.relative(dir, f)} survived recovery`);
        }
        if (!db.listCollections().includes(COLLECTION)) {
          // Killed before createCollection finished: nothing can have been written.
          assert.equal(run.begun.length + model.size, 0, `${where}: collection missing after ops were issued`);
          outcome = 'no collection yet';
        } else {
          const col = db.collection(COLLECTION);
          const got = await col.get(allIds(w));
          const lastOp = run.begun.length > 0 ? Math.max(...run.begun) : nextOp - 1;
          // In-flight flushes change no content; every other in-flight op is all-or-nothing.
          const uncertain = inFlight.filter((op) => opSpec(w, op).kind !== 'flush');
          const found = explainStore(w, model, run.acked, uncertain, (m) => diff(w, m, got, lastOp));
          if (!found.match) {
            const { best } = found;
            const applied = uncertain.filter((_, i) => (best.mask & (1 << i)) !== 0);
            assert.fail(
              `${where}: the store matches no outcome of the acknowledged ops plus any subset of the in-flight ops [${uncertain.join(', ')}] ` +
              `(kill: ${run.trigger}; acked ${run.acked.size} ops this round, last begun op ${lastOp}).\n` +
              `Closest: in-flight ops [${applied.join(', ')}] applied, ${best.count} records differ, e.g.\n  ${best.samples.join('\n  ')}`,
            );
          }
          const { match } = found;
          for (let i = 0; i < uncertain.length; i++) {
            if ((match.mask & (1 << i)) !== 0) totals.inFlightApplied++;
            else totals.inFlightDropped++;
          }
          model.clear();
          for (const [k, v] of match.model) model.set(k, v);
          assert.equal(col.count(), model.size, `${where}: count() is ${col.count()}, the model holds ${model.size} live records`);
          await checkSearch(col, w, model, rng, SEARCHES, where, searchProblems);
          outcome = `${model.size} live, in-flight [${uncertain.map((op, i) => `${op}${(match.mask & (1 << i)) !== 0 ? '+' : '-'}`).join(' ')}]`;
        }
      } finally {
        await db.close();
      }
      const t2 = performance.now();
      nextOp = run.begun.length > 0 ? Math.max(nextOp, ...run.begun.map((op) => op + 1)) : nextOp;

      // After a clean close nothing temporary is left and the segment files are exactly the
      // manifest's: recovery removed what the killed process left, and nothing new leaked.
      const after = await scanCollection(dir, w.dimension);
      if (after.exists) {
        assert.deepEqual(after.segTemps, [], `${where}: temp files left in segments/ after reopen + close`);
        assert.deepEqual(after.manifestTemps, [], `${where}: temp files left in manifest/ after reopen + close`);
        assert.deepEqual(after.walTemps, [], `${where}: temp files left in wal/ after reopen + close`);
        assert.deepEqual(after.orphanSegs, [], `${where}: segment files the manifest does not list after reopen + close`);
        assert.deepEqual(after.missingSegs, [], `${where}: the manifest lists segment files that are not on disk after close`);
        assert.equal(after.tornBytes, 0, `${where}: a torn WAL tail survived recovery`);
      }
      t.diagnostic(
        `round ${round}: kill on ${run.trigger} depth=${depth}; ${run.opened ? `${run.acked.size} acked` : 'during startup/recovery'}` +
        `${run.sealQueued || run.flushOpen ? '; seal in flight' : ''}` +
        `${sealFiles ? `; seal files on disk (${disk.segTemps.length} temp, ${disk.orphanSegs.length} uncommitted, ${disk.scratch.length} scratch)` : ''}` +
        `${commitWindow ? `; commit window (${disk.manifestTemps.length} manifest temp, ${disk.staleWals.length} WAL files below walSeq ${disk.walSeq})` : ''}` +
        `${disk.tornBytes > 0 ? `; torn WAL tail ${disk.tornBytes} B` : ''}${injected}; ${outcome}; ` +
        `child ${Math.round(t1 - t0)} ms, check ${Math.round(t2 - t1)} ms`,
      );
    }
    assert.ok(searchProblems.length === 0,
      `${searchProblems.length} search problem(s) (durability checks of all ${sc.rounds} rounds passed):\n  ${searchProblems.slice(0, 10).join('\n  ')}`);
    ok = true;
  } finally {
    await removeScenarioDir(t, dir, ok);
  }
}

const SCENARIOS: Scenario[] = [
  {
    name: 'upserts and replacements, rotation at 1500',
    segmentMaxRecords: 1500,
    workers: 1,
    rounds: 9,
    workload: { dimension: 16, idSpace: 6000, batchMin: 100, batchMax: 300, pDelete: 0.08, pFlush: 0.03 },
    plan: ['acks', 'seal', 'segfile', 'delay', 'manifest', 'flush', 'segfile', 'acks', 'seal'],
  },
  {
    name: 'deletes, replacements and frequent seals, rotation at 600',
    segmentMaxRecords: 600,
    workers: 1,
    rounds: 9,
    workload: { dimension: 32, idSpace: 2500, batchMin: 50, batchMax: 200, pDelete: 0.25, pFlush: 0.12 },
    plan: ['seal', 'manifest', 'segfile', 'acks', 'flush', 'delay', 'segfile', 'manifest', 'seal'],
  },
  {
    name: 'inline seals (workers: 0), rotation at 1000',
    segmentMaxRecords: 1000,
    workers: 0,
    rounds: 8,
    workload: { dimension: 16, idSpace: 4000, batchMin: 100, batchMax: 250, pDelete: 0.15, pFlush: 0.05 },
    plan: ['delay', 'segfile', 'acks', 'manifest', 'flush', 'seal', 'segfile', 'delay'],
  },
];

let completed = 0;

SCENARIOS.forEach((sc, i) => {
  // The timeout only catches a hang (a loaded 2-core machine runs a scenario several times slower).
  test(`crash durability: ${sc.name} [seed ${BASE_SEED}]`, { timeout: 900_000 }, async (t) => {
    await runScenario(t, sc, i);
    completed++;
  });
});

test('crash durability: totals', (t) => {
  t.diagnostic(`kills ${totals.kills}; seal in flight (queued or sealing per the writer, or a flush open) ${totals.sealInFlight}; ` +
    `seal files on disk at reopen (temp/uncommitted segment, HNSW scratch) ${totals.sealFilesOnDisk}; ` +
    `in a commit window (manifest temp or WAL not yet dropped) ${totals.commitWindow}; torn WAL tails from kills ${totals.tornTails}, injected ${totals.injectedTears}; ` +
    `during startup/recovery ${totals.duringOpen}; ` +
    `in-flight ops found applied ${totals.inFlightApplied}, dropped ${totals.inFlightDropped}`);
  // Only meaningful when every scenario ran to the end (not under --test-name-pattern or after a failure).
  if (completed === SCENARIOS.length) assert.ok(totals.kills >= 20, `only ${totals.kills} kills ran`);
});
