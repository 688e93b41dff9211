// Counters and latency histograms of tier traffic: migrations per route, bytes moved, uploads,
// rehydrations. Recording is a few integer adds; nothing here allocates per search.

import { createHistogram, type RecordableHistogram } from 'node:perf_hooks';

import type { Tier } from '../format/manifest.js';

export type Route = `${Tier}->${Tier}`;

export interface LatencySummary {
  count: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

function summarize(h: RecordableHistogram): LatencySummary {
  if (h.count === 0) return { count: 0, p50Ms: 0, p99Ms: 0, maxMs: 0 };
  return { count: h.count, p50Ms: h.percentile(50) / 1e6, p99Ms: h.percentile(99) / 1e6, maxMs: h.max / 1e6 };
}

export class TierStats {
  readonly migrations: Partial<Record<Route, number>> = {};
  migrationFailures = 0;
  /** Logical (raw) bytes of segments moved between tiers. */
  bytesMoved = 0;
  /** Bytes that crossed the wire to or from the object store (compressed). */
  bytesTransferred = 0;
  uploads = 0;
  uploadFailures = 0;
  /** The last failed write to the object store (upload, remote manifest, drop cleanup). */
  lastRemoteError: string | undefined;
  warmScans = 0;
  /** Bad local copies quarantined (and re-fetched when a remote copy existed). */
  repairs = 0;
  coldReads = 0;
  readonly #rehydration = createHistogram();
  readonly #promotion = createHistogram();

  migrated(route: Route, rawBytes: number, wireBytes = 0): void {
    this.migrations[route] = (this.migrations[route] ?? 0) + 1;
    this.bytesMoved += rawBytes;
    this.bytesTransferred += wireBytes;
  }

  rehydrated(ms: number): void {
    this.#rehydration.record(Math.max(1, Math.round(ms * 1e6)));
  }

  promoted(ms: number): void {
    this.#promotion.record(Math.max(1, Math.round(ms * 1e6)));
  }

  snapshot() {
    return {
      migrations: { ...this.migrations },
      migrationFailures: this.migrationFailures,
      bytesMoved: this.bytesMoved,
      bytesTransferred: this.bytesTransferred,
      uploads: this.uploads,
      uploadFailures: this.uploadFailures,
      lastRemoteError: this.lastRemoteError,
      warmScans: this.warmScans,
      repairs: this.repairs,
      coldReads: this.coldReads,
      rehydrationLatency: summarize(this.#rehydration),
      promotionLatency: summarize(this.#promotion),
    };
  }
}
