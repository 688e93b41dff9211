// Leases: what garbage collection must not delete even though no manifest names it yet (or any
// more). A seal or compaction writing its output file, a rehydration downloading into place, an
// upload creating its object, a replaced segment that an in-flight search still reads: each holds
// a lease on the location for as long as it needs it. Locations are absolute local paths, or
// `remoteLocation(key)` for objects. Counted, because two holders can share a location.

export function remoteLocation(key: string): string {
  return `remote:${key}`;
}

export class LeaseSet {
  readonly #counts = new Map<string, number>();

  /** Holds every location until the returned function is called (once; later calls do nothing). */
  hold(locations: readonly string[]): () => void {
    for (const l of locations) this.#counts.set(l, (this.#counts.get(l) ?? 0) + 1);
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      for (const l of locations) {
        const n = (this.#counts.get(l) ?? 1) - 1;
        if (n === 0) this.#counts.delete(l);
        else this.#counts.set(l, n);
      }
    };
  }

  /** Runs `fn` holding the locations. */
  async with<T>(locations: readonly string[], fn: () => Promise<T>): Promise<T> {
    const release = this.hold(locations);
    try {
      return await fn();
    } finally {
      release();
    }
  }

  has(location: string): boolean {
    return this.#counts.has(location);
  }

  get size(): number {
    return this.#counts.size;
  }
}
