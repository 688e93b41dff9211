// Payload indexes of one segment: building them from the payload JSON (in the seal and compaction
// tasks), their section bytes, and a reader over those bytes. The reader checks every count against
// the bytes present before making a view, so hostile bytes give ERR_SEGMENT_CORRUPT, never a crash
// or an allocation larger than the section. It knows nothing about filters (index/filter-eval.ts).
//
// Section layout (payloadIndex, little-endian; every u32 array 4-aligned, f64 array 8-aligned,
// relative to the section start, which the segment file aligns to 64):
//   u32 version (1) | u32 rows | u32 fieldCount | u32 0
//   per field:
//     u32 pathBytes, path UTF-8, pad to 4 | u32 type (1 keyword, 2 number, 3 bool) | u32 present
//     u32 n, u32 rows[n]: rows holding null (or an array with a null element)
//     u32 n, u32 rows[n]: "other" rows: a value of another type, an object, or an array (arrays are
//                          also taken apart into the postings; whole-array equality needs a scan)
//     keyword: u32 nValues, u32 tableBytes, string table (format/segment.ts) of the distinct values
//              as JSON string literals, ascending by JS `<` on the values, pad to 4, u32 offsets[nValues + 1], u32 rows[offsets[nValues]]
//     bool:    u32 offsets[3] (false, true), u32 rows[offsets[2]]
//     number:  u32 n, pad to 8, f64 values[n] ascending, u32 rows[n] (row of each value)
//   Row lists (a posting, nulls, other) are strictly ascending; the section ends after the last field.

import { StratavecError } from '../format/errors.js';
import { encodeStringTable, StringTable } from '../format/segment.js';
import {
  SUMMARY_MAX_VALUES, SUMMARY_MAX_VALUE_LENGTH, MAX_INDEXED_FIELDS, MAX_INDEX_PATH_LENGTH,
  type PayloadIndexType, type PayloadIndexes, type PayloadSummary, type FieldSummary,
} from '../format/payload-schema.js';
import { resolvePath, compareScalar, type Payload, type RangeOp } from './filter.js';

export const PAYLOAD_INDEX_VERSION = 1;
const TYPE_CODES: Record<PayloadIndexType, number> = { keyword: 1, number: 2, bool: 3 };
const TYPE_NAMES: ReadonlyMap<number, PayloadIndexType> = new Map(Object.entries(TYPE_CODES).map(([k, v]) => [v, k as PayloadIndexType]));
const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function corrupt(message: string): StratavecError {
  return new StratavecError('ERR_SEGMENT_CORRUPT', `segment corrupt: payload index: ${message}`);
}

// ---------------------------------------------------------------------------------------------
// Building

class FieldBuilder {
  readonly path: string;
  readonly keys: string[];
  readonly type: PayloadIndexType;
  present = 0;
  readonly nulls: number[] = [];
  readonly other: number[] = [];
  readonly keyword = new Map<string, number[]>();
  readonly bool: [number[], number[]] = [[], []];
  readonly numValues: number[] = [];
  readonly numRows: number[] = [];

  constructor(path: string, type: PayloadIndexType) {
    this.path = path;
    this.keys = path.split('.');
    this.type = type;
  }

  add(row: number, payload: Payload | undefined): void {
    const v = resolvePath(payload, this.keys);
    if (v === undefined) return;
    this.present++;
    if (Array.isArray(v)) {
      pushRow(this.other, row);
      for (const el of v) this.#scalar(row, el, true);
    } else {
      this.#scalar(row, v, false);
    }
  }

  #scalar(row: number, v: unknown, inArray: boolean): void {
    if (v === null) return pushRow(this.nulls, row);
    if (this.type === 'keyword' && typeof v === 'string') {
      let rows = this.keyword.get(v);
      if (!rows) this.keyword.set(v, (rows = []));
      return pushRow(rows, row);
    }
    if (this.type === 'bool' && typeof v === 'boolean') return pushRow(this.bool[v ? 1 : 0], row);
    if (this.type === 'number' && typeof v === 'number') {
      this.numValues.push(v);
      this.numRows.push(row);
      return;
    }
    if (!inArray) pushRow(this.other, row); // an array's row is in `other` already
  }

  summary(): FieldSummary {
    const s: FieldSummary = { type: this.type, present: this.present, nulls: this.nulls.length > 0, other: this.other.length > 0 };
    if (this.type === 'keyword' && this.keyword.size <= SUMMARY_MAX_VALUES) {
      const values = sortedKeys(this.keyword);
      if (values.every((x) => x.length <= SUMMARY_MAX_VALUE_LENGTH)) s.values = values;
    } else if (this.type === 'bool') {
      s.values = [false, true].filter((_, i) => this.bool[i]!.length > 0);
    } else if (this.type === 'number' && this.numValues.length > 0) {
      let min = Infinity;
      let max = -Infinity;
      for (const x of this.numValues) {
        if (x < min) min = x;
        if (x > max) max = x;
      }
      s.min = min === 0 ? 0 : min; // -0 would not survive JSON as itself; 0 and -0 are equal here
      s.max = max === 0 ? 0 : max;
    }
    return s;
  }

  encode(w: Writer): void {
    const pathBytes = Buffer.from(this.path, 'utf8');
    w.u32(pathBytes.length);
    w.bytes(pathBytes);
    w.pad(4);
    w.u32(TYPE_CODES[this.type]);
    w.u32(this.present);
    w.u32(this.nulls.length);
    w.u32s(this.nulls);
    w.u32(this.other.length);
    w.u32s(this.other);
    if (this.type === 'keyword') {
      const values = sortedKeys(this.keyword);
      // As JSON text: never empty (a string table reads empty as null), and a lone surrogate
      // survives, where plain UTF-8 would turn it into U+FFFD and stop matching the payload.
      const table = encodeStringTable(values.map((v) => JSON.stringify(v)));
      w.u32(values.length);
      w.u32(table.length);
      w.bytes(table);
      w.pad(4);
      const offsets = [0];
      for (const v of values) offsets.push(offsets.at(-1)! + this.keyword.get(v)!.length);
      w.u32s(offsets);
      for (const v of values) w.u32s(this.keyword.get(v)!);
    } else if (this.type === 'bool') {
      w.u32s([0, this.bool[0].length, this.bool[0].length + this.bool[1].length]);
      w.u32s(this.bool[0]);
      w.u32s(this.bool[1]);
    } else {
      const n = this.numValues.length;
      const order = new Uint32Array(n);
      for (let i = 0; i < n; i++) order[i] = i;
      const vals = this.numValues;
      const rows = this.numRows;
      order.sort((a, b) => vals[a]! - vals[b]! || rows[a]! - rows[b]!);
      w.u32(n);
      w.pad(8);
      const f = new Float64Array(n);
      const r = new Uint32Array(n);
      for (let i = 0; i < n; i++) {
        f[i] = vals[order[i]!]!;
        r[i] = rows[order[i]!]!;
      }
      w.f64array(f);
      w.u32s(r);
    }
  }
}

function pushRow(list: number[], row: number): void {
  if (list.length === 0 || list[list.length - 1] !== row) list.push(row);
}

function sortedKeys(m: Map<string, unknown>): string[] {
  return [...m.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

class Writer {
  readonly chunks: Buffer[] = [];
  length = 0;

  #push(b: Buffer): void {
    this.chunks.push(b);
    this.length += b.length;
  }

  u32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v, 0);
    this.#push(b);
  }

  u32s(values: ArrayLike<number>): void {
    const b = Buffer.alloc(values.length * 4);
    for (let i = 0; i < values.length; i++) b.writeUInt32LE(values[i]!, i * 4);
    this.#push(b);
  }

  f64array(values: Float64Array): void {
    const b = Buffer.alloc(values.length * 8);
    for (let i = 0; i < values.length; i++) b.writeDoubleLE(values[i]!, i * 8);
    this.#push(b);
  }

  bytes(b: Uint8Array): void {
    this.#push(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
  }

  pad(to: number): void {
    const r = this.length % to;
    if (r !== 0) this.#push(Buffer.alloc(to - r));
  }
}

export interface BuiltPayloadIndex {
  bytes: Buffer;
  summary: PayloadSummary;
}

/**
 * Parses each payload once and indexes the declared paths. `payloads[i]` is row i's JSON (null: no
 * payload). Paths are indexed in sorted order so the bytes do not depend on declaration order.
 */
export function buildPayloadIndex(payloads: ReadonlyArray<string | null>, indexes: PayloadIndexes): BuiltPayloadIndex {
  const paths = Object.keys(indexes).sort();
  const fields = paths.map((p) => new FieldBuilder(p, indexes[p]!));
  for (let row = 0; row < payloads.length; row++) {
    const json = payloads[row];
    const payload = json === null || json === undefined ? undefined : (JSON.parse(json) as Payload);
    for (const f of fields) f.add(row, payload);
  }
  const w = new Writer();
  w.u32s([PAYLOAD_INDEX_VERSION, payloads.length, fields.length, 0]);
  for (const f of fields) f.encode(w);
  const summary: PayloadSummary = { rows: payloads.length, fields: {} };
  for (const f of fields) summary.fields[f.path] = f.summary();
  return { bytes: Buffer.concat(w.chunks, w.length), summary };
}

// ---------------------------------------------------------------------------------------------
// Reading

class Reader {
  readonly #buf: Uint8Array;
  readonly #dv: DataView;
  pos = 0;

  constructor(buf: Uint8Array) {
    this.#buf = buf;
    this.#dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  get remaining(): number {
    return this.#buf.length - this.pos;
  }

  #need(n: number, what: string): void {
    if (!(n <= this.remaining)) throw corrupt(`${what} needs ${n} bytes, ${this.remaining} left`);
  }

  u32(what: string): number {
    this.#need(4, what);
    const v = this.#dv.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }

  bytes(n: number, what: string): Uint8Array {
    this.#need(n, what);
    const out = this.#buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  pad(to: number): void {
    const r = this.pos % to;
    if (r === 0) return;
    const b = this.bytes(to - r, 'padding');
    for (const x of b) if (x !== 0) throw corrupt('non-zero padding');
  }

  /** A view when the memory is aligned (mmap, readFile) and the host little-endian; else a copy. */
  u32s(n: number, what: string): Uint32Array {
    const b = this.bytes(n * 4, what);
    if (LITTLE_ENDIAN_HOST && b.byteOffset % 4 === 0) return new Uint32Array(b.buffer, b.byteOffset, n);
    const out = new Uint32Array(n);
    const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    for (let i = 0; i < n; i++) out[i] = dv.getUint32(i * 4, true);
    return out;
  }

  f64s(n: number, what: string): Float64Array {
    const b = this.bytes(n * 8, what);
    if (LITTLE_ENDIAN_HOST && b.byteOffset % 8 === 0) return new Float64Array(b.buffer, b.byteOffset, n);
    const out = new Float64Array(n);
    const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    for (let i = 0; i < n; i++) out[i] = dv.getFloat64(i * 8, true);
    return out;
  }
}

function parseKeyword(json: string | null): string | undefined {
  if (json === null || json.charCodeAt(0) !== 0x22) return undefined;
  try {
    const v: unknown = JSON.parse(json);
    return typeof v === 'string' ? v : undefined;
  } catch {
    return undefined; // reported by the caller as corruption
  }
}

/** Checks a row list is strictly ascending and inside the segment. */
function checkRowList(rows: Uint32Array, count: number, what: string): void {
  let prev = -1;
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i]!;
    if (r <= prev || r >= count) throw corrupt(`${what}: row ${r} out of order or past ${count} rows`);
    prev = r;
  }
}

function orRows(rows: Uint32Array, from: number, to: number, out: Uint8Array): void {
  for (let i = from; i < to; i++) out[rows[i]!] = 1;
}

/** One indexed field of one segment. Row lists are views over the section where alignment allows. */
export class FieldIndex {
  readonly path: string;
  readonly type: PayloadIndexType;
  readonly present: number;
  readonly nulls: Uint32Array;
  readonly other: Uint32Array;
  /** keyword: distinct values ascending; bool: [false, true]. */
  readonly values: readonly (string | boolean)[];
  readonly #byValue: Map<string | boolean, number>;
  /** keyword / bool: rows of values[i] are rows[offsets[i] .. offsets[i + 1]]. */
  readonly offsets: Uint32Array;
  /** keyword / bool: concatenated postings; number: the row of each entry of `numbers`. */
  readonly rows: Uint32Array;
  /** number: indexed values ascending (one entry per value occurrence). */
  readonly numbers: Float64Array;

  constructor(p: {
    path: string; type: PayloadIndexType; present: number; nulls: Uint32Array; other: Uint32Array;
    values: (string | boolean)[]; offsets: Uint32Array; rows: Uint32Array; numbers: Float64Array;
  }) {
    this.path = p.path;
    this.type = p.type;
    this.present = p.present;
    this.nulls = p.nulls;
    this.other = p.other;
    this.values = p.values;
    this.#byValue = new Map(p.values.map((v, i) => [v, i]));
    this.offsets = p.offsets;
    this.rows = p.rows;
    this.numbers = p.numbers;
  }

  /** Whether `v` is a value this index holds postings for (its type), as opposed to a scan case. */
  takes(v: unknown): v is string | number | boolean {
    return this.type === 'keyword' ? typeof v === 'string' : this.type === 'bool' ? typeof v === 'boolean' : typeof v === 'number';
  }

  /** Sets out[row] = 1 for every row holding `v` (alone or as an array element). */
  orEqual(v: string | number | boolean, out: Uint8Array): void {
    if (this.type === 'number') {
      const lo = lowerBound(this.numbers, v as number, false);
      const hi = lowerBound(this.numbers, v as number, true);
      orRows(this.rows, lo, hi, out);
      return;
    }
    const i = this.#byValue.get(v as string | boolean);
    if (i !== undefined) orRows(this.rows, this.offsets[i]!, this.offsets[i + 1]!, out);
  }

  /** Sets out[row] = 1 for every row holding a value of this index's type that compares true. */
  orRange(cmp: RangeOp, v: number | string, out: Uint8Array): void {
    if (this.type === 'number') {
      const x = v as number;
      const n = this.numbers.length;
      const [from, to] = cmp === 'gt' ? [lowerBound(this.numbers, x, true), n]
        : cmp === 'gte' ? [lowerBound(this.numbers, x, false), n]
        : cmp === 'lt' ? [0, lowerBound(this.numbers, x, false)]
        : [0, lowerBound(this.numbers, x, true)];
      orRows(this.rows, from, to, out);
      return;
    }
    // keyword: values are sorted by JS `<`, so the matching ones are one contiguous run.
    const vals = this.values as string[];
    let from = 0;
    let to = vals.length;
    if (cmp === 'gt' || cmp === 'gte') {
      while (from < to && !compareScalar(vals[from], cmp, v)) from++;
    } else {
      while (to > from && !compareScalar(vals[to - 1], cmp, v)) to--;
    }
    if (from < to) orRows(this.rows, this.offsets[from]!, this.offsets[to]!, out);
  }

  /** Every row where the path resolves to a value. */
  orPresent(out: Uint8Array): void {
    orRows(this.rows, 0, this.rows.length, out);
    orRows(this.nulls, 0, this.nulls.length, out);
    orRows(this.other, 0, this.other.length, out);
  }
}

/** First index whose value is >= x (or > x when `after`). */
function lowerBound(a: Float64Array, x: number, after: boolean): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (after ? a[mid]! <= x : a[mid]! < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export class PayloadIndex {
  readonly rows: number;
  readonly fields: ReadonlyMap<string, FieldIndex>;

  private constructor(rows: number, fields: Map<string, FieldIndex>) {
    this.rows = rows;
    this.fields = fields;
  }

  field(path: string): FieldIndex | undefined {
    return this.fields.get(path);
  }

  /**
   * Validates the whole section (O(size)) so that lookups can trust every offset and row number.
   * `rows` is the segment's record count from its (CRC-checked) header.
   */
  static open(bytes: Uint8Array, rows: number): PayloadIndex {
    if (!(bytes instanceof Uint8Array)) throw new TypeError('PayloadIndex.open needs bytes');
    const r = new Reader(bytes);
    const version = r.u32('version');
    if (version !== PAYLOAD_INDEX_VERSION) throw corrupt(`unsupported version ${version}`);
    const count = r.u32('row count');
    if (count !== rows) throw corrupt(`indexes ${count} rows, the segment holds ${rows}`);
    const fieldCount = r.u32('field count');
    if (fieldCount > MAX_INDEXED_FIELDS) throw corrupt(`${fieldCount} fields; the cap is ${MAX_INDEXED_FIELDS}`);
    if (r.u32('reserved') !== 0) throw corrupt('reserved word is not zero');
    const fields = new Map<string, FieldIndex>();
    for (let f = 0; f < fieldCount; f++) {
      const pathLen = r.u32('path length');
      if (pathLen === 0 || pathLen > 4 * MAX_INDEX_PATH_LENGTH) throw corrupt(`field ${f} path of ${pathLen} bytes`);
      const path = Buffer.from(r.bytes(pathLen, 'path')).toString('utf8');
      if (fields.has(path)) throw corrupt(`field ${JSON.stringify(path)} indexed twice`);
      r.pad(4);
      const typeCode = r.u32('type');
      const type = TYPE_NAMES.get(typeCode);
      if (type === undefined) throw corrupt(`field ${JSON.stringify(path)} has unknown type ${typeCode}`);
      const present = r.u32('present');
      if (present > count) throw corrupt(`field ${JSON.stringify(path)}: ${present} rows present of ${count}`);
      const nulls = r.u32s(r.u32('null count'), 'null rows');
      checkRowList(nulls, count, `${path} nulls`);
      const other = r.u32s(r.u32('other count'), 'other rows');
      checkRowList(other, count, `${path} other`);
      let values: (string | boolean)[] = [];
      let offsets: Uint32Array = new Uint32Array(1);
      let postings: Uint32Array;
      let numbers: Float64Array = new Float64Array(0);
      if (type === 'number') {
        const n = r.u32('number count');
        r.pad(8);
        numbers = r.f64s(n, 'numbers');
        postings = r.u32s(n, 'number rows');
        for (let i = 0; i < n; i++) {
          const x = numbers[i]!;
          if (!Number.isFinite(x) || (i > 0 && !(numbers[i - 1]! <= x))) throw corrupt(`${path}: number ${i} not finite or out of order`);
          if (postings[i]! >= count) throw corrupt(`${path}: row ${postings[i]} past ${count} rows`);
        }
      } else {
        let nValues = 2;
        if (type === 'keyword') {
          nValues = r.u32('value count');
          const tableLen = r.u32('value table length');
          const table = StringTable.open(Buffer.from(r.bytes(tableLen, 'value table')).subarray(), nValues);
          values = new Array<string>(nValues);
          for (let i = 0; i < nValues; i++) {
            const v = parseKeyword(table.get(i));
            if (v === undefined || (i > 0 && !((values[i - 1] as string) < v))) throw corrupt(`${path}: value ${i} is not a JSON string or out of order`);
            values[i] = v;
          }
          r.pad(4);
        } else {
          values = [false, true];
        }
        offsets = r.u32s(nValues + 1, 'posting offsets');
        if (offsets[0] !== 0) throw corrupt(`${path}: postings do not start at 0`);
        for (let i = 1; i <= nValues; i++) if (offsets[i]! < offsets[i - 1]!) throw corrupt(`${path}: posting offsets out of order`);
        postings = r.u32s(offsets[nValues]!, 'postings');
        for (let i = 0; i < nValues; i++) checkRowList(postings.subarray(offsets[i]!, offsets[i + 1]!), count, `${path} posting ${i}`);
      }
      fields.set(path, new FieldIndex({ path, type, present, nulls, other, values, offsets, rows: postings, numbers }));
    }
    if (r.remaining !== 0) throw corrupt(`${r.remaining} bytes after the last field`);
    return new PayloadIndex(count, fields);
  }
}
