// The segment file format: round trips, zero-copy access, string tables and id lookup, and the
// promise that no malformed buffer gives anything but ERR_SEGMENT_CORRUPT.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { StratavecError } from '../format/errors.js';
import { crc32 } from '../format/crc32.js';
import {
  Codec,
  encodeIdLookup,
  encodeSegment,
  encodeStringTable,
  HEADER_SIZE,
  lookupRow,
  SECTION_ALIGN,
  SECTION_ENTRY_SIZE,
  SectionKind,
  SegmentReader,
  StringTable,
  TRAILER_SIZE,
  writeSegmentFile,
  type SectionInput,
} from '../format/segment.js';
import { mulberry32 } from '../harness/datasets.js';
import { withTmpDir } from './helpers/tmp.js';

const withTmp = (fn: (dir: string) => Promise<void>) => withTmpDir('stratavec-seg-', fn);


function assertCorrupt(fn: () => unknown, message?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof StratavecError, `expected StratavecError, got ${String(err)}`);
    assert.equal(err.code, 'ERR_SEGMENT_CORRUPT');
    if (message) assert.match(err.message, message);
    return true;
  });
}

function concat(chunks: Uint8Array[]): Buffer {
  return Buffer.concat(chunks);
}

const DIM = 3;
const IDS = ['alpha', 'é-accent', '日本語', '😀 emoji', '\uff21 fullwidth'];
const PAYLOADS: Array<string | null> = ['{"a":1}', null, '{"t":"ü"}', null, '{}'];

function sampleVectors(count: number, dim: number): Float32Array {
  const v = new Float32Array(count * dim);
  for (let i = 0; i < v.length; i++) v[i] = (i % 7) - 3.25 + i / 1000;
  return v;
}

function sampleSections(): { sections: SectionInput[]; vectors: Float32Array; hnswRaw: Buffer; hnswStored: Buffer } {
  const vectors = sampleVectors(IDS.length, DIM);
  const hnswRaw = Buffer.alloc(5000);
  for (let i = 0; i < hnswRaw.length; i++) hnswRaw[i] = (i * 31) % 17;
  const hnswStored = zlib.deflateRawSync(hnswRaw);
  const meta = Buffer.from(JSON.stringify({ segmentId: 's1', createdAt: 1 }));
  const sections: SectionInput[] = [
    { kind: SectionKind.meta, data: meta },
    { kind: SectionKind.vectors, data: new Uint8Array(vectors.buffer, vectors.byteOffset, vectors.byteLength) },
    { kind: SectionKind.ids, data: encodeStringTable(IDS) },
    { kind: SectionKind.payloads, data: [encodeStringTable(PAYLOADS)] },
    { kind: SectionKind.hnsw, data: [hnswStored.subarray(0, 10), hnswStored.subarray(10)], codec: Codec.deflate, rawLength: hnswRaw.length, rawCrc: crc32(hnswRaw) },
    { kind: SectionKind.idLookup, data: encodeIdLookup(IDS) },
  ];
  return { sections, vectors, hnswRaw, hnswStored };
}

test('segment round trip through a file, with an encoded section and an unknown kind', async () => {
  await withTmp(async (dir) => {
    const { sections, vectors, hnswRaw, hnswStored } = sampleSections();
    sections.push({ kind: 99, data: Buffer.from('from the future') });
    const encoded = encodeSegment({ dimension: DIM, metric: 'cosine', count: IDS.length }, sections);
    // Section data is referenced, not copied.
    assert.ok(encoded.chunks.includes(sections[2]!.data as Uint8Array));
    const file = path.join(dir, 'seg-1.svs');
    await writeSegmentFile(file, encoded);
    const buf = await fsp.readFile(file);
    assert.equal(buf.length, encoded.size);

    const r = SegmentReader.open(buf);
    r.verifyAll();
    assert.deepEqual(r.header, { formatVersion: 1, dimension: DIM, metric: 'cosine', count: IDS.length });
    assert.deepEqual(r.sections, encoded.sections);
    for (const s of r.sections) {
      assert.equal(s.offset % SECTION_ALIGN, 0, `section ${s.kind} aligned`);
      assert.ok(s.offset >= HEADER_SIZE);
    }
    assert.deepEqual(Array.from(r.vectors()), Array.from(vectors));
    assert.equal(r.raw(SectionKind.meta).toString(), JSON.stringify({ segmentId: 's1', createdAt: 1 }));
    assert.equal(r.raw(99).toString(), 'from the future');

    const hnsw = r.entry(SectionKind.hnsw)!;
    assert.equal(hnsw.codec, Codec.deflate);
    assert.equal(hnsw.rawLength, hnswRaw.length);
    assert.equal(hnsw.storedLength, hnswStored.length);
    assert.deepEqual(r.stored(SectionKind.hnsw), hnswStored);
    const inflated = zlib.inflateRawSync(r.stored(SectionKind.hnsw));
    assert.equal(crc32(inflated), hnsw.rawCrc);
    assertCorrupt(() => r.raw(SectionKind.hnsw), /encoded/);

    const ids = StringTable.open(r.raw(SectionKind.ids), r.header.count);
    const payloads = StringTable.open(r.raw(SectionKind.payloads), r.header.count);
    assert.deepEqual(Array.from({ length: ids.count }, (_, i) => ids.get(i)), IDS);
    assert.deepEqual(Array.from({ length: payloads.count }, (_, i) => payloads.get(i)), PAYLOADS);
    assert.equal(lookupRow(r.raw(SectionKind.idLookup), ids, '日本語'), 2);
  });
});

test('a missing section is ERR_SEGMENT_CORRUPT, an empty segment round-trips', () => {
  const enc = encodeSegment({ dimension: 4, metric: 'l2', count: 0 }, [
    { kind: SectionKind.vectors, data: new Uint8Array(0) },
    { kind: SectionKind.ids, data: encodeStringTable([]) },
  ]);
  const r = SegmentReader.open(concat(enc.chunks));
  r.verifyAll();
  assert.equal(r.vectors().length, 0);
  assert.equal(StringTable.open(r.raw(SectionKind.ids), 0).count, 0);
  assert.equal(r.entry(SectionKind.hnsw), undefined);
  assertCorrupt(() => r.stored(SectionKind.hnsw), /hnsw is missing/);
  assertCorrupt(() => r.verifySection(SectionKind.payloads), /missing/);
});

test('vectors() is a zero-copy view when aligned and a correct copy when not', () => {
  const { sections, vectors } = sampleSections();
  const bytes = concat(encodeSegment({ dimension: DIM, metric: 'l2', count: IDS.length }, sections).chunks);

  const aligned = SegmentReader.open(bytes);
  const v = aligned.vectors();
  assert.equal(v.buffer, bytes.buffer);
  assert.equal(v.byteOffset, bytes.byteOffset + aligned.entry(SectionKind.vectors)!.offset);
  assert.deepEqual(Array.from(v), Array.from(vectors));

  const backing = Buffer.alloc(bytes.length + 1);
  bytes.copy(backing, 1);
  const shifted = backing.subarray(1);
  assert.equal(shifted.byteOffset % 4, 1);
  const copy = SegmentReader.open(shifted).vectors();
  assert.notEqual(copy.buffer, backing.buffer);
  assert.deepEqual(Array.from(copy), Array.from(vectors));
});

test('string tables and the id lookup round-trip unicode ids and null payloads', () => {
  // Astral characters (surrogate pairs) sort below U+FF21 in UTF-16 but above it in UTF-8: this
  // set catches a lookup sorted by JS string order instead of byte order.
  const ids = ['b', 'a', 'ä', 'z', '😀', '\uff21', '\ue000', 'ab', 'a\u0000b', '中文', '𝄞 clef', 'ÿ'];
  const table = StringTable.open(encodeStringTable(ids), ids.length);
  assert.deepEqual(Array.from({ length: table.count }, (_, i) => table.get(i)), ids);
  assert.deepEqual(table.getBytes(4), Buffer.from('😀'));

  const lookup = encodeIdLookup(ids);
  const rows = Array.from({ length: ids.length }, (_, i) => lookup.readUInt32LE(4 + 4 * i));
  const byBytes = ids.map((_, i) => i).sort((a, b) => Buffer.compare(Buffer.from(ids[a]!), Buffer.from(ids[b]!)));
  assert.deepEqual(rows, byBytes);
  for (let i = 0; i < ids.length; i++) assert.equal(lookupRow(lookup, table, ids[i]!), i, `hit ${ids[i]}`);
  for (const miss of ['', 'c', 'a\u0001', 'aa', '😁', 'zz', '\uffff', 'B']) assert.equal(lookupRow(lookup, table, miss), -1, `miss ${miss}`);
  assert.equal(lookupRow(encodeIdLookup([]), StringTable.open(encodeStringTable([])), 'x'), -1);

  const withNulls: Array<string | null> = [null, '{"k":"v"}', null, null, '{"ü":[1,2]}'];
  const p = StringTable.open(encodeStringTable(withNulls));
  assert.deepEqual(Array.from({ length: p.count }, (_, i) => p.get(i)), withNulls);
  assert.equal(p.getBytes(0).length, 0);

  assert.throws(() => encodeIdLookup(['x', 'y', 'x']), (e: unknown) => e instanceof StratavecError && e.code === 'ERR_INVALID_ARGUMENT');
  assert.throws(() => encodeStringTable(['']), (e: unknown) => e instanceof StratavecError && e.code === 'ERR_INVALID_ARGUMENT');
});

test('id lookup order equals UTF-8 byte order for random ids, with and without astral characters', () => {
  const rnd = mulberry32(42);
  const narrow = ['a', 'b', 'Z', '0', '-', 'é', 'ÿ', 'ß', '中', '文', '\u0000', '\u07ff', '\u0800', '\ud7ff'];
  const wide = [...narrow, '\ue000', '\uff21', '\uffff', '😀', '𝄞', '\u{10ffff}', '\u{10000}'];
  for (const pool of [narrow, wide]) {
    const set = new Set<string>();
    while (set.size < 500) {
      let s = '';
      const len = 1 + Math.floor(rnd() * 5);
      for (let i = 0; i < len; i++) s += pool[Math.floor(rnd() * pool.length)];
      set.add(s);
    }
    const ids = [...set];
    const lookup = encodeIdLookup(ids);
    const table = StringTable.open(encodeStringTable(ids), ids.length);
    const rows = Array.from({ length: ids.length }, (_, i) => lookup.readUInt32LE(4 + 4 * i));
    const byBytes = ids.map((_, i) => i).sort((a, b) => Buffer.compare(Buffer.from(ids[a]!), Buffer.from(ids[b]!)));
    assert.deepEqual(rows, byBytes, `pool of ${pool.length}`);
    for (let i = 0; i < ids.length; i++) assert.equal(lookupRow(lookup, table, ids[i]!), i);
  }
});

test('lone surrogates: string tables stay consistent, the id lookup refuses them', () => {
  // Each lone surrogate is U+FFFD in UTF-8; joined, these two would pair up into one astral char.
  const values = ['a\ud800', '\udc00b', null, 'ok'];
  const t = StringTable.open(encodeStringTable(values), 4);
  assert.deepEqual([t.get(0), t.get(1), t.get(2), t.get(3)], ['a\ufffd', '\ufffdb', null, 'ok']);
  assert.throws(() => encodeIdLookup(['x', 'a\ud800']), (e: unknown) => e instanceof StratavecError && e.code === 'ERR_INVALID_ARGUMENT');
  assert.throws(() => encodeIdLookup(['😀', '\udc00']), (e: unknown) => e instanceof StratavecError && e.code === 'ERR_INVALID_ARGUMENT');
});

test('string tables and lookups reject malformed bytes as ERR_SEGMENT_CORRUPT', () => {
  const good = encodeStringTable(['one', 'two', 'three']);
  assertCorrupt(() => StringTable.open(good, 4), /expected 4/);
  assertCorrupt(() => StringTable.open(good.subarray(0, good.length - 1)));
  assertCorrupt(() => StringTable.open(Buffer.alloc(3)));
  const huge = Buffer.from(good);
  huge.writeUInt32LE(0xffffffff, 0);
  assertCorrupt(() => StringTable.open(huge), /claims/);
  const disorder = Buffer.from(good);
  disorder.writeUInt32LE(7, 8); // offsets[1] past offsets[2]
  assertCorrupt(() => StringTable.open(disorder), /out of order/);

  const table = StringTable.open(good);
  const lookup = encodeIdLookup(['one', 'two', 'three']);
  const badRow = Buffer.from(lookup);
  badRow.writeUInt32LE(9, 4 + 4 * 1); // the middle probe of a 3-row search
  assertCorrupt(() => lookupRow(badRow, table, 'two'), /out of range/);
  assertCorrupt(() => lookupRow(lookup.subarray(0, 8), table, 'two'));
  assertCorrupt(() => lookupRow(Buffer.alloc(2), table, 'two'));
});

test('encodeSegment refuses inputs its reader would reject', () => {
  const code = (fn: () => unknown, c: string) =>
    assert.throws(fn, (e: unknown) => e instanceof StratavecError && e.code === c);
  const h = { dimension: 2, metric: 'ip' as const, count: 1 };
  code(() => encodeSegment({ ...h, dimension: 0 }, []), 'ERR_INVALID_ARGUMENT');
  code(() => encodeSegment({ ...h, dimension: 65537 }, []), 'ERR_INVALID_ARGUMENT');
  code(() => encodeSegment({ ...h, metric: 'dot' as never }, []), 'ERR_INVALID_ARGUMENT');
  code(() => encodeSegment(h, [{ kind: SectionKind.vectors, data: new Uint8Array(4) }]), 'ERR_INVALID_ARGUMENT');
  code(() => encodeSegment(h, [{ kind: 7, data: new Uint8Array(1) }, { kind: 7, data: new Uint8Array(1) }]), 'ERR_INVALID_ARGUMENT');
  code(() => encodeSegment(h, [{ kind: 7, data: new Uint8Array(1), codec: Codec.deflate }]), 'ERR_INVALID_ARGUMENT');
  code(() => encodeSegment(h, [{ kind: 7, data: new Uint8Array(1), codec: 9, rawLength: 1, rawCrc: 0 }]), 'ERR_INVALID_ARGUMENT');
  code(() => encodeSegment(h, Array.from({ length: 65 }, (_, i) => ({ kind: i + 1, data: new Uint8Array(0) }))), 'ERR_INVALID_ARGUMENT');
});

test('fuzz: flipped bytes and truncations give ERR_SEGMENT_CORRUPT or identical data, nothing else', () => {
  const { sections } = sampleSections();
  const original = concat(encodeSegment({ dimension: DIM, metric: 'l2', count: IDS.length }, sections).chunks);
  const ref = SegmentReader.open(original);
  const seed = 0x5eed;
  const rnd = mulberry32(seed);
  let corrupt = 0;
  let intact = 0;

  for (let trial = 0; trial < 300; trial++) {
    let buf: Buffer;
    let what: string;
    if (trial % 3 === 0) {
      // Bias towards tiny sizes too, where the header and trailer overlap or vanish.
      const len = trial % 2 === 0 ? Math.floor(rnd() * original.length) : Math.floor(rnd() * 130);
      buf = Buffer.from(original.subarray(0, len));
      what = `truncate to ${len}`;
    } else {
      buf = Buffer.from(original);
      const flips = 1 + Math.floor(rnd() * 3);
      const at: number[] = [];
      for (let f = 0; f < flips; f++) {
        const pos = Math.floor(rnd() * buf.length);
        buf[pos] = buf[pos]! ^ (1 + Math.floor(rnd() * 255));
        at.push(pos);
      }
      what = `flip at ${at.join(',')}`;
    }
    try {
      const r = SegmentReader.open(buf);
      r.verifyAll();
      // Whatever survives verification must read back exactly as the original.
      assert.deepEqual(r.header, ref.header, what);
      assert.deepEqual(r.sections, ref.sections, what);
      for (const s of ref.sections) assert.deepEqual(r.stored(s.kind), ref.stored(s.kind), `${what}: section ${s.kind}`);
      assert.deepEqual(Array.from(r.vectors()), Array.from(ref.vectors()), what);
      const ids = StringTable.open(r.raw(SectionKind.ids), r.header.count);
      assert.equal(lookupRow(r.raw(SectionKind.idLookup), ids, IDS[3]!), 3, what);
      intact++;
    } catch (err) {
      if (err instanceof assert.AssertionError) throw err;
      assert.ok(err instanceof StratavecError, `seed ${seed} trial ${trial} (${what}): ${String(err)}`);
      assert.equal(err.code, 'ERR_SEGMENT_CORRUPT', `seed ${seed} trial ${trial} (${what})`);
      corrupt++;
    }
  }
  assert.equal(corrupt + intact, 300);
  // verifyAll checks padding too, so every damaged copy should be caught, not merely most.
  assert.equal(intact, 0, `${intact} damaged copies passed verification`);
});

/** Rewrites the section table of `file` with `mutate` applied, fixing the table CRC afterwards. */
function withTable(file: Buffer, mutate: (table: Buffer) => void): Buffer {
  const out = Buffer.from(file);
  const trailerAt = out.length - TRAILER_SIZE;
  const tableOffset = out.readUInt32LE(trailerAt);
  const count = out.readUInt32LE(trailerAt + 8);
  const table = out.subarray(tableOffset, tableOffset + count * SECTION_ENTRY_SIZE);
  mutate(table);
  out.writeUInt32LE(crc32(table), trailerAt + 12);
  return out;
}

test('crafted huge lengths and counts are refused before anything is allocated', () => {
  const { sections } = sampleSections();
  const file = concat(encodeSegment({ dimension: DIM, metric: 'l2', count: IDS.length }, sections).chunks);
  const trailerAt = file.length - TRAILER_SIZE;

  // A section claiming 2^40 stored bytes, with a table CRC that matches the lie.
  const bigStored = withTable(file, (t) => t.writeUInt32LE(0x100, 16 + 4));
  assertCorrupt(() => SegmentReader.open(bigStored), /runs past/);
  // An encoded section claiming 2^40 raw bytes (what a decoder would allocate).
  const hnswIndex = sections.findIndex((s) => s.kind === SectionKind.hnsw);
  const bigRaw = withTable(file, (t) => t.writeUInt32LE(0x100, hnswIndex * SECTION_ENTRY_SIZE + 24 + 4));
  assertCorrupt(() => SegmentReader.open(bigRaw), /cap/);
  // Offsets past 2^53 cannot even be represented.
  const unsafe = withTable(file, (t) => t.writeUInt32LE(0xffffffff, 8 + 4));
  assertCorrupt(() => SegmentReader.open(unsafe), /2\^53/);

  const manySections = Buffer.from(file);
  manySections.writeUInt32LE(1_000_000_000, trailerAt + 8);
  assertCorrupt(() => SegmentReader.open(manySections), /sections/);
  const farTable = Buffer.from(file);
  farTable.writeUInt32LE(0x100, trailerAt + 4); // tableOffset high word: 2^40
  assertCorrupt(() => SegmentReader.open(farTable), /does not end/);

  // Header fields out of range behind a valid header CRC.
  const reheader = (at: number, value: number): Buffer => {
    const out = Buffer.from(file);
    out.writeUInt32LE(value, at);
    const crc = crc32(out.subarray(0, 60));
    out.writeUInt32LE(crc, 60);
    out.writeUInt32LE(crc, trailerAt + 16);
    return out;
  };
  assertCorrupt(() => SegmentReader.open(reheader(12, 0)), /dimension/);
  assertCorrupt(() => SegmentReader.open(reheader(12, 70000)), /dimension/);
  assertCorrupt(() => SegmentReader.open(reheader(20, 2 ** 31)), /count/);
  assertCorrupt(() => SegmentReader.open(reheader(16, 3)), /metric/);
  assertCorrupt(() => SegmentReader.open(reheader(8, 2)), /version/);
  // A consistent header whose count disagrees with the vectors section size.
  assertCorrupt(() => SegmentReader.open(reheader(20, 4)), /vectors/);

  assertCorrupt(() => SegmentReader.open(Buffer.alloc(0)));
  assertCorrupt(() => SegmentReader.open(Buffer.alloc(4096)));
});
