// Filters as row sets: the grammar against an independent reference evaluator (property test over
// random payloads and filters), index path = scan path = reference, mayMatch never skipping a
// segment that holds a match, ERR_INVALID_FILTER before any work, hostile payload index bytes, and
// the index section written by the real seal and compaction tasks, CRC-checked like the others.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { compileFilter, type Payload } from '../index/filter.js';
import { evaluate, mayMatch, countRows, rowsOf, type EvalStats, type FilterSource } from '../index/filter-eval.js';
import { buildPayloadIndex, PayloadIndex } from '../index/payload-index.js';
import { isPayloadSummary, type PayloadIndexes, type PayloadSummary } from '../format/payload-schema.js';
import { SectionKind, SegmentReader } from '../format/segment.js';
import { StratavecError } from '../format/errors.js';
import { SegmentView } from '../tiers/segment-view.js';
import { flatSearch, flatSearchRows } from '../index/flat.js';
import { WorkerPool } from '../workers/pool.js';
import type { SealTask } from '../workers/seal.js';
import { Database } from '../engine/index.js';
import { mulberry32 } from '../harness/datasets.js';
import { withTmpDir, hasCode, isTypeError, track, flipByte, collectionFiles } from './helpers/tmp.js';

// ---------------------------------------------------------------------------------------------
// The reference: the README's grammar implemented directly over the raw filter object, sharing no
// code with index/filter.ts.

const MISSING = Symbol('missing');

function refGet(p: unknown, pathStr: string): unknown {
  let cur: unknown = p;
  for (const k of pathStr.split('.')) {
    if (cur === null || typeof cur !== 'object' || Array.isArray(cur) || !Object.prototype.hasOwnProperty.call(cur, k)) return MISSING;
    cur = (cur as Record<string, unknown>)[k];
  }
  return cur;
}

function canon(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canon).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canon((v as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

function refEq(v: unknown, want: unknown): boolean {
  if (v === MISSING) return false;
  const w = canon(want);
  return canon(v) === w || (Array.isArray(v) && v.some((e) => canon(e) === w));
}

function refCmp(v: unknown, op: string, want: number | string): boolean {
  const one = (x: unknown) => {
    if (typeof x !== typeof want) return false;
    const a = x as number | string;
    return op === '$gt' ? a > want : op === '$gte' ? a >= want : op === '$lt' ? a < want : a <= want;
  };
  return one(v) || (Array.isArray(v) && v.some(one));
}

const isOps = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length > 0 && Object.keys(v).every((k) => k.startsWith('$'));

function refOps(v: unknown, ops: Record<string, unknown>): boolean {
  return Object.entries(ops).every(([op, x]) => {
    switch (op) {
      case '$eq': return refEq(v, x);
      case '$ne': return !refEq(v, x);
      case '$in': return (x as unknown[]).some((w) => refEq(v, w));
      case '$nin': return !(x as unknown[]).some((w) => refEq(v, w));
      case '$exists': return (v !== MISSING) === x;
      case '$not': return !refOps(v, x as Record<string, unknown>);
      default: return refCmp(v, op, x as number | string);
    }
  });
}

function refMatch(f: Record<string, unknown>, p: unknown): boolean {
  return Object.entries(f).every(([k, x]) => {
    if (k === '$and') return (x as Record<string, unknown>[]).every((s) => refMatch(s, p));
    if (k === '$or') return (x as Record<string, unknown>[]).some((s) => refMatch(s, p));
    if (k === '$not') return !refMatch(x as Record<string, unknown>, p);
    const v = refGet(p, k);
    return isOps(x) ? refOps(v, x) : refEq(v, x);
  });
}

// ---------------------------------------------------------------------------------------------
// Random payloads and filters

const STRINGS = ['a', 'b', 'c', 'ab', 'B', '', '\u00e9', '10'];
const NUMBERS = [-3, -1, 0, -0, 1, 1.5, 2, 10, 1e9];
const PATHS = ['k', 'n', 'b', 't', 'o', 'o.x', 'o.y', 'z', 'k.x'];
const INDEXES: PayloadIndexes = { k: 'keyword', n: 'number', b: 'bool', 'o.x': 'keyword', 'o.y': 'number' };

type Rand = () => number;
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;

function scalar(r: Rand): unknown {
  const x = r();
  return x < 0.35 ? pick(r, STRINGS) : x < 0.7 ? pick(r, NUMBERS) : x < 0.88 ? r() < 0.5 : null;
}

function value(r: Rand, depth: number, bias: () => unknown): unknown {
  const x = r();
  if (x < 0.55) return bias();
  if (x < 0.75) return scalar(r);
  if (x < 0.9) return Array.from({ length: Math.floor(r() * 4) }, () => (r() < 0.7 ? bias() : value(r, depth + 1, bias)));
  if (depth >= 2) return scalar(r);
  return { x: value(r, depth + 1, () => pick(r, STRINGS)), y: value(r, depth + 1, () => pick(r, NUMBERS)) };
}

function payload(r: Rand): Payload | null {
  if (r() < 0.05) return null;
  const p: Payload = {};
  const bias: Record<string, () => unknown> = {
    k: () => pick(r, STRINGS), n: () => pick(r, NUMBERS), b: () => r() < 0.5, t: () => scalar(r),
    o: () => ({ x: r() < 0.8 ? pick(r, STRINGS) : scalar(r), y: r() < 0.8 ? pick(r, NUMBERS) : scalar(r) }),
  };
  for (const [k, b] of Object.entries(bias)) if (r() < 0.8) p[k] = value(r, 0, b);
  return p;
}

function literal(r: Rand): unknown {
  const x = r();
  if (x < 0.8) return scalar(r);
  if (x < 0.9) return Array.from({ length: Math.floor(r() * 3) }, () => scalar(r));
  return { x: pick(r, STRINGS), y: pick(r, NUMBERS) };
}

function opObject(r: Rand, depth: number): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const n = 1 + Math.floor(r() * 2);
  for (let i = 0; i < n; i++) {
    const op = pick(r, ['$eq', '$ne', '$in', '$nin', '$gt', '$gte', '$lt', '$lte', '$exists', '$not']);
    if (op === '$eq' || op === '$ne') out[op] = literal(r);
    else if (op === '$in' || op === '$nin') out[op] = Array.from({ length: Math.floor(r() * 4) }, () => literal(r));
    else if (op === '$exists') out[op] = r() < 0.5;
    else if (op === '$not') out[op] = depth < 2 ? opObject(r, depth + 1) : { $exists: true };
    else out[op] = r() < 0.6 ? pick(r, NUMBERS) : pick(r, STRINGS);
  }
  return out;
}

function randomFilter(r: Rand, depth = 0): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const n = 1 + Math.floor(r() * 2);
  for (let i = 0; i < n; i++) {
    const x = r();
    if (depth < 3 && x < 0.12) out.$and = Array.from({ length: 1 + Math.floor(r() * 3) }, () => randomFilter(r, depth + 1));
    else if (depth < 3 && x < 0.24) out.$or = Array.from({ length: 1 + Math.floor(r() * 3) }, () => randomFilter(r, depth + 1));
    else if (depth < 3 && x < 0.3) out.$not = randomFilter(r, depth + 1);
    else if (x < 0.55) {
      const l = literal(r);
      // A literal object with keys is fine; one that looks like operators cannot be written here.
      out[pick(r, PATHS)] = l;
    } else out[pick(r, PATHS)] = opObject(r, 0);
  }
  return out;
}

/** A FilterSource over JSON strings that counts the parses per row. */
function source(json: (string | null)[], index?: PayloadIndex): FilterSource & { parses: Uint32Array } {
  const parses = new Uint32Array(json.length);
  return {
    count: json.length,
    parses,
    payloadIndex: index,
    payload(row: number) {
      parses[row]!++;
      const j = json[row];
      return j === null || j === undefined ? undefined : (JSON.parse(j) as Payload);
    },
  };
}

function maxOf(a: Uint32Array): number {
  let m = 0;
  for (const x of a) if (x > m) m = x;
  return m;
}

describe('filter grammar against a reference evaluator (property test)', () => {
  const base = Number(process.env.STRATAVEC_FILTER_SEED ?? process.env.STRATAVEC_TEST_SEED ?? 1_000);
  const seeds = [...Array.from({ length: 150 }, (_, i) => i + 1), ...Array.from({ length: 100 }, (_, i) => base + i)];

  test(`index path = scan path = reference; mayMatch never false when a row matches (seeds 1..150, ${base}..${base + 99})`, () => {
    let skipped = 0;
    let matchedSomething = 0;
    let indexedLeaves = 0;
    for (const seed of seeds) {
      const r = mulberry32(seed);
      const rows = 1 + Math.floor(r() * (r() < 0.3 ? 8 : 200));
      const payloads = Array.from({ length: rows }, () => payload(r));
      const json = payloads.map((p) => (p === null ? null : JSON.stringify(p)));
      const parsed = json.map((j) => (j === null ? undefined : JSON.parse(j) as unknown)); // -0 and all, as stored
      const built = buildPayloadIndex(json, INDEXES);
      const index = PayloadIndex.open(built.bytes, rows);
      const summary = JSON.parse(JSON.stringify(built.summary)) as PayloadSummary; // as the manifest keeps it
      assert.ok(isPayloadSummary(summary), `seed ${seed}: summary schema`);
      const tomb = new Uint8Array(rows);
      for (let i = 0; i < rows; i++) tomb[i] = r() < 0.1 ? 1 : 0;
      for (let q = 0; q < 20; q++) {
        const f = randomFilter(r);
        const ctx = `seed ${seed} query ${q} filter ${JSON.stringify(f)}`;
        const compiled = compileFilter(f);
        const hits = parsed.map((p) => refMatch(f, p));
        const want = Uint8Array.from(hits, (h, i) => (tomb[i] === 0 && h ? 1 : 0));
        const scanSrc = source(json);
        const indexSrc = source(json, index);
        const stats: EvalStats = { parsed: 0, indexedLeaves: 0 };
        const scanned = evaluate(compiled, scanSrc, tomb);
        const indexed = evaluate(compiled, indexSrc, tomb, stats);
        assert.deepEqual([...scanned], [...want], `scan path, ${ctx}`);
        assert.deepEqual([...indexed], [...want], `index path, ${ctx}`);
        assert.ok(maxOf(scanSrc.parses) <= 1 && maxOf(indexSrc.parses) <= 1, `a row was parsed twice, ${ctx}`);
        for (let i = 0; i < rows; i++) {
          if (tomb[i] === 1) assert.equal(scanSrc.parses[i], 0, `tombstoned row ${i} was parsed, ${ctx}`);
        }
        indexedLeaves += stats.indexedLeaves;
        const anyRow = hits.some((h) => h);
        const may = mayMatch(compiled, summary);
        if (anyRow) {
          matchedSomething++;
          assert.ok(may, `mayMatch false but a row matches, ${ctx} summary ${JSON.stringify(summary)}`);
        } else if (!may) {
          skipped++;
        }
      }
    }
    // Guards against a generator that stopped exercising the paths it is meant to.
    assert.ok(matchedSomething > 1000, `only ${matchedSomething} queries matched anything (base seed ${base})`);
    assert.ok(skipped > 50, `mayMatch ruled out only ${skipped} segments (base seed ${base})`);
    assert.ok(indexedLeaves > 1000, `only ${indexedLeaves} leaves were answered from an index (base seed ${base})`);
  });

  test('a predicate function is evaluated once per live row', () => {
    const json = ['{"a":1}', null, '{"a":2}', '{"a":3}'];
    const seen: unknown[] = [];
    const src = source(json);
    const out = evaluate(compileFilter((p) => { seen.push(p); return (p?.a as number) >= 2; }), src, Uint8Array.of(0, 0, 0, 1));
    assert.deepEqual([...out], [0, 0, 1, 0]);
    assert.deepEqual(seen, [{ a: 1 }, undefined, { a: 2 }]);
    assert.deepEqual([...src.parses], [1, 1, 1, 0]);
  });
});

describe('evaluation cost', () => {
  const rows = 1000;
  const json = Array.from({ length: rows }, (_, i) => JSON.stringify({ tenant: `t${i % 10}`, price: i % 100, note: `n${i % 7}`, tags: [`g${i % 3}`, `h${i % 5}`] }));
  const index = PayloadIndex.open(buildPayloadIndex(json, { tenant: 'keyword', price: 'number', tags: 'keyword' }).bytes, rows);

  test('filters on indexed fields parse no payload', () => {
    for (const f of [
      { tenant: 't3' }, { price: { $gte: 10, $lt: 20 } }, { tenant: { $in: ['t1', 't2'] }, price: { $ne: 5 } },
      { $or: [{ tenant: 't1' }, { price: { $gt: 90 } }] }, { tags: 'g1' }, { tenant: { $exists: true } }, { $not: { tenant: { $nin: ['t4'] } } },
    ]) {
      const src = source(json, index);
      const stats: EvalStats = { parsed: 0, indexedLeaves: 0 };
      const out = evaluate(compileFilter(f), src, undefined, stats);
      assert.equal(stats.parsed, 0, JSON.stringify(f));
      assert.equal(maxOf(src.parses), 0, JSON.stringify(f));
      assert.deepEqual([...out], json.map((j) => (refMatch(f, JSON.parse(j)) ? 1 : 0)), JSON.stringify(f));
    }
  });

  test('an unindexed clause beside an indexed one parses only the rows the index let through', () => {
    const src = source(json, index);
    const f = { tenant: 't3', note: 'n1' };
    const out = evaluate(compileFilter(f), src);
    assert.equal(src.parses.reduce((a, b) => a + b, 0), 100, 'rows with tenant t3');
    assert.equal(countRows(out), json.filter((j) => refMatch(f, JSON.parse(j))).length);
    assert.deepEqual([...rowsOf(out)], json.flatMap((j, i) => (refMatch(f, JSON.parse(j)) ? [i] : [])));
  });

  test('an operand of another type than the index only parses the rows the index could not classify', () => {
    const mixed = ['{"k":"a"}', '{"k":5}', '{"k":["a",5]}', '{"k":null}', '{}', '{"k":{"x":1}}'];
    const idx = PayloadIndex.open(buildPayloadIndex(mixed, { k: 'keyword' }).bytes, mixed.length);
    const src = source(mixed, idx);
    assert.deepEqual([...evaluate(compileFilter({ k: 5 }), src)], [0, 1, 1, 0, 0, 0]);
    assert.deepEqual([...src.parses], [0, 1, 1, 0, 0, 1], 'only rows 1, 2 and 5 hold values outside the keyword postings');
  });
});

test('flatSearchRows over a bitmap\'s rows = flatSearch accepting the bitmap (seeded)', () => {
  const seed = Number(process.env.STRATAVEC_TEST_SEED ?? 11);
  const r = mulberry32(seed);
  const dim = 8;
  const n = 500;
  const vectors = Float32Array.from({ length: n * dim }, () => Math.floor(r() * 5)); // many ties
  for (const sel of [0, 0.01, 0.2, 1]) {
    const bits = Uint8Array.from({ length: n }, () => (r() < sel ? 1 : 0));
    const q = Float32Array.from({ length: dim }, () => Math.floor(r() * 5));
    for (const metric of ['l2', 'ip'] as const) {
      assert.deepEqual(flatSearchRows(vectors, dim, rowsOf(bits), q, 10, metric), flatSearch(vectors, dim, n, q, 10, metric, (row) => bits[row] === 1), `seed ${seed} sel ${sel} ${metric}`);
    }
  }
});

describe('mayMatch skips only segments that cannot match', () => {
  const seg = (rows: (Payload | null)[]) => buildPayloadIndex(rows.map((p) => (p === null ? null : JSON.stringify(p))), { tenant: 'keyword', price: 'number', ok: 'bool' }).summary;
  const s = seg([{ tenant: 'acme', price: 5, ok: true }, { tenant: 'acme', price: 9, ok: true }]);
  const cases: [string, Record<string, unknown>, boolean][] = [
    ['other tenant', { tenant: 'globex' }, false],
    ['same tenant', { tenant: 'acme' }, true],
    ['$ne of the only tenant', { tenant: { $ne: 'acme' } }, false],
    ['$nin of the only tenant', { tenant: { $nin: ['acme', 'x'] } }, false],
    ['price above max', { price: { $gt: 9 } }, false],
    ['price at max', { price: { $gte: 9 } }, true],
    ['price below min', { price: { $lt: 5 } }, false],
    ['price as string', { price: '5' }, false],
    ['null tenant', { tenant: null }, false],
    ['bool false', { ok: false }, false],
    ['$exists false on a field every row has', { tenant: { $exists: false } }, false],
    ['unindexed field', { other: 1 }, true],
    ['$or with one possible branch', { $or: [{ tenant: 'x' }, { price: 9 }] }, true],
    ['$and with one impossible branch', { $and: [{ tenant: 'acme' }, { price: 100 }] }, false],
    ['$not of a filter every row passes', { $not: { price: { $gte: 0 } } }, false],
  ];
  for (const [name, f, want] of cases) {
    test(name, () => assert.equal(mayMatch(compileFilter(f), s), want, JSON.stringify(f)));
  }

  test('a segment with nulls, gaps or arrays is never ruled out by $ne', () => {
    for (const extra of [{ tenant: null }, {}, { tenant: ['acme', 'x'] }, null]) {
      const t = seg([{ tenant: 'acme' }, extra as Payload | null]);
      assert.equal(mayMatch(compileFilter({ tenant: { $ne: 'acme' } }), t), true, JSON.stringify(extra));
    }
  });

  test('keyword value sets past the cap are not listed, and then nothing is ruled out by value', () => {
    const t = seg(Array.from({ length: 100 }, (_, i) => ({ tenant: `t${i}` })));
    assert.equal(t.fields.tenant!.values, undefined);
    assert.equal(mayMatch(compileFilter({ tenant: 'zzz' }), t), true);
  });
});

describe('invalid filters are ERR_INVALID_FILTER before any work', () => {
  const fn = () => true;
  const cases: [string, unknown][] = [
    ['unknown field operator', { a: { $regex: 'x' } }],
    ['unknown filter-level operator', { $nor: [{ a: 1 }] }],
    ['range operator at filter level', { $gt: 5 }],
    ['$in not an array', { a: { $in: 'x' } }],
    ['$nin not an array', { a: { $nin: 3 } }],
    ['$gt null', { a: { $gt: null } }],
    ['$lt boolean', { a: { $lt: true } }],
    ['$gte array', { a: { $gte: [1] } }],
    ['$lte NaN', { a: { $lte: NaN } }],
    ['$gt Infinity', { a: { $gt: Infinity } }],
    ['$exists not a boolean', { a: { $exists: 1 } }],
    ['$and empty', { $and: [] }],
    ['$or not an array', { $or: { a: 1 } }],
    ['$and element not an object', { $and: [1] }],
    ['$not of an array', { $not: [{ a: 1 }] }],
    ['field $not of a literal', { a: { $not: 5 } }],
    ['field $not of an empty object', { a: { $not: {} } }],
    ['operators mixed with literal keys', { a: { $gt: 1, b: 2 } }],
    ['empty path', { '': 1 }],
    ['empty path step', { 'a..b': 1 }],
    ['path step starting with $', { 'a.$b': 1 }],
    ['literal undefined', { a: undefined }],
    ['literal function', { a: fn }],
    ['literal Date', { a: new Date(0) }],
    ['literal bigint', { a: 1n }],
    ['literal NaN', { a: NaN }],
    ['$eq of a symbol', { a: { $eq: Symbol('x') } }],
    ['$in element undefined', { a: { $in: [1, undefined] } }],
    ['nested too deep', JSON.parse('{"$not":'.repeat(40) + '{"a":1}' + '}'.repeat(40))],
  ];
  for (const [name, f] of cases) {
    test(name, () => assert.throws(() => compileFilter(f as Record<string, unknown>), hasCode('ERR_INVALID_FILTER')));
  }

  test('a filter that is not an object or function is a TypeError', () => {
    for (const f of ['lang=en', 5, null, [{ a: 1 }]]) assert.throws(() => compileFilter(f as never), isTypeError);
  });

  test('{} and undefined are no filter; literal objects and nested paths compile', () => {
    assert.equal(compileFilter({}), undefined);
    assert.equal(compileFilter(undefined), undefined);
    assert.deepEqual(compileFilter({ 'a.b': { c: 1 } })?.paths, ['a.b']);
  });

  test('search rejects an invalid filter before any work', async () => {
    await withTmpDir('filter', async (dir) => {
      const db = track(await Database.open(dir, { workers: 0, tiering: { intervalMs: 0 } }));
      const col = await db.createCollection('c', { dimension: 2 });
      await col.upsert([{ id: 'a', vector: [1, 0], payload: { n: 1 } }]);
      await assert.rejects(col.search([1, 0], { filter: { n: { $between: [0, 2] } } }), hasCode('ERR_INVALID_FILTER'));
      assert.deepEqual((await col.search([1, 0], { filter: { n: { $gte: 1, $lt: 2 } } })).map((h) => h.id), ['a']);
      await db.close();
    });
  });
});

describe('hostile payload index bytes', () => {
  const json = Array.from({ length: 60 }, (_, i) => JSON.stringify({ k: `v${i % 7}`, n: i % 11, b: i % 2 === 0, m: i % 5 === 0 ? [i, 'x', null] : null }));
  const good = buildPayloadIndex(json, { k: 'keyword', n: 'number', b: 'bool', m: 'number' }).bytes;

  const survives = (bytes: Uint8Array, what: string) => {
    let idx: PayloadIndex;
    try {
      idx = PayloadIndex.open(bytes, 60);
    } catch (err) {
      assert.ok(err instanceof StratavecError && err.code === 'ERR_SEGMENT_CORRUPT', `${what}: ${String(err)}`);
      return;
    }
    // Opened: then every lookup stays in bounds and codes nothing but answers.
    for (const f of [{ k: 'v1' }, { n: { $gt: 3 } }, { b: true }, { m: { $exists: true } }, { k: { $gte: 'v3' } }]) {
      evaluate(compileFilter(f), source(json, idx));
    }
  };

  test('the intact section opens', () => {
    assert.equal(PayloadIndex.open(good, 60).fields.size, 4);
    assert.throws(() => PayloadIndex.open(good, 61), hasCode('ERR_SEGMENT_CORRUPT'));
  });

  test('every truncation is ERR_SEGMENT_CORRUPT', () => {
    for (let n = 0; n < good.length; n++) {
      assert.throws(() => PayloadIndex.open(good.subarray(0, n), 60), hasCode('ERR_SEGMENT_CORRUPT'), `truncated to ${n}`);
    }
  });

  test('trailing bytes are ERR_SEGMENT_CORRUPT', () => {
    assert.throws(() => PayloadIndex.open(Buffer.concat([good, Buffer.alloc(4)]), 60), hasCode('ERR_SEGMENT_CORRUPT'));
  });

  test('every u32 set to huge values is corrupt or harmless, never a crash or a huge allocation', () => {
    for (let at = 0; at + 4 <= good.length; at += 4) {
      for (const v of [0xffff_ffff, 0x7fff_ffff, 0x1000_0000, 61]) {
        const b = Buffer.from(good);
        b.writeUInt32LE(v, at);
        survives(b, `u32 at ${at} = ${v}`);
      }
    }
  });

  test('random byte flips (seeded)', () => {
    const seed = Number(process.env.STRATAVEC_TEST_SEED ?? 13);
    const r = mulberry32(seed);
    for (let i = 0; i < 3000; i++) {
      const b = Buffer.from(good);
      const at = Math.floor(r() * b.length);
      b[at] = b[at]! ^ (1 + Math.floor(r() * 255));
      survives(b, `seed ${seed} flip ${i} at ${at}`);
    }
  });

  test('unaligned memory is read by copy, with the same answers', () => {
    const shifted = Buffer.alloc(good.length + 1);
    good.copy(shifted, 1);
    const idx = PayloadIndex.open(shifted.subarray(1), 60);
    const f = compileFilter({ n: { $lte: 4 }, k: { $in: ['v1', 'v2'] } });
    assert.deepEqual([...evaluate(f, source(json, idx))], [...evaluate(f, source(json))]);
  });
});

// ---------------------------------------------------------------------------------------------
// The index section in real segment files

function sealTask(dir: string, payloads: (string | null)[], indexes: PayloadIndexes | undefined, name: string): SealTask {
  const count = payloads.length;
  const dim = 4;
  const shared = new SharedArrayBuffer(count * dim * 4);
  const v = new Float32Array(shared);
  const r = mulberry32(9);
  for (let i = 0; i < v.length; i++) v[i] = r();
  return {
    segmentId: name, collection: 'c', outPath: path.join(dir, `${name}.seg`), tmpDir: dir,
    dimension: dim, metric: 'l2', hnsw: { M: 8, efConstruction: 50, efSearch: 32 },
    vectors: shared, count, rows: null, ids: Array.from({ length: count }, (_, i) => `${name}-${i}`), payloads,
    createdAt: 1_700_000_000_000, seed: 1, ...(indexes ? { indexes } : {}),
  };
}

describe('payload index section in segment files', () => {
  const payloads = Array.from({ length: 300 }, (_, i) => (i % 13 === 0 ? null : JSON.stringify({ lang: ['en', 'de', 'fr'][i % 3], price: i % 50, meta: { ok: i % 4 === 0 } })));
  const indexes: PayloadIndexes = { lang: 'keyword', price: 'number', 'meta.ok': 'bool' };

  test('seal and compaction in a worker write it, CRC-checked; a flipped byte in it is ERR_SEGMENT_CORRUPT', async () => {
    await withTmpDir('filter', async (dir) => {
      const pool = new WorkerPool(1);
      try {
        const a = sealTask(dir, payloads, indexes, 'a');
        const sealed = await pool.run('seal', a);
        assert.ok(sealed.summary && isPayloadSummary(sealed.summary), 'seal returns the summary');
        assert.deepEqual(sealed.summary.fields.lang!.values, ['de', 'en', 'fr']);
        assert.deepEqual([sealed.summary.fields.price!.min, sealed.summary.fields.price!.max], [0, 49]);
        const entry = sealed.sections.find((s) => s.kind === SectionKind.payloadIndex);
        assert.ok(entry, 'the segment has a payload index section');

        const view = new SegmentView('a', await fsp.readFile(a.outPath));
        const f = compileFilter({ lang: 'de', price: { $lt: 10 } });
        const stats: EvalStats = { parsed: 0, indexedLeaves: 0 };
        const bits = evaluate(f, view, undefined, stats);
        assert.equal(stats.parsed, 0);
        assert.deepEqual([...bits], [...evaluate(f, source(payloads))]);
        assert.ok(countRows(bits) > 0);

        // Without indexes declared: no section, and the same answers by scan.
        const plain = sealTask(dir, payloads, undefined, 'p');
        const plainRes = await pool.run('seal', plain);
        assert.equal(plainRes.summary, undefined);
        const plainView = new SegmentView('p', await fsp.readFile(plain.outPath));
        assert.equal(plainView.payloadIndex, undefined);
        assert.deepEqual([...evaluate(f, plainView)], [...bits]);

        // Compaction of both (some rows dropped) rebuilds the index over the kept rows.
        const keep = (n: number) => Uint32Array.from({ length: n }, (_, i) => i).filter((i) => i % 5 !== 0);
        const readerOf = async (p: string) => SegmentReader.open(await fsp.readFile(p));
        const out = path.join(dir, 'm.seg');
        const compacted = await pool.run('compact', {
          ...sealTask(dir, [], indexes, 'm'), outPath: out,
          sources: await Promise.all([a.outPath, plain.outPath].map(async (p) => ({
            path: p, rows: keep(300), expectRawCrcs: (await readerOf(p)).sections.map((s) => s.rawCrc),
          }))),
        } as never);
        const merged = new SegmentView('m', await fsp.readFile(out));
        assert.ok(merged.payloadIndex, 'compaction wrote the index');
        assert.equal((compacted as { summary?: PayloadSummary }).summary?.rows, merged.count);
        const keptJson = [...keep(300)].map((i) => payloads[i]!);
        assert.deepEqual([...evaluate(f, merged)], [...evaluate(f, source([...keptJson, ...keptJson]))]);

        // Every byte of the section is under the CRC the reader checks.
        const at = entry.offset + Math.floor(entry.storedLength / 2);
        await flipByte(a.outPath, at);
        await assert.rejects(async () => new SegmentView('a', await fsp.readFile(a.outPath)), hasCode('ERR_SEGMENT_CORRUPT'));
        await assert.rejects(pool.run('verifySegment', { path: a.outPath }), hasCode('ERR_SEGMENT_CORRUPT'));
      } finally {
        await pool.destroy();
      }
    });
  });
});

describe('createCollection { indexes }', () => {
  test('validated: unknown type or bad path is ERR_INVALID_ARGUMENT, a non-object a TypeError', async () => {
    await withTmpDir('filter', async (dir) => {
      const db = track(await Database.open(dir, { workers: 0, tiering: { intervalMs: 0 } }));
      await assert.rejects(db.createCollection('a', { dimension: 2, indexes: { lang: 'text' as never } }), hasCode('ERR_INVALID_ARGUMENT'));
      await assert.rejects(db.createCollection('a', { dimension: 2, indexes: { 'a..b': 'keyword' } }), hasCode('ERR_INVALID_ARGUMENT'));
      await assert.rejects(db.createCollection('a', { dimension: 2, indexes: { $x: 'number' } }), hasCode('ERR_INVALID_ARGUMENT'));
      await assert.rejects(db.createCollection('a', { dimension: 2, indexes: 'lang' as never }), isTypeError);
      assert.deepEqual(db.listCollections(), []);
      await db.close();
    });
  });

  test('kept in the manifest across reopen; collections without it read as before', async () => {
    await withTmpDir('filter', async (dir) => {
      let db = track(await Database.open(dir, { workers: 0, tiering: { intervalMs: 0 } }));
      await db.createCollection('idx', { dimension: 2, indexes: { lang: 'keyword', 'a.price': 'number' } });
      await db.createCollection('plain', { dimension: 2 });
      await db.close();
      db = track(await Database.open(dir, { workers: 0, tiering: { intervalMs: 0 } }));
      const manifest = async (name: string) => {
        const files = await collectionFiles(dir, name, 'manifest');
        const text = (await fsp.readFile(files.at(-1)!)).toString('utf8');
        return JSON.parse(text.slice(text.indexOf('\n') + 1)) as { indexes?: unknown };
      };
      assert.deepEqual((await manifest('idx')).indexes, { lang: 'keyword', 'a.price': 'number' });
      assert.equal((await manifest('plain')).indexes, undefined);
      const col = db.collection('idx');
      await col.upsert([{ id: 'a', vector: [1, 0], payload: { lang: ['en', 'de'], a: { price: 3 } } }, { id: 'b', vector: [0, 1], payload: { lang: 'fr' } }]);
      await col.flush();
      assert.deepEqual((await col.search([1, 0], { filter: { lang: 'de', 'a.price': { $lte: 3 } } })).map((h) => h.id), ['a']);
      assert.deepEqual((await col.search([1, 0], { filter: { 'a.price': { $exists: false } } })).map((h) => h.id), ['b']);
      await db.close();
    });
  });

  test('a segment sealed through the public API carries the CRC-checked index section',
    async () => {
      await withTmpDir('filter', async (dir) => {
        const db = track(await Database.open(dir, { workers: 1, tiering: { intervalMs: 0 } }));
        const col = await db.createCollection('c', { dimension: 2, indexes: { lang: 'keyword' } });
        await col.upsert([{ id: 'a', vector: [1, 0], payload: { lang: 'en' } }]);
        await col.flush();
        const [file] = (await collectionFiles(dir, 'c', 'segments')).filter((f) => f.endsWith('.seg'));
        const view = new SegmentView('c', await fsp.readFile(file!));
        assert.ok(view.reader.entry(SectionKind.payloadIndex), 'payload index section present');
        assert.ok(view.payloadIndex?.field('lang'));
        await db.close();
      });
    });
});
