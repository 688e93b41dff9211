// Payload filters: an object of field equalities, or a predicate. Compiled once per search into
// one function so the per-candidate cost inside HNSW traversal stays a property lookup.

export type Payload = Record<string, unknown>;
export type Filter = Record<string, unknown> | ((payload: Payload | undefined) => boolean);

function jsonEqual(a: unknown, b: unknown): boolean {
  return a === b || (typeof a === 'object' && typeof b === 'object' && a !== null && b !== null && JSON.stringify(a) === JSON.stringify(b));
}

/**
 * `{ field: value }` matches payloads whose `field` equals `value`: `===` for primitives, equal
 * JSON text for arrays and objects. All fields must match. A payload-less record never matches.
 */
export function compileFilter(filter: Filter | undefined): ((payload: Payload | undefined) => boolean) | undefined {
  if (filter === undefined) return undefined;
  if (typeof filter === 'function') return filter;
  if (typeof filter !== 'object' || filter === null || Array.isArray(filter)) {
    throw new TypeError('filter must be an object of field equalities or a function');
  }
  const entries = Object.entries(filter);
  if (entries.length === 0) return undefined;
  if (entries.length === 1) {
    const [key, want] = entries[0]!;
    if (typeof want !== 'object' || want === null) return (p) => p !== undefined && p[key] === want;
  }
  return (p) => p !== undefined && entries.every(([key, want]) => jsonEqual(p[key], want));
}
