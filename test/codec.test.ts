// Section codecs: entropy estimates, the byte shuffle, codec selection, round trips through both
// deflate implementations and across them, and the promise that a bad stream or a wrong length
// gives ERR_SEGMENT_CORRUPT, never a wrong-sized buffer or a stray error type.

import { test, describe, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import * as zlib from 'node:zlib';
import { deflateSync as fflateDeflateSync } from 'fflate';
import { Codec } from '../format/segment.js';
import { crc32 } from '../format/crc32.js';
import { StratavecError } from '../format/errors.js';
import {
  byteShuffle, byteUnshuffle, chooseCodec, decodeSection, deflateImplFor, deflateRaw, encodeSection,
  inflateRaw, levelForEntropy, planeEntropy, LARGE_SECTION_BYTES, shannonEntropy, HIGH_ENTROPY, type DeflateImpl,
} from '../workers/codec.js';
import { clusteredDataset, gaussian, mulberry32 } from '../harness/datasets.js';
import { hasCode } from './helpers/tmp.js';

const IMPLS: readonly DeflateImpl[] = ['fflate', 'zlib'];
const SIZE = 512 * 1024;

function bytesOf(a: Float32Array | Uint32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

function randomBytes(n: number, seed: number): Uint8Array {
  const rand = mulberry32(seed);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.floor(rand() * 256);
  return out;
}

const WORDS = (
  'the of and to in is that it was for on are as with his they at be this from have or by one had not but what all ' +
  'were when we there can an your which their said if do will each about how up out them then she many some so these ' +
  'would other into has more her two like him see time could no make than first been its who now people my made over ' +
  'did down only way find use may water long little very after words called just where most know segment vector'
).split(' ');

/** English-like text: words drawn with a skew toward the head of the list, sentences, commas. */
function englishText(n: number, seed: number): Uint8Array {
  const rand = mulberry32(seed);
  let s = '';
  let inSentence = 0;
  while (s.length < n) {
    let w = WORDS[Math.floor(WORDS.length * rand() * rand())]!;
    if (inSentence++ === 0) w = w[0]!.toUpperCase() + w.slice(1);
    s += w;
    if (inSentence > 5 && rand() < 0.15) {
      s += rand() < 0.2 ? ', ' : '. ';
      inSentence = 0;
    } else {
      s += ' ';
    }
  }
  return Buffer.from(s.slice(0, n), 'latin1');
}

/** Increasing u32s with small random gaps: the shape of sorted row numbers or offsets. */
function sortedInts(n: number, seed: number): Uint8Array {
  const rand = mulberry32(seed);
  const a = new Uint32Array(n);
  let v = 0;
  for (let i = 0; i < n; i++) a[i] = v += 1 + Math.floor(rand() * 64);
  return bytesOf(a);
}

/** Isotropic gaussian blobs (16 centres, sigma 0.1), dim 128: full-mantissa float noise. */
function gaussianClusters(count: number, seed: number): Uint8Array {
  const rand = mulberry32(seed);
  const normal = gaussian(rand);
  const dim = 128;
  const centres = Array.from({ length: 16 }, () => Float32Array.from({ length: dim }, normal));
  const a = new Float32Array(count * dim);
  for (let i = 0; i < count; i++) {
    const c = centres[Math.floor(rand() * centres.length)]!;
    for (let j = 0; j < dim; j++) a[i * dim + j] = c[j]! + 0.1 * normal();
  }
  return bytesOf(a);
}

/** SIFT-like descriptors: small non-negative integers (0..180, many zeros) stored as float32. */
function siftLike(count: number, seed: number): Uint8Array {
  const rand = mulberry32(seed);
  const a = new Float32Array(count * 128);
  for (let i = 0; i < a.length; i++) a[i] = rand() < 0.4 ? 0 : Math.min(180, Math.floor(-Math.log(1 - rand()) * 30));
  return bytesOf(a);
}

const DATA = {
  random: { data: randomBytes(SIZE, 1), elementSize: undefined },
  text: { data: englishText(SIZE, 2), elementSize: undefined },
  sortedInts: { data: sortedInts(SIZE / 4, 3), elementSize: 4 },
  gaussianF32: { data: gaussianClusters(SIZE / 512, 4), elementSize: 4 },
  siftLikeF32: { data: siftLike(SIZE / 512, 5), elementSize: 4 },
  embeddingsF32: { data: bytesOf(clusteredDataset({ count: SIZE / 256, dim: 64, seed: 6 })), elementSize: 4 },
} as const;

function assertSameBytes(actual: Uint8Array, expected: Uint8Array, message?: string): void {
  assert.equal(actual.length, expected.length, message);
  assert.ok(Buffer.from(actual.buffer, actual.byteOffset, actual.length).equals(expected), message);
}

function assertCorrupt(fn: () => unknown): void {
  assert.throws(fn, hasCode('ERR_SEGMENT_CORRUPT'));
}

afterEach(() => {
  delete process.env['STRATAVEC_DEFLATE'];
});

describe('entropy', () => {
  test('known distributions', () => {
    assert.equal(shannonEntropy(new Uint8Array(1000)), 0);
    assert.equal(shannonEntropy(new Uint8Array(0)), 0);
    const all = Uint8Array.from({ length: 256 }, (_, i) => i);
    assert.equal(shannonEntropy(all), 8);
    const two = Uint8Array.from({ length: 1000 }, (_, i) => (i % 2 === 0 ? 7 : 200));
    assert.equal(shannonEntropy(two), 1);
    assert.ok(shannonEntropy(DATA.random.data) > 7.9);
    const text = shannonEntropy(DATA.text.data);
    assert.ok(text > 3 && text < 5, `text entropy ${text}`);
  });

  test('the sample is spread over the data, not taken from its head', () => {
    // 1 MiB whose first 128 KiB are zeros: a head-only 64 KiB sample would say 0 bits/byte.
    const data = randomBytes(1 << 20, 7);
    data.fill(0, 0, 128 * 1024);
    const h = shannonEntropy(data);
    assert.ok(h > 6.5, `spread sample sees the random part (${h})`);
    // With a sample as large as the data the estimate is exact, so it must agree within sampling noise.
    assert.ok(Math.abs(shannonEntropy(data, data.length) - h) < 0.5);
  });

  test('plane entropy sees byte-position structure that order-0 entropy cannot', () => {
    // Elements 0x000000XX: each plane but the first is constant, the mix is not.
    const a = new Uint32Array(4096).map((_, i) => i & 0xff);
    const plain = shannonEntropy(bytesOf(a));
    const planes = planeEntropy(bytesOf(a), 4);
    assert.ok(plain > 2, `plain ${plain}`);
    assert.equal(planes, 2); // (8 + 0 + 0 + 0) / 4
    // Order-0 entropy is permutation-invariant: shuffling the bytes does not move it.
    assert.equal(shannonEntropy(byteShuffle(bytesOf(a), 4), 1 << 20), shannonEntropy(bytesOf(a), 1 << 20));
    // Byte-level noise has no plane structure.
    assert.ok(Math.abs(planeEntropy(DATA.random.data, 4) - shannonEntropy(DATA.random.data)) < 0.05);
  });
});

describe('byte shuffle', () => {
  test('blosc layout: plane j holds byte j of every element, the tail is copied', () => {
    const src = Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    assert.deepEqual([...byteShuffle(src, 4)], [1, 5, 2, 6, 3, 7, 4, 8, 9, 10]);
    assert.deepEqual([...byteShuffle(src, 3)], [1, 4, 7, 2, 5, 8, 3, 6, 9, 10]);
    assert.deepEqual([...byteUnshuffle(Uint8Array.from([1, 5, 2, 6, 3, 7, 4, 8, 9, 10]), 4)], [...src]);
    assert.deepEqual([...byteShuffle(src, 1)], [...src]);
  });

  test('round trips for every element size, length and alignment', () => {
    const base = randomBytes(1031, 8);
    for (const size of [1, 2, 3, 4, 5, 8, 16]) {
      for (const len of [0, 1, 3, 4, 5, 64, 1027, 1030]) {
        for (const offset of [0, 1]) {
          const src = base.subarray(offset, offset + len);
          const shuffled = byteShuffle(src, size);
          assert.equal(shuffled.length, src.length);
          assertSameBytes(byteUnshuffle(shuffled, size), src, `size ${size} len ${len} offset ${offset}`);
        }
      }
    }
  });

  test('rejects a bad element size', () => {
    assert.throws(() => byteShuffle(new Uint8Array(8), 0), hasCode('ERR_INVALID_ARGUMENT'));
    assert.throws(() => byteUnshuffle(new Uint8Array(8), 1.5), hasCode('ERR_INVALID_ARGUMENT'));
    assert.throws(() => byteShuffle([1, 2] as unknown as Uint8Array, 4), TypeError);
  });
});

describe('selection', () => {
  test('random bytes: none, by estimate and by result', () => {
    const choice = chooseCodec(DATA.random.data, { elementSize: 4 });
    assert.equal(choice.codec, Codec.none);
    assert.ok(choice.entropy >= HIGH_ENTROPY && choice.shuffledEntropy! >= HIGH_ENTROPY);
    for (const impl of IMPLS) {
      const enc = encodeSection(DATA.random.data, { impl });
      assert.equal(enc.codec, Codec.none);
      assert.equal(enc.stored, DATA.random.data, 'none stores the input itself, no copy');
      assert.equal(enc.rawCrc, crc32(DATA.random.data));
      assert.equal(enc.storedCrc, enc.rawCrc);
    }
  });

  test('text and sorted ints compress; text never picks the shuffle', () => {
    assert.equal(chooseCodec(DATA.text.data, {}).codec, Codec.deflate);
    // Text bytes look alike in every position of a 4-byte group: no reason to shuffle.
    assert.equal(chooseCodec(DATA.text.data, { elementSize: 4 }).codec, Codec.deflate);
    for (const impl of IMPLS) {
      for (const name of ['text', 'sortedInts'] as const) {
        const { data, elementSize } = DATA[name];
        const enc = encodeSection(data, { impl, elementSize });
        assert.notEqual(enc.codec, Codec.none, `${name} (${impl})`);
        assert.ok(enc.stored.length <= 0.5 * data.length, `${name} (${impl}) stored ${enc.stored.length} of ${data.length}`);
      }
    }
  });

  test('float32 picks shuffleDeflate, and the shuffle is what makes it pay', () => {
    for (const name of ['gaussianF32', 'siftLikeF32', 'embeddingsF32'] as const) {
      const { data } = DATA[name];
      const choice = chooseCodec(data, { elementSize: 4 });
      assert.equal(choice.codec, Codec.shuffleDeflate, `${name}: ${JSON.stringify(choice)}`);
      assert.ok(choice.shuffledEntropy! < choice.entropy);
      for (const impl of IMPLS) {
        const enc = encodeSection(data, { impl, elementSize: 4 });
        assert.equal(enc.codec, Codec.shuffleDeflate, `${name} (${impl})`);
        assert.ok(enc.stored.length <= 0.9 * data.length);
        const plain = deflateRaw(data, enc.level as 1, impl)!;
        assert.ok(enc.stored.length < plain.length, `${name} (${impl}): shuffled ${enc.stored.length} vs plain ${plain.length}`);
      }
    }
  });

  test('minSavings decides whether a modest gain is kept', () => {
    // Gaussian floats without the shuffle save only about 8%: under the default 10% bar.
    const { data } = DATA.gaussianF32;
    const plain = deflateRaw(data, 1, 'zlib')!;
    const saved = 1 - plain.length / data.length;
    assert.ok(saved > 0.02 && saved < 0.1, `plain deflate saves ${saved}`);
    assert.equal(encodeSection(data, { impl: 'zlib' }).codec, Codec.none);
    assert.equal(encodeSection(data, { impl: 'zlib', minSavings: 0.01 }).codec, Codec.deflate);
    // And a 0.5 bar refuses even the shuffled result.
    assert.equal(encodeSection(data, { impl: 'zlib', elementSize: 4, minSavings: 0.5 }).codec, Codec.none);
  });

  test('level table: level 1 for redundant or shuffled numeric data, up to 6 as entropy rises', () => {
    assert.equal(levelForEntropy(0), 1);
    assert.equal(levelForEntropy(1.5), 1); // SIFT-like floats, shuffled
    assert.equal(levelForEntropy(3), 4);
    assert.equal(levelForEntropy(4), 6); // text
    assert.equal(levelForEntropy(7.4), 6);
    let prev = 0;
    for (let h = 0; h <= 8; h += 0.125) {
      const l = levelForEntropy(h);
      assert.ok(Number.isInteger(l) && l >= prev && l <= 6, `level ${l} at ${h}`);
      prev = l;
    }
    // A plain section below LARGE_SECTION_BYTES gets the level for its entropy; shuffled numeric
    // data and sections at or above LARGE_SECTION_BYTES get level 1.
    const text = chooseCodec(DATA.text.data);
    assert.equal(text.codec, Codec.deflate);
    assert.equal(text.level, levelForEntropy(text.entropy));
    assert.equal(text.level, 6);
    for (const name of ['siftLikeF32', 'embeddingsF32'] as const) {
      const choice = chooseCodec(DATA[name].data, { elementSize: 4 });
      assert.equal(choice.codec, Codec.shuffleDeflate, name);
      assert.equal(choice.level, 1, `${name}: shuffled planes entropy ${choice.shuffledEntropy}`);
    }
    const bigText = new Uint8Array(LARGE_SECTION_BYTES);
    for (let off = 0; off < bigText.length; off += DATA.text.data.length) bigText.set(DATA.text.data.subarray(0, bigText.length - off), off);
    assert.equal(chooseCodec(bigText).level, 1);
  });

  test('rejects bad options', () => {
    assert.throws(() => chooseCodec(DATA.text.data, { elementSize: 3 }), hasCode('ERR_INVALID_ARGUMENT'));
    assert.throws(() => encodeSection(DATA.text.data, { minSavings: 1 }), hasCode('ERR_INVALID_ARGUMENT'));
    assert.throws(() => encodeSection(DATA.text.data, { minSavings: -0.1 }), hasCode('ERR_INVALID_ARGUMENT'));
    assert.throws(() => encodeSection(DATA.text.data, { impl: 'gzip' as DeflateImpl }), hasCode('ERR_INVALID_ARGUMENT'));
    assert.throws(() => encodeSection('text' as unknown as Uint8Array), TypeError);
  });

  test('an empty section is stored as none and decodes', () => {
    const enc = encodeSection(new Uint8Array(0), { elementSize: 4 });
    assert.equal(enc.codec, Codec.none);
    assert.equal(decodeSection(enc.stored, enc.codec, 0).length, 0);
  });
});

describe('round trips', () => {
  for (const [name, { data, elementSize }] of Object.entries(DATA)) {
    test(`${name}: each implementation decodes what either one encoded`, () => {
      for (const encImpl of IMPLS) {
        const enc = encodeSection(data, { impl: encImpl, ...(elementSize ? { elementSize } : {}) });
        assert.equal(enc.rawLength, data.length);
        assert.equal(enc.rawCrc, crc32(data));
        assert.equal(enc.storedCrc, crc32(enc.stored));
        for (const decImpl of IMPLS) {
          assertSameBytes(decodeSection(enc.stored, enc.codec, enc.rawLength, decImpl), data, `${name}: ${encImpl} -> ${decImpl}, codec ${enc.codec}`);
        }
      }
    });
  }

  test('both codecs cross-decode even where selection would not pick them', () => {
    // Forced: plain deflate and shuffle+deflate of the same bytes, each way across the implementations.
    const data = DATA.siftLikeF32.data;
    for (const encImpl of IMPLS) {
      const plain = deflateRaw(data, 6, encImpl)!;
      const shuffled = deflateRaw(byteShuffle(data, 4), 6, encImpl)!;
      for (const decImpl of IMPLS) {
        assertSameBytes(decodeSection(plain, Codec.deflate, data.length, decImpl), data);
        assertSameBytes(decodeSection(shuffled, Codec.shuffleDeflate, data.length, decImpl), data);
      }
    }
    // And streams from the libraries' own entry points, not just ours.
    const text = DATA.text.data;
    for (const decImpl of IMPLS) {
      assertSameBytes(inflateRaw(zlib.deflateRawSync(text, { level: 9 }), text.length, decImpl), text);
      assertSameBytes(inflateRaw(fflateDeflateSync(text, { level: 9 }), text.length, decImpl), text);
    }
  });
});

describe('corrupt input', () => {
  const text = DATA.text.data;
  const packed = { fflate: deflateRaw(text, 6, 'fflate')!, zlib: deflateRaw(text, 6, 'zlib')! };
  const shuffledPacked = deflateRaw(byteShuffle(DATA.siftLikeF32.data, 4), 6, 'zlib')!;

  test('a truncated stream', () => {
    for (const enc of IMPLS) {
      for (const dec of IMPLS) {
        for (const cut of [0, 1, 100, packed[enc].length >> 1, packed[enc].length - 1]) {
          assertCorrupt(() => decodeSection(packed[enc].subarray(0, cut), Codec.deflate, text.length, dec));
        }
        assertCorrupt(() => decodeSection(shuffledPacked.subarray(0, shuffledPacked.length >> 1), Codec.shuffleDeflate, SIZE, dec));
      }
    }
  });

  test('an invalid block type and plain garbage', () => {
    for (const dec of IMPLS) {
      const bad = Uint8Array.from(packed.zlib);
      bad[0] = bad[0]! | 0x06; // BTYPE = 11, reserved in RFC 1951
      assertCorrupt(() => decodeSection(bad, Codec.deflate, text.length, dec));
      assertCorrupt(() => decodeSection(Uint8Array.from([0xff, 0xff, 0xff, 0xff]), Codec.deflate, 1000, dec));
    }
  });

  test('flipped bytes anywhere: ERR_SEGMENT_CORRUPT or exactly rawLength bytes, nothing else', () => {
    const rand = mulberry32(9);
    let rejected = 0;
    for (let trial = 0; trial < 40; trial++) {
      const enc = IMPLS[trial % 2]!;
      const dec = IMPLS[(trial >> 1) % 2]!;
      const bad = Uint8Array.from(packed[enc]);
      bad[Math.floor(rand() * bad.length)] ^= 1 << Math.floor(rand() * 8);
      try {
        const out = decodeSection(bad, Codec.deflate, text.length, dec);
        // A flip can still decode to the right length (a literal changed): the section CRC catches that.
        assert.equal(out.length, text.length);
        assert.notEqual(crc32(out), crc32(text));
      } catch (err) {
        hasCode('ERR_SEGMENT_CORRUPT')(err);
        rejected++;
      }
    }
    assert.ok(rejected > 0, 'some flips must break the stream');
  });

  test('a wrong rawLength, either way', () => {
    for (const enc of IMPLS) {
      for (const dec of IMPLS) {
        assertCorrupt(() => decodeSection(packed[enc], Codec.deflate, text.length - 1, dec));
        assertCorrupt(() => decodeSection(packed[enc], Codec.deflate, text.length + 1, dec));
        assertCorrupt(() => decodeSection(packed[enc], Codec.deflate, 0, dec));
        assertCorrupt(() => decodeSection(shuffledPacked, Codec.shuffleDeflate, SIZE - 4, dec));
      }
    }
    assertCorrupt(() => decodeSection(text, Codec.none, text.length - 1));
  });

  test('an impossible ratio is refused before allocating the claimed size', () => {
    // 2^30 bytes from a 100-byte stream is past deflate's 1032:1; no GiB buffer may be made for it.
    const before = process.memoryUsage().arrayBuffers;
    for (const dec of IMPLS) assertCorrupt(() => decodeSection(packed.zlib.subarray(0, 100), Codec.deflate, 2 ** 30, dec));
    assert.ok(process.memoryUsage().arrayBuffers - before < 64 * 1024 * 1024);
  });

  test('an unknown codec id', () => {
    assertCorrupt(() => decodeSection(packed.zlib, 7, text.length));
  });

  test('errors are StratavecError with a cause from the library', () => {
    try {
      decodeSection(packed.zlib.subarray(0, packed.zlib.length >> 1), Codec.deflate, text.length, 'zlib');
      assert.fail('expected a throw');
    } catch (err) {
      assert.ok(err instanceof StratavecError);
      assert.ok((err as Error).cause instanceof Error);
    }
  });
});

describe('implementation choice', () => {
  test('measured once, a valid answer per direction, stable', () => {
    for (const dir of ['compress', 'decompress'] as const) {
      const first = deflateImplFor(dir);
      assert.ok(first === 'fflate' || first === 'zlib');
      assert.equal(deflateImplFor(dir), first);
    }
  });

  test('STRATAVEC_DEFLATE pins both directions and is checked', () => {
    for (const impl of IMPLS) {
      process.env['STRATAVEC_DEFLATE'] = impl;
      assert.equal(deflateImplFor('compress'), impl);
      assert.equal(deflateImplFor('decompress'), impl);
    }
    process.env['STRATAVEC_DEFLATE'] = 'brotli';
    assert.throws(() => deflateImplFor('compress'), hasCode('ERR_INVALID_ARGUMENT'));
    delete process.env['STRATAVEC_DEFLATE'];
    assert.throws(() => deflateImplFor('sideways' as 'compress'), hasCode('ERR_INVALID_ARGUMENT'));
  });
});
