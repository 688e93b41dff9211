// The public Collection: validates every argument, then hands trusted data to CollectionCore.
// Caller mistakes of type throw TypeError; bad values throw coded StratavecErrors. Nothing is
// written unless the whole batch is valid.

import { StratavecError } from '../format/errors.js';
import { validateId } from '../format/names.js';
import type { WalUpsertRecord } from '../format/wal.js';
import { normalizeInPlace } from '../index/distance.js';
import { checkTier, TIERS, type Tier } from '../format/manifest.js';
import type { Metric } from '../format/segment.js';
import type { MoveResult } from '../tiers/migrator.js';
import type { CollectionCore, SegmentDetail, SegmentInfo } from './collection-core.js';
import type { ExplainResult, SearchHit, SearchRequest, StoredRecord } from './read-path.js';
import { compileFilter, type Filter, type Payload } from './filter.js';
import { fillIndexes } from './options.js';

export interface UpsertRecord {
  id: string;
  vector: Float32Array | ArrayLike<number>;
  payload?: Payload;
}

export interface SearchOptions {
  /** How many neighbours to return (default 10, at most 10,000). */
  k?: number;
  /** HNSW beam width (default: the collection's efSearch; raised to k when smaller). */
  ef?: number;
  /** Conditions on payload fields (`{ lang: 'en', price: { $lt: 10 } }`, README "Filters"), or a
   *  predicate over the payload. An invalid filter is ERR_INVALID_FILTER before any work. */
  filter?: Filter;
  /** Return payloads with the hits (default true). */
  includePayload?: boolean;
  /** Exact search: scan every vector instead of the HNSW graph (slow; the ground truth). */
  exact?: boolean;
  /** Tiers the search may read (default all). Leaving out 'cold' skips cold segments instead of
   *  rehydrating them: faster, but their records are not searched. */
  tiers?: Tier[];
  /** Search at most this many sealed segments, nearest bound first (as nprobe in IVF): faster and
   *  no longer exact. Default: every segment whose bound can beat the k-th result. */
  probe?: number;
}

const SEARCH_KEYS: ReadonlySet<string> = new Set(['k', 'ef', 'filter', 'includePayload', 'exact', 'tiers', 'probe']);

export const MAX_PAYLOAD_BYTES = 1024 * 1024;
export const MAX_K = 10_000;
const MAX_EF = 100_000;

export class Collection {
  readonly name: string;
  readonly dimension: number;
  readonly metric: Metric;
  readonly #core: CollectionCore;
  readonly #check: () => void;
  readonly #efSearch: number;

  /** @internal Created by Database; `check` throws when the database or collection is gone. */
  constructor(core: CollectionCore, check: () => void) {
    this.#core = core;
    this.#check = check;
    this.name = core.name;
    this.dimension = core.dimension;
    this.metric = core.metric;
    this.#efSearch = core.manifest.hnsw.efSearch;
  }

  /** Inserts or replaces records; resolves once the batch is durable (WAL fsync). */
  async upsert(records: UpsertRecord[]): Promise<void> {
    this.#check();
    if (!Array.isArray(records)) throw new TypeError('upsert expects an array of { id, vector, payload? }');
    if (records.length === 0) return;
    const seen = new Set<string>();
    const out: WalUpsertRecord[] = new Array(records.length);
    for (let i = 0; i < records.length; i++) {
      const rec = records[i];
      if (typeof rec !== 'object' || rec === null) throw new TypeError(`record ${i} must be an object`);
      const id = validateId(rec.id);
      if (seen.has(id)) throw new StratavecError('ERR_DUPLICATE_ID', `id ${JSON.stringify(id.slice(0, 64))} appears twice in one batch`);
      seen.add(id);
      out[i] = { id, vector: this.#vector(rec.vector, `record ${JSON.stringify(id.slice(0, 64))}`), payloadJson: payloadJson(rec.payload, id) };
    }
    await this.#core.upsert(out);
  }

  /** Deletes records by id (absent ids are ignored); resolves once durable. */
  async delete(ids: string[]): Promise<void> {
    this.#check();
    if (!Array.isArray(ids)) throw new TypeError('delete expects an array of ids');
    if (ids.length === 0) return;
    await this.#core.delete(ids.map(validateId));
  }

  /** The stored records, in the order asked, `undefined` where absent. */
  async get(ids: string[]): Promise<(StoredRecord | undefined)[]> {
    this.#check();
    if (!Array.isArray(ids)) throw new TypeError('get expects an array of ids');
    return this.#core.get(ids.map(validateId));
  }

  /** The k nearest live records, nearest first. */
  async search(query: Float32Array | ArrayLike<number>, options: SearchOptions = {}): Promise<SearchHit[]> {
    this.#check();
    return this.#core.search(this.#request(query, options));
  }

  /**
   * Runs a search and reports how it went: the hits, the time, and per sealed segment (nearest
   * bound first) its tier, how it was searched or why it was not (`hnsw`, `mapped-hnsw`, `scan`,
   * `rows`, `pruned`, `no-match`, `skipped`), its time, whether it was rehydrated and the bytes
   * fetched, its bound and the rows a filter passed.
   */
  async explain(query: Float32Array | ArrayLike<number>, options: SearchOptions = {}): Promise<ExplainResult> {
    this.#check();
    return this.#core.explain(this.#request(query, options));
  }

  #request(query: Float32Array | ArrayLike<number>, options: SearchOptions): SearchRequest {
    if (typeof options !== 'object' || options === null) throw new TypeError('search options must be an object');
    for (const key of Object.keys(options)) {
      if (!SEARCH_KEYS.has(key)) throw new StratavecError('ERR_INVALID_ARGUMENT', `unknown search option ${JSON.stringify(key)}; known: ${[...SEARCH_KEYS].join(', ')}`);
    }
    const q = this.#vector(query, 'query');
    const k = options.k ?? 10;
    intInRange('k', k, 1, MAX_K);
    const ef = options.ef ?? this.#efSearch;
    intInRange('ef', ef, 1, MAX_EF);
    if (options.probe !== undefined) intInRange('probe', options.probe, 1, Number.MAX_SAFE_INTEGER);
    if (options.exact !== undefined && typeof options.exact !== 'boolean') throw new TypeError('exact must be a boolean');
    if (options.includePayload !== undefined && typeof options.includePayload !== 'boolean') throw new TypeError('includePayload must be a boolean');
    return {
      query: q, k, ef: Math.max(ef, k), filter: compileFilter(options.filter), includePayload: options.includePayload ?? true,
      exact: options.exact === true, tiers: tierSet(options.tiers), probe: options.probe,
    };
  }

  /** Seals the growing segment now and waits until it is committed. */
  async flush(): Promise<void> {
    this.#check();
    await this.#core.flush();
  }

  /** Live records. */
  count(): number {
    this.#check();
    return this.#core.count();
  }

  segments(): SegmentInfo[] {
    this.#check();
    return this.#core.segments();
  }

  /**
   * One segment in depth: its SegmentInfo, per section the kind, raw size and, for the local and
   * the remote copy, codec, stored size and ratio (the remote table costs two ranged GETs; if the
   * store does not answer, `remote.error` says so), and its access statistics in this process.
   */
  async describeSegment(segmentId: string): Promise<SegmentDetail> {
    this.#check();
    if (typeof segmentId !== 'string') throw new TypeError('segment id must be a string');
    return this.#core.describeSegment(segmentId);
  }

  /** Pins a segment to a tier and moves it there; the tiering policy leaves pinned segments be. */
  async pin(segmentId: string, tier: Tier): Promise<MoveResult> {
    this.#check();
    if (typeof segmentId !== 'string') throw new TypeError('segment id must be a string');
    return this.#core.pin(segmentId, checkTier(tier));
  }

  async unpin(segmentId: string): Promise<void> {
    this.#check();
    if (typeof segmentId !== 'string') throw new TypeError('segment id must be a string');
    await this.#core.unpin(segmentId);
  }

  /**
   * Declares payload indexes on an existing collection (`{ 'meta.lang': 'keyword' }`, as the
   * `indexes` option of createCollection) and builds them into every local segment in the worker
   * pool, by rewriting each segment that lacks one. Cold segments keep filtering by payload scan
   * until they are compacted. Resolves with the ids of the segments rewritten.
   */
  async createIndex(indexes: Record<string, 'keyword' | 'number' | 'bool'>): Promise<string[]> {
    this.#check();
    const declared = fillIndexes(indexes);
    if (!declared) throw new StratavecError('ERR_INVALID_ARGUMENT', 'createIndex needs at least one { path: type }');
    return this.#core.createIndex(declared);
  }

  /** Copies to float32, checks dimension and finiteness, normalises for cosine. */
  #vector(v: unknown, what: string): Float32Array {
    if (!(v instanceof Float32Array) && !Array.isArray(v) && !ArrayBuffer.isView(v)) {
      throw new TypeError(`${what}: vector must be a Float32Array or an array of numbers`);
    }
    const src = v as ArrayLike<number>;
    if (src.length !== this.dimension) {
      throw new StratavecError('ERR_DIMENSION_MISMATCH', `${what}: vector has ${src.length} dimensions, collection ${this.name} has ${this.dimension}`);
    }
    // Not Float32Array.from: it walks the iterator protocol, ~9% of ingest CPU in a profile.
    const out = src instanceof Float32Array ? src.slice() : new Float32Array(src as ArrayLike<number>);
    for (let i = 0; i < out.length; i++) {
      // Checked after the float32 conversion: 1e39 is finite as a double but Infinity as a float.
      if (!Number.isFinite(out[i]!)) throw new StratavecError('ERR_INVALID_VECTOR', `${what}: component ${i} is ${src[i]}`);
    }
    if (this.metric === 'cosine' && !normalizeInPlace(out)) {
      throw new StratavecError('ERR_INVALID_VECTOR', `${what}: a zero vector has no direction (cosine metric)`);
    }
    return out;
  }
}

const ALL_TIERS: ReadonlySet<Tier> = new Set(TIERS);

function tierSet(tiers: unknown): ReadonlySet<Tier> {
  if (tiers === undefined) return ALL_TIERS;
  if (!Array.isArray(tiers)) throw new TypeError('tiers must be an array of tier names');
  return new Set(tiers.map((t) => checkTier(t)));
}

function intInRange(name: string, v: unknown, min: number, max: number): void {
  if (typeof v !== 'number') throw new TypeError(`${name} must be a number`);
  if (!Number.isInteger(v) || v < min || v > max) throw new StratavecError('ERR_INVALID_ARGUMENT', `${name} must be an integer in [${min}, ${max}], got ${v}`);
}

function payloadJson(payload: unknown, id: string): string | null {
  if (payload === undefined) return null;
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) {
    throw new TypeError(`payload of ${JSON.stringify(id.slice(0, 64))} must be a plain object`);
  }
  let json: string | undefined;
  try {
    json = JSON.stringify(payload);
  } catch (err) {
    throw new StratavecError('ERR_INVALID_PAYLOAD', `payload of ${JSON.stringify(id.slice(0, 64))} is not JSON-serialisable`, { cause: err });
  }
  // toJSON() can turn an object into anything (a Date into a string): only an object text is kept.
  if (typeof json !== 'string' || json.charCodeAt(0) !== 0x7b /* { */) {
    throw new StratavecError('ERR_INVALID_PAYLOAD', `payload of ${JSON.stringify(id.slice(0, 64))} does not serialise to a JSON object`);
  }
  if (json.length > MAX_PAYLOAD_BYTES / 3 && Buffer.byteLength(json) > MAX_PAYLOAD_BYTES) {
    throw new StratavecError('ERR_INVALID_PAYLOAD', `payload of ${JSON.stringify(id.slice(0, 64))} is over ${MAX_PAYLOAD_BYTES} bytes`);
  }
  return json;
}
