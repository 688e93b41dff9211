// Scratch directories for engine suites: a fresh mkdtemp under os.tmpdir() per test, removed
// afterwards whatever the outcome. Also the small assertion helpers every engine suite needs
// (coded-error matcher, byte flips, a content hash of a directory tree).

import { promises as fsp } from 'node:fs';
import { createHash } from 'node:crypto';
import * as os from 'node:os';
import * as path from 'node:path';
import assert from 'node:assert/strict';
import { StratavecError, type ErrorCode } from '../../format/errors.js';

interface Closable {
  close(): Promise<void>;
}

const tracked = new Set<Closable>();

/**
 * Registers a database so that withTmpDir closes it if the test fails before its own close():
 * a failed assertion must not leave worker threads, the lock or file handles behind.
 */
export function track<T extends Closable>(db: T): T {
  tracked.add(db);
  return db;
}

/** Runs `fn` with a new empty directory, then closes tracked databases and removes the directory. */
export async function withTmpDir<T>(prefix: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), `stratavec-${prefix}-`));
  try {
    return await fn(dir);
  } finally {
    for (const db of [...tracked]) {
      tracked.delete(db);
      // close() is idempotent; a failure here must not hide the test's own failure.
      await db.close().catch(() => undefined);
    }
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

/** For assert.throws / assert.rejects: the error is a StratavecError with exactly `code`. */
export function hasCode(code: ErrorCode): (err: unknown) => true {
  return (err: unknown) => {
    assert.ok(err instanceof StratavecError, `expected StratavecError ${code}, got ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`);
    assert.equal(err.code, code, `expected ${code}, got ${err.code}: ${err.message}`);
    return true;
  };
}

/** For assert.throws / assert.rejects: a plain TypeError (not a coded error). */
export function isTypeError(err: unknown): true {
  assert.ok(err instanceof TypeError, `expected TypeError, got ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`);
  assert.ok(!(err instanceof StratavecError));
  return true;
}

/**
 * Every file under `dir` (relative path, sorted) with the SHA-256 of its bytes, except those
 * `skip` names: files another process rewrites while the tree is walked (a temp file listed may be
 * renamed away before it is read).
 */
export async function hashTree(dir: string, skip: (rel: string) => boolean = () => false): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (rel: string): Promise<void> => {
    const entries = await fsp.readdir(path.join(dir, rel), { withFileTypes: true });
    for (const e of entries.sort((a, b) => a.name.localeCompare(b.name))) {
      const r = path.join(rel, e.name);
      if (skip(r)) continue;
      if (e.isDirectory()) {
        out.set(`${r}/`, 'dir');
        await walk(r);
      } else {
        out.set(r, createHash('sha256').update(await fsp.readFile(path.join(dir, r))).digest('hex'));
      }
    }
  };
  await walk('');
  return out;
}

/** XORs one byte of `file` at `offset` in place (no truncation, no rename). */
export async function flipByte(file: string, offset: number, mask = 0x5a): Promise<void> {
  const fh = await fsp.open(file, 'r+');
  try {
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, offset);
    b[0] = b[0]! ^ mask;
    await fh.write(b, 0, 1, offset);
  } finally {
    await fh.close();
  }
}

/** The files of `sub` (e.g. `segments`, `wal`, `manifest`) of one collection, sorted by name. */
export async function collectionFiles(dbDir: string, collection: string, sub: 'segments' | 'wal' | 'manifest'): Promise<string[]> {
  const d = path.join(dbDir, 'collections', collection, sub);
  return (await fsp.readdir(d)).filter((n) => !n.startsWith('.')).sort().map((n) => path.join(d, n));
}

/** Polls `cond` (an event-loop turn apart) until it holds; fails after `limitMs` of wall time. */
export async function waitFor(cond: () => boolean, what: string, limitMs = 60_000): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > limitMs) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
