// What a collection declares about its payloads (indexed fields and their types) and the per-segment
// payload summaries the manifest keeps: the persisted shapes and their schema checks. No index bytes
// (index/payload-index.ts owns those) and no filter meaning (index/filter.ts).

export type PayloadIndexType = 'keyword' | 'number' | 'bool';
/** Indexed payload paths (dotted, as in filters) and the type each is indexed as. */
export type PayloadIndexes = Record<string, PayloadIndexType>;

export const PAYLOAD_INDEX_TYPES: readonly PayloadIndexType[] = ['keyword', 'number', 'bool'];
export const MAX_INDEXED_FIELDS = 32;
export const MAX_INDEX_PATH_LENGTH = 256;
/** A keyword or bool summary lists its distinct values only up to this many... */
export const SUMMARY_MAX_VALUES = 64;
/** ...each at most this many UTF-16 units long, so the manifest stays small. */
export const SUMMARY_MAX_VALUE_LENGTH = 256;

/**
 * What one segment holds in one indexed field, enough to rule the segment out of a filter before
 * any vector work. Every flag is an over-approximation: true/listed when in doubt.
 */
export interface FieldSummary {
  type: PayloadIndexType;
  /** Rows where the path resolves to a value (null included). */
  present: number;
  /** Some row holds null, or an array with a null element. */
  nulls: boolean;
  /** Some row holds a value the index does not take apart: another type, an object, an array. */
  other: boolean;
  /** keyword / bool: every distinct indexed value, ascending; absent past the caps. */
  values?: (string | boolean)[];
  /** number: the smallest and largest indexed number; absent when the segment has none. */
  min?: number;
  max?: number;
}

export interface PayloadSummary {
  /** Rows of the segment (tombstoned ones included). */
  rows: number;
  fields: Record<string, FieldSummary>;
}

/** Why `v` is not a valid index declaration, or undefined when it is. */
export function indexDeclarationProblem(v: unknown): string | undefined {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return 'indexes must be an object { path: type }';
  const entries = Object.entries(v);
  if (entries.length > MAX_INDEXED_FIELDS) return `at most ${MAX_INDEXED_FIELDS} indexed fields, got ${entries.length}`;
  for (const [path, type] of entries) {
    if (path.length === 0 || path.length > MAX_INDEX_PATH_LENGTH) return `index path ${JSON.stringify(path.slice(0, 64))} must be 1..${MAX_INDEX_PATH_LENGTH} characters`;
    if (!path.isWellFormed()) return `index path ${JSON.stringify(path)} is not well-formed UTF-16`;
    if (path.split('.').some((k) => k.length === 0 || k.startsWith('$'))) {
      return `index path ${JSON.stringify(path)} has an empty step or a step starting with '$'`;
    }
    if (!PAYLOAD_INDEX_TYPES.includes(type as PayloadIndexType)) {
      return `index type of ${JSON.stringify(path)} must be one of ${PAYLOAD_INDEX_TYPES.join(', ')}, got ${JSON.stringify(type)}`;
    }
  }
  return undefined;
}

const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

/** Schema check of a stored summary (a bad one is manifest corruption, reported by the caller). */
export function isPayloadSummary(v: unknown): v is PayloadSummary {
  if (typeof v !== 'object' || v === null) return false;
  const s = v as Partial<PayloadSummary>;
  if (!isCount(s.rows) || typeof s.fields !== 'object' || s.fields === null || Array.isArray(s.fields)) return false;
  for (const f of Object.values(s.fields) as Partial<FieldSummary>[]) {
    if (typeof f !== 'object' || f === null) return false;
    if (!PAYLOAD_INDEX_TYPES.includes(f.type as PayloadIndexType)) return false;
    if (!isCount(f.present) || f.present > s.rows || typeof f.nulls !== 'boolean' || typeof f.other !== 'boolean') return false;
    if (f.values !== undefined) {
      const want = f.type === 'bool' ? 'boolean' : 'string';
      if (f.type === 'number' || !Array.isArray(f.values) || f.values.length > SUMMARY_MAX_VALUES) return false;
      if (!f.values.every((x) => typeof x === want)) return false;
    }
    if (f.min !== undefined || f.max !== undefined) {
      if (f.type !== 'number' || !Number.isFinite(f.min) || !Number.isFinite(f.max) || f.min! > f.max!) return false;
    }
  }
  return true;
}
