#!/usr/bin/env node
// The `stratavec` admin CLI. Uses only the public API; every command can print --json.
// Exit codes: 0 ok, 1 a StratavecError (its code is printed), 2 usage error.

import { Database, StratavecError } from '../engine/index.js';
import { parseArgs, intFlag, UsageError } from './args.js';
import { runDemo } from './demo.js';

const HELP = `usage: stratavec <command> [options]

commands:
  demo [--dir D] [--count N] [--dim D] [--queries Q] [--segment-max-records S] [--workers W] [--json]
        generate clustered data, ingest, search; print recall vs exact search, timings, tiers
  info <dir> [--json]         collections and the tier of every segment
  stats <dir> [--json]        db.stats() of a database directory

A database directory can be opened by one process at a time (ERR_DATABASE_LOCKED otherwise).`;

const BOOLEAN_FLAGS = new Set(['json', 'help']);

async function info(dir: string, json: boolean, what: 'info' | 'stats'): Promise<void> {
  const db = await Database.open(dir);
  try {
    if (what === 'stats') {
      console.log(JSON.stringify(db.stats(), null, json ? 0 : 2));
      return;
    }
    const out = db.listCollections().map((name) => {
      const col = db.collection(name);
      return { name, dimension: col.dimension, metric: col.metric, records: col.count(), segments: col.segments() };
    });
    if (json) {
      console.log(JSON.stringify(out));
      return;
    }
    for (const c of out) {
      console.log(`${c.name}: ${c.records} records, dimension ${c.dimension}, ${c.metric}, ${c.segments.length} segments`);
      for (const s of c.segments) {
        console.log(`  ${s.id.padEnd(20)} ${s.tier.padEnd(5)} ${String(s.live).padStart(9)} live ${String(s.deleted).padStart(7)} deleted ${String(s.bytes).padStart(12)} bytes ${s.status}`);
      }
    }
  } finally {
    await db.close();
  }
}

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv, BOOLEAN_FLAGS);
  const [command, ...rest] = args.positionals;
  const json = args.flags.get('json') === true;
  if (!command || args.flags.has('help') || command === 'help') {
    console.log(HELP);
    return command ? 0 : 2;
  }
  switch (command) {
    case 'demo': {
      const dir = args.flags.get('dir');
      const workers = args.flags.has('workers') ? intFlag(args, 'workers', 0) : undefined;
      const summary = await runDemo({
        ...(typeof dir === 'string' ? { dir } : {}),
        ...(workers === undefined ? {} : { workers }),
        count: intFlag(args, 'count', 50_000),
        dimension: intFlag(args, 'dim', 96),
        queries: intFlag(args, 'queries', 100),
        segmentMaxRecords: intFlag(args, 'segment-max-records', 20_000),
        json,
      }, (line) => (json ? console.error(line) : console.log(line)));
      if (json) console.log(JSON.stringify(summary));
      return 0;
    }
    case 'info':
    case 'stats': {
      const dir = rest[0];
      if (!dir) throw new UsageError(`${command} needs a database directory`);
      await info(dir, json, command);
      return 0;
    }
    default:
      throw new UsageError(`unknown command ${command}`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof UsageError) {
      console.error(`stratavec: ${err.message}\n\n${HELP}`);
      process.exitCode = 2;
    } else if (err instanceof StratavecError) {
      console.error(`stratavec: ${err.code}: ${err.message}`);
      process.exitCode = 1;
    } else {
      console.error(err);
      process.exitCode = 1;
    }
  },
);
