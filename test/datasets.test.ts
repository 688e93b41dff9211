// The bench and test data generators (harness/datasets.ts): what benches rely on beyond the values,
// here clusteredDataset's labels (the cluster of each row, for workloads drawn near chosen clusters).

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { clusteredDataset } from '../harness/datasets.js';

test('clusteredDataset labels: passing them changes no value, and rows of one label lie near each other', () => {
  const seed = 11;
  const opts = { count: 2000, dim: 16, clusters: 20, seed, spread: 0.1 };
  const plain = clusteredDataset(opts);
  const labels = new Uint32Array(opts.count);
  const labelled = clusteredDataset({ ...opts, labels });
  assert.deepEqual(labelled, plain, `seed ${seed}: labels changed the generated values`);
  const used = new Set(labels);
  assert.ok([...used].every((c) => c < opts.clusters), `seed ${seed}: a label out of range`);
  assert.equal(used.size, opts.clusters, `seed ${seed}: 2000 rows over 20 clusters left one empty`);
  // Each row's nearest other row carries its label: the labels are the clusters the values show.
  const d2 = (a: number, b: number) => {
    let s = 0;
    for (let j = 0; j < opts.dim; j++) s += (plain[a * opts.dim + j]! - plain[b * opts.dim + j]!) ** 2;
    return s;
  };
  let agree = 0;
  for (let r = 0; r < 200; r++) {
    let best = -1;
    for (let o = 0; o < opts.count; o++) if (o !== r && (best < 0 || d2(r, o) < d2(r, best))) best = o;
    if (labels[best] === labels[r]) agree++;
  }
  assert.ok(agree >= 190, `seed ${seed}: only ${agree} of 200 rows have a nearest neighbour of their own label`);
});

test('clusteredDataset labels: an array shorter than count is a RangeError', () => {
  assert.throws(() => clusteredDataset({ count: 10, dim: 4, labels: new Uint32Array(9) }), RangeError);
});
