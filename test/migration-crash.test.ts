// Crash safety of tier migrations: a child process (test/helpers/crash-migrator.ts) ingests the
// deterministic workload of crash-writer.ts into a database whose cold tier is S3 (s3rver, run by
// THIS process so it outlives every kill, reached through a fault proxy that lets the test see each
// S3 request), then migrates random segments between hot, warm and cold while a paced writer keeps
// writing and a search now and then rehydrates cold segments. The test SIGKILLs it, nearly always
// inside a migration: right after a migration begins; on the S3 PUT / HEAD / GET of a segment copy;
// on the upload of a remote manifest (a remote copy has just been committed); while a stub or a
// rehydrated segment file is being written; when a manifest is being written; right after the commit
// that moves a segment to or from cold, before the old copy is released; or after a random delay.
// The child favours the kind of move the round's trigger needs. Then the test reopens the directory
// in this process and checks:
//
// - Database.open does not throw;
// - every segment the manifest lists is in exactly one committed tier: a cold one has a verified stub
//   holding its ids, no local .seg file, and a remote object of the recorded size; a warm one has its
//   .seg file, of the recorded size, every section CRC-valid and equal to the manifest's, and no
//   stub; nothing is hot after a reopen; segments() agrees with the manifest; every segment is 'ok';
// - the tier agrees with the migrations the child saw complete (an acknowledged move is durable); a
//   migration in flight at the kill left its segment either where it was or where it was going;
// - no segment is lost; segments/ holds exactly the files the manifest needs (open removed temp
//   files, uncommitted copies, the .seg of a segment that went cold, the stub of one that came back);
//   no temp file survives in manifest/, wal/ or tmp/;
// - every acknowledged record get()s bit-identical (this rehydrates every cold segment holding live
//   records, so cold copies must download, decode and verify); the one write op in flight at the kill
//   is wholly applied or wholly absent; count() matches; search returns only live records with their
//   live vector and payload; a cold segment without live records still migrates to warm (readable);
// - after close, segments/ holds exactly the files the manifest needs and every cold segment's remote
//   copy is in place.
//
// Remote objects the manifest does not reference (an upload whose commit the kill prevented) are
// allowed (collecting them is garbage collection's job); they are counted and reported. The test
// puts the segments that were cold at reopen back to cold before the next round, so the child resumes
// from the tier layout the kill left. Randomness is seeded, with a fixed base seed by default: the
// seed is in each test's name and assertion messages; rerun with STRATAVEC_MIGRATION_SEED=<seed> (or
// STRATAVEC_TEST_SEED) to try another workload and kill plan (kill timing still varies with machine
// speed). STRATAVEC_KEEP_DIR=1 keeps the directory of a failed scenario.

import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, promises as fsp, watch, type FSWatcher } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Database, type StoredRecord, type SegmentInfo } from '../engine/index.js';
import { loadLatestManifest, type CollectionManifest } from '../format/manifest.js';
import { TEMP_PREFIX } from '../format/fsutil.js';
import { SectionKind, SegmentReader } from '../format/segment.js';
import type { ObjectStore } from '../tiers/object-store.js';
import { openObjectStore } from '../tiers/open-object-store.js';
import { idOf, mulberry32, opSpec, payloadFor, vectorFor, type WorkloadConfig } from './helpers/crash-writer.js';
import { KillableChild, allIds, baseSeed, checkSearch, diffModel, explainStore, mixSeed, removeScenarioDir, sameVector, type Model, type SearchCheck } from './helpers/crash-checks.js';
import { databaseOptions, type MigratorConfig, type TierName } from './helpers/crash-migrator.js';
import { startS3rver, startFaultProxy, S3RVER_CREDENTIALS, type ProxiedRequest, type Fault, type FaultProxy } from '../harness/s3rver.js';
import { waitFor } from './helpers/tmp.js';

const MIGRATOR = fileURLToPath(new URL('./helpers/crash-migrator.js', import.meta.url));
const BASE_SEED = baseSeed('STRATAVEC_MIGRATION_SEED');
const COLLECTION = 'mig';
/**
 * A round whose trigger has not fired this long after the child started migrating is ended by a
 * kill anyway (a kill at a random moment of the migration loop): the delay is drawn from this range.
 */
const FALLBACK_AFTER_INGEST_MS: [number, number] = [800, 2500];
/** The child is killed this long after spawn whatever happened (a loaded machine, a hang). */
const HARD_KILL_MS = 30_000;

type Strategy =
  // ms after the nth migration of the given direction begins
  | { kind: 'migrate'; dir: 'to-cold' | 'from-cold' | 'any'; nth: number; ms: number }
  // the nth S3 PUT of a segment copy: held (it never reaches the store) and killed at once, or
  // passed through and killed ms later (the copy may land, its commit may not)
  | { kind: 'put'; nth: number; hold: boolean; ms: number }
  // the nth S3 HEAD of a segment copy (upload verification, or a demotion checking a recorded copy)
  | { kind: 'head'; nth: number }
  // the nth S3 GET of a segment copy (a rehydration downloading it), killed ms after it passes
  | { kind: 'get'; nth: number; ms: number }
  // the nth PUT of a remote manifest: a remote copy was just committed, the demotion goes on
  | { kind: 'rmanifest'; nth: number }
  // ms after the nth temp file of a stub (a demotion) or of the .seg file of an existing segment (a
  // rehydration decoding its download; seals write new sequence numbers) appears in segments/, or
  // of a manifest (any commit) in manifest/
  | { kind: 'stub' | 'segtemp' | 'manifest'; nth: number; ms: number }
  // at once when the nth new manifest version appears while a migration of the given direction has
  // its new home in place (to cold: the stub is written; from cold: the .seg file is downloaded):
  // aims at the window between the commit and the release of the old copy
  | { kind: 'commit'; dir: 'to-cold' | 'from-cold'; nth: number }
  // ms after spawn (small values land in startup and recovery) or after the migrations started
  | { kind: 'delay'; ms: number; fromSpawn: boolean };

interface Scenario {
  name: string;
  segmentMaxRecords: number;
  workers: number;
  uploadOnSeal: boolean;
  rounds: number;
  workload: Omit<WorkloadConfig, 'seed'>;
  writeEveryMs: number;
  plan: Array<Exclude<Strategy['kind'], 'commit'> | 'migrate-to-cold' | 'migrate-from-cold' | 'put-hold' | 'put-pass' | 'commit-to-cold' | 'commit-from-cold'>;
}

const totals = {
  kills: 0,
  midMigration: 0,
  steps: new Map<string, number>(),
  duringOpen: 0,
  duringIngest: 0,
  migrationsCompleted: 0,
  remoteOrphans: 0,
  unrecordedCopies: 0,
  inFlightApplied: 0,
  inFlightDropped: 0,
  rehydratedByCheck: 0,
};

const pad8 = (seq: number) => String(seq).padStart(8, '0');
const seqOf = (id: string) => Number(id.slice(id.lastIndexOf('.') + 1));
const segFile = (id: string) => `${pad8(seqOf(id))}.seg`;
const stubFile = (id: string) => `${pad8(seqOf(id))}.stub`;
/** Where a tier leaves a segment across a restart: hot is a cache over the warm file. */
const durable = (t: TierName): 'warm' | 'cold' => (t === 'cold' ? 'cold' : 'warm');

// ---- the child ------------------------------------------------------------------------------

interface Migration {
  n: number;
  id: string;
  to: TierName;
  from: TierName;
  state: 'begun' | 'end' | 'fail';
  message?: string;
}

interface ChildRun {
  lines: string[];
  stderr: string;
  opened: boolean;
  ingested: boolean;
  begun: number[];
  acked: Set<number>;
  migrations: Migration[];
  searchErrors: string[];
  trigger: string;
}

/**
 * Runs the child until the strategy's trigger (or the fallback) kills it. `proxy` is the fault proxy
 * the child reaches s3rver through; `firstNewSeq` the collection's nextSegmentSeq before the run
 * (seals write this and above).
 */
async function runChild(cfg: MigratorConfig, strategy: Strategy, fallbackMs: number, firstNewSeq: number, proxy: FaultProxy): Promise<ChildRun> {
  const child = new KillableChild(MIGRATOR, cfg);
  let opened = false;
  let ingested = false;
  child.killAt(HARD_KILL_MS, `hard limit ${HARD_KILL_MS}ms after spawn`);
  if (strategy.kind === 'delay' && strategy.fromSpawn) child.killAfter(strategy.ms, `delay ${strategy.ms}ms after spawn`);

  // S3 requests: segment copies are `<prefix>/<collection>/segments/<id>`, remote manifests
  // `<prefix>/<collection>/manifest/<version>.manifest`.
  let s3Seen = 0;
  proxy.fault = (req: ProxiedRequest): Fault => {
    if (child.settled || !ingested) return 'pass';
    const p = req.url.split('?')[0]!;
    const seg = p.includes(`/${COLLECTION}/segments/`);
    const man = p.includes(`/${COLLECTION}/manifest/`);
    const what = p.slice(p.lastIndexOf('/') + 1);
    if (strategy.kind === 'put' && seg && req.method === 'PUT' && ++s3Seen >= strategy.nth) {
      if (strategy.hold) {
        child.killAfter(0, `PUT #${strategy.nth} of ${what} held`);
        return 'hang';
      }
      child.killAfter(strategy.ms, `PUT #${strategy.nth} of ${what} +${strategy.ms}ms`);
    } else if (strategy.kind === 'head' && seg && req.method === 'HEAD' && ++s3Seen >= strategy.nth) {
      child.killAfter(0, `HEAD #${strategy.nth} of ${what} held`);
      return 'hang';
    } else if (strategy.kind === 'get' && seg && req.method === 'GET' && ++s3Seen >= strategy.nth) {
      child.killAfter(strategy.ms, `GET #${strategy.nth} of ${what} +${strategy.ms}ms`);
    } else if (strategy.kind === 'rmanifest' && man && req.method === 'PUT' && ++s3Seen >= strategy.nth) {
      child.killAfter(0, `remote manifest PUT #${strategy.nth} (${what}) held`);
      return 'hang';
    }
    return 'pass';
  };

  /** The migration the child announced and has not reported done. */
  let current: { id: string; from: TierName; to: TierName } | undefined;
  const watchers: FSWatcher[] = [];
  /** Set when a directory could not be watched (reported once the child is gone). */
  let watchError: string | undefined;
  const watchDir = (dir: string): FSWatcher | undefined => {
    try {
      const w = watch(dir);
      watchers.push(w);
      return w;
    } catch (err) {
      watchError = `cannot watch ${dir}: ${(err as Error).message}`;
      return undefined;
    }
  };
  const startWatching = () => {
    if (strategy.kind === 'commit') {
      const mdir = path.join(cfg.dir, 'collections', COLLECTION, 'manifest');
      const segDir = path.join(cfg.dir, 'collections', COLLECTION, 'segments');
      const seen = new Set<string>();
      let count = 0;
      watchDir(mdir)?.on('change', (_e, name) => {
        if (child.settled || !ingested || typeof name !== 'string' || !/^\d{12}\.manifest$/.test(name) || seen.has(name)) return;
        seen.add(name);
        const m = current;
        if (!m) return;
        const toCold = m.to === 'cold' && m.from !== 'cold';
        const fromCold = m.from === 'cold' && m.to !== 'cold';
        if (strategy.dir === 'to-cold' ? !toCold || !existsSync(path.join(segDir, stubFile(m.id)))
          : !fromCold || !existsSync(path.join(segDir, segFile(m.id)))) return;
        if (++count >= strategy.nth) child.killAfter(0, `commit #${strategy.nth} (${name.slice(6, 12)}) of a ${strategy.dir} migration (${m.id})`);
      });
      return;
    }
    if (strategy.kind !== 'stub' && strategy.kind !== 'segtemp' && strategy.kind !== 'manifest') return;
    const sub = strategy.kind === 'manifest' ? 'manifest' : 'segments';
    const want = strategy.kind === 'stub' ? '.stub-' : strategy.kind === 'segtemp' ? '.seg-' : '';
    const seen = new Set<string>();
    watchDir(path.join(cfg.dir, 'collections', COLLECTION, sub))?.on('change', (_e, name) => {
      if (child.settled || !ingested || typeof name !== 'string' || !name.startsWith(TEMP_PREFIX) || !name.includes(want) || seen.has(name)) return;
      if (strategy.kind === 'segtemp' && Number(name.slice(TEMP_PREFIX.length, TEMP_PREFIX.length + 8)) >= firstNewSeq) return;
      seen.add(name);
      if (seen.size >= strategy.nth) child.killAfter(strategy.ms, `${strategy.kind} temp #${strategy.nth} (${name.slice(TEMP_PREFIX.length, TEMP_PREFIX.length + 13)}) +${strategy.ms}ms`);
    });
  };

  let migBegins = 0;
  child.readLines((l) => {
    const parts = l.split(' ');
    if (parts[0] === 'MIGRATE') current = parts[4] === 'BEGIN' ? { id: parts[2]!, to: parts[3] as TierName, from: parts[5] as TierName } : undefined;
    if (parts[0] === 'OPEN') {
      opened = true;
      startWatching();
    } else if (parts[0] === 'INGESTED') {
      ingested = true;
      if (!child.settled) {
        child.killAt(fallbackMs, `fallback ${fallbackMs}ms into the migrations`);
        if (strategy.kind === 'delay' && !strategy.fromSpawn) child.killAfter(strategy.ms, `delay ${strategy.ms}ms into the migrations`);
      }
    }
    if (child.settled) return;
    if (strategy.kind === 'migrate' && parts[0] === 'MIGRATE' && parts[4] === 'BEGIN') {
      const to = parts[3] as TierName;
      const from = parts[5] as TierName;
      const match = strategy.dir === 'any' ? from !== to
        : strategy.dir === 'to-cold' ? to === 'cold' && from !== 'cold' : from === 'cold' && to !== 'cold';
      if (match && ++migBegins >= strategy.nth) child.killAfter(strategy.ms, `migration ${from}->${to} #${strategy.nth} (${parts[2]}) +${strategy.ms}ms`);
    }
  });

  const exit = await child.wait(() => {
    for (const w of watchers) w.close();
    proxy.fault = () => 'pass';
  });
  assert.equal(watchError, undefined);
  const err = child.assertKilled('migrator', exit);
  assert.equal(err, undefined, `migrator reported an error: ${err}`);

  const { lines, stderr, trigger } = child;

  const begun: number[] = [];
  const acked = new Set<number>();
  const migrations: Migration[] = [];
  const searchErrors: string[] = [];
  for (const l of lines) {
    const p = l.split(' ');
    if (p[0] === 'BEGIN') begun.push(Number(p[1]));
    else if (p[0] === 'ACK') acked.add(Number(p[1]));
    else if (p[0] === 'SEARCHERR') searchErrors.push(l);
    else if (p[0] === 'MIGRATE') {
      const n = Number(p[1]);
      if (p[4] === 'BEGIN') migrations.push({ n, id: p[2]!, to: p[3] as TierName, from: p[5] as TierName, state: 'begun' });
      else {
        const m = migrations.find((x) => x.n === n)!;
        m.state = p[4] === 'END' ? 'end' : 'fail';
        if (m.state === 'fail') m.message = p.slice(5).join(' ');
      }
    }
  }
  return { lines, stderr, opened, ingested, begun, acked, migrations, searchErrors, trigger };
}

// ---- the disk and the object store ------------------------------------------------------------

interface Disk {
  exists: boolean;
  /** Every name in segments/. */
  segments: Set<string>;
  manifestTemps: string[];
  walTemps: string[];
  /** Every name in <db>/tmp (transfer temps, HNSW scratch). */
  tmp: string[];
  /** Local copies the engine found bad and set aside (there should never be any). */
  quarantine: string[];
  manifest: CollectionManifest | undefined;
}

async function listDir(d: string): Promise<string[]> {
  try {
    return (await fsp.readdir(d)).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

async function scanDisk(dir: string): Promise<Disk> {
  const colDir = path.join(dir, 'collections', COLLECTION);
  const exists = await fsp.access(path.join(colDir, 'manifest')).then(() => true, () => false);
  return {
    exists,
    segments: new Set(await listDir(path.join(colDir, 'segments'))),
    manifestTemps: (await listDir(path.join(colDir, 'manifest'))).filter((n) => n.startsWith(TEMP_PREFIX)),
    walTemps: (await listDir(path.join(colDir, 'wal'))).filter((n) => n.startsWith(TEMP_PREFIX)),
    tmp: await listDir(path.join(dir, 'tmp')),
    quarantine: await listDir(path.join(colDir, 'quarantine')),
    manifest: exists ? await loadLatestManifest(path.join(colDir, 'manifest')) : undefined,
  };
}

/** The local files the manifest needs: a warm segment's .seg, a cold segment's stub. */
function neededFiles(m: CollectionManifest | undefined): Set<string> {
  return new Set((m?.segments ?? []).map((s) => (s.tier === 'warm' ? segFile(s.id) : stubFile(s.id))));
}

async function remoteSegments(store: ObjectStore): Promise<Map<string, number>> {
  return new Map((await store.list(`${COLLECTION}/segments/`)).map((o) => [o.key, o.size]));
}

/** Which step of its migration the kill interrupted, read from what the killed process left. */
function classify(m: Migration, disk: Disk, remote: Map<string, number>, remoteAtStart: Map<string, number>): string {
  const entry = disk.manifest?.segments.find((s) => s.id === m.id);
  const has = (n: string) => disk.segments.has(n);
  const temp = (suffix: string) => [...disk.segments].some((n) => n.startsWith(`${TEMP_PREFIX}${suffix}-`));
  const commitTemp = disk.manifestTemps.length > 0 ? ' (a manifest temp file on disk)' : '';
  if (!entry) return `segment ${m.id} not in the manifest?!`;
  if (m.from === m.to) return 'no-op move';
  if (m.to === 'cold') {
    if (entry.tier === 'cold') return has(segFile(m.id)) ? 'to-cold: committed cold, local .seg not yet released' : 'to-cold: complete, reply not delivered';
    if (has(stubFile(m.id))) return `to-cold: stub written, cold commit not made${commitTemp}`;
    if (temp(stubFile(m.id))) return 'to-cold: writing the stub';
    if (entry.remote) return `to-cold: remote copy recorded, stub not yet written${commitTemp}`;
    const key = `${COLLECTION}/segments/${m.id}`;
    if (remote.has(key) && !remoteAtStart.has(key)) return `to-cold: copy uploaded, not yet verified/committed${commitTemp}`;
    if (remote.has(key)) return 'to-cold: before or during the upload (an unrecorded copy from an earlier attempt is in the store)';
    return 'to-cold: before or during the upload';
  }
  if (m.from === 'cold') {
    if (entry.tier === 'cold') {
      if (has(segFile(m.id))) return `from-cold: downloaded and verified, warm commit not made${commitTemp}`;
      if (temp(segFile(m.id))) return 'from-cold: decoding the download into segments/';
      if (disk.tmp.some((n) => n.includes('down'))) return 'from-cold: downloading';
      return 'from-cold: before the download';
    }
    if (has(stubFile(m.id))) return 'from-cold: committed warm, stub not yet removed';
    return m.to === 'hot' ? 'from-cold: committed warm, promoting to hot' : 'from-cold: complete, reply not delivered';
  }
  return `${m.from}->${m.to}: in memory only (promotion or eviction)`;
}

// ---- the model ------------------------------------------------------------------------------

function diff(w: WorkloadConfig, model: Model, got: (StoredRecord | undefined)[]) {
  return diffModel(w, model, got, (n, want, rec) => {
    if (want === undefined) return `expected absent, found ${JSON.stringify(rec.payload)}`;
    if (rec.id !== idOf(n) || !sameVector(rec.vector, vectorFor(w, want, n))) {
      return `expected the vector written by op ${want}, found another (payload ${JSON.stringify(rec.payload)})`;
    }
    return `expected payload ${JSON.stringify(payloadFor(w, want, n))}, found ${JSON.stringify(rec.payload)}`;
  });
}

/** The searches after each reopen (over all tiers): two by HNSW, one exact. */
const SEARCHES: SearchCheck[] = [{ k: 20, exact: false }, { k: 20, exact: false }, { k: 20, exact: true }];

// ---- the scenario driver --------------------------------------------------------------------

function makeStrategy(kind: Scenario['plan'][number], rng: () => number): Strategy {
  const nth = (max: number) => 1 + Math.floor(rng() * max);
  switch (kind) {
    case 'migrate':
      return { kind, dir: 'any', nth: nth(6), ms: rng() < 0.3 ? 0 : Math.floor(rng() * 40) };
    case 'migrate-to-cold':
      return { kind: 'migrate', dir: 'to-cold', nth: nth(4), ms: rng() < 0.25 ? 0 : Math.floor(rng() * 30) };
    case 'migrate-from-cold':
      return { kind: 'migrate', dir: 'from-cold', nth: nth(3), ms: rng() < 0.25 ? 0 : Math.floor(rng() * 30) };
    case 'put':
    case 'put-pass':
      return { kind: 'put', nth: nth(3), hold: false, ms: Math.floor(rng() * 20) };
    case 'put-hold':
      return { kind: 'put', nth: nth(3), hold: true, ms: 0 };
    case 'head':
      return { kind, nth: nth(4) };
    case 'get':
      return { kind, nth: nth(4), ms: Math.floor(rng() * 15) };
    case 'rmanifest':
      return { kind, nth: nth(3) };
    case 'stub':
    case 'segtemp':
    case 'manifest':
      return { kind, nth: nth(3), ms: rng() < 0.5 ? 0 : Math.floor(rng() * 6) };
    case 'commit-to-cold':
      return { kind: 'commit', dir: 'to-cold', nth: nth(2) };
    case 'commit-from-cold':
      return { kind: 'commit', dir: 'from-cold', nth: nth(2) };
    case 'delay':
      return rng() < 0.3 ? { kind, ms: Math.floor(rng() * 2500), fromSpawn: true } : { kind, ms: Math.floor(rng() * 1500), fromSpawn: false };
  }
}

/** The moves a strategy's trigger needs, which the child then favours. */
function focusOf(s: Strategy): MigratorConfig['focus'] {
  switch (s.kind) {
    case 'migrate':
    case 'commit':
      return s.dir === 'any' ? 'any' : s.dir;
    case 'put':
    case 'head':
    case 'rmanifest':
    case 'stub':
      return 'to-cold';
    case 'get':
    case 'segtemp':
      return 'from-cold';
    default:
      return 'any';
  }
}

async function waitForBackground(db: Database, segmentMaxRecords: number): Promise<void> {
  // Opening rotates a growing segment the WAL replay filled, and seals it (then uploads it); let
  // that finish so the file checks below see a quiet directory. A rotation in progress still has a
  // full growing segment; a queued or running seal is counted in `sealing` until it has committed.
  // The limit only catches a seal that never ends (a hang); on a loaded machine a seal may take long.
  const busy = () => {
    const c = db.stats().collections[COLLECTION];
    return c !== undefined && (c.sealing > 0 || c.growing.rows >= segmentMaxRecords);
  };
  await waitFor(() => !busy(), 'a seal queued by open to finish', 120_000);
  await db.flushUploads();
}

async function runScenario(t: TestContext, sc: Scenario, index: number): Promise<void> {
  const seed = mixSeed(BASE_SEED, index);
  const w: WorkloadConfig = { ...sc.workload, seed };
  const rng = mulberry32(seed ^ 0x5eed);
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'stratavec-migcrash-'));
  const server = await startS3rver();
  const proxy = await startFaultProxy(server.endpoint);
  const prefix = `run-${seed.toString(16)}`;
  const objectStore = { url: `s3://${server.bucket}/${prefix}`, forcePathStyle: true, credentials: { ...S3RVER_CREDENTIALS } };
  // The parent talks to s3rver directly: its requests never go through the kill triggers.
  const store = await openObjectStore({ ...objectStore, endpoint: server.endpoint });
  const parentOptions = databaseOptions({ ...sc, objectStore: { ...objectStore, endpoint: server.endpoint } });
  const colDir = path.join(dir, 'collections', COLLECTION);

  const model: Model = new Map();
  /** Durable tiers each segment may be in, as far as the child's acknowledged work says. */
  let tiers = new Map<string, Set<'warm' | 'cold'>>();
  let knownIds: string[] = [];
  let nextOp = 0;
  let ok = false;
  const problems: string[] = [];
  try {
    for (let round = 0; round < sc.rounds; round++) {
      const strategy = makeStrategy(sc.plan[round % sc.plan.length]!, rng);
      const where = `${sc.name} seed=${seed} (STRATAVEC_MIGRATION_SEED=${BASE_SEED}) round ${round}`;
      const cfg: MigratorConfig = {
        ...w, dir, collection: COLLECTION, segmentMaxRecords: sc.segmentMaxRecords, workers: sc.workers, uploadOnSeal: sc.uploadOnSeal,
        objectStore: { ...objectStore, endpoint: proxy.endpoint },
        startOp: nextOp, ingestOps: round === 0 ? 16 : 2, minSegments: round === 0 ? 3 : 0,
        writeEveryMs: sc.writeEveryMs, searchEvery: 4, migSeed: mixSeed(seed, 1000 + round), focus: focusOf(strategy),
      };
      const fallbackMs = FALLBACK_AFTER_INGEST_MS[0] + Math.floor(rng() * (FALLBACK_AFTER_INGEST_MS[1] - FALLBACK_AFTER_INGEST_MS[0]));
      const remoteAtStart = await remoteSegments(store);
      const t0 = performance.now();
      const run = await runChild(cfg, strategy, fallbackMs, (await scanDisk(dir)).manifest?.nextSegmentSeq ?? 1, proxy);
      const t1 = performance.now();
      totals.kills++;
      if (!run.opened) totals.duringOpen++;
      else if (!run.ingested) totals.duringIngest++;

      const fails = run.migrations.filter((m) => m.state === 'fail');
      assert.deepEqual(fails.map((m) => `${m.id} ${m.from}->${m.to}: ${m.message}`), [], `${where}: migrations failed in the child`);
      for (const e of run.searchErrors) problems.push(`${where}: child search failed: ${e}`);
      totals.migrationsCompleted += run.migrations.filter((m) => m.state === 'end').length;

      // What the child's acknowledged work says about each segment's durable tier.
      for (const l of run.lines) {
        const p = l.split(' ');
        if (p[0] === 'MIGRATE' && p[4] === 'END') tiers.set(p[2]!, new Set([durable(p[3] as TierName)]));
        else if (p[0] === 'MIGRATE' && p[4] === 'BEGIN') {
          const cur = tiers.get(p[2]!) ?? new Set(['warm' as const]);
          tiers.set(p[2]!, new Set([...cur, durable(p[3] as TierName)]));
        } else if (p[0] === 'SEARCH' && p[2] === 'BEGIN') {
          // A search rehydrates the cold segments it visits.
          for (const s of tiers.values()) if (s.has('cold')) s.add('warm');
        }
      }
      const inflight = run.migrations.find((m) => m.state === 'begun');

      const disk = await scanDisk(dir);
      const remoteBefore = await remoteSegments(store);
      assert.deepEqual(disk.quarantine, [], `${where}: the child quarantined local segment copies (they failed verification)`);
      let step = '';
      if (inflight) {
        step = classify(inflight, disk, remoteBefore, remoteAtStart);
        totals.midMigration++;
        const key = step.replace(/ \(.*\)$/, '');
        totals.steps.set(key, (totals.steps.get(key) ?? 0) + 1);
      }

      // Reopen: must not throw, whatever the kill interrupted.
      const marks: Array<[string, number]> = [['start', t1]];
      let db: Database;
      try {
        marks.push(['pre-open', performance.now()]);
        db = await Database.open(dir, parentOptions);
        marks.push(['open', performance.now()]);
      } catch (err) {
        assert.fail(`${where}: Database.open after the kill (${run.trigger}${step ? `; ${step}` : ''}) threw: ${(err as Error).stack}`);
      }
      let outcome = '';
      let orphans = 0;
      let unrecorded = 0;
      try {
        if (!db.listCollections().includes(COLLECTION)) {
          assert.equal(run.begun.length + model.size, 0, `${where}: collection missing after ops were issued`);
          outcome = 'no collection yet';
        } else {
          const col = db.collection(COLLECTION);
          await waitForBackground(db, sc.segmentMaxRecords);
          const ctx = `${where} (kill: ${run.trigger}${inflight ? `; in flight: ${inflight.id} ${inflight.from}->${inflight.to}, ${step}` : ''})`;

          // ---- every segment in exactly one committed tier, with the files that tier needs ----
          const segs: SegmentInfo[] = col.segments();
          const after = await scanDisk(dir);
          const man = after.manifest!;
          assert.deepEqual(segs.map((s) => s.id).sort(), man.segments.map((s) => s.id).sort(), `${ctx}: segments() and the manifest disagree`);
          const lost = knownIds.filter((id) => !segs.some((s) => s.id === id));
          assert.deepEqual(lost, [], `${ctx}: segments vanished`);
          const remote = await remoteSegments(store);
          for (const s of segs) {
            const e = man.segments.find((x) => x.id === s.id)!;
            const at = `${ctx}: segment ${s.id}`;
            assert.equal(s.status, 'ok', `${at} is ${s.status}`);
            assert.notEqual(s.tier, 'hot', `${at} is hot right after open`);
            assert.equal(s.tier, e.tier, `${at}: segments() says ${s.tier}, the manifest ${e.tier}`);
            const allowed = tiers.get(s.id) ?? new Set(['warm']);
            assert.ok(allowed.has(e.tier), `${at} is ${e.tier}; the child's acknowledged migrations allow only ${[...allowed].join(' or ')}`);
            if (e.tier === 'cold') {
              assert.ok(!after.segments.has(segFile(s.id)), `${at} is cold but its local ${segFile(s.id)} survived open`);
              assert.ok(after.segments.has(stubFile(s.id)), `${at} is cold but has no stub ${stubFile(s.id)}`);
              assert.equal(e.local, undefined, `${at} is cold but the manifest records a local copy`);
              assert.ok(e.remote, `${at} is cold but the manifest records no remote copy`);
              assert.equal(remote.get(e.remote.key), e.remote.bytes, `${at} is cold; its remote object ${e.remote.key} should hold ${e.remote.bytes} bytes`);
              // The stub is a whole, checksummed file holding the segment's very ids.
              const stub = await fsp.readFile(path.join(colDir, 'segments', stubFile(s.id)));
              let idsCrc: number | undefined;
              try {
                const r = SegmentReader.open(stub);
                r.verifyAll();
                idsCrc = r.entry(SectionKind.ids)?.rawCrc;
              } catch (err) {
                assert.fail(`${at}: its stub is damaged: ${(err as Error).message}`);
              }
              assert.equal(idsCrc, e.sections.find((x) => x.kind === SectionKind.ids)?.rawCrc, `${at}: its stub holds other ids than the manifest's`);
            } else {
              assert.ok(after.segments.has(segFile(s.id)), `${at} is warm but ${segFile(s.id)} is missing`);
              assert.ok(!after.segments.has(stubFile(s.id)), `${at} is warm but its stub ${stubFile(s.id)} survived open`);
              const file = await fsp.readFile(path.join(colDir, 'segments', segFile(s.id)));
              assert.equal(file.length, e.local?.bytes, `${at}: ${segFile(s.id)} has ${file.length} bytes, the manifest says ${e.local?.bytes}`);
              // Readable: every section's checksum holds and is the one the manifest commits to.
              let crcs: number[] = [];
              try {
                const r = SegmentReader.open(file);
                r.verifyAll();
                crcs = r.sections.map((x) => x.rawCrc);
              } catch (err) {
                assert.fail(`${at}: ${segFile(s.id)} is damaged: ${(err as Error).message}`);
              }
              assert.deepEqual(crcs, e.sections.map((x) => x.rawCrc), `${at}: ${segFile(s.id)} is another segment than the manifest's`);
            }
          }
          // Open removed what the killed process left: temp files, the local file of a segment that
          // went cold, the stub of one that came back, copies whose commit never happened.
          assert.deepEqual([...after.segments].sort(), [...neededFiles(man)].sort(), `${ctx}: segments/ after open holds other files than the manifest needs (before open: ${[...disk.segments].join(' ')})`);
          assert.deepEqual(after.manifestTemps, [], `${ctx}: manifest temp files survived open`);
          assert.deepEqual(after.walTemps, [], `${ctx}: WAL temp files survived open`);
          const tmpLeft = after.tmp.filter((n) => disk.tmp.includes(n));
          assert.deepEqual(tmpLeft, [], `${ctx}: files in tmp/ survived open`);

          // ---- every acknowledged record, bit-identical (rehydrates every cold segment with live rows) ----
          const ids = allIds(w);
          let got: (StoredRecord | undefined)[];
          try {
            marks.push(['files', performance.now()]);
            got = await col.get(ids);
            marks.push(['get', performance.now()]);
          } catch (err) {
            assert.fail(`${ctx}: get() of every id threw (a cold segment that cannot be rehydrated?): ${(err as Error).stack}`);
          }
          const inFlightOps = run.begun.filter((op) => !run.acked.has(op) && opSpec(w, op).kind !== 'flush');
          assert.ok(inFlightOps.length <= 1, `${ctx}: ${inFlightOps.length} write ops in flight; the child writes sequentially`);
          const found = explainStore(w, model, run.acked, inFlightOps, (m) => diff(w, m, got));
          if (!found.match) {
            const { best } = found;
            assert.fail(`${ctx}: the store matches neither outcome of the in-flight write op [${inFlightOps.join(', ')}] ` +
              `(acked ${run.acked.size} ops this round). Closest (in-flight ${best.mask !== 0 ? 'applied' : 'dropped'}): ${best.count} records differ, e.g.\n  ${best.samples.join('\n  ')}`);
          }
          const { match } = found;
          let inFlightOutcome = 'none';
          if (inFlightOps.length > 0) {
            const applied = match.mask !== 0;
            if (applied) totals.inFlightApplied++;
            else totals.inFlightDropped++;
            inFlightOutcome = `op ${inFlightOps[0]} ${applied ? 'applied' : 'dropped'}`;
          }
          model.clear();
          for (const [k, v] of match.model) model.set(k, v);
          assert.equal(col.count(), model.size, `${ctx}: count() is ${col.count()}, the model holds ${model.size} live records`);
          await checkSearch(col, w, model, rng, SEARCHES, ctx, problems);
          marks.push(['search', performance.now()]);

          // get() and search rehydrated every cold segment with live records: each is warm now, its
          // file in place and its stub gone.
          const now = await scanDisk(dir);
          for (const s of col.segments()) {
            if (s.live > 0) {
              assert.notEqual(s.tier, 'cold', `${ctx}: segment ${s.id} with ${s.live} live records is still cold after get() and search`);
              assert.ok(now.segments.has(segFile(s.id)) && !now.segments.has(stubFile(s.id)), `${ctx}: rehydrated segment ${s.id} should have its .seg and no stub`);
            }
          }
          // The rest (cold segments without live records) must be readable too.
          const wasCold = segs.filter((s) => s.tier === 'cold').map((s) => s.id);
          totals.rehydratedByCheck += wasCold.length;
          for (const s of col.segments()) {
            if (s.tier !== 'cold') continue;
            try {
              await db.migrate(s.id, 'warm');
            } catch (err) {
              assert.fail(`${ctx}: cold segment ${s.id} (no live records) cannot be rehydrated: ${(err as Error).stack}`);
            }
          }
          // Every local copy the kill left was whole: nothing had to be quarantined and re-fetched.
          const repairs = db.stats().movement.repairs;
          assert.equal(repairs, 0, `${ctx}: ${repairs} local segment copies failed verification after the kill and were repaired from the object store`);
          // Put the tier layout the kill left back for the next round.
          for (const id of wasCold) await db.migrate(id, 'cold');
          marks.push(['rehydrate+restore', performance.now()]);

          // Remote copies nobody references: allowed (GC's job), counted.
          const referenced = new Set(man.segments.map((s) => s.remote?.key).filter((k): k is string => k !== undefined));
          for (const key of remote.keys()) {
            if (referenced.has(key)) continue;
            orphans++;
            if (man.segments.some((s) => `${COLLECTION}/segments/${s.id}` === key)) unrecorded++;
          }
          totals.remoteOrphans += orphans;
          totals.unrecordedCopies += unrecorded;
          const tierCount = (tt: string) => segs.filter((s) => s.tier === tt).length;
          outcome = `${model.size} live; ${segs.length} segments at reopen (${tierCount('warm')} warm, ${tierCount('cold')} cold); ` +
            `in-flight write: ${inFlightOutcome}; ` +
            `remote: ${remote.size} objects, ${orphans} unreferenced (${unrecorded} unrecorded copies of live segments)`;
        }
      } finally {
        await db.close();
        marks.push(['close', performance.now()]);
      }
      const t2 = performance.now();
      nextOp = run.begun.length > 0 ? Math.max(nextOp, ...run.begun.map((op) => op + 1)) : nextOp;

      // After a clean close nothing temporary is left and the segment files are exactly the ones the
      // manifest needs; every cold segment's remote copy is in place.
      const closed = await scanDisk(dir);
      if (closed.exists) {
        assert.deepEqual([...closed.segments].sort(), [...neededFiles(closed.manifest)].sort(), `${where}: segments/ after close holds other files than the manifest needs`);
        assert.deepEqual(closed.manifestTemps, [], `${where}: manifest temp files after close`);
        assert.deepEqual(closed.walTemps, [], `${where}: WAL temp files after close`);
        const remote = await remoteSegments(store);
        for (const s of closed.manifest!.segments) {
          if (s.tier === 'cold') assert.equal(remote.get(s.remote!.key), s.remote!.bytes, `${where}: cold segment ${s.id} lost its remote copy`);
        }
        tiers = new Map(closed.manifest!.segments.map((s) => [s.id, new Set([s.tier])]));
        knownIds = closed.manifest!.segments.map((s) => s.id);
      }
      const done = run.migrations.filter((m) => m.state === 'end').length;
      t.diagnostic(
        `round ${round}: kill on ${run.trigger}; ${run.opened ? `${run.acked.size} writes acked, ${done} migrations done` : 'during startup/recovery'}` +
        `${inflight ? `; MID-MIGRATION ${inflight.id} ${inflight.from}->${inflight.to}: ${step}` : '; no migration in flight'}; ${outcome}; ` +
        `child ${Math.round(t1 - t0)} ms, check ${Math.round(t2 - t1)} ms (${marks.slice(1).map(([k, v], i) => `${k} ${Math.round(v - marks[i]![1])}`).join(', ')})`,
      );
    }
    const remoteManifests = (await store.list(`${COLLECTION}/manifest/`)).length;
    const remoteSegs = await remoteSegments(store);
    const final = (await scanDisk(dir)).manifest;
    const referenced = new Set((final?.segments ?? []).map((x) => x.remote?.key));
    t.diagnostic(`object store at the end: ${remoteSegs.size} segment objects (${[...remoteSegs.keys()].filter((k) => !referenced.has(k)).length} unreferenced), ` +
      `${remoteManifests} remote manifest objects (best-effort copies; only dropCollection ever deletes either kind)`);
    assert.ok(problems.length === 0, `${problems.length} search problem(s):\n  ${problems.slice(0, 10).join('\n  ')}`);
    ok = true;
  } finally {
    await store.close();
    await proxy.stop();
    await server.destroy();
    await removeScenarioDir(t, dir, ok);
  }
}

const SCENARIOS: Scenario[] = [
  {
    name: 'write-through uploads, 1 worker, rotation at 2000',
    segmentMaxRecords: 2000,
    workers: 1,
    uploadOnSeal: true,
    rounds: 10,
    workload: { dimension: 16, idSpace: 9000, batchMin: 100, batchMax: 300, pDelete: 0.1, pFlush: 0.02 },
    writeEveryMs: 40,
    plan: ['migrate-to-cold', 'stub', 'commit-to-cold', 'head', 'migrate-from-cold', 'commit-from-cold', 'get', 'segtemp', 'put-pass', 'delay'],
  },
  {
    name: 'uploads on demotion, inline workers, rotation at 1500',
    segmentMaxRecords: 1500,
    workers: 0,
    uploadOnSeal: false,
    rounds: 10,
    workload: { dimension: 32, idSpace: 7000, batchMin: 80, batchMax: 250, pDelete: 0.15, pFlush: 0.03 },
    writeEveryMs: 50,
    plan: ['migrate-to-cold', 'put-hold', 'rmanifest', 'stub', 'commit-to-cold', 'migrate-from-cold', 'put-pass', 'commit-from-cold', 'segtemp', 'manifest'],
  },
];

let completed = 0;

// The scenarios run side by side (each with its own directory, s3rver and proxy): most of a round is
// spent waiting on child start-up, fsyncs and S3 round trips, so this halves the wall time.
describe('migration crash safety', { concurrency: SCENARIOS.length }, () => {
  SCENARIOS.forEach((sc, i) => {
    // The timeout only catches a hang: ten rounds took over 240 s on a loaded 2-core machine.
    test(`${sc.name} [seed ${BASE_SEED}]`, { timeout: 900_000 }, async (t) => {
      await runScenario(t, sc, i);
      completed++;
    });
  });
});

test('migration crash safety: totals', (t) => {
  const steps = [...totals.steps].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${v}x ${k}`).join('; ');
  t.diagnostic(`kills ${totals.kills}; mid-migration ${totals.midMigration} [${steps}]; during startup ${totals.duringOpen}, during ingest ${totals.duringIngest}; ` +
    `migrations completed by the child ${totals.migrationsCompleted}; cold segments rehydrated by the checks ${totals.rehydratedByCheck}; ` +
    `in-flight writes found applied ${totals.inFlightApplied}, dropped ${totals.inFlightDropped}; ` +
    `unreferenced remote objects seen ${totals.remoteOrphans} (of which unrecorded copies of live segments ${totals.unrecordedCopies})`);
  if (completed === SCENARIOS.length) {
    assert.ok(totals.kills >= 20, `only ${totals.kills} kills ran`);
    assert.ok(totals.midMigration >= 10, `only ${totals.midMigration} of ${totals.kills} kills landed during a migration`);
  }
});
