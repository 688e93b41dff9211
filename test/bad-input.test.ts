// Every caller mistake gets its exact code (or a TypeError for a wrong type), and no rejected call
// changes what is stored: after each one the count and known records are checked, and once more
// after a reopen. Covers both locks (same process and a second process).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Database, type DatabaseOptions, StratavecError, type Collection } from '../engine/index.js';
import { repoRoot } from '../harness/datasets.js';
import { track, hasCode, isTypeError, withTmpDir } from './helpers/tmp.js';

const openDb = (dir: string, options?: DatabaseOptions): Promise<Database> => Database.open(dir, options).then(track);

const DIM = 4;
const KNOWN = [
  { id: 'a', vector: [1, 0, 0, 0], payload: { n: 1 } },
  { id: 'b', vector: [0, 1, 0, 0] },
  { id: 'sealed', vector: [0, 0, 1, 0], payload: { s: 'x' } },
] as const;

/** A database with one l2 and one cosine collection; 'sealed' lives in a sealed segment. */
async function setup(dir: string): Promise<{ db: Database; col: Collection; cos: Collection }> {
  const db = await openDb(dir, { workers: 1 });
  const col = await db.createCollection('c', { dimension: DIM });
  const cos = await db.createCollection('cos', { dimension: DIM, metric: 'cosine' });
  await col.upsert([{ id: 'sealed', vector: [0, 0, 1, 0], payload: { s: 'x' } }]);
  await col.flush();
  await col.upsert([{ id: 'a', vector: [1, 0, 0, 0], payload: { n: 1 } }, { id: 'b', vector: [0, 1, 0, 0] }]);
  await cos.upsert([{ id: 'u', vector: [3, 4, 0, 0] }]);
  return { db, col, cos };
}

/** The stored data is exactly what setup() wrote. */
async function assertUnchanged(col: Collection, cos: Collection, label: string): Promise<void> {
  assert.equal(col.count(), 3, `${label}: count`);
  const got = await col.get(KNOWN.map((k) => k.id));
  for (let i = 0; i < KNOWN.length; i++) {
    const want = KNOWN[i]!;
    assert.ok(got[i], `${label}: ${want.id} missing`);
    assert.deepEqual(Array.from(got[i]!.vector), want.vector, `${label}: vector of ${want.id}`);
    assert.deepEqual(got[i]!.payload, 'payload' in want ? want.payload : undefined, `${label}: payload of ${want.id}`);
  }
  const hits = await col.search([0, 0, 1, 0], { k: 10 });
  assert.deepEqual(hits.map((h) => h.id).sort(), ['a', 'b', 'sealed'], `${label}: search sees exactly the known records`);
  assert.equal(hits[0]!.id, 'sealed');
  assert.equal(cos.count(), 1, `${label}: cosine count`);
  const [u] = await cos.get(['u']);
  assert.deepEqual(Array.from(u!.vector).map((x) => Math.round(x * 1e6) / 1e6), [0.6, 0.8, 0, 0]);
}

/**
 * Runs a suite of rejected calls, checking the data after each one, then reopens and checks again.
 * Each case is [label, call, matcher]; `call` may throw synchronously or reject.
 */
async function rejectAll(
  dir: string,
  cases: (ctx: { db: Database; col: Collection; cos: Collection }) => [string, () => unknown, (e: unknown) => true][],
): Promise<void> {
  const ctx = await setup(dir);
  try {
    for (const [label, call, match] of cases(ctx)) {
      let thrown: unknown;
      let threw = false;
      try {
        await call();
      } catch (err) {
        thrown = err;
        threw = true;
      }
      assert.ok(threw, `${label}: the call was accepted`);
      try {
        match(thrown);
      } catch (err) {
        (err as Error).message = `${label}: ${(err as Error).message}`;
        throw err;
      }
      await assertUnchanged(ctx.col, ctx.cos, `after ${label}`);
    }
  } finally {
    await ctx.db.close();
  }
  const db = await openDb(dir, { workers: 1 });
  try {
    await assertUnchanged(db.collection('c'), db.collection('cos'), 'reopened');
  } finally {
    await db.close();
  }
}

test('ERR_DIMENSION_MISMATCH on upsert and search', async () => {
  await withTmpDir('bad-dim', (dir) => rejectAll(dir, ({ col, cos }) => [
    ['upsert short', () => col.upsert([{ id: 'x', vector: [1, 2, 3] }]), hasCode('ERR_DIMENSION_MISMATCH')],
    ['upsert long', () => col.upsert([{ id: 'x', vector: new Float32Array(5) }]), hasCode('ERR_DIMENSION_MISMATCH')],
    ['upsert empty', () => col.upsert([{ id: 'x', vector: [] }]), hasCode('ERR_DIMENSION_MISMATCH')],
    ['upsert second of batch', () => col.upsert([{ id: 'x', vector: [1, 2, 3, 4] }, { id: 'a', vector: [1, 2] }]), hasCode('ERR_DIMENSION_MISMATCH')],
    ['search short', () => col.search([1, 2, 3], { k: 1 }), hasCode('ERR_DIMENSION_MISMATCH')],
    ['search long', () => col.search(new Float32Array(128), { k: 1 }), hasCode('ERR_DIMENSION_MISMATCH')],
    ['cosine search long', () => cos.search([1, 2, 3, 4, 5], { k: 1 }), hasCode('ERR_DIMENSION_MISMATCH')],
  ]));
});

test('ERR_INVALID_VECTOR: NaN, Infinity, float32 overflow, zero vector in cosine', async () => {
  await withTmpDir('bad-vec', (dir) => rejectAll(dir, ({ col, cos }) => [
    ['NaN', () => col.upsert([{ id: 'x', vector: [1, NaN, 0, 0] }]), hasCode('ERR_INVALID_VECTOR')],
    ['Infinity', () => col.upsert([{ id: 'x', vector: [Infinity, 0, 0, 0] }]), hasCode('ERR_INVALID_VECTOR')],
    ['-Infinity', () => col.upsert([{ id: 'x', vector: Float32Array.of(0, 0, 0, -Infinity) }]), hasCode('ERR_INVALID_VECTOR')],
    ['1e39 overflows float32', () => col.upsert([{ id: 'x', vector: [1e39, 0, 0, 0] }]), hasCode('ERR_INVALID_VECTOR')],
    ['-1e39 in a Float64Array', () => col.upsert([{ id: 'x', vector: Float64Array.of(0, -1e39, 0, 0) }]), hasCode('ERR_INVALID_VECTOR')],
    ['NaN in the last record of a batch', () => col.upsert([{ id: 'x', vector: [1, 1, 1, 1] }, { id: 'a', vector: [0, 0, 0, NaN] }]), hasCode('ERR_INVALID_VECTOR')],
    ['replacing a known id with NaN', () => col.upsert([{ id: 'a', vector: [NaN, 0, 0, 0] }]), hasCode('ERR_INVALID_VECTOR')],
    ['NaN query', () => col.search([NaN, 0, 0, 0], { k: 1 }), hasCode('ERR_INVALID_VECTOR')],
    ['1e39 query', () => col.search([0, 1e39, 0, 0], { k: 1 }), hasCode('ERR_INVALID_VECTOR')],
    ['zero vector, cosine', () => cos.upsert([{ id: 'z', vector: [0, 0, 0, 0] }]), hasCode('ERR_INVALID_VECTOR')],
    ['-0 vector, cosine', () => cos.upsert([{ id: 'z', vector: [-0, 0, -0, 0] }]), hasCode('ERR_INVALID_VECTOR')],
    ['zero query, cosine', () => cos.search([0, 0, 0, 0], { k: 1 }), hasCode('ERR_INVALID_VECTOR')],
  ]));
});

test('ERR_INVALID_ID: empty and over 512 bytes of UTF-8 (multibyte counted in bytes); 512 bytes is accepted', async () => {
  const id512 = 'é'.repeat(256); // 256 chars, 512 bytes
  const id513 = `${'é'.repeat(256)}a`;
  const euro513 = `${'€'.repeat(171)}`; // 171 chars, 513 bytes
  const emoji512 = '😀'.repeat(128); // 256 UTF-16 units, 512 bytes
  assert.equal(Buffer.byteLength(id512), 512);
  assert.equal(Buffer.byteLength(id513), 513);
  assert.equal(Buffer.byteLength(euro513), 513);
  assert.equal(Buffer.byteLength(emoji512), 512);
  await withTmpDir('bad-id', async (dir) => {
    await rejectAll(dir, ({ col }) => [
      ['empty id upsert', () => col.upsert([{ id: '', vector: [1, 1, 1, 1] }]), hasCode('ERR_INVALID_ID')],
      ['513-byte id upsert', () => col.upsert([{ id: id513, vector: [1, 1, 1, 1] }]), hasCode('ERR_INVALID_ID')],
      ['513-byte 3-byte-char id', () => col.upsert([{ id: euro513, vector: [1, 1, 1, 1] }]), hasCode('ERR_INVALID_ID')],
      ['600 ascii bytes', () => col.upsert([{ id: 'x'.repeat(600), vector: [1, 1, 1, 1] }]), hasCode('ERR_INVALID_ID')],
      ['bad id after a good one', () => col.upsert([{ id: 'fine', vector: [1, 1, 1, 1] }, { id: '', vector: [1, 1, 1, 1] }]), hasCode('ERR_INVALID_ID')],
      ['empty id delete', () => col.delete(['a', '']), hasCode('ERR_INVALID_ID')],
      ['513-byte id delete', () => col.delete(['a', id513]), hasCode('ERR_INVALID_ID')],
      ['empty id get', () => col.get(['']), hasCode('ERR_INVALID_ID')],
      ['513-byte id get', () => col.get([id513]), hasCode('ERR_INVALID_ID')],
    ]);
    // The limit itself is accepted, stored and found again after reopen.
    let db = await openDb(dir, { workers: 1 });
    let col = db.collection('c');
    await col.upsert([{ id: id512, vector: [1, 2, 3, 4], payload: { k: 512 } }, { id: emoji512, vector: [4, 3, 2, 1] }]);
    await col.flush();
    await col.upsert([{ id: 'x'.repeat(512), vector: [2, 2, 2, 2] }]);
    assert.equal(col.count(), 6);
    await db.close();
    db = await openDb(dir, { workers: 1 });
    col = db.collection('c');
    const got = await col.get([id512, emoji512, 'x'.repeat(512)]);
    assert.deepEqual(got.map((r) => r?.id), [id512, emoji512, 'x'.repeat(512)]);
    assert.deepEqual(got[0]!.payload, { k: 512 });
    const hits = await col.search([1, 2, 3, 4], { k: 1 });
    assert.equal(hits[0]!.id, id512);
    await db.close();
  });
});

test('an id that is not valid Unicode (lone surrogate) is rejected or survives a reopen unchanged', async () => {
  // A lone surrogate has no UTF-8 form: written as UTF-8 it becomes U+FFFD, so if accepted, the id
  // stored on disk is not the id the caller used and the record is lost to get() after a reopen.
  await withTmpDir('bad-id-surrogate', async (dir) => {
    let db = await openDb(dir, { workers: 1 });
    let col = await db.createCollection('c', { dimension: DIM });
    const id = 'x\uD800y';
    let accepted = true;
    try {
      await col.upsert([{ id, vector: [1, 2, 3, 4] }]);
    } catch (err) {
      accepted = false;
      hasCode('ERR_INVALID_ID')(err);
      assert.equal(col.count(), 0);
    }
    await db.close();
    if (!accepted) return;
    db = await openDb(dir, { workers: 1 });
    try {
      col = db.collection('c');
      const [rec] = await col.get([id]);
      assert.ok(rec, `id ${JSON.stringify(id)} was acknowledged but get() cannot find it after reopen`);
      assert.equal(rec.id, id);
    } finally {
      await db.close();
    }
  });
});

test('ERR_DUPLICATE_ID: the same id twice in one batch rejects the whole batch', async () => {
  await withTmpDir('bad-dup', (dir) => rejectAll(dir, ({ col }) => [
    ['new id twice', () => col.upsert([{ id: 'n1', vector: [1, 1, 1, 1] }, { id: 'n2', vector: [2, 2, 2, 2] }, { id: 'n1', vector: [3, 3, 3, 3] }]), hasCode('ERR_DUPLICATE_ID')],
    ['known id twice', () => col.upsert([{ id: 'a', vector: [9, 9, 9, 9] }, { id: 'a', vector: [8, 8, 8, 8] }]), hasCode('ERR_DUPLICATE_ID')],
    ['sealed id twice', () => col.upsert([{ id: 'sealed', vector: [9, 9, 9, 9] }, { id: 'x', vector: [1, 1, 1, 1] }, { id: 'sealed', vector: [8, 8, 8, 8] }]), hasCode('ERR_DUPLICATE_ID')],
    ['multibyte id twice', () => col.upsert([{ id: 'ü✓', vector: [1, 1, 1, 1] }, { id: 'ü✓', vector: [1, 1, 1, 1] }]), hasCode('ERR_DUPLICATE_ID')],
  ]));
});

test('ERR_INVALID_NAME for bad collection names, on create, collection() and drop', async () => {
  const names = ['..', '.', 'a/b', 'a\0b', 'Upper', 'a'.repeat(65), '', '-x', '_x', 'a b', 'a.b', '../x', 'ä'];
  await withTmpDir('bad-name', (dir) => rejectAll(dir, ({ db }) => names.flatMap((n): [string, () => unknown, (e: unknown) => true][] => [
    [`create ${JSON.stringify(n)}`, () => db.createCollection(n, { dimension: 4 }), hasCode('ERR_INVALID_NAME')],
    [`collection ${JSON.stringify(n)}`, () => db.collection(n), hasCode('ERR_INVALID_NAME')],
    [`drop ${JSON.stringify(n)}`, () => db.dropCollection(n), hasCode('ERR_INVALID_NAME')],
  ])));
  // The boundaries that must work: 64 chars, leading digit, inner - and _.
  await withTmpDir('good-name', async (dir) => {
    const db = await openDb(dir, { workers: 0 });
    for (const n of ['a'.repeat(64), '0', '9-a_b', 'x-']) await db.createCollection(n, { dimension: 2 });
    assert.deepEqual(db.listCollections(), ['0', '9-a_b', 'a'.repeat(64), 'x-'].sort());
    await db.close();
  });
});

test('ERR_COLLECTION_NOT_FOUND', async () => {
  await withTmpDir('bad-nf', (dir) => rejectAll(dir, ({ db }) => [
    ['collection()', () => db.collection('missing'), hasCode('ERR_COLLECTION_NOT_FOUND')],
    ['dropCollection()', () => db.dropCollection('missing'), hasCode('ERR_COLLECTION_NOT_FOUND')],
  ]));
});

test('ERR_INVALID_ARGUMENT: k, ef, dimension, metric, hnsw and database options out of range', async () => {
  await withTmpDir('bad-arg', (dir) => rejectAll(dir, ({ db, col }) => [
    ['k = 0', () => col.search([1, 0, 0, 0], { k: 0 }), hasCode('ERR_INVALID_ARGUMENT')],
    ['k = -1', () => col.search([1, 0, 0, 0], { k: -1 }), hasCode('ERR_INVALID_ARGUMENT')],
    ['k = 1.5', () => col.search([1, 0, 0, 0], { k: 1.5 }), hasCode('ERR_INVALID_ARGUMENT')],
    ['k = NaN', () => col.search([1, 0, 0, 0], { k: NaN }), hasCode('ERR_INVALID_ARGUMENT')],
    ['k = 10001', () => col.search([1, 0, 0, 0], { k: 10_001 }), hasCode('ERR_INVALID_ARGUMENT')],
    ['ef = -1', () => col.search([1, 0, 0, 0], { k: 1, ef: -1 }), hasCode('ERR_INVALID_ARGUMENT')],
    ['ef = 0', () => col.search([1, 0, 0, 0], { k: 1, ef: 0 }), hasCode('ERR_INVALID_ARGUMENT')],
    ['ef = Infinity', () => col.search([1, 0, 0, 0], { k: 1, ef: Infinity }), hasCode('ERR_INVALID_ARGUMENT')],
    ['dimension 0', () => db.createCollection('d0', { dimension: 0 }), hasCode('ERR_INVALID_ARGUMENT')],
    ['dimension -3', () => db.createCollection('d0', { dimension: -3 }), hasCode('ERR_INVALID_ARGUMENT')],
    ['dimension 2.5', () => db.createCollection('d0', { dimension: 2.5 }), hasCode('ERR_INVALID_ARGUMENT')],
    ['dimension 65537', () => db.createCollection('d0', { dimension: 65_537 }), hasCode('ERR_INVALID_ARGUMENT')],
    ['metric euclid', () => db.createCollection('d0', { dimension: 4, metric: 'euclid' as never }), hasCode('ERR_INVALID_ARGUMENT')],
    ['metric L2', () => db.createCollection('d0', { dimension: 4, metric: 'L2' as never }), hasCode('ERR_INVALID_ARGUMENT')],
    ['hnsw.M = 1', () => db.createCollection('d0', { dimension: 4, hnsw: { M: 1 } }), hasCode('ERR_INVALID_ARGUMENT')],
    ['hnsw.efSearch = 0', () => db.createCollection('d0', { dimension: 4, hnsw: { efSearch: 0 } }), hasCode('ERR_INVALID_ARGUMENT')],
    ['hnsw.efConstruction = 1.5', () => db.createCollection('d0', { dimension: 4, hnsw: { efConstruction: 1.5 } }), hasCode('ERR_INVALID_ARGUMENT')],
    ['segmentMaxRecords 0', () => Database.open(path.join(dir, 'o1'), { segmentMaxRecords: 0 }), hasCode('ERR_INVALID_ARGUMENT')],
    ['workers -1', () => Database.open(path.join(dir, 'o2'), { workers: -1 }), hasCode('ERR_INVALID_ARGUMENT')],
    ['workers 1.5', () => Database.open(path.join(dir, 'o3'), { workers: 1.5 }), hasCode('ERR_INVALID_ARGUMENT')],
    ['workerNice 20', () => Database.open(path.join(dir, 'o8'), { workerNice: 20 }), hasCode('ERR_INVALID_ARGUMENT')],
    ['workerNice -1', () => Database.open(path.join(dir, 'o9'), { workerNice: -1 }), hasCode('ERR_INVALID_ARGUMENT')],
    // hotBytes 0 is valid (no hot tier: every segment answers in place); a negative budget is not.
    ['hotBytes -1', () => Database.open(path.join(dir, 'o4'), { hotBytes: -1 }), hasCode('ERR_INVALID_ARGUMENT')],
    ['warmBytes -5', () => Database.open(path.join(dir, 'o5'), { warmBytes: -5 }), hasCode('ERR_INVALID_ARGUMENT')],
    ['objectStore http://', () => Database.open(path.join(dir, 'o6'), { objectStore: 'http://example.com/x' }), hasCode('ERR_INVALID_ARGUMENT')],
    ['objectStore.url file://', () => Database.open(path.join(dir, 'o7'), { objectStore: { url: 'file:///tmp/x' } }), hasCode('ERR_INVALID_ARGUMENT')],
  ]));
});

test('ERR_INVALID_PAYLOAD: cyclic, not serialisable, over 1 MiB (counted in UTF-8 bytes)', async () => {
  const cyclic: Record<string, unknown> = { a: 1 };
  cyclic['self'] = cyclic;
  await withTmpDir('bad-payload', async (dir) => {
    await rejectAll(dir, ({ col }) => [
      ['cyclic', () => col.upsert([{ id: 'p', vector: [1, 1, 1, 1], payload: cyclic }]), hasCode('ERR_INVALID_PAYLOAD')],
      ['bigint', () => col.upsert([{ id: 'p', vector: [1, 1, 1, 1], payload: { n: 10n } }]), hasCode('ERR_INVALID_PAYLOAD')],
      ['> 1 MiB ascii', () => col.upsert([{ id: 'p', vector: [1, 1, 1, 1], payload: { s: 'x'.repeat(1024 * 1024) } }]), hasCode('ERR_INVALID_PAYLOAD')],
      ['> 1 MiB of 2-byte chars (600k chars)', () => col.upsert([{ id: 'p', vector: [1, 1, 1, 1], payload: { s: 'é'.repeat(600_000) } }]), hasCode('ERR_INVALID_PAYLOAD')],
      ['oversized payload replacing a known id', () => col.upsert([{ id: 'a', vector: [1, 1, 1, 1], payload: { s: 'x'.repeat(1024 * 1024 + 1) } }]), hasCode('ERR_INVALID_PAYLOAD')],
    ]);
    // Just under the cap is fine, and comes back whole after reopen.
    let db = await openDb(dir, { workers: 1 });
    let col = db.collection('c');
    const big = { s: 'y'.repeat(1024 * 1024 - 16) };
    assert.ok(Buffer.byteLength(JSON.stringify(big)) <= 1024 * 1024);
    await col.upsert([{ id: 'big', vector: [1, 1, 1, 1], payload: big }]);
    await db.close();
    db = await openDb(dir, { workers: 1 });
    col = db.collection('c');
    const [rec] = await col.get(['big']);
    assert.equal((rec!.payload as { s: string }).s.length, big.s.length);
    await db.close();
  });
});

// A Date passes `typeof === 'object'` but JSON.stringify turns it into a string; a toJSON may
// return undefined (JSON.stringify then returns undefined) or a number. None of these can be stored
// as the JSON object a payload is documented to be.
const notAnObject: [string, () => unknown][] = [
  ['Date', () => new Date(0)],
  ['toJSON returning undefined', () => ({ toJSON: () => undefined })],
  ['toJSON returning a number', () => ({ toJSON: () => 5 })],
];
for (const [label, make] of notAnObject) {
  test(`a payload that serialises to no JSON object (${label}) is refused, never stored as something else`, async () => {
    await withTmpDir('bad-payload-shape', (dir) => rejectAll(dir, ({ col }) => [
      [label, () => col.upsert([{ id: 'p', vector: [1, 1, 1, 1], payload: make() as never }]),
        (e) => (e instanceof StratavecError ? hasCode('ERR_INVALID_PAYLOAD')(e) : isTypeError(e))],
    ]));
  });
}

test('TypeError for wrong argument types', async () => {
  await withTmpDir('bad-type', (dir) => rejectAll(dir, ({ db, col }) => [
    ['vector as string', () => col.upsert([{ id: 'x', vector: '1,2,3,4' as never }]), isTypeError],
    ['vector missing', () => col.upsert([{ id: 'x' } as never]), isTypeError],
    ['vector as object', () => col.upsert([{ id: 'x', vector: { length: 4 } as never }]), isTypeError],
    ['id as number', () => col.upsert([{ id: 7 as never, vector: [1, 1, 1, 1] }]), isTypeError],
    ['id missing', () => col.upsert([{ vector: [1, 1, 1, 1] } as never]), isTypeError],
    ['payload as array', () => col.upsert([{ id: 'x', vector: [1, 1, 1, 1], payload: [1, 2] as never }]), isTypeError],
    ['payload as string', () => col.upsert([{ id: 'x', vector: [1, 1, 1, 1], payload: 'p' as never }]), isTypeError],
    ['payload null', () => col.upsert([{ id: 'x', vector: [1, 1, 1, 1], payload: null as never }]), isTypeError],
    ['records not an array', () => col.upsert({ id: 'x', vector: [1, 1, 1, 1] } as never), isTypeError],
    ['record is null', () => col.upsert([null as never]), isTypeError],
    ['delete ids not an array', () => col.delete('a' as never), isTypeError],
    ['delete id as number', () => col.delete([1 as never]), isTypeError],
    ['get ids not an array', () => col.get('a' as never), isTypeError],
    ['get id as number', () => col.get([1 as never]), isTypeError],
    ['query as string', () => col.search('1,0,0,0' as never, { k: 1 }), isTypeError],
    ['k as string', () => col.search([1, 0, 0, 0], { k: '1' as never }), isTypeError],
    ['ef as string', () => col.search([1, 0, 0, 0], { k: 1, ef: '10' as never }), isTypeError],
    ['filter as string', () => col.search([1, 0, 0, 0], { k: 1, filter: 'n=1' as never }), isTypeError],
    ['options null', () => col.search([1, 0, 0, 0], null as never), isTypeError],
    ['collection name as number', () => db.createCollection(5 as never, { dimension: 4 }), isTypeError],
    ['collection options missing', () => db.createCollection('zz', undefined as never), isTypeError],
    ['dimension as string', () => db.createCollection('zz', { dimension: '4' as never }), isTypeError],
    ['collection() of a number', () => db.collection(1 as never), isTypeError],
    ['open with a number', () => Database.open(42 as never), isTypeError],
    ['open options not an object', () => Database.open(path.join(dir, 'x'), 'fast' as never), isTypeError],
    ['open workers as string', () => Database.open(path.join(dir, 'x'), { workers: '2' as never }), isTypeError],
  ]));
});

test('ERR_DATABASE_CLOSED for every call after close', async () => {
  await withTmpDir('bad-closed', async (dir) => {
    const { db, col } = await setup(dir);
    await db.close();
    const sync: [string, () => unknown][] = [
      ['collection', () => db.collection('c')],
      ['listCollections', () => db.listCollections()],
      ['stats', () => db.stats()],
      ['count', () => col.count()],
      ['segments', () => col.segments()],
    ];
    for (const [label, call] of sync) assert.throws(call, hasCode('ERR_DATABASE_CLOSED'), label);
    const asyncCalls: [string, () => Promise<unknown>][] = [
      ['createCollection', () => db.createCollection('new', { dimension: 4 })],
      ['dropCollection', () => db.dropCollection('c')],
      ['upsert', () => col.upsert([{ id: 'x', vector: [1, 1, 1, 1] }])],
      ['upsert empty batch', () => col.upsert([])],
      ['delete', () => col.delete(['a'])],
      ['get', () => col.get(['a'])],
      ['search', () => col.search([1, 0, 0, 0], { k: 1 })],
      ['flush', () => col.flush()],
    ];
    for (const [label, call] of asyncCalls) await assert.rejects(call(), hasCode('ERR_DATABASE_CLOSED'), label);
    const db2 = await openDb(dir, { workers: 1 });
    await assertUnchanged(db2.collection('c'), db2.collection('cos'), 'reopened after closed calls');
    assert.deepEqual(db2.listCollections(), ['c', 'cos']);
    await db2.close();
  });
});

/** Opens `dir` from a second Node process; resolves with what it printed (a code, or OPEN). */
function openFromChild(dir: string): Promise<string> {
  const entry = pathToFileURL(path.join(repoRoot(), 'dist', 'engine', 'index.js')).href;
  const script = `
    const { Database } = await import(${JSON.stringify(entry)});
    try {
      const db = await Database.open(${JSON.stringify(dir)}, { workers: 0 });
      console.log('OPEN ' + db.listCollections().join(','));
      await db.close();
    } catch (err) {
      console.log(err && err.code ? err.code : 'ERROR ' + err);
    }`;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`child exited ${code}: ${err}`))));
  });
}

test('ERR_DATABASE_LOCKED: a second open in this process and in another process; released by close', async () => {
  await withTmpDir('bad-lock', async (dir) => {
    const { db } = await setup(dir);
    await assert.rejects(Database.open(dir, { workers: 0 }), hasCode('ERR_DATABASE_LOCKED'));
    // The same directory reached through a symlink is the same lock.
    const link = `${dir}-link`;
    await fsp.symlink(dir, link);
    try {
      await assert.rejects(Database.open(link, { workers: 0 }), hasCode('ERR_DATABASE_LOCKED'));
    } finally {
      await fsp.rm(link, { force: true });
    }
    assert.equal(await openFromChild(dir), 'ERR_DATABASE_LOCKED');
    // The failed opens left the holder working.
    await assertUnchanged(db.collection('c'), db.collection('cos'), 'holder after failed opens');
    await db.close();
    assert.equal(await openFromChild(dir), 'OPEN c,cos', 'a closed database can be opened by another process');
    const db2 = await openDb(dir, { workers: 1 });
    await assertUnchanged(db2.collection('c'), db2.collection('cos'), 'reopened');
    await db2.close();
  });
});

test('StratavecError carries name, code and message; the errors are instances of Error', async () => {
  await withTmpDir('bad-shape', async (dir) => {
    const db = await openDb(dir, { workers: 0 });
    try {
      db.collection('missing');
      assert.fail('no error');
    } catch (err) {
      assert.ok(err instanceof Error);
      assert.ok(err instanceof StratavecError);
      assert.equal(err.name, 'StratavecError');
      assert.equal(err.code, 'ERR_COLLECTION_NOT_FOUND');
      assert.match(err.message, /missing/);
    }
    await db.close();
  });
});

test('a misspelt option key is ERR_INVALID_ARGUMENT, never silently ignored, and the open creates nothing', async () => {
  await withTmpDir('bad-keys', async (dir) => {
    const target = path.join(dir, 'db');
    for (const bad of [{ hotbytes: 1 }, { tiering: { intervalMS: 0 } }, { maintenance: { gc_grace_ms: 1 } }, { objectStoreTuning: { part_size: 1 } }]) {
      await assert.rejects(Database.open(target, bad as DatabaseOptions), hasCode('ERR_INVALID_ARGUMENT'), JSON.stringify(bad));
    }
    await assert.rejects(fsp.stat(target), /ENOENT/, 'a refused open created the directory');
    const db = track(await Database.open(target, { workers: 0 }));
    const col = await db.createCollection('c', { dimension: 2 });
    await col.upsert([{ id: 'a', vector: [1, 0] }]);
    await assert.rejects(col.search([1, 0], { k: 1, fitler: { a: 1 } } as never), hasCode('ERR_INVALID_ARGUMENT'));
    await assert.rejects(col.search([1, 0], { k: 1, probe: 0 }), hasCode('ERR_INVALID_ARGUMENT'));
    assert.equal((await col.search([1, 0], { k: 1, probe: 1 }))[0]?.id, 'a');
    await db.close();
  });
});
