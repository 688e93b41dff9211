// What the CLI prints and how: stdout lines that survive a reader closing the pipe (`| head`),
// human units, tables that fit 80 columns, a progress line redrawn on a terminal (plain lines
// when stderr is piped), and the Ctrl-C flag long commands check between steps.

let stdoutClosed = false;
let interruptedFlag = false;
let onInterrupt: (() => void) | undefined;

/**
 * A closed stdout (EPIPE) stops output but not the command: it still finishes its step, closes
 * the database and releases the lock. Ctrl-C once asks long commands to stop after the step in
 * flight; twice exits at once (the lock is then stale and the next open takes it over).
 */
export function installProcessGuards(): void {
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE' || err.code === 'ERR_STREAM_DESTROYED') stdoutClosed = true;
    else process.exitCode = 1;
  });
  process.stderr.on('error', () => undefined); // nowhere left to report it
  process.on('SIGINT', () => {
    if (interruptedFlag) process.exit(130);
    interruptedFlag = true;
    process.stderr.write('\ninterrupted: finishing the step in flight, then stopping (Ctrl-C again to abort now)\n');
    onInterrupt?.();
  });
}

export const interrupted = (): boolean => interruptedFlag;

/** What to do on the first Ctrl-C besides setting the flag (e.g. close the database to end a verify). */
export function setInterruptHandler(fn: (() => void) | undefined): void {
  onInterrupt = fn;
}

export function out(line = ''): void {
  if (!stdoutClosed) process.stdout.write(`${line}\n`);
}

export function outJson(value: unknown): void {
  out(JSON.stringify(value));
}

/** Progress and notes: stderr, so stdout (and --json) stays clean. */
export function note(line: string): void {
  progressLine?.clear();
  process.stderr.write(`${line}\n`);
  progressLine?.redraw();
}

export function bytes(n: number | undefined): string {
  if (n === undefined) return '-';
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v >= 100 ? v.toFixed(0) : v.toFixed(1)} ${units[i]}`;
}

export function duration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, '0')}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${String(Math.round((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${(s / 86400).toFixed(1)} d`;
}

export function when(t: number | undefined): string {
  return t === undefined ? 'never' : new Date(t).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

/**
 * Rows padded into columns (right-aligned where `right` says). If the table is wider than
 * `width`, the first left-aligned column is shortened with an ellipsis.
 */
export function table(header: string[], rows: string[][], right: boolean[] = [], width = 80): string[] {
  const all = [header, ...rows];
  const widths = header.map((_, c) => Math.max(...all.map((r) => (r[c] ?? '').length)));
  const total = widths.reduce((a, b) => a + b, 0) + 2 * (widths.length - 1);
  const squeeze = widths.findIndex((_, c) => !right[c]);
  if (total > width && squeeze >= 0) widths[squeeze] = Math.max(8, widths[squeeze]! - (total - width));
  const fit = (s: string, w: number) => (s.length > w ? `${s.slice(0, w - 1)}…` : s);
  return all.map((r) => r.map((cell, c) => {
    const s = fit(cell ?? '', widths[c]!);
    return right[c] ? s.padStart(widths[c]!) : c === r.length - 1 ? s : s.padEnd(widths[c]!);
  }).join('  '));
}

let progressLine: Progress | undefined;

/**
 * Progress over a known number of steps and bytes. On a terminal: one line redrawn in place with a
 * bar, segments, bytes and time left. Piped: nothing here; the caller's per-step notes are the
 * plain lines.
 */
export class Progress {
  readonly #tty = process.stderr.isTTY === true;
  readonly #total: number;
  readonly #totalBytes: number;
  readonly #t0 = performance.now();
  #done = 0;
  #doneBytes = 0;
  #current = '';

  constructor(total: number, totalBytes: number) {
    this.#total = total;
    this.#totalBytes = totalBytes;
    if (this.#tty) progressLine = this;
  }

  step(current: string): void {
    this.#current = current;
    this.redraw();
  }

  advance(bytesMoved: number): void {
    this.#done++;
    this.#doneBytes += bytesMoved;
    this.redraw();
  }

  redraw(): void {
    if (!this.#tty) return;
    const frac = this.#totalBytes > 0 ? this.#doneBytes / this.#totalBytes : this.#total > 0 ? this.#done / this.#total : 1;
    const elapsed = performance.now() - this.#t0;
    const left = frac > 0 && frac < 1 ? ` ${duration((elapsed / frac) * (1 - frac))} left` : '';
    const bar = '#'.repeat(Math.round(frac * 20)).padEnd(20, '.');
    const line = `[${bar}] ${this.#done}/${this.#total} segments ${bytes(this.#doneBytes)}/${bytes(this.#totalBytes)}${left} ${this.#current}`;
    const cols = process.stderr.columns ?? 80;
    process.stderr.write(`\r\x1b[K${line.slice(0, cols - 1)}`);
  }

  clear(): void {
    if (this.#tty) process.stderr.write('\r\x1b[K');
  }

  finish(): void {
    this.clear();
    if (progressLine === this) progressLine = undefined;
  }
}
