// Clustering compaction: `db.compact({ cluster: true })` rewrites every local segment into segments
// that each hold one region of the space. It keeps every live record (id, vector, payload) and drops
// tombstones; the new segments' bounds are tighter; each row sits in the region of its nearest
// centroid; writes that race it survive it and a reopen; the planner never merges across regions;
// the background loop clusters once enough rows are unclustered; bad options are refused. Under a
// skewed workload the most searched partitions are packed into segments of their own (the heat
// layout); a flat workload, or heat: false, keeps the plain regions; includeCold brings cold
// segments into the layout.
// (Crashes during it: cluster-crash.test.ts.) Seeds are fixed and named in every message.

import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { Database, type DatabaseOptions, type Collection, type StoredRecord } from '../engine/index.js';
import { decodeCentroids, loadLatestManifest, type CollectionManifest } from '../format/manifest.js';
import { SegmentReader, SectionKind, StringTable } from '../format/segment.js';
import { readSegmentBounds } from '../index/bounds.js';
import { planCompaction, type CompactionCandidate } from '../gc/compaction.js';
import { clusteredDataset, mulberry32 } from '../harness/datasets.js';
import { QuerySample } from '../tiers/query-sample.js';
import { pickHotPartitions, poissonAtLeast } from '../workers/cluster.js';
import { hasCode, isTypeError, track, waitFor, withTmpDir } from './helpers/tmp.js';

const DIM = 16;
const MAX = 400;
const QUIET = { tiering: { intervalMs: 0 }, maintenance: { gcIntervalMs: 0, scrubIntervalMs: 0, compactIntervalMs: 0 } } as const;
const openDb = (dir: string, o: DatabaseOptions = {}) => Database.open(dir, { workers: 2, segmentMaxRecords: MAX, ...QUIET, ...o }).then(track);

type Rec = { vector: Float32Array; payload: { n: number; tag: string } };

/** `batches` sealed segments of `rows` rows each, drawn from one clustered set (insertion order covers the whole space). */
async function fill(col: Collection, model: Map<string, Rec>, seed: number, batches: number, rows: number, prefix = 'r'): Promise<void> {
  const data = clusteredDataset({ count: batches * rows, dim: DIM, clusters: 24, seed, spread: 0.3 });
  for (let b = 0; b < batches; b++) {
    const recs = Array.from({ length: rows }, (_, i) => {
      const n = b * rows + i;
      return { id: `${prefix}${n}`, vector: data.slice(n * DIM, (n + 1) * DIM), payload: { n, tag: `b${b}` } };
    });
    await col.upsert(recs);
    for (const r of recs) model.set(r.id, { vector: r.vector, payload: r.payload });
    await col.flush();
  }
}

function checkAgainstModel(records: (StoredRecord | undefined)[], ids: string[], model: Map<string, Rec>, what: string): void {
  records.forEach((r, i) => {
    const want = model.get(ids[i]!);
    if (!want) return assert.equal(r, undefined, `${what}: ${ids[i]} was deleted`);
    assert.ok(r, `${what}: ${ids[i]} is missing`);
    assert.deepEqual(r.vector, want.vector, `${what}: ${ids[i]} vector`);
    assert.deepEqual(r.payload, want.payload, `${what}: ${ids[i]} payload`);
  });
}

const colDir = (dir: string) => path.join(dir, 'collections', 'docs');
const segPath = (dir: string, id: string) => path.join(colDir(dir), 'segments', `${id.split('.').at(-1)!.padStart(8, '0')}.seg`);

async function readSegment(dir: string, id: string) {
  const reader = SegmentReader.open(await fsp.readFile(segPath(dir, id)));
  reader.verifyAll();
  const n = reader.header.count;
  return { n, vectors: reader.vectors(), ids: StringTable.open(reader.raw(SectionKind.ids), n), bounds: readSegmentBounds(reader)! };
}

/** Mean over segments of the row-weighted mean bound radius: how much space a segment covers. */
async function meanRadius(dir: string, col: Collection): Promise<number> {
  let sum = 0;
  const segs = col.segments();
  for (const s of segs) {
    const { bounds } = await readSegment(dir, s.id);
    let r = 0;
    for (let c = 0; c < bounds.count; c++) r += bounds.radii[c]!;
    sum += r / bounds.count;
  }
  return sum / segs.length;
}

const l2 = (a: Float32Array, ao: number, b: Float32Array, bo: number) => {
  let s = 0;
  for (let j = 0; j < DIM; j++) s += (a[ao + j]! - b[bo + j]!) ** 2;
  return s;
};

describe('clustering compaction', () => {
  test('keeps every live record, drops tombstones, tightens bounds, puts each row in its nearest region; reopen gives the same', async () => {
    const seed = 17;
    const what = `seed ${seed}`;
    await withTmpDir('cluster', async (dir) => {
      const rand = mulberry32(seed);
      const model = new Map<string, Rec>();
      let db = await openDb(dir);
      let col = await db.createCollection('docs', { dimension: DIM });
      await fill(col, model, seed, 5, 360);
      const gone = [...model.keys()].filter(() => rand() < 0.15);
      await col.delete(gone);
      for (const id of gone) model.delete(id);
      const ids = [...model.keys(), ...gone];
      const queries = Array.from({ length: 20 }, () => Float32Array.from({ length: DIM }, () => rand() * 4 - 2));
      const search = async (c: Collection) => Promise.all(queries.map((q) => c.search(q, { k: 10, exact: true, includePayload: true })));
      const before = { records: await col.get(ids), hits: await search(col) };
      checkAgainstModel(before.records, ids, model, what);
      const radiusBefore = await meanRadius(dir, col);
      const sources = col.segments().map((s) => s.id);
      assert.equal(sources.length, 5, what);

      const report = await db.compact({ cluster: true });
      assert.equal(report.clustered.length, 1, what);
      const r = report.clustered[0]!;
      assert.deepEqual(report.clusterPlans[0], { collection: 'docs', liveRows: model.size, unclusteredRows: model.size, regions: r.regions }, what);
      assert.deepEqual([...r.sources].sort(), [...sources].sort(), `${what}: every local segment is a source`);
      assert.equal(r.records, model.size, what);
      assert.equal(r.droppedRows, gone.length, what);
      assert.equal(r.epoch, 1, what);
      const after = col.segments();
      assert.deepEqual(after.map((s) => s.id), r.segmentIds, `${what}: the new segments replace the sources`);
      assert.ok(after.length > 1, `${what}: several regions, got ${after.length}`);
      for (const s of after) {
        assert.equal(s.deleted, 0, `${what}: ${s.id} has no tombstones`);
        assert.ok(s.records <= MAX, `${what}: ${s.id} holds ${s.records} > segmentMaxRecords`);
        assert.equal(typeof s.region, 'number', `${what}: ${s.id} has a region`);
      }
      assert.equal(after.reduce((n, s) => n + s.live, 0), model.size, what);
      assert.deepEqual(await col.get(ids), before.records, `${what}: get() of every id`);
      assert.deepEqual(await search(col), before.hits, `${what}: exact searches`);
      for (const [id, rec] of [...model].slice(0, 40)) assert.equal((await col.search(rec.vector, { k: 1 }))[0]?.id, id, `${what}: HNSW finds ${id}`);

      const radiusAfter = await meanRadius(dir, col);
      // With one bound ball per 16 rows the insertion-ordered segments' balls are already small;
      // regions still make them clearly smaller (0.77x at seed 17; 0.7 held with 4x fewer balls).
      assert.ok(radiusAfter < 0.85 * radiusBefore, `${what}: mean bound radius ${radiusAfter} after, ${radiusBefore} before`);

      // Each segment's rows are those nearest its region's centroid (to float rounding).
      const manifest = (await loadLatestManifest(path.join(colDir(dir), 'manifest'))) as CollectionManifest;
      assert.equal(manifest.clustering?.epoch, 1, what);
      const centroids = decodeCentroids(manifest.clustering!);
      const k = manifest.clustering!.k;
      assert.equal(centroids.length, k * DIM, what);
      for (const s of after) {
        const seg = await readSegment(dir, s.id);
        for (let i = 0; i < seg.n; i++) {
          let best = Infinity;
          for (let c = 0; c < k; c++) best = Math.min(best, l2(seg.vectors, i * DIM, centroids, c * DIM));
          const own = l2(seg.vectors, i * DIM, centroids, s.region! * DIM);
          assert.ok(own <= best * (1 + 1e-5) + 1e-9, `${what}: ${seg.ids.get(i)} in ${s.id} (region ${s.region}) is ${own} from its centroid, ${best} from the nearest`);
        }
      }

      // The sources are garbage now; nothing else is.
      const gc = await db.gc({ dryRun: true });
      const replaced = gc.entries.filter((e) => e.reason === 'replaced-segment' && e.location.endsWith('.seg')).map((e) => path.basename(e.location)).sort();
      assert.deepEqual(replaced, sources.map((id) => path.basename(segPath(dir, id))).sort(), `${what}: the sources are replaced-segment garbage`);

      await db.close();
      db = await openDb(dir);
      col = db.collection('docs');
      const layout = (segs: typeof after) => segs.map(({ remoteBytes: _uploaded, ...rest }) => rest);
      assert.deepEqual(layout(col.segments()), layout(after), `${what}: segments after reopen`);
      assert.deepEqual(await col.get(ids), before.records, `${what}: get() after reopen`);
      assert.deepEqual(await search(col), before.hits, `${what}: searches after reopen`);
      const v = await db.verify({ remote: false });
      assert.equal(v.summary.ok, after.length, `${what}: ${JSON.stringify(v.segments)}`);

      // A second clustering is a new epoch; a plain compaction afterwards leaves the regions alone.
      const again = await db.compact({ cluster: true });
      assert.equal(again.clustered[0]!.epoch, 2, what);
      const plain = await db.compact({ smallFraction: 1 });
      assert.ok(plain.plans[0]!.groups.every((g) => g.sources.length === 1), `${what}: no merge across regions: ${JSON.stringify(plain.plans)}`);
      assert.ok(col.segments().every((s) => s.region !== undefined), what);
      checkAgainstModel(await col.get(ids), ids, model, what);
      await db.close();
    });
  });

  test('deletes and upserts that race it are kept, through a reopen', async () => {
    const seed = 23;
    const what = `seed ${seed}`;
    await withTmpDir('cluster-race', async (dir) => {
      const rand = mulberry32(seed);
      const model = new Map<string, Rec>();
      let db = await openDb(dir);
      let col = await db.createCollection('docs', { dimension: DIM });
      await fill(col, model, seed, 5, 400);
      const ids = [...model.keys()];
      let done = false;
      const clustering = db.compact({ cluster: true }).finally(() => {
        done = true;
      });
      let during = 0;
      for (let i = 0; !done; i = (i + 13) % ids.length) {
        const id = ids[i]!;
        if (rand() < 0.5) {
          await col.delete([id]);
          model.delete(id);
        } else {
          const rec = { vector: Float32Array.from({ length: DIM }, () => rand() * 4 - 2), payload: { n: 0 - i, tag: 'rewritten' } }; // 0 - 0 is +0: payloads are JSON, where -0 reads back as 0
          await col.upsert([{ id, ...rec }]);
          model.set(id, rec);
        }
        if (!done) during++;
      }
      const report = await clustering;
      assert.ok(report.clustered[0]!.segmentIds.length > 1, what);
      assert.ok(during > 0, `${what}: some writes landed while the clustering ran`);
      checkAgainstModel(await col.get(ids), ids, model, `${what}, ${during} racing writes`);
      assert.equal(col.count(), model.size, what);
      await db.close();
      db = await openDb(dir);
      col = db.collection('docs');
      checkAgainstModel(await col.get(ids), ids, model, `${what}, after reopen`);
      assert.equal(col.count(), model.size, what);
      for (const [id, rec] of model) {
        if (rec.payload.tag !== 'rewritten') continue;
        const hits = await col.search(rec.vector, { k: 5, exact: true });
        assert.equal(hits.filter((h) => h.id === id).length, 1, `${what}: ${id} live once`);
      }
      await db.close();
    });
  });

  test('pinned and cold segments are left out; a dry run changes nothing', async () => {
    const seed = 29;
    const what = `seed ${seed}`;
    await withTmpDir('cluster-skip', async (dir) => {
      const model = new Map<string, Rec>();
      const db = await openDb(dir);
      const col = await db.createCollection('docs', { dimension: DIM });
      await fill(col, model, seed, 4, 300);
      await db.flushUploads();
      const [cold, pinned] = col.segments();
      await db.migrate(cold!.id, 'cold');
      await col.pin(pinned!.id, 'warm');
      const dry = await db.compact({ cluster: true, dryRun: true });
      assert.deepEqual(dry.clusterPlans, [{ collection: 'docs', liveRows: 600, unclusteredRows: 600, regions: 2 }], what);
      assert.equal(dry.clustered.length, 0, what);
      const r = (await db.compact({ cluster: true })).clustered[0]!;
      assert.equal(r.sources.length, 2, what);
      const segs = col.segments();
      assert.ok(segs.some((s) => s.id === cold!.id && s.tier === 'cold' && s.region === undefined), what);
      assert.ok(segs.some((s) => s.id === pinned!.id && s.region === undefined), what);
      checkAgainstModel(await col.get([...model.keys()]), [...model.keys()], model, what);
      await db.close();
    });
  });

  test('the background loop clusters once enough rows are unclustered', async () => {
    const seed = 31;
    const what = `seed ${seed}`;
    await withTmpDir('cluster-bg', async (dir) => {
      const model = new Map<string, Rec>();
      const db = await openDb(dir, { maintenance: { gcIntervalMs: 0, scrubIntervalMs: 0, compactIntervalMs: 20, clusterMinUnclusteredRows: 1000 } });
      const col = await db.createCollection('docs', { dimension: DIM });
      const runs = () => db.stats().maintenance.compaction.runs;
      // 800 unclustered rows: under the threshold, so runs pass without clustering.
      await fill(col, model, seed, 2, 400);
      const r0 = runs();
      await waitFor(() => runs() >= r0 + 3, 'three background compaction runs');
      assert.ok(col.segments().every((s) => s.region === undefined), `${what}: nothing clustered at 800 rows`);
      await fill(col, model, seed + 1, 1, 400, 'x'); // 1200 unclustered rows
      await waitFor(() => db.stats().maintenance.compaction.clustered >= 1, 'a background clustering compaction');
      await waitFor(() => col.segments().every((s) => s.region !== undefined), 'every segment in a region');
      assert.equal(db.stats().maintenance.compaction.lastError, undefined, what);
      checkAgainstModel(await col.get([...model.keys()]), [...model.keys()], model, what);
      await db.close();
    });
  });

  test('options and arguments are checked', async () => {
    await withTmpDir('cluster-opts', async (dir) => {
      await assert.rejects(openDb(dir, { maintenance: { clusterMinUnclusteredRows: -1 } }), hasCode('ERR_INVALID_ARGUMENT'));
      await assert.rejects(openDb(dir, { maintenance: { clusterMinUnclusteredRows: 'x' as unknown as number } }), isTypeError);
      await assert.rejects(openDb(dir, { maintenance: { clusterMinUnclusteredFraction: 1.5 } }), hasCode('ERR_INVALID_ARGUMENT'));
      const db = await openDb(dir);
      await db.createCollection('docs', { dimension: DIM });
      await assert.rejects(db.compact({ cluster: 'yes' as unknown as boolean }), isTypeError);
      await assert.rejects(db.compact({ cluster: true, regions: 0 }), hasCode('ERR_INVALID_ARGUMENT'));
      // Nothing sealed: nothing to do, said so.
      const r = await db.compact({ cluster: true });
      assert.equal(r.clustered[0]!.skipped, 'no local, unpinned, readable segment');
      await db.close();
    });
  });
});

/** `count` rows (plus `pool` held-out query rows) of `clusters` natural clusters, with labels. */
function labelled(seed: number, count: number, pool: number, clusters: number) {
  const labels = new Uint32Array(count + pool);
  const data = clusteredDataset({ count: count + pool, dim: DIM, clusters, seed, spread: 0.25, labels });
  return { labels, row: (i: number) => data.slice(i * DIM, (i + 1) * DIM) };
}

async function insertRows(col: Collection, model: Map<string, Rec>, row: (i: number) => Float32Array, count: number): Promise<void> {
  for (let at = 0; at < count; at += 1000) {
    const recs = Array.from({ length: Math.min(1000, count - at) }, (_, i) => ({ id: `r${at + i}`, vector: row(at + i), payload: { n: at + i, tag: 'x' } }));
    await col.upsert(recs);
    for (const r of recs) model.set(r.id, { vector: r.vector, payload: r.payload });
    await col.flush();
  }
}

/** `n` held-out rows from [from, to): `share` of them from clusters in `hot`, the rest from the others. */
function stream(labels: Uint32Array, from: number, to: number, hot: (c: number) => boolean, share: number, n: number, seed: number): { hot: boolean; i: number }[] {
  const rand = mulberry32(seed);
  const hotRows: number[] = [];
  const tailRows: number[] = [];
  for (let i = from; i < to; i++) (hot(labels[i]!) ? hotRows : tailRows).push(i);
  return Array.from({ length: n }, () => {
    const isHot = rand() < share;
    const rows = isHot ? hotRows : tailRows;
    return { hot: isHot, i: rows[Math.floor(rand() * rows.length)]! };
  });
}

describe('heat layout', () => {
  test('a skewed workload: its most searched partitions get segments of their own, which its searches stay in, from queries kept through a close; every record is kept, through a reopen', async () => {
    const seed = 41;
    const what = `seed ${seed}`;
    const N = 8000;
    await withTmpDir('cluster-heat', async (dir) => {
      const { labels, row } = labelled(seed, N, 800, 100);
      const isHot = (c: number) => c < 10;
      const model = new Map<string, Rec>();
      let db = await openDb(dir);
      let col = await db.createCollection('docs', { dimension: DIM });
      await insertRows(col, model, row, N);
      const first = (await db.compact({ cluster: true })).clustered[0]!;
      assert.equal(first.heat, undefined, `${what}: no query yet, no heat report`);

      const queries = stream(labels, N, N + 800, isHot, 0.9, 400, seed);
      for (const q of queries) await col.search(row(q.i), { k: 10 });
      const probes = queries.slice(0, 20).map((q) => row(q.i));
      const exact = async (c: Collection) => Promise.all(probes.map((q) => c.search(q, { k: 10, exact: true, includePayload: true })));
      const truth = await exact(col);
      // The hot queries' searches: those that open a segment outside `inside`.
      const hotQueries = queries.filter((q) => q.hot);
      const searchesOutside = async (inside: ReadonlySet<string>) => {
        let n = 0;
        for (const q of hotQueries) {
          const e = await col.explain(row(q.i), { k: 10 });
          n += e.segments.filter((x) => x.how !== 'pruned' && x.how !== 'skipped' && !inside.has(x.id)).length;
        }
        return n;
      };
      const before = await searchesOutside(new Set());
      const searched = queries.length + probes.length + hotQueries.length;
      assert.equal(db.stats().collections['docs']?.recentQueries, searched, what);

      // The recent queries are saved at close: the layout after a restart still follows them.
      await db.close();
      db = await openDb(dir);
      col = db.collection('docs');
      assert.equal(db.stats().collections['docs']?.recentQueries, searched, `${what}: recent queries after reopen`);
      const r = (await db.compact({ cluster: true })).clustered[0]!;
      const heat = r.heat!;
      assert.ok(heat, what);
      assert.equal(heat.unused, undefined, `${what}: ${JSON.stringify(heat)}`);
      assert.equal(heat.queries, searched, `${what}: every search before the close is a recent query`);
      assert.ok(heat.hotGroups >= 1 && heat.hotRows < N / 2, `${what}: ${JSON.stringify(heat)}`);
      assert.equal(r.records, N, what);
      const firstHot = r.regions - heat.hotGroups;
      const segs = col.segments();
      const hotSegs = new Set(segs.filter((s) => s.region! >= firstHot).map((s) => s.id));
      assert.equal(hotSegs.size, heat.hotGroups, what);
      assert.ok(segs.every((s) => s.records <= MAX), what);

      // Where the hot clusters' rows went.
      let hotRowsIn = 0;
      let hotRowsAll = 0;
      let rowsInHotSegs = 0;
      for (const s of segs) {
        const seg = await readSegment(dir, s.id);
        for (let i = 0; i < seg.n; i++) {
          const hotRow = isHot(labels[Number(seg.ids.get(i)!.slice(1))]!);
          if (hotRow) hotRowsAll++;
          if (hotSegs.has(s.id)) {
            rowsInHotSegs++;
            if (hotRow) hotRowsIn++;
          }
        }
      }
      assert.ok(hotRowsIn >= 0.9 * hotRowsAll, `${what}: ${hotRowsIn} of the hot clusters' ${hotRowsAll} rows are in the hot segments`);
      assert.ok(hotRowsIn >= 0.5 * rowsInHotSegs, `${what}: the hot segments hold ${rowsInHotSegs} rows, ${hotRowsIn} of the hot clusters`);

      // The hot queries' searches now open mostly the hot segments: what lets the rest go cold.
      // (Not none: a segment's bound balls can reach over a hole its moved rows left.)
      const after = await searchesOutside(hotSegs);
      console.log(`${what}: hot queries' searches of segments outside the hot ones: ${before} before the heat layout, ${after} after (${hotQueries.length} hot queries)`);
      assert.ok(after <= 0.25 * before, `${what}: ${after} searches of other segments by ${hotQueries.length} hot queries, ${before} before the heat layout`);
      const ids = [...model.keys()];
      checkAgainstModel(await col.get(ids), ids, model, what);
      assert.deepEqual(await exact(col), truth, `${what}: exact searches`);
      await db.close();
      db = await openDb(dir);
      col = db.collection('docs');
      assert.deepEqual(col.segments().map((s) => [s.id, s.region]), segs.map((s) => [s.id, s.region]), `${what}: layout after reopen`);
      checkAgainstModel(await col.get(ids), ids, model, `${what}, after reopen`);
      await db.close();
    });
  });

  test('a flat workload keeps the plain regions; heat: false ignores the queries; includeCold lays out cold segments too; option keys are checked', async () => {
    const seed = 43;
    const what = `seed ${seed}`;
    const N = 4000;
    await withTmpDir('cluster-heat-flat', async (dir) => {
      const { labels, row } = labelled(seed, N, 600, 50);
      const model = new Map<string, Rec>();
      const db = await openDb(dir);
      const col = await db.createCollection('docs', { dimension: DIM });
      await insertRows(col, model, row, N);
      for (const q of stream(labels, N, N + 600, () => true, 1, 300, seed)) await col.search(row(q.i), { k: 10 });
      const flat = (await db.compact({ cluster: true })).clustered[0]!;
      assert.equal(flat.heat?.hotGroups, 0, `${what}: ${JSON.stringify(flat.heat)}`);
      assert.match(flat.heat?.unused ?? '', /not skewed enough/, what);
      assert.ok(col.segments().every((s) => s.region! < flat.regions), what);

      for (const q of stream(labels, N, N + 600, (c) => c < 5, 0.95, 300, seed + 1)) await col.search(row(q.i), { k: 10 });
      const off = (await db.compact({ cluster: true, heat: false })).clustered[0]!;
      assert.equal(off.heat, undefined, `${what}: heat: false sends no queries`);

      await db.flushUploads();
      const cold = col.segments().slice(0, 3).map((s) => s.id);
      for (const id of cold) await db.migrate(id, 'cold');
      const all = (await db.compact({ cluster: true, includeCold: true })).clustered[0]!;
      for (const id of cold) assert.ok(all.sources.includes(id), `${what}: cold ${id} is a source`);
      assert.equal(all.records, N, what);
      assert.ok(col.segments().every((s) => s.tier !== 'cold' && s.region !== undefined), `${what}: ${JSON.stringify(col.segments())}`);
      const ids = [...model.keys()];
      checkAgainstModel(await col.get(ids), ids, model, what);

      await assert.rejects(db.compact({ cluster: true, includCold: true } as never), hasCode('ERR_INVALID_ARGUMENT'));
      await assert.rejects(db.compact({ heat: true }), hasCode('ERR_INVALID_ARGUMENT'));
      await assert.rejects(db.compact({ includeCold: true }), hasCode('ERR_INVALID_ARGUMENT'));
      await assert.rejects(db.compact({ cluster: true, heat: 1 as unknown as boolean }), isTypeError);
      await assert.rejects(db.compact({ cluster: true, includeCold: 'yes' as unknown as boolean }), isTypeError);
      await assert.rejects(db.gc({ dryrun: true } as never), hasCode('ERR_INVALID_ARGUMENT'));
      await db.close();
    });
  });

  test('the hot set: partitions heated beyond their share, and every partition a hot query opens', () => {
    // Ten partitions of 100 rows and one of 400. A hot cluster (0, 1) whose edge reaches into the
    // large partition 10, a tail spread over 2..7, and one query mostly in the tail.
    const sizes = [...Array(10).fill(100), 400];
    const queries: number[][] = [
      ...Array.from({ length: 20 }, () => [0, 1]),
      ...Array.from({ length: 4 }, () => [0, 1, 10]),
      ...[2, 3, 4, 5, 6, 7].map((p) => [p]),
      [2, 3, 4, 0],
    ];
    const pick = pickFromQueries(sizes, queries);
    // Partition 10 is heated 4 times, a flat workload would give it 62 * 400 / 1400 = 17.7: it is
    // in only because the hot queries at the cluster's edge open it. 2..4 are opened by a query
    // only one of whose four partitions is hot: not a hot query.
    assert.deepEqual(pick.hot, [0, 1, 10], JSON.stringify(pick));
    assert.equal(pick.joined, 1);
    assert.equal(pick.recurring, 0, 'the tail is too dense for 2..4, each opened twice, to recur');
    assert.equal(pick.hotRows, 600);
    assert.equal(pick.rowShare, 600 / 1400);
    assert.equal(pick.heated, 9);
    assert.equal(pick.hotHeatShare, (25 + 24 + 4) / 62);
    assert.equal(pick.skewHeatShare, (25 + 24) / 62, 'the skew test counts only the partitions heated well beyond their share');
  });

  test('the hot set: a partition the background would rarely open that often recurs', () => {
    // 22 partitions of 100 rows: a hot cluster (0, 1) drawn 40 times, a sparse tail of single
    // queries over 2..7, and a third cluster drawn three times (8, its edge in 9).
    const sizes = Array(22).fill(100);
    const pickOf = (queries: number[][]) => pickFromQueries(sizes, queries);
    const base = [...Array.from({ length: 40 }, () => [0, 1]), ...[2, 3, 4, 5, 6, 7].map((p) => [p])];
    // Heat 90 over 2,200 rows: a flat share of 4.09 per partition, which 8 (heated 3) is below. The
    // background (outside 0 and 1) is 10 / 2,000 rows, 0.5 per partition: P(Poisson(0.5) >= 3) =
    // 1 - e^-0.5 (1 + 0.5 + 0.125) = 0.0144 <= 0.05, so 8 recurs; 9 joins through the query [8, 9],
    // half of whose partitions are busy.
    const three = pickOf([...base, [8], [8], [8, 9]]);
    assert.deepEqual(three.hot, [0, 1, 8, 9], JSON.stringify(three));
    assert.equal(three.recurring, 1);
    assert.equal(three.joined, 1);
    assert.equal(three.hotRows, 400);
    // Drawn twice: background 9 / 2,000 rows, P(Poisson(0.45) >= 2) = 1 - e^-0.45 * 1.45 = 0.0755 > 0.05.
    const two = pickOf([...base, [8], [8, 9]]);
    assert.deepEqual(two.hot, [0, 1], JSON.stringify(two));
    assert.equal(two.recurring, 0);
  });

  test('poissonAtLeast', () => {
    assert.equal(poissonAtLeast(0.5, 0), 1);
    assert.equal(poissonAtLeast(0, 1), 0);
    assert.ok(Math.abs(poissonAtLeast(0.5, 3) - (1 - Math.exp(-0.5) * 1.625)) < 1e-12);
    assert.ok(Math.abs(poissonAtLeast(2, 1) - (1 - Math.exp(-2))) < 1e-12);
    // A mean past exp()'s range: half the mass is at or above the mean.
    const large = poissonAtLeast(1000, 1000);
    assert.ok(large > 0.49 && large < 0.52, String(large));
    assert.ok(poissonAtLeast(1000, 1200) < 1e-8);
  });

  test('the recent-query ring keeps the last `capacity` queries', () => {
    const ring = new QuerySample(2, 3);
    assert.equal(ring.size, 0);
    assert.equal(ring.snapshot().length, 0);
    for (let i = 0; i < 5; i++) ring.record(Float32Array.of(i, -i));
    ring.record(Float32Array.of(1, 2, 3)); // another dimension: ignored
    assert.equal(ring.seen, 5);
    assert.equal(ring.size, 3);
    const rows = [...Array(3).keys()].map((r) => [...ring.snapshot().subarray(r * 2, r * 2 + 2)]).sort((a, b) => a[0]! - b[0]!);
    assert.deepEqual(rows, [[2, -2], [3, -3], [4, -4]]);
    assert.equal(new QuerySample(1 << 20).capacity, 1, 'at most 4 MiB, at least one query');
  });

  test('the ring\'s file: oldest first, newest kept; a torn, corrupt, foreign or non-finite file loads nothing', () => {
    const rowsOf = (ring: QuerySample) => [...Array(ring.size).keys()].map((r) => [...ring.snapshot().subarray(r * 2, r * 2 + 2)]);
    const ring = new QuerySample(2, 3);
    for (let i = 0; i < 5; i++) ring.record(Float32Array.of(i, -i));
    assert.equal(ring.unsaved, true);
    const bytes = ring.encode();
    const back = new QuerySample(2, 3);
    assert.equal(back.decode(bytes), 3);
    assert.equal(back.unsaved, false, 'a loaded ring matches its file');
    assert.deepEqual(rowsOf(back), [[2, -2], [3, -3], [4, -4]], 'oldest first');
    back.record(Float32Array.of(5, -5)); // overwrites the oldest
    assert.equal(back.unsaved, true);
    assert.deepEqual(rowsOf(back).sort((a, b) => a[0]! - b[0]!), [[3, -3], [4, -4], [5, -5]]);
    const small = new QuerySample(2, 2);
    assert.equal(small.decode(bytes), 2, 'a smaller ring keeps the newest');
    assert.deepEqual(rowsOf(small), [[3, -3], [4, -4]]);
    assert.equal(new QuerySample(2, 3).decode(new QuerySample(2, 3).encode()), 0, 'an empty ring saves an empty file');

    // Every cut and every flipped byte is refused (the CRC, the length, the header), and leaves
    // the ring as it was.
    const victim = new QuerySample(2, 3);
    victim.record(Float32Array.of(9, 9));
    for (let cut = 0; cut < bytes.length; cut++) assert.equal(victim.decode(bytes.subarray(0, cut)), 0, `cut at ${cut}`);
    for (let at = 0; at < bytes.length; at++) {
      const bad = Buffer.from(bytes);
      bad[at] ^= 0x10;
      assert.equal(victim.decode(bad), 0, `byte ${at} flipped`);
    }
    assert.deepEqual(rowsOf(victim), [[9, 9]]);
    assert.equal(new QuerySample(3, 3).decode(bytes), 0, 'another dimension');
    const nan = new QuerySample(2, 3);
    nan.record(Float32Array.of(NaN, 1));
    assert.equal(new QuerySample(2, 3).decode(nan.encode()), 0, 'a NaN with a good CRC');
  });

  test('the recent queries are saved at close and loaded at open; a corrupt file starts empty; read-only opens never write it', async () => {
    const seed = 45;
    const what = `seed ${seed}`;
    await withTmpDir('cluster-queries', async (dir) => {
      const model = new Map<string, Rec>();
      let db = await openDb(dir);
      let col = await db.createCollection('docs', { dimension: DIM });
      await fill(col, model, seed, 1, 50);
      const file = path.join(colDir(dir), 'recent-queries.bin');
      const rand = mulberry32(seed);
      const queries = Array.from({ length: 30 }, () => Float32Array.from({ length: DIM }, () => rand()));
      for (const q of queries) await col.search(q, { k: 3 });
      await db.close();
      const saved = await fsp.readFile(file);
      const ring = new QuerySample(DIM);
      assert.equal(ring.decode(saved), 30, what);
      assert.deepEqual(ring.snapshot(), Float32Array.from(queries.flatMap((q) => [...q])), `${what}: the queries searched, in order`);

      // Nothing searched since the load: close leaves the file as it was.
      const mtime = (await fsp.stat(file)).mtimeMs;
      db = await openDb(dir);
      assert.equal(db.stats().collections['docs']?.recentQueries, 30, what);
      await db.close();
      assert.equal((await fsp.stat(file)).mtimeMs, mtime, `${what}: an unchanged ring is not rewritten`);

      // A read-only open loads it and searches, but writes nothing.
      const ro = track(await Database.open(dir, { readOnly: true, workers: 1 }));
      await ro.collection('docs').search(queries[0]!, { k: 3 });
      assert.equal(ro.stats().collections['docs']?.recentQueries, 31, what);
      await ro.close();
      assert.deepEqual(await fsp.readFile(file), saved, `${what}: a read-only open rewrote the recent queries`);

      // Corrupt: the open goes on with an empty ring and every record; the next close saves anew.
      const bad = Buffer.from(saved);
      bad[20] ^= 0xff;
      await fsp.writeFile(file, bad);
      db = await openDb(dir);
      col = db.collection('docs');
      assert.equal(db.stats().collections['docs']?.recentQueries, 0, what);
      const ids = [...model.keys()];
      checkAgainstModel(await col.get(ids), ids, model, what);
      await col.search(queries[1]!, { k: 3 });
      await db.close();
      assert.equal(new QuerySample(DIM).decode(await fsp.readFile(file)), 1, what);

      // The background compaction loop saves them too, so a crash loses at most one interval.
      db = await openDb(dir, { maintenance: { gcIntervalMs: 0, scrubIntervalMs: 0, compactIntervalMs: 50 } });
      col = db.collection('docs');
      for (const q of queries.slice(2, 7)) await col.search(q, { k: 3 });
      const held = () => {
        try {
          return new QuerySample(DIM).decode(readFileSync(file));
        } catch {
          return -1;
        }
      };
      await waitFor(() => held() === 6, `${what}: the loop to save the 6 queries searched`);
      await db.close();
    });
  });
});

describe('planCompaction with regions', () => {
  const seg = (seq: number, live: number, region?: number): CompactionCandidate => ({
    id: `c.${seq}`, seq, records: live, live, tier: 'warm', pinned: false, available: true, ...(region === undefined ? {} : { region }),
  });

  test('small segments merge only within their region (unclustered with unclustered)', () => {
    const groups = planCompaction([seg(1, 50, 0), seg(2, 50, 1), seg(3, 50, 0), seg(4, 50), seg(5, 50, 1), seg(6, 50)], { targetRecords: 400 });
    assert.deepEqual(groups.map((g) => g.sources), [['c.1', 'c.3'], ['c.2', 'c.5'], ['c.4', 'c.6']]);
  });
});

/** pickHotPartitions over `sizes`, each query given as the partitions it opened. */
function pickFromQueries(sizes: number[], queries: number[][]) {
  const opened = queries.flat();
  const openedAt = new Uint32Array(queries.length + 1);
  queries.forEach((ps, q) => (openedAt[q + 1] = openedAt[q]! + ps.length));
  return pickHotPartitions(sizes, opened, openedAt);
}
