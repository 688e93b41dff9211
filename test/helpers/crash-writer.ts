// The child process of the crash-durability suite (test/durability.test.ts), and the deterministic
// workload both sides share. Run as `node crash-writer.js <config-json>`: it opens the database,
// then issues ops forever (it never exits by itself), reporting on stdout, one line each:
//
//   OPEN                          the database is open (recovery done)
//   BEGIN <op>                    written before op <op> is issued
//   ACK <op>                      op <op>'s promise resolved (the batch is durable)
//   SEAL <frozen> <seals>         the collection's seal queue length or seal count changed
//   ERR <op> <message>            an op rejected (the process then exits with code 3)
//
// Lines go out with writeSync on fd 1: a BEGIN is in the pipe before the op starts, so the parent
// never misses an op that could have reached the disk. Every op is a pure function of
// (seed, op number), so the parent recomputes what each op wrote from its number alone.

import { writeSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Database } from '../../engine/index.js';
import type { Collection, Payload } from '../../engine/index.js';
import { mulberry32 } from '../../harness/datasets.js';

export { mulberry32 };

export interface WorkloadConfig {
  seed: number;
  dimension: number;
  /** Ids are `id-<n>` with n in [0, idSpace): upserts of an existing n replace it. */
  idSpace: number;
  batchMin: number;
  batchMax: number;
  /** Probability that an op is a delete batch / a flush; the rest are upserts. */
  pDelete: number;
  pFlush: number;
}

export interface WriterConfig extends WorkloadConfig {
  dir: string;
  collection: string;
  segmentMaxRecords: number;
  workers: number;
  /** Number of the first op this run issues (ops before it were issued by earlier runs). */
  startOp: number;
  /** Ops kept in flight at once (1 = strictly sequential; more exercises group commit). */
  depth: number;
}

export type OpSpec =
  | { kind: 'upsert'; ids: number[] }
  | { kind: 'delete'; ids: number[] }
  | { kind: 'flush' };

function mix(...parts: number[]): number {
  let h = 0x811c9dc5;
  for (const p of parts) {
    h = Math.imul(h ^ (p >>> 0), 0x01000193);
    h ^= h >>> 13;
    h = Math.imul(h, 0x5bd1e995);
    h ^= h >>> 15;
  }
  return h >>> 0;
}

export const idOf = (n: number): string => `id-${n}`;

/** `count` distinct numbers in [0, space), in a seeded random order. */
function pickIds(rng: () => number, space: number, count: number): number[] {
  const chosen = new Set<number>();
  const want = Math.min(count, space);
  while (chosen.size < want) chosen.add(Math.floor(rng() * space));
  return [...chosen];
}

/** What op number `op` does: a pure function of the workload and `op`. */
export function opSpec(w: WorkloadConfig, op: number): OpSpec {
  const rng = mulberry32(mix(w.seed, op, 1));
  const r = rng();
  if (r < w.pFlush) return { kind: 'flush' };
  const size = w.batchMin + Math.floor(rng() * (w.batchMax - w.batchMin + 1));
  if (r < w.pFlush + w.pDelete) return { kind: 'delete', ids: pickIds(rng, w.idSpace, Math.max(1, Math.floor(size / 2))) };
  return { kind: 'upsert', ids: pickIds(rng, w.idSpace, size) };
}

/** The vector op `op` wrote for id number `n` (float32-exact: every component is a float32). */
export function vectorFor(w: WorkloadConfig, op: number, n: number): Float32Array {
  const rng = mulberry32(mix(w.seed, op, n, 2));
  const v = new Float32Array(w.dimension);
  for (let i = 0; i < v.length; i++) v[i] = (rng() - 0.5) * 8;
  return v;
}

/** The payload op `op` wrote for id number `n`; some versions carry none. */
export function payloadFor(w: WorkloadConfig, op: number, n: number): Payload | undefined {
  const h = mix(w.seed, op, n, 3);
  if (h % 9 === 0) return undefined;
  return { op, n, grp: h % 4, tag: `v${op}/${n}`, nested: { even: (op + n) % 2 === 0, list: [op % 7, n % 5] } };
}

// ---- what the child programs share (this one and crash-migrator.ts) --------------------------

/** Writes one report line to stdout at once (writeSync: it is in the pipe before the next step). */
export function line(s: string): void {
  const buf = Buffer.from(`${s}\n`);
  for (let off = 0; off < buf.length;) {
    try {
      off += writeSync(1, buf, off);
    } catch (err) {
      // A non-blocking pipe that is momentarily full: retry until the parent has read.
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
    }
  }
}

/** An error (its stack where it has one) on one report line. */
export const oneLine = (err: unknown): string => String((err as Error)?.stack ?? err).replace(/\n/g, ' | ');

/** Opens the workload's collection, creating it on the first run, and reports OPEN. */
export async function openCollection(db: Database, cfg: Pick<WriterConfig, 'collection' | 'dimension'>): Promise<Collection> {
  const col = db.listCollections().includes(cfg.collection)
    ? db.collection(cfg.collection)
    : await db.createCollection(cfg.collection, { dimension: cfg.dimension, metric: 'l2', hnsw: { M: 8, efConstruction: 40 } });
  line('OPEN');
  return col;
}

/**
 * Issues write op `op` of the workload: BEGIN before, ACK once its promise resolved; ERR and exit
 * code 3 if it rejects.
 */
export async function writeOp(w: WorkloadConfig, col: Collection, op: number): Promise<void> {
  const spec = opSpec(w, op);
  line(`BEGIN ${op}`);
  try {
    if (spec.kind === 'flush') {
      await col.flush();
    } else if (spec.kind === 'delete') {
      await col.delete(spec.ids.map(idOf));
    } else {
      await col.upsert(spec.ids.map((n) => {
        const payload = payloadFor(w, op, n);
        return payload === undefined ? { id: idOf(n), vector: vectorFor(w, op, n) } : { id: idOf(n), vector: vectorFor(w, op, n), payload };
      }));
    }
  } catch (err) {
    line(`ERR ${op} ${oneLine(err)}`);
    process.exit(3);
  }
  line(`ACK ${op}`);
}

/** Runs a child program's main(): a rejection is reported as ERR -1 and exits with code 3. */
export function runMain(url: string, main: () => Promise<void>): void {
  if (process.argv[1] !== fileURLToPath(url)) return;
  main().catch((err: unknown) => {
    line(`ERR -1 ${oneLine(err)}`);
    process.exit(3);
  });
}

// ---- the writer -------------------------------------------------------------------------------

async function main(): Promise<void> {
  const cfg = JSON.parse(process.argv[2] ?? '') as WriterConfig;
  const db = await Database.open(cfg.dir, { segmentMaxRecords: cfg.segmentMaxRecords, workers: cfg.workers });
  const col = await openCollection(db, cfg);

  // Seal activity is only visible through stats(); poll it so the parent can aim kills at seals.
  let lastFrozen = -1;
  let lastSeals = -1;
  const poll = () => {
    const s = db.stats().collections[cfg.collection];
    if (!s) return;
    if (s.sealing !== lastFrozen || s.seal.seals !== lastSeals) {
      lastFrozen = s.sealing;
      lastSeals = s.seal.seals;
      line(`SEAL ${lastFrozen} ${lastSeals}`);
    }
  };
  poll();
  setInterval(poll, 1);

  const inFlight = new Set<Promise<void>>();
  for (let op = cfg.startOp; ; op++) {
    const p = writeOp(cfg, col, op).finally(() => inFlight.delete(p));
    inFlight.add(p);
    while (inFlight.size >= cfg.depth) await Promise.race(inFlight);
  }
}

runMain(import.meta.url, main);
