// workers/pool.ts leans on two things piscina does not promise: the key of the message a thread
// posts once its task module is loaded, and the text of the error a task is rejected with when its
// thread exits. package.json pins piscina's exact version; this suite fails if an upgrade changes
// either, so the pin is never lifted blind.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Piscina } from 'piscina';
import { PISCINA_READY, PISCINA_EXIT } from '../workers/pool.js';

const require = createRequire(import.meta.url);

test('piscina still names its ready message as workers/pool.ts expects', () => {
  const common = require(path.join(path.dirname(require.resolve('piscina')), 'common.js')) as { READY?: unknown };
  assert.equal(common.READY, PISCINA_READY);
});

test('piscina still rejects a task whose thread exits with the message workers/pool.ts parses', async () => {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'stratavec-piscina-'));
  const file = path.join(dir, 'exit.mjs');
  await fsp.writeFile(file, 'export default function () { process.exit(7); }\n');
  const pool = new Piscina({ filename: file, minThreads: 0, maxThreads: 1 });
  pool.on('error', () => undefined); // the dead thread's own error event; the task's rejection is what we check
  try {
    const err = await pool.run(null).then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof Error, 'the task must be rejected');
    const m = PISCINA_EXIT.exec(err.message);
    assert.ok(m, `piscina's exit message changed: ${JSON.stringify(err.message)}`);
    assert.equal(m[1], '7');
  } finally {
    await pool.destroy();
    await fsp.rm(dir, { recursive: true, force: true });
  }
});
