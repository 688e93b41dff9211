// The write-ahead log: framing round trips, group commit ordering, torn-tail recovery versus
// corrupt-middle detection, and failure handling on a real full device.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import * as os from 'node:os';
import * as path from 'node:path';
import { StratavecError } from '../format/errors.js';
import { crc32 } from '../format/crc32.js';
import { decodeWalBody, encodeWalFrame, readWal, WalWriter, type WalOp } from '../format/wal.js';
import { mulberry32 } from '../harness/datasets.js';
import { withTmpDir } from './helpers/tmp.js';

const DIM = 4;

const withTmp = (fn: (dir: string) => Promise<void>) => withTmpDir('stratavec-wal-', fn);


function vec(seed: number, dim = DIM): Float32Array {
  return Float32Array.from({ length: dim }, (_, i) => seed * 10 + i + 0.5);
}

function upsert(...ids: string[]): WalOp {
  return { type: 'upsert', records: ids.map((id, i) => ({ id, vector: vec(i), payloadJson: i % 2 ? null : JSON.stringify({ id, n: i }) })) };
}

const SAMPLE_OPS: WalOp[] = [
  {
    type: 'upsert',
    records: [
      { id: 'plain', vector: Float32Array.from([1, -0, 3.5e-39, -2.25]), payloadJson: '{"tag":"ü✓"}' },
      { id: 'naïve-日本-😀', vector: Float32Array.from([Infinity, 0.1, -1e30, 42]), payloadJson: null },
    ],
  },
  { type: 'delete', ids: ['plain', '𝄞'] },
  upsert('x', 'y', 'z'),
  { type: 'delete', ids: [] },
];

function assertCode(err: unknown, code: string): true {
  assert.ok(err instanceof StratavecError, `expected StratavecError, got ${String(err)}`);
  assert.equal(err.code, code);
  return true;
}

async function writeFrames(file: string, ops: WalOp[]): Promise<number[]> {
  const frames = ops.map((op) => encodeWalFrame(op, DIM));
  await fsp.writeFile(file, Buffer.concat(frames));
  const starts: number[] = [];
  let at = 0;
  for (const f of frames) {
    starts.push(at);
    at += f.length;
  }
  return starts;
}

test('frames round-trip unicode ids, null payloads and exact float bits', async () => {
  for (const op of SAMPLE_OPS) {
    const frame = encodeWalFrame(op, DIM);
    assert.equal(frame.readUInt32LE(0), frame.length - 8);
    assert.equal(frame.readUInt32LE(4), crc32(frame.subarray(8)));
    const back = decodeWalBody(frame.subarray(8), DIM);
    assert.deepEqual(back, op);
    if (back.type === 'upsert') {
      for (const r of back.records) {
        assert.notEqual(r.vector.buffer, frame.buffer, 'vectors are copies, not views of the frame');
        assert.equal(r.vector.byteOffset % 4, 0);
      }
    }
  }
  await withTmp(async (dir) => {
    const file = path.join(dir, 'wal.log');
    const w = await WalWriter.open(file);
    for (const op of SAMPLE_OPS) await w.append(encodeWalFrame(op, DIM));
    const size = w.size;
    await w.close();
    const res = await readWal(file, DIM);
    assert.deepEqual(res.ops, SAMPLE_OPS);
    assert.equal(res.validBytes, size);
    assert.equal(res.tornBytes, 0);
    assert.equal((await fsp.stat(file)).size, size);
  });
});

test('a missing log reads as empty', async () => {
  await withTmp(async (dir) => {
    assert.deepEqual(await readWal(path.join(dir, 'nope.log'), DIM), { ops: [], validBytes: 0, tornBytes: 0 });
  });
});

test('encodeWalFrame rejects what cannot round-trip', () => {
  assert.throws(() => encodeWalFrame({ type: 'upsert', records: [{ id: 'a', vector: new Float32Array(3), payloadJson: null }] }, DIM), (e) => assertCode(e, 'ERR_DIMENSION_MISMATCH'));
  assert.throws(() => encodeWalFrame({ type: 'delete', ids: [''] }, DIM), (e) => assertCode(e, 'ERR_INVALID_ID'));
  assert.throws(() => encodeWalFrame({ type: 'delete', ids: ['x'.repeat(70000)] }, DIM), (e) => assertCode(e, 'ERR_INVALID_ID'));
  assert.throws(() => encodeWalFrame({ type: 'upsert', records: [{ id: 'a', vector: new Float32Array(DIM), payloadJson: '' }] }, DIM), (e) => assertCode(e, 'ERR_INVALID_PAYLOAD'));
});

test('decodeWalBody: every truncation or extension of a body is ERR_WAL_CORRUPT', () => {
  for (const op of SAMPLE_OPS.slice(0, 3)) {
    const body = encodeWalFrame(op, DIM).subarray(8);
    for (let len = 0; len < body.length; len++) {
      assert.throws(() => decodeWalBody(Buffer.from(body.subarray(0, len)), DIM), (e) => assertCode(e, 'ERR_WAL_CORRUPT'), `len ${len}`);
    }
    assert.throws(() => decodeWalBody(Buffer.concat([body, Buffer.from([0])]), DIM), (e) => assertCode(e, 'ERR_WAL_CORRUPT'));
  }
  const huge = Buffer.alloc(9);
  huge[0] = 1;
  huge.writeUInt32LE(DIM, 1);
  huge.writeUInt32LE(0xffffffff, 5);
  assert.throws(() => decodeWalBody(huge, DIM), (e) => assertCode(e, 'ERR_WAL_CORRUPT'));
});

test('group commit: 200 concurrent appends, callbacks in append order, fewer syncs than frames', async () => {
  await withTmp(async (dir) => {
    const file = path.join(dir, 'wal.log');
    const w = await WalWriter.open(file);
    const ops: WalOp[] = Array.from({ length: 200 }, (_, i) => upsert(`id-${i}`, `ü-${i}`));
    const durable: number[] = [];
    const settled: number[] = [];
    await Promise.all(
      ops.map((op, i) =>
        w.append(encodeWalFrame(op, DIM), () => durable.push(i)).then(() => {
          assert.ok(durable.includes(i), `frame ${i} resolved before its onDurable ran`);
          settled.push(i);
        }),
      ),
    );
    assert.deepEqual(durable, ops.map((_, i) => i));
    assert.equal(settled.length, 200);
    assert.ok(w.syncCount >= 1 && w.syncCount < 200, `expected batching, got ${w.syncCount} syncs for 200 frames`);

    // Appends made while a batch is in flight form the next batch, still in order.
    const more: Promise<void>[] = [];
    const first = w.append(encodeWalFrame(upsert('late-0'), DIM), () => durable.push(200));
    await Promise.resolve();
    for (let i = 1; i <= 5; i++) more.push(w.append(encodeWalFrame(upsert(`late-${i}`), DIM), () => durable.push(200 + i)));
    await Promise.all([first, ...more]);
    assert.deepEqual(durable.slice(200), [200, 201, 202, 203, 204, 205]);
    await w.close();

    const res = await readWal(file, DIM);
    assert.equal(res.ops.length, 206);
    assert.deepEqual(res.ops.slice(0, 200), ops);
    assert.deepEqual(res.ops[205], upsert('late-5'));
    assert.equal(res.tornBytes, 0);
  });
});

test('torn tail: every cut inside the last frame replays the earlier frames', async () => {
  await withTmp(async (dir) => {
    const full = path.join(dir, 'full.log');
    const ops = [upsert('a', 'b'), { type: 'delete', ids: ['a'] } as WalOp, upsert('c', 'd', 'é😀')];
    const starts = await writeFrames(full, ops);
    const bytes = await fsp.readFile(full);
    const last = starts[2]!;
    const cut = path.join(dir, 'cut.log');
    for (let len = last; len < bytes.length; len++) {
      await fsp.writeFile(cut, bytes.subarray(0, len));
      const res = await readWal(cut, DIM);
      assert.deepEqual(res.ops, ops.slice(0, 2), `cut at ${len}`);
      assert.equal(res.validBytes, last, `cut at ${len}`);
      assert.equal(res.tornBytes, len - last, `cut at ${len}`);
    }
  });
});

test('garbage after valid frames is a torn tail and is dropped', async () => {
  await withTmp(async (dir) => {
    const file = path.join(dir, 'wal.log');
    const ops = [upsert('a'), upsert('b', 'c')];
    await writeFrames(file, ops);
    const valid = (await fsp.stat(file)).size;
    const rnd = mulberry32(7);
    const garbage: Array<[string, Buffer]> = [
      ['zeros', Buffer.alloc(4096)],
      ['random', Buffer.from(Array.from({ length: 3000 }, () => Math.floor(rnd() * 256)))],
      ['short header', Buffer.from([9, 0, 0])],
      ['zero-length frame', Buffer.alloc(8)],
    ];
    const base = await fsp.readFile(file);
    for (const [name, g] of garbage) {
      await fsp.writeFile(file, Buffer.concat([base, g]));
      const res = await readWal(file, DIM);
      assert.deepEqual(res.ops, ops, name);
      assert.equal(res.validBytes, valid, name);
      assert.equal(res.tornBytes, g.length, name);
    }
  });
});

test('a damaged frame followed by valid frames is ERR_WAL_CORRUPT, wherever the damage is', async () => {
  await withTmp(async (dir) => {
    const file = path.join(dir, 'wal.log');
    const ops = [upsert('first', 'one'), upsert('second'), { type: 'delete', ids: ['first'] } as WalOp];
    const starts = await writeFrames(file, ops);
    const bytes = await fsp.readFile(file);
    const damaged = path.join(dir, 'damaged.log');
    // Every byte of the first frame: length, CRC and body.
    for (let at = 0; at < starts[1]!; at++) {
      const copy = Buffer.from(bytes);
      copy[at] = copy[at]! ^ 0x5a;
      await fsp.writeFile(damaged, copy);
      await assert.rejects(readWal(damaged, DIM), (e) => assertCode(e, 'ERR_WAL_CORRUPT'), `flip at ${at}`);
    }
    // The same damage in the last frame is indistinguishable from a torn write: dropped, not fatal.
    const copy = Buffer.from(bytes);
    copy[starts[2]! + 9] = copy[starts[2]! + 9]! ^ 0x5a;
    await fsp.writeFile(damaged, copy);
    const res = await readWal(damaged, DIM);
    assert.deepEqual(res.ops, ops.slice(0, 2));
    assert.equal(res.validBytes, starts[2]);
  });
});

test('a frame whose CRC matches but that does not decode is corrupt, never dropped as torn', async () => {
  await withTmp(async (dir) => {
    const file = path.join(dir, 'wal.log');
    await writeFrames(file, [upsert('only')]);
    // Read with the wrong dimension: the single frame is intact, so losing it would lose data.
    await assert.rejects(readWal(file, DIM + 1), (e) => assertCode(e, 'ERR_WAL_CORRUPT'));
  });
});

test('truncateTo drops a torn tail and later appends replay after it', async () => {
  await withTmp(async (dir) => {
    const file = path.join(dir, 'wal.log');
    const ops = [upsert('a'), { type: 'delete', ids: ['zz'] } as WalOp];
    await writeFrames(file, ops);
    const torn = encodeWalFrame(upsert('torn', 'tail'), DIM);
    await fsp.appendFile(file, torn.subarray(0, torn.length - 3));

    const before = await readWal(file, DIM);
    assert.ok(before.tornBytes > 0);
    const w = await WalWriter.open(file);
    assert.equal(w.size, before.validBytes + before.tornBytes);
    await w.truncateTo(before.validBytes);
    assert.equal(w.size, before.validBytes);
    await assert.rejects(w.truncateTo(w.size + 1), (e) => assertCode(e, 'ERR_INVALID_ARGUMENT'));
    const after = [upsert('b', 'ç'), { type: 'delete', ids: ['a'] } as WalOp];
    for (const op of after) await w.append(encodeWalFrame(op, DIM));
    await w.close();

    const res = await readWal(file, DIM);
    assert.deepEqual(res.ops, [...ops, ...after]);
    assert.equal(res.tornBytes, 0);
    assert.equal(res.validBytes, (await fsp.stat(file)).size);

    // truncateTo(0) empties the log (the engine does this after a manifest commit).
    const w2 = await WalWriter.open(file);
    await w2.truncateTo(0);
    await w2.append(encodeWalFrame(upsert('fresh'), DIM));
    await w2.close();
    assert.deepEqual((await readWal(file, DIM)).ops, [upsert('fresh')]);
  });
});

test('close waits for queued appends; appends after close are refused', async () => {
  await withTmp(async (dir) => {
    const file = path.join(dir, 'wal.log');
    const w = await WalWriter.open(file);
    let durable = 0;
    const pending = Array.from({ length: 10 }, (_, i) => w.append(encodeWalFrame(upsert(`c${i}`), DIM), () => durable++));
    const closed = w.close();
    await assert.rejects(w.append(encodeWalFrame(upsert('late'), DIM)), (e) => assertCode(e, 'ERR_DATABASE_CLOSED'));
    await closed;
    await Promise.all(pending);
    assert.equal(durable, 10);
    assert.equal((await readWal(file, DIM)).ops.length, 10);
  });
});

test('a failed write rejects the batch with ERR_DISK_FULL, runs no callback, and poisons when it cannot roll back', { skip: !existsSync('/dev/full') && 'no /dev/full' }, async () => {
  // /dev/full fails every write with ENOSPC and refuses ftruncate: a real failure, no mocks.
  const w = await WalWriter.open('/dev/full');
  let called = 0;
  const results = await Promise.allSettled([
    w.append(encodeWalFrame(upsert('a'), DIM), () => called++),
    w.append(encodeWalFrame(upsert('b'), DIM), () => called++),
  ]);
  for (const r of results) {
    assert.equal(r.status, 'rejected');
    assertCode((r as PromiseRejectedResult).reason, 'ERR_DISK_FULL');
  }
  assert.equal(called, 0);
  await assert.rejects(w.append(encodeWalFrame(upsert('c'), DIM), () => called++), (e) => assertCode(e, 'ERR_IO'));
  assert.equal(called, 0);
  assert.equal(w.syncCount, 0);
  await w.close();
});

test('a write that fails part-way is rolled back, and the writer keeps working', { skip: process.platform === 'win32' && 'needs ulimit' }, async () => {
  // RLIMIT_FSIZE makes the kernel fail the big write with EFBIG after writing part of it: a real
  // partial write. Without the rollback, those partial bytes would sit after the next frame.
  await withTmp(async (dir) => {
    const file = path.join(dir, 'wal.log');
    const walUrl = new URL('../format/wal.js', import.meta.url).href;
    const child = `
      import { WalWriter, encodeWalFrame } from ${JSON.stringify(walUrl)};
      const w = await WalWriter.open(${JSON.stringify(file)});
      const del = (ids) => encodeWalFrame({ type: 'delete', ids }, ${DIM});
      await w.append(del(['one']));
      let code = null, called = false;
      try { await w.append(del(Array.from({ length: 3000 }, (_, i) => 'big-' + i)), () => { called = true; }); }
      catch (e) { code = e.code; }
      const sizeAfterFail = w.size;
      await w.append(del(['two']));
      await w.close();
      console.log(JSON.stringify({ code, called, sizeAfterFail }));`;
    const r = spawnSync('sh', ['-c', 'ulimit -f 8 && exec "$0" --input-type=module -e "$1"', process.execPath, child], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { code: string; called: boolean; sizeAfterFail: number };
    assert.equal(out.code, 'ERR_IO');
    assert.equal(out.called, false);
    const res = await readWal(file, DIM);
    assert.deepEqual(res.ops, [{ type: 'delete', ids: ['one'] }, { type: 'delete', ids: ['two'] }]);
    assert.equal(res.tornBytes, 0);
    assert.equal(out.sizeAfterFail, encodeWalFrame({ type: 'delete', ids: ['one'] }, DIM).length);
  });
});
