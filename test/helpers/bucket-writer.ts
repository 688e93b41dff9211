// The child process of test/bucket-fence.test.ts: one writer on a shared bucket prefix. Run as
// `node bucket-writer.js <config-json>`. It opens the database (claiming the prefix), says READY,
// waits for a line on stdin (so two children race only once both hold a claim), then commits
// `commits` times: one upsert of `<tag>-<i>` and a flush (a new segment, so a new manifest
// version). One line per event on stdout:
//
//   READY <epoch>
//   ACK <i> <version> <sha256 of the local manifest file of that version>
//   ERR <i> <code> <message>       (then exit code 3)
//   DONE
//
// Lines go out with writeSync, so an ACK is in the pipe before anything else happens.

import { writeSync, readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import * as path from 'node:path';
import { Database, StratavecError } from '../../engine/index.js';

export interface BucketWriterConfig {
  dir: string;
  objectStore: { url: string; endpoint: string; credentials: { accessKeyId: string; secretAccessKey: string }; forcePathStyle: true };
  tag: string;
  commits: number;
  dimension: number;
  takeover: boolean;
  /** Wait for a stdin line before committing. */
  waitForGo: boolean;
}

const say = (line: string) => writeSync(1, `${line}\n`);

async function main(): Promise<void> {
  const cfg = JSON.parse(process.argv[2]!) as BucketWriterConfig;
  let db: Database;
  try {
    db = await Database.open(cfg.dir, { objectStore: cfg.objectStore, takeover: cfg.takeover, workers: 0, tiering: { intervalMs: 0 }, maintenance: { gcIntervalMs: 0, scrubIntervalMs: 0, compactIntervalMs: 0 } });
  } catch (err) {
    say(`ERR -1 ${(err as StratavecError).code ?? 'none'} ${(err as Error).message.replace(/\n/g, ' ')}`);
    process.exit(3);
  }
  say(`READY ${db.stats().writer.epoch}`);
  if (cfg.waitForGo) {
    await new Promise<void>((resolve) => {
      process.stdin.once('data', () => {
        process.stdin.pause();
        resolve();
      });
    });
  }
  const col = db.collection('docs');
  for (let i = 0; i < cfg.commits; i++) {
    try {
      const vector = Array.from({ length: cfg.dimension }, (_, d) => Math.sin(i * 7 + d + cfg.tag.length));
      await col.upsert([{ id: `${cfg.tag}-${i}`, vector, payload: { tag: cfg.tag, i } }]);
      await col.flush();
      await db.flushUploads(); // the upload commits a version of its own; let it land first
      const v = db.stats().collections['docs']!.manifestVersion;
      const file = path.join(cfg.dir, 'collections', 'docs', 'manifest', `${String(v).padStart(12, '0')}.manifest`);
      say(`ACK ${i} ${v} ${createHash('sha256').update(readFileSync(file)).digest('hex')}`);
    } catch (err) {
      say(`ERR ${i} ${(err as StratavecError).code ?? 'none'} ${(err as Error).message.replace(/\n/g, ' ')}`);
      await db.close().catch(() => undefined);
      process.exit(3);
    }
  }
  await db.close();
  say('DONE');
  process.exit(0); // stdin is still open (the parent's pipe) and would keep the process alive
}

void main();
