// Filters as row sets: evaluation of a compiled filter into one bitmap per segment (payload
// indexes where they answer, otherwise at most one JSON parse per row, only for rows still in
// question; tombstones folded in), and the segment-level test `mayMatch` over a payload summary.
// Reads segment data through FilterSource only; it never touches vectors and never writes.

import type { PayloadSummary, FieldSummary } from '../format/payload-schema.js';
import { matchesPayload, compareScalar, type CompiledFilter, type FilterNode, type LeafNode, type Json, type Payload } from './filter.js';
import type { FieldIndex, PayloadIndex } from './payload-index.js';

/** What evaluation reads of a segment: SegmentView (sealed) and GrowingSegment both fit. */
export interface FilterSource {
  readonly count: number;
  /** Row `row`'s payload, parsed (undefined when the record has none). */
  payload(row: number): Payload | undefined;
  /** The segment's payload indexes, when it has any. */
  readonly payloadIndex?: PayloadIndex | undefined;
}

export interface EvalStats {
  /** Rows whose payload was parsed (each at most once per evaluation). */
  parsed: number;
  /** Leaves answered from a payload index. */
  indexedLeaves: number;
}

class Evaluation {
  readonly #src: FilterSource;
  readonly #index: PayloadIndex | undefined;
  // Allocated on the first parse: a filter the indexes answer never pays for them.
  #cache: (Payload | undefined)[] | undefined;
  #have: Uint8Array | undefined;
  readonly stats: EvalStats = { parsed: 0, indexedLeaves: 0 };

  constructor(src: FilterSource) {
    this.#src = src;
    this.#index = src.payloadIndex;
  }

  payload(row: number): Payload | undefined {
    const have = (this.#have ??= new Uint8Array(this.#src.count));
    const cache = (this.#cache ??= []);
    if (have[row] === 1) return cache[row];
    const p = this.#src.payload(row);
    cache[row] = p;
    have[row] = 1;
    this.stats.parsed++;
    return p;
  }

  /** The field index that can answer this leaf, if any. */
  fieldFor(node: FilterNode): FieldIndex | undefined {
    return 'path' in node ? this.#index?.field(node.path) : undefined;
  }

  usesIndex(node: FilterNode): boolean {
    switch (node.op) {
      case 'and':
      case 'or': return node.children.some((c) => this.usesIndex(c));
      case 'not': return this.usesIndex(node.child);
      case 'all':
      case 'fn': return false;
      default: return this.fieldFor(node) !== undefined;
    }
  }

  /** Rows of `domain` that match `node`. Never reads a payload outside `domain`. */
  eval(node: FilterNode, domain: Uint8Array): Uint8Array {
    if (!this.usesIndex(node)) return this.scan(node, domain);
    switch (node.op) {
      case 'and': {
        // Indexed children first: they narrow the domain the scanned ones must parse.
        const kids = [...node.children].sort((a, b) => Number(!this.usesIndex(a)) - Number(!this.usesIndex(b)));
        let cur = domain;
        for (const c of kids) {
          cur = this.eval(c, cur);
          if (isEmpty(cur)) break;
        }
        return cur === domain ? domain.slice() : cur;
      }
      case 'or': {
        const kids = [...node.children].sort((a, b) => Number(!this.usesIndex(a)) - Number(!this.usesIndex(b)));
        const acc = new Uint8Array(domain.length);
        const rest = domain.slice();
        for (const c of kids) {
          const r = this.eval(c, rest);
          for (let i = 0; i < r.length; i++) {
            if (r[i] === 1) {
              acc[i] = 1;
              rest[i] = 0;
            }
          }
        }
        return acc;
      }
      case 'not': {
        const r = this.eval(node.child, domain);
        const out = new Uint8Array(domain.length);
        for (let i = 0; i < out.length; i++) out[i] = domain[i]! & (r[i]! ^ 1);
        return out;
      }
      default:
        return this.leaf(node as LeafNode, this.fieldFor(node)!, domain);
    }
  }

  leaf(node: LeafNode, f: FieldIndex, domain: Uint8Array): Uint8Array {
    this.stats.indexedLeaves++;
    const out = new Uint8Array(domain.length);
    // Operands the index cannot answer (another type, arrays, objects) can only match rows in
    // `other` (see payload-index.ts), so only those rows are parsed for them.
    const leftovers: Json[] = [];
    const eq = (v: Json) => {
      if (v === null) orList(f.nulls, out);
      else if (f.takes(v)) f.orEqual(v, out);
      else leftovers.push(v);
    };
    switch (node.op) {
      case 'exists':
        f.orPresent(out);
        break;
      case 'eq':
        eq(node.value);
        if (leftovers.length > 0) this.scanRows(f.other, { ...node, value: leftovers[0]! }, domain, out);
        break;
      case 'in':
        for (const v of node.values) eq(v);
        if (leftovers.length > 0) this.scanRows(f.other, { ...node, values: leftovers }, domain, out);
        break;
      case 'range':
        if (f.type !== 'bool' && f.takes(node.value)) f.orRange(node.cmp, node.value, out);
        else this.scanRows(f.other, node, domain, out);
        break;
    }
    for (let i = 0; i < out.length; i++) out[i]! &= domain[i]!;
    return out;
  }

  scanRows(rows: Uint32Array, node: FilterNode, domain: Uint8Array, out: Uint8Array): void {
    for (let i = 0; i < rows.length; i++) {
      const r = rows[i]!;
      if (domain[r] === 1 && matchesPayload(node, this.payload(r))) out[r] = 1;
    }
  }

  /** A filter no index helps: one pass, each live row parsed once, nothing cached. */
  scanOnce(node: FilterNode, domain: Uint8Array): Uint8Array {
    const out = new Uint8Array(domain.length);
    for (let r = 0; r < domain.length; r++) {
      if (domain[r] === 1) {
        this.stats.parsed++;
        if (matchesPayload(node, this.#src.payload(r))) out[r] = 1;
      }
    }
    return out;
  }

  scan(node: FilterNode, domain: Uint8Array): Uint8Array {
    const out = new Uint8Array(domain.length);
    if (node.op === 'all') return domain.slice();
    for (let r = 0; r < domain.length; r++) {
      if (domain[r] === 1 && matchesPayload(node, this.payload(r))) out[r] = 1;
    }
    return out;
  }
}

function orList(rows: Uint32Array, out: Uint8Array): void {
  for (let i = 0; i < rows.length; i++) out[rows[i]!] = 1;
}

function isEmpty(b: Uint8Array): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

/**
 * The rows of `source` that pass `compiled` and are live: out[row] = 1. `tomb[row] = 1` marks a
 * deleted row (the SealedSegment's array; omit for none). `compiled` undefined passes every live row.
 */
export function evaluate(compiled: CompiledFilter | undefined, source: FilterSource, tomb?: Uint8Array, stats?: EvalStats): Uint8Array {
  const n = source.count;
  if (tomb !== undefined && tomb.length < n) throw new RangeError(`tombstones cover ${tomb.length} of ${n} rows`);
  const live = new Uint8Array(n);
  for (let r = 0; r < n; r++) live[r] = tomb === undefined ? 1 : tomb[r]! === 0 ? 1 : 0;
  if (compiled === undefined) return live;
  const ev = new Evaluation(source);
  const out = ev.usesIndex(compiled.root) ? ev.eval(compiled.root, live) : ev.scanOnce(compiled.root, live);
  if (stats) {
    stats.parsed += ev.stats.parsed;
    stats.indexedLeaves += ev.stats.indexedLeaves;
  }
  return out;
}

/** How many rows a bitmap passes. */
export function countRows(bitmap: Uint8Array): number {
  let n = 0;
  for (let i = 0; i < bitmap.length; i++) n += bitmap[i]!;
  return n;
}

/** The passing rows, ascending: the input of an exact scan over just those rows. */
export function rowsOf(bitmap: Uint8Array): Uint32Array {
  const out = new Uint32Array(countRows(bitmap));
  let j = 0;
  for (let i = 0; i < bitmap.length; i++) if (bitmap[i] === 1) out[j++] = i;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Segment skipping. `may` is true unless no row can match; `must` is true only when every row
// matches. Both err on the safe side, so mayMatch is false only when the segment truly cannot match.

/**
 * Whether any row of a segment with this summary can pass the filter. False means the segment can
 * be skipped; fields without a summary (not indexed) can always match.
 */
export function mayMatch(compiled: CompiledFilter | undefined, summary: PayloadSummary | undefined): boolean {
  if (compiled === undefined || summary === undefined) return true;
  if (summary.rows === 0) return false;
  return may(compiled.root, summary);
}

function may(node: FilterNode, s: PayloadSummary): boolean {
  switch (node.op) {
    case 'all':
    case 'fn': return true;
    case 'and': return node.children.every((c) => may(c, s));
    case 'or': return node.children.some((c) => may(c, s));
    case 'not': return !must(node.child, s);
    default: {
      const f = Object.hasOwn(s.fields, node.path) ? s.fields[node.path] : undefined;
      return f === undefined ? true : leafMay(node, f);
    }
  }
}

function must(node: FilterNode, s: PayloadSummary): boolean {
  switch (node.op) {
    case 'all': return true;
    case 'fn': return false;
    case 'and': return node.children.every((c) => must(c, s));
    case 'or': return node.children.some((c) => must(c, s));
    case 'not': return !may(node.child, s);
    default: {
      const f = Object.hasOwn(s.fields, node.path) ? s.fields[node.path] : undefined;
      return f === undefined ? false : leafMust(node, f, s.rows);
    }
  }
}

function takes(f: FieldSummary, v: unknown): boolean {
  return f.type === 'keyword' ? typeof v === 'string' : f.type === 'bool' ? typeof v === 'boolean' : typeof v === 'number';
}

function eqMay(f: FieldSummary, v: Json): boolean {
  if (v === null) return f.nulls;
  if (!takes(f, v)) return f.other;
  if (f.type === 'number') return f.min !== undefined && f.min <= (v as number) && (v as number) <= f.max!;
  return f.values === undefined ? f.present > 0 : f.values.includes(v as string | boolean);
}

/** Every row holds exactly one scalar of the index's type (no arrays, nulls, others, gaps). */
function uniform(f: FieldSummary, rows: number): boolean {
  return f.present === rows && !f.nulls && !f.other;
}

function eqMust(f: FieldSummary, v: Json, rows: number): boolean {
  if (v === null || !takes(f, v) || !uniform(f, rows)) return false;
  if (f.type === 'number') return f.min === v && f.max === v;
  return f.values !== undefined && f.values.length === 1 && f.values[0] === v;
}

function leafMay(node: LeafNode, f: FieldSummary): boolean {
  switch (node.op) {
    case 'exists': return f.present > 0;
    case 'eq': return eqMay(f, node.value);
    case 'in': return node.values.some((v) => eqMay(f, v));
    case 'range': {
      const v = node.value;
      if (f.type === 'bool' || !takes(f, v)) return f.other;
      if (f.type === 'number') {
        if (f.min === undefined) return false;
        return compareScalar(node.cmp === 'gt' || node.cmp === 'gte' ? f.max : f.min, node.cmp, v);
      }
      return f.values === undefined ? f.present > 0 : f.values.some((x) => compareScalar(x, node.cmp, v));
    }
  }
}

function leafMust(node: LeafNode, f: FieldSummary, rows: number): boolean {
  switch (node.op) {
    case 'exists': return f.present === rows;
    case 'eq': return eqMust(f, node.value, rows);
    case 'in': return node.values.some((v) => eqMust(f, v, rows));
    case 'range': {
      const v = node.value;
      if (f.type === 'bool' || !takes(f, v) || !uniform(f, rows)) return false;
      if (f.type === 'number') {
        return f.min !== undefined && compareScalar(node.cmp === 'gt' || node.cmp === 'gte' ? f.min : f.max, node.cmp, v);
      }
      return f.values !== undefined && f.values.every((x) => compareScalar(x, node.cmp, v));
    }
  }
}
