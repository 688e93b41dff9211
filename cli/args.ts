// Strict argument parsing for the admin CLI: one options table per command, parsed by node:util
// parseArgs in strict mode, so a mistyped or misused flag is a usage error (exit 2) and never
// silently changes what a command does. Also the environment variables and the object-store flags.

import { parseArgs as nodeParseArgs } from 'node:util';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Database, DatabaseOptions, ManifestRecovery } from '../engine/index.js';

export class UsageError extends Error {
  override name = 'UsageError';
  /** The command whose --help the message points at. */
  readonly command: string | undefined;
  constructor(message: string, command?: string) {
    super(message);
    this.command = command;
  }
}

export interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
  /** Placeholder of the value in help, e.g. `URL`. */
  value?: string;
  help: string;
}

export type OptionTable = Record<string, OptionSpec>;

export const HELP_OPTION: OptionTable = { help: { type: 'boolean', short: 'h', help: 'show this help' } };
export const JSON_OPTION: OptionTable = { json: { type: 'boolean', help: 'print one JSON document on stdout (progress stays on stderr)' } };
export const DIR_OPTION: OptionTable = { dir: { type: 'string', short: 'd', value: 'DIR', help: 'the database directory (or $STRATAVEC_DIR, or the first argument)' } };
export const STORE_OPTIONS: OptionTable = {
  'object-store': { type: 'string', value: 'URL', help: 'file:///abs/dir, a path, or s3://bucket/prefix ($STRATAVEC_OBJECT_STORE); default: the recorded one' },
  endpoint: { type: 'string', value: 'URL', help: 'S3 endpoint, e.g. http://127.0.0.1:9000 ($STRATAVEC_ENDPOINT); needs --object-store' },
  region: { type: 'string', value: 'R', help: 'S3 region; needs --object-store' },
  'path-style': { type: 'boolean', help: 'S3 path-style addressing (MinIO, Ceph, s3rver); needs --object-store' },
};

export interface Parsed {
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
}

/** What a command handler gets: its parsed arguments and a way to open the database. */
export interface Ctx {
  command: string;
  p: Parsed;
  json: boolean;
  dir: string;
  /** Opens the database for an admin session (never creates, records nothing, no loops). */
  open(extra?: DatabaseOptions): Promise<Database>;
  /** Opens it read-only: no lock, no writer claim, nothing written; works beside a running app. */
  openReadOnly(extra?: DatabaseOptions): Promise<Database>;
  /** Database.repairManifests with this invocation's object store. */
  repairManifests(dryRun: boolean): Promise<ManifestRecovery[]>;
}

/** Parses `argv` against `table`; any parse problem is a UsageError naming `command`. */
export function parseCommand(command: string, table: OptionTable, argv: string[]): Parsed {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = {};
  for (const [name, o] of Object.entries(table)) options[name] = o.short ? { type: o.type, short: o.short } : { type: o.type };
  try {
    const { values, positionals } = nodeParseArgs({ args: argv, options, strict: true, allowPositionals: true });
    return { values: values as Parsed['values'], positionals };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS')) {
      // node's messages run to several sentences; the first says what is wrong.
      const first = (err as Error).message.split('\n')[0]!.replace(/\. (To specify|Did you forget).*$/, '');
      throw new UsageError(first.replace(/\.$/, ''), command);
    }
    throw err;
  }
}

export function flag(p: Parsed, name: string): boolean {
  return p.values[name] === true;
}

export function str(p: Parsed, name: string): string | undefined {
  const v = p.values[name];
  return typeof v === 'string' ? v : undefined;
}

/**
 * The database directory: `--dir`, else $STRATAVEC_DIR, else the first positional (which is then
 * removed). With --dir or the variable set, no positional is taken as a directory, so a stray one
 * is an "unexpected argument" error rather than a guess.
 */
export function takeDir(command: string, p: Parsed, env: NodeJS.ProcessEnv): string {
  const fromFlag = str(p, 'dir');
  if (fromFlag !== undefined) return nonEmpty(command, fromFlag, '--dir');
  const fromEnv = env['STRATAVEC_DIR'];
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  const first = p.positionals.shift();
  if (first === undefined) throw new UsageError('missing the database directory (an argument, --dir or STRATAVEC_DIR)', command);
  return nonEmpty(command, first, 'the directory');
}

function nonEmpty(command: string, v: string, what: string): string {
  if (v === '') throw new UsageError(`${what} must not be empty`, command);
  return v;
}

/** Checks the remaining positionals: exactly `names` (a trailing `...` name takes one or more). */
export function expectPositionals(command: string, p: Parsed, names: string[]): string[] {
  const rest = names.at(-1)?.endsWith('...');
  if (p.positionals.length < names.length) throw new UsageError(`missing ${names[p.positionals.length]!.replace('...', '')}`, command);
  if (!rest && p.positionals.length > names.length) throw new UsageError(`unexpected argument ${JSON.stringify(p.positionals[names.length])}`, command);
  return p.positionals;
}

/**
 * The object store to open with, from the flags or the environment; undefined means "the one the
 * database recorded". Credentials never come from here (the AWS chain supplies them).
 */
export function storeOption(command: string, p: Parsed, env: NodeJS.ProcessEnv): DatabaseOptions['objectStore'] {
  const url = str(p, 'object-store') ?? (env['STRATAVEC_OBJECT_STORE'] || undefined);
  const endpoint = str(p, 'endpoint') ?? (env['STRATAVEC_ENDPOINT'] || undefined);
  const region = str(p, 'region');
  const pathStyle = flag(p, 'path-style');
  if (url === undefined) {
    const stray = endpoint !== undefined ? '--endpoint (or STRATAVEC_ENDPOINT)' : region !== undefined ? '--region' : pathStyle ? '--path-style' : undefined;
    if (stray) throw new UsageError(`${stray} needs --object-store (or STRATAVEC_OBJECT_STORE)`, command);
    return undefined;
  }
  if (url === '') throw new UsageError('--object-store must not be empty', command);
  if (url.startsWith('s3://')) {
    if (!/^s3:\/\/[^/]+/.test(url)) throw new UsageError(`--object-store ${url}: no bucket`, command);
    return { url, ...(endpoint ? { endpoint } : {}), ...(region ? { region } : {}), ...(pathStyle ? { forcePathStyle: true } : {}) };
  }
  if (endpoint !== undefined || region !== undefined || pathStyle) throw new UsageError('--endpoint, --region and --path-style apply to an s3:// object store only', command);
  if (url.startsWith('file:')) {
    if (!url.startsWith('file:///')) {
      throw new UsageError(`--object-store ${url}: a file URL needs an absolute path, file:///abs/dir (three slashes); or give a plain path`, command);
    }
    return url;
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) throw new UsageError(`--object-store ${url}: only file:// and s3:// stores exist`, command);
  return pathToFileURL(path.resolve(url)).href;
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `90s`, `10m`, `1h`, `7d`, `500ms`, `0`: milliseconds. */
export function parseDuration(command: string, name: string, v: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(v.trim());
  if (!m || (m[2] === undefined && Number(m[1]) !== 0)) throw new UsageError(`--${name} ${JSON.stringify(v)}: a duration such as 90s, 10m, 1h, 7d or 0`, command);
  return Math.round(Number(m[1]) * UNITS[m[2] ?? 'ms']!);
}

export function parseCount(command: string, name: string, v: string | undefined, fallback: number): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(n)) throw new UsageError(`--${name} must be a non-negative integer, got ${JSON.stringify(v)}`, command);
  return n;
}
