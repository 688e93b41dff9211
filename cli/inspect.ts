// Commands that look at a database and change at most a pin: `status`, `info`, `stats`,
// `segments`, `segment show`, `pin`, `unpin`. Text goes to stdout as tables in human units;
// --json prints the same figures (raw numbers) as one document. The looking ones open read-only
// (cli/commands.ts), so they see a database an app has open, as of the manifest version they read.

import { StratavecError, readPublishedStats, publishedAccess, type Database, type PublishedStats, type SegmentInfo } from '../engine/index.js';
import { UsageError, expectPositionals, str } from './args.js';
import { out, outJson, bytes, duration, when, table } from './output.js';
import type { Ctx } from './args.js';

type Tier = 'hot' | 'warm' | 'cold';
const TIERS: readonly Tier[] = ['hot', 'warm', 'cold'];

/** Runs `fn` on the database, opened read-only (`look`) or with the lock and writer claim. */
export async function withDb<T>(ctx: Ctx, fn: (db: Database) => Promise<T>, extra?: Parameters<Ctx['open']>[0], look = false): Promise<T> {
  const db = await (look ? ctx.openReadOnly(extra) : ctx.open(extra));
  return closing(db, () => fn(db));
}

async function closing<T>(db: Database, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } finally {
    await db.close();
  }
}

function allSegments(db: Database): SegmentInfo[] {
  return db.listCollections().flatMap((name) => db.collection(name).segments());
}

export function findSegment(db: Database, id: string, command: string): SegmentInfo {
  const seg = allSegments(db).find((s) => s.id === id);
  if (!seg) throw new StratavecError('ERR_SEGMENT_NOT_FOUND', `no segment ${JSON.stringify(id)} (\`stratavec info\` lists them; ${command} needs an id such as docs.3)`);
  return seg;
}

function tierOf(command: string, v: string | undefined): Tier | undefined {
  if (v === undefined) return undefined;
  if (!TIERS.includes(v as Tier)) throw new UsageError(`tier must be hot, warm or cold, got ${JSON.stringify(v)}`, command);
  return v as Tier;
}

function segmentRows(segs: SegmentInfo[]): string[] {
  return table(
    ['segment', 'tier', 'pin', 'live', 'deleted', 'size', 'remote', 'status'],
    segs.map((s) => [s.id, s.tier, s.pinned ?? '-', String(s.live), String(s.deleted), bytes(s.bytes), bytes(s.remoteBytes), s.status]),
    [false, false, false, true, true, true, true, false],
  );
}

export async function statusCommand(ctx: Ctx): Promise<number> {
  expectPositionals(ctx.command, ctx.p, []);
  const db = await ctx.openReadOnly();
  const published = await livePublished(ctx.dir);
  return closing(db, async () => {
    const stats = db.stats();
    const segs = allSegments(db);
    const perTier = Object.fromEntries(TIERS.map((t) => {
      const list = segs.filter((s) => s.tier === t);
      const b = list.reduce((n, s) => n + (t === 'cold' ? s.remoteBytes ?? 0 : s.bytes), 0);
      return [t, { segments: list.length, bytes: b }];
    })) as Record<Tier, { segments: number; bytes: number }>;
    const unavailable = segs.filter((s) => s.status === 'unavailable').map((s) => s.id);
    const notUploaded = segs.filter((s) => s.tier !== 'cold' && s.remoteBytes === undefined).map((s) => s.id);
    const collections = db.listCollections().map((name) => {
      const col = db.collection(name);
      const list = col.segments();
      return { name, dimension: col.dimension, metric: col.metric, records: col.count(), segments: list.length, bytes: list.reduce((n, s) => n + s.bytes, 0) };
    });
    const o = db.options;
    const store = typeof o.objectStore === 'string' ? o.objectStore : `${o.objectStore.url}${o.objectStore.endpoint ? ` (${o.objectStore.endpoint})` : ''}`;
    const report = {
      dir: db.dir,
      objectStore: store,
      collections,
      tiers: {
        hot: { ...perTier.hot, budget: o.hotBytes },
        warm: { ...perTier.warm, localBytes: perTier.hot.bytes + perTier.warm.bytes, budget: o.warmBytes },
        cold: perTier.cold,
      },
      unavailable,
      notUploaded,
      settings: {
        segmentMaxRecords: o.segmentMaxRecords, uploadOnSeal: o.uploadOnSeal,
        gcGraceMs: o.maintenance.gcGraceMs, tieringHighWatermark: o.tiering.highWatermark, tieringLowWatermark: o.tiering.lowWatermark,
      },
      // The serving process's counters (hit ratios, uploads), when one publishes them.
      maintenance: published ? (published.stats as { maintenance?: unknown }).maintenance ?? stats.maintenance : stats.maintenance,
      serving: published ? servingFigures(published) : null,
    };
    if (ctx.json) {
      outJson(report);
    } else {
      out(`database ${db.dir}`);
      out(`object store ${store}`);
      out('');
      for (const line of table(['collection', 'dim', 'metric', 'records', 'segments', 'size'],
        collections.map((c) => [c.name, String(c.dimension), c.metric, String(c.records), String(c.segments), bytes(c.bytes)]),
        [false, true, false, true, true, true])) out(line);
      out('');
      const t = report.tiers;
      for (const line of table(['tier', 'segments', 'size', 'budget'], [
        ['hot', String(t.hot.segments), bytes(t.hot.bytes), bytes(t.hot.budget)],
        ['warm', String(t.warm.segments), bytes(t.warm.bytes), `${bytes(t.warm.budget)} (hot+warm files: ${bytes(t.warm.localBytes)})`],
        ['cold', String(t.cold.segments), bytes(t.cold.bytes), '-'],
      ], [false, true, true, false])) out(line);
      out('');
      out(`unavailable segments: ${unavailable.length === 0 ? 'none' : unavailable.join(' ')}`);
      out(`local segments without a remote copy: ${notUploaded.length === 0 ? 'none' : notUploaded.join(' ')}`);
      out(`settings: segmentMaxRecords ${o.segmentMaxRecords}, GC grace ${o.maintenance.gcGraceMs / 1000} s, watermarks ${o.tiering.lowWatermark}-${o.tiering.highWatermark}`);
      const s = report.serving;
      if (s) {
        out(`serving process ${s.pid}: figures ${describePublished(published!)}`);
        out(`  hot hit ratio ${s.hotHitRatio === null ? '-' : `${(100 * s.hotHitRatio).toFixed(1)}%`} (${s.hotHits} hits, ${s.hotMisses} misses, ${s.hotLoads} loads)`);
        out(`  uploads ${s.uploads}, failed ${s.uploadFailures}`);
        if (s.lastRemoteError) out(`  last remote error: ${s.lastRemoteError}`);
      } else {
        out('(no app publishes stats here: hit ratios and uploads not shown)');
      }
    }
    return 0;
  });
}

export async function infoCommand(ctx: Ctx): Promise<number> {
  expectPositionals(ctx.command, ctx.p, []);
  return withDb(ctx, async (db) => {
    const cols = db.listCollections().map((name) => {
      const col = db.collection(name);
      return { name, dimension: col.dimension, metric: col.metric, records: col.count(), segments: col.segments() };
    });
    if (ctx.json) {
      outJson(cols);
      return 0;
    }
    for (const c of cols) {
      out(`${c.name}: ${c.records} records, dimension ${c.dimension}, ${c.metric}, ${c.segments.length} segments`);
      if (c.segments.length > 0) for (const line of segmentRows(c.segments)) out(`  ${line}`);
    }
    if (cols.length === 0) out('no collections');
    return 0;
  }, undefined, true);
}

/** What a running app last published, if it is still running (its final write says open: false). */
async function livePublished(dir: string): Promise<PublishedStats | undefined> {
  const p = await readPublishedStats(dir).catch(() => undefined); // a view only: unreadable means none
  return p !== undefined && p.open && alive(p.pid) ? p : undefined;
}

/** The figures `status` shows of the serving process. */
function servingFigures(p: PublishedStats) {
  const s = p.stats as { tiers?: { hot?: { hits?: number; misses?: number; loads?: number } }; movement?: { uploads?: number; uploadFailures?: number; lastRemoteError?: string } };
  const hot = s.tiers?.hot ?? {};
  const lookups = (hot.hits ?? 0) + (hot.misses ?? 0);
  return {
    pid: p.pid, writtenAt: p.writtenAt,
    hotHits: hot.hits ?? 0, hotMisses: hot.misses ?? 0, hotLoads: hot.loads ?? 0,
    hotHitRatio: lookups === 0 ? null : (hot.hits ?? 0) / lookups,
    uploads: s.movement?.uploads ?? 0, uploadFailures: s.movement?.uploadFailures ?? 0,
    lastRemoteError: s.movement?.lastRemoteError ?? null,
  };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function describePublished(p: PublishedStats): string {
  const age = Math.max(0, Date.now() - p.writtenAt);
  return `published by process ${p.pid} ${duration(age)} ago${p.open ? '' : ' at its close'}` +
    (p.open && !alive(p.pid) ? ' (that process is gone: its last figures)' : '');
}

export async function statsCommand(ctx: Ctx): Promise<number> {
  expectPositionals(ctx.command, ctx.p, []);
  // The counters that matter are the serving process's: read what it published, if anything.
  const published = await readPublishedStats(ctx.dir);
  if (published !== undefined) {
    if (ctx.json) outJson({ source: 'published', pid: published.pid, writtenAt: published.writtenAt, open: published.open, stats: published.stats });
    else {
      out(`# ${describePublished(published)}`);
      out(JSON.stringify(published.stats, null, 2));
    }
    return 0;
  }
  return withDb(ctx, async (db) => {
    if (ctx.json) outJson({ source: 'session', stats: db.stats() });
    else {
      out('# no published stats (statsIntervalMs): this admin session\'s own counters, which start at zero');
      out(JSON.stringify(db.stats(), null, 2));
    }
    return 0;
  }, undefined, true);
}

export async function segmentsCommand(ctx: Ctx): Promise<number> {
  const [name] = expectPositionals(ctx.command, ctx.p, ['collection']);
  const tier = tierOf(ctx.command, str(ctx.p, 'tier'));
  return withDb(ctx, async (db) => {
    const segs = db.collection(name!).segments().filter((s) => tier === undefined || s.tier === tier);
    if (ctx.json) outJson(segs);
    else if (segs.length === 0) out(`no segments${tier ? ` in ${tier}` : ''}`);
    else for (const line of segmentRows(segs)) out(line);
    return 0;
  }, undefined, true);
}

export async function segmentShowCommand(ctx: Ctx): Promise<number> {
  const [id] = expectPositionals(ctx.command, ctx.p, ['segment-id']);
  const published = await livePublished(ctx.dir);
  return withDb(ctx, async (db) => {
    const s = findSegment(db, id!, ctx.command);
    const d = await db.collection(s.collection).describeSegment(s.id);
    // The copies follow from the tier (README "Tiers"): hot and warm have the local file, and a
    // remote copy once uploaded; cold has the remote copy and a local id stub.
    const copies = s.tier === 'cold' ? ['remote', 'stub'] : s.remoteBytes === undefined ? ['local'] : ['local', 'remote'];
    // Access counts live in the process that serves queries: its published ones when it runs.
    const fromApp = published ? publishedAccess(published, s.id) : undefined;
    const access = published
      ? { source: 'published' as const, pid: published.pid, ...(fromApp ?? { frequency: 0, lastAccess: undefined, hits: { hot: 0, warm: 0, cold: 0 }, halfLifeMs: published.access?.halfLifeMs ?? d.access.halfLifeMs }) }
      : { source: 'this-process' as const, ...d.access };
    const { access: _own, ...rest } = d;
    const detail = { ...rest, copies, remoteRatio: d.remote?.ratio, access };
    if (ctx.json) {
      outJson(detail);
      return 0;
    }
    const pct = (r: number | undefined) => (r === undefined ? '-' : `${(r * 100).toFixed(0)}%`);
    const rows: Array<[string, string]> = [
      ['segment', s.id], ['collection', s.collection], ['tier', s.tier], ['pinned', s.pinned ?? 'no'], ['status', s.status],
      ['rows', `${s.records} (${s.live} live, ${s.deleted} deleted)`], ['size', `${bytes(d.rawBytes)} raw`],
      ['local copy', d.local ? `${d.local.location}, ${bytes(d.local.bytes)} (${pct(d.local.ratio)} of raw)` : s.tier === 'cold' ? 'id stub only' : 'none'],
      ['remote copy', d.remote ? `${d.remote.location}, ${bytes(d.remote.bytes)} (${pct(d.remote.ratio)} of raw)${d.remote.error ? `; section table unreadable: ${d.remote.error}` : ''}` : 'none yet'],
      ['copies', copies.join(', ')], ['created', when(s.createdAt)],
      ['access', `${access.frequency.toFixed(2)} decayed (half-life ${duration(access.halfLifeMs)}), last ${access.lastAccess === undefined ? 'never' : when(access.lastAccess)}`],
      ['hits', `hot ${access.hits.hot}, warm ${access.hits.warm}, cold ${access.hits.cold}`],
      ['counted by', access.source === 'published' ? `process ${access.pid}'s published stats` : 'this command only (no running app publishes stats)'],
    ];
    for (const [k, v] of rows) out(`${k.padEnd(12)} ${v}`);
    out('');
    const cell = (c: { codec: string; storedBytes: number | undefined; ratio: number | undefined } | undefined) =>
      c === undefined ? ['-', '-'] : [c.codec, c.storedBytes === undefined ? '?' : `${bytes(c.storedBytes)} ${pct(c.ratio)}`];
    for (const line of table(['section', 'raw', 'local codec', 'local', 'remote codec', 'remote'],
      d.sections.map((x) => [x.name, bytes(x.rawBytes), ...cell(x.local), ...cell(x.remote)]),
      [false, true, false, true, false, true])) out(line);
    return 0;
  }, undefined, true);
}

export async function pinCommand(ctx: Ctx): Promise<number> {
  const [id, t] = expectPositionals(ctx.command, ctx.p, ['segment-id', 'tier']);
  const tier = tierOf(ctx.command, t)!;
  return withDb(ctx, async (db) => {
    const seg = findSegment(db, id!, ctx.command);
    const r = await db.collection(seg.collection).pin(seg.id, tier);
    if (ctx.json) outJson({ ...r, pinned: tier });
    else out(`${seg.id}: pinned to ${tier} (${r.from} -> ${r.to}, ${bytes(r.bytes)})`);
    return 0;
  });
}

export async function unpinCommand(ctx: Ctx): Promise<number> {
  const [id] = expectPositionals(ctx.command, ctx.p, ['segment-id']);
  return withDb(ctx, async (db) => {
    const seg = findSegment(db, id!, ctx.command);
    await db.collection(seg.collection).unpin(seg.id);
    if (ctx.json) outJson({ segmentId: seg.id, pinned: null, was: seg.pinned ?? null });
    else out(`${seg.id}: ${seg.pinned === undefined ? 'was not pinned' : `unpinned (was ${seg.pinned})`}`);
    return 0;
  });
}
