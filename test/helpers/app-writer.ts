// The child process of test/cli-readonly.test.ts: an app holding a database open (the directory
// lock and the writer claim) while the admin CLI looks at it. Run as
// `node app-writer.js <config-json>`. It opens, reads the ids `touch` (so it has access statistics
// to publish; a cold one's read would make it warm), says READY <pid>, then obeys one command per
// stdin line:
//
//   write <tag> <n>    upsert n rows <tag>-<i> (acknowledged: in the WAL), reply OK <count>
//   flush              seal what is growing, reply OK <count>
//   churn <tag> <n>    n rounds of (upsert 20 rows, flush), reply OK <count> (new manifest
//                      versions and dropped WAL files while a reader opens beside it)
//   quit               close, reply BYE, exit 0
//
// Any failure: ERR <code> <message>, exit 3. Lines go out with writeSync.

import { writeSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Database, type DatabaseOptions } from '../../engine/index.js';

export interface AppWriterConfig {
  dir: string;
  dimension: number;
  options: DatabaseOptions;
  touch: string[];
}

const say = (line: string) => writeSync(1, `${line}\n`);

export function rowVector(tag: string, i: number, dimension: number): number[] {
  let h = 0;
  for (const c of tag) h = (h * 31 + c.charCodeAt(0)) % 997;
  return Array.from({ length: dimension }, (_, j) => ((h + i * 7 + j * 13) % 101) / 10);
}

async function main(): Promise<void> {
  const cfg = JSON.parse(process.argv[2]!) as AppWriterConfig;
  const db = await Database.open(cfg.dir, cfg.options);
  const col = db.collection('docs');
  await col.get(cfg.touch);
  const rows = (tag: string, n: number) => Array.from({ length: n }, (_, i) => ({ id: `${tag}-${i}`, vector: rowVector(tag, i, cfg.dimension), payload: { tag, i } }));
  say(`READY ${process.pid}`);
  for await (const line of createInterface({ input: process.stdin })) {
    const [cmd, tag, n] = line.trim().split(' ');
    if (cmd === 'write') await col.upsert(rows(tag!, Number(n)));
    else if (cmd === 'flush') await col.flush();
    else if (cmd === 'churn') {
      for (let r = 0; r < Number(n); r++) {
        await col.upsert(rows(`${tag}${r}`, 20));
        await col.flush();
      }
    } else if (cmd === 'quit') {
      await db.close();
      say('BYE');
      process.exit(0);
    }
    say(`OK ${col.count()}`);
  }
}

// Imported by the test for rowVector: run only as the child's entry point.
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((err: unknown) => {
    say(`ERR ${(err as { code?: string }).code ?? 'none'} ${(err as Error).message.replace(/\n/g, ' ')}`);
    process.exit(3);
  });
}
