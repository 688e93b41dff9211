// Searches and gets racing migrations: while segments cycle hot -> warm -> cold -> warm -> hot,
// every concurrent read must succeed and return exactly what the data says (no transient
// ERR_SEGMENT_UNAVAILABLE from a demotion landing mid-read, no duplicate or missing hits).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Database } from '../engine/index.js';
import { clusteredDataset } from '../harness/datasets.js';
import { withTmpDir } from './helpers/tmp.js';

const DIM = 16;
const COUNT = 8000;

test('reads stay correct while segments migrate between all tiers', async () => {
  await withTmpDir('sv-race-', async (dir) => {
    const data = clusteredDataset({ count: COUNT + 20, dim: DIM, seed: 7 });
    const db = await Database.open(dir, { segmentMaxRecords: 2000, warmScanMaxRecords: 1000, tiering: { intervalMs: 0 } });
    try {
      const col = await db.createCollection('race', { dimension: DIM });
      for (let b = 0; b < COUNT; b += 1000) {
        await col.upsert(Array.from({ length: 1000 }, (_, j) => ({
          id: `r${b + j}`, vector: data.subarray((b + j) * DIM, (b + j + 1) * DIM), payload: { n: b + j },
        })));
      }
      await col.flush();
      const queries = Array.from({ length: 20 }, (_, q) => data.subarray((COUNT + q) * DIM, (COUNT + q + 1) * DIM));
      const expected = await Promise.all(queries.map((q) => col.search(q, { k: 10, exact: true, includePayload: false })));
      const segs = col.segments().map((s) => s.id);
      assert.equal(segs.length, 4);

      let stop = false;
      let reads = 0;
      const reader = async (offset: number) => {
        for (let i = offset; !stop; i++) {
          const q = i % queries.length;
          const hits = await col.search(queries[q]!, { k: 10, exact: true, includePayload: false });
          assert.deepEqual(hits, expected[q], `query ${q} changed while migrating`);
          const n = (i * 397) % COUNT;
          const [rec] = await col.get([`r${n}`]);
          assert.equal(rec?.payload?.n, n);
          reads++;
          // A search of verified warm/hot segments never does I/O, so a tight loop of them would
          // run on microtasks alone and starve the migration's file and network callbacks.
          await new Promise((resolve) => setImmediate(resolve));
        }
      };
      const readers = [reader(0), reader(7), reader(13)];
      const route = ['warm', 'cold', 'warm', 'hot', 'cold', 'hot', 'warm'] as const;
      try {
        for (const to of route) {
          for (const id of segs) {
            const moved = await db.migrate(id, to);
            assert.equal(moved.to, to);
          }
        }
      } finally {
        stop = true;
        await Promise.all(readers);
      }
      // Readers rehydrate cold segments as they go; once they stop, moves settle where asked.
      for (const id of segs) await db.migrate(id, 'cold');
      assert.ok(col.segments().every((s) => s.tier === 'cold'), 'all segments cold once reads stop');
      const moves = db.stats().movement.migrations;
      assert.ok((moves['cold->warm'] ?? 0) > 0, 'reads rehydrated cold segments while migrating');
      assert.ok(reads > 0, 'readers ran');
      assert.equal(col.count(), COUNT);
    } finally {
      await db.close();
    }
  });
});
