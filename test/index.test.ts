// index/: the distance kernels, the exact flat scan and its heap, and the HNSW wrapper (recall,
// distance agreement with the flat scan, persistence, corrupt-file handling, filters).
// Real files in mkdtemp directories; no timing assertions.

import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import hnswlib from 'hnswlib-node';
import { isStratavecError } from '../format/errors.js';
import { type Metric, METRICS, distanceFn, normalizeInPlace } from '../index/distance.js';
import { TopK, flatSearch, type Neighbors } from '../index/flat.js';
import { HnswIndex, DEFAULT_HNSW_PARAMS, checkHnswIndexBytes } from '../index/hnsw.js';
import {
  clusteredDataset,
  exactKnn,
  loadSiftsmall,
  mulberry32,
  recallAtK,
  siftsmallSearchPath,
  uniformDataset,
} from '../harness/datasets.js';

const tmpRoot = await fsp.mkdtemp(path.join(os.tmpdir(), 'stratavec-index-'));
after(() => fsp.rm(tmpRoot, { recursive: true, force: true }));
let tmpSeq = 0;
async function freshDir(): Promise<string> {
  const dir = path.join(tmpRoot, `t${tmpSeq++}`);
  await fsp.mkdir(dir);
  return dir;
}

function normalizeRows(data: Float32Array, dim: number): Float32Array {
  for (let off = 0; off < data.length; off += dim) assert.ok(normalizeInPlace(data.subarray(off, off + dim)));
  return data;
}

function row(data: Float32Array, dim: number, r: number): Float32Array {
  return data.subarray(r * dim, (r + 1) * dim);
}

/** The obvious, slow definition every fast path is checked against. */
function naiveSearch(base: Float32Array, dim: number, count: number, q: Float32Array, k: number, metric: Metric, accept?: (r: number) => boolean): Neighbors {
  const all: Array<[number, number]> = [];
  for (let r = 0; r < count; r++) {
    if (accept && !accept(r)) continue;
    let d: number;
    if (metric === 'l2') {
      d = 0;
      for (let j = 0; j < dim; j++) d += (base[r * dim + j]! - q[j]!) ** 2;
    } else {
      let dotp = 0;
      for (let j = 0; j < dim; j++) dotp += base[r * dim + j]! * q[j]!;
      d = 1 - dotp;
    }
    all.push([r, d]);
  }
  all.sort((a, b) => a[1] - b[1] || a[0] - b[0]);
  const top = all.slice(0, k);
  return { rows: top.map((x) => x[0]), distances: top.map((x) => x[1]) };
}

function assertClose(actual: number, expected: number, tol: number, what: string): void {
  assert.ok(Math.abs(actual - expected) <= tol, `${what}: ${actual} vs ${expected} (tolerance ${tol})`);
}

async function assertCorrupt(p: Promise<unknown>, what: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(isStratavecError(err, 'ERR_SEGMENT_CORRUPT'), `${what}: expected ERR_SEGMENT_CORRUPT, got ${String(err)}`);
    return true;
  });
}

// Built once and shared: 10,000 x 64 clustered vectors, held-out queries from the same
// distribution, one graph per metric (cosine over normalized rows).
const SYN = { count: 10_000, dim: 64, nq: 200, k: 10 };
const synCache = new Map<Metric, { base: Float32Array; queries: Float32Array; index: HnswIndex; truth: Int32Array }>();
function synthetic(metric: Metric) {
  let s = synCache.get(metric);
  if (s === undefined) {
    const all = clusteredDataset({ count: SYN.count + SYN.nq, dim: SYN.dim, seed: 11 });
    if (metric === 'cosine') normalizeRows(all, SYN.dim);
    const base = all.subarray(0, SYN.count * SYN.dim);
    const queries = all.subarray(SYN.count * SYN.dim);
    const index = HnswIndex.build(base, SYN.dim, SYN.count, metric, DEFAULT_HNSW_PARAMS, { seed: 5 });
    const truth = exactKnn(base, SYN.dim, SYN.count, queries, SYN.nq, SYN.k, metric);
    s = { base, queries, index, truth };
    synCache.set(metric, s);
  }
  return s;
}

// A small graph for persistence and corruption tests, where build time should not dominate.
const SMALL = { count: 1500, dim: 24 };
function smallIndex(metric: Metric = 'l2', seed = 3): { base: Float32Array; index: HnswIndex } {
  const base = clusteredDataset({ count: SMALL.count, dim: SMALL.dim, seed: 21 });
  if (metric === 'cosine') normalizeRows(base, SMALL.dim);
  return { base, index: HnswIndex.build(base, SMALL.dim, SMALL.count, metric, { M: 8, efConstruction: 64, efSearch: 32 }, { seed }) };
}

describe('distance', () => {
  test('normalizeInPlace gives unit length, and refuses zero and non-finite vectors untouched', () => {
    const v = new Float32Array([3, 4, 0, 12]);
    assert.equal(normalizeInPlace(v), true);
    assertClose(Math.hypot(...v), 1, 1e-6, 'norm');
    assertClose(v[0]!, 3 / 13, 1e-7, 'v[0]');
    const z = new Float32Array(5);
    assert.equal(normalizeInPlace(z), false);
    assert.deepEqual([...z], [0, 0, 0, 0, 0]);
    const inf = new Float32Array([1, Infinity]);
    assert.equal(normalizeInPlace(inf), false);
    assert.deepEqual([...inf], [1, Infinity]);
  });

  test('kernels match their definitions at every dimension mod 4 and at offsets', () => {
    const rand = mulberry32(9);
    for (let dim = 1; dim <= 11; dim++) {
      const a = new Float32Array(3 * dim).map(() => rand() * 4 - 2);
      const b = new Float32Array(2 * dim).map(() => rand() * 4 - 2);
      const aOff = 2 * dim;
      const bOff = dim;
      let sq = 0, dp = 0, na = 0, nb = 0;
      for (let j = 0; j < dim; j++) {
        sq += (a[aOff + j]! - b[bOff + j]!) ** 2;
        dp += a[aOff + j]! * b[bOff + j]!;
        na += a[aOff + j]! ** 2;
        nb += b[bOff + j]! ** 2;
      }
      assertClose(distanceFn('l2')(a, aOff, b, bOff, dim), sq, 1e-9, `l2 dim ${dim}`);
      assertClose(distanceFn('ip')(a, aOff, b, bOff, dim), 1 - dp, 1e-9, `ip dim ${dim}`);
      // Cosine's contract: on unit vectors, distance = 1 - cos(a, b).
      const ua = a.slice(aOff, aOff + dim);
      const ub = b.slice(bOff, bOff + dim);
      normalizeInPlace(ua);
      normalizeInPlace(ub);
      assertClose(distanceFn('cosine')(ua, 0, ub, 0, dim), 1 - dp / Math.sqrt(na * nb), 1e-6, `cosine dim ${dim}`);
    }
  });

  test('an unknown metric is a TypeError', () => {
    assert.throws(() => distanceFn('dot' as Metric), TypeError);
  });
});

describe('TopK', () => {
  test('keeps the k smallest, nearest first, ties by smaller key, whatever the push order', () => {
    const rand = mulberry32(4);
    for (const k of [1, 2, 5, 17, 64]) {
      // Distances from a small set so that ties are common.
      const pairs = Array.from({ length: 300 }, (_, i) => [i * 3 + 1, Math.floor(rand() * 40)] as [number, number]);
      const want = [...pairs].sort((a, b) => a[1] - b[1] || a[0] - b[0]).slice(0, k);
      for (const order of [pairs, [...pairs].reverse(), [...pairs].sort(() => rand() - 0.5)]) {
        const top = new TopK(k);
        for (const [r, d] of order) top.push(r, d);
        const got = top.drain();
        assert.deepEqual(got.rows, want.map((p) => p[0]), `k=${k}`);
        assert.deepEqual(got.distances, want.map((p) => p[1]), `k=${k}`);
      }
    }
  });

  test('worst() is +Infinity until full, then the k-th distance; drain empties for reuse', () => {
    const top = new TopK(3);
    assert.equal(top.worst(), Infinity);
    top.push(1, 5);
    top.push(2, 1);
    assert.equal(top.worst(), Infinity);
    top.push(3, 3);
    assert.equal(top.worst(), 5);
    assert.equal(top.push(4, 9), false);
    assert.equal(top.push(5, 2), true);
    assert.equal(top.worst(), 3);
    assert.deepEqual(top.drain(), { rows: [2, 5, 3], distances: [1, 2, 3] });
    assert.equal(top.size, 0);
    top.push(7, 0.5);
    assert.deepEqual(top.drain(), { rows: [7], distances: [0.5] });
  });

  test('carries arbitrary numeric keys (merge tags), and k = 0 holds nothing', () => {
    const top = new TopK(2);
    top.push(2 ** 40 + 3, 0.25);
    top.push(-7.5, 0.125);
    top.push(1e15, 0.5);
    assert.deepEqual(top.drain(), { rows: [-7.5, 2 ** 40 + 3], distances: [0.125, 0.25] });
    const none = new TopK(0);
    assert.equal(none.push(1, 0), false);
    assert.deepEqual(none.drain(), { rows: [], distances: [] });
    assert.throws(() => new TopK(-1), RangeError);
  });
});

describe('flatSearch', () => {
  const dim = 13; // not a multiple of 4: exercises the kernels' tails
  const count = 700;

  for (const metric of METRICS) {
    test(`${metric}: same rows and distances as the naive definition, with and without accept`, () => {
      const base = uniformDataset({ count, dim, seed: 2 });
      const queries = uniformDataset({ count: 20, dim, seed: 3 });
      if (metric === 'cosine') {
        normalizeRows(base, dim);
        normalizeRows(queries, dim);
      }
      const accept = (r: number) => r % 3 !== 1;
      for (let q = 0; q < 20; q++) {
        const query = row(queries, dim, q);
        for (const filter of [undefined, accept]) {
          const got = flatSearch(base, dim, count, query, 10, metric, filter);
          const want = naiveSearch(base, dim, count, query, 10, metric, filter);
          assert.deepEqual(got.rows, want.rows, `query ${q}, filter ${filter !== undefined}`);
          got.distances.forEach((d, i) => assertClose(d, want.distances[i]!, 1e-9, `distance ${i}`));
          if (filter) assert.ok(got.rows.every(accept), 'a rejected row came back');
        }
      }
    });
  }

  test('k beyond count returns every accepted row; k = 0 and count = 0 return nothing', () => {
    const base = uniformDataset({ count: 6, dim: 4, seed: 5 });
    const q = base.slice(0, 4);
    const all = flatSearch(base, 4, 6, q, 50, 'l2');
    assert.deepEqual([...all.rows].sort(), [0, 1, 2, 3, 4, 5]);
    assert.equal(all.rows[0], 0);
    assert.equal(all.distances[0], 0);
    assert.deepEqual(flatSearch(base, 4, 6, q, 50, 'l2', (r) => r >= 4).rows.sort(), [4, 5]);
    assert.deepEqual(flatSearch(base, 4, 6, q, 0, 'l2'), { rows: [], distances: [] });
    assert.deepEqual(flatSearch(base, 4, 0, q, 3, 'l2'), { rows: [], distances: [] });
  });

  test('equal distances come back in row order', () => {
    const base = new Float32Array(8 * 2).fill(1);
    const got = flatSearch(base, 2, 8, new Float32Array([0, 0]), 5, 'l2');
    assert.deepEqual(got.rows, [0, 1, 2, 3, 4]);
  });

  test('accept is only consulted for rows that would enter the top k', () => {
    const base = uniformDataset({ count: 2000, dim: 8, seed: 6 });
    const asked = new Set<number>();
    flatSearch(base, 8, 2000, row(base, 8, 0), 5, 'l2', (r) => (asked.add(r), true));
    assert.ok(asked.size < 2000, `accept was called for ${asked.size} of 2000 rows`);
    assert.ok(asked.has(0));
  });

  test('a query of the wrong dimension is ERR_DIMENSION_MISMATCH; a short buffer is ERR_INVALID_ARGUMENT', () => {
    const base = uniformDataset({ count: 4, dim: 4, seed: 5 });
    assert.throws(() => flatSearch(base, 4, 4, new Float32Array(3), 1, 'l2'), (e: unknown) => isStratavecError(e, 'ERR_DIMENSION_MISMATCH'));
    assert.throws(() => flatSearch(base, 4, 5, new Float32Array(4), 1, 'l2'), (e: unknown) => isStratavecError(e, 'ERR_INVALID_ARGUMENT'));
  });
});

describe('HnswIndex recall', () => {
  test('siftsmall l2: recall@10 >= 0.98 at ef = 64', (t) => {
    const sift = loadSiftsmall();
    if (sift === undefined) {
      t.skip(`siftsmall not found at ${siftsmallSearchPath()}: set STRATAVEC_SIFT_DIR`);
      return;
    }
    const { base, query, groundTruth } = sift;
    assert.equal(base.dim, 128);
    const index = HnswIndex.build(base.data, base.dim, base.count, 'l2', DEFAULT_HNSW_PARAMS);
    const found = [];
    for (let q = 0; q < query.count; q++) found.push(index.search(row(query.data, query.dim, q), 10, 64).rows);
    const recall = recallAtK(found, groundTruth.data, groundTruth.dim, 10);
    t.diagnostic(`siftsmall recall@10 at ef=64: ${recall}`);
    assert.ok(recall >= 0.98, `recall@10 ${recall}`);
  });

  for (const metric of METRICS) {
    test(`synthetic clustered 10,000 x 64, ${metric}: recall@10 >= 0.95 at ef = 64 against flatSearch`, (t) => {
      const { queries, index, truth } = synthetic(metric);
      const found = [];
      for (let q = 0; q < SYN.nq; q++) found.push(index.search(row(queries, SYN.dim, q), SYN.k, 64).rows);
      const recall = recallAtK(found, truth, SYN.k, SYN.k);
      t.diagnostic(`${metric} recall@10 at ef=64: ${recall}`);
      assert.ok(recall >= 0.95, `recall@10 ${recall}`);
    });
  }
});

describe('HnswIndex distances', () => {
  for (const metric of METRICS) {
    test(`${metric}: HNSW distances equal the flat kernel's for the same row (1e-3 relative)`, () => {
      const { base, queries, index } = synthetic(metric);
      const dist = distanceFn(metric);
      let checked = 0;
      for (let q = 0; q < 50; q++) {
        const query = row(queries, SYN.dim, q);
        const got = index.search(query, 10, 64);
        assert.equal(got.rows.length, 10);
        for (let i = 0; i < got.rows.length; i++) {
          const exact = dist(base, got.rows[i]! * SYN.dim, query, 0, SYN.dim);
          // Relative, with a floor for distances near 0 where float32 rounding of 1 - dot dominates.
          const tol = 1e-3 * Math.max(Math.abs(exact), Math.abs(got.distances[i]!)) + 1e-6;
          assertClose(got.distances[i]!, exact, tol, `${metric} query ${q} row ${got.rows[i]}`);
          if (i > 0) assert.ok(got.distances[i]! >= got.distances[i - 1]!, 'not nearest first');
          checked++;
        }
      }
      assert.equal(checked, 500);
    });
  }
});

describe('HnswIndex filters and edges', () => {
  test('accept excludes rows, and the answer still matches a filtered exact scan', () => {
    const { base, queries, index } = synthetic('l2');
    const even = (r: number) => r % 2 === 0;
    const found = [];
    const truth = new Int32Array(SYN.nq * SYN.k);
    for (let q = 0; q < SYN.nq; q++) {
      const query = row(queries, SYN.dim, q);
      const got = index.search(query, SYN.k, 64, even);
      assert.equal(got.rows.length, SYN.k);
      assert.ok(got.rows.every(even), `odd row in ${got.rows}`);
      found.push(got.rows);
      truth.set(flatSearch(base, SYN.dim, SYN.count, query, SYN.k, 'l2', even).rows, q * SYN.k);
    }
    assert.ok(recallAtK(found, truth, SYN.k, SYN.k) >= 0.95);

    // A stored row is its own nearest neighbour, until it is filtered out.
    const self = row(base, SYN.dim, 123);
    assert.equal(index.search(self, 5).rows[0], 123);
    assert.ok(!index.search(self, 5, 64, (r) => r !== 123).rows.includes(123));
  });

  test('an exception thrown by accept is rethrown, and the index keeps working', () => {
    const { index, base } = smallIndex();
    const boom = new Error('filter failed');
    assert.throws(() => index.search(row(base, SMALL.dim, 0), 5, 32, () => {
      throw boom;
    }), (e: unknown) => e === boom);
    assert.equal(index.search(row(base, SMALL.dim, 0), 1).rows[0], 0);
  });

  test('k is clamped to count; an empty index answers nothing and round-trips', async () => {
    const base = clusteredDataset({ count: 5, dim: 8, seed: 2 });
    const five = HnswIndex.build(base, 8, 5, 'l2', DEFAULT_HNSW_PARAMS);
    const got = five.search(row(base, 8, 2), 10);
    assert.deepEqual([...got.rows].sort(), [0, 1, 2, 3, 4]);
    assert.equal(got.rows[0], 2);

    const empty = HnswIndex.build(new Float32Array(0), 8, 0, 'cosine', DEFAULT_HNSW_PARAMS);
    assert.deepEqual(empty.search(new Float32Array(8), 3), { rows: [], distances: [] });
    const dir = await freshDir();
    const again = await HnswIndex.fromBytes(await empty.toBytes(dir), 8, 'cosine', 0, dir);
    assert.equal(again.count, 0);
    assert.deepEqual(again.search(new Float32Array(8), 3), { rows: [], distances: [] });
  });

  test('bad queries and parameters are refused before they reach hnswlib', () => {
    const { index } = smallIndex();
    assert.throws(() => index.search(new Float32Array(SMALL.dim + 1), 3), (e: unknown) => isStratavecError(e, 'ERR_DIMENSION_MISMATCH'));
    assert.throws(() => index.search(new Float32Array(SMALL.dim), 3, 0), RangeError);
    assert.throws(() => index.search(new Float32Array(SMALL.dim), -1), RangeError);
    const base = new Float32Array(16);
    assert.throws(() => HnswIndex.build(base, 4, 4, 'l2', { M: 1, efConstruction: 10, efSearch: 10 }), (e: unknown) => isStratavecError(e, 'ERR_INVALID_ARGUMENT'));
    assert.throws(() => HnswIndex.build(base, 4, 5, 'l2', DEFAULT_HNSW_PARAMS), (e: unknown) => isStratavecError(e, 'ERR_INVALID_ARGUMENT'));
  });

  test('ef is applied and remembered; dispose frees the graph and later use throws', () => {
    const { index, base } = smallIndex();
    assert.equal(index.ef, 32);
    index.search(row(base, SMALL.dim, 1), 3, 100);
    assert.equal(index.ef, 100);
    assert.ok(index.memoryBytes > SMALL.count * SMALL.dim * 4, 'memory estimate below the raw vectors');
    index.dispose();
    assert.throws(() => index.search(row(base, SMALL.dim, 1), 3), /disposed/);
    index.dispose(); // idempotent
  });
});

describe('HnswIndex persistence', () => {
  function searchAll(index: HnswIndex, base: Float32Array, accept?: (r: number) => boolean): Neighbors[] {
    const out = [];
    for (let q = 0; q < 60; q++) out.push(index.search(row(base, SMALL.dim, q * 17), 8, 40, accept));
    return out;
  }

  for (const metric of METRICS) {
    test(`${metric}: save/load and toBytes/fromBytes give identical search results`, async () => {
      const { base, index } = smallIndex(metric);
      const dir = await freshDir();
      const file = path.join(dir, 'seg.hnsw');
      await index.save(file);
      const loaded = await HnswIndex.load(file, SMALL.dim, metric, SMALL.count);
      const bytes = await index.toBytes(dir);
      assert.deepEqual(bytes, await fsp.readFile(file), 'toBytes differs from the saved file');
      const fromBytes = await HnswIndex.fromBytes(bytes, SMALL.dim, metric, SMALL.count, dir);
      const want = searchAll(index, base);
      assert.deepEqual(searchAll(loaded, base), want);
      assert.deepEqual(searchAll(fromBytes, base), want);
      const odd = (r: number) => r % 2 === 1;
      assert.deepEqual(searchAll(fromBytes, base, odd), searchAll(index, base, odd));
      assert.equal(loaded.M, 8);
      assert.equal(loaded.count, SMALL.count);
      assert.deepEqual(await fsp.readdir(dir), ['seg.hnsw'], 'a temp file was left behind');
    });
  }

  test('the same vectors, params and seed give byte-identical indexes', async () => {
    const dir = await freshDir();
    const a = await smallIndex('l2', 9).index.toBytes(dir);
    const b = await smallIndex('l2', 9).index.toBytes(dir);
    assert.ok(a.equals(b));
  });

  test('loading with the wrong dimension or count is ERR_SEGMENT_CORRUPT; a missing file is ERR_IO', async () => {
    const { index } = smallIndex();
    const dir = await freshDir();
    const file = path.join(dir, 'seg.hnsw');
    await index.save(file);
    await assertCorrupt(HnswIndex.load(file, SMALL.dim + 4, 'l2', SMALL.count), 'wrong dim');
    await assertCorrupt(HnswIndex.load(file, SMALL.dim, 'l2', SMALL.count - 1), 'wrong count');
    await assert.rejects(HnswIndex.load(path.join(dir, 'absent'), SMALL.dim, 'l2', SMALL.count), (e: unknown) => isStratavecError(e, 'ERR_IO'));
  });

  test('garbage and truncated files are ERR_SEGMENT_CORRUPT, from a path and from bytes', async () => {
    const { index } = smallIndex();
    const dir = await freshDir();
    const good = await index.toBytes(dir);
    const rand = mulberry32(77);
    const cases: Array<[string, Uint8Array]> = [];
    for (const n of [0, 1, 95, 96, 97, 4096, good.length]) {
      cases.push([`${n} random bytes`, Uint8Array.from({ length: n }, () => Math.floor(rand() * 256))]);
    }
    cases.push(['all zeros', new Uint8Array(good.length)]);
    cases.push(['one byte appended', Buffer.concat([good, Buffer.from([0])])]);
    // Every cut inside the header, then cuts spread over the body, then the last byte.
    const cuts = new Set<number>();
    for (let c = 0; c <= 96; c++) cuts.add(c);
    for (let i = 1; i < 60; i++) cuts.add(Math.floor((good.length * i) / 60));
    cuts.add(good.length - 1);
    for (const c of cuts) cases.push([`truncated to ${c}`, good.subarray(0, c)]);

    for (const [what, bytes] of cases) {
      const file = path.join(dir, 'bad.hnsw');
      await fsp.writeFile(file, bytes);
      await assertCorrupt(HnswIndex.load(file, SMALL.dim, 'l2', SMALL.count), `load: ${what}`);
    }
    for (const [what, bytes] of cases.slice(0, 12)) {
      await assertCorrupt(HnswIndex.fromBytes(bytes, SMALL.dim, 'l2', SMALL.count, dir), `fromBytes: ${what}`);
    }
    assert.deepEqual((await fsp.readdir(dir)).filter((f) => f !== 'bad.hnsw'), [], 'a temp file was left behind');
  });

  // Each of these loads cleanly in hnswlib (its own check only adds up lengths) and then crashes
  // the process on the first search; the structural check must refuse them all.
  test('well-sized files with broken structure are ERR_SEGMENT_CORRUPT, never handed to hnswlib', async () => {
    const { index } = smallIndex();
    const dir = await freshDir();
    const good = await index.toBytes(dir);
    const view = (b: Buffer) => new DataView(b.buffer, b.byteOffset, b.byteLength);
    const perElem = Number(good.readBigUInt64LE(24));
    const labelOffset = Number(good.readBigUInt64LE(32));
    const maxM0 = Number(good.readBigUInt64LE(64));
    const maxLevel = good.readInt32LE(48);
    assert.ok(maxLevel >= 1, 'the fixture needs an upper level');
    const level0End = 96 + SMALL.count * perElem;
    // The first node with an upper level, and the offset of its level-1 list.
    let at = level0End;
    let upperNode = -1;
    let upperAt = -1;
    for (let i = 0; i < SMALL.count; i++) {
      const size = good.readUInt32LE(at);
      if (size > 0 && upperNode < 0) {
        upperNode = i;
        upperAt = at + 4;
      }
      at += 4 + size;
    }
    assert.ok(upperNode >= 0 && good.readUInt32LE(upperAt) > 0);
    // Some node that exists on level 0 only, for a link from level 1 that must not be followed.
    const levelZeroOnly = (() => {
      let p = level0End;
      for (let i = 0; i < SMALL.count; i++) {
        const size = good.readUInt32LE(p);
        if (size === 0) return i;
        p += 4 + size;
      }
      throw new Error('no level-0-only node');
    })();

    const tamper: Array<[string, (b: Buffer) => void]> = [
      ['level-0 neighbour past the end', (b) => b.writeUInt32LE(SMALL.count + 5, 96 + 7 * perElem + 4)],
      ['level-0 link count above 2M', (b) => b.writeUInt32LE(maxM0 + 1, 96 + 7 * perElem)],
      ['delete mark set', (b) => b.writeUInt8(1, 96 + 7 * perElem + 2)],
      ['entry point past the end', (b) => b.writeUInt32LE(1e9, 52)],
      ['top level raised', (b) => b.writeInt32LE(maxLevel + 1, 48)],
      ['top level negative', (b) => b.writeInt32LE(-1, 48)],
      ['huge capacity', (b) => b.writeBigUInt64LE(1n << 33n, 8)],
      ['capacity above count', (b) => b.writeBigUInt64LE(BigInt(SMALL.count + 1), 8)],
      ['M changed', (b) => b.writeBigUInt64LE(9n, 72)],
      ['record size changed', (b) => b.writeBigUInt64LE(BigInt(perElem + 4), 24)],
      ['level multiplier NaN', (b) => view(b).setFloat64(80, NaN, true)],
      ['duplicate label', (b) => b.writeBigUInt64LE(b.readBigUInt64LE(96 + labelOffset), 96 + perElem + labelOffset)],
      ['label past the end', (b) => b.writeBigUInt64LE(BigInt(SMALL.count), 96 + 3 * perElem + labelOffset)],
      ['upper-level link to a node not on that level', (b) => b.writeUInt32LE(levelZeroOnly, upperAt + 4)],
      ['upper-level link past the end', (b) => b.writeUInt32LE(SMALL.count, upperAt + 4)],
    ];
    const file = path.join(dir, 'bad.hnsw');
    for (const [what, edit] of tamper) {
      const bad = Buffer.from(good);
      edit(bad);
      assert.ok(!bad.equals(good), `${what}: the edit changed nothing`);
      assert.throws(() => checkHnswIndexBytes(bad, SMALL.dim, SMALL.count), (e: unknown) => isStratavecError(e, 'ERR_SEGMENT_CORRUPT'), what);
      await fsp.writeFile(file, bad);
      await assertCorrupt(HnswIndex.load(file, SMALL.dim, 'l2', SMALL.count), what);
    }
    // The untouched file passes the same check, so the refusals above are about the edits.
    assert.equal(checkHnswIndexBytes(good, SMALL.dim, SMALL.count).count, SMALL.count);
  });

  test('hnswlib by itself accepts a file with an out-of-range neighbour (why the check exists)', async () => {
    const { index } = smallIndex();
    const dir = await freshDir();
    const bad = await index.toBytes(dir);
    const perElem = Number(bad.readBigUInt64LE(24));
    bad.writeUInt32LE(SMALL.count + 5, 96 + 7 * perElem + 4);
    const file = path.join(dir, 'bad.hnsw');
    await fsp.writeFile(file, bad);
    const raw = new hnswlib.HierarchicalNSW('l2', SMALL.dim);
    await raw.readIndex(file); // loads; searching it would read out of bounds, so we never do
    assert.equal(raw.getCurrentCount(), SMALL.count);
  });
});
