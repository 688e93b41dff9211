// Search quality end to end through the engine: siftsmall against its published ground truth (when
// the data set is present), and a clustered synthetic set spread over several sealed segments plus
// a growing one against exact k-NN, before and after deleting a fifth of it and after a reopen.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Database, type Collection, type DatabaseOptions } from '../engine/index.js';
import { clusteredDataset, exactKnn, loadSiftsmall, recallAtK, siftsmallSearchPath } from '../harness/datasets.js';
import { track, waitFor, withTmpDir } from './helpers/tmp.js';

const openDb = (dir: string, options?: DatabaseOptions): Promise<Database> => Database.open(dir, options).then(track);

// Sealed segments answer through their HNSW index, never by an exact scan of the mapped vectors
// (which small warm segments may use): what is measured here is the index's recall.
const VIA_HNSW: DatabaseOptions = { warmScanMaxRecords: 0 };

async function upsertRows(col: Collection, data: Float32Array, dim: number, count: number, batch = 1000): Promise<void> {
  for (let start = 0; start < count; start += batch) {
    const end = Math.min(count, start + batch);
    const recs = [];
    for (let r = start; r < end; r++) recs.push({ id: String(r), vector: data.subarray(r * dim, (r + 1) * dim), payload: { row: r } });
    await col.upsert(recs);
  }
}

/** Searches every query; hits come back as row numbers (ids are the rows' decimal strings). */
async function searchAll(col: Collection, queries: Float32Array, dim: number, nq: number, k: number, ef: number): Promise<number[][]> {
  const found: number[][] = [];
  for (let q = 0; q < nq; q++) {
    const hits = await col.search(queries.subarray(q * dim, (q + 1) * dim), { k, ef, includePayload: false });
    assert.equal(hits.length, k, `query ${q}: ${hits.length} hits`);
    for (let i = 1; i < hits.length; i++) assert.ok(hits[i]!.distance >= hits[i - 1]!.distance, `query ${q}: not nearest first`);
    found.push(hits.map((h) => Number(h.id)));
  }
  return found;
}

test('siftsmall (10,000 x 128, l2): recall@10 >= 0.98 at ef=64 against the published ground truth', async (t) => {
  const sift = loadSiftsmall();
  if (!sift) {
    t.skip(`siftsmall not found at ${siftsmallSearchPath()}; set STRATAVEC_SIFT_DIR to a directory holding siftsmall_{base,query}.fvecs and siftsmall_groundtruth.ivecs`);
    return;
  }
  const { base, query, groundTruth } = sift;
  assert.equal(base.count, 10_000);
  assert.equal(base.dim, 128);
  await withTmpDir('recall-sift', async (dir) => {
    const db = await openDb(dir, VIA_HNSW);
    const col = await db.createCollection('sift', { dimension: base.dim, metric: 'l2' });
    await upsertRows(col, base.data, base.dim, base.count);
    await col.flush();
    assert.equal(col.count(), 10_000);
    assert.equal(col.segments().length, 1, 'all of siftsmall in one sealed segment');
    const found = await searchAll(col, query.data, query.dim, query.count, 10, 64);
    const recall = recallAtK(found, groundTruth.data, groundTruth.dim, 10);
    t.diagnostic(`siftsmall recall@10 = ${recall.toFixed(4)}`);
    assert.ok(recall >= 0.98, `recall@10 ${recall} < 0.98`);
    // Distances are squared L2 (see Metric): the first hit of query 0 is at the exact distance.
    const q0 = query.data.subarray(0, 128);
    const nn = groundTruth.data[0]!;
    let d = 0;
    for (let j = 0; j < 128; j++) d += (q0[j]! - base.data[nn * 128 + j]!) ** 2;
    const [hit] = await col.search(q0, { k: 1, ef: 64 });
    assert.equal(Number(hit!.id), nn);
    assert.ok(Math.abs(hit!.distance - d) <= 1e-3 * d, `distance ${hit!.distance} vs exact ${d}`);
    await db.close();
  });
});

test('clustered 20,000 x 64 over 3 sealed segments + a growing one: recall@10 >= 0.95; still after deleting 20% and reopening', async (t) => {
  const DIM = 64;
  const N = 20_000;
  const NQ = 100;
  const SEG = 6000;
  const all = clusteredDataset({ count: N + NQ, dim: DIM, seed: 42 });
  const base = all.subarray(0, N * DIM);
  const queries = all.subarray(N * DIM);
  await withTmpDir('recall-synth', async (dir) => {
    let db = await openDb(dir, { segmentMaxRecords: SEG, ...VIA_HNSW });
    // efConstruction 64 (default 200) cuts the three seals' build time; recall is still measured.
    let col = await db.createCollection('syn', { dimension: DIM, metric: 'l2', hnsw: { efConstruction: 64 } });
    await upsertRows(col, base, DIM, N);
    await waitFor(() => col.segments().length === 3 && db.stats().collections['syn']!.sealing === 0, 'three sealed segments');
    assert.deepEqual(col.segments().map((s) => s.records), [SEG, SEG, SEG]);
    assert.equal(db.stats().collections['syn']!.growing.rows, N - 3 * SEG, 'the rest is in the growing segment');
    assert.equal(col.count(), N);

    // 50 deep, so that the truth after deleting a fifth is the first 10 survivors of each list.
    const DEEP = 50;
    const truth = exactKnn(base, DIM, N, queries, NQ, DEEP, 'l2');
    const found = await searchAll(col, queries, DIM, NQ, 10, 64);
    const recall = recallAtK(found, truth, DEEP, 10);
    t.diagnostic(`recall@10 over 3 sealed + 1 growing = ${recall.toFixed(4)}`);
    assert.ok(recall >= 0.95, `recall@10 ${recall} < 0.95`);
    // Hits really come from every part: each sealed segment and the growing rows answer some query.
    const parts = new Set(found.flat().map((r) => Math.min(3, Math.floor(r / SEG))));
    assert.deepEqual([...parts].sort(), [0, 1, 2, 3]);

    // Delete every fifth row (spread over all four parts), ground truth recomputed without them.
    const deleted = new Set<number>();
    for (let r = 0; r < N; r += 5) deleted.add(r);
    const ids = [...deleted].map(String);
    for (let i = 0; i < ids.length; i += 1000) await col.delete(ids.slice(i, i + 1000));
    assert.equal(col.count(), N - deleted.size);
    const subTruth = new Int32Array(NQ * 10);
    for (let q = 0; q < NQ; q++) {
      const survivors = Array.from(truth.subarray(q * DEEP, (q + 1) * DEEP)).filter((r) => !deleted.has(r));
      assert.ok(survivors.length >= 10, `query ${q}: only ${survivors.length} of its ${DEEP} nearest survive`);
      subTruth.set(survivors.slice(0, 10), q * 10);
    }

    const check = async (label: string) => {
      const after = await searchAll(col, queries, DIM, NQ, 10, 64);
      for (const [q, rows] of after.entries()) {
        for (const r of rows) assert.ok(!deleted.has(r), `${label}: query ${q} returned deleted row ${r}`);
      }
      const rec = recallAtK(after, subTruth, 10, 10);
      t.diagnostic(`${label}: recall@10 = ${rec.toFixed(4)}`);
      assert.ok(rec >= 0.95, `${label}: recall@10 ${rec} < 0.95`);
    };
    await check('after deleting 20%');
    await db.close();
    db = await openDb(dir, { segmentMaxRecords: SEG, ...VIA_HNSW });
    col = db.collection('syn');
    assert.equal(col.count(), N - deleted.size);
    await check('after reopen');
    await db.close();
  });
});
