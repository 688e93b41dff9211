// The `stratavec` admin CLI's commands (entry: cli/main.ts). Uses only the public API; every command can print --json.
// Exit codes: 0 ok, 1 a StratavecError (its code is printed), 2 usage error.

import { Database, StratavecError, type DatabaseOptions } from '../engine/index.js';
import { parseArgs, intFlag, UsageError, type ParsedArgs } from './args.js';
import { runDemo } from './demo.js';
import { migrateCommand, tieringCommand } from './tiers.js';
import { verifyCommand, gcCommand, compactCommand } from './maintenance.js';

const HELP = `usage: stratavec <command> [options]

commands:
  demo [--dir D] [--count N] [--dim D] [--queries Q] [--segment-max-records S] [--workers W] [--json]
        generate clustered data, ingest, search; print recall vs exact search, timings, tiers
  info <dir> [--json]         collections and the tier of every segment
  stats <dir> [--json]        db.stats() of a database directory
  migrate <dir> <segment-id|all|collection:NAME>... --to hot|warm|cold [--json]
                              verified moves between tiers, with progress
  tiering plan <dir> [--json] what the tiering policy would move now, and why (dry run)
  tiering apply <dir> [--json] run the policy's moves
  verify <dir> [--repair] [--json]
                              check every copy of every segment (local, stub, remote) and the
                              manifests; list unreferenced files; exit 3 if a problem remains
  gc <dir> [--dry-run] [--json]
                              one garbage-collection pass (mark, then delete after the grace period)
  compact <dir> [--dry-run] [--cluster] [--json]
                              merge small segments and drop deleted rows

object store options (for a database whose cold tier is not the default <dir>/objects):
  --object-store URL          file:///abs/dir or s3://bucket/prefix
  --endpoint URL --region R --path-style
  S3 credentials come from the standard AWS environment variables or profile, never from flags.

A database directory can be opened by one process at a time (ERR_DATABASE_LOCKED otherwise).`;

const BOOLEAN_FLAGS = new Set(['json', 'help', 'path-style', 'repair', 'dry-run', 'cluster']);

/** Options for an admin session: background loops stay off so only what was asked for runs. */
export function adminOptions(args: ParsedArgs): DatabaseOptions {
  const store = args.flags.get('object-store');
  const options: DatabaseOptions = { tiering: { intervalMs: 0 }, maintenance: { gcIntervalMs: 0, scrubIntervalMs: 0, compactIntervalMs: 0 } };
  if (typeof store === 'string') {
    if (store.startsWith('s3://')) {
      const endpoint = args.flags.get('endpoint');
      const region = args.flags.get('region');
      options.objectStore = {
        url: store,
        ...(typeof endpoint === 'string' ? { endpoint } : {}),
        ...(typeof region === 'string' ? { region } : {}),
        ...(args.flags.get('path-style') === true ? { forcePathStyle: true } : {}),
      };
    } else {
      options.objectStore = store;
    }
  }
  return options;
}

async function info(dir: string, json: boolean, what: 'info' | 'stats', options: DatabaseOptions): Promise<void> {
  const db = await Database.open(dir, options);
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
      await info(dir, json, command, adminOptions(args));
      return 0;
    }
    case 'migrate': {
      const [dir, ...targets] = rest;
      const to = args.flags.get('to');
      if (!dir || targets.length === 0) throw new UsageError('migrate needs a database directory and at least one segment');
      if (to !== 'hot' && to !== 'warm' && to !== 'cold') throw new UsageError('migrate needs --to hot|warm|cold');
      return migrateCommand(dir, targets, to, json, adminOptions(args));
    }
    case 'tiering': {
      const [action, dir] = rest;
      if ((action !== 'plan' && action !== 'apply') || !dir) throw new UsageError('usage: tiering plan|apply <dir>');
      return tieringCommand(dir, action, json, adminOptions(args));
    }
    case 'verify':
    case 'gc':
    case 'compact': {
      const dir = rest[0];
      if (!dir) throw new UsageError(`${command} needs a database directory`);
      const options = adminOptions(args);
      if (command === 'verify') return verifyCommand(dir, args.flags.get('repair') === true, json, options);
      const dryRun = args.flags.get('dry-run') === true;
      return command === 'gc' ? gcCommand(dir, dryRun, json, options) : compactCommand(dir, dryRun, json, options, args.flags.get('cluster') === true);
    }
    default:
      throw new UsageError(`unknown command ${command}`);
  }
}

/** Runs one CLI invocation and sets the exit code. */
export function run(argv: string[]): Promise<void> {
  return main(argv).then(
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
}
