// Two-phase garbage collection over candidates the engine found (what no live manifest version
// references). Phase one marks a candidate with the clock's time the first time it is seen;
// phase two deletes it once it has stayed garbage for the grace period, is not leased, and is
// still unreferenced when checked again right before the delete. Marks are persisted (a small
// JSON file written by the crash-safe recipe) so a process that runs GC rarely, or restarts
// often, still gets to delete. A mark is tied to the candidate's identity (size and mtime, or
// ETag, or upload id): a new file or object under the same name starts a new grace period.

import { promises as fsp } from 'node:fs';
import { writeFileAtomic } from '../format/fsutil.js';

export type GarbageReason =
  | 'replaced-segment' // a segment compaction replaced
  | 'unreferenced-file' // a local segment file or stub no manifest names (crashed seal or move)
  | 'unreferenced-object' // a remote segment copy no manifest names (crashed upload)
  | 'dropped-collection' // data of a collection that no longer exists
  | 'old-manifest' // a remote manifest version older than the ones readers may still use
  | 'temp-file' // a temp file left by a crashed write
  | 'quarantined' // a bad local copy kept aside for inspection
  | 'incomplete-upload'; // a multipart upload never completed or aborted

export interface GarbageItem {
  kind: 'file' | 'object' | 'upload';
  /** An absolute path, `remote:<key>`, or `upload:<key>#<uploadId>`. */
  location: string;
  bytes: number;
  reason: GarbageReason;
  /** Changes when the thing under `location` is replaced by another. */
  identity: string;
}

export type GcAction =
  | 'deleted'
  | 'would-delete' // dry run: past its grace period, would go now
  | 'marked' // seen for the first time: the grace period starts now
  | 'would-mark'
  | 'waiting' // marked, grace period not over
  | 'leased' // past its grace period but in use
  | 'referenced' // garbage when scanned, but referenced again (or replaced) when rechecked
  | 'failed';

export interface GcEntry extends GarbageItem {
  action: GcAction;
  markedAt: number;
  /** When it may be deleted (markedAt + grace). */
  deletableAt: number;
  error?: string;
}

export interface SweepContext {
  now: number;
  graceMs: number;
  dryRun: boolean;
  isLeased(item: GarbageItem): boolean;
  /** Re-checked right before deleting: still the same thing, and still unreferenced? */
  stillGarbage(item: GarbageItem): Promise<boolean>;
  remove(item: GarbageItem): Promise<void>;
  /** Locations this scan could not look at (e.g. the store was down): their marks are kept. */
  unscanned?(location: string): boolean;
}

interface Mark {
  at: number;
  identity: string;
}

/** The persisted marks of phase one. */
export class MarkBook {
  readonly file: string;
  #marks = new Map<string, Mark>();

  private constructor(file: string) {
    this.file = file;
  }

  /** Loads the marks; a missing or unreadable file means none (marking again only delays deletes). */
  static async load(file: string): Promise<MarkBook> {
    const book = new MarkBook(file);
    try {
      const parsed = JSON.parse(await fsp.readFile(file, 'utf8')) as { marks?: Record<string, Mark> };
      for (const [loc, m] of Object.entries(parsed.marks ?? {})) {
        if (typeof m?.at === 'number' && typeof m.identity === 'string') book.#marks.set(loc, { at: m.at, identity: m.identity });
      }
    } catch {
      // start over
    }
    return book;
  }

  get size(): number {
    return this.#marks.size;
  }

  async save(): Promise<void> {
    await writeFileAtomic(this.file, Buffer.from(JSON.stringify({ format: 1, marks: Object.fromEntries(this.#marks) })));
  }

  /**
   * Phase one and two over this scan's candidates. Marks of locations that are no longer
   * candidates are dropped (they were deleted, or became referenced again).
   */
  async sweep(items: readonly GarbageItem[], ctx: SweepContext): Promise<GcEntry[]> {
    const out: GcEntry[] = [];
    const seen = new Set<string>();
    for (const item of items) {
      seen.add(item.location);
      let mark = this.#marks.get(item.location);
      if (!mark || mark.identity !== item.identity) {
        mark = { at: ctx.now, identity: item.identity };
        if (!ctx.dryRun) this.#marks.set(item.location, mark);
        out.push({ ...item, action: ctx.dryRun ? 'would-mark' : 'marked', markedAt: mark.at, deletableAt: mark.at + ctx.graceMs });
        continue;
      }
      const entry: GcEntry = { ...item, action: 'waiting', markedAt: mark.at, deletableAt: mark.at + ctx.graceMs };
      out.push(entry);
      if (ctx.now < entry.deletableAt) continue;
      if (ctx.isLeased(item)) {
        entry.action = 'leased';
      } else if (!(await ctx.stillGarbage(item))) {
        entry.action = 'referenced';
        if (!ctx.dryRun) this.#marks.delete(item.location);
      } else if (ctx.dryRun) {
        entry.action = 'would-delete';
      } else {
        try {
          await ctx.remove(item);
          entry.action = 'deleted';
          this.#marks.delete(item.location);
        } catch (err) {
          entry.action = 'failed';
          entry.error = err instanceof Error ? err.message : String(err);
        }
      }
    }
    if (!ctx.dryRun) {
      for (const loc of [...this.#marks.keys()]) if (!seen.has(loc) && !ctx.unscanned?.(loc)) this.#marks.delete(loc);
    }
    return out;
  }
}
