// An object store a read replica can hold: every read goes to the store underneath and is
// counted (requests and bytes, for stats and the replica benchmark); every write is refused with
// ERR_READ_ONLY before it reaches the network, so no code path of a replica can change the bucket.

import { StratavecError } from '../format/errors.js';
import type { ByteRange, GetToFileOptions, IncompleteUpload, ObjectInfo, ObjectStore, PutOptions } from './object-store.js';

export interface RequestCounts {
  gets: number;
  heads: number;
  lists: number;
  /** Bytes received by GETs (whole objects, ranges and downloads to files). */
  bytesIn: number;
}

export class ReadOnlyObjectStore implements ObjectStore {
  readonly #inner: ObjectStore;
  readonly #counts: RequestCounts = { gets: 0, heads: 0, lists: 0, bytesIn: 0 };

  constructor(inner: ObjectStore) {
    this.#inner = inner;
  }

  get description(): string {
    return `${this.#inner.description} (read-only)`;
  }

  counts(): RequestCounts {
    return { ...this.#counts };
  }

  async get(key: string, range?: ByteRange): Promise<Buffer> {
    this.#counts.gets++;
    const buf = await this.#inner.get(key, range);
    this.#counts.bytesIn += buf.length;
    return buf;
  }

  async getToFile(key: string, file: string, opts?: GetToFileOptions): Promise<number> {
    this.#counts.gets++;
    const n = await this.#inner.getToFile(key, file, opts);
    this.#counts.bytesIn += n;
    return n;
  }

  head(key: string): Promise<ObjectInfo | undefined> {
    this.#counts.heads++;
    return this.#inner.head(key);
  }

  list(prefix: string): Promise<ObjectInfo[]> {
    this.#counts.lists++;
    return this.#inner.list(prefix);
  }

  listIncompleteUploads(prefix: string): Promise<IncompleteUpload[]> {
    this.#counts.lists++;
    return this.#inner.listIncompleteUploads(prefix);
  }

  put(key: string, _body: Uint8Array, _opts?: PutOptions): Promise<void> {
    return refused('put', key);
  }

  putFile(key: string, _file: string): Promise<void> {
    return refused('upload', key);
  }

  delete(key: string): Promise<void> {
    return refused('delete', key);
  }

  abortUpload(key: string): Promise<void> {
    return refused('abort an upload of', key);
  }

  close(): Promise<void> {
    return this.#inner.close();
  }
}

function refused(what: string, key: string): Promise<never> {
  return Promise.reject(new StratavecError('ERR_READ_ONLY', `a read replica never writes to the object store (tried to ${what} ${key})`));
}
