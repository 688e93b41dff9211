// Segment bounds and k-means: the lower bound never exceeds a member row's distance (seeded
// property test, every metric, degenerate segments), k-means is deterministic and finds clear
// clusters, the bounds bytes round-trip and refuse hostile input, and segments sealed or compacted
// by the engine carry a bounds section that holds for their rows, through a cold copy and back.

import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { promises as fsp } from 'node:fs';
import { Database, type DatabaseOptions } from '../engine/index.js';
import { StratavecError } from '../format/errors.js';
import { encodeSegment, encodeStringTable, SectionKind, SegmentReader, writeSegmentFile } from '../format/segment.js';
import { distanceFn, normalizeInPlace, METRICS, type Metric } from '../index/distance.js';
import {
  boundsCentroidCount, computeBounds, decodeBounds, encodeBounds, lowerBound, readSegmentBounds,
  MAX_BOUNDS_CENTROIDS, type SegmentBounds,
} from '../index/bounds.js';
import { assign, kmeans } from '../index/kmeans.js';
import { encodeColdCopy, decodeColdCopy } from '../workers/cold-copy.js';
import { clusteredDataset, gaussian, mulberry32 } from '../harness/datasets.js';
import { collectionFiles, track, withTmpDir } from './helpers/tmp.js';

// ---------------------------------------------------------------------------------------------
// Reference distances: the engine's flat kernel (float64 sums) and a float32 emulation of what
// hnswlib reports (every product and partial sum rounded to float32, summed in sequence, which
// errs more than its SIMD lanes do). A bound must sit under both.

function float32Distance(q: Float32Array, rows: Float32Array, off: number, dim: number, metric: Metric): number {
  let s = 0;
  if (metric === 'l2') {
    for (let i = 0; i < dim; i++) {
      const d = Math.fround(q[i]! - rows[off + i]!);
      s = Math.fround(s + Math.fround(d * d));
    }
    return s;
  }
  for (let i = 0; i < dim; i++) s = Math.fround(s + Math.fround(q[i]! * rows[off + i]!));
  return Math.fround(1 - s);
}

/** The query as the engine searches with it: cosine queries are normalised (to float32). */
function engineQuery(q: Float32Array, metric: Metric): Float32Array {
  if (metric !== 'cosine') return q;
  const c = Float32Array.from(q);
  return normalizeInPlace(c) ? c : q;
}

function assertBoundHolds(b: SegmentBounds, rows: Float32Array, n: number, dim: number, query: Float32Array, metric: Metric, what: string): number {
  const bound = lowerBound(b, query, metric);
  const eq = engineQuery(query, metric);
  if (metric === 'cosine' && eq === query) return bound; // a zero query is rejected by the engine
  const fn = distanceFn(metric);
  let min = Infinity;
  for (let r = 0; r < n; r++) {
    const exact = fn(eq, 0, rows, r * dim, dim);
    const f32 = float32Distance(eq, rows, r * dim, dim, metric);
    if (!(bound <= exact) || !(bound <= f32)) {
      assert.fail(`${what}: bound ${bound} exceeds row ${r}'s distance (flat ${exact}, float32 ${f32})`);
    }
    min = Math.min(min, exact);
  }
  return min;
}

type Shape = 'uniform' | 'blobs' | 'identical' | 'one' | 'two-points' | 'wide-range';

function makeRows(shape: Shape, n: number, dim: number, rand: () => number, metric: Metric): Float32Array {
  const normal = gaussian(rand);
  const rows = new Float32Array(n * dim);
  const blobs = Array.from({ length: 4 }, () => Float32Array.from({ length: dim }, () => normal() * 10));
  const base = Float32Array.from({ length: dim }, () => rand() * 4 - 2);
  for (let r = 0; r < n; r++) {
    for (let j = 0; j < dim; j++) {
      let v: number;
      switch (shape) {
        case 'uniform': v = rand() * 2 - 1; break;
        case 'blobs': v = blobs[r % 4]![j]! + normal() * 0.05; break;
        case 'identical': case 'one': v = base[j]!; break;
        case 'two-points': v = r % 2 === 0 ? base[j]! : -base[j]!; break;
        case 'wide-range': v = (rand() * 2 - 1) * (r % 3 === 0 ? 1e4 : r % 3 === 1 ? 1e-3 : 1); break;
      }
      rows[r * dim + j] = v;
    }
    if (metric === 'cosine' && !normalizeInPlace(rows.subarray(r * dim, r * dim + dim))) {
      rows[r * dim] = 1; // a zero row (dim 1 can draw one): the engine refuses those, use an axis
    }
  }
  return rows;
}

function makeQueries(rows: Float32Array, n: number, dim: number, rand: () => number): Float32Array[] {
  const normal = gaussian(rand);
  const qs: Float32Array[] = [];
  const row = (r: number) => rows.subarray(r * dim, r * dim + dim);
  for (let i = 0; i < 6; i++) qs.push(Float32Array.from({ length: dim }, () => (rand() * 4 - 2) * (i < 3 ? 1 : 50)));
  for (let i = 0; i < 6; i++) {
    const r = Math.floor(rand() * n);
    qs.push(Float32Array.from(row(r)));                                      // exactly a member row
    qs.push(Float32Array.from(row(r), (v) => v + normal() * 1e-3));         // next to one
    qs.push(Float32Array.from(row(r), (v) => -v * 3));                      // opposite, scaled
  }
  qs.push(new Float32Array(dim)); // the zero query (l2, ip); cosine skips it
  return qs;
}

describe('lowerBound', () => {
  test('never exceeds any row\'s reported distance: random shapes, every metric', () => {
    const shapes: Shape[] = ['uniform', 'blobs', 'identical', 'one', 'two-points', 'wide-range'];
    for (let seed = 1; seed <= 36; seed++) {
      const rand = mulberry32(seed);
      const shape = shapes[seed % shapes.length]!;
      const dim = [1, 2, 3, 7, 16, 64][Math.floor(rand() * 6)]!;
      const n = shape === 'one' ? 1 : 1 + Math.floor(rand() * 400);
      for (const metric of METRICS) {
        const rows = makeRows(shape, n, dim, rand, metric);
        const b = computeBounds(rows, dim, n, { seed });
        const what = `seed ${seed}, ${shape}, ${n} x ${dim}, ${metric}`;
        assert.equal(b.rows, n, what);
        assert.ok(b.count >= 1 && b.count <= boundsCentroidCount(n), `${what}: ${b.count} centroids`);
        if (shape === 'identical' || shape === 'one') {
          assert.equal(b.count, 1, `${what}: identical rows need one centroid`);
          assert.equal(b.radii[0], 0, `${what}: zero radius`);
        }
        for (const q of makeQueries(rows, n, dim, rand)) assertBoundHolds(b, rows, n, dim, q, metric, what);
      }
    }
  });

  test('l2: the smallest |q - c| - r over the balls, the early-abandoning loop changes no bound', () => {
    for (let seed = 1; seed <= 12; seed++) {
      const rand = mulberry32(seed);
      const dim = [5, 33, 128][seed % 3]!;
      const n = 200 + Math.floor(rand() * 800);
      const rows = makeRows(seed % 2 ? 'blobs' : 'uniform', n, dim, rand, 'l2');
      const b = computeBounds(rows, dim, n, { seed });
      const queries = [...makeQueries(rows, n, dim, rand), rows.slice(0, dim)];
      for (const [i, q] of queries.entries()) {
        let gap = Infinity;
        for (let c = 0; c < b.count; c++) {
          let s = 0;
          for (let j = 0; j < dim; j++) s += (q[j]! - b.centroids[c * dim + j]!) ** 2;
          gap = Math.min(gap, Math.sqrt(s) - b.radii[c]!);
        }
        const want = gap > 0 ? gap * gap * (1 - (dim + 8) * 2 ** -23) : 0;
        const got = lowerBound(b, q, 'l2');
        assert.ok(Math.abs(got - want) <= 1e-9 * Math.max(1, want), `seed ${seed}, ${n} x ${dim}, query ${i}: ${got} vs ${want}`);
      }
      assert.equal(lowerBound(b, rows.slice(0, dim), 'l2'), 0, `seed ${seed}: a row's own query is inside its ball`);
    }
  });

  test('is tight enough to prune: a query far from clustered rows gets most of its distance', () => {
    const dim = 32;
    const n = 2000;
    for (const metric of METRICS) {
      const rows = clusteredDataset({ count: n, dim, clusters: 8, seed: 7, spread: 0.2 });
      if (metric === 'cosine') for (let r = 0; r < n; r++) normalizeInPlace(rows.subarray(r * dim, r * dim + dim));
      const b = computeBounds(rows, dim, n, { seed: 7 });
      // The query opposite the first row: far from everything in this segment.
      const q = Float32Array.from(rows.subarray(0, dim), (v) => -v);
      const min = assertBoundHolds(b, rows, n, dim, q, metric, `clustered, ${metric}`);
      const bound = lowerBound(b, q, metric);
      if (metric === 'ip') assert.ok(bound >= min - 0.5 * Math.abs(min), `ip: bound ${bound} against a nearest distance of ${min}`);
      else assert.ok(bound >= 0.5 * min && bound > 0, `${metric}: bound ${bound} against a nearest distance of ${min}`);
    }
  });

  test('wide balls are cut: blobs outnumbering the k-means centroids still get tight balls that hold', () => {
    // 64 tight blobs far apart, 16 rows each: the cap is 64 balls, k-means learns 32, so at least
    // half its balls span two blobs (radius ~ half the blob spacing) until cut.
    for (const seed of [1, 2, 3]) {
      const rand = mulberry32(seed);
      const normal = gaussian(rand);
      const dim = 24;
      const blobsN = 64;
      const n = blobsN * 16;
      const centres = Array.from({ length: blobsN * dim }, () => normal() * 10);
      for (const metric of METRICS) {
        const rows = new Float32Array(n * dim);
        for (let r = 0; r < n; r++) for (let j = 0; j < dim; j++) rows[r * dim + j] = centres[(r % blobsN) * dim + j]! + normal() * 0.05;
        if (metric === 'cosine') for (let r = 0; r < n; r++) normalizeInPlace(rows.subarray(r * dim, r * dim + dim));
        const what = `seed ${seed}, ${metric}`;
        const b = computeBounds(rows, dim, n, { seed });
        assert.ok(b.count <= boundsCentroidCount(n), `${what}: ${b.count} balls past the cap`);
        // A blob's rows lie within ~0.05 * (sqrt(dim) + 3) of its centre (for cosine, scaled
        // down by the norm, ~ 10 sqrt(dim)); blob centres are ~14 sqrt(dim) apart.
        const maxR = Math.max(...b.radii);
        assert.ok(maxR < 0.1 * Math.sqrt(dim), `${what}: widest ball ${maxR} spans more than one blob`);
        for (const q of makeQueries(rows, n, dim, rand)) assertBoundHolds(b, rows, n, dim, q, metric, what);
      }
    }
  });

  test('a region with stray rows of other clusters: no ball straddles them (k-means alone left 3-4x the median radius)', () => {
    // As a clustering compaction leaves a segment: 30 whole clusters plus 2 rows each of 20 clusters
    // whose centres lie in other regions. The cap (n / 16) exceeds the 50 groups, so every ball
    // can be one group's; k-means with every ball (the old bounds) left some spanning two, with
    // radii of 2.8-4x the median over seeds 1-8; the cuts keep the widest under 1.3x.
    const dim = 32;
    for (const seed of [1, 2, 3]) {
      const labels = new Uint32Array(12_000);
      const all = clusteredDataset({ count: 12_000, dim, clusters: 300, spread: 0.25, seed, labels });
      const pick: number[] = [];
      const strays = new Map<number, number>();
      for (let r = 0; r < labels.length; r++) {
        const c = labels[r]!;
        if (c < 30) pick.push(r);
        else if (c < 50 && (strays.get(c) ?? 0) < 2) {
          pick.push(r);
          strays.set(c, (strays.get(c) ?? 0) + 1);
        }
      }
      const n = pick.length;
      const rand = mulberry32(seed);
      for (const metric of METRICS) {
        const rows = new Float32Array(n * dim);
        pick.forEach((r, i) => rows.set(all.subarray(r * dim, r * dim + dim), i * dim));
        if (metric === 'cosine') for (let r = 0; r < n; r++) normalizeInPlace(rows.subarray(r * dim, r * dim + dim));
        const what = `seed ${seed}, ${metric}, ${n} rows`;
        const b = computeBounds(rows, dim, n, { seed });
        assert.ok(b.count <= boundsCentroidCount(n), `${what}: ${b.count} balls past the cap`);
        const radii = [...b.radii].sort((x, y) => x - y);
        const median = radii[radii.length >> 1]!;
        assert.ok(radii.at(-1)! < 1.3 * median, `${what}: widest ball ${radii.at(-1)} against a median of ${median}`);
        for (const q of makeQueries(rows, n, dim, rand)) assertBoundHolds(b, rows, n, dim, q, metric, what);
      }
    }
  });

  test('degenerate bounds: no rows is +Infinity, a NaN query never prunes, wrong dimension is coded', () => {
    const empty = computeBounds(new Float32Array(0), 4, 0, { seed: 1 });
    assert.equal(empty.count, 0);
    for (const metric of METRICS) assert.equal(lowerBound(empty, new Float32Array(4), metric), Infinity);
    const rows = Float32Array.from([1, 0, 0, 0, 0, 1, 0, 0]);
    const b = computeBounds(rows, 4, 2, { seed: 1 });
    for (const bad of [NaN, Infinity]) {
      for (const metric of METRICS) assert.equal(lowerBound(b, Float32Array.from([bad, 0, 0, 0]), metric), -Infinity, `${metric}, ${bad}`);
    }
    assert.equal(lowerBound(b, new Float32Array(4), 'cosine'), -Infinity, 'a zero cosine query has no direction');
    assert.throws(() => lowerBound(b, new Float32Array(3), 'l2'), (e: unknown) => e instanceof StratavecError && e.code === 'ERR_DIMENSION_MISMATCH');
    assert.throws(() => lowerBound(b, [1, 0, 0, 0] as unknown as Float32Array, 'l2'), TypeError);
  });

  test('centroid count follows the segment size', () => {
    assert.deepEqual([0, 1, 15, 16, 100, 20_000, 65_536, 1_000_000].map(boundsCentroidCount), [0, 1, 1, 1, 6, MAX_BOUNDS_CENTROIDS, MAX_BOUNDS_CENTROIDS, MAX_BOUNDS_CENTROIDS]);
  });
});

describe('kmeans', () => {
  /** 8 tight blobs at +-10 on distinct axes; row r belongs to blob r % 8. */
  function blobs(n: number, dim: number, seed: number): { rows: Float32Array; centres: Float32Array } {
    const rand = mulberry32(seed);
    const normal = gaussian(rand);
    const centres = new Float32Array(8 * dim);
    for (let c = 0; c < 8; c++) centres[c * dim + (c % 4)] = c < 4 ? 10 : -10;
    const rows = new Float32Array(n * dim);
    for (let r = 0; r < n; r++) for (let j = 0; j < dim; j++) rows[r * dim + j] = centres[(r % 8) * dim + j]! + normal() * 0.3;
    return { rows, centres };
  }

  test('is deterministic for a seed, sampled or not', () => {
    const dim = 16;
    const rows = clusteredDataset({ count: 3000, dim, seed: 3 });
    for (const sampleSize of [undefined, 1000]) {
      const opts = { k: 20, seed: 42, ...(sampleSize ? { sampleSize } : {}) };
      const a = kmeans(rows, dim, 3000, opts);
      const b = kmeans(rows, dim, 3000, opts);
      assert.deepEqual(a.centroids, b.centroids, `seed 42, sample ${sampleSize}`);
      assert.equal(a.k, 20);
      const c = kmeans(rows, dim, 3000, { ...opts, seed: 43 });
      assert.notDeepEqual(a.centroids, c.centroids, 'another seed, other centroids');
    }
  });

  test('finds clear clusters, and assign puts each row in its own', () => {
    const dim = 8;
    const n = 4000;
    for (const seed of [1, 2, 3]) {
      const { rows, centres } = blobs(n, dim, seed);
      const km = kmeans(rows, dim, n, { k: 8, seed });
      assert.equal(km.k, 8);
      // Each true centre has exactly one centroid within 0.5 of it.
      const matched = new Set<number>();
      for (let t = 0; t < 8; t++) {
        let best = -1;
        let bestD = Infinity;
        for (let c = 0; c < 8; c++) {
          const d = Math.sqrt(distanceFn('l2')(centres, t * dim, km.centroids, c * dim, dim));
          if (d < bestD) { bestD = d; best = c; }
        }
        assert.ok(bestD < 0.5, `seed ${seed}: centre ${t} is ${bestD} from its nearest centroid`);
        matched.add(best);
      }
      assert.equal(matched.size, 8, `seed ${seed}: one centroid per cluster`);
      const { labels } = assign(rows, dim, n, km.centroids, km.k);
      for (let r = 8; r < n; r++) assert.equal(labels[r], labels[r % 8], `seed ${seed}: row ${r} with its cluster`);
    }
  });

  test('assign finds the nearest centroid and its exact distance', () => {
    const rand = mulberry32(9);
    const dim = 5;
    const n = 1500;
    const rows = Float32Array.from({ length: n * dim }, () => rand() * 2 - 1);
    const cents = Float32Array.from({ length: 40 * dim }, () => rand() * 2 - 1);
    const { labels, distances } = assign(rows, dim, n, cents, 40);
    const l2 = distanceFn('l2');
    for (let r = 0; r < n; r++) {
      let min = Infinity;
      for (let c = 0; c < 40; c++) min = Math.min(min, l2(rows, r * dim, cents, c * dim, dim));
      assert.equal(distances[r], Math.sqrt(l2(rows, r * dim, cents, labels[r]! * dim, dim)), `seed 9, row ${r}: distance to its label`);
      assert.ok(distances[r]! <= Math.sqrt(min) * (1 + 1e-12), `seed 9, row ${r}: ${distances[r]} against nearest ${Math.sqrt(min)}`);
    }
  });

  test('large k (the native brute-force path) is deterministic and assigns to the nearest', () => {
    const dim = 8;
    const n = 3000;
    const rows = clusteredDataset({ count: n, dim, clusters: 200, seed: 12, spread: 0.1 });
    const a = kmeans(rows, dim, n, { k: 200, seed: 12, sampleSize: n });
    const b = kmeans(rows, dim, n, { k: 200, seed: 12, sampleSize: n });
    assert.equal(a.k, 200);
    assert.deepEqual(a.centroids, b.centroids, 'seed 12');
    const { labels, distances } = assign(rows, dim, n, a.centroids, a.k);
    const l2 = distanceFn('l2');
    for (let r = 0; r < n; r++) {
      let min = Infinity;
      for (let c = 0; c < a.k; c++) min = Math.min(min, l2(rows, r * dim, a.centroids, c * dim, dim));
      assert.equal(distances[r], Math.sqrt(l2(rows, r * dim, a.centroids, labels[r]! * dim, dim)), `seed 12, row ${r}: exact distance to its label`);
      // The native scan ranks in float32: a near-tie may go either way, nothing more.
      assert.ok(distances[r]! <= Math.sqrt(min) * (1 + 1e-5) + 1e-6, `seed 12, row ${r}: ${distances[r]} against nearest ${Math.sqrt(min)}`);
    }
  });

  test('k past the distinct rows gives fewer centroids; bad arguments are coded', () => {
    const rows = new Float32Array(50 * 3).fill(0.5);
    assert.equal(kmeans(rows, 3, 50, { k: 10, seed: 1 }).k, 1);
    assert.equal(kmeans(Float32Array.from([1, 2, 3]), 1, 3, { k: 10, seed: 1 }).k, 3);
    const coded = (e: unknown) => e instanceof StratavecError && e.code === 'ERR_INVALID_ARGUMENT';
    assert.throws(() => kmeans(rows, 3, 50, { k: 0, seed: 1 }), coded);
    assert.throws(() => kmeans(rows, 3, 0, { k: 1, seed: 1 }), coded);
    assert.throws(() => kmeans(rows, 3, 51, { k: 1, seed: 1 }), coded);
    assert.throws(() => kmeans(rows, 3, 50, { k: 1, seed: 1, check: () => { throw new Error('stop'); } }), /stop/);
  });
});

describe('bounds bytes', () => {
  const corruptCode = (e: unknown) => e instanceof StratavecError && e.code === 'ERR_SEGMENT_CORRUPT';

  function sample(): SegmentBounds {
    const dim = 6;
    const rows = clusteredDataset({ count: 700, dim, seed: 5 });
    return computeBounds(rows, dim, 700, { seed: 5 });
  }

  test('round-trips exactly and checks the shape it is expected to have', () => {
    const b = sample();
    const bytes = encodeBounds(b);
    const back = decodeBounds(bytes, { dimension: 6, rows: 700 });
    assert.deepEqual(back, b);
    assert.throws(() => decodeBounds(bytes, { dimension: 7, rows: 700 }), corruptCode);
    assert.throws(() => decodeBounds(bytes, { dimension: 6, rows: 699 }), corruptCode);
    // Unaligned input (a subarray at an odd offset) decodes the same.
    const odd = Buffer.alloc(bytes.length + 1);
    bytes.copy(odd, 1);
    assert.deepEqual(decodeBounds(odd.subarray(1)), b);
    const none = computeBounds(new Float32Array(0), 3, 0, { seed: 1 });
    assert.deepEqual(decodeBounds(encodeBounds(none)), none);
  });

  test('hostile bytes are ERR_SEGMENT_CORRUPT, never a crash or a huge allocation', () => {
    const good = encodeBounds(sample());
    for (let len = 0; len < good.length; len++) assert.throws(() => decodeBounds(good.subarray(0, len)), corruptCode, `truncated to ${len}`);
    assert.throws(() => decodeBounds(Buffer.concat([good, Buffer.alloc(4)])), corruptCode, 'trailing bytes');
    const patched = (write: (b: Buffer) => void) => {
      const b = Buffer.from(good);
      write(b);
      return b;
    };
    const cases: [string, Buffer][] = [
      ['version 2', patched((b) => b.writeUInt32LE(2, 0))],
      ['dimension 0', patched((b) => b.writeUInt32LE(0, 4))],
      ['dimension 2^32-1', patched((b) => b.writeUInt32LE(0xffff_ffff, 4))],
      ['count 2^32-1', patched((b) => b.writeUInt32LE(0xffff_ffff, 8))],
      ['count 0 with rows', patched((b) => b.writeUInt32LE(0, 8))],
      ['rows 0 with centroids', patched((b) => b.writeUInt32LE(0, 12))],
      ['NaN radius', patched((b) => b.writeFloatLE(NaN, 16))],
      ['negative radius', patched((b) => b.writeFloatLE(-1, 16))],
      ['infinite radius', patched((b) => b.writeFloatLE(Infinity, 16))],
      ['infinite centroid value', patched((b) => b.writeFloatLE(-Infinity, b.length - 4))],
      ['a huge claim in a tiny buffer', Buffer.from([1, 0, 0, 0, 0, 0, 1, 0, 0, 4, 0, 0, 0, 4, 0, 0])],
    ];
    for (const [what, bytes] of cases) assert.throws(() => decodeBounds(bytes), corruptCode, what);
    assert.throws(() => decodeBounds('x' as unknown as Uint8Array), TypeError);
    // Random damage: either refused with the code, or a well-formed structure (a flipped float).
    const rand = mulberry32(11);
    for (let i = 0; i < 500; i++) {
      const b = Buffer.from(good);
      b[Math.floor(rand() * b.length)] ^= 1 + Math.floor(rand() * 255);
      try {
        const d = decodeBounds(b);
        assert.equal(d.centroids.length, d.count * d.dimension, `seed 11, flip ${i}`);
      } catch (err) {
        assert.ok(corruptCode(err), `seed 11, flip ${i}: ${String(err)}`);
      }
    }
  });
});

describe('segments carry bounds', () => {
  const QUIET = { tiering: { intervalMs: 0 }, maintenance: { gcIntervalMs: 0, scrubIntervalMs: 0, compactIntervalMs: 0 } } as const;
  const openDb = (dir: string, o: DatabaseOptions = {}) => Database.open(dir, { workers: 1, segmentMaxRecords: 5000, ...QUIET, ...o }).then(track);

  async function checkSegmentFile(file: string, metric: Metric, what: string): Promise<SegmentBounds> {
    const reader = SegmentReader.open(await fsp.readFile(file));
    reader.verifyAll();
    const b = readSegmentBounds(reader);
    assert.ok(b, `${what}: ${path.basename(file)} has a bounds section`);
    const { dimension: dim, count: n } = reader.header;
    assert.equal(b.rows, n, what);
    const rows = reader.vectors();
    const rand = mulberry32(n);
    for (const q of makeQueries(rows, n, dim, rand)) assertBoundHolds(b, rows, n, dim, q, metric, `${what} (query seed ${n})`);
    return b;
  }

  test('sealed and compacted segments hold bounds that hold, for every metric', async () => {
    await withTmpDir('bounds', async (dir) => {
      const db = await openDb(dir);
      const dim = 24;
      for (const metric of METRICS) {
        const col = await db.createCollection(`c-${metric}`, { dimension: dim, metric });
        const data = clusteredDataset({ count: 1500, dim, seed: 21, clusters: 6 });
        for (const [from, to] of [[0, 700], [700, 1500]] as const) {
          await col.upsert(Array.from({ length: to - from }, (_, i) => ({ id: `r${from + i}`, vector: data.subarray((from + i) * dim, (from + i + 1) * dim) })));
          await col.flush();
        }
        const sealed = (await collectionFiles(dir, `c-${metric}`, 'segments')).filter((f) => f.endsWith('.seg'));
        assert.equal(sealed.length, 2, `${metric}: two sealed segments`);
        for (const f of sealed) await checkSegmentFile(f, metric, `sealed, ${metric}`);

        await col.delete(Array.from({ length: 300 }, (_, i) => `r${i * 5}`));
        await db.compact({ smallFraction: 1 });
        const after = (await collectionFiles(dir, `c-${metric}`, 'segments')).filter((f) => f.endsWith('.seg') && !sealed.includes(f));
        assert.ok(after.length >= 1, `${metric}: compaction wrote a segment`);
        for (const f of after) await checkSegmentFile(f, metric, `compacted, ${metric}`);
      }
      await db.close();
    });
  });

  test('a cold copy carries the bounds section through, and a file without one still reads', async () => {
    await withTmpDir('bounds-cold', async (dir) => {
      const db = await openDb(dir);
      const dim = 16;
      const col = await db.createCollection('c', { dimension: dim, metric: 'l2' });
      const data = clusteredDataset({ count: 900, dim, seed: 4 });
      await col.upsert(Array.from({ length: 900 }, (_, i) => ({ id: `r${i}`, vector: data.subarray(i * dim, (i + 1) * dim) })));
      await col.flush();
      const [file] = (await collectionFiles(dir, 'c', 'segments')).filter((f) => f.endsWith('.seg'));
      const original = await checkSegmentFile(file!, 'l2', 'sealed');
      await db.close();

      const packed = path.join(dir, 'packed.seg');
      const restored = path.join(dir, 'restored.seg');
      const enc = await encodeColdCopy({ src: file!, dest: packed });
      assert.ok(enc.sections.some((s) => s.kind === SectionKind.bounds), 'the cold copy has a bounds section');
      await decodeColdCopy({ src: packed, dest: restored, expectRawCrcs: enc.sections.map((s) => s.rawCrc) });
      assert.deepEqual(await checkSegmentFile(restored, 'l2', 'restored from cold'), original);

      // A segment written before bounds existed: no section, no bounds, nothing refused.
      const old = path.join(dir, 'old.seg');
      await writeSegmentFile(old, encodeSegment({ dimension: 2, metric: 'l2', count: 1 }, [
        { kind: SectionKind.vectors, data: new Uint8Array(new Float32Array([1, 2]).buffer) },
        { kind: SectionKind.ids, data: encodeStringTable(['a']) },
      ]));
      const reader = SegmentReader.open(await fsp.readFile(old));
      reader.verifyAll();
      assert.equal(readSegmentBounds(reader), undefined);
    });
  });

  test('a damaged bounds section is refused by its CRC, not used', async () => {
    await withTmpDir('bounds-crc', async (dir) => {
      const rows = clusteredDataset({ count: 300, dim: 4, seed: 8 });
      const file = path.join(dir, 'x.seg');
      await writeSegmentFile(file, encodeSegment({ dimension: 4, metric: 'l2', count: 300 }, [
        { kind: SectionKind.vectors, data: new Uint8Array(rows.buffer) },
        { kind: SectionKind.bounds, data: encodeBounds(computeBounds(rows, 4, 300, { seed: 8 })) },
      ]));
      const buf = await fsp.readFile(file);
      const e = SegmentReader.open(buf).entry(SectionKind.bounds)!;
      buf[e.offset + 20]! ^= 0x40; // inside the radii: still well-formed, but not what was written
      assert.throws(() => readSegmentBounds(SegmentReader.open(buf)), (err: unknown) => err instanceof StratavecError && err.code === 'ERR_SEGMENT_CORRUPT' && /CRC/.test(err.message));
    });
  });
});
