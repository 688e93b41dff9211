// The public face of payload filters: the Filter type and its compilation (grammar and meaning
// live in index/filter.ts, bitmaps and segment skipping in index/filter-eval.ts). Until the read
// path evaluates bitmaps, search uses the compiled filter as a per-row predicate.

import { compileFilter, toPredicate, type Filter, type Payload, type Predicate } from '../index/filter.js';

export { compileFilter, type CompiledFilter, type Filter, type Payload, type Predicate } from '../index/filter.js';
export { evaluate, mayMatch, countRows, rowsOf, type FilterSource, type EvalStats } from '../index/filter-eval.js';

/** Validates `filter` (ERR_INVALID_FILTER before any work) and returns it as a predicate. */
export function filterPredicate(filter: Filter | undefined): ((payload: Payload | undefined) => boolean) | undefined {
  const compiled = compileFilter(filter);
  return compiled === undefined ? undefined : (toPredicate(compiled) as Predicate);
}
