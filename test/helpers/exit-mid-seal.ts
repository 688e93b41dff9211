// A child process for pool.test.ts: starts a real seal on a one-thread pool, then calls
// process.exit(3) `delayMs` into the build. Exit code 3 means the exit went through; 134 (SIGABRT)
// means a thread was terminated inside hnswlib. Usage: node exit-mid-seal.js <dir> <delayMs>

import * as path from 'node:path';
import { WorkerPool } from '../../workers/pool.js';
import { uniformDataset } from '../../harness/datasets.js';

const [dir, delay] = process.argv.slice(2);
if (dir === undefined || delay === undefined) throw new Error('usage: exit-mid-seal <dir> <delayMs>');
const count = 20_000;
const dim = 32;
const vectors = new SharedArrayBuffer(count * dim * 4);
new Float32Array(vectors).set(uniformDataset({ count, dim, seed: 3 }));
const pool = new WorkerPool(1);
await pool.run('verifySegment', { path: path.join(dir, 'absent') }).catch(() => undefined); // the thread is up
void pool.run('seal', {
  segmentId: 'c.1', collection: 'c', outPath: path.join(dir, 'c.1.seg'), tmpDir: dir,
  dimension: dim, metric: 'l2', hnsw: { M: 16, efConstruction: 200, efSearch: 64 },
  vectors, count, rows: null,
  ids: Array.from({ length: count }, (_, i) => `id-${i}`), payloads: new Array<null>(count).fill(null),
  createdAt: 0, seed: 1,
});
setTimeout(() => {
  console.log('exiting mid-seal');
  process.exit(3);
}, Number(delay));
