// The one error type the engine throws for known conditions, and the table of its codes.
// Codes are a public contract (listed in README "Errors"): never rename one or change its meaning.
// Caller mistakes of *type* (a number where a string belongs) are plain TypeErrors, not coded.

export const ErrorCodes = {
  /** A vector's length differs from the collection's dimension. */
  ERR_DIMENSION_MISMATCH: 'ERR_DIMENSION_MISMATCH',
  /** A vector holds NaN or +/-Infinity. */
  ERR_INVALID_VECTOR: 'ERR_INVALID_VECTOR',
  /** An id is empty or longer than 512 bytes of UTF-8. */
  ERR_INVALID_ID: 'ERR_INVALID_ID',
  /** The same id appears twice in one upsert batch (the whole batch is rejected). */
  ERR_DUPLICATE_ID: 'ERR_DUPLICATE_ID',
  /** A payload is not a plain JSON object, or is too large. */
  ERR_INVALID_PAYLOAD: 'ERR_INVALID_PAYLOAD',
  /** A collection name does not match ^[a-z0-9][a-z0-9_-]{0,63}$. */
  ERR_INVALID_NAME: 'ERR_INVALID_NAME',
  /** An option or argument value is out of range (its type was right). */
  ERR_INVALID_ARGUMENT: 'ERR_INVALID_ARGUMENT',
  /** A search filter has an unknown operator, an operand of the wrong type, or a bad shape. */
  ERR_INVALID_FILTER: 'ERR_INVALID_FILTER',
  ERR_COLLECTION_NOT_FOUND: 'ERR_COLLECTION_NOT_FOUND',
  ERR_COLLECTION_EXISTS: 'ERR_COLLECTION_EXISTS',
  /** The database (or collection) was closed or dropped. */
  ERR_DATABASE_CLOSED: 'ERR_DATABASE_CLOSED',
  /** Another live process holds the directory's lock file. */
  ERR_DATABASE_LOCKED: 'ERR_DATABASE_LOCKED',
  /** A segment file or object fails a structural or CRC32 check. */
  ERR_SEGMENT_CORRUPT: 'ERR_SEGMENT_CORRUPT',
  ERR_SEGMENT_NOT_FOUND: 'ERR_SEGMENT_NOT_FOUND',
  /** No verified copy of a segment exists; searches that need it fail rather than guess. */
  ERR_SEGMENT_UNAVAILABLE: 'ERR_SEGMENT_UNAVAILABLE',
  /** A manifest file fails its checksum or schema check. */
  ERR_MANIFEST_CORRUPT: 'ERR_MANIFEST_CORRUPT',
  /** A write-ahead log record other than the torn tail fails its CRC32. */
  ERR_WAL_CORRUPT: 'ERR_WAL_CORRUPT',
  /** An object store has no object under the key asked for. */
  ERR_OBJECT_NOT_FOUND: 'ERR_OBJECT_NOT_FOUND',
  /** A conditional create (`put` with `ifNoneMatch: '*'`) found another object already under the key. */
  ERR_OBJECT_EXISTS: 'ERR_OBJECT_EXISTS',
  /** Another writer holds the object-store prefix (its heartbeat is fresh); open with `takeover: true` to fence it. */
  ERR_WRITER_ACTIVE: 'ERR_WRITER_ACTIVE',
  /** A newer writer claimed the prefix (or won the race for a manifest version): this one may not commit again. */
  ERR_WRITER_FENCED: 'ERR_WRITER_FENCED',
  /** A tier (object store, local disk) cannot be reached or refused the operation. */
  ERR_TIER_UNAVAILABLE: 'ERR_TIER_UNAVAILABLE',
  /** The local disk is full (ENOSPC/EDQUOT); the write was rolled back. */
  ERR_DISK_FULL: 'ERR_DISK_FULL',
  /** Any other I/O failure; see `cause`. */
  ERR_IO: 'ERR_IO',
  /** A worker task failed or its thread died; nothing it half-wrote is visible. */
  ERR_WORKER_FAILED: 'ERR_WORKER_FAILED',
  /** A worker task ran past the pool's task timeout; its thread was stopped, nothing half-written is visible. */
  ERR_WORKER_TIMEOUT: 'ERR_WORKER_TIMEOUT',
  /** Database.open({ create: false }) on a directory that holds no database. */
  ERR_DATABASE_NOT_FOUND: 'ERR_DATABASE_NOT_FOUND',
  /** The object store given at open is not the one the database recorded. */
  ERR_OBJECT_STORE_MISMATCH: 'ERR_OBJECT_STORE_MISMATCH',
  /** `<dir>/config.json` is not a readable stratavec configuration. */
  ERR_CONFIG_CORRUPT: 'ERR_CONFIG_CORRUPT',
  /** A mutating call on a read-only handle (`readOnly: true`, a read replica); nothing was changed. */
  ERR_READ_ONLY: 'ERR_READ_ONLY',
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

export class StratavecError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StratavecError';
    this.code = code;
  }
}

export function isStratavecError(err: unknown, code?: ErrorCode): err is StratavecError {
  return err instanceof StratavecError && (code === undefined || err.code === code);
}

/** ERR_READ_ONLY for `what` (e.g. 'upsert'), refused on a database opened with `readOnly: true`. */
export function readOnlyError(what: string): StratavecError {
  return new StratavecError('ERR_READ_ONLY', `${what} is refused: the database was opened read-only (readOnly: true); nothing was changed`);
}

/** Maps a Node system error from a local file operation to a coded error, keeping it as cause. */
export function ioError(err: unknown, what: string): StratavecError {
  if (err instanceof StratavecError) return err;
  const sys = err as NodeJS.ErrnoException;
  if (sys?.code === 'ENOSPC' || sys?.code === 'EDQUOT') {
    return new StratavecError('ERR_DISK_FULL', `disk full while ${what}`, { cause: err });
  }
  return new StratavecError('ERR_IO', `I/O failure while ${what}: ${sys?.code ?? sys?.message ?? String(err)}`, { cause: err });
}
