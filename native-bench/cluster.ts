// Clustering compaction cost: N x 128 rows (natural clusters) in segments of `--segment` rows,
// then `db.compact({ cluster: true })`, timed: wall time, its phases (learning + assigning in one
// pool task, writing the region segments in parallel pool tasks), pool tasks completed, and the
// main thread's event-loop delay while it ran (the work is in the pool: the loop stays free).
// Run: `node dist/native-bench/cluster.js [--rows 50000] [--segment 10000] [--workers 2]`.
// Uses only the public API.

import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Database } from '../engine/index.js';
import { clusteredDataset } from '../harness/datasets.js';

function flag(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

async function main(): Promise<void> {
  const rows = flag('rows', 50_000);
  const segment = flag('segment', 10_000);
  const workers = flag('workers', 2);
  const dim = 128;
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'stratavec-bench-cluster-'));
  const db = await Database.open(dir, {
    workers, segmentMaxRecords: segment, uploadOnSeal: false,
    tiering: { intervalMs: 0 }, maintenance: { gcIntervalMs: 0, scrubIntervalMs: 0, compactIntervalMs: 0 },
  });
  try {
    const col = await db.createCollection('bench', { dimension: dim });
    const data = clusteredDataset({ count: rows, dim, clusters: 1000, seed: 5 });
    const t0 = performance.now();
    for (let at = 0; at < rows; at += 1000) {
      await col.upsert(Array.from({ length: Math.min(1000, rows - at) }, (_, i) => ({ id: `r${at + i}`, vector: data.subarray((at + i) * dim, (at + i + 1) * dim) })));
    }
    await col.flush();
    const ingestMs = performance.now() - t0;
    const before = col.segments().length;
    const tasksBefore = db.stats().workers.completed;
    const loop = monitorEventLoopDelay({ resolution: 5 });
    loop.enable();
    const t1 = performance.now();
    const report = await db.compact({ cluster: true });
    const wall = performance.now() - t1;
    loop.disable();
    const r = report.clustered[0]!;
    const tasks = db.stats().workers.completed - tasksBefore;
    console.log(JSON.stringify({
      rows, dim, segmentMaxRecords: segment, workers, cores: os.availableParallelism(), ingestMs: Math.round(ingestMs),
      segmentsBefore: before, segmentsAfter: r.segmentIds.length, regions: r.regions, splitRegions: r.splitRegions,
      clusterWallMs: Math.round(wall), phases: { plan: Math.round(r.phases.plan), rewrite: Math.round(r.phases.rewrite) },
      poolTasks: tasks,
      eventLoopDelayMs: { p50: loop.percentile(50) / 1e6, p99: loop.percentile(99) / 1e6, max: loop.max / 1e6 },
      sizes: col.segments().map((s) => s.records),
    }, null, 1));
  } finally {
    await db.close();
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

await main();
