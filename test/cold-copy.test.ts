// Cold copies of real sealed segments: raw -> compressed -> raw is byte-identical, raw CRCs carry
// over, every kind of damage (flipped bytes, a forged table, a manifest that disagrees) is
// ERR_SEGMENT_CORRUPT, and a failed task leaves nothing at dest, not even a temp file.

import { test, describe, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { crc32 } from '../format/crc32.js';
import { TEMP_PREFIX } from '../format/fsutil.js';
import { Codec, encodeSegment, SectionKind, SegmentReader, writeSegmentFile, type SectionEntry } from '../format/segment.js';
import { seal } from '../workers/seal.js';
import { encodeColdCopy, decodeColdCopy } from '../workers/cold-copy.js';
import { byteShuffle, deflateRaw, type DeflateImpl } from '../workers/codec.js';
import { clusteredDataset } from '../harness/datasets.js';
import { flipByte, hasCode, withTmpDir } from './helpers/tmp.js';

const DIM = 32;
const COUNT = 1500;

afterEach(() => {
  delete process.env['STRATAVEC_DEFLATE'];
});

/** A genuine segment from the seal task: clustered vectors, string ids, JSON payloads, HNSW. */
async function sealSegment(dir: string, name = 'seg-1.seg'): Promise<string> {
  const vectors = clusteredDataset({ count: COUNT, dim: DIM, seed: 11 });
  const shared = new SharedArrayBuffer(vectors.byteLength);
  new Float32Array(shared).set(vectors);
  const outPath = path.join(dir, name);
  await seal({
    segmentId: 'seg-1',
    collection: 'docs',
    outPath,
    tmpDir: dir,
    dimension: DIM,
    metric: 'l2',
    hnsw: { M: 8, efConstruction: 40, efSearch: 32 },
    vectors: shared,
    count: COUNT,
    rows: null,
    ids: Array.from({ length: COUNT }, (_, i) => `doc-${String((i * 7919) % 100_003).padStart(6, '0')}`),
    payloads: Array.from({ length: COUNT }, (_, i) => (i % 10 === 0 ? null : JSON.stringify({ i, tag: ['news', 'tech', 'arts'][i % 3], title: `item number ${i}` }))),
    createdAt: 1_700_000_000_000,
    seed: 5,
  });
  return outPath;
}

function sectionsOf(file: Buffer): SectionEntry[] {
  return SegmentReader.open(file).sections;
}

/** No file at `dest` and no leftover temp file next to it. */
async function assertNothingAt(dest: string): Promise<void> {
  assert.equal(existsSync(dest), false, `${dest} must not exist`);
  const temps = (await fsp.readdir(path.dirname(dest))).filter((n) => n.startsWith(TEMP_PREFIX));
  assert.deepEqual(temps, [], 'no temp file may be left behind');
}

/** The file offset of the middle of section `kind`'s stored bytes. */
function middleOf(file: Buffer, kind: number): number {
  const s = sectionsOf(file).find((e) => e.kind === kind)!;
  return s.offset + Math.floor(s.storedLength / 2);
}

describe('cold copy round trip', () => {
  for (const [encImpl, decImpl] of [['zlib', 'fflate'], ['fflate', 'zlib']] as [DeflateImpl, DeflateImpl][]) {
    test(`raw -> cold -> raw is byte-identical (${encImpl} encodes, ${decImpl} decodes)`, () =>
      withTmpDir('cold', async (dir) => {
        const raw = await sealSegment(dir);
        const rawBytes = await fsp.readFile(raw);
        const cold = path.join(dir, 'seg-1.cold');
        const back = path.join(dir, 'seg-1.back');

        process.env['STRATAVEC_DEFLATE'] = encImpl;
        const before = performance.now();
        const enc = await encodeColdCopy({ src: raw, dest: cold });
        const around = performance.now() - before;
        const coldBytes = await fsp.readFile(cold);
        assert.equal(enc.bytes, coldBytes.length);
        assert.equal(enc.rawBytes, rawBytes.length);
        assert.ok(enc.bytes < 0.8 * rawBytes.length, `cold copy ${enc.bytes} of ${rawBytes.length} bytes`);
        // Not a speed check: the task's own duration, on this thread's clock, lies inside the
        // call's (a wrong unit, a wrong start time or a timestamp in its place would not).
        assert.ok(Number.isFinite(enc.ms) && enc.ms >= 0 && enc.ms <= around, `enc.ms ${enc.ms}, the call took ${around} ms`);

        // The copy is a valid segment with the same header, and the raw CRCs of the source.
        const src = SegmentReader.open(rawBytes);
        const copy = SegmentReader.open(coldBytes);
        copy.verifyAll();
        assert.deepEqual(copy.header, src.header);
        assert.deepEqual(copy.sections, enc.sections);
        assert.deepEqual(copy.sections.map((s) => [s.kind, s.rawLength, s.rawCrc]), src.sections.map((s) => [s.kind, s.rawLength, s.rawCrc]));
        const codecOf = (kind: number): number => copy.entry(kind)!.codec;
        assert.equal(codecOf(SectionKind.hnsw), Codec.shuffleDeflate);
        assert.equal(codecOf(SectionKind.ids), Codec.deflate);
        assert.equal(codecOf(SectionKind.payloads), Codec.deflate);
        assert.deepEqual(enc.choices.map((c) => [c.kind, c.codec]), copy.sections.map((s) => [s.kind, s.codec]));
        for (const c of enc.choices) assert.ok(c.entropy >= 0 && c.entropy <= 8);

        process.env['STRATAVEC_DEFLATE'] = decImpl;
        const decBefore = performance.now();
        const dec = await decodeColdCopy({ src: cold, dest: back, expectRawCrcs: src.sections.map((s) => s.rawCrc) });
        const decAround = performance.now() - decBefore;
        assert.ok(Number.isFinite(dec.ms) && dec.ms >= 0 && dec.ms <= decAround, `dec.ms ${dec.ms}, the call took ${decAround} ms`);
        const backBytes = await fsp.readFile(back);
        assert.ok(backBytes.equals(rawBytes), 'restored file differs from the original');
        assert.equal(dec.bytes, rawBytes.length);
        assert.deepEqual(dec.sections, src.sections);
        assert.ok(dec.sections.every((s) => s.codec === Codec.none));
      }));
  }

  test('re-encoding a cold copy keeps the raw CRCs; decoding a raw file copies it', () =>
    withTmpDir('cold', async (dir) => {
      const raw = await sealSegment(dir);
      const rawBytes = await fsp.readFile(raw);
      const cold = path.join(dir, 'a.cold');
      await encodeColdCopy({ src: raw, dest: cold });
      const again = path.join(dir, 'b.cold');
      const enc2 = await encodeColdCopy({ src: cold, dest: again, minSavings: 0.2 });
      assert.deepEqual(enc2.sections.map((s) => s.rawCrc), sectionsOf(rawBytes).map((s) => s.rawCrc));
      const back = path.join(dir, 'b.raw');
      await decodeColdCopy({ src: again, dest: back });
      assert.ok((await fsp.readFile(back)).equals(rawBytes));
      const plainCopy = path.join(dir, 'c.raw');
      await decodeColdCopy({ src: raw, dest: plainCopy });
      assert.ok((await fsp.readFile(plainCopy)).equals(rawBytes));
    }));

  test('an incompressible segment comes back as an all-none copy of itself', () =>
    withTmpDir('cold', async (dir) => {
      const noise = new Uint8Array(64 * 1024);
      let s = 12345;
      for (let i = 0; i < noise.length; i++) noise[i] = (s = (Math.imul(s, 1103515245) + 12345) >>> 0) >>> 24;
      const raw = path.join(dir, 'noise.seg');
      await writeSegmentFile(raw, encodeSegment({ dimension: 4, metric: 'ip', count: noise.length / 16 }, [{ kind: SectionKind.vectors, data: noise }]));
      const cold = path.join(dir, 'noise.cold');
      const enc = await encodeColdCopy({ src: raw, dest: cold });
      assert.equal(enc.sections[0]!.codec, Codec.none);
      assert.ok((await fsp.readFile(cold)).equals(await fsp.readFile(raw)));
    }));
});

describe('cold copy damage', () => {
  test('a flipped byte in a compressed section: ERR_SEGMENT_CORRUPT, nothing at dest', () =>
    withTmpDir('cold', async (dir) => {
      const raw = await sealSegment(dir);
      const cold = path.join(dir, 'seg-1.cold');
      await encodeColdCopy({ src: raw, dest: cold });
      const coldBytes = await fsp.readFile(cold);
      for (const kind of [SectionKind.hnsw, SectionKind.ids]) {
        const damaged = path.join(dir, `damaged-${kind}.cold`);
        await fsp.writeFile(damaged, coldBytes);
        await flipByte(damaged, middleOf(coldBytes, kind));
        const dest = path.join(dir, `out-${kind}.seg`);
        await assert.rejects(decodeColdCopy({ src: damaged, dest }), hasCode('ERR_SEGMENT_CORRUPT'));
        await assertNothingAt(dest);
      }
    }));

  test('a flipped byte in the raw source is found before anything is compressed', () =>
    withTmpDir('cold', async (dir) => {
      const raw = await sealSegment(dir);
      await flipByte(raw, middleOf(await fsp.readFile(raw), SectionKind.vectors));
      const dest = path.join(dir, 'seg-1.cold');
      await assert.rejects(encodeColdCopy({ src: raw, dest }), hasCode('ERR_SEGMENT_CORRUPT'));
      await assertNothingAt(dest);
    }));

  test('expectRawCrcs that disagree with the copy: ERR_SEGMENT_CORRUPT', () =>
    withTmpDir('cold', async (dir) => {
      const raw = await sealSegment(dir);
      const cold = path.join(dir, 'seg-1.cold');
      const enc = await encodeColdCopy({ src: raw, dest: cold });
      const crcs = enc.sections.map((s) => s.rawCrc);
      const dest = path.join(dir, 'back.seg');
      const wrongOne = crcs.map((c, i) => (i === crcs.length - 1 ? (c ^ 1) >>> 0 : c));
      await assert.rejects(decodeColdCopy({ src: cold, dest, expectRawCrcs: wrongOne }), hasCode('ERR_SEGMENT_CORRUPT'));
      await assert.rejects(decodeColdCopy({ src: cold, dest, expectRawCrcs: crcs.slice(1) }), hasCode('ERR_SEGMENT_CORRUPT'));
      await assert.rejects(decodeColdCopy({ src: cold, dest, expectRawCrcs: [...crcs].reverse() }), hasCode('ERR_SEGMENT_CORRUPT'));
      await assertNothingAt(dest);
      await assert.rejects(decodeColdCopy({ src: cold, dest, expectRawCrcs: ['x'] as unknown as number[] }), TypeError);
      // The right list passes.
      await decodeColdCopy({ src: cold, dest, expectRawCrcs: crcs });
      assert.ok((await fsp.readFile(dest)).equals(await fsp.readFile(raw)));
    }));

  test('a forged copy whose stored CRCs hold but whose streams lie: ERR_SEGMENT_CORRUPT', () =>
    withTmpDir('cold', async (dir) => {
      // Stored CRCs are computed over the forged bytes, so only the codec's own checks and the raw
      // CRC stand between these files and a wrong restore.
      const text = Buffer.from('the quick brown fox jumps over the lazy dog; '.repeat(400));
      const packed = deflateRaw(text, 6, 'zlib')!;
      const header = { dimension: 4, metric: 'l2' as const, count: 0 };
      const forgeries: Array<[string, Parameters<typeof encodeSegment>[1]]> = [
        ['raw CRC of other bytes', [{ kind: SectionKind.payloads, data: packed, codec: Codec.deflate, rawLength: text.length, rawCrc: (crc32(text) ^ 0x10) >>> 0 }]],
        ['raw length one short', [{ kind: SectionKind.payloads, data: packed, codec: Codec.deflate, rawLength: text.length - 1, rawCrc: crc32(text) }]],
        ['garbage stream', [{ kind: SectionKind.payloads, data: Buffer.alloc(500, 0xff), codec: Codec.deflate, rawLength: text.length, rawCrc: crc32(text) }]],
        ['truncated stream', [{ kind: SectionKind.payloads, data: packed.subarray(0, packed.length - 8), codec: Codec.deflate, rawLength: text.length, rawCrc: crc32(text) }]],
        ['deflate labelled as shuffled', [{ kind: SectionKind.payloads, data: packed, codec: Codec.shuffleDeflate, rawLength: text.length, rawCrc: crc32(text) }]],
        ['shuffled labelled as deflate', [{ kind: SectionKind.payloads, data: deflateRaw(byteShuffle(text, 4), 6, 'zlib')!, codec: Codec.deflate, rawLength: text.length, rawCrc: crc32(text) }]],
        ['a claimed 1 GiB raw size', [{ kind: SectionKind.payloads, data: packed, codec: Codec.deflate, rawLength: 2 ** 30, rawCrc: crc32(text) }]],
      ];
      // The honest version of the same file decodes, so the failures below are the forgeries' own.
      const honest = path.join(dir, 'honest.cold');
      await writeSegmentFile(honest, encodeSegment(header, [{ kind: SectionKind.payloads, data: packed, codec: Codec.deflate, rawLength: text.length, rawCrc: crc32(text) }]));
      await decodeColdCopy({ src: honest, dest: path.join(dir, 'honest.seg') });
      for (const [what, sections] of forgeries) {
        const src = path.join(dir, 'forged.cold');
        await writeSegmentFile(src, encodeSegment(header, sections));
        const dest = path.join(dir, 'forged.seg');
        await assert.rejects(decodeColdCopy({ src, dest }), hasCode('ERR_SEGMENT_CORRUPT'), what);
        await assertNothingAt(dest);
      }
    }));

  test('bad paths', () =>
    withTmpDir('cold', async (dir) => {
      const raw = await sealSegment(dir);
      await assert.rejects(encodeColdCopy({ src: raw, dest: raw }), hasCode('ERR_INVALID_ARGUMENT'));
      await assert.rejects(decodeColdCopy({ src: raw, dest: path.join(dir, '.', 'seg-1.seg') }), hasCode('ERR_INVALID_ARGUMENT'));
      await assert.rejects(encodeColdCopy({ src: path.join(dir, 'missing.seg'), dest: path.join(dir, 'x') }), hasCode('ERR_SEGMENT_NOT_FOUND'));
      await assert.rejects(encodeColdCopy({ src: raw, dest: path.join(dir, 'no-such-dir', 'x') }), hasCode('ERR_IO'));
      await assert.rejects(encodeColdCopy({ src: 42 as unknown as string, dest: 'x' }), TypeError);
    }));
});
