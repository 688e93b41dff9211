// The hot tier: segments held in memory with a live HNSW index, in an LRU bounded in bytes.
// Eviction only drops the in-memory copy (the local file and the object store keep the data), so
// it can never lose anything. Loading is the caller's job; this tier caches, leases and counts.
// The HNSW graph lives in native memory V8 cannot see, so an evicted index is freed explicitly,
// once the last lease on it is released.

import { LRUCache } from 'lru-cache';
import type { HnswIndex } from '../index/hnsw.js';
import type { SegmentView } from './segment-view.js';

export interface HotSegment {
  view: SegmentView;
  index: HnswIndex;
}

/** A hot segment held for one operation: its index is not freed until released. */
export interface HotLease {
  readonly segment: HotSegment;
  release(): void;
}

/** Lease counts and eviction marks, so native memory is freed as soon as nothing uses it. */
class Entry {
  readonly segment: HotSegment;
  leases = 0;
  evicted = false;

  constructor(segment: HotSegment) {
    this.segment = segment;
  }

  disposeIfIdle(): void {
    if (this.evicted && this.leases === 0) this.segment.index.dispose();
  }
}

export interface HotTierStats {
  segments: number;
  bytes: number;
  budget: number;
  hits: number;
  misses: number;
  loads: number;
  evictions: number;
}

export function hotSegmentBytes(s: HotSegment): number {
  // The HNSW graph and its copy of the vectors live in native memory; the mapped file is counted
  // too because its pages are what a hot segment keeps resident.
  return Math.max(1, s.index.memoryBytes + s.view.size);
}

export class HotTier {
  readonly #cache: LRUCache<string, Entry>;
  readonly #loading = new Map<string, Promise<Entry>>();
  /** Pinned hot segments live outside the LRU so its eviction can never touch them. */
  readonly #pinned = new Map<string, Entry>();
  #hits = 0;
  #misses = 0;
  #loads = 0;
  #evictions = 0;

  constructor(budgetBytes: number) {
    this.#cache = new LRUCache<string, Entry>({
      maxSize: budgetBytes,
      sizeCalculation: (e) => hotSegmentBytes(e.segment),
      dispose: (entry, key, reason) => {
        if (reason === 'evict') this.#evictions++;
        if (reason !== 'set' && this.#pinned.get(key) !== entry) {
          entry.evicted = true;
          entry.disposeIfIdle();
        }
      },
    });
  }

  has(id: string): boolean {
    return this.#pinned.has(id) || this.#cache.has(id);
  }

  /** Moves a hot segment out of the LRU so it stays until unpinned. False when it is not hot. */
  pin(id: string): boolean {
    if (this.#pinned.has(id)) return true;
    const e = this.#cache.peek(id);
    if (!e) return false;
    this.#pinned.set(id, e);
    this.#cache.delete(id); // dispose() below sees the pin and leaves the index alone
    return true;
  }

  /** Returns a pinned segment to the LRU (which may evict it at once if over budget). */
  unpin(id: string): void {
    const e = this.#pinned.get(id);
    if (!e) return;
    this.#pinned.delete(id);
    this.#cache.set(id, e);
    if (!this.#cache.has(id)) {
      e.evicted = true;
      e.disposeIfIdle();
    }
  }

  /**
   * Leases the hot copy of `id`, loading it with `load` on a miss (concurrent misses share one
   * load). The caller must release the lease when done with the index.
   */
  async lease(id: string, load: () => Promise<HotSegment>): Promise<HotLease> {
    let entry = this.#pinned.get(id) ?? this.#cache.get(id);
    if (entry) {
      this.#hits++;
    } else {
      this.#misses++;
      let pending = this.#loading.get(id);
      if (!pending) {
        pending = load().then((seg) => {
          this.#loads++;
          const e = new Entry(seg);
          this.#cache.set(id, e);
          // A segment larger than the whole budget is served once and not kept (lru-cache refuses it).
          if (!this.#cache.has(id)) e.evicted = true;
          return e;
        }).finally(() => this.#loading.delete(id));
        this.#loading.set(id, pending);
      }
      entry = await pending;
    }
    const e = entry;
    e.leases++;
    let released = false;
    return {
      segment: e.segment,
      release: () => {
        if (released) return;
        released = true;
        e.leases--;
        e.disposeIfIdle();
      },
    };
  }

  delete(id: string): void {
    const pinned = this.#pinned.get(id);
    if (pinned) {
      this.#pinned.delete(id);
      pinned.evicted = true;
      pinned.disposeIfIdle();
    }
    this.#cache.delete(id);
  }

  keys(): string[] {
    return [...this.#pinned.keys(), ...this.#cache.keys()];
  }

  /** Memory of one hot segment, or undefined when it is not hot. */
  bytesOf(id: string): number | undefined {
    const e = this.#pinned.get(id) ?? this.#cache.peek(id);
    return e ? hotSegmentBytes(e.segment) : undefined;
  }

  #pinnedBytes(): number {
    let n = 0;
    for (const e of this.#pinned.values()) n += hotSegmentBytes(e.segment);
    return n;
  }

  stats(): HotTierStats {
    return {
      segments: this.#cache.size + this.#pinned.size, bytes: this.#cache.calculatedSize + this.#pinnedBytes(), budget: this.#cache.maxSize,
      hits: this.#hits, misses: this.#misses, loads: this.#loads, evictions: this.#evictions,
    };
  }

  clear(): void {
    for (const id of [...this.#pinned.keys()]) this.delete(id);
    this.#cache.clear();
  }
}
