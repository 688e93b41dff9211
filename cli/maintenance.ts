// Maintenance admin commands: `verify [--repair]`, `gc [--dry-run]`, `compact [--dry-run] [--cluster]`.
// Progress goes to stderr so `--json` output on stdout stays machine-readable. Exit code 3 when
// verify leaves a problem behind (damaged or unavailable segments, a bad manifest), so scripts
// can alert on it.

import { Database, type DatabaseOptions } from '../engine/index.js';
import { mb } from './args.js';

export async function verifyCommand(dir: string, repair: boolean, json: boolean, options: DatabaseOptions): Promise<number> {
  const db = await Database.open(dir, options);
  try {
    const report = await db.verify({
      repair,
      onProgress: ({ done, total, segmentId }) => console.error(`[${done}/${total}] ${segmentId}`),
    });
    if (json) {
      console.log(JSON.stringify(report));
    } else {
      for (const m of report.manifests) if (m.status !== 'ok') console.log(`manifest ${m.collection} v${m.version}: ${m.status}: ${m.detail ?? ''}`);
      for (const s of report.segments) {
        if (s.status === 'ok' && s.copies.every((c) => c.status === 'ok')) continue;
        console.log(`${s.segmentId} (${s.tier}): ${s.status}`);
        for (const c of s.copies) {
          if (c.status !== 'ok' || c.action) console.log(`  ${c.copy.padEnd(6)} ${c.location}: ${c.status}${c.action ? ` -> ${c.action}` : ''}${c.detail ? ` (${c.detail})` : ''}`);
        }
      }
      for (const u of report.unreferenced) console.log(`unreferenced ${u.kind} ${u.location} (${u.reason}, ${u.bytes} bytes)`);
      const s = report.summary;
      console.log(`${s.segments} segments, ${s.copies} copies, ${mb(s.bytesRead)} read in ${(report.ms / 1000).toFixed(1)} s: ` +
        `${s.ok} ok, ${s.repaired} repaired, ${s.damaged} damaged, ${s.unavailable} unavailable; ${report.unreferenced.length} unreferenced`);
    }
    const problem = report.summary.damaged + report.summary.unavailable + report.manifests.filter((m) => m.status === 'corrupt').length;
    return problem > 0 ? 3 : 0;
  } finally {
    await db.close();
  }
}

export async function gcCommand(dir: string, dryRun: boolean, json: boolean, options: DatabaseOptions): Promise<number> {
  const db = await Database.open(dir, options);
  try {
    console.error(`gc${dryRun ? ' (dry run)' : ''}: scanning local files and the object store`);
    const report = await db.gc({ dryRun });
    if (json) {
      console.log(JSON.stringify(report));
      return 0;
    }
    for (const e of report.entries) {
      const when = e.action === 'marked' || e.action === 'would-mark' || e.action === 'waiting' ? `, deletable at ${new Date(e.deletableAt).toISOString()}` : '';
      console.log(`${e.action.padEnd(12)} ${e.reason.padEnd(19)} ${e.location} (${e.bytes} bytes${when})${e.error ? `: ${e.error}` : ''}`);
    }
    console.log(`${report.entries.length} candidates; ${report.deleted} deleted, ${mb(report.bytesFreed)} freed (grace ${report.graceMs / 1000} s)`);
    return report.entries.some((e) => e.action === 'failed') ? 1 : 0;
  } finally {
    await db.close();
  }
}

export async function compactCommand(dir: string, dryRun: boolean, json: boolean, options: DatabaseOptions, cluster = false): Promise<number> {
  const db = await Database.open(dir, options);
  try {
    const report = await db.compact({ dryRun, cluster });
    if (json) {
      console.log(JSON.stringify(report));
      return 0;
    }
    for (const p of report.plans) {
      for (const g of p.groups) console.log(`${p.collection}: ${g.reason} ${g.sources.join(' + ')}: ${g.live} live of ${g.records} rows`);
    }
    for (const r of report.results) {
      console.log(`${r.sources.join(' + ')} -> ${r.segmentId ?? '(nothing left)'}: ${r.records} rows, ${r.droppedRows} dropped, ${r.ms.toFixed(0)} ms`);
    }
    for (const c of report.clusterPlans) console.log(`${c.collection}: clustering ${c.liveRows} live rows (${c.unclusteredRows} unclustered) into ~${c.regions} regions`);
    for (const c of report.clustered) {
      console.log(c.skipped ? `${c.collection}: ${c.skipped}` : `${c.collection}: ${c.sources.length} segments -> ${c.segmentIds.length} in ${c.regions} regions (epoch ${c.epoch}): ${c.records} rows, ${c.droppedRows} dropped, ${c.ms.toFixed(0)} ms`);
    }
    if (!cluster && report.plans.every((p) => p.groups.length === 0)) console.log('nothing to compact');
    return 0;
  } finally {
    await db.close();
  }
}
