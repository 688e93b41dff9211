// Whatever is wrong with a local copy of a segment (its file when warm, its id stub when cold), a
// read that has a good remote copy repairs it and answers, at open or at read time: truncations,
// header and trailer words set to 0, 1, 2^31 and 2^32-1, seeded byte flips, a missing file. The
// answer must be exactly what was written, and the segment must stay available.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { Database, type DatabaseOptions } from '../engine/index.js';
import { HEADER_SIZE, TRAILER_SIZE } from '../format/segment.js';
import { mulberry32 } from '../harness/datasets.js';
import { collectionFiles, track, withTmpDir } from './helpers/tmp.js';

const DIM = 8;
const OPTS: DatabaseOptions = { workers: 1, warmScanMaxRecords: 1_000_000 };
const SEED = Number(process.env.STRATAVEC_TEST_SEED ?? 7);

type Rec = { id: string; vector: Float32Array };

function records(from: number, to: number, rand: () => number): Rec[] {
  return Array.from({ length: to - from }, (_, i) => ({ id: `r${from + i}`, vector: Float32Array.from({ length: DIM }, () => rand() * 2 - 1) }));
}

/** One collection, two sealed segments (120 + 80 rows), both uploaded; `coldFirst` moves segment 0 to cold. */
async function build(dir: string, coldFirst: boolean): Promise<Rec[]> {
  const rand = mulberry32(SEED);
  const db = track(await Database.open(dir, OPTS));
  const col = await db.createCollection('c', { dimension: DIM });
  const parts = [records(0, 120, rand), records(120, 200, rand)];
  for (const p of parts) {
    await col.upsert(p);
    await col.flush();
  }
  await db.flushUploads();
  if (coldFirst) await db.migrate(col.segments()[0]!.id, 'cold');
  await db.close();
  return parts.flat();
}

/** Ways to damage a file; each returns a description (with the seed where random). */
type Damage = [string, (file: string) => Promise<void>];

function damages(): Damage[] {
  const setWord = (where: 'header' | 'trailer', at: number, value: number): Damage => [`${where} word +${at} = ${value}`, async (file) => {
    const buf = await fsp.readFile(file);
    const off = where === 'header' ? at : buf.length - TRAILER_SIZE + at;
    buf.writeUInt32LE(value >>> 0, off);
    await fsp.writeFile(file, buf);
  }];
  const out: Damage[] = [
    ['truncated to half', async (f) => fsp.truncate(f, Math.floor((await fsp.stat(f)).size / 2))],
    ['truncated to the header', async (f) => fsp.truncate(f, HEADER_SIZE)],
    ['truncated to 10 bytes', async (f) => fsp.truncate(f, 10)],
    ['emptied', async (f) => fsp.truncate(f, 0)],
    ['deleted', async (f) => fsp.rm(f)],
  ];
  // Zero and all-ones: the smallest and the largest value each length/offset word can take (1 and
  // 2^31 added no failure mode in earlier runs and cost two opens per case in the suite's time).
  for (const v of [0, 2 ** 32 - 1]) {
    for (const at of [8, 12, 16, 20]) out.push(setWord('header', at, v));
    for (const at of [0, 8, 12, 16]) out.push(setWord('trailer', at, v));
  }
  const rand = mulberry32(SEED + 1);
  for (let i = 0; i < 8; i++) {
    const frac = rand();
    out.push([`byte flipped at ${frac.toFixed(4)} of the file (seed ${SEED})`, async (f) => {
      const buf = await fsp.readFile(f);
      buf[Math.floor(frac * buf.length)]! ^= 0xa5;
      await fsp.writeFile(f, buf);
    }]);
  }
  return out;
}

async function checkAnswers(db: Database, written: Rec[], label: string): Promise<void> {
  const col = db.collection('c');
  for (const r of [written[3]!, written[60]!, written[119]!, written[150]!]) {
    const [hit] = await col.search(r.vector, { k: 1, ef: 50 });
    assert.equal(hit?.id, r.id, `${label}: nearest to ${r.id}`);
    assert.ok(hit!.distance < 1e-9, `${label}: distance ${hit!.distance}`);
    const [got] = await col.get([r.id]);
    assert.deepEqual(Array.from(got!.vector), Array.from(r.vector), `${label}: get ${r.id}`);
  }
  assert.equal(col.count(), written.length, label);
  assert.deepEqual(col.segments().map((s) => s.status), ['ok', 'ok'], `${label}: segment status`);
}

for (const [kind, coldFirst, suffix] of [['segment file', false, '.seg'], ['cold id stub', true, '.stub']] as const) {
  test(`a damaged ${kind} with a good remote copy: opening and reading repair it and answer exactly (seed ${SEED})`, async () => {
    await withTmpDir('read-repair', async (template) => {
      const written = await build(template, coldFirst);
      for (const [what, damage] of damages()) {
        await withTmpDir('read-repair-case', async (dir) => {
          await fsp.cp(template, dir, { recursive: true });
          const file = (await collectionFiles(dir, 'c', 'segments')).filter((f) => f.endsWith(suffix)).sort()[0]!;
          assert.ok(file, `a ${suffix} file`);
          await damage(file);
          const label = `${kind} ${path.basename(file)} ${what}`;
          const db = track(await Database.open(dir, OPTS));
          await checkAnswers(db, written, label);
          await db.close();
          // The repaired copy is good on disk too: a second open needs no repair and answers alike.
          const again = track(await Database.open(dir, OPTS));
          await checkAnswers(again, written, `${label}, reopened`);
          const report = await again.verify({ repair: false });
          assert.equal(report.summary.ok, 2, `${label}: verify after repair: ${JSON.stringify(report.summary)}`);
          await again.close();
        });
      }
    });
  });
}

test('a local file damaged after open is repaired by the read that finds it (verify-on-read)', async () => {
  await withTmpDir('read-repair-late', async (dir) => {
    const written = await build(dir, false);
    const db = track(await Database.open(dir, OPTS));
    const file = (await collectionFiles(dir, 'c', 'segments')).filter((f) => f.endsWith('.seg')).sort()[0]!;
    // Damage the bytes under the open mapping's feet is not allowed (files are immutable), so the
    // file is replaced by a damaged copy under the same name before the first read checks it.
    const buf = await fsp.readFile(file);
    buf[Math.floor(buf.length / 3)]! ^= 0x5a;
    await fsp.writeFile(`${file}.tmp`, buf);
    await fsp.rename(`${file}.tmp`, file);
    await checkAnswers(db, written, 'damaged after open');
    await db.close();
  });
});
