// Opening one collection after a clean close or a crash: remove what a crashed write left behind,
// attach every committed segment (mapping warm files, reading cold stubs, repairing a damaged
// local copy from the remote one), rebuild the id -> location map, and replay the WAL over the
// last manifest. A torn tail record is dropped; a corrupt middle record is an error.
// Read-only (engine/read-only.ts): nothing is removed or truncated, and a torn tail (possibly a
// frame the writer is appending right now) is only left out of what is replayed in memory.

import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { TEMP_PREFIX } from '../format/fsutil.js';
import { readWal, WalWriter } from '../format/wal.js';
import type { WarmTier } from '../tiers/warm.js';
import type { CopyVerifier } from '../tiers/verify.js';
import { SegmentRegistry } from './segment-registry.js';
import { WAL_RE, walPath, type WritePath } from './write-path.js';

export async function recoverCollection(reg: SegmentRegistry, warm: WarmTier, verifier: CopyVerifier, writes: WritePath, readOnly = false): Promise<void> {
  if (!readOnly) await removeLeftovers(reg, warm);
  for (const seg of reg.list()) {
    const ids = await verifier.attach(seg);
    if (ids) reg.index(seg, ids);
  }
  await replayWal(reg, writes, readOnly);
}

async function removeLeftovers(reg: SegmentRegistry, warm: WarmTier): Promise<void> {
  // We hold the directory lock, so nothing here can be in use: temp files from a crashed write,
  // and segment files a crashed seal wrote but never committed.
  // A warm segment keeps its file, a cold one its id stub; anything else is a leftover (e.g. the
  // local file of a segment whose move to cold committed just before a crash).
  const segDir = warm.dirFor(reg.name);
  const known = new Set(reg.manifest.segments.map((s) => path.basename(warm.localFileOf(reg.name, s))));
  for (const name of await fsp.readdir(segDir)) {
    if (!known.has(name)) await fsp.rm(path.join(segDir, name), { force: true });
  }
  const mdir = SegmentRegistry.manifestDir(reg.dir);
  for (const name of await fsp.readdir(mdir)) {
    if (name.startsWith(TEMP_PREFIX)) await fsp.rm(path.join(mdir, name), { force: true });
  }
}

async function replayWal(reg: SegmentRegistry, writes: WritePath, readOnly: boolean): Promise<void> {
  const walDir = path.join(reg.dir, 'wal');
  const first = reg.manifest.walSeq;
  const seqs: number[] = [];
  for (const name of await fsp.readdir(walDir)) {
    const m = WAL_RE.exec(name);
    if (!m) {
      if (name.startsWith(TEMP_PREFIX) && !readOnly) await fsp.rm(path.join(walDir, name), { force: true });
      continue;
    }
    const seq = Number(m[1]);
    // Files before the manifest's walSeq are covered by committed segments.
    if (seq >= first) seqs.push(seq);
    else if (!readOnly) await fsp.rm(path.join(walDir, name), { force: true });
  }
  seqs.sort((a, b) => a - b);
  for (const seq of seqs) {
    const file = walPath(reg.dir, seq);
    const { ops, validBytes, tornBytes } = await readWal(file, reg.dimension);
    for (const op of ops) writes.apply(op);
    if (tornBytes > 0 && !readOnly) {
      // An unacknowledged write torn by a crash: drop it so appends continue on a clean frame.
      const w = await WalWriter.open(file);
      await w.truncateTo(validBytes);
      await w.close();
    }
  }
  await writes.resume(seqs.at(-1) ?? first, seqs[0] ?? first);
}
