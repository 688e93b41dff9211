// The directory lock: one Database per directory, across processes and within this one. The lock
// file records the holder's pid and process start time, so a lock left by a killed process is
// recognised as stale (even if its pid was reused) and taken over.

import { promises as fsp, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { StratavecError, ioError } from '../format/errors.js';

const held = new Set<string>();

function processStart(pid: number): string | undefined {
  try {
    // Field 22 of /proc/<pid>/stat is the start time in clock ticks since boot; the command name
    // (field 2) may hold spaces, so count from the closing parenthesis.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined; // not Linux, or the process is gone: both mean "no start time to compare"
  }
}

function alive(pid: number, start: string | undefined): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  const now = processStart(pid);
  return start === undefined || now === undefined || now === start;
}

export class DirectoryLock {
  readonly file: string;
  #released = false;

  private constructor(file: string) {
    this.file = file;
  }

  static async acquire(dir: string): Promise<DirectoryLock> {
    const real = await fsp.realpath(dir);
    if (held.has(real)) throw new StratavecError('ERR_DATABASE_LOCKED', `${dir} is already open in this process`);
    const file = path.join(real, 'LOCK');
    const me = JSON.stringify({ pid: process.pid, start: processStart(process.pid) ?? null });
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fh = await fsp.open(file, 'wx', 0o644);
        await fh.writeFile(me);
        await fh.sync();
        await fh.close();
        held.add(real);
        return new DirectoryLock(file);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw ioError(err, 'creating the lock file');
      }
      let holder: { pid?: number; start?: string | null } = {};
      try {
        holder = JSON.parse(await fsp.readFile(file, 'utf8')) as typeof holder;
      } catch {
        holder = {}; // an empty or torn lock file (crash while writing it) is stale by definition
      }
      if (typeof holder.pid === 'number' && alive(holder.pid, holder.start ?? undefined)) {
        throw new StratavecError('ERR_DATABASE_LOCKED', `${dir} is locked by live process ${holder.pid}`);
      }
      await fsp.rm(file, { force: true });
    }
    throw new StratavecError('ERR_DATABASE_LOCKED', `${dir}: lost the race for the lock file`);
  }

  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    held.delete(path.dirname(this.file));
    await fsp.rm(this.file, { force: true });
  }
}
