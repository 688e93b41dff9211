// The child process of the clustering-compaction crash suite (test/cluster-crash.test.ts). Run as
// `node crash-cluster.js <config-json>`: it opens the database, ingests the deterministic workload
// of crash-writer.ts until there are a few sealed segments, then runs clustering compaction over
// and over (it never exits by itself) while a paced writer keeps upserting, deleting and flushing
// (strictly one write op in flight). It reports on stdout, one line each:
//
//   OPEN / BEGIN <op> / ACK <op> / ERR <op> <message>    as crash-writer.ts
//   INGESTED <segments>                   the ingest phase is over; clustering starts
//   CLUSTER <n> BEGIN                     clustering compaction number <n> of this run is issued
//   CLUSTER <n> END <epoch> <sources> <segments>   it resolved: its manifest version is durable
//   CLUSTER <n> FAIL <message>            it rejected (never expected; the parent fails on it)

import { Database } from '../../engine/index.js';
import { line, oneLine, openCollection, runMain, writeOp, type WorkloadConfig } from './crash-writer.js';

export interface ClusterCrashConfig extends WorkloadConfig {
  dir: string;
  collection: string;
  segmentMaxRecords: number;
  workers: number;
  /** Number of the first write op this run issues. */
  startOp: number;
  /** Write ops before clustering starts, or more until there are minSegments sealed segments. */
  ingestOps: number;
  minSegments: number;
  /** Pause between write ops while clustering runs (0: no writes then). */
  writeEveryMs: number;
}

/** The options both the child and the parent open the database with. */
export function databaseOptions(cfg: Pick<ClusterCrashConfig, 'segmentMaxRecords' | 'workers'>) {
  return {
    segmentMaxRecords: cfg.segmentMaxRecords,
    workers: cfg.workers,
    uploadOnSeal: false,
    tiering: { intervalMs: 0 },
    maintenance: { gcIntervalMs: 0, scrubIntervalMs: 0, compactIntervalMs: 0 },
  };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  const cfg = JSON.parse(process.argv[2] ?? '') as ClusterCrashConfig;
  const db = await Database.open(cfg.dir, databaseOptions(cfg));
  const col = await openCollection(db, cfg);
  let op = cfg.startOp;
  for (let i = 0; i < cfg.ingestOps * 4 && (i < cfg.ingestOps || col.segments().length < cfg.minSegments); i++) await writeOp(cfg, col, op++);
  line(`INGESTED ${col.segments().length}`);
  if (cfg.writeEveryMs > 0) {
    void (async () => {
      for (;;) {
        await sleep(cfg.writeEveryMs);
        await writeOp(cfg, col, op++);
      }
    })();
  }
  for (let n = 0; ; n++) {
    line(`CLUSTER ${n} BEGIN`);
    try {
      const r = (await db.compact({ cluster: true })).clustered[0]!;
      line(`CLUSTER ${n} END ${r.epoch ?? 0} ${r.sources.length} ${r.segmentIds.length}`);
    } catch (err) {
      line(`CLUSTER ${n} FAIL ${oneLine(err)}`);
    }
  }
}

runMain(import.meta.url, main);
