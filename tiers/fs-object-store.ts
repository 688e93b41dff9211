// The object store on a local (or mounted) directory: key 'a/b/c' is the file <root>/a/b/c, so the
// tree maps 1:1 onto a bucket (`aws s3 sync root s3://bucket/prefix` migrates it). Every write goes
// temp file -> fsync -> rename -> fsync dir, so a reader never sees a partial object. It must never
// follow a key outside the root, recreate a vanished root, or list its own temp and upload files.
//
// Multipart uploads live in <root>/.uploads/<uploadId>/ (upload.json names the key and when it
// started; `data` receives every part at its offset) and are renamed into place on completion. A
// crash mid-upload leaves only that directory, which listIncompleteUploads reports for GC.
//
// Known difference from S3: a key cannot also be a prefix of another key ('a' and 'a/b' cannot
// coexist, as a file cannot also be a directory); the second put fails with ERR_INVALID_ARGUMENT.

import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { StratavecError, ioError } from '../format/errors.js';
import { TEMP_PREFIX, exists, fsyncDir, tempPathFor } from '../format/fsutil.js';
import {
  type ByteRange, type FilledObjectStoreOptions, type IncompleteUpload, type ObjectInfo, type ObjectStore,
  type SourceFile, effectivePartSize, fillObjectStoreOptions, isInternalName, partSizeOption, quoteKey, validateKey,
  validatePrefix, validateRange, writeChunksAtomic, writeFully, type GetToFileOptions, type PutOptions, putOptions, objectExists,
} from './object-store.js';

const UPLOADS_DIR = '.uploads';
const UPLOAD_RECORD = 'upload.json';
const UPLOAD_DATA = 'data';
const UPLOAD_ID_RE = /^[0-9a-f]{32}$/;
/** uploadId prefix of a temp file an interrupted object write left (see #staleObjectTemps). */
const TEMP_FILE_UPLOAD = 'tmpfile:';
/** A half-created upload directory older than this cannot belong to a live putFile. */
const STALE_TEMP_MS = 60 * 60 * 1000;
/** Attempts of a write whose parent directory a concurrent delete pruned (ENOENT) meanwhile. */
const PARENT_RACE_ATTEMPTS = 3;

function sysCode(err: unknown): string | undefined {
  const direct = (err as NodeJS.ErrnoException | undefined)?.code;
  if (err instanceof StratavecError) {
    const c = (err.cause as NodeJS.ErrnoException | undefined)?.code;
    return typeof c === 'string' ? c : undefined;
  }
  return typeof direct === 'string' ? direct : undefined;
}

const MISSING = new Set(['ENOENT', 'ENOTDIR', 'EISDIR']);
const REFUSED = new Set(['EACCES', 'EPERM', 'EROFS']);

export class FsObjectStore implements ObjectStore {
  readonly description: string;
  readonly root: string;
  readonly #opts: FilledObjectStoreOptions;
  #closed = false;

  private constructor(root: string, opts: FilledObjectStoreOptions) {
    this.root = root;
    this.description = pathToFileURL(root).href;
    this.#opts = opts;
  }

  /** Opens (creating if needed) the store rooted at the absolute directory `root`. */
  static async open(root: string, opts: FilledObjectStoreOptions = fillObjectStoreOptions()): Promise<FsObjectStore> {
    if (typeof root !== 'string') throw new TypeError('root must be a string');
    if (!path.isAbsolute(root)) throw new StratavecError('ERR_INVALID_ARGUMENT', `object store root must be absolute, got ${quoteKey(root)}`);
    const resolved = path.resolve(root);
    try {
      await fsp.mkdir(resolved, { recursive: true });
      const st = await fsp.stat(resolved);
      if (!st.isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
      await fsp.access(resolved, fsp.constants.W_OK);
    } catch (err) {
      throw new StratavecError('ERR_TIER_UNAVAILABLE', `object store root ${resolved} is not a writable directory: ${sysCode(err) ?? String(err)}`, { cause: err });
    }
    return new FsObjectStore(resolved, opts);
  }

  async put(key: string, body: Uint8Array, opts?: PutOptions): Promise<void> {
    const file = this.#pathFor(key);
    if (!(body instanceof Uint8Array)) throw new TypeError('body must be a Uint8Array');
    const { ifNoneMatch } = putOptions(opts);
    this.#checkOpen();
    if (ifNoneMatch) return this.#writeWithParents(key, () => this.#create(key, file, body));
    // Not format/fsutil's writeFileAtomic: its single writev can come up short on a filling disk.
    await this.#writeWithParents(key, () => writeChunksAtomic(file, [body]));
  }

  async putFile(key: string, file: string, opts: { partSize?: number } = {}): Promise<void> {
    const dest = this.#pathFor(key);
    if (typeof file !== 'string') throw new TypeError('file must be a string');
    const partSize = partSizeOption(opts, this.#opts.partSize);
    this.#checkOpen();
    const src = await this.#opts.openSource(file);
    try {
      if (src.size <= this.#opts.multipartThreshold) {
        await this.#writeWithParents(key, () => writeChunksAtomic(dest, readParts(src, partSize)));
      } else {
        await this.#multipart(key, dest, src, effectivePartSize(src.size, partSize));
      }
    } finally {
      await src.close().catch(() => undefined); // read-only handle; a close failure loses nothing
    }
  }

  async get(key: string, range?: ByteRange): Promise<Buffer> {
    const file = this.#pathFor(key);
    const r = validateRange(range);
    this.#checkOpen();
    let fh: fsp.FileHandle | undefined;
    try {
      fh = await fsp.open(file, 'r');
      const st = await fh.stat();
      if (!st.isFile()) throw Object.assign(new Error('is a directory'), { code: 'EISDIR' });
      if (r === undefined) return await fh.readFile();
      if (r.offset >= st.size || r.length === 0) return Buffer.alloc(0);
      const want = Math.min(r.length, st.size - r.offset);
      const buf = Buffer.allocUnsafe(want);
      let done = 0;
      while (done < want) {
        const { bytesRead } = await fh.read(buf, done, want - done, r.offset + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
      return done === want ? buf : buf.subarray(0, done);
    } catch (err) {
      throw await this.#readError(err, key, 'reading');
    } finally {
      await fh?.close().catch(() => undefined); // read-only handle; the read's outcome stands
    }
  }

  async getToFile(key: string, file: string, opts?: GetToFileOptions): Promise<number> {
    const src = this.#pathFor(key);
    if (typeof file !== 'string') throw new TypeError('file must be a string');
    this.#checkOpen();
    let fh: fsp.FileHandle;
    try {
      fh = await fsp.open(src, 'r');
      if (!(await fh.stat()).isFile()) {
        await fh.close();
        throw Object.assign(new Error('is a directory'), { code: 'EISDIR' });
      }
    } catch (err) {
      throw await this.#readError(err, key, 'reading');
    }
    try {
      return await writeChunksAtomic(file, localChunks(fh, key), opts);
    } finally {
      await fh.close().catch(() => undefined); // read-only handle
    }
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    const file = this.#pathFor(key);
    this.#checkOpen();
    try {
      const st = await fsp.stat(file);
      if (!st.isFile()) return undefined;
      return { key, size: st.size, lastModified: st.mtimeMs };
    } catch (err) {
      const e = await this.#readError(err, key, 'inspecting');
      if (e.code === 'ERR_OBJECT_NOT_FOUND') return undefined;
      throw e;
    }
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    validatePrefix(prefix);
    this.#checkOpen();
    await this.#requireRoot('listing');
    const out: ObjectInfo[] = [];
    await this.#walkFiles(prefix, `listing ${quoteKey(prefix)}`, async (name, base) => {
      if (isInternalName(base) || !name.startsWith(prefix)) return;
      try {
        const st = await fsp.stat(path.join(this.root, name));
        out.push({ key: name, size: st.size, lastModified: st.mtimeMs });
      } catch (err) {
        if (sysCode(err) === 'ENOENT') return; // deleted between readdir and stat
        throw this.#mapError(err, `listing ${quoteKey(prefix)}`);
      }
    });
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async delete(key: string): Promise<void> {
    const file = this.#pathFor(key);
    this.#checkOpen();
    try {
      await fsp.unlink(file);
    } catch (err) {
      const e = await this.#readError(err, key, 'deleting');
      if (e.code === 'ERR_OBJECT_NOT_FOUND') return;
      throw e;
    }
    try {
      await fsyncDir(path.dirname(file));
    } catch (err) {
      throw this.#mapError(err, `deleting ${quoteKey(key)}`);
    }
    await this.#pruneEmptyParents(path.dirname(file));
  }

  async listIncompleteUploads(prefix: string): Promise<IncompleteUpload[]> {
    validatePrefix(prefix);
    this.#checkOpen();
    await this.#requireRoot('listing uploads');
    const dir = path.join(this.root, UPLOADS_DIR);
    let names: string[];
    try {
      names = await fsp.readdir(dir);
    } catch (err) {
      if (sysCode(err) !== 'ENOENT') throw this.#mapError(err, 'listing uploads');
      names = []; // no multipart upload ever started; temp files beside objects may still exist
    }
    const out: IncompleteUpload[] = [];
    for (const name of names) {
      if (name.startsWith(TEMP_PREFIX)) {
        // An upload directory is built under a temp name and renamed: a crash in that window
        // leaves this. Reported (never removed here: listing must not change anything) once it
        // is stale, so that an upload being started is not mistaken for a leftover.
        if (!UPLOAD_ID_RE.test(name.slice(TEMP_PREFIX.length))) continue;
        const mtime = await this.#staleMtime(path.join(dir, name));
        if (mtime === undefined) continue;
        // The record may not have been written yet: then the key is unknown ('').
        const key = (await this.#readUploadRecord(name).catch(() => undefined))?.key ?? '';
        if (key.startsWith(prefix)) out.push({ key, uploadId: name, initiated: mtime });
        continue;
      }
      if (!UPLOAD_ID_RE.test(name)) continue; // not an upload this store made
      const rec = await this.#readUploadRecord(name);
      if (rec && rec.key.startsWith(prefix)) out.push({ key: rec.key, uploadId: name, initiated: rec.initiated });
    }
    out.push(...(await this.#staleObjectTemps(prefix)));
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.initiated - b.initiated));
  }

  async abortUpload(key: string, uploadId: string): Promise<void> {
    if (typeof uploadId !== 'string') throw new TypeError('uploadId must be a string');
    // Leftovers listIncompleteUploads reported: the uploadId alone says what to remove.
    if (uploadId.startsWith(TEMP_FILE_UPLOAD)) return this.#removeObjectTemp(key, uploadId);
    if (uploadId.startsWith(TEMP_PREFIX) && UPLOAD_ID_RE.test(uploadId.slice(TEMP_PREFIX.length))) {
      this.#checkOpen();
      await fsp.rm(path.join(this.root, UPLOADS_DIR, uploadId), { recursive: true, force: true }).catch((err: unknown) => {
        throw this.#mapError(err, `removing upload leftover ${uploadId}`);
      });
      return;
    }
    validateKey(key);
    if (!UPLOAD_ID_RE.test(uploadId)) throw new StratavecError('ERR_INVALID_ARGUMENT', `upload id ${quoteKey(uploadId)} is not one this store issues`);
    this.#checkOpen();
    const rec = await this.#readUploadRecord(uploadId);
    // Like S3's NoSuchUpload, an unknown id or one started for another key is "nothing to abort".
    if (!rec || rec.key !== key) return;
    try {
      await fsp.rm(path.join(this.root, UPLOADS_DIR, uploadId), { recursive: true, force: true });
      await fsyncDir(path.join(this.root, UPLOADS_DIR));
    } catch (err) {
      throw this.#mapError(err, `aborting upload ${uploadId}`);
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // --- internals: inputs below here are validated ---

  /**
   * A conditional create: the bytes go to a temp file (fsynced), which is then hard-linked to the
   * object's name. link(2) fails with EEXIST when the name exists, atomically, so of two creates
   * exactly one wins, and a reader never sees a partial object.
   */
  async #create(key: string, file: string, body: Uint8Array): Promise<void> {
    const tmp = tempPathFor(file);
    let fh: fsp.FileHandle | undefined;
    try {
      fh = await fsp.open(tmp, 'wx', 0o644);
      await writeFully(fh, body);
      await fh.sync();
      await fh.close();
      fh = undefined;
      try {
        await fsp.link(tmp, file);
      } catch (err) {
        if (sysCode(err) !== 'EEXIST') throw err;
        let existing: Buffer | undefined;
        try {
          existing = await fsp.readFile(file);
        } catch (readErr) {
          if (!MISSING.has(sysCode(readErr) ?? '')) throw readErr;
        }
        // The same bytes: this create already happened (S3 semantics: settled by reading back).
        if (existing !== undefined && Buffer.from(body.buffer, body.byteOffset, body.byteLength).equals(existing)) return;
        throw objectExists(key, this.description);
      }
      await fsyncDir(path.dirname(file));
    } finally {
      if (fh) await fh.close().catch(() => undefined); // already failing; the original error wins
      await fsp.rm(tmp, { force: true }).catch(() => undefined); // the link (if any) keeps the data
    }
  }

  #checkOpen(): void {
    if (this.#closed) throw new StratavecError('ERR_TIER_UNAVAILABLE', `object store ${this.description} is closed`);
  }

  #pathFor(key: string): string {
    validateKey(key);
    const p = path.resolve(this.root, ...key.split('/'));
    const rel = path.relative(this.root, p);
    // validateKey already excludes '..' and absolute keys; this is the belt to its braces.
    if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel)) {
      throw new StratavecError('ERR_INVALID_ARGUMENT', `object key ${quoteKey(key)} resolves outside the store`);
    }
    return p;
  }

  async #rootOk(): Promise<boolean> {
    try {
      return (await fsp.stat(this.root)).isDirectory();
    } catch {
      return false; // any failure to stat the root means it is not usable
    }
  }

  async #requireRoot(what: string): Promise<void> {
    if (!(await this.#rootOk())) {
      throw new StratavecError('ERR_TIER_UNAVAILABLE', `object store root ${this.root} is missing (while ${what})`);
    }
  }

  #mapError(err: unknown, what: string): StratavecError {
    const code = sysCode(err);
    if (err instanceof StratavecError && err.code !== 'ERR_IO') return err;
    if (code && REFUSED.has(code)) {
      return new StratavecError('ERR_TIER_UNAVAILABLE', `object store ${this.root} refused ${what}: ${code}`, { cause: err });
    }
    if (err instanceof StratavecError) return err;
    return ioError(err, what);
  }

  /** A read-side failure: a missing object is ERR_OBJECT_NOT_FOUND unless the whole root is gone. */
  async #readError(err: unknown, key: string, what: string): Promise<StratavecError> {
    const code = sysCode(err);
    if (code && MISSING.has(code)) {
      await this.#requireRoot(`${what} ${quoteKey(key)}`);
      return new StratavecError('ERR_OBJECT_NOT_FOUND', `no object ${quoteKey(key)} in ${this.description}`, { cause: err });
    }
    return this.#mapError(err, `${what} ${quoteKey(key)}`);
  }

  /**
   * Creates the directories between the root and `file` one level at a time (never the root
   * itself: a vanished root, say an unmounted share, must fail rather than be recreated), fsyncing
   * each parent that gained an entry, then runs `write`. Retries when a concurrent delete pruned a
   * parent in between.
   */
  async #writeWithParents<T>(key: string, write: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.#ensureParents(key);
        return await write();
      } catch (err) {
        const code = sysCode(err);
        if (code === 'ENOENT' && attempt < PARENT_RACE_ATTEMPTS && (await this.#rootOk())) continue;
        throw await this.#writeError(err, key);
      }
    }
  }

  async #writeError(err: unknown, key: string): Promise<StratavecError> {
    const code = sysCode(err);
    if (code === 'ENOENT') await this.#requireRoot(`writing ${quoteKey(key)}`);
    if (code === 'EISDIR' || code === 'ENOTDIR' || code === 'ENOTEMPTY') {
      return new StratavecError('ERR_INVALID_ARGUMENT',
        `object key ${quoteKey(key)} conflicts with an existing key (the fs store cannot hold a key that is also a prefix of another)`, { cause: err });
    }
    return this.#mapError(err, `writing ${quoteKey(key)}`);
  }

  async #ensureParents(key: string): Promise<void> {
    const segs = key.split('/').slice(0, -1);
    let dir = this.root;
    for (const seg of segs) {
      const parent = dir;
      dir = path.join(dir, seg);
      try {
        await fsp.mkdir(dir);
        await fsyncDir(parent);
      } catch (err) {
        if (sysCode(err) !== 'EEXIST') throw err;
        const st = await fsp.stat(dir);
        if (!st.isDirectory()) throw Object.assign(new Error(`${dir} is a file`), { code: 'ENOTDIR' });
      }
    }
  }

  async #pruneEmptyParents(dir: string): Promise<void> {
    while (dir !== this.root && dir.startsWith(this.root + path.sep)) {
      try {
        await fsp.rmdir(dir);
      } catch (err) {
        const code = sysCode(err);
        if (code === 'ENOTEMPTY' || code === 'EEXIST' || code === 'ENOENT') return; // in use, or already gone
        throw this.#mapError(err, `removing empty directory ${path.relative(this.root, dir)}`);
      }
      dir = path.dirname(dir);
    }
  }

  async #readUploadRecord(uploadId: string): Promise<{ key: string; initiated: number } | undefined> {
    let text: string;
    try {
      text = await fsp.readFile(path.join(this.root, UPLOADS_DIR, uploadId, UPLOAD_RECORD), 'utf8');
    } catch (err) {
      if (sysCode(err) === 'ENOENT') {
        await this.#requireRoot('reading an upload record');
        return undefined;
      }
      throw this.#mapError(err, `reading upload ${uploadId}`);
    }
    let rec: unknown;
    try {
      rec = JSON.parse(text);
    } catch (err) {
      throw new StratavecError('ERR_IO', `upload record ${uploadId} is not valid JSON`, { cause: err });
    }
    const r = rec as { key?: unknown; initiated?: unknown };
    if (typeof r.key !== 'string' || typeof r.initiated !== 'number') {
      throw new StratavecError('ERR_IO', `upload record ${uploadId} lacks key or initiated`);
    }
    return { key: r.key, initiated: r.initiated };
  }

  /** The mtime of `p` if it is older than STALE_TEMP_MS (fs mtimes are wall-clock; so is this). */
  async #staleMtime(p: string): Promise<number | undefined> {
    try {
      const st = await fsp.stat(p);
      return Date.now() - st.mtimeMs >= STALE_TEMP_MS ? st.mtimeMs : undefined;
    } catch (err) {
      if (sysCode(err) === 'ENOENT') return undefined;
      throw this.#mapError(err, 'checking an upload leftover');
    }
  }

  /**
   * Temp files an object write left beside its object (a crash between write and rename): the
   * fs store's incomplete uploads. Reported as key = the object being written, uploadId =
   * `tmpfile:<path of the temp file under the root>`, once stale.
   */
  async #staleObjectTemps(prefix: string): Promise<IncompleteUpload[]> {
    const out: IncompleteUpload[] = [];
    await this.#walkFiles(prefix, 'listing upload leftovers', async (name, base) => {
      if (!base.startsWith(TEMP_PREFIX)) return;
      const m = /^\.tmp-(.+)-[0-9a-f]{12}$/.exec(base);
      const key = name.slice(0, name.length - base.length) + (m ? m[1] : base.slice(TEMP_PREFIX.length));
      if (!key.startsWith(prefix)) return;
      const mtime = await this.#staleMtime(path.join(this.root, name));
      if (mtime !== undefined) out.push({ key, uploadId: `${TEMP_FILE_UPLOAD}${name}`, initiated: mtime });
    });
    return out;
  }

  /**
   * Calls `visit(path under the root, file name)` for every regular file in the directories that
   * can hold keys starting with `prefix`, internal directories (the uploads area) excluded.
   */
  async #walkFiles(prefix: string, what: string, visit: (name: string, base: string) => Promise<void>): Promise<void> {
    const walk = async (rel: string): Promise<void> => {
      let entries;
      try {
        entries = await fsp.readdir(path.join(this.root, rel), { withFileTypes: true });
      } catch (err) {
        if (MISSING.has(sysCode(err) ?? '')) return; // the prefix names nothing (or was just deleted)
        throw this.#mapError(err, what);
      }
      for (const e of entries) {
        const name = rel + e.name;
        if (e.isDirectory()) {
          const sub = `${name}/`;
          if (!isInternalName(e.name) && (sub.startsWith(prefix) || prefix.startsWith(sub))) await walk(sub);
        } else if (e.isFile()) {
          await visit(name, e.name);
        }
      }
    };
    await walk(prefix.slice(0, prefix.lastIndexOf('/') + 1));
  }

  async #removeObjectTemp(key: string, uploadId: string): Promise<void> {
    this.#checkOpen();
    const rel = uploadId.slice(TEMP_FILE_UPLOAD.length);
    const parts = rel.split('/');
    // Only a temp file inside the root: no absolute path, no `..`, a temp name at the end.
    if (rel.startsWith('/') || parts.some((p) => p === '' || p === '.' || p === '..') || !parts.at(-1)!.startsWith(TEMP_PREFIX)) {
      throw new StratavecError('ERR_INVALID_ARGUMENT', `upload id ${quoteKey(uploadId)} is not one this store issues`);
    }
    try {
      await fsp.rm(path.join(this.root, ...parts), { force: true });
    } catch (err) {
      throw this.#mapError(err, `removing the leftover of ${quoteKey(key)}`);
    }
  }

  async #multipart(key: string, dest: string, src: SourceFile, partSize: number): Promise<void> {
    const uploads = path.join(this.root, UPLOADS_DIR);
    const uploadId = randomBytes(16).toString('hex');
    const dir = path.join(uploads, uploadId);
    try {
      try {
        await fsp.mkdir(uploads);
        await fsyncDir(this.root);
      } catch (err) {
        if (sysCode(err) !== 'EEXIST') throw err;
      }
      const tmpDir = path.join(uploads, `${TEMP_PREFIX}${uploadId}`);
      await fsp.mkdir(tmpDir);
      await writeChunksAtomic(path.join(tmpDir, UPLOAD_RECORD), [Buffer.from(JSON.stringify({ key, initiated: this.#opts.clock.now() }))]);
      await fsp.rename(tmpDir, dir);
      await fsyncDir(uploads);
    } catch (err) {
      throw await this.#writeError(err, key);
    }

    let fh: fsp.FileHandle | undefined;
    try {
      const data = path.join(dir, UPLOAD_DATA);
      try {
        fh = await fsp.open(data, 'wx', 0o644);
        for (let pos = 0; pos < src.size; pos += partSize) {
          const len = Math.min(partSize, src.size - pos);
          const part = await src.read(pos, len);
          await writeFully(fh, part, pos);
        }
        await fh.sync();
        await fh.close();
        fh = undefined;
      } catch (err) {
        if (sysCode(err) === 'ENOENT' && !(await exists(dir))) throw abortedUnderUs(key, uploadId, err);
        throw err;
      }
      await this.#writeWithParents(key, async () => {
        try {
          await fsp.rename(data, dest);
        } catch (err) {
          if (sysCode(err) === 'ENOENT' && !(await exists(dir))) throw abortedUnderUs(key, uploadId, err);
          throw err;
        }
        await fsyncDir(path.dirname(dest));
      });
    } catch (err) {
      if (fh) await fh.close().catch(() => undefined); // already failing; the original error wins
      let cleanup = '';
      try {
        await fsp.rm(dir, { recursive: true, force: true });
      } catch (rmErr) {
        cleanup = `; upload ${uploadId} could not be removed (${sysCode(rmErr) ?? String(rmErr)}), listIncompleteUploads reports it`;
      }
      const e = err instanceof StratavecError ? err : await this.#writeError(err, key);
      if (!cleanup) throw e;
      throw new StratavecError(e.code, `${e.message}${cleanup}`, { cause: e.cause });
    }
    // The object is complete and visible; a leftover record (without data) is reported by
    // listIncompleteUploads and reclaimed by GC, so failing the put for it would be wrong.
    await fsp.rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
}

function abortedUnderUs(key: string, uploadId: string, cause: unknown): StratavecError {
  return new StratavecError('ERR_IO', `upload ${uploadId} of ${quoteKey(key)} was aborted while in progress`, { cause });
}

async function* readParts(src: SourceFile, partSize: number): AsyncIterable<Buffer> {
  for (let pos = 0; pos < src.size; pos += partSize) {
    yield await src.read(pos, Math.min(partSize, src.size - pos));
  }
}

async function* localChunks(fh: fsp.FileHandle, key: string): AsyncIterable<Uint8Array> {
  const buf = Buffer.allocUnsafe(1024 * 1024);
  for (let pos = 0; ;) {
    let bytesRead: number;
    try {
      ({ bytesRead } = await fh.read(buf, 0, buf.length, pos));
    } catch (err) {
      throw ioError(err, `reading object ${quoteKey(key)}`);
    }
    if (bytesRead === 0) return;
    pos += bytesRead;
    // writeChunksAtomic awaits each write before asking for the next chunk, so reusing buf is safe.
    yield buf.subarray(0, bytesRead);
  }
}
