// The parent side of the crash suites (test/durability.test.ts, test/migration-crash.test.ts): running
// a child program (crash-writer.ts, crash-migrator.ts) until a SIGKILL, and checking the reopened
// store against a model of the workload ops the child acknowledged (records, the in-flight ops'
// all-or-nothing outcome, search).

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { createInterface } from 'node:readline';
import type { TestContext } from 'node:test';
import { isDeepStrictEqual } from 'node:util';
import type { Collection, StoredRecord } from '../../engine/index.js';
import { idOf, mulberry32, opSpec, payloadFor, vectorFor, type WorkloadConfig } from './crash-writer.js';

/** The base seed when no environment variable gives one: every run replays the same workload and kill plan. */
export const DEFAULT_BASE_SEED = 1;

/**
 * The suite's base seed: from the environment variable `env`, else STRATAVEC_TEST_SEED, else
 * DEFAULT_BASE_SEED. Fixed by default, so a red run is a bug to replay rather than a dice roll;
 * set the variable to explore other workloads.
 */
export function baseSeed(env: string): number {
  const given = process.env[env] ?? process.env['STRATAVEC_TEST_SEED'];
  return given !== undefined ? Number(given) >>> 0 : DEFAULT_BASE_SEED;
}

/** A seed derived from `a` and `b` (a scenario's from the base seed, a round's from the scenario's). */
export function mixSeed(a: number, b: number): number {
  return mulberry32((a ^ Math.imul(b + 1, 0x9e3779b1)) >>> 0)() * 2 ** 32 >>> 0;
}

/** Removes a scenario's directory, unless it failed and STRATAVEC_KEEP_DIR is set. */
export async function removeScenarioDir(t: TestContext, dir: string, ok: boolean): Promise<void> {
  if (ok || process.env.STRATAVEC_KEEP_DIR === undefined) await fsp.rm(dir, { recursive: true, force: true });
  else t.diagnostic(`kept ${dir}`);
}

// ---- the child ------------------------------------------------------------------------------

export interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/**
 * A child program (`node <script> <config-json>`) that runs until the parent kills it: collects its
 * stdout lines and stderr, and keeps the kill bookkeeping (the first kill wins and is the trigger).
 */
export class KillableChild {
  readonly lines: string[] = [];
  stderr = '';
  /** The child has been sent its SIGKILL. */
  killed = false;
  /** A kill is scheduled (a trigger fired); later trigger events are to be ignored. */
  armed = false;
  /** What the kill was for. */
  trigger = 'fallback';
  readonly #child: ChildProcess;
  readonly #timers: NodeJS.Timeout[] = [];
  readonly #closed: Promise<ChildExit>;

  constructor(script: string, cfg: unknown) {
    const child = spawn(process.execPath, [script, JSON.stringify(cfg)], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.#child = child;
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (d: string) => {
      this.stderr += d;
    });
    this.#closed = new Promise<ChildExit>((resolve) => {
      child.on('close', (code, signal) => resolve({ code, signal }));
    });
  }

  /** Killed, or a kill is scheduled: trigger events are to be ignored from now on. */
  get settled(): boolean {
    return this.killed || this.armed;
  }

  /** Kills the child now, for `why` (a no-op once killed). */
  kill(why: string): void {
    if (this.killed) return;
    this.killed = true;
    this.trigger = why;
    this.#child.kill('SIGKILL');
  }

  /** Arms: kills the child `ms` from now (at once when `ms` <= 0), for `why`. */
  killAfter(ms: number, why: string): void {
    this.armed = true;
    if (ms <= 0) this.kill(why);
    else this.#timers.push(setTimeout(() => this.kill(why), ms));
  }

  /** A backstop: kills the child `ms` from now unless something else has (does not arm). */
  killAt(ms: number, why: string): void {
    this.#timers.push(setTimeout(() => this.kill(why), ms));
  }

  /** Reads the child's stdout: each line is kept in `lines`, then handed to `onLine`. */
  readLines(onLine: (l: string) => void): void {
    createInterface({ input: this.#child.stdout! }).on('line', (l) => {
      this.lines.push(l);
      onLine(l);
    });
  }

  /** Waits for the child to end, then clears the timers, runs `cleanup` and makes sure it is gone. */
  async wait(cleanup?: () => void): Promise<ChildExit> {
    try {
      return await this.#closed;
    } finally {
      for (const t of this.#timers) clearTimeout(t);
      cleanup?.();
      if (this.#child.exitCode === null && this.#child.signalCode === null) this.#child.kill('SIGKILL');
    }
  }

  /** Asserts the child ended by the parent's kill, not on its own; returns its ERR line if any. */
  assertKilled(name: string, exit: ChildExit): string | undefined {
    const err = this.lines.find((l) => l.startsWith('ERR '));
    assert.ok(this.killed && exit.signal === 'SIGKILL',
      `${name} ended on its own (code ${exit.code}, signal ${exit.signal})${err ? `: ${err}` : ''}\nstderr: ${this.stderr.slice(-4000)}`);
    return err;
  }
}

// ---- the model ------------------------------------------------------------------------------

/** id number -> number of the op that wrote the live version. */
export type Model = Map<number, number>;

export function applyOp(w: WorkloadConfig, model: Model, op: number): void {
  const spec = opSpec(w, op);
  if (spec.kind === 'upsert') for (const n of spec.ids) model.set(n, op);
  else if (spec.kind === 'delete') for (const n of spec.ids) model.delete(n);
}

export function sameVector(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

export function l2sq(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i]! - b[i]!) ** 2;
  return s;
}

/** Every id of the workload's id space, in id-number order (index n is `id-<n>`). */
export function allIds(w: WorkloadConfig): string[] {
  return Array.from({ length: w.idSpace }, (_, n) => idOf(n));
}

export interface Diff {
  count: number;
  /** The first few differences, one line each. */
  samples: string[];
}

/**
 * How the records `got` (index n: `id-<n>`) differ from `model`. A record that should be absent, or
 * is another version than the model's, is described by `found(n, want, rec)` (want: the model's op,
 * undefined for absent).
 */
export function diffModel(
  w: WorkloadConfig, model: Model, got: (StoredRecord | undefined)[],
  found: (n: number, want: number | undefined, rec: StoredRecord) => string,
): Diff {
  let count = 0;
  const samples: string[] = [];
  const note = (s: string) => {
    count++;
    if (samples.length < 8) samples.push(s);
  };
  for (let n = 0; n < w.idSpace; n++) {
    const want = model.get(n);
    const rec = got[n];
    if (want === undefined) {
      if (rec !== undefined) note(`${idOf(n)}: ${found(n, undefined, rec)}`);
    } else if (rec === undefined) {
      note(`${idOf(n)}: expected the version written by op ${want}, found absent`);
    } else if (rec.id !== idOf(n) || !sameVector(rec.vector, vectorFor(w, want, n)) || !isDeepStrictEqual(rec.payload, payloadFor(w, want, n))) {
      note(`${idOf(n)}: ${found(n, want, rec)}`);
    }
  }
  return { count, samples };
}

/** A candidate outcome of the in-flight ops: bit i of `mask` set means the i-th was applied. */
export interface Outcome {
  mask: number;
  model: Model;
}

/**
 * Which outcome of the ops in flight at the kill explains the store: `model` plus the acknowledged
 * ops plus some subset of `uncertain` (applied in op order), where `diff` counts what a candidate
 * model gets wrong. Returns the first exact match, or else the closest candidate.
 */
export function explainStore(
  w: WorkloadConfig, model: Model, acked: Set<number>, uncertain: number[], diff: (m: Model) => Diff,
): { match: Outcome } | { match: undefined; best: Outcome & Diff } {
  let best: (Outcome & Diff) | undefined;
  for (let mask = 0; mask < 1 << uncertain.length; mask++) {
    const m: Model = new Map(model);
    const ops = [...acked, ...uncertain.filter((_, i) => (mask & (1 << i)) !== 0)].sort((a, b) => a - b);
    for (const op of ops) applyOp(w, m, op);
    const d = diff(m);
    if (d.count === 0) return { match: { mask, model: m } };
    if (!best || d.count < best.count) best = { mask, model: m, ...d };
  }
  return { match: undefined, best: best! };
}

// ---- search ---------------------------------------------------------------------------------

/** One search of checkSearch: k hits, by exact scan, or filtered on the payload's `grp`. */
export interface SearchCheck {
  k: number;
  exact?: boolean;
  grp?: number;
}

/**
 * Runs each search with a random query and checks every hit against the model: a live id, at most
 * once, with the live version's payload and distance, sorted by distance (and in the filter's group;
 * an exact search returns min(k, live) hits, the nearest first). Problems are collected in
 * `problems` (prefixed with `where`), not thrown, so that a search defect does not stop the rounds
 * after it; the scenario fails on them at the end.
 */
export async function checkSearch(
  col: Collection, w: WorkloadConfig, model: Model, rng: () => number, searches: SearchCheck[], where: string, problems: string[],
): Promise<void> {
  const check = (ok: boolean, msg: () => string) => {
    if (!ok) problems.push(`${where}: ${msg()}`);
  };
  for (const { k, exact = false, grp } of searches) {
    const query = new Float32Array(w.dimension);
    for (let i = 0; i < query.length; i++) query[i] = (rng() - 0.5) * 8;
    const hits = await col.search(query, grp === undefined ? { k, exact } : { k, filter: { grp } });
    const what = `search (k=${k}${exact ? ', exact' : ''}${grp === undefined ? '' : `, filter grp=${grp}`})`;
    check(hits.length <= k, () => `${what} returned ${hits.length} > k=${k} hits`);
    check(model.size === 0 || grp !== undefined || hits.length > 0, () => `${what} over ${model.size} live records returned nothing`);
    if (exact) check(hits.length === Math.min(k, model.size), () => `${what} over ${model.size} live records returned ${hits.length} hits`);
    const seen = new Set<string>();
    const twice = hits.filter((h) => seen.size === seen.add(h.id).size).map((h) => h.id);
    check(twice.length === 0, () => `${what} returned ${twice.length} id(s) twice (${twice.join(' ')}): [${hits.map((x) => x.id).join(' ')}]`);
    let prev = -Infinity;
    for (const h of hits) {
      const n = Number(h.id.slice(3));
      const version = model.get(n);
      if (h.id !== idOf(n) || version === undefined) {
        check(false, () => `search returned ${h.id}, which is deleted or was never written`);
        continue;
      }
      const payload = payloadFor(w, version, n);
      check(isDeepStrictEqual(h.payload, payload),
        () => `search hit ${h.id} has payload ${JSON.stringify(h.payload)}, the live version (op ${version}) has ${JSON.stringify(payload)}`);
      if (grp !== undefined) check((payload as { grp?: number } | undefined)?.grp === grp, () => `filtered search returned ${h.id} outside grp ${grp}`);
      const d = l2sq(query, vectorFor(w, version, n));
      check(Math.abs(h.distance - d) <= 1e-4 * Math.max(1, d),
        () => `search hit ${h.id} at distance ${h.distance}, the live version (op ${version}) is at ${d}: a stale vector`);
      check(h.distance >= prev - 1e-6, () => 'hits not sorted by distance');
      prev = h.distance;
    }
    if (exact && model.size > 0) {
      // Exact search must find the true nearest live record.
      let best = Infinity;
      for (const [n, op] of model) best = Math.min(best, l2sq(query, vectorFor(w, op, n)));
      check(hits.length > 0 && Math.abs(hits[0]!.distance - best) <= 1e-4 * Math.max(1, best),
        () => `exact search's nearest hit is at ${hits[0]?.distance}, the nearest live record at ${best}`);
    }
  }
}
