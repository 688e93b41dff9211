// The `stratavec` admin CLI: the command table (each command's options, arguments and help),
// dispatch, and exit codes. Uses only the public API. Commands never create a database, never
// record options, and never run the background tiering or maintenance loops.
//
// Commands that only look (status, info, stats, segments, segment show, verify, tiering plan,
// gc --dry-run, compact --dry-run) always open read-only: they work beside a running app, and
// cannot leave a lock, a claim in the bucket, or a cleaned-up directory behind. The others take
// the directory lock and the writer claim, and say ERR_DATABASE_LOCKED while an app has it open.
//
// Exit codes: 0 ok; 1 an error (a coded error, a failed move or GC entry, not a database);
// 2 usage (bad flag, missing or extra argument); 3 verify found a problem it did not fix or could
// not check a copy; 130 interrupted by Ctrl-C (after finishing the step in flight).

import { createRequire } from 'node:module';
import type { DatabaseOptions } from '../engine/index.js';
import {
  UsageError, parseCommand, takeDir, storeOption, flag, str, parseCount,
  HELP_OPTION, JSON_OPTION, DIR_OPTION, STORE_OPTIONS, type OptionTable, type Ctx,
} from './args.js';
import { installProcessGuards, out, outJson, note } from './output.js';

// The engine (native addons, the AWS SDK) loads only once the arguments are known to be good, so
// help and usage errors answer at once.
const inspect = () => import('./inspect.js');
const tiers = () => import('./tiers.js');
const maintenance = () => import('./maintenance.js');
const statusCommand = async (c: Ctx) => (await inspect()).statusCommand(c);
const infoCommand = async (c: Ctx) => (await inspect()).infoCommand(c);
const statsCommand = async (c: Ctx) => (await inspect()).statsCommand(c);
const segmentsCommand = async (c: Ctx) => (await inspect()).segmentsCommand(c);
const segmentShowCommand = async (c: Ctx) => (await inspect()).segmentShowCommand(c);
const pinCommand = async (c: Ctx) => (await inspect()).pinCommand(c);
const unpinCommand = async (c: Ctx) => (await inspect()).unpinCommand(c);
const migrateCommand = async (c: Ctx) => (await tiers()).migrateCommand(c);
const tieringCommand = async (c: Ctx, action: 'plan' | 'apply') => (await tiers()).tieringCommand(c, action);
const verifyCommand = async (c: Ctx) => (await maintenance()).verifyCommand(c);
const gcCommand = async (c: Ctx) => (await maintenance()).gcCommand(c);
const compactCommand = async (c: Ctx) => (await maintenance()).compactCommand(c);
const repairManifestCommand = async (c: Ctx) => (await maintenance()).repairManifestCommand(c);


interface Command {
  /** e.g. `migrate`, or `tiering plan` for a two-word command. */
  name: string;
  args: string;
  summary: string;
  details?: string;
  options: OptionTable;
  /** false: no database directory (demo). */
  needsDir?: boolean;
  run(ctx: Ctx): Promise<number>;
}

const DB_OPTIONS: OptionTable = { ...DIR_OPTION, ...STORE_OPTIONS, ...JSON_OPTION, ...HELP_OPTION };

const COMMANDS: Command[] = [
  {
    name: 'status', args: '<dir>', options: DB_OPTIONS, run: statusCommand,
    summary: 'collections, segments and bytes per tier against budgets, unavailable segments, recorded settings',
  },
  {
    name: 'info', args: '<dir>', options: DB_OPTIONS, run: infoCommand,
    summary: 'collections and every segment with its tier',
  },
  {
    name: 'stats', args: '<dir>', options: DB_OPTIONS, run: statsCommand,
    summary: 'the running app\'s published stats (stats.json); without them, this session\'s db.stats()',
  },
  {
    name: 'segments', args: '<dir> <collection>', run: segmentsCommand,
    options: { ...DB_OPTIONS, tier: { type: 'string', value: 'T', help: 'only segments in tier hot, warm or cold' } },
    summary: 'the segments of one collection: tier, pin, rows, bytes',
  },
  {
    name: 'segment show', args: '<dir> <segment-id>', options: DB_OPTIONS, run: segmentShowCommand,
    summary: 'one segment: tier, pin, copies, codecs and ratios per section, access frequency, rows',
  },
  {
    name: 'pin', args: '<dir> <segment-id> <hot|warm|cold>', options: DB_OPTIONS, run: pinCommand,
    summary: 'move a segment to a tier and pin it there (the policy leaves it be)',
    details: 'The pin is recorded in the manifest. Pinned to hot, the segment is loaded into memory by\nthe tiering policy of the process that serves queries (its next run after it opens the\ndatabase); the CLI\'s own memory is gone when it exits.',
  },
  {
    name: 'unpin', args: '<dir> <segment-id>', options: DB_OPTIONS, run: unpinCommand,
    summary: 'let the tiering policy move a pinned segment again',
  },
  {
    name: 'migrate', args: '<dir> <segment-id|all|collection:NAME>...', run: migrateCommand,
    options: {
      ...DB_OPTIONS,
      to: { type: 'string', value: 'TIER', help: 'hot, warm or cold (required); hot means pin to hot' },
      force: { type: 'boolean', help: 'also move pinned segments (they are re-pinned to the new tier)' },
    },
    summary: 'verified moves between tiers, with progress; Ctrl-C stops after the move in flight',
    details: '--to hot pins the segment to hot (as `pin <id> hot`): hot is the memory of the process\nserving queries, whose tiering policy loads hot-pinned segments. A segment pinned to\nanother tier is refused (exit 1) unless --force.',
  },
  {
    name: 'tiering plan', args: '<dir>', options: DB_OPTIONS, run: (c) => tieringCommand(c, 'plan'),
    summary: 'what the tiering policy would move now, and why (dry run, with the recorded budgets)',
  },
  {
    name: 'tiering apply', args: '<dir>', options: DB_OPTIONS, run: (c) => tieringCommand(c, 'apply'),
    summary: 'run the policy\'s warm/cold moves (moves to hot are left to the serving process)',
  },
  {
    name: 'verify', args: '<dir>', run: verifyCommand,
    options: {
      ...DB_OPTIONS,
      repair: { type: 'boolean', help: 'fix what can be fixed (README "Verify and repair")' },
      'no-remote': { type: 'boolean', help: 'check local copies only' },
    },
    summary: 'check every copy of every segment and the manifests; exit 3 if a problem remains or a copy could not be checked',
    details: 'Without --repair it opens read-only and works beside a running app. --repair needs the\ndatabase closed; it first restores a corrupt or missing newest manifest from the object\nstore (as repair-manifest), then repairs copies.',
  },
  {
    name: 'repair-manifest', args: '<dir>', run: repairManifestCommand,
    options: { ...DB_OPTIONS, 'dry-run': { type: 'boolean', short: 'n', help: 'report what would be restored; change nothing' } },
    summary: 'restore a corrupt or missing newest manifest from the object store; exit 3 if one could not be',
    details: 'For each collection whose newest local manifest file is unreadable (or missing), the\nnewest good version in the object store that is not older than the newest good local one\nis written back (unreadable files are moved to <collection>/quarantine/). If that version\nis another writer\'s, the collection is adopted from the bucket instead (the old\ndirectory is kept in superseded/). Needs the database closed.',
  },
  {
    name: 'gc', args: '<dir>', run: gcCommand,
    options: {
      ...DB_OPTIONS,
      'dry-run': { type: 'boolean', short: 'n', help: 'report what would be marked and deleted; change nothing' },
      grace: { type: 'string', value: 'DURATION', help: 'grace period for this pass (90s, 10m, 1h, 7d; default: the recorded one)' },
    },
    summary: 'one garbage-collection pass (mark, then delete after the grace period); exit 1 if an entry failed',
  },
  {
    name: 'compact', args: '<dir>', run: compactCommand,
    options: {
      ...DB_OPTIONS, 'dry-run': { type: 'boolean', short: 'n', help: 'plan only; change nothing' },
      cluster: { type: 'boolean', help: 'rewrite local segments into regions of the space (clustering compaction), the most searched parts into segments of their own, from the recent queries the app saved at its last close' },
      'by-space': { type: 'boolean', help: 'with --cluster: ignore the recent queries and lay out by space alone' },
      'include-cold': { type: 'boolean', help: 'with --cluster: bring cold segments back to warm first and lay out the whole collection (needs local disk for all of it)' },
    },
    summary: 'merge small segments and drop deleted rows, or cluster them into regions (with the recorded segmentMaxRecords)',
  },
  {
    name: 'demo', args: '', needsDir: false, run: demoCommand,
    options: {
      dir: { type: 'string', short: 'd', value: 'DIR', help: 'where to build the demo database (default: a new temp dir)' },
      count: { type: 'string', value: 'N', help: 'vectors (default 50000)' },
      dim: { type: 'string', value: 'D', help: 'dimension (default 96)' },
      queries: { type: 'string', value: 'Q', help: 'queries (default 100)' },
      'segment-max-records': { type: 'string', value: 'S', help: 'default 20000' },
      workers: { type: 'string', value: 'W', help: 'pool threads (default: cores)' },
      ...JSON_OPTION, ...HELP_OPTION,
    },
    summary: 'generate clustered data, ingest, search; print recall vs exact search, timings, tiers',
  },
];

const ENV_HELP = `environment:
  STRATAVEC_DIR            the database directory (then no argument is taken as one)
  STRATAVEC_OBJECT_STORE   as --object-store
  STRATAVEC_ENDPOINT       as --endpoint
  S3 credentials come from the standard AWS variables or profile, never from flags or files.`;

const EXIT_HELP = `exit codes: 0 ok; 1 error (coded error, failed move or GC entry, not a database);
  2 usage; 3 verify left a problem or could not check a copy; 130 interrupted (Ctrl-C)`;

function version(): string {
  const require = createRequire(import.meta.url);
  return (require('../../package.json') as { version: string }).version;
}

function mainHelp(): string {
  const lines = ['usage: stratavec <command> [options]   (stratavec help <command> for its options)', '', 'commands:'];
  for (const c of COMMANDS) {
    const head = `  ${c.name} ${c.args}`.trimEnd();
    lines.push(head);
    lines.push(`      ${c.summary}`);
  }
  lines.push('', 'The database directory is the first argument, or --dir, or $STRATAVEC_DIR. Commands never',
    'create a database; the object store and settings are the ones the database recorded.', '', ENV_HELP, '', EXIT_HELP,
    '', '  -h, --help     this help', '  --version      the version');
  return lines.join('\n');
}

function commandHelp(c: Command): string {
  const lines = [`usage: stratavec ${c.name} ${c.args} [options]`.replace(/\s+\[/, ' ['), '', c.summary];
  if (c.details) lines.push('', c.details);
  lines.push('', 'options:');
  for (const [name, o] of Object.entries(c.options)) {
    const left = `${o.short ? `-${o.short}, ` : '    '}--${name}${o.value ? ` ${o.value}` : ''}`;
    lines.push(`  ${left.padEnd(28)} ${o.help}`);
  }
  if (c.needsDir !== false) lines.push('', ENV_HELP);
  lines.push('', EXIT_HELP);
  return lines.join('\n');
}

/** Finds the command named by the first one or two words of argv. */
function lookup(argv: string[]): { command: Command; rest: string[] } | undefined {
  const two = `${argv[0]} ${argv[1]}`;
  const byTwo = COMMANDS.find((c) => c.name === two);
  if (byTwo) return { command: byTwo, rest: argv.slice(2) };
  const byOne = COMMANDS.find((c) => c.name === argv[0]);
  return byOne ? { command: byOne, rest: argv.slice(1) } : undefined;
}

/** Admin sessions: never create, record nothing, no background loops. */
export function adminOptions(store: DatabaseOptions['objectStore'], extra: DatabaseOptions = {}): DatabaseOptions {
  return {
    ...extra,
    create: false,
    recordConfig: false,
    // A store that does not answer must not hide what can be checked locally (verify lists the
    // segments it could not check, gc collects local garbage); writes then fail with its error.
    offline: true,
    statsIntervalMs: 0, // the serving process's published figures must not be overwritten by ours
    ...(store === undefined ? {} : { objectStore: store }),
    tiering: { ...extra.tiering, intervalMs: 0 },
    maintenance: { ...extra.maintenance, gcIntervalMs: 0, scrubIntervalMs: 0, compactIntervalMs: 0 },
  };
}

/** Look-only sessions: read-only (no lock, no claim, nothing written), no loops, no stats file. */
export function readOnlyOptions(store: DatabaseOptions['objectStore'], extra: DatabaseOptions = {}): DatabaseOptions {
  return {
    ...extra,
    readOnly: true,
    statsIntervalMs: 0,
    ...(store === undefined ? {} : { objectStore: store }),
    tiering: { ...extra.tiering, intervalMs: 0 },
    maintenance: { ...extra.maintenance, gcIntervalMs: 0, scrubIntervalMs: 0, compactIntervalMs: 0 },
  };
}

async function demoCommand(ctx: Ctx): Promise<number> {
  const { p, command } = ctx;
  const dir = str(p, 'dir');
  const workers = str(p, 'workers');
  const { runDemo } = await import('./demo.js');
  const summary = await runDemo({
    ...(dir === undefined ? {} : { dir }),
    ...(workers === undefined ? {} : { workers: parseCount(command, 'workers', workers, 0) }),
    count: parseCount(command, 'count', str(p, 'count'), 50_000),
    dimension: parseCount(command, 'dim', str(p, 'dim'), 96),
    queries: parseCount(command, 'queries', str(p, 'queries'), 100),
    segmentMaxRecords: parseCount(command, 'segment-max-records', str(p, 'segment-max-records'), 20_000),
    json: ctx.json,
  }, (line) => (ctx.json ? note(line) : out(line)));
  if (ctx.json) outJson(summary);
  return 0;
}

async function main(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  if (argv.length === 0) {
    process.stderr.write(`${mainHelp()}\n`);
    return 2;
  }
  const first = argv[0]!;
  if (first === '--version' || first === '-v') {
    out(version());
    return 0;
  }
  if (first === '-h' || first === '--help') {
    out(mainHelp());
    return 0;
  }
  if (first === 'help') {
    if (argv.length === 1) {
      out(mainHelp());
      return 0;
    }
    const found = lookup(argv.slice(1));
    if (!found || found.rest.length > 0) throw new UsageError(`no command ${JSON.stringify(argv.slice(1).join(' '))}`);
    out(commandHelp(found.command));
    return 0;
  }
  const found = lookup(argv);
  if (!found) {
    const two = COMMANDS.filter((c) => c.name.startsWith(`${first} `)).map((c) => c.name);
    throw new UsageError(two.length > 0 ? `${first} needs one of: ${two.map((n) => n.split(' ')[1]).join(', ')}` : `unknown command ${JSON.stringify(first)}`);
  }
  const { command, rest } = found;
  const p = parseCommand(command.name, command.options, rest);
  if (flag(p, 'help')) {
    out(commandHelp(command));
    return 0;
  }
  const needsDir = command.needsDir !== false;
  const dir = needsDir ? takeDir(command.name, p, env) : '';
  if (!needsDir && p.positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(p.positionals[0])}`, command.name);
  const store = needsDir ? storeOption(command.name, p, env) : undefined;
  const ctx: Ctx = {
    command: command.name,
    p,
    json: flag(p, 'json'),
    dir,
    open: async (extra) => (await import('../engine/index.js')).Database.open(dir, adminOptions(store, extra)),
    openReadOnly: async (extra) => (await import('../engine/index.js')).Database.open(dir, readOnlyOptions(store, extra)),
    repairManifests: async (dryRun) => (await import('../engine/index.js')).Database.repairManifests(dir, { dryRun, ...(store === undefined ? {} : { objectStore: store }) }),
  };
  return command.run(ctx);
}

const LOOK_ONLY = 'status, info, segments, segment show, stats, verify, tiering plan, gc --dry-run and compact --dry-run';
const HINTS: Partial<Record<string, string>> = {
  ERR_DATABASE_LOCKED: `\nthe database is in use by another process; this command needs it closed (${LOOK_ONLY} work beside it)`,
  ERR_WRITER_ACTIVE: `\nanother process is the writer of this object-store prefix; this command needs it stopped (${LOOK_ONLY} work beside it)`,
  ERR_MANIFEST_CORRUPT: '\n`stratavec repair-manifest <dir>` (or `verify --repair`) restores it from the object store',
};

/** Runs one CLI invocation and sets the exit code. */
export async function run(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<void> {
  installProcessGuards();
  try {
    process.exitCode = await main(argv, env);
  } catch (err) {
    if (err instanceof UsageError) {
      const help = err.command ? `stratavec ${err.command} --help` : 'stratavec --help';
      process.stderr.write(`stratavec: ${err.message} (see ${help})\n`);
      process.exitCode = 2;
    } else if (err instanceof (await import('../engine/index.js')).StratavecError) {
      const hint = HINTS[err.code] ?? '';
      process.stderr.write(`stratavec: ${err.code}: ${err.message}${hint}\n`);
      process.exitCode = 1;
    } else {
      process.stderr.write(`stratavec: unexpected error: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
      process.exitCode = 1;
    }
  }
}
