// The hot tier: segments held in memory with a live HNSW index, in an LRU bounded in bytes.
// Eviction only drops the in-memory copy (the local file and the object store keep the data), so
// it can never lose anything. Loading is the caller's job; this tier only caches and counts.

import { LRUCache } from 'lru-cache';
import type { HnswIndex } from '../index/hnsw.js';
import type { SegmentView } from './segment-view.js';

export interface HotSegment {
  view: SegmentView;
  index: HnswIndex;
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
  readonly #cache: LRUCache<string, HotSegment>;
  readonly #loading = new Map<string, Promise<HotSegment>>();
  #hits = 0;
  #misses = 0;
  #loads = 0;
  #evictions = 0;

  constructor(budgetBytes: number) {
    this.#cache = new LRUCache<string, HotSegment>({
      maxSize: budgetBytes,
      sizeCalculation: hotSegmentBytes,
      dispose: (_v, _k, reason) => {
        if (reason === 'evict') this.#evictions++;
      },
    });
  }

  has(id: string): boolean {
    return this.#cache.has(id);
  }

  /** The hot copy, loading it with `load` on a miss; concurrent misses share one load. */
  async get(id: string, load: () => Promise<HotSegment>): Promise<HotSegment> {
    const hit = this.#cache.get(id);
    if (hit) {
      this.#hits++;
      return hit;
    }
    this.#misses++;
    let pending = this.#loading.get(id);
    if (!pending) {
      pending = load().then((seg) => {
        this.#loads++;
        // A segment larger than the whole budget is served once and not kept (lru-cache refuses it).
        this.#cache.set(id, seg);
        return seg;
      }).finally(() => this.#loading.delete(id));
      this.#loading.set(id, pending);
    }
    return pending;
  }

  peek(id: string): HotSegment | undefined {
    return this.#cache.peek(id);
  }

  delete(id: string): void {
    this.#cache.delete(id);
  }

  keys(): string[] {
    return [...this.#cache.keys()];
  }

  stats(): HotTierStats {
    return {
      segments: this.#cache.size, bytes: this.#cache.calculatedSize, budget: this.#cache.maxSize,
      hits: this.#hits, misses: this.#misses, loads: this.#loads, evictions: this.#evictions,
    };
  }

  clear(): void {
    this.#cache.clear();
  }
}
