// The recorded configuration (<dir>/config.json) and the open options around it: create: false
// never makes a database, options not given come from the record, a different object store is
// refused unless relocated, recordConfig: false changes nothing, no credentials are written.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Database, type DatabaseOptions } from '../engine/index.js';
import { startS3rver, S3RVER_CREDENTIALS } from '../harness/s3rver.js';
import { hasCode, isTypeError, track, withTmpDir } from './helpers/tmp.js';

const QUIET: DatabaseOptions = { workers: 0, tiering: { intervalMs: 0 }, maintenance: { gcIntervalMs: 0, scrubIntervalMs: 0, compactIntervalMs: 0 } };
const readConfig = async (dir: string) => JSON.parse(await fsp.readFile(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;

test('create: false opens an existing database and refuses anything else without creating it', async () => {
  await withTmpDir('cfg-create', async (dir) => {
    const missing = path.join(dir, 'a', 'b');
    await assert.rejects(Database.open(missing, { ...QUIET, create: false }), hasCode('ERR_DATABASE_NOT_FOUND'));
    assert.equal(existsSync(path.join(dir, 'a')), false);
    const file = path.join(dir, 'file');
    await fsp.writeFile(file, 'x');
    await assert.rejects(Database.open(file, { ...QUIET, create: false }), hasCode('ERR_DATABASE_NOT_FOUND'));
    const db = track(await Database.open(path.join(dir, 'db'), QUIET));
    await db.close();
    const again = track(await Database.open(path.join(dir, 'db'), { ...QUIET, create: false }));
    await again.close();
    // A database from before config.json (collections/ only) is still a database.
    await fsp.rm(path.join(dir, 'db', 'config.json'));
    const legacy = track(await Database.open(path.join(dir, 'db'), { ...QUIET, create: false }));
    await legacy.close();
    for (const key of ['create', 'recordConfig', 'relocateObjectStore'] as const) {
      await assert.rejects(Database.open(path.join(dir, 'db'), { ...QUIET, [key]: 'yes' as never }), isTypeError, key);
    }
  });
});

test('options not given come from the record; given ones are recorded; recordConfig: false records nothing', async () => {
  await withTmpDir('cfg-record', async (dir) => {
    const dbDir = path.join(dir, 'db');
    const store = pathToFileURL(path.join(dir, 'ext')).href;
    let db = track(await Database.open(dbDir, { ...QUIET, objectStore: store, segmentMaxRecords: 77, hotBytes: 1 << 20, maintenance: { gcGraceMs: 5000 } }));
    await db.close();
    const rec = await readConfig(dbDir);
    assert.equal(rec['objectStore'], store);
    assert.equal(rec['segmentMaxRecords'], 77);
    assert.ok(!(await fsp.readdir(dbDir)).some((n) => n.startsWith('.tmp-')), 'no temp file left');

    db = track(await Database.open(dbDir, { workers: 0 }));
    assert.equal(db.options.objectStore, store);
    assert.equal(db.options.segmentMaxRecords, 77);
    assert.equal(db.options.hotBytes, 1 << 20);
    assert.equal(db.options.maintenance.gcGraceMs, 5000);
    assert.equal(db.options.tiering.intervalMs, 0, 'the recorded tiering settings too');
    await db.close();

    db = track(await Database.open(dbDir, { ...QUIET, segmentMaxRecords: 99, recordConfig: false }));
    assert.equal(db.options.segmentMaxRecords, 99, 'this session uses what it was given');
    await db.close();
    assert.equal((await readConfig(dbDir))['segmentMaxRecords'], 77, 'and the record is unchanged');

    db = track(await Database.open(dbDir, { ...QUIET, segmentMaxRecords: 99 }));
    await db.close();
    assert.equal((await readConfig(dbDir))['segmentMaxRecords'], 99, 'a change is recorded');
  });
});

test('a different object store is ERR_OBJECT_STORE_MISMATCH unless relocated; credentials are never recorded', async () => {
  await withTmpDir('cfg-store', async (dir) => {
    const dbDir = path.join(dir, 'db');
    let db = track(await Database.open(dbDir, QUIET));
    await db.close();
    assert.equal((await readConfig(dbDir))['objectStore'], './objects', 'the default store is recorded relative to the directory');
    const other = pathToFileURL(path.join(dir, 'other')).href;
    await assert.rejects(Database.open(dbDir, { ...QUIET, objectStore: other }), hasCode('ERR_OBJECT_STORE_MISMATCH'));
    assert.equal(existsSync(path.join(dir, 'other')), false, 'the wrong store was not created');
    assert.equal(existsSync(path.join(dbDir, 'LOCK')), false, 'the lock was released');
    db = track(await Database.open(dbDir, { ...QUIET, objectStore: other, relocateObjectStore: true }));
    await db.close();
    assert.equal((await readConfig(dbDir))['objectStore'], other);

    // A moved database directory keeps its default store (recorded as ./objects).
    const moved = path.join(dir, 'moved');
    const fresh = path.join(dir, 'fresh');
    db = track(await Database.open(fresh, QUIET));
    await db.close();
    await fsp.rename(fresh, moved);
    db = track(await Database.open(moved, QUIET));
    assert.equal(db.options.objectStore, pathToFileURL(path.join(moved, 'objects')).href);
    await db.close();

    // S3 settings: recorded without credentials. A real server: an open claims the prefix
    // (one writer per bucket prefix), so the store must answer.
    const server = await startS3rver();
    try {
      const s3 = path.join(dir, 's3');
      const url = `s3://${server.bucket}/prefix`;
      const settings = { url, endpoint: server.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { ...S3RVER_CREDENTIALS } };
      db = track(await Database.open(s3, { ...QUIET, objectStore: settings }));
      await db.close();
      const text = await fsp.readFile(path.join(s3, 'config.json'), 'utf8');
      assert.doesNotMatch(text, new RegExp(`${S3RVER_CREDENTIALS.accessKeyId}|${S3RVER_CREDENTIALS.secretAccessKey}|credentials`));
      assert.deepEqual(JSON.parse(text).objectStore, { url, endpoint: server.endpoint, region: 'us-east-1', forcePathStyle: true });
      await assert.rejects(Database.open(s3, { ...QUIET, objectStore: { url: `s3://${server.bucket}/other` } }), hasCode('ERR_OBJECT_STORE_MISMATCH'));
    } finally {
      await server.destroy();
    }
  });
});

test('a corrupt config.json is ERR_CONFIG_CORRUPT; file://relative is ERR_INVALID_ARGUMENT', async () => {
  await withTmpDir('cfg-corrupt', async (dir) => {
    const dbDir = path.join(dir, 'db');
    const db = track(await Database.open(dbDir, QUIET));
    await db.close();
    await fsp.writeFile(path.join(dbDir, 'config.json'), '{"format": 1, "objectStore": ');
    await assert.rejects(Database.open(dbDir, QUIET), hasCode('ERR_CONFIG_CORRUPT'));
    assert.equal(existsSync(path.join(dbDir, 'LOCK')), false);
    await assert.rejects(Database.open(path.join(dir, 'x'), { objectStore: 'file://relative/x' }), hasCode('ERR_INVALID_ARGUMENT'));
    assert.equal(existsSync(path.join(dir, 'x')), false);
  });
});
