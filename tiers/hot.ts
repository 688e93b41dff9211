// The hot tier: segments held in memory with a live HNSW index, bounded in bytes. Admission from
// the read path is by value, not recency (`admit`): a segment comes in only when it is worth more
// than what it would displace, so a workload touching every segment does not churn it. Explicit
// promotions (`lease`: migrate to hot, the tiering policy) use the LRU beneath. Eviction only drops
// the in-memory copy (the local file and the object store keep the data), so it can never lose
// anything. Loading is the caller's job; this tier caches, leases and counts.
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
  /** Native index memory plus the mapped files of hot segments. */
  bytes: number;
  /** Native (hnswlib) memory alone: what the process's anonymous RSS holds for hot. */
  nativeBytes: number;
  budget: number;
  hits: number;
  misses: number;
  loads: number;
  evictions: number;
  /** Value-based admissions started by reads, and candidates refused (not worth what they would displace). */
  admissions: number;
  refusals: number;
}

/** How value-based admission weighs a segment: see `admit`. */
export interface HotValuation {
  /** What keeping `id` hot is worth now (e.g. decayed query frequency x ms saved per query). */
  valueOf(id: string): number;
  /** Admission fills the tier up to this many bytes (the policy's high watermark x budget), so it
   *  never starts the pressure the tiering policy would relieve by demoting. */
  ceilingBytes: number;
}

/** A candidate must be worth this many times what it displaces: hysteresis against churn when
 *  values are close (a uniform workload). */
export const ADMIT_MARGIN = 2;

export function hotSegmentBytes(s: HotSegment): number {
  // The HNSW graph and its copy of the vectors live in native memory; the mapped file is counted
  // too because its pages are what a hot segment keeps resident.
  return Math.max(1, s.index.memoryBytes + s.view.size);
}

export class HotTier {
  readonly #cache: LRUCache<string, Entry>;
  readonly #loading = new Map<string, Promise<Entry>>();
  readonly #valuation: HotValuation | undefined;
  #admissions = 0;
  #refusals = 0;
  /** Pinned hot segments live outside the LRU so its eviction can never touch them. */
  readonly #pinned = new Map<string, Entry>();
  #hits = 0;
  #misses = 0;
  #loads = 0;
  #evictions = 0;

  constructor(budgetBytes: number, valuation?: HotValuation) {
    this.#valuation = valuation;
    this.#cache = new LRUCache<string, Entry>({
      maxSize: Math.max(1, budgetBytes), // lru-cache needs a positive size; a 0 budget admits nothing
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
    return this.#leaseOf(entry);
  }

  #leaseOf(e: Entry): HotLease {
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

  /** True while a load of `id` is in flight. */
  isLoading(id: string): boolean {
    return this.#loading.has(id);
  }

  /** A lease on `id` if it is hot now; never loads. */
  peek(id: string): HotLease | undefined {
    const e = this.#pinned.get(id) ?? this.#cache.get(id);
    if (!e) return undefined;
    this.#hits++;
    return this.#leaseOf(e);
  }

  /**
   * Value-based admission. With room under the ceiling, `id` is loaded in the background. Without,
   * the least valuable unpinned residents that would make room are found; `id` comes in only if
   * its value exceeds ADMIT_MARGIN x theirs combined, and then they are dropped first. Never waits
   * for the load; returns whether one was started. Only one admission load runs at a time.
   */
  admit(id: string, bytes: number, load: () => Promise<HotSegment>): boolean {
    const v = this.#valuation;
    if (!v || this.has(id) || this.#loading.size > 0 || bytes > v.ceilingBytes) return false;
    const free = v.ceilingBytes - this.stats().bytes;
    const victims: string[] = [];
    if (bytes > free) {
      const residents = [...this.#cache.keys()].map((key) => ({ key, value: v.valueOf(key), bytes: this.bytesOf(key) ?? 0 }))
        .sort((a, b) => a.value - b.value || (a.key < b.key ? -1 : 1));
      let freed = 0;
      let lost = 0;
      for (const r of residents) {
        if (free + freed >= bytes) break;
        victims.push(r.key);
        freed += r.bytes;
        lost += r.value;
      }
      if (free + freed < bytes || v.valueOf(id) <= ADMIT_MARGIN * lost) {
        this.#refusals++;
        return false;
      }
    }
    for (const key of victims) {
      this.#cache.delete(key);
      this.#evictions++;
    }
    this.#admissions++;
    // The lease taken by the load is released at once: the entry stays cached for later reads.
    this.lease(id, load).then((l) => l.release(), () => undefined);
    return true;
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
    let nativeBytes = 0;
    for (const e of [...this.#pinned.values(), ...this.#cache.values()]) nativeBytes += e.segment.index.memoryBytes;
    return {
      segments: this.#cache.size + this.#pinned.size, bytes: this.#cache.calculatedSize + this.#pinnedBytes(), nativeBytes,
      budget: this.#cache.maxSize, hits: this.#hits, misses: this.#misses, loads: this.#loads, evictions: this.#evictions,
      admissions: this.#admissions, refusals: this.#refusals,
    };
  }

  clear(): void {
    for (const id of [...this.#pinned.keys()]) this.delete(id);
    this.#cache.clear();
  }
}
