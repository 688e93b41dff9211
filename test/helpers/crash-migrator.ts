// The child process of the migration crash suite (test/migration-crash.test.ts). Run as
// `node crash-migrator.js <config-json>`: it opens the database with an S3 object store (s3rver,
// running in the parent, usually behind the parent's fault proxy), ingests the deterministic
// workload of crash-writer.ts, then migrates random segments between hot, warm and cold forever
// (it never exits by itself) while a paced writer keeps upserting and deleting and a search runs
// every few migrations. It reports on stdout, one line each:
//
//   OPEN                                  the database is open (recovery done)
//   BEGIN <op> / ACK <op>                 write op <op> issued / its promise resolved (durable)
//   INGESTED <segments>                   the ingest phase is over; migrations start
//   MIGRATE <n> <id> <to> BEGIN <from>    migration number <n> of this run is about to be issued
//   MIGRATE <n> <id> <to> END <from> <bytes>   it resolved: its manifest commit is durable
//   MIGRATE <n> <id> <to> FAIL <message>  it rejected (never expected; the parent fails on it)
//   SEARCH <n> BEGIN / SEARCH <n> END <hits>   a search over all tiers (it rehydrates cold segments)
//   SEARCHERR <n> <message>               a search rejected (the child carries on)
//   ERR <op> <message>                    a write rejected (the process then exits with code 3)
//
// Lines go out with writeSync on fd 1 (as crash-writer does), so a BEGIN is in the pipe before the
// call it announces starts. Write ops are strictly sequential (at most one in flight), so after a
// kill the parent only has to consider that one op applied or not.

import { Database } from '../../engine/index.js';
import { openObjectStore } from '../../tiers/open-object-store.js';
import { line, mulberry32, oneLine, openCollection, runMain, writeOp, type WorkloadConfig } from './crash-writer.js';

export type TierName = 'hot' | 'warm' | 'cold';

export interface MigratorConfig extends WorkloadConfig {
  dir: string;
  collection: string;
  segmentMaxRecords: number;
  workers: number;
  uploadOnSeal: boolean;
  objectStore: {
    url: string;
    endpoint: string;
    forcePathStyle: boolean;
    credentials: { accessKeyId: string; secretAccessKey: string };
  };
  /** Number of the first write op this run issues (earlier runs issued the ones before it). */
  startOp: number;
  /** Write ops issued back to back before migrations start... */
  ingestOps: number;
  /** ...or more, until the collection has at least this many sealed segments (bounded by 4x ingestOps). */
  minSegments: number;
  /** Pause between write ops once migrations run (0: no writes during migrations). */
  writeEveryMs: number;
  /** A search after every this many migrations. */
  searchEvery: number;
  /** Seeds the choice of segment and target tier. */
  migSeed: number;
  /** Which moves to favour (the parent aims its kill at them): demotions, rehydrations, or neither. */
  focus: 'to-cold' | 'from-cold' | 'any';
}

/** The options both the child and the parent open the database with. */
export function databaseOptions(cfg: Pick<MigratorConfig, 'segmentMaxRecords' | 'workers' | 'uploadOnSeal' | 'objectStore'>) {
  return {
    segmentMaxRecords: cfg.segmentMaxRecords,
    workers: cfg.workers,
    uploadOnSeal: cfg.uploadOnSeal,
    objectStore: { ...cfg.objectStore, credentials: { ...cfg.objectStore.credentials } },
    tiering: { intervalMs: 0 },
    // Retries make a kill land in a backoff sleep rather than at a step; keep them quick.
    objectStoreTuning: { retries: 2, retryBaseMs: 10 },
  };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Where to move a segment now in `from`: cold ones come back, the others go cold half the time. */
function pickTarget(from: TierName, rng: () => number): TierName {
  const r = rng();
  if (from === 'cold') return r < 0.6 ? 'warm' : 'hot';
  if (r < 0.55) return 'cold';
  if (r < 0.9) return from === 'hot' ? 'warm' : 'hot';
  return from; // a no-op move now and then
}

async function main(): Promise<void> {
  const cfg = JSON.parse(process.argv[2] ?? '') as MigratorConfig;
  const db = await Database.open(cfg.dir, databaseOptions(cfg));
  const col = await openCollection(db, cfg);

  let op = cfg.startOp;
  for (let i = 0; i < cfg.ingestOps * 4 && (i < cfg.ingestOps || col.segments().length < cfg.minSegments); i++) await writeOp(cfg, col, op++);
  // The SDK loads most of itself lazily on a client's first request (a second or more on a busy
  // machine): take that hit here, through a throwaway client, not inside the first migration.
  const warm = await openObjectStore(databaseOptions(cfg).objectStore);
  await warm.head(`${cfg.collection}/warm-up`);
  await warm.close();
  line(`INGESTED ${col.segments().length}`);

  // The paced writer: keeps sealing new segments (and tombstoning old ones) under the migrations.
  if (cfg.writeEveryMs > 0) {
    void (async () => {
      for (;;) {
        await sleep(cfg.writeEveryMs);
        await writeOp(cfg, col, op++);
      }
    })();
  }

  const rng = mulberry32(cfg.migSeed);
  const query = new Float32Array(cfg.dimension);
  let searches = 0;
  for (let n = 0; ; n++) {
    const segs = col.segments();
    if (segs.length === 0) {
      await sleep(5);
      continue;
    }
    let pool = segs;
    if (cfg.focus !== 'any' && rng() < 0.75) {
      const focused = segs.filter((s) => (s.tier === 'cold') === (cfg.focus === 'from-cold'));
      if (focused.length > 0) pool = focused;
    }
    const seg = pool[Math.floor(rng() * pool.length)]!;
    let to = pickTarget(seg.tier, rng);
    if (cfg.focus === 'to-cold' && seg.tier !== 'cold' && rng() < 0.6) to = 'cold';
    line(`MIGRATE ${n} ${seg.id} ${to} BEGIN ${seg.tier}`);
    try {
      const res = await db.migrate(seg.id, to);
      line(`MIGRATE ${n} ${seg.id} ${to} END ${res.from} ${res.bytes}`);
    } catch (err) {
      line(`MIGRATE ${n} ${seg.id} ${to} FAIL ${oneLine(err)}`);
    }
    if (n % cfg.searchEvery === cfg.searchEvery - 1) {
      const s = searches++;
      for (let i = 0; i < query.length; i++) query[i] = (rng() - 0.5) * 8;
      line(`SEARCH ${s} BEGIN`);
      try {
        const hits = await col.search(query, { k: 10 });
        line(`SEARCH ${s} END ${hits.length}`);
      } catch (err) {
        line(`SEARCHERR ${s} ${oneLine(err)}`);
      }
    }
  }
}

runMain(import.meta.url, main);
