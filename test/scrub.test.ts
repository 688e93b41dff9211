// Corruption: 200 trials flipping random bytes or truncating warm files and cold objects: 100%
// detected by verify, repaired from the other copy where one is good, and no search ever returns a
// wrong record.
//
// One database per describe: 4 sealed segments of 300 x 16 (payload { id, i }, so a record served
// under the wrong id shows), all uploaded; two stay warm (local file + remote copy), two go cold (id
// stub + remote copy). Each trial damages exactly one copy of one segment:
//
//   (a) 1-3 bytes flipped in place in a warm segment's local file (pwrite; the mapping sees it)
//   (b) a warm local file replaced by a truncated copy (written aside and renamed over it: a torn
//       external copy; truncating a mapped file in place would be a SIGBUS, not corruption)
//   (c) the remote object of a warm segment flipped or truncated
//   (d) the remote object of a cold segment flipped or truncated (no other good copy)
//   (e) a cold segment's id stub flipped or truncated
//   (f) one copy deleted outright (warm local, warm remote, cold remote, cold stub)
//
// then: verify() must name that very copy (status corrupt or missing) and nothing else; reads of
// the damaged segment (search by HNSW, exact search, get) must give exactly what was written or a
// coded refusal, and must succeed whenever a good copy remains; verify({ repair: true }) fixes it
// from the other copy (or, for (d), reports the segment unavailable, reads fail with
// ERR_SEGMENT_UNAVAILABLE, and once the test puts the original object back a repair brings it
// back); a second verify() is all ok and exact searches equal the brute-force answer. Each trial
// puts the tiers back as they were, so trials are independent. Half the local-copy trials read
// before repairing (the read path repairs), half let verify({ repair: true }) do it. A bad local
// file must end up in quarantine/ either way.
//
// "Wrong record": a hit or get() result whose id was never written (or is outside the searched
// tiers), whose payload or vector is not the one written under that id, whose distance is not the
// distance to the written vector; or, for exact: true, a result set other than the brute-force top
// 10. Reads start after the first verify: between an in-place write to a verified mapping and the
// next verify the engine cannot know (it checks a mapping once), which is what the scrub is for.
//
// Reads of a warm segment search hot + warm only (the brute force then covers those rows), so the
// cold segments are not rehydrated and demoted again on every trial; reads of a cold segment, and
// every 8th trial, search every tier.
//
// A smaller S3 variant (s3rver) runs cases (c) and (d) with the objects rewritten by PutObject.
//
// Seed: STRATAVEC_SCRUB_SEED (default below), printed at the start. Databases live on /dev/shm
// when it is writable (see scratchRoot).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { constants as fsConstants, promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DeleteObjectCommand, GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Database, StratavecError, type Collection, type DatabaseOptions, type SearchHit } from '../engine/index.js';
import { clusteredDataset, mulberry32 } from '../harness/datasets.js';
import { startS3rver, S3RVER_CREDENTIALS, type S3rverHandle } from '../harness/s3rver.js';
import { flipByte } from './helpers/tmp.js';

const SEED = Number(process.env['STRATAVEC_SCRUB_SEED'] ?? 0x5c2b) >>> 0;
console.log(`scrub: seed ${SEED} (set STRATAVEC_SCRUB_SEED to replay)`);

const DIM = 16;
const PER_SEG = 300;
const SEGS = 4;
const COUNT = PER_SEG * SEGS;
const NQ = 20;
const K = 10;
const COL = 'docs';
/** Segments 0 and 1 stay warm, 2 and 3 go cold. */
const COLD_SEGS = new Set([2, 3]);

const rows = clusteredDataset({ count: COUNT + NQ, dim: DIM, seed: 4242 });
const vec = (r: number): Float32Array => rows.subarray(r * DIM, (r + 1) * DIM);
const idOf = (r: number): string => `r${r}`;
const rowOf = (id: string): number => (/^r\d+$/.test(id) ? Number(id.slice(1)) : -1);
const payloadOf = (r: number) => ({ id: idOf(r), i: r });

type Report = Awaited<ReturnType<Database['verify']>>;
type SegCheck = Report['segments'][number];
type CopyKind = 'local' | 'stub' | 'remote';
type Damage = 'flip' | 'truncate' | 'delete';
type CaseName = 'a' | 'b' | 'c' | 'd' | 'e' | 'f';

function l2(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i]! - b[i]!) ** 2;
  return s;
}

const tol = (d: number) => 1e-4 * Math.max(1, d);

/** The exact k nearest of `among` (row numbers) to q, nearest first, plus the (k+1)th for ties. */
function bruteForce(q: Float32Array, among: number[], k: number): { row: number; d: number }[] {
  return among.map((r) => ({ row: r, d: l2(q, vec(r)) })).sort((a, b) => a.d - b.d).slice(0, k + 1);
}

/**
 * Every hit is a record that was written, with its own payload and its true distance; sorted, no
 * duplicates. With `exact`, the hits are the exact top k of `among` (up to ties at the boundary).
 */
function assertNotWrong(hits: SearchHit[], q: Float32Array, among: number[], exact: boolean, what: string): void {
  const show = () => hits.map((h) => `${h.id}@${h.distance.toFixed(4)}`).join(' ');
  assert.equal(hits.length, Math.min(K, among.length), `${what}: ${hits.length} hits: ${show()}`);
  const seen = new Set<string>();
  const allowed = new Set(among);
  let prev = -Infinity;
  for (const h of hits) {
    const r = rowOf(h.id);
    assert.ok(r >= 0 && r < COUNT && allowed.has(r), `${what}: hit ${h.id} was never written (or is outside the searched tiers): ${show()}`);
    assert.ok(!seen.has(h.id), `${what}: ${h.id} returned twice: ${show()}`);
    seen.add(h.id);
    assert.deepEqual(h.payload, payloadOf(r), `${what}: ${h.id} came with payload ${JSON.stringify(h.payload)}`);
    const d = l2(q, vec(r));
    assert.ok(Math.abs(h.distance - d) <= tol(d), `${what}: ${h.id} at distance ${h.distance}, its written vector is at ${d}: ${show()}`);
    assert.ok(h.distance >= prev - 1e-9, `${what}: hits out of order: ${show()}`);
    prev = h.distance;
  }
  if (!exact) return;
  const want = bruteForce(q, among, K);
  const kth = want[Math.min(K, want.length) - 1]!.d;
  for (let i = 0; i < hits.length; i++) {
    assert.ok(Math.abs(hits[i]!.distance - want[i]!.d) <= tol(want[i]!.d),
      `${what}: exact search rank ${i} is ${hits[i]!.id}@${hits[i]!.distance}, brute force gives r${want[i]!.row}@${want[i]!.d}: ${show()}`);
    assert.ok(l2(q, vec(rowOf(hits[i]!.id))) <= kth + tol(kth), `${what}: ${hits[i]!.id} is not in the exact top ${K}: ${show()}`);
  }
}

/** Reads and writes the remote copy of a segment behind the engine's back. */
interface RemoteHands {
  read(id: string): Promise<Buffer>;
  write(id: string, bytes: Uint8Array): Promise<void>;
  remove(id: string): Promise<void>;
}

interface Counts {
  trials: number;
  detected: number;
  repaired: number;
  repairedByVerify: number;
  repairedByRead: number;
  unavailableExpected: number;
  unavailableAsExpected: number;
  readsServed: number;
  readsRefused: number;
}

const zeroCounts = (): Counts => ({
  trials: 0, detected: 0, repaired: 0, repairedByVerify: 0, repairedByRead: 0,
  unavailableExpected: 0, unavailableAsExpected: 0, readsServed: 0, readsRefused: 0,
});

interface Trial {
  n: number;
  kase: CaseName;
  copy: CopyKind;
  damage: Damage;
  /** Index (0..3) of the damaged segment. */
  seg: number;
  readBeforeRepair: boolean;
}

class Harness {
  db!: Database;
  col!: Collection;
  dir!: string;
  segIds: string[] = [];
  segSeq: number[] = [];
  readonly counts = new Map<CaseName, Counts>();
  /** Refused reads by error code. */
  readonly refusals = new Map<string, number>();
  readonly rand: () => number;

  constructor(readonly label: string, readonly seed: number, readonly hands: (h: Harness) => RemoteHands, readonly extra: DatabaseOptions) {
    this.rand = mulberry32(seed);
  }

  get remote(): RemoteHands {
    return this.hands(this);
  }

  async setup(): Promise<void> {
    this.dir = await fsp.mkdtemp(path.join(await scratchRoot(), 'stratavec-scrub-'));
    this.db = await Database.open(this.dir, {
      workers: 2,
      segmentMaxRecords: PER_SEG,
      // Warm segments are promoted (their HNSW loaded into hot), so the index path is read too.
      warmScanMaxRecords: 0,
      tiering: { intervalMs: 0 },
      maintenance: { gcIntervalMs: 0, scrubIntervalMs: 0, compactIntervalMs: 0 },
      objectStoreTuning: { retries: 1, retryBaseMs: 1 },
      ...this.extra,
    });
    this.col = await this.db.createCollection(COL, { dimension: DIM, hnsw: { M: 8, efConstruction: 64 } });
    for (let s = 0; s < SEGS; s++) {
      const batch = [];
      for (let r = s * PER_SEG; r < (s + 1) * PER_SEG; r++) batch.push({ id: idOf(r), vector: vec(r), payload: payloadOf(r) });
      await this.col.upsert(batch);
      await this.col.flush();
    }
    await this.db.flushUploads();
    const infos = this.col.segments();
    assert.equal(infos.length, SEGS, `${SEGS} sealed segments`);
    this.segIds = infos.map((s) => s.id);
    this.segSeq = infos.map((s) => s.seq);
    for (const s of infos) {
      assert.equal(s.records, PER_SEG);
      assert.ok(s.remoteBytes !== undefined, `segment ${s.id} was uploaded at seal`);
    }
    // Rows are sealed in order (one flush per 300): segment s holds rows [300 s, 300 s + 300).
    await this.restoreTiers();
    const r = await this.db.verify();
    this.assertAllOk(r, 'after setup');
  }

  async teardown(): Promise<void> {
    await this.db?.close().catch(() => undefined);
    if (this.dir) await fsp.rm(this.dir, { recursive: true, force: true });
  }

  segFile(s: number): string {
    return path.join(this.dir, 'collections', COL, 'segments', `${String(this.segSeq[s]).padStart(8, '0')}.seg`);
  }

  stubFile(s: number): string {
    return path.join(this.dir, 'collections', COL, 'segments', `${String(this.segSeq[s]).padStart(8, '0')}.stub`);
  }

  async quarantine(): Promise<string[]> {
    return fsp.readdir(path.join(this.dir, 'collections', COL, 'quarantine')).catch(() => []);
  }

  tierOf(s: number): string {
    const info = this.col.segments().find((x) => x.id === this.segIds[s]);
    assert.ok(info, `segment ${this.segIds[s]} is listed`);
    return info.tier;
  }

  rowsOf(s: number): number[] {
    return Array.from({ length: PER_SEG }, (_, j) => s * PER_SEG + j);
  }

  /** Segments 0, 1 warm (or hot), 2, 3 cold, as at the start of every trial. */
  async restoreTiers(): Promise<void> {
    for (let s = 0; s < SEGS; s++) {
      const t = this.tierOf(s);
      if (COLD_SEGS.has(s) && t !== 'cold') await this.db.migrate(this.segIds[s]!, 'cold');
      if (!COLD_SEGS.has(s) && t === 'cold') await this.db.migrate(this.segIds[s]!, 'warm');
    }
    for (let s = 0; s < SEGS; s++) assert.equal(this.tierOf(s) === 'cold', COLD_SEGS.has(s), `segment ${s} is ${this.tierOf(s)}`);
  }

  assertAllOk(r: Report, what: string): void {
    assert.equal(r.complete, true, `${what}: verify complete`);
    assert.equal(r.segments.length, SEGS, `${what}: ${r.segments.length} segments checked`);
    for (const s of r.segments) {
      const bad = s.copies.filter((c) => c.status !== 'ok');
      assert.equal(s.status, 'ok', `${what}: segment ${s.segmentId} is ${s.status}: ${JSON.stringify(s.copies)}`);
      assert.deepEqual(bad, [], `${what}: segment ${s.segmentId} has bad copies`);
      assert.ok(s.copies.some((c) => c.copy === 'remote'), `${what}: the remote copy of ${s.segmentId} was checked`);
      assert.ok(s.copies.some((c) => c.copy === (s.tier === 'cold' ? 'stub' : 'local')), `${what}: the local copy of ${s.segmentId} was checked`);
    }
    for (const m of r.manifests) assert.equal(m.status, 'ok', `${what}: manifest of ${m.collection}: ${m.detail}`);
    assert.equal(r.summary.ok, SEGS, `${what}: summary ${JSON.stringify(r.summary)}`);
  }

  /** Every segment but `s` is ok with every copy ok; returns the check of `s`. */
  checkOf(r: Report, s: number, what: string): SegCheck {
    assert.equal(r.complete, true, `${what}: verify complete`);
    let mine: SegCheck | undefined;
    for (const c of r.segments) {
      if (c.segmentId === this.segIds[s]) {
        mine = c;
        continue;
      }
      assert.equal(c.status, 'ok', `${what}: untouched segment ${c.segmentId} is ${c.status}: ${JSON.stringify(c.copies)}`);
      for (const cp of c.copies) assert.equal(cp.status, 'ok', `${what}: untouched segment ${c.segmentId}: ${cp.copy} copy is ${cp.status}: ${cp.detail}`);
    }
    assert.ok(mine, `${what}: segment ${this.segIds[s]} is in the report`);
    return mine;
  }

  // ---- damage -----------------------------------------------------------------------------

  /** Distinct offsets in [0, size), 1..3 of them, each XORed with a non-zero mask. */
  flips(size: number): { at: number; mask: number }[] {
    const n = 1 + Math.floor(this.rand() * 3);
    const out: { at: number; mask: number }[] = [];
    while (out.length < Math.min(n, size)) {
      const at = Math.floor(this.rand() * size);
      if (out.some((f) => f.at === at)) continue;
      out.push({ at, mask: 1 + Math.floor(this.rand() * 255) });
    }
    return out;
  }

  /** A strictly shorter length: sometimes empty, sometimes one byte short, usually anywhere. */
  cut(size: number): number {
    const x = this.rand();
    if (x < 0.1) return 0;
    if (x < 0.25) return size - 1;
    if (x < 0.35) return Math.max(0, size - 32); // the trailer gone
    return Math.floor(this.rand() * size);
  }

  /** Replaces `file` by a truncated copy: written aside, then renamed over it (never in place). */
  async truncateByRename(file: string, len: number): Promise<void> {
    const bytes = await fsp.readFile(file);
    const tmp = path.join(path.dirname(file), `scrub-torn-${process.pid}`);
    await fsp.writeFile(tmp, bytes.subarray(0, len));
    await fsp.rename(tmp, file);
  }

  /** Applies the trial's damage; returns what was done and how to undo it (only needed for (d)). */
  async damage(t: Trial): Promise<{ what: string; original?: Buffer }> {
    const s = t.seg;
    const id = this.segIds[s]!;
    if (t.copy === 'remote') {
      const original = await this.remote.read(id);
      if (t.damage === 'delete') {
        await this.remote.remove(id);
        return { what: `remote copy of ${id} deleted`, original };
      }
      if (t.damage === 'truncate') {
        const len = this.cut(original.length);
        await this.remote.write(id, original.subarray(0, len));
        return { what: `remote copy of ${id} truncated ${original.length} -> ${len}`, original };
      }
      const bytes = Buffer.from(original);
      const fl = this.flips(bytes.length);
      for (const f of fl) bytes[f.at]! ^= f.mask;
      await this.remote.write(id, bytes);
      return { what: `remote copy of ${id} (${bytes.length} bytes): flipped ${fl.map((f) => `@${f.at}^${f.mask}`).join(' ')}`, original };
    }
    const file = t.copy === 'local' ? this.segFile(s) : this.stubFile(s);
    const rel = path.relative(this.dir, file);
    const { size } = await fsp.stat(file);
    if (t.damage === 'delete') {
      await fsp.rm(file);
      return { what: `${rel} deleted` };
    }
    if (t.damage === 'truncate') {
      const len = this.cut(size);
      await this.truncateByRename(file, len);
      return { what: `${rel} replaced by a copy truncated ${size} -> ${len}` };
    }
    const fl = this.flips(size);
    for (const f of fl) await flipByte(file, f.at, f.mask); // pwrite in place: a mapping sees it
    return { what: `${rel} (${size} bytes): flipped in place ${fl.map((f) => `@${f.at}^${f.mask}`).join(' ')}` };
  }

  // ---- reads ------------------------------------------------------------------------------

  /**
   * Searches (HNSW and exact) aimed at rows of segment `s` and a get of some of its rows: each
   * either gives exactly what was written or fails with one of `codes`. Returns how many of each.
   * With `mustServe`, a refusal is a failure (a good copy exists).
   */
  async reads(s: number, codes: string[], mustServe: boolean, what: string): Promise<{ served: number; refused: number }> {
    let served = 0;
    let refused = 0;
    const { tiers, among } = this.scope(s);
    const targets = Array.from({ length: 2 }, () => s * PER_SEG + Math.floor(this.rand() * PER_SEG));
    const attempt = async (label: string, op: () => Promise<void>) => {
      try {
        await op();
        served++;
      } catch (err) {
        if (err instanceof assert.AssertionError) throw err;
        assert.ok(err instanceof StratavecError, `${what}, ${label}: threw ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}, not a StratavecError`);
        assert.ok(codes.includes(err.code), `${what}, ${label}: failed with ${err.code} (${err.message}); allowed: ${codes.join(', ')}`);
        assert.ok(!mustServe, `${what}, ${label}: refused with ${err.code} (${err.message}) although a good copy exists`);
        refused++;
        this.refusals.set(err.code, (this.refusals.get(err.code) ?? 0) + 1);
      }
    };
    for (const r of targets) {
      const q = vec(r);
      await attempt(`search near ${idOf(r)}`, async () => {
        assertNotWrong(await this.col.search(q, { k: K, ef: 64, includePayload: true, tiers }), q, among, false, `${what}, search near ${idOf(r)}`);
      });
      await attempt(`exact search near ${idOf(r)}`, async () => {
        assertNotWrong(await this.col.search(q, { k: K, exact: true, includePayload: true, tiers }), q, among, true, `${what}, exact search near ${idOf(r)}`);
      });
    }
    const ids = [...targets, ...Array.from({ length: 17 }, () => s * PER_SEG + Math.floor(this.rand() * PER_SEG))];
    await attempt('get', async () => {
      const got = await this.col.get([...ids.map(idOf), 'never-written']);
      assert.equal(got.length, ids.length + 1);
      ids.forEach((r, i) => {
        const rec = got[i];
        assert.ok(rec, `${what}: get(${idOf(r)}) returned nothing for a written record`);
        assert.equal(rec.id, idOf(r));
        assert.deepEqual(Array.from(rec.vector), Array.from(vec(r)), `${what}: get(${idOf(r)}) returned a vector that was never written`);
        assert.deepEqual(rec.payload, payloadOf(r), `${what}: get(${idOf(r)}) returned payload ${JSON.stringify(rec.payload)}`);
      });
      assert.equal(got[ids.length], undefined);
    });
    return { served, refused };
  }

  /**
   * Which tiers the reads of segment `s` search, and the rows that makes searchable. A search over
   * every tier rehydrates both cold segments (then put back by restoreTiers); to keep 200 trials
   * quick, a warm segment's reads search hot + warm only, which still holds the damaged segment.
   */
  scope(s: number, everything = false): { tiers: Array<'hot' | 'warm' | 'cold'>; among: number[] } {
    if (everything || this.tierOf(s) === 'cold') return { tiers: ['hot', 'warm', 'cold'], among: Array.from({ length: COUNT }, (_, r) => r) };
    const among: number[] = [];
    for (let x = 0; x < SEGS; x++) if (this.tierOf(x) !== 'cold') among.push(...this.rowsOf(x));
    return { tiers: ['hot', 'warm'], among };
  }

  /** Exact searches (random queries) give the brute-force answer over what they search. */
  async assertExact(s: number, everything: boolean, what: string): Promise<void> {
    const { tiers, among } = this.scope(s, everything);
    const qi = COUNT + Math.floor(this.rand() * NQ);
    const q = vec(qi);
    assertNotWrong(await this.col.search(q, { k: K, exact: true, includePayload: true, tiers }), q, among, true, `${what}, exact query ${qi} over ${tiers.join('+')}`);
    assertNotWrong(await this.col.search(q, { k: K, ef: 64, includePayload: true, tiers }), q, among, false, `${what}, query ${qi} over ${tiers.join('+')}`);
  }

  // ---- one trial --------------------------------------------------------------------------

  async trial(t: Trial): Promise<void> {
    const c = this.counts.get(t.kase) ?? zeroCounts();
    this.counts.set(t.kase, c);
    c.trials++;
    const s = t.seg;
    const id = this.segIds[s]!;
    const cold = this.tierOf(s) === 'cold';
    assert.equal(cold, COLD_SEGS.has(s), `trial ${t.n}: segment ${s} starts in the right tier`);
    // The damaged copy was the only good one: only a cold segment's remote copy is.
    const onlyCopy = cold && t.copy === 'remote';
    const quarantined = (await this.quarantine()).length;
    const dmg = await this.damage(t);
    const what = `${this.label} trial ${t.n} (${t.kase}, seed ${this.seed}): ${dmg.what}`;
    const expectStatus = t.damage === 'delete' ? 'missing' : 'corrupt';

    // 1. Detection: verify names that very copy, and nothing else.
    const r1 = await this.db.verify();
    const c1 = this.checkOf(r1, s, `${what}, verify`);
    const copy1 = c1.copies.find((x) => x.copy === t.copy);
    assert.ok(copy1, `${what}: verify reported no ${t.copy} copy: ${JSON.stringify(c1.copies)}`);
    assert.notEqual(copy1.status, 'ok', `${what}: NOT DETECTED: verify says the ${t.copy} copy is ok`);
    c.detected++;
    assert.equal(copy1.status, expectStatus, `${what}: the ${t.copy} copy is reported ${copy1.status} (${copy1.detail})`);
    // A good copy is left: 'damaged' (reported, not repaired). No good copy left (a cold segment's
    // remote copy): the engine also says 'damaged' until a repair marks it unavailable, although
    // nothing can serve it; 'unavailable' would be the truer word, so either is accepted here.
    if (onlyCopy) assert.ok(c1.status === 'damaged' || c1.status === 'unavailable', `${what}: segment status ${c1.status} with its only copy bad`);
    else assert.equal(c1.status, 'damaged', `${what}: segment status ${c1.status} with a bad copy, before repair`);
    for (const other of c1.copies) if (other !== copy1) assert.equal(other.status, 'ok', `${what}: the good ${other.copy} copy is reported ${other.status}: ${other.detail}`);

    // 2. Reads before repair: never a wrong record; refused only when no good copy is left.
    if (onlyCopy || t.readBeforeRepair) {
      const codes = onlyCopy ? ['ERR_SEGMENT_UNAVAILABLE', 'ERR_SEGMENT_CORRUPT', 'ERR_OBJECT_NOT_FOUND'] : ['ERR_SEGMENT_UNAVAILABLE'];
      const got = await this.reads(s, codes, !onlyCopy, `${what}, reads before repair`);
      c.readsServed += got.served;
      c.readsRefused += got.refused;
    }

    // 3. Repair.
    const r2 = await this.db.verify({ repair: true });
    const c2 = this.checkOf(r2, s, `${what}, repair`);
    if (onlyCopy) {
      c.unavailableExpected++;
      assert.equal(c2.status, 'unavailable', `${what}: the only copy is bad, yet repair says ${c2.status}: ${JSON.stringify(c2.copies)}`);
      assert.equal(this.col.segments().find((x) => x.id === id)!.status, 'unavailable', `${what}: segments() status`);
      // Every read of it is refused with ERR_SEGMENT_UNAVAILABLE; nothing is served from the bad copy.
      const got = await this.reads(s, ['ERR_SEGMENT_UNAVAILABLE'], false, `${what}, reads while unavailable`);
      assert.equal(got.served, 0, `${what}: ${got.served} reads of an unavailable segment were answered`);
      c.readsRefused += got.refused;
      await assert.rejects(this.db.migrate(id, 'warm'), (err: unknown) => err instanceof StratavecError && err.code === 'ERR_SEGMENT_UNAVAILABLE', `${what}: rehydrating an unavailable segment`);
      // The rest of the collection still answers: exact search over hot + warm only.
      const warmRows = [];
      for (let x = 0; x < SEGS; x++) if (this.tierOf(x) !== 'cold') warmRows.push(...this.rowsOf(x));
      const q = vec(COUNT + Math.floor(this.rand() * NQ));
      assertNotWrong(await this.col.search(q, { k: K, exact: true, includePayload: true, tiers: ['hot', 'warm'] }), q, warmRows, true, `${what}, hot+warm search while unavailable`);
      // Still unavailable on a plain verify, then the operator puts the original object back.
      const r3 = await this.db.verify();
      const c3 = this.checkOf(r3, s, `${what}, verify while unavailable`);
      assert.equal(c3.status, 'unavailable', `${what}: verify while unavailable says ${c3.status}`);
      assert.notEqual(c3.copies.find((x) => x.copy === 'remote')?.status, 'ok', `${what}: the bad remote copy passes a second verify`);
      await this.remote.write(id, dmg.original!);
      const r4 = await this.db.verify({ repair: true });
      const c4 = this.checkOf(r4, s, `${what}, repair after restore`);
      assert.equal(c4.status, 'ok', `${what}: after the original object is back, repair says ${c4.status}: ${JSON.stringify(c4.copies)}`);
      assert.equal(this.col.segments().find((x) => x.id === id)!.status, 'ok', `${what}: segments() status after restore`);
      c.unavailableAsExpected++;
    } else {
      const bad = c2.copies.find((x) => x.copy === t.copy);
      const fixedByRead = t.readBeforeRepair && t.copy !== 'remote';
      if (fixedByRead) {
        // The read path already replaced the bad local copy (or rehydrated over the bad stub).
        assert.equal(c2.status, 'ok', `${what}: after reads repaired it, verify({ repair }) says ${c2.status}: ${JSON.stringify(c2.copies)}`);
        c.repairedByRead++;
      } else {
        assert.equal(c2.status, 'repaired', `${what}: repair says ${c2.status}: ${JSON.stringify(c2.copies)}`);
        const action = t.copy === 'local' ? 'refetched' : t.copy === 'remote' ? 'reuploaded' : 'rebuilt';
        assert.equal(bad?.action, action, `${what}: the ${t.copy} copy was ${bad?.action ?? 'left alone'} (${bad?.detail})`);
        c.repairedByVerify++;
      }
    }

    // A bad local file (not a deleted one) is kept in quarantine/, by whichever path repaired it.
    if (t.copy === 'local' && t.damage !== 'delete') {
      assert.equal((await this.quarantine()).length, quarantined + 1, `${what}: the bad local file was not quarantined`);
    }

    // 4. All good again, and exact answers everywhere.
    const r5 = await this.db.verify();
    this.assertAllOk(r5, `${what}, verify after repair`);
    if (!onlyCopy) c.repaired++;
    // Every tier (rehydrating the cold segments) on cold-segment trials and every 8th trial.
    await this.assertExact(s, t.n % 8 === 0, `${what}, after repair`);
    const got = await this.reads(s, [], true, `${what}, final reads`);
    c.readsServed += got.served;
    await this.restoreTiers();
  }

  /** Runs `n` trials of one case: picks the segment, the damage and the read order. */
  async runCase(kase: CaseName, n: number, first: number): Promise<void> {
    const warmSegs = [0, 1, 2, 3].filter((s) => !COLD_SEGS.has(s));
    const coldSegs = [...COLD_SEGS];
    const pick = <T>(xs: T[]): T => xs[Math.floor(this.rand() * xs.length)]!;
    for (let i = 0; i < n; i++) {
      let copy: CopyKind;
      let damage: Damage;
      let seg: number;
      switch (kase) {
        case 'a': copy = 'local'; damage = 'flip'; seg = pick(warmSegs); break;
        case 'b': copy = 'local'; damage = 'truncate'; seg = pick(warmSegs); break;
        case 'c': copy = 'remote'; damage = pick(['flip', 'truncate']); seg = pick(warmSegs); break;
        case 'd': copy = 'remote'; damage = pick(['flip', 'truncate']); seg = pick(coldSegs); break;
        case 'e': copy = 'stub'; damage = pick(['flip', 'truncate']); seg = pick(coldSegs); break;
        case 'f': {
          damage = 'delete';
          const which = i % 4;
          copy = which === 0 ? 'local' : which === 3 ? 'stub' : 'remote';
          seg = pick(which < 2 ? warmSegs : coldSegs);
          break;
        }
      }
      await this.trial({ n: first + i, kase, copy, damage, seg, readBeforeRepair: this.rand() < 0.5 });
    }
  }

  summary(): string {
    const tot = zeroCounts();
    const per: string[] = [];
    for (const [k, c] of [...this.counts].sort()) {
      for (const f of Object.keys(tot) as (keyof Counts)[]) tot[f] += c[f];
      per.push(`${k}:${c.detected}/${c.trials}${c.unavailableExpected ? ` unavail ${c.unavailableAsExpected}/${c.unavailableExpected}` : ` rep ${c.repaired}`}`);
    }
    return `${this.label}: trials ${tot.trials}, detected ${tot.detected}, repaired ${tot.repaired} (by verify ${tot.repairedByVerify}, by read ${tot.repairedByRead}), `
      + `unavailable-as-expected ${tot.unavailableAsExpected}/${tot.unavailableExpected}, reads served ${tot.readsServed}, refused ${tot.readsRefused} `
      + `(${[...this.refusals].sort().map(([k, v]) => `${k} ${v}`).join(', ') || 'none'}), wrong 0 [${per.join('; ')}]`;
  }

  totals(): Counts {
    const tot = zeroCounts();
    for (const c of this.counts.values()) for (const f of Object.keys(tot) as (keyof Counts)[]) tot[f] += c[f];
    return tot;
  }
}

/**
 * Where the databases live: /dev/shm when it is a writable directory, else os.tmpdir(). Every
 * manifest commit, stub, upload and each remote check's scratch download is fsynced; on a busy
 * disk those fsyncs, not the checks, were most of the run time (a verify of 4 remote copies took
 * 80 ms on /tmp against 39 ms on tmpfs). Mapping, rename and truncation behave the same on tmpfs.
 */
async function scratchRoot(): Promise<string> {
  const shm = '/dev/shm';
  try {
    await fsp.access(shm, fsConstants.W_OK);
    if ((await fsp.stat(shm)).isDirectory()) return shm;
  } catch {
    // not there, or not writable
  }
  return os.tmpdir();
}

function fsHands(h: Harness): RemoteHands {
  const file = (id: string) => path.join(h.dir, 'objects', COL, 'segments', id);
  return {
    read: (id) => fsp.readFile(file(id)),
    write: async (id, bytes) => {
      const tmp = `${file(id)}.scrub-${process.pid}`;
      await fsp.writeFile(tmp, bytes);
      await fsp.rename(tmp, file(id));
    },
    remove: (id) => fsp.rm(file(id)),
  };
}

// ---------------------------------------------------------------------------------------------

/** Trials per case on the file store: 200 in all. */
const FILE_PLAN: [CaseName, number, string][] = [
  ['a', 40, 'flip 1-3 bytes in place in a warm local file'],
  ['b', 30, 'truncate a warm local file (torn copy renamed over it)'],
  ['c', 35, 'flip bytes in / truncate the remote object of a warm segment'],
  ['d', 35, 'flip bytes in / truncate the remote object of a cold segment (its only copy)'],
  ['e', 30, "corrupt a cold segment's id stub"],
  ['f', 30, 'delete one copy outright (warm local, warm remote, cold remote, cold stub)'],
];

// The suites' timeouts only catch a hang: a describe's timeout covers the whole suite, and a loaded
// 2-core machine has run the 200 trials in 177 s.
describe('scrub, file object store: 200 corruption trials', { timeout: 900_000 }, () => {
  const h = new Harness('file store', SEED, fsHands, {});
  before(() => h.setup());
  after(() => h.teardown());

  let first = 0;
  for (const [kase, n, what] of FILE_PLAN) {
    const start = first;
    first += n;
    test(`(${kase}) ${n} trials: ${what}`, async () => {
      await h.runCase(kase, n, start);
      const c = h.counts.get(kase)!;
      assert.equal(c.trials, n);
      assert.equal(c.detected, n, 'every damaged copy detected');
      assert.equal(c.repaired + c.unavailableAsExpected, n);
    });
  }

  test('summary: every trial detected, repaired or (no good copy) unavailable and then revived', () => {
    const tot = h.totals();
    console.log(`scrub summary: ${h.summary()}`);
    assert.equal(tot.trials, 200);
    assert.equal(tot.detected, tot.trials, 'detected === trials');
    assert.equal(tot.unavailableAsExpected, tot.unavailableExpected);
    assert.equal(tot.repaired + tot.unavailableAsExpected, tot.trials);
    assert.ok(tot.repairedByVerify > 0 && tot.repairedByRead > 0, 'both repair paths were exercised');
  });
});

describe('scrub, S3 (s3rver): 20 remote-copy trials', { timeout: 900_000 }, () => {
  let server: S3rverHandle | undefined;
  let client: S3Client | undefined;
  const PREFIX = 'scrub';
  const key = (id: string) => `${PREFIX}/${COL}/segments/${id}`;
  const h = new Harness('s3', (SEED ^ 0x9e3779b9) >>> 0, () => ({
    read: async (id) => {
      const out = await client!.send(new GetObjectCommand({ Bucket: server!.bucket, Key: key(id) }));
      return Buffer.from(await out.Body!.transformToByteArray());
    },
    write: async (id, bytes) => {
      await client!.send(new PutObjectCommand({ Bucket: server!.bucket, Key: key(id), Body: bytes, ContentLength: bytes.length }));
    },
    remove: async (id) => {
      await client!.send(new DeleteObjectCommand({ Bucket: server!.bucket, Key: key(id) }));
    },
  }), {});

  before(async () => {
    server = await startS3rver();
    client = new S3Client({ endpoint: server.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { ...S3RVER_CREDENTIALS } });
    h.extra.objectStore = {
      url: `s3://${server.bucket}/${PREFIX}`, endpoint: server.endpoint, forcePathStyle: true, credentials: { ...S3RVER_CREDENTIALS },
    };
    await h.setup();
  });
  after(async () => {
    await h.teardown();
    client?.destroy();
    await server?.destroy();
  });

  test('(c) 10 trials: the remote object of a warm segment rewritten flipped or truncated', async () => {
    await h.runCase('c', 10, 0);
    assert.equal(h.counts.get('c')!.detected, 10);
  });
  test('(d) 10 trials: the remote object of a cold segment rewritten flipped or truncated', async () => {
    await h.runCase('d', 10, 10);
    assert.equal(h.counts.get('d')!.detected, 10);
  });
  test('summary', () => {
    const tot = h.totals();
    console.log(`scrub summary: ${h.summary()}`);
    assert.equal(tot.trials, 20);
    assert.equal(tot.detected, tot.trials, 'detected === trials');
    assert.equal(tot.unavailableAsExpected, tot.unavailableExpected);
    assert.equal(tot.repaired + tot.unavailableAsExpected, tot.trials);
  });
});
