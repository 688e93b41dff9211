// The recent queries of one collection: a ring of the last query vectors searched (as searched:
// normalised for cosine), kept in memory only. Clustering compaction reads it to learn where the
// workload goes, and packs the most searched parts of the space into the same segments so the
// tiering policy can keep them local and leave the rest cold (README "Clustering compaction").
// Like the access statistics beside it, it starts empty at every open.

/** Most queries kept; fewer at high dimensions (QUERY_SAMPLE_BYTES). */
export const QUERY_SAMPLE_MAX = 4096;
/** Memory the ring may take per collection. */
export const QUERY_SAMPLE_BYTES = 4 * 1024 * 1024;

export class QuerySample {
  readonly dimension: number;
  readonly capacity: number;
  readonly #ring: Float32Array;
  /** Queries recorded since open (the ring holds the last `capacity` of them). */
  #seen = 0;

  constructor(dimension: number, capacity = Math.max(1, Math.min(QUERY_SAMPLE_MAX, Math.floor(QUERY_SAMPLE_BYTES / (4 * dimension))))) {
    this.dimension = dimension;
    this.capacity = capacity;
    this.#ring = new Float32Array(capacity * dimension);
  }

  record(query: Float32Array): void {
    if (query.length !== this.dimension) return;
    this.#ring.set(query, (this.#seen % this.capacity) * this.dimension);
    this.#seen++;
  }

  /** Queries recorded since open. */
  get seen(): number {
    return this.#seen;
  }

  /** How many the ring holds now. */
  get size(): number {
    return Math.min(this.#seen, this.capacity);
  }

  /** A copy of the queries held, `size * dimension` (order does not matter to its readers). */
  snapshot(): Float32Array {
    return this.#ring.slice(0, this.size * this.dimension);
  }
}
