// The benchmark CLI: `node dist/native-bench/run.js <all|search|ingest|seal|tiers|workers|mapped|scale|filter|cluster|replica> [--quick]
// [--runs N] [--json] [--dir PATH] [--sizes A,B,..] [--total N] [--vectors N] [--segment-records N]`. Runs the benches in this process one after
// another, progress on stderr, a table (or with --json the JSON) on stdout, and one JSON file per
// bench under bench-results/. It owns argument parsing and output, never measurement.

import * as os from 'node:os';
import * as path from 'node:path';
import { repoRoot } from '../harness/datasets.js';
import { formatTable, machineInfo, progress, writeResult, type BenchOptions, type BenchReport } from './report.js';
import { runSearch } from './search.js';
import { runIngest } from './ingest.js';
import { defaultSealParams, runSeal } from './seal.js';
import { defaultTiersParams, runTiers } from './tiers.js';
import { runWorkers } from './workers.js';
import { defaultMappedParams, runMappedHnsw } from './mapped-hnsw.js';
import { defaultScaleParams, runScale } from './scale.js';
import { defaultFilterParams, runFilter } from './filter.js';
import { defaultClusterParams, runCluster } from './cluster.js';
import { defaultReplicaParams, runReplica } from './replica.js';

const BENCHES = ['search', 'ingest', 'seal', 'tiers', 'workers', 'mapped', 'scale', 'filter', 'cluster', 'replica'] as const;
type BenchName = (typeof BENCHES)[number];

const USAGE = `usage: node dist/native-bench/run.js <all|search|ingest|seal|tiers|workers|mapped|scale|filter|cluster|replica> [options]
  --quick          smaller sets and fewer runs (about 3 minutes for all)
  --runs N         timed passes per measurement, median reported (default 5, 2 with --quick)
  --json           print the JSON result to stdout instead of the tables
  --dir PATH       where temporary databases go (default: the OS temp dir; must be a real disk)
  --sizes A,B,...  seal bench: segment sizes (default 10000,25000,50000,100000,200000);
                   tiers bench: segment sizes (default 1000,2000,3000,5000,10000,25000,50000);
                   mapped bench: graph sizes (default 20000,100000; --quick 20000)
  --total N        seal bench: vectors split into segments (default 200000)
  --vectors N      scale bench: collection size (default 200000, 50000 with --quick; 1000000 for the
                   full issue run); filter bench: rows per collection (default 100000, 20000 quick);
                   cluster bench: collection size (default 200000, 50000 with --quick);
                   replica bench: the writer's rows (default 100000, 20000 with --quick)
  --segment-records N  scale / filter / cluster: segmentMaxRecords (default 20000; quick 10000 / 5000 / 5000)`;

interface Args {
  benches: BenchName[];
  json: boolean;
  opts: BenchOptions;
  sizes?: number[];
  total?: number;
  vectors?: number;
  segmentRecords?: number;
}

class UsageError extends Error {}

function positiveInt(flag: string, v: string | undefined): number {
  const n = Number(v);
  if (v === undefined || !Number.isSafeInteger(n) || n < 1) throw new UsageError(`${flag} expects a positive integer, got ${v}`);
  return n;
}

function parseArgs(argv: string[]): Args {
  const [which, ...rest] = argv;
  if (which === undefined || !(which === 'all' || (BENCHES as readonly string[]).includes(which))) {
    throw new UsageError(which === undefined ? 'no bench named' : `unknown bench ${JSON.stringify(which)}`);
  }
  let quick = false;
  let json = false;
  let runs: number | undefined;
  let dir = os.tmpdir();
  let sizes: number[] | undefined;
  let total: number | undefined;
  let vectors: number | undefined;
  let segmentRecords: number | undefined;
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i]!;
    if (a === '--quick') quick = true;
    else if (a === '--json') json = true;
    else if (a === '--runs') runs = positiveInt(a, rest[++i]);
    else if (a === '--dir') {
      const d = rest[++i];
      if (d === undefined || d === '') throw new UsageError('--dir expects a path');
      dir = path.resolve(d);
    } else if (a === '--sizes') {
      sizes = (rest[++i] ?? '').split(',').map((s) => positiveInt('--sizes', s));
    } else if (a === '--total') total = positiveInt(a, rest[++i]);
    else if (a === '--vectors') vectors = positiveInt(a, rest[++i]);
    else if (a === '--segment-records') segmentRecords = positiveInt(a, rest[++i]);
    else throw new UsageError(`unknown option ${JSON.stringify(a)}`);
  }
  return {
    benches: which === 'all' ? [...BENCHES] : [which as BenchName],
    json,
    opts: { quick, runs: runs ?? (quick ? 2 : 5), tmpBase: dir },
    ...(sizes ? { sizes } : {}),
    ...(total ? { total } : {}),
    ...(vectors ? { vectors } : {}),
    ...(segmentRecords ? { segmentRecords } : {}),
  };
}

/** The exact command line, as it can be pasted back into a shell from the repo root. */
function commandLine(): { command: string; npmScript?: string; cwd: string } {
  const script = path.relative(process.cwd(), process.argv[1] ?? 'dist/native-bench/run.js') || process.argv[1]!;
  const quote = (s: string) => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);
  const node = [...process.execArgv, script, ...process.argv.slice(2)].map(quote).join(' ');
  const event = process.env['npm_lifecycle_event'];
  return { command: `node ${node}`, ...(event ? { npmScript: `npm run ${event}` } : {}), cwd: process.cwd() };
}

async function main(): Promise<number> {
  let args: Args;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`${err.message}\n${USAGE}\n`);
    return 2;
  }
  const outDir = path.join(repoRoot(), 'bench-results');
  const cmd = commandLine();
  const machine = machineInfo();
  const all: Record<string, unknown> = {};
  let failed = false;
  if (!args.json) {
    process.stdout.write(`$ ${cmd.command}\n# ${machine['cpus']} x ${machine['model']}, node ${machine['node']}, ${machine['platform']}, ${machine['date']}\n\n`);
  }
  for (const name of args.benches) {
    const t0 = performance.now();
    let report: BenchReport;
    try {
      if (name === 'search') report = await runSearch(args.opts);
      else if (name === 'ingest') report = await runIngest(args.opts);
      else if (name === 'tiers') report = await runTiers(args.opts, defaultTiersParams(args.opts.quick, args.sizes));
      else if (name === 'workers') report = await runWorkers(args.opts);
      else if (name === 'mapped') report = await runMappedHnsw(args.opts, defaultMappedParams(args.opts.quick, args.sizes));
      else if (name === 'scale') report = await runScale(args.opts, defaultScaleParams(args.opts.quick, args.vectors, args.segmentRecords));
      else if (name === 'cluster') report = await runCluster(args.opts, defaultClusterParams(args.opts.quick, args.vectors, args.segmentRecords));
      else if (name === 'replica') report = await runReplica(args.opts, defaultReplicaParams(args.opts.quick, args.vectors, args.segmentRecords));
      else if (name === 'filter') report = await runFilter(args.opts, defaultFilterParams(args.opts.quick, args.vectors, args.segmentRecords));
      else {
        const d = defaultSealParams(args.opts.quick);
        report = await runSeal(args.opts, { sizes: args.sizes ?? d.sizes, total: args.total ?? d.total });
      }
    } catch (err) {
      failed = true;
      progress(name, `FAILED: ${(err as Error)?.stack ?? String(err)}`);
      all[name] = { name, failed: true, error: String((err as Error)?.message ?? err) };
      continue;
    }
    const durationSec = +((performance.now() - t0) / 1000).toFixed(1);
    const json = {
      name: report.name, ...cmd, machine: { ...machine, date: new Date().toISOString() },
      options: { quick: args.opts.quick, runs: args.opts.runs, tmpBase: args.opts.tmpBase },
      durationSec, conclusion: report.conclusion, results: report.data, tables: report.tables,
    };
    const file = await writeResult(outDir, report.name, json);
    progress(name, `done in ${durationSec}s; wrote ${path.relative(process.cwd(), file)}`);
    all[name] = json;
    if (!args.json) {
      for (const t of report.tables) process.stdout.write(`${formatTable(t)}\n\n`);
      if (report.conclusion) process.stdout.write(`=> ${report.conclusion}\n\n`);
    }
  }
  if (args.json) {
    const out = args.benches.length === 1 ? all[args.benches[0]!] : all;
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  }
  return failed ? 1 : 0;
}

main().then((code) => {
  process.exitCode = code;
}, (err: unknown) => {
  process.stderr.write(`${(err as Error)?.stack ?? String(err)}\n`);
  process.exitCode = 1;
});
