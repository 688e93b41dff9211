// Shared by the benchmark programs: statistics (median, percentile), machine info, the readable
// table, progress lines on stderr, and the JSON files under bench-results/. It must never import
// the engine: benches measure the engine, they do not share its code.

import { promises as fsp, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export interface BenchOptions {
  quick: boolean;
  /** Timed passes per measurement; the median is reported. */
  runs: number;
  /** Where temporary databases and files go (a real disk: fsync on tmpfs would be free). */
  tmpBase: string;
}

/** One readable table: cells are already formatted strings. */
export interface Table {
  title: string;
  columns: string[];
  rows: string[][];
  notes?: string[];
}

/** What one bench hands back to run.ts: tables for people, `data` for the JSON file. */
export interface BenchReport {
  name: string;
  tables: Table[];
  conclusion?: string;
  data: Record<string, unknown>;
}

export function median(xs: ArrayLike<number>): number {
  return percentile(xs, 50);
}

/** Linear interpolation between closest ranks (numpy's default); NaN for no samples. */
export function percentile(xs: ArrayLike<number>, p: number): number {
  const n = xs.length;
  if (n === 0) return NaN;
  const s = Float64Array.from(xs).sort();
  const pos = (p / 100) * (n - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(n - 1, lo + 1);
  return s[lo]! + (s[hi]! - s[lo]!) * (pos - lo);
}

export function machineInfo(): Record<string, unknown> {
  const cpus = os.cpus();
  return {
    cpus: cpus.length,
    availableParallelism: os.availableParallelism(),
    model: cpus[0]?.model ?? 'unknown',
    node: process.version,
    v8: process.versions.v8,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    totalMemGiB: +(os.totalmem() / 2 ** 30).toFixed(1),
    loadavgAtStart: os.loadavg().map((x) => +x.toFixed(2)),
    date: new Date().toISOString(),
  };
}

// ---- formatting -------------------------------------------------------------------------------

/** Thousands-separated integer, or a fixed number of decimals. */
export function num(x: number, decimals = 0): string {
  if (!Number.isFinite(x)) return '-';
  return x.toLocaleString('en-US', { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
}

/** Milliseconds with precision that suits the magnitude. */
export function ms(x: number): string {
  if (!Number.isFinite(x)) return '-';
  if (x < 1) return `${x.toFixed(3)} ms`;
  if (x < 100) return `${x.toFixed(2)} ms`;
  if (x < 10_000) return `${x.toFixed(0)} ms`;
  return `${(x / 1000).toFixed(1)} s`;
}

export function ratio(x: number): string {
  return Number.isFinite(x) ? `${x.toFixed(2)}x` : '-';
}

export function pct(x: number): string {
  return Number.isFinite(x) ? `${(x * 100).toFixed(1)}%` : '-';
}

export function formatTable(t: Table): string {
  const widths = t.columns.map((c, i) => Math.max(c.length, ...t.rows.map((r) => (r[i] ?? '').length)));
  // First column left-aligned (labels), the rest right-aligned (numbers).
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  const out = [t.title, line(t.columns), widths.map((w) => '-'.repeat(w)).join('  '), ...t.rows.map(line)];
  for (const n of t.notes ?? []) out.push(`  * ${n}`);
  return out.join('\n');
}

// ---- progress and output ----------------------------------------------------------------------

const started = performance.now();

/** A progress line on stderr (stdout is for the table or the JSON). */
export function progress(bench: string, msg: string): void {
  const t = ((performance.now() - started) / 1000).toFixed(1).padStart(6);
  process.stderr.write(`[${t}s ${bench}] ${msg}\n`);
}

/** Writes `<dir>/<name>-<timestamp>.json` and `<dir>/<name>-latest.json`; returns the first path. */
export async function writeResult(dir: string, name: string, json: unknown): Promise<string> {
  await fsp.mkdir(dir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const text = `${JSON.stringify(json, null, 2)}\n`;
  const file = path.join(dir, `${name}-${stamp}.json`);
  await fsp.writeFile(file, text);
  await fsp.writeFile(path.join(dir, `${name}-latest.json`), text);
  return file;
}

/** A fresh directory under the bench's temp base; the caller removes it. */
export async function tempDir(opts: BenchOptions, prefix: string): Promise<string> {
  await fsp.mkdir(opts.tmpBase, { recursive: true });
  return fsp.mkdtemp(path.join(opts.tmpBase, `stratavec-bench-${prefix}-`));
}

export async function removeDir(dir: string): Promise<void> {
  await fsp.rm(dir, { recursive: true, force: true });
}

/** Rounds for JSON: enough digits to compare, not the float noise. */
export function round(x: number, digits = 3): number {
  return Number.isFinite(x) ? +x.toFixed(digits) : x;
}

/** Resident memory of this process in bytes, from /proc/self/status (Linux); NaN where absent. */
export function residentMemory(): { rss: number; anon: number; file: number } {
  let text = '';
  try {
    text = readFileSync('/proc/self/status', 'utf8');
  } catch {
    return { rss: NaN, anon: NaN, file: NaN };
  }
  const kb = (field: string) => {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
    return m ? Number(m[1]) * 1024 : NaN;
  };
  return { rss: kb('VmRSS'), anon: kb('RssAnon'), file: kb('RssFile') };
}

/** Megabytes (10^6 bytes) with no decimals. */
export function mb(bytes: number): string {
  return Number.isFinite(bytes) ? `${num(bytes / 1e6)} MB` : '-';
}
