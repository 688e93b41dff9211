// Validation of the names and ids users hand us. These checks are what keeps a collection name
// from ever becoming a path trick (`..`, `/`, NUL) and an id from ever overflowing a format field.

import { StratavecError } from './errors.js';

export const COLLECTION_NAME_RE = /^[a-z0-9][a-z0-9_-]{0,63}$/;
export const MAX_ID_BYTES = 512;

export function validateCollectionName(name: unknown): string {
  if (typeof name !== 'string') throw new TypeError(`collection name must be a string, got ${typeof name}`);
  if (!COLLECTION_NAME_RE.test(name)) {
    throw new StratavecError('ERR_INVALID_NAME', `invalid collection name ${JSON.stringify(name.slice(0, 80))}: must match ${COLLECTION_NAME_RE}`);
  }
  return name;
}

export function validateId(id: unknown): string {
  if (typeof id !== 'string') throw new TypeError(`id must be a string, got ${typeof id}`);
  if (id.length === 0) throw new StratavecError('ERR_INVALID_ID', 'id must not be empty');
  // A lone surrogate has no UTF-8 form: two different ones would both encode as U+FFFD and collide.
  if (!id.isWellFormed()) throw new StratavecError('ERR_INVALID_ID', 'id holds a lone UTF-16 surrogate (not valid Unicode)');
  // Cheap bound first: a UTF-16 string of n units encodes to at most 3n UTF-8 bytes.
  if (id.length * 3 > MAX_ID_BYTES && Buffer.byteLength(id, 'utf8') > MAX_ID_BYTES) {
    throw new StratavecError('ERR_INVALID_ID', `id is ${Buffer.byteLength(id, 'utf8')} bytes of UTF-8; the limit is ${MAX_ID_BYTES}`);
  }
  return id;
}
