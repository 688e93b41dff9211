// Maintenance commands: `verify [--repair]`, `gc [--dry-run] [--grace D]`, `compact [--dry-run] [--cluster]`.
// The exit code says the same as the --json document (its `exitCode` field): verify exits 3 when
// a problem remains or a copy could not be checked (an unreachable store is not "ok"); gc exits 1
// when an entry failed or the store could not be listed. Progress goes to stderr.

import type { SegmentCheck } from '../engine/index.js';
import { flag, str, parseDuration, expectPositionals, UsageError } from './args.js';
import { out, outJson, note, bytes, duration, when, setInterruptHandler } from './output.js';
import { withDb } from './inspect.js';
import type { Ctx } from './args.js';

/** A segment none of whose data copies was checked good: a cold segment whose store did not
 *  answer (its id stub holds ids only, not the data). */
const unverified = (s: SegmentCheck) => s.status !== 'gone' && s.status !== 'unavailable' && !s.copies.some((c) => c.copy !== 'stub' && c.status === 'ok');

export async function verifyCommand(ctx: Ctx): Promise<number> {
  expectPositionals(ctx.command, ctx.p, []);
  const repair = flag(ctx.p, 'repair');
  // A corrupt newest manifest keeps the database from opening at all: restore it first.
  const manifestRecovery = repair ? await ctx.repairManifests(false) : [];
  return withDb(ctx, async (db) => {
    // Ctrl-C: closing the database stops verify between segments; the report says incomplete.
    setInterruptHandler(() => void db.close());
    const report = await db.verify({
      repair,
      remote: !flag(ctx.p, 'no-remote'),
      onProgress: ({ done, total, segmentId }) => note(`[${done}/${total}] ${segmentId}`),
    });
    setInterruptHandler(undefined);
    const s = report.summary;
    const problems = {
      damaged: s.damaged,
      unavailable: s.unavailable,
      badManifests: report.manifests.filter((m) => m.status === 'corrupt').length,
      manifestsNotRestored: manifestRecovery.filter((m) => m.action === 'failed').map((m) => m.collection),
      unverified: report.segments.filter(unverified).map((x) => x.segmentId),
      unreachableCopies: report.segments.reduce((n, x) => n + x.copies.filter((c) => c.status === 'unreachable').length, 0),
      remoteError: report.remoteError,
      incomplete: !report.complete,
    };
    const exitCode = problems.damaged + problems.unavailable + problems.badManifests + problems.manifestsNotRestored.length + problems.unverified.length + problems.unreachableCopies > 0 ||
      problems.remoteError !== undefined || problems.incomplete ? 3 : 0;
    if (ctx.json) {
      outJson({ ...report, manifestRecovery, problems, exitCode });
      return exitCode;
    }
    for (const m of manifestRecovery) if (m.action !== 'ok') out(`manifest ${m.collection}: ${m.action}: ${m.detail}`);
    for (const m of report.manifests) if (m.status !== 'ok') out(`manifest ${m.collection} v${m.version}: ${m.status}: ${m.detail ?? ''}`);
    for (const seg of report.segments) {
      const unchecked = unverified(seg);
      if (seg.status === 'ok' && !unchecked && seg.copies.every((c) => c.status === 'ok')) continue;
      out(`${seg.segmentId} (${seg.tier}): ${unchecked ? 'NOT CHECKED (no copy could be read)' : seg.status}`);
      for (const c of seg.copies) {
        if (c.status !== 'ok' || c.action) out(`  ${c.copy.padEnd(6)} ${c.location}: ${c.status}${c.action ? ` -> ${c.action}` : ''}${c.detail ? ` (${c.detail})` : ''}`);
      }
    }
    for (const u of report.unreferenced) out(`unreferenced ${u.kind} ${u.location} (${u.reason}, ${bytes(u.bytes)})`);
    if (report.remoteError) out(`object store: ${report.remoteError}`);
    if (!report.complete) out('incomplete: stopped before every segment was checked');
    out(`${s.segments} segments, ${s.copies} copies, ${bytes(s.bytesRead)} read in ${duration(report.ms)}: ` +
      `${s.ok} ok, ${s.repaired} repaired, ${s.damaged} damaged, ${s.unavailable} unavailable, ${problems.unverified.length} not checked; ` +
      `${report.unreferenced.length} unreferenced`);
    return exitCode;
  }, undefined, !repair);
}

export async function gcCommand(ctx: Ctx): Promise<number> {
  expectPositionals(ctx.command, ctx.p, []);
  const dryRun = flag(ctx.p, 'dry-run');
  const grace = str(ctx.p, 'grace');
  const graceMs = grace === undefined ? undefined : parseDuration(ctx.command, 'grace', grace);
  return withDb(ctx, async (db) => {
    note(`gc${dryRun ? ' (dry run)' : ''}: scanning local files and the object store`);
    const report = await db.gc({ dryRun });
    const failed = report.entries.filter((e) => e.action === 'failed').length;
    const exitCode = failed > 0 || report.remoteError !== undefined ? 1 : 0;
    if (ctx.json) {
      outJson({ ...report, failed, exitCode });
      return exitCode;
    }
    for (const e of report.entries) {
      const at = e.action === 'marked' || e.action === 'would-mark' || e.action === 'waiting' ? `, deletable ${when(e.deletableAt)}` : '';
      out(`${e.action.padEnd(12)} ${e.reason.padEnd(19)} ${e.location} (${bytes(e.bytes)}${at})${e.error ? `: ${e.error}` : ''}`);
    }
    if (report.remoteError) out(`object store not listed: ${report.remoteError}`);
    out(`${report.entries.length} candidates; ${report.deleted} deleted, ${bytes(report.bytesFreed)} freed, ${failed} failed (grace ${duration(report.graceMs)})`);
    return exitCode;
  }, graceMs === undefined ? undefined : { maintenance: { gcGraceMs: graceMs } }, dryRun);
}

export async function compactCommand(ctx: Ctx): Promise<number> {
  expectPositionals(ctx.command, ctx.p, []);
  const dryRun = flag(ctx.p, 'dry-run');
  const cluster = flag(ctx.p, 'cluster');
  const includeCold = flag(ctx.p, 'include-cold');
  const bySpace = flag(ctx.p, 'by-space');
  if (includeCold && !cluster) throw new UsageError('--include-cold goes with --cluster');
  if (bySpace && !cluster) throw new UsageError('--by-space goes with --cluster');
  return withDb(ctx, async (db) => {
    const report = await db.compact({ dryRun, cluster, ...(includeCold ? { includeCold } : {}), ...(bySpace ? { heat: false } : {}) });
    const skipped = report.results.filter((r) => r.skipped !== undefined).length;
    const exitCode = 0;
    if (ctx.json) {
      outJson({ ...report, skipped, exitCode });
      return exitCode;
    }
    for (const p of report.plans) {
      for (const g of p.groups) out(`${dryRun ? 'would merge' : 'merge'} ${p.collection}: ${g.reason} ${g.sources.join(' + ')}: ${g.live} live of ${g.records} rows`);
    }
    for (const r of report.results) {
      out(r.skipped !== undefined
        ? `${r.sources.join(' + ')}: skipped, ${r.skipped}`
        : `${r.sources.join(' + ')} -> ${r.segmentId ?? '(nothing left)'}: ${r.records} rows, ${r.droppedRows} dropped, ${duration(r.ms)}`);
    }
    for (const c of report.clusterPlans) out(`${c.collection}: clustering ${c.liveRows} live rows (${c.unclusteredRows} unclustered) into ~${c.regions} regions`);
    for (const c of report.clustered) {
      out(c.skipped ? `${c.collection}: ${c.skipped}` : `${c.collection}: ${c.sources.length} segments -> ${c.segmentIds.length} in ${c.regions} regions (epoch ${c.epoch}): ${c.records} rows, ${c.droppedRows} dropped, ${c.ms.toFixed(0)} ms`);
      if (c.heat) {
        out(c.heat.unused ? `${c.collection}: laid out by space (${c.heat.unused})` : `${c.collection}: ${c.heat.hotRows} rows most searched by ${c.heat.queries} recent queries packed into ${c.heat.hotGroups} segments`);
      }
    }
    if (!cluster && report.plans.every((p) => p.groups.length === 0)) out('nothing to compact');
    return exitCode;
  }, undefined, dryRun);
}

/** `repair-manifest`: Database.repairManifests; exit 3 when a collection's manifest could not be restored. */
export async function repairManifestCommand(ctx: Ctx): Promise<number> {
  expectPositionals(ctx.command, ctx.p, []);
  const dryRun = flag(ctx.p, 'dry-run');
  const collections = await ctx.repairManifests(dryRun);
  const failed = collections.filter((c) => c.action === 'failed').map((c) => c.collection);
  const exitCode = failed.length > 0 ? 3 : 0;
  if (ctx.json) {
    outJson({ dryRun, collections, failed, exitCode });
    return exitCode;
  }
  for (const c of collections) {
    const verb = dryRun && (c.action === 'restored' || c.action === 'adopted') ? `would be ${c.action}` : c.action;
    out(`${c.collection}: ${verb}: ${c.detail}`);
    for (const q of c.quarantined) out(`  ${dryRun ? 'would move' : 'moved'} aside: ${q}`);
  }
  if (collections.length === 0) out('no collections');
  return exitCode;
}
