// The payload filter grammar: validation and compilation into a small tree, and the per-payload
// evaluator every other path (index, scan, reference tests) must agree with. It owns meaning only:
// no segment bytes, no I/O; it must never run user work beyond calling a predicate the user gave.
//
// Grammar (documented for users in README "Filters"):
//
//   filter   := predicate function (payload) => boolean      evaluated once per row
//             | { clause, clause, ... }                         all clauses must hold ({} = every row)
//   clause   := path: literal                                  same as path: { $eq: literal }
//             | path: { op: operand, ... }                      all ops must hold (each on its own)
//             | $and: [filter-object, ...]  (non-empty)
//             | $or:  [filter-object, ...]  (non-empty)
//             | $not: filter-object
//   op       := $eq | $ne | $in | $nin | $gt | $gte | $lt | $lte | $exists | $not (operand: { op... })
//   path     := field names joined by '.', e.g. 'a.b'; each step enters a plain object only
//               (a step into an array, a primitive or null gives "missing"); a name containing
//               '.' or starting with '$' cannot be addressed.
//
// An object value whose keys all start with '$' is an operator object; one with no '$' key is a
// literal (deep equality); mixing the two is ERR_INVALID_FILTER.
//
// Semantics (value = what the path resolves to; "missing" when it resolves to nothing):
// - $eq v: value deep-equals v, or value is an array and one of its elements deep-equals v (as in
//   MongoDB and Qdrant: { tags: 'a' } matches tags ['a', 'b']). Deep equality ignores object key
//   order. Missing never equals anything; null equals only a stored null (use $exists for missing).
// - $in [v...]: $eq of any listed value ($in [] matches nothing).
// - $ne v = $not { $eq v }; $nin = $not { $in }: so both match rows where the field is missing,
//   and an array matches $ne v only when no element equals v.
// - $gt/$gte/$lt/$lte v: v is a finite number or a string; only a value of the same type compares
//   (numbers numerically, strings by UTF-16 code units as JS `<`); 10 never compares with '10', and
//   null, booleans, objects and missing never match. An array matches when one of its elements does.
//   Several ops on one field each hold on their own: on an array, { $gt: 1, $lt: 5 } is "one element
//   > 1 and one element < 5" (MongoDB's rule), not necessarily the same element.
// - $exists true: the path resolves to a value (null included); $exists false: it does not.
// - $not (filter level or field level): the rows the inner condition does not match.
// - A record stored without a payload has every field missing.

import { StratavecError } from '../format/errors.js';

export type Payload = Record<string, unknown>;
export type Predicate = (payload: Payload | undefined) => boolean;
export type Filter = Record<string, unknown> | Predicate;

/** A JSON value as a filter literal: checked finite numbers, plain objects, arrays. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type RangeOp = 'gt' | 'gte' | 'lt' | 'lte';

export type FilterNode =
  | { op: 'all' }
  | { op: 'and'; children: FilterNode[] }
  | { op: 'or'; children: FilterNode[] }
  | { op: 'not'; child: FilterNode }
  | { op: 'eq'; path: string; keys: string[]; value: Json }
  | { op: 'in'; path: string; keys: string[]; values: Json[] }
  | { op: 'range'; path: string; keys: string[]; cmp: RangeOp; value: number | string }
  | { op: 'exists'; path: string; keys: string[] }
  | { op: 'fn'; fn: Predicate };

export type LeafNode = Extract<FilterNode, { path: string }>;

/** A validated filter. Build with compileFilter; treat as opaque outside index/. */
export interface CompiledFilter {
  readonly root: FilterNode;
  /** Every payload path the filter reads (empty for a predicate). */
  readonly paths: readonly string[];
}

/** Nesting deeper than this is refused, so a hostile filter cannot overflow the stack. */
export const MAX_FILTER_DEPTH = 32;
/** Cap on the values of one $in/$nin and on the nodes of one filter. */
export const MAX_FILTER_NODES = 100_000;

const RANGE_OPS: Record<string, RangeOp> = { $gt: 'gt', $gte: 'gte', $lt: 'lt', $lte: 'lte' };

function invalid(message: string): StratavecError {
  return new StratavecError('ERR_INVALID_FILTER', `invalid filter: ${message}`);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

class Compiler {
  nodes = 0;
  readonly paths = new Set<string>();

  count(n = 1): void {
    this.nodes += n;
    if (this.nodes > MAX_FILTER_NODES) throw invalid(`more than ${MAX_FILTER_NODES} conditions and values`);
  }

  filterObject(obj: unknown, depth: number, where: string): FilterNode {
    if (!isPlainObject(obj)) throw invalid(`${where} must be a plain object of conditions`);
    if (depth > MAX_FILTER_DEPTH) throw invalid(`nested deeper than ${MAX_FILTER_DEPTH}`);
    const children: FilterNode[] = [];
    for (const [key, val] of Object.entries(obj)) {
      this.count();
      if (key === '$and' || key === '$or') {
        if (!Array.isArray(val) || val.length === 0) throw invalid(`${key} takes a non-empty array of filter objects`);
        const parts = val.map((f, i) => this.filterObject(f, depth + 1, `${key}[${i}]`));
        children.push(parts.length === 1 ? parts[0]! : { op: key === '$and' ? 'and' : 'or', children: parts });
      } else if (key === '$not') {
        children.push(negate(this.filterObject(val, depth + 1, '$not')));
      } else if (key.startsWith('$')) {
        throw invalid(`unknown operator ${JSON.stringify(key)} at filter level (expected $and, $or, $not or a field path)`);
      } else {
        children.push(this.field(key, val, depth + 1));
      }
    }
    if (children.length === 0) return { op: 'all' };
    return children.length === 1 ? children[0]! : { op: 'and', children };
  }

  field(path: string, val: unknown, depth: number): FilterNode {
    const keys = path.split('.');
    if (keys.some((k) => k.length === 0 || k.startsWith('$'))) {
      throw invalid(`field path ${JSON.stringify(path)} has an empty step or a step starting with '$'`);
    }
    this.paths.add(path);
    if (isPlainObject(val)) {
      const opKeys = Object.keys(val);
      const dollar = opKeys.filter((k) => k.startsWith('$')).length;
      if (dollar > 0 && dollar < opKeys.length) throw invalid(`field ${JSON.stringify(path)} mixes operators and literal keys`);
      if (dollar > 0) return this.ops(path, keys, val, depth);
    }
    return { op: 'eq', path, keys, value: this.literal(val, depth, `value of ${JSON.stringify(path)}`) };
  }

  ops(path: string, keys: string[], obj: Record<string, unknown>, depth: number): FilterNode {
    if (depth > MAX_FILTER_DEPTH) throw invalid(`nested deeper than ${MAX_FILTER_DEPTH}`);
    const children: FilterNode[] = [];
    const where = (op: string) => `${op} on ${JSON.stringify(path)}`;
    for (const [op, operand] of Object.entries(obj)) {
      this.count();
      switch (op) {
        case '$eq':
        case '$ne': {
          const eq: FilterNode = { op: 'eq', path, keys, value: this.literal(operand, depth + 1, where(op)) };
          children.push(op === '$eq' ? eq : negate(eq));
          break;
        }
        case '$in':
        case '$nin': {
          if (!Array.isArray(operand)) throw invalid(`${where(op)} takes an array`);
          this.count(operand.length);
          const values = operand.map((v, i) => this.literal(v, depth + 1, `${where(op)}[${i}]`));
          const node: FilterNode = values.length === 1 ? { op: 'eq', path, keys, value: values[0]! } : { op: 'in', path, keys, values };
          children.push(op === '$in' ? node : negate(node));
          break;
        }
        case '$gt':
        case '$gte':
        case '$lt':
        case '$lte':
          if (!((typeof operand === 'number' && Number.isFinite(operand)) || typeof operand === 'string')) {
            throw invalid(`${where(op)} takes a finite number or a string, got ${describe(operand)}`);
          }
          children.push({ op: 'range', path, keys, cmp: RANGE_OPS[op]!, value: operand });
          break;
        case '$exists':
          if (typeof operand !== 'boolean') throw invalid(`${where(op)} takes true or false, got ${describe(operand)}`);
          children.push(operand ? { op: 'exists', path, keys } : negate({ op: 'exists', path, keys }));
          break;
        case '$not': {
          if (!isPlainObject(operand) || Object.keys(operand).length === 0 || !Object.keys(operand).every((k) => k.startsWith('$'))) {
            throw invalid(`${where(op)} takes a non-empty object of operators, e.g. { $not: { $gt: 5 } }`);
          }
          children.push(negate(this.ops(path, keys, operand, depth + 1)));
          break;
        }
        default:
          throw invalid(`unknown operator ${JSON.stringify(op)} on ${JSON.stringify(path)}`);
      }
    }
    return children.length === 1 ? children[0]! : { op: 'and', children };
  }

  /** A JSON-representable copy of `v`, so later mutation of the caller's object changes nothing. */
  literal(v: unknown, depth: number, where: string): Json {
    if (depth > MAX_FILTER_DEPTH * 2) throw invalid(`${where} is nested deeper than ${MAX_FILTER_DEPTH * 2}`);
    if (v === null || typeof v === 'string' || typeof v === 'boolean') return v;
    if (typeof v === 'number') {
      if (!Number.isFinite(v)) throw invalid(`${where} is ${v}; stored payloads hold only finite numbers`);
      return v;
    }
    if (Array.isArray(v)) {
      this.count(v.length);
      return v.map((x, i) => this.literal(x, depth + 1, `${where}[${i}]`));
    }
    if (isPlainObject(v)) {
      const out: { [key: string]: Json } = {};
      for (const [k, x] of Object.entries(v)) {
        this.count();
        if (x === undefined) continue; // JSON.stringify drops it from stored payloads too
        out[k] = this.literal(x, depth + 1, `${where}.${k}`);
      }
      return out;
    }
    throw invalid(`${where} is ${describe(v)}, not a JSON value`);
  }
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (typeof v === 'string') return 'a string';
  if (typeof v === 'object') return `an object (${Object.getPrototypeOf(v)?.constructor?.name ?? 'no prototype'})`;
  return `a ${typeof v}`;
}

function negate(node: FilterNode): FilterNode {
  return node.op === 'not' ? node.child : { op: 'not', child: node };
}

/**
 * Validates and compiles a filter before any work. `undefined` and `{}` compile to undefined (no
 * filter). Not an object or function: TypeError. Anything else wrong: ERR_INVALID_FILTER.
 */
export function compileFilter(filter: Filter | undefined): CompiledFilter | undefined {
  if (filter === undefined) return undefined;
  if (typeof filter === 'function') return { root: { op: 'fn', fn: filter as Predicate }, paths: [] };
  if (typeof filter !== 'object' || filter === null || Array.isArray(filter)) {
    throw new TypeError('filter must be an object of conditions or a function (payload) => boolean');
  }
  const c = new Compiler();
  const root = c.filterObject(filter, 0, 'filter');
  if (root.op === 'all') return undefined;
  return { root, paths: [...c.paths] };
}

// ---------------------------------------------------------------------------------------------
// Evaluation over one parsed payload: the definition of what a filter means.

export function resolvePath(payload: Payload | undefined, keys: readonly string[]): unknown {
  let cur: unknown = payload;
  for (const key of keys) {
    if (typeof cur !== 'object' || cur === null || Array.isArray(cur) || !Object.hasOwn(cur, key)) return undefined;
    cur = (cur as Record<string, unknown>)[key];
  }
  return cur;
}

export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!deepEqual(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  for (const k of ka) {
    if (!Object.hasOwn(b, k) || !deepEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k])) return false;
  }
  return true;
}

function primitiveEq(value: unknown, want: Json): boolean {
  return typeof want === 'object' && want !== null ? deepEqual(value, want) : value === want;
}

export function valueEquals(value: unknown, want: Json): boolean {
  if (value === undefined) return false;
  if (primitiveEq(value, want)) return true;
  if (Array.isArray(value)) {
    for (const el of value) if (primitiveEq(el, want)) return true;
  }
  return false;
}

export function compareScalar(value: unknown, cmp: RangeOp, want: number | string): boolean {
  if (typeof value !== typeof want) return false;
  const v = value as number | string;
  switch (cmp) {
    case 'gt': return v > want;
    case 'gte': return v >= want;
    case 'lt': return v < want;
    case 'lte': return v <= want;
  }
}

export function valueInRange(value: unknown, cmp: RangeOp, want: number | string): boolean {
  if (compareScalar(value, cmp, want)) return true;
  if (Array.isArray(value)) {
    for (const el of value) if (compareScalar(el, cmp, want)) return true;
  }
  return false;
}

/** Whether `payload` matches the node: the meaning every evaluation path must reproduce. */
export function matchesPayload(node: FilterNode, payload: Payload | undefined): boolean {
  switch (node.op) {
    case 'all': return true;
    case 'and':
      for (const c of node.children) if (!matchesPayload(c, payload)) return false;
      return true;
    case 'or':
      for (const c of node.children) if (matchesPayload(c, payload)) return true;
      return false;
    case 'not': return !matchesPayload(node.child, payload);
    case 'eq': return valueEquals(resolvePath(payload, node.keys), node.value);
    case 'in': {
      const v = resolvePath(payload, node.keys);
      if (v === undefined) return false;
      for (const want of node.values) if (valueEquals(v, want)) return true;
      return false;
    }
    case 'range': return valueInRange(resolvePath(payload, node.keys), node.cmp, node.value);
    case 'exists': return resolvePath(payload, node.keys) !== undefined;
    case 'fn': return Boolean(node.fn(payload));
  }
}

/** The filter as a per-payload predicate (the growing segment's path, and the unindexed fallback). */
export function toPredicate(compiled: CompiledFilter): Predicate {
  const { root } = compiled;
  if (root.op === 'fn') return root.fn;
  return (p) => matchesPayload(root, p);
}
