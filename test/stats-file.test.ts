// The published stats file: rewritten when a figure changes, and for the memory figures alone
// (which move at every tick) only every MEMORY_REFRESH_TICKS ticks. The interval timer is node's
// mock, so ticks are counted, not timed; writes are counted by the publisher's calls to now().

import { test, mock } from 'node:test';
import assert from 'node:assert/strict';
import { MEMORY_REFRESH_TICKS, StatsPublisher, readPublishedStats } from '../engine/stats-file.js';
import { withTmpDir } from './helpers/tmp.js';

test('an idle database rewrites stats.json for its memory figures only every MEMORY_REFRESH_TICKS ticks; any other change at the next tick', async () => {
  await withTmpDir('stats-file', async (dir) => {
    mock.timers.enable({ apis: ['setInterval'] });
    try {
      let records = 10;
      let heap = 0;
      let writes = 0;
      const publisher = new StatsPublisher(dir, 1000, () => ({ collections: { docs: { records } }, memory: { heapUsedBytes: ++heap } }), () => ++writes);
      publisher.start();
      assert.equal(writes, 1, 'the first figures are written at start');
      for (let t = 1; t < MEMORY_REFRESH_TICKS; t++) {
        mock.timers.tick(1000);
        assert.equal(writes, 1, `tick ${t}: only the memory figures moved`);
      }
      mock.timers.tick(1000);
      assert.equal(writes, 2, `tick ${MEMORY_REFRESH_TICKS}: the memory figures are refreshed`);
      mock.timers.tick(1000);
      assert.equal(writes, 2);
      records = 11;
      mock.timers.tick(1000);
      assert.equal(writes, 3, 'a changed record count is written at the next tick');
      mock.timers.tick(1000);
      assert.equal(writes, 3);
      await publisher.stop();
      assert.equal(writes, 4, 'close writes the final figures');
      const published = await readPublishedStats(dir);
      assert.equal(published?.open, false);
      assert.deepEqual(published?.stats, { collections: { docs: { records: 11 } }, memory: { heapUsedBytes: heap } });
      assert.equal(published?.writtenAt, 4);
    } finally {
      mock.timers.reset();
    }
  });
});
