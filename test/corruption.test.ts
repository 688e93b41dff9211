// Damage on disk, seen through the engine: a flipped byte in a sealed segment's vectors, HNSW or id
// sections, a truncated segment, a corrupt or truncated manifest, a corrupt WAL frame in the middle
// of the log, and garbage after its last frame. Opening never crashes; a damaged segment is reported
// by a coded error, never served; other collections keep working; a refused open changes nothing.

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, promises as fsp, readdirSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { Database, StratavecError, type Collection, type DatabaseOptions, type SearchOptions, type StoredRecord } from '../engine/index.js';
import { SegmentReader, SectionKind } from '../format/segment.js';
import { mulberry32 } from '../harness/datasets.js';
import { collectionFiles, flipByte, hasCode, hashTree, track, withTmpDir } from './helpers/tmp.js';

const openDb = (dir: string, options?: DatabaseOptions): Promise<Database> => Database.open(dir, options).then(track);

const DIM = 16;
const OPTS: DatabaseOptions = { workers: 1 };

type Rec = { id: string; vector: Float32Array; payload: { i: number; s: string } };

function records(prefix: string, from: number, to: number, seed: number): Rec[] {
  const rand = mulberry32(seed);
  const out: Rec[] = [];
  for (let i = from; i < to; i++) {
    out.push({ id: `${prefix}${i}`, vector: Float32Array.from({ length: DIM }, () => rand() * 2 - 1), payload: { i, s: `payload-${i}` } });
  }
  return out;
}

/**
 * 'a-good' and 'b-bad', each with two sealed segments (200 + 150 rows) and 30 growing rows, then
 * closed. Returns what was written so later checks can compare exactly.
 */
async function build(dir: string, options: DatabaseOptions = OPTS): Promise<Data> {
  const db = await openDb(dir, options);
  const data = { good: [] as Rec[], bad: [] as Rec[] };
  for (const [name, key, seed] of [['a-good', 'good', 1], ['b-bad', 'bad', 2]] as const) {
    const col = await db.createCollection(name, { dimension: DIM });
    const parts = [records(key, 0, 200, seed), records(key, 200, 350, seed + 10), records(key, 350, 380, seed + 20)];
    await col.upsert(parts[0]!);
    await col.flush();
    await col.upsert(parts[1]!);
    await col.flush();
    await col.upsert(parts[2]!);
    data[key] = parts.flat();
  }
  await db.close();
  return data;
}

type Data = { good: Rec[]; bad: Rec[] };
type WalData = Data & { walRel: string; extra: Rec[] };

// Building the fixture (four seals) costs more than any check, so each kind is built once into a
// template directory and every test works on its own copy.
const templates = new Map<string, Promise<{ dir: string; data: unknown }>>();
async function fromTemplate<T>(kind: string, make: (dir: string) => Promise<T>, dest: string): Promise<T> {
  let t = templates.get(kind);
  if (!t) {
    t = (async () => {
      const dir = await fsp.mkdtemp(path.join(os.tmpdir(), `stratavec-template-${kind}-`));
      return { dir, data: await make(dir) };
    })();
    templates.set(kind, t);
  }
  const { dir, data } = await t;
  await fsp.cp(dir, dest, { recursive: true });
  return data as T;
}
after(async () => {
  for (const t of templates.values()) await fsp.rm((await t).dir, { recursive: true, force: true });
});

const fixture = (dir: string): Promise<Data> => fromTemplate('base', build, dir);

/** The good collection answers exactly as written: count, get, an exact-match search, writes. */
async function assertGoodWorks(col: Collection, good: Rec[]): Promise<void> {
  assert.equal(col.count(), good.length);
  const sample = [good[0]!, good[250]!, good[379]!];
  const got = await col.get(sample.map((r) => r.id));
  for (let i = 0; i < sample.length; i++) {
    assert.deepEqual(Array.from(got[i]!.vector), Array.from(sample[i]!.vector));
    assert.deepEqual(got[i]!.payload, sample[i]!.payload);
  }
  for (const r of sample) {
    const [hit] = await col.search(r.vector, { k: 1, ef: 100 });
    assert.equal(hit!.id, r.id);
    assert.ok(hit!.distance < 1e-6);
  }
  await col.upsert([{ id: 'fresh', vector: new Float32Array(DIM).fill(0.5) }]);
  assert.equal(col.count(), good.length + 1);
  await col.delete(['fresh']);
}

const SEGMENT_CODES = ['ERR_SEGMENT_UNAVAILABLE', 'ERR_SEGMENT_CORRUPT'];

function l2(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i]! - b[i]!) ** 2;
  return s;
}

/**
 * Searches that may touch the damaged segment either fail with a segment code or return exactly
 * the answer the written data gives (possible only from a verified good copy, or when the damaged
 * bytes are not needed). Anything else is data from a corrupt file served as if it were valid.
 * Queries aim at `targets`, the rows whose bytes were damaged, so a wrong answer cannot hide.
 */
async function assertNeverWrong(col: Collection, written: Rec[], targets: Rec[], label: string): Promise<{ refused: number }> {
  let refused = 0;
  for (const t of targets) {
    let hits;
    try {
      hits = await col.search(t.vector, { k: 5, ef: 100 });
    } catch (err) {
      assert.ok(err instanceof StratavecError, `${label}: search threw ${String(err)}, not a StratavecError`);
      assert.ok(SEGMENT_CODES.includes(err.code), `${label}: search failed with ${err.code}`);
      refused++;
      continue;
    }
    const exact = written.map((r) => ({ id: r.id, d: l2(t.vector, r.vector) })).sort((a, b) => a.d - b.d).slice(0, 5);
    const same = hits.length === exact.length
      && hits.every((h, i) => h.id === exact[i]!.id && Math.abs(h.distance - exact[i]!.d) <= 1e-5 * Math.max(1, exact[i]!.d));
    const show = (xs: { id: string; d: number }[]) => xs.map((x) => `${x.id}@${x.d}`).join(' ');
    assert.ok(same, `${label}: search over a damaged segment served ${show(hits.map((h) => ({ id: h.id, d: h.distance })))}; the written data gives ${show(exact)}`);
  }
  return { refused };
}

async function segmentFile(dir: string, collection: string, index: number): Promise<string> {
  const files = (await collectionFiles(dir, collection, 'segments')).filter((f) => f.endsWith('.seg'));
  assert.equal(files.length, 2, `two segment files: ${files}`);
  return files[index]!;
}

/**
 * Flips a byte near the middle of a section; returns its offset inside the section. In the vectors
 * section it is the top byte of a float (sign and exponent), so the value changes a lot.
 */
async function flipInSection(file: string, kind: number): Promise<number> {
  const reader = SegmentReader.open(await fsp.readFile(file));
  const e = reader.entry(kind);
  assert.ok(e && e.storedLength > 8, `section ${kind} present`);
  const at = kind === SectionKind.vectors ? Math.floor(e.storedLength / 8) * 4 + 3 : Math.floor(e.storedLength / 2);
  await flipByte(file, e.offset + at);
  return at;
}

/** Damage to segment 0 of 'b-bad' (rows bad0..bad199 in order); returns the damaged rows. */
const segmentDamage: [string, (file: string, bad: Rec[]) => Promise<Rec[]>][] = [
  ['a flipped byte in the vectors section', async (f, bad) => {
    const at = await flipInSection(f, SectionKind.vectors);
    return [bad[Math.floor(at / (DIM * 4))]!, bad[5]!];
  }],
  ['a flipped byte in the HNSW section', async (f, bad) => {
    await flipInSection(f, SectionKind.hnsw);
    return [bad[5]!, bad[100]!, bad[150]!];
  }],
  ['a flipped byte in the ids section', async (f, bad) => {
    await flipInSection(f, SectionKind.ids);
    return [bad[5]!, bad[100]!];
  }],
  ['a segment truncated to half', async (f, bad) => {
    const { size } = await fsp.stat(f);
    await fsp.truncate(f, Math.floor(size / 2));
    return [bad[5]!, bad[199]!];
  }],
];

// How a warm segment answers depends on its size (warmScanMaxRecords): exact scan over the mapped
// file, or promotion (verify, load the HNSW index). Both paths are damaged here.
const MODES: [string, DatabaseOptions][] = [
  ['scanned', { ...OPTS, warmScanMaxRecords: 1_000_000 }],
  ['promoted', { ...OPTS, warmScanMaxRecords: 0 }],
];

// The brief's case: the local file is the only copy (no upload at seal), so nothing can repair it.
const localOnly = (dir: string): Promise<Data> => fromTemplate('local-only', (d) => build(d, { ...OPTS, uploadOnSeal: false }), dir);

for (const [what, damage] of segmentDamage) {
  for (const [mode, opts] of MODES) {
    test(`${mode} segment with ${what}, no other copy: open succeeds, search never serves damaged data, other collections work`, async () => {
      await withTmpDir('corrupt-seg', async (dir) => {
        const { good, bad } = await localOnly(dir);
        const targets = await damage(await segmentFile(dir, 'b-bad', 0), bad);
        const db = await openDb(dir, opts);
        assert.deepEqual(db.listCollections(), ['a-good', 'b-bad']);
        const badCol = db.collection('b-bad');
        const first = await assertNeverWrong(badCol, bad, targets, `${mode}, ${what}`);
        if (mode === 'promoted') {
          // The index is needed and no good copy exists: every search must be refused.
          assert.equal(first.refused, targets.length, `${mode}, ${what}: ${targets.length - first.refused} searches answered`);
        }
        await assertGoodWorks(db.collection('a-good'), good);
        // Asked again after other work: a failed load is not cached as good.
        const again = await assertNeverWrong(badCol, bad, targets, `${mode}, ${what}, again`);
        assert.equal(again.refused, first.refused);
        // Writes to the damaged collection's growing segment still work and are durable.
        await badCol.upsert([{ id: 'after', vector: new Float32Array(DIM).fill(0.25) }]);
        assert.ok((await badCol.get(['after']))[0]);
        await db.close();
        const db2 = await openDb(dir, opts);
        await assertGoodWorks(db2.collection('a-good'), good);
        assert.ok((await db2.collection('b-bad').get(['after']))[0]);
        const written = [...bad, { id: 'after', vector: new Float32Array(DIM).fill(0.25), payload: { i: -1, s: '' } }];
        await assertNeverWrong(db2.collection('b-bad'), written, targets, `${mode}, ${what}, reopened`);
        await db2.close();
      });
    });
  }
}

for (const [mode, opts] of MODES) {
  test(`${mode} segment with a flipped vectors byte and a good remote copy: never a wrong answer`, async () => {
    await withTmpDir('corrupt-seg-remote', async (dir) => {
      const { good, bad } = await fixture(dir);
      const targets = await segmentDamage[0]![1](await segmentFile(dir, 'b-bad', 0), bad);
      const db = await openDb(dir, opts);
      await assertNeverWrong(db.collection('b-bad'), bad, targets, `${mode}, remote copy`);
      await assertGoodWorks(db.collection('a-good'), good);
      await db.close();
    });
  });
}

for (const [what, kind] of [['vectors', SectionKind.vectors], ['payloads', SectionKind.payloads]] as const) {
  test(`get() never serves bytes from a segment whose ${what} section is corrupt`, async () => {
    await withTmpDir('corrupt-get', async (dir) => {
      const { bad } = await localOnly(dir);
      await flipInSection(await segmentFile(dir, 'b-bad', 0), kind);
      const db = await openDb(dir, OPTS);
      const col = db.collection('b-bad');
      // Every record of the damaged segment: get() must fail with a coded error or return exactly
      // what was written. A changed vector or payload handed back as if valid is silent corruption.
      const ids = bad.slice(0, 200).map((r) => r.id);
      let got: (StoredRecord | undefined)[] | undefined;
      try {
        got = await col.get(ids);
      } catch (err) {
        assert.ok(err instanceof StratavecError, `get threw ${String(err)}, not a StratavecError`);
        assert.ok(SEGMENT_CODES.includes(err.code), err.code);
      }
      if (got) {
        for (let i = 0; i < ids.length; i++) {
          const rec: StoredRecord | undefined = got[i];
          if (rec === undefined) continue; // not served is acceptable
          assert.deepEqual(Array.from(rec.vector), Array.from(bad[i]!.vector), `get(${ids[i]}) returned a vector that was never written`);
          assert.deepEqual(rec.payload, bad[i]!.payload, `get(${ids[i]}) returned a payload that was never written`);
        }
      }
      await db.close();
    });
  });
}

test('exact search (no index) never serves a segment whose vectors section is corrupt', async () => {
  await withTmpDir('corrupt-exact', async (dir) => {
    const { bad } = await localOnly(dir);
    const at = await flipInSection(await segmentFile(dir, 'b-bad', 0), SectionKind.vectors);
    const target = bad[Math.floor(at / (DIM * 4))]!;
    const db = await openDb(dir, { ...OPTS, warmScanMaxRecords: 0 }); // exact must not depend on the mode
    const col = db.collection('b-bad');
    let hits: unknown;
    try {
      hits = await col.search(target.vector, { k: 5, exact: true } as SearchOptions);
    } catch (err) {
      assert.ok(err instanceof StratavecError, `search threw ${String(err)}, not a StratavecError`);
      assert.ok(SEGMENT_CODES.includes(err.code), err.code);
    }
    assert.equal(hits, undefined, `exact search over a corrupt segment returned ${JSON.stringify(hits)}`);
    await db.close();
  });
});

/**
 * Every stored file under `dir` with its hash, except the writer claims in the default object
 * store (`objects/_writer/`): an open claims the prefix before it reads anything (a writer that
 * cannot claim must not write), and claims are never deleted, so a refused open leaves its epoch
 * and a heartbeat marked closed (the next open claims at once). Everything else must be unchanged.
 */
async function storedTree(dir: string): Promise<Map<string, string>> {
  return new Map([...(await hashTree(dir))].filter(([rel]) => !rel.startsWith(`objects${path.sep}_writer${path.sep}`)));
}

/** Runs `mutate` on the newest manifest of 'b-bad', then checks that open is refused cleanly. */
async function manifestCase(dir: string, mutate: (file: string) => Promise<void>): Promise<void> {
  await fixture(dir);
  const manifests = (await collectionFiles(dir, 'b-bad', 'manifest')).filter((f) => f.endsWith('.manifest'));
  assert.ok(manifests.length >= 2);
  await mutate(manifests.at(-1)!);
  const before = await storedTree(dir);
  await assert.rejects(openDb(dir, OPTS), hasCode('ERR_MANIFEST_CORRUPT'));
  assert.deepEqual(await storedTree(dir), before, 'a refused open changed files on disk');
  // The refused open released its lock: a second try gives the same answer, not ERR_DATABASE_LOCKED.
  await assert.rejects(openDb(dir, OPTS), hasCode('ERR_MANIFEST_CORRUPT'));
  assert.deepEqual(await storedTree(dir), before, 'a second refused open changed files on disk');
}

test('a flipped byte in the newest manifest: open throws ERR_MANIFEST_CORRUPT and changes nothing on disk', async () => {
  await withTmpDir('corrupt-manifest', (dir) => manifestCase(dir, async (file) => {
    const buf = await fsp.readFile(file);
    const bodyStart = buf.indexOf(0x0a) + 1;
    assert.ok(bodyStart > 0 && buf[bodyStart] === 0x7b, 'manifest body is JSON after a header line');
    await flipByte(file, bodyStart + Math.floor((buf.length - bodyStart) / 2), 0x01);
  }));
});

test('a truncated newest manifest: open throws ERR_MANIFEST_CORRUPT and changes nothing on disk', async () => {
  await withTmpDir('trunc-manifest', (dir) => manifestCase(dir, async (file) => {
    const { size } = await fsp.stat(file);
    await fsp.truncate(file, Math.floor(size / 2));
  }));
});

test('an empty newest manifest: open throws ERR_MANIFEST_CORRUPT', async () => {
  await withTmpDir('empty-manifest', (dir) => manifestCase(dir, (file) => fsp.truncate(file, 0)));
});

/** Frame start offsets of a WAL file (u32 body length, u32 CRC, body). */
function frames(buf: Buffer): number[] {
  const starts: number[] = [];
  for (let at = 0; at + 8 <= buf.length; at += 8 + buf.readUInt32LE(at)) starts.push(at);
  return starts;
}

/** Five separately acknowledged writes to 'b-bad' that stay in its WAL (no flush), then close. */
async function buildWal(dir: string): Promise<WalData> {
  const data = await build(dir);
  const db = await openDb(dir, OPTS);
  const col = db.collection('b-bad');
  const extra = records('w', 0, 50, 7);
  for (let i = 0; i < 50; i += 10) await col.upsert(extra.slice(i, i + 10));
  await col.delete(['bad0', 'bad1']);
  await db.close();
  const wals = [];
  for (const f of await collectionFiles(dir, 'b-bad', 'wal')) if ((await fsp.stat(f)).size > 0) wals.push(f);
  assert.equal(wals.length, 1, 'one non-empty WAL file');
  return { walRel: path.relative(dir, wals[0]!), ...data, extra };
}

async function walCase(dir: string): Promise<{ file: string; good: Rec[]; bad: Rec[]; extra: Rec[] }> {
  const data = await fromTemplate('wal', buildWal, dir);
  return { file: path.join(dir, data.walRel), good: data.good, bad: data.bad, extra: data.extra };
}

async function assertAllAcknowledged(col: Collection, bad: Rec[], extra: Rec[]): Promise<void> {
  assert.equal(col.count(), bad.length - 2 + extra.length);
  const got = await col.get([...extra.map((r) => r.id), 'bad0', 'bad1', 'bad2', 'bad379']);
  for (let i = 0; i < extra.length; i++) assert.deepEqual(Array.from(got[i]!.vector), Array.from(extra[i]!.vector), extra[i]!.id);
  assert.equal(got[extra.length], undefined);
  assert.equal(got[extra.length + 1], undefined);
  assert.ok(got[extra.length + 2] && got[extra.length + 3]);
  const [hit] = await col.search(extra[33]!.vector, { k: 1 });
  assert.equal(hit!.id, extra[33]!.id);
}

test('a corrupt frame in the middle of a WAL: open throws ERR_WAL_CORRUPT and leaves the log as it was', async () => {
  await withTmpDir('corrupt-wal', async (dir) => {
    const { file } = await walCase(dir);
    const buf = await fsp.readFile(file);
    const starts = frames(buf);
    assert.ok(starts.length >= 6, `${starts.length} frames`);
    // A byte inside the body of the second frame: valid frames follow it.
    await flipByte(file, starts[1]! + 8 + 20);
    const before = await storedTree(dir);
    await assert.rejects(openDb(dir, OPTS), hasCode('ERR_WAL_CORRUPT'));
    assert.deepEqual(await storedTree(dir), before, 'a refused open changed files on disk (the WAL must be kept for repair)');
    await assert.rejects(openDb(dir, OPTS), hasCode('ERR_WAL_CORRUPT'));
  });
});

test('a corrupt length field of a middle WAL frame: open throws ERR_WAL_CORRUPT', async () => {
  await withTmpDir('corrupt-wal-len', async (dir) => {
    const { file } = await walCase(dir);
    const starts = frames(await fsp.readFile(file));
    await flipByte(file, starts[2]! + 1, 0x01); // length off by 256
    await assert.rejects(openDb(dir, OPTS), hasCode('ERR_WAL_CORRUPT'));
  });
});

const tails: [string, (buf: Buffer) => Buffer][] = [
  ['random garbage', () => {
    const rand = mulberry32(11);
    return Buffer.from(Array.from({ length: 333 }, () => Math.floor(rand() * 256)));
  }],
  ['a torn frame (header promising more body than there is)', (buf) => {
    const starts = frames(buf);
    const last = buf.subarray(starts.at(-2)!, starts.at(-1)!); // a whole valid frame
    return Buffer.from(last.subarray(0, Math.floor(last.length / 2)));
  }],
  ['zeros', () => Buffer.alloc(4096)],
];

for (const [what, tail] of tails) {
  test(`${what} after the WAL's last frame: open succeeds with every acknowledged write, and the log stays usable`, async () => {
    await withTmpDir('wal-tail', async (dir) => {
      const { file, good, bad, extra } = await walCase(dir);
      const buf = await fsp.readFile(file);
      await fsp.appendFile(file, tail(buf));
      let db = await openDb(dir, OPTS);
      await assertAllAcknowledged(db.collection('b-bad'), bad, extra);
      await assertGoodWorks(db.collection('a-good'), good);
      // New writes go after the last good frame and survive another reopen.
      const more = records('m', 0, 5, 12);
      await db.collection('b-bad').upsert(more);
      await db.close();
      db = await openDb(dir, OPTS);
      const col = db.collection('b-bad');
      await assertAllAcknowledged(col, bad, [...extra, ...more]);
      await db.close();
    });
  });
}

test('a refused open closes every file it opened (no descriptor left to the garbage collector)', async (t) => {
  if (!existsSync('/proc/self/fd')) {
    t.skip('needs /proc/self/fd (Linux) to count open descriptors');
    return;
  }
  await withTmpDir('refused-fds', async (dir) => {
    // 'a-good' opens (WAL writer, mapped segments) before 'b-bad' fails on its manifest.
    await manifestCase(dir, (file) => fsp.truncate(file, 10));
    const fds = () => readdirSync('/proc/self/fd').length;
    // Collect first, so descriptors leaked earlier are not closed by a GC during the count.
    v8.setFlagsFromString('--expose-gc');
    (vm.runInNewContext('gc') as () => void)();
    const before = fds();
    for (let i = 0; i < 3; i++) await assert.rejects(Database.open(dir, { workers: 0 }), hasCode('ERR_MANIFEST_CORRUPT'));
    const after = fds();
    assert.equal(after, before, `${after - before} file descriptors left open by 3 refused opens`);
  });
});
