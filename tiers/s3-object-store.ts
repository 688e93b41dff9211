// The object store on any S3 API (AWS, MinIO, Ceph RGW, s3rver): key k is `<prefix>/k` in the
// bucket. Owns the retry policy, the timeouts and the mapping of S3 failures to coded errors. It
// must never let a credential reach an error, a log line or `description`: SDK errors are replaced
// by sanitized copies before they become a `cause`.
//
// The SDK's own retries are off (maxAttempts 1) so the policy is explicit and tested here: up to
// `retries` more attempts after the first, for 5xx (except 501), throttling, timeouts and dropped
// or refused connections, with exponential backoff, half of each step jittered. Every request body
// is a Buffer so a retry resends the same bytes: putFile holds one part (or, below the multipart
// threshold, the whole file) in memory per request in flight.
//
// The SDK's flexible checksums are set to WHEN_REQUIRED: several S3-compatible servers reject or
// mangle the aws-chunked trailer encoding they imply, and stratavec verifies every segment against
// the CRC32s in its manifest after download anyway.

import {
  AbortMultipartUploadCommand, CompleteMultipartUploadCommand, CreateMultipartUploadCommand,
  DeleteObjectCommand, GetObjectCommand, HeadBucketCommand, HeadObjectCommand,
  ListMultipartUploadsCommand, ListObjectsV2Command, PutObjectCommand, S3Client, UploadPartCommand,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import type { Readable } from 'node:stream';
import { StratavecError } from '../format/errors.js';
import {
  type ByteRange, type FilledObjectStoreOptions, type IncompleteUpload, type ObjectInfo, type ObjectStore,
  type S3Settings, type SourceFile, S3_MIN_PART_SIZE, effectivePartSize, fillObjectStoreOptions, partSizeOption, quoteKey,
  validateKey, validatePrefix, validateRange, writeChunksAtomic, type GetToFileOptions, type PutOptions, putOptions, objectExists,
} from './object-store.js';

const BUCKET_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{1,254}$/;
const MAX_BACKOFF_MS = 5000;
/** S3's limit on a whole object key (prefix included), in UTF-8 bytes. */
const MAX_BUCKET_KEY_BYTES = 1024;

const RETRY_NAMES = new Set([
  'SlowDown', 'ServiceUnavailable', 'InternalError', 'RequestTimeout', 'RequestTimeoutException',
  'Throttling', 'ThrottlingException', 'ThrottledException', 'RequestThrottled', 'RequestThrottledException',
  'RequestLimitExceeded', 'TooManyRequestsException', 'BandwidthLimitExceeded', 'PriorRequestNotComplete',
  'TimeoutError', 'EC2ThrottledException',
]);
const RETRY_SYS = new Set([
  'ECONNRESET', 'ECONNREFUSED', 'ECONNABORTED', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN', 'EHOSTUNREACH',
  'ENETUNREACH', 'ENETDOWN', 'EHOSTDOWN', 'ERR_STREAM_PREMATURE_CLOSE', 'UND_ERR_SOCKET',
]);
const UNREACHABLE_SYS = new Set(['ENOTFOUND', 'EAI_FAIL', 'EAI_NONAME', 'EPROTO', 'ERR_SSL_WRONG_VERSION_NUMBER', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'CERT_HAS_EXPIRED', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE']);
const CREDENTIAL_NAMES = new Set([
  'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'AccessDenied', 'Forbidden', 'ExpiredToken',
  'InvalidToken', 'TokenRefreshRequired', 'AllAccessDisabled', 'AccountProblem', 'InvalidSecurity',
  'RequestTimeTooSkewed', 'InvalidClientTokenId', 'UnrecognizedClientException',
]);

/** The backoff before attempt `attempt + 1` (attempt >= 1): base * 2^(attempt-1), half of it jittered. */
export function backoffMs(attempt: number, baseMs: number, random: () => number = Math.random): number {
  const step = Math.min(MAX_BACKOFF_MS, baseMs * 2 ** (attempt - 1));
  return step / 2 + random() * (step / 2);
}

/** A download whose body ended before its Content-Length: retried like a dropped connection. */
class ShortBodyError extends Error {
  override name = 'ShortBodyError';
}

interface ErrorFacts {
  name: string;
  status?: number;
  sys?: string;
  requestId?: string;
  message: string;
}

function factsOf(err: unknown): ErrorFacts {
  const e = err as {
    name?: unknown; message?: unknown; code?: unknown; errno?: unknown; cause?: { code?: unknown };
    errors?: Array<{ code?: unknown }>; $metadata?: { httpStatusCode?: unknown; requestId?: unknown };
  } | undefined;
  let sys = typeof e?.code === 'string' ? e.code : undefined;
  // Node's happy-eyeballs connect reports an AggregateError whose members carry the codes.
  if (!sys && Array.isArray(e?.errors)) sys = e.errors.map((x) => x?.code).find((c): c is string => typeof c === 'string');
  if (!sys && typeof e?.cause?.code === 'string') sys = e.cause.code;
  const status = typeof e?.$metadata?.httpStatusCode === 'number' ? e.$metadata.httpStatusCode : undefined;
  return {
    name: typeof e?.name === 'string' ? e.name : 'Error',
    status,
    sys,
    requestId: typeof e?.$metadata?.requestId === 'string' ? e.$metadata.requestId : undefined,
    message: typeof e?.message === 'string' ? e.message : String(err),
  };
}

function isRetryable(err: unknown): boolean {
  if (err instanceof StratavecError) return false;
  if (err instanceof ShortBodyError) return true;
  const f = factsOf(err);
  if (f.name === 'CredentialsProviderError') return false;
  if (RETRY_NAMES.has(f.name)) return true;
  if (f.sys && RETRY_SYS.has(f.sys)) return true;
  if (f.status === 429) return true;
  if (f.status !== undefined && f.status >= 500 && f.status !== 501) return true;
  return (err as { $retryable?: unknown } | undefined)?.$retryable !== undefined;
}

function parseS3Url(url: string): { bucket: string; prefix: string } {
  if (typeof url !== 'string') throw new TypeError('objectStore.url must be a string');
  if (!url.startsWith('s3://')) throw new StratavecError('ERR_INVALID_ARGUMENT', 'object store URL must start with s3://');
  const rest = url.slice('s3://'.length);
  const slash = rest.indexOf('/');
  const bucket = slash < 0 ? rest : rest.slice(0, slash);
  // Never echo the URL here: `s3://KEY:SECRET@bucket` is a mistake people make.
  if (bucket.includes('@') || bucket.includes(':')) {
    throw new StratavecError('ERR_INVALID_ARGUMENT', 'object store URL must not carry credentials or a port; use the credentials and endpoint options');
  }
  if (!BUCKET_RE.test(bucket)) throw new StratavecError('ERR_INVALID_ARGUMENT', `bucket name ${quoteKey(bucket)} is not valid`);
  const prefix = (slash < 0 ? '' : rest.slice(slash + 1)).replace(/\/+$/, '');
  if (prefix !== '') {
    try {
      validateKey(prefix);
    } catch (err) {
      throw new StratavecError('ERR_INVALID_ARGUMENT', `prefix of ${quoteKey(`s3://${bucket}/${prefix}`)} is not a valid key prefix`, { cause: err });
    }
  }
  if (Buffer.byteLength(prefix) > MAX_BUCKET_KEY_BYTES - 2) {
    throw new StratavecError('ERR_INVALID_ARGUMENT', `prefix of ${quoteKey(`s3://${bucket}/${prefix}`)} leaves no room for keys within S3's ${MAX_BUCKET_KEY_BYTES}-byte limit`);
  }
  return { bucket, prefix };
}

/** S3 sends ETags in double quotes (a strong HTTP entity tag); stores report the bare value. */
function bareEtag(etag: string | undefined): { etag: string } | Record<string, never> {
  if (!etag) return {};
  const bare = etag.length >= 2 && etag.startsWith('"') && etag.endsWith('"') ? etag.slice(1, -1) : etag;
  return bare ? { etag: bare } : {};
}

/** scheme://host[:port][/path] of an endpoint: never userinfo, query or fragment. */
function safeEndpoint(endpoint: string): string {
  let u: URL;
  try {
    u = new URL(endpoint);
  } catch {
    throw new StratavecError('ERR_INVALID_ARGUMENT', 'objectStore.endpoint is not a valid URL');
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new StratavecError('ERR_INVALID_ARGUMENT', 'objectStore.endpoint must be an http:// or https:// URL');
  return `${u.protocol}//${u.host}${u.pathname === '/' ? '' : u.pathname}`;
}

export class S3ObjectStore implements ObjectStore {
  readonly description: string;
  readonly bucket: string;
  /** '' or segments without a trailing '/'. */
  readonly prefix: string;
  /** Longest key this store accepts: S3's 1024 bytes less the prefix and its '/'. */
  readonly maxKeyBytes: number;
  readonly #client: S3Client;
  readonly #opts: FilledObjectStoreOptions;
  /** Every credential string this store could leak, longest first; scrubbed from every message. */
  readonly #secrets: string[];
  #closed = false;
  #bucketConfirmed = false;
  /** Tests replace these to observe the policy without waiting. */
  random: () => number = Math.random;
  sleep: (ms: number) => Promise<void> = (ms) => new Promise((r) => setTimeout(r, ms));

  private constructor(settings: S3Settings, opts: FilledObjectStoreOptions) {
    const { bucket, prefix } = parseS3Url(settings.url);
    this.bucket = bucket;
    this.prefix = prefix;
    this.maxKeyBytes = prefix === '' ? MAX_BUCKET_KEY_BYTES : MAX_BUCKET_KEY_BYTES - Buffer.byteLength(prefix) - 1;
    this.#opts = opts;
    const region = settings.region ?? process.env['AWS_REGION'] ?? process.env['AWS_DEFAULT_REGION'] ?? 'us-east-1';
    if (typeof region !== 'string' || region === '') throw new TypeError('objectStore.region must be a non-empty string');
    const where = settings.endpoint === undefined ? '' : ` via ${safeEndpoint(settings.endpoint)}`;
    this.description = `s3://${bucket}${prefix ? `/${prefix}` : ''}${where} (${region})`;

    const secrets: string[] = [];
    const c = settings.credentials;
    if (c !== undefined) {
      if (typeof c !== 'object' || c === null || typeof c.accessKeyId !== 'string' || typeof c.secretAccessKey !== 'string'
        || (c.sessionToken !== undefined && typeof c.sessionToken !== 'string')) {
        throw new TypeError('objectStore.credentials must be { accessKeyId: string, secretAccessKey: string, sessionToken?: string }');
      }
      if (c.accessKeyId === '' || c.secretAccessKey === '') throw new StratavecError('ERR_INVALID_ARGUMENT', 'objectStore.credentials has an empty key');
      secrets.push(c.accessKeyId, c.secretAccessKey, ...(c.sessionToken ? [c.sessionToken] : []));
    }
    for (const v of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN']) {
      const s = process.env[v];
      if (s) secrets.push(s);
    }
    if (settings.endpoint !== undefined) {
      const u = new URL(settings.endpoint);
      if (u.username) secrets.push(decodeURIComponent(u.username), u.username);
      if (u.password) secrets.push(decodeURIComponent(u.password), u.password);
    }
    this.#secrets = [...new Set(secrets.filter((s) => s.length > 0))].sort((a, b) => b.length - a.length);

    const config: S3ClientConfig = {
      region,
      forcePathStyle: settings.forcePathStyle ?? settings.endpoint !== undefined,
      maxAttempts: 1,
      // socketTimeout is the SDK's idle timeout (it rejects with TimeoutError). Its requestTimeout is
      // a wall-clock cap that only logs a warning unless throwOnRequestTimeout is set; left unset.
      requestHandler: { connectionTimeout: opts.connectionTimeoutMs, socketTimeout: opts.socketTimeoutMs },
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    };
    if (settings.endpoint !== undefined) config.endpoint = settings.endpoint;
    if (c !== undefined) {
      config.credentials = { accessKeyId: c.accessKeyId, secretAccessKey: c.secretAccessKey, ...(c.sessionToken ? { sessionToken: c.sessionToken } : {}) };
    }
    this.#client = new S3Client(config);
  }

  /** Builds the client; makes no request (the first operation finds out whether S3 answers). */
  static async open(settings: S3Settings, opts: FilledObjectStoreOptions = fillObjectStoreOptions()): Promise<S3ObjectStore> {
    if (typeof settings !== 'object' || settings === null) throw new TypeError('S3 settings must be an object');
    if (opts.partSize < S3_MIN_PART_SIZE) {
      throw new StratavecError('ERR_INVALID_ARGUMENT', `option partSize must be at least ${S3_MIN_PART_SIZE} bytes for S3, got ${opts.partSize}`);
    }
    return new S3ObjectStore(settings, opts);
  }

  async put(key: string, body: Uint8Array, opts?: PutOptions): Promise<void> {
    const k = this.#full(key);
    if (!(body instanceof Uint8Array)) throw new TypeError('body must be a Uint8Array');
    if (putOptions(opts).ifNoneMatch) return this.#create(key, k, body);
    await this.#call(`writing ${quoteKey(key)}`, () =>
      this.#client.send(new PutObjectCommand({ Bucket: this.bucket, Key: k, Body: body, ContentLength: body.byteLength })));
  }

  async putFile(key: string, file: string, opts: { partSize?: number } = {}): Promise<void> {
    const k = this.#full(key);
    if (typeof file !== 'string') throw new TypeError('file must be a string');
    const partSize = partSizeOption(opts, this.#opts.partSize);
    if (partSize < S3_MIN_PART_SIZE) {
      throw new StratavecError('ERR_INVALID_ARGUMENT', `partSize must be at least ${S3_MIN_PART_SIZE} bytes for S3, got ${partSize}`);
    }
    this.#checkOpen();
    const src = await this.#opts.openSource(file);
    try {
      if (src.size <= this.#opts.multipartThreshold) {
        const body = src.size === 0 ? Buffer.alloc(0) : await src.read(0, src.size);
        await this.#call(`writing ${quoteKey(key)}`, () =>
          this.#client.send(new PutObjectCommand({ Bucket: this.bucket, Key: k, Body: body, ContentLength: body.byteLength })));
      } else {
        await this.#multipart(key, k, src, effectivePartSize(src.size, partSize));
      }
    } finally {
      await src.close().catch(() => undefined); // read-only handle; a close failure loses nothing
    }
  }

  async get(key: string, range?: ByteRange): Promise<Buffer> {
    const k = this.#full(key);
    const r = validateRange(range);
    if (r !== undefined && r.length === 0) {
      // 'bytes=N-(N-1)' is not a valid Range and S3 would answer with the whole object.
      if (!(await this.head(key))) throw this.#notFound(key);
      return Buffer.alloc(0);
    }
    return this.#call(`reading ${quoteKey(key)}`, async () => {
      let out;
      try {
        out = await this.#client.send(new GetObjectCommand({
          Bucket: this.bucket,
          Key: k,
          ...(r ? { Range: `bytes=${r.offset}-${r.offset + r.length - 1}` } : {}),
        }));
      } catch (err) {
        const f = factsOf(err);
        // 416: the range starts at or past the end (the object exists): pread semantics say empty.
        if (r && (f.name === 'InvalidRange' || f.status === 416)) return Buffer.alloc(0);
        throw err;
      }
      const body = out.Body as (Readable & AsyncIterable<Uint8Array>) | undefined;
      const chunks: Buffer[] = [];
      let n = 0;
      if (body) {
        for await (const chunk of body) {
          chunks.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
          n += chunk.byteLength;
        }
      }
      if (out.ContentLength !== undefined && n !== out.ContentLength) {
        throw new ShortBodyError(`body ended after ${n} of ${out.ContentLength} bytes`);
      }
      const all = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, n);
      if (!r) return all;
      // Some servers ignore Range (200, whole object) or return more than asked (s3rver serves
      // 'bytes=0-0' whole): cut the asked window out of whatever came, by its Content-Range.
      const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(out.ContentRange ?? '');
      const start = m ? Number(m[1]) : 0;
      const from = r.offset - start;
      if (from < 0) throw new StratavecError('ERR_IO', `S3 answered range ${out.ContentRange} for bytes ${r.offset}+${r.length} of ${quoteKey(key)}`);
      return all.subarray(from, from + r.length);
    });
  }

  async getToFile(key: string, file: string, opts?: GetToFileOptions): Promise<number> {
    const k = this.#full(key);
    if (typeof file !== 'string') throw new TypeError('file must be a string');
    return this.#call(`downloading ${quoteKey(key)}`, async () => {
      const out = await this.#client.send(new GetObjectCommand({ Bucket: this.bucket, Key: k }));
      const body = out.Body as (Readable & AsyncIterable<Uint8Array>) | undefined;
      return writeChunksAtomic(file, counted(body, out.ContentLength), opts);
    });
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    const k = this.#full(key);
    try {
      const out = await this.#call(`inspecting ${quoteKey(key)}`, () =>
        this.#client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: k })));
      return {
        key,
        size: out.ContentLength ?? 0,
        lastModified: out.LastModified?.getTime() ?? 0,
        ...bareEtag(out.ETag),
      };
    } catch (err) {
      if (!(err instanceof StratavecError) || err.code !== 'ERR_OBJECT_NOT_FOUND') throw err;
      // A HEAD 404 has no body, so "no such key" and "no such bucket" look alike: ask once.
      await this.#confirmBucket();
      return undefined;
    }
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    validatePrefix(prefix);
    const full = this.#full(prefix, true);
    const out: ObjectInfo[] = [];
    let token: string | undefined;
    for (;;) {
      const page = await this.#call(`listing ${quoteKey(prefix)}`, () => this.#client.send(new ListObjectsV2Command({
        Bucket: this.bucket,
        MaxKeys: this.#opts.listPageSize,
        ...(full ? { Prefix: full } : {}),
        ...(token ? { ContinuationToken: token } : {}),
      })));
      for (const o of page.Contents ?? []) {
        if (o.Key === undefined) continue;
        const key = this.#strip(o.Key);
        if (key === undefined) continue;
        out.push({ key, size: o.Size ?? 0, lastModified: o.LastModified?.getTime() ?? 0, ...bareEtag(o.ETag) });
      }
      if (!page.IsTruncated) break;
      if (!page.NextContinuationToken || page.NextContinuationToken === token) {
        throw new StratavecError('ERR_IO', `S3 listing of ${quoteKey(prefix)} in ${this.description} is truncated without a usable continuation token`);
      }
      token = page.NextContinuationToken;
    }
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async delete(key: string): Promise<void> {
    const k = this.#full(key);
    try {
      await this.#call(`deleting ${quoteKey(key)}`, () => this.#client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: k })));
    } catch (err) {
      // S3 answers 204 for a missing key; some compatible servers answer NoSuchKey.
      if (err instanceof StratavecError && err.code === 'ERR_OBJECT_NOT_FOUND') return;
      throw err;
    }
  }

  async listIncompleteUploads(prefix: string): Promise<IncompleteUpload[]> {
    validatePrefix(prefix);
    const full = this.#full(prefix, true);
    const out: IncompleteUpload[] = [];
    let keyMarker: string | undefined;
    let idMarker: string | undefined;
    for (;;) {
      const page = await this.#call(`listing uploads under ${quoteKey(prefix)}`, () => this.#client.send(new ListMultipartUploadsCommand({
        Bucket: this.bucket,
        MaxUploads: this.#opts.listPageSize,
        ...(full ? { Prefix: full } : {}),
        ...(keyMarker !== undefined ? { KeyMarker: keyMarker } : {}),
        ...(idMarker !== undefined ? { UploadIdMarker: idMarker } : {}),
      })));
      for (const u of page.Uploads ?? []) {
        if (u.Key === undefined || u.UploadId === undefined) continue;
        const key = this.#strip(u.Key);
        if (key === undefined) continue;
        out.push({ key, uploadId: u.UploadId, initiated: u.Initiated?.getTime() ?? 0 });
      }
      if (!page.IsTruncated) break;
      if (page.NextKeyMarker === undefined || (page.NextKeyMarker === keyMarker && page.NextUploadIdMarker === idMarker)) {
        throw new StratavecError('ERR_IO', `S3 upload listing in ${this.description} is truncated without usable markers`);
      }
      keyMarker = page.NextKeyMarker;
      idMarker = page.NextUploadIdMarker;
    }
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.initiated - b.initiated));
  }

  async abortUpload(key: string, uploadId: string): Promise<void> {
    const k = this.#full(key);
    if (typeof uploadId !== 'string') throw new TypeError('uploadId must be a string');
    if (uploadId === '' || uploadId.length > 1024) throw new StratavecError('ERR_INVALID_ARGUMENT', 'uploadId must be 1 to 1024 characters');
    try {
      await this.#call(`aborting upload of ${quoteKey(key)}`, () =>
        this.#client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: k, UploadId: uploadId })));
    } catch (err) {
      if (err instanceof StratavecError && err.code === 'ERR_OBJECT_NOT_FOUND') return; // NoSuchUpload: nothing to abort
      throw err;
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#client.destroy();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // --- internals ---

  /**
   * `If-None-Match: *` PutObject, with every unclear outcome settled by reading the key back. A
   * losing create may come back 412 (AWS), 409 ConditionalRequestConflict (AWS, RGW while another
   * create is in flight) or 500 (RGW, retried by #call); a winning one whose response was lost is
   * retried and then gets 412 against itself. So after any failure: the key holds our bytes -> we
   * created it; other bytes -> ERR_OBJECT_EXISTS; nothing and a conflict status -> a competing
   * create did not land, try again; nothing and the store unreachable -> its error.
   */
  async #create(key: string, k: string, body: Uint8Array): Promise<void> {
    const mine = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
    let last: unknown;
    for (let round = 0; round < 4; round++) {
      try {
        await this.#call(`creating ${quoteKey(key)}`, () => this.#client.send(new PutObjectCommand({
          Bucket: this.bucket, Key: k, Body: body, ContentLength: body.byteLength, IfNoneMatch: '*',
        })));
        return;
      } catch (err) {
        last = err;
      }
      let existing: Buffer | undefined;
      try {
        existing = await this.get(key);
      } catch (err) {
        if (!(err instanceof StratavecError) || err.code !== 'ERR_OBJECT_NOT_FOUND') throw err;
      }
      if (existing !== undefined) {
        if (existing.equals(mine)) return;
        throw objectExists(key, this.description);
      }
      const status = ((last as StratavecError).cause as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode;
      if (status !== 409 && status !== 412) throw last;
    }
    throw new StratavecError('ERR_TIER_UNAVAILABLE', `creating ${quoteKey(key)} in ${this.description}: the server kept refusing a create of a key that stays absent`, { cause: last });
  }

  #checkOpen(): void {
    if (this.#closed) throw new StratavecError('ERR_TIER_UNAVAILABLE', `object store ${this.description} is closed`);
  }

  /** The bucket key of a store key (validated), or of a list prefix when `isPrefix`. */
  #full(key: string, isPrefix = false): string {
    if (!isPrefix) validateKey(key);
    const full = this.prefix === '' ? key : `${this.prefix}/${key}`;
    // S3 caps the whole bucket key, so the store's prefix eats into the key's 1024 bytes; a real
    // server answers 400 InvalidObjectName (s3rver accepts anything), so refuse before sending.
    if (!isPrefix && Buffer.byteLength(full) > MAX_BUCKET_KEY_BYTES) {
      throw new StratavecError('ERR_INVALID_ARGUMENT', `object key ${quoteKey(key)} is too long for ${this.description}: with the prefix it is ${Buffer.byteLength(full)} bytes, S3 allows ${MAX_BUCKET_KEY_BYTES} (keys here may be at most ${this.maxKeyBytes})`);
    }
    return full;
  }

  #strip(bucketKey: string): string | undefined {
    if (this.prefix === '') return bucketKey;
    return bucketKey.startsWith(`${this.prefix}/`) ? bucketKey.slice(this.prefix.length + 1) : undefined;
  }

  #scrub(s: string): string {
    let out = s;
    for (const secret of this.#secrets) out = out.split(secret).join('[redacted]');
    return out;
  }

  #notFound(key: string, cause?: Error): StratavecError {
    return new StratavecError('ERR_OBJECT_NOT_FOUND', `no object ${quoteKey(key)} in ${this.description}`, cause ? { cause } : undefined);
  }

  /**
   * Runs one S3 request under the retry policy; the closure is called again for each attempt, so
   * it must rebuild anything it consumes. Failures leave as coded errors with a sanitized cause.
   */
  async #call<T>(what: string, op: () => Promise<T>, bucketOp = false): Promise<T> {
    this.#checkOpen();
    const attempts = this.#opts.retries + 1;
    for (let attempt = 1; ; attempt++) {
      try {
        return await op();
      } catch (err) {
        if (err instanceof StratavecError) throw err;
        if (isRetryable(err) && attempt < attempts && !this.#closed) {
          await this.sleep(backoffMs(attempt, this.#opts.retryBaseMs, this.random));
          continue;
        }
        throw this.#mapError(err, what, attempt, bucketOp);
      }
    }
  }

  /** A plain Error with only the facts worth keeping; never the SDK's request, config or headers. */
  #sanitize(err: unknown): Error {
    const f = factsOf(err);
    const e = new Error(this.#scrub(f.message));
    e.name = this.#scrub(f.name);
    if (f.sys) (e as Error & { code?: string }).code = f.sys;
    if (f.status !== undefined) {
      (e as Error & { $metadata?: object }).$metadata = { httpStatusCode: f.status, ...(f.requestId ? { requestId: this.#scrub(f.requestId) } : {}) };
    }
    return e;
  }

  #mapError(err: unknown, what: string, attempts: number, bucketOp: boolean): StratavecError {
    const f = factsOf(err);
    const cause = this.#sanitize(err);
    const tag = this.#scrub([f.name !== 'Error' ? f.name : undefined, f.sys, f.status !== undefined ? `HTTP ${f.status}` : undefined].filter(Boolean).join(', '));
    const unavailable = (msg: string): StratavecError => new StratavecError('ERR_TIER_UNAVAILABLE', this.#scrub(msg), { cause });
    if (f.name === 'NoSuchBucket' || (bucketOp && f.status === 404)) {
      return unavailable(`bucket "${this.bucket}" does not exist (${this.description}) while ${what}`);
    }
    if (f.name === 'NoSuchKey' || f.name === 'NoSuchUpload' || f.name === 'NotFound' || f.status === 404) {
      return new StratavecError('ERR_OBJECT_NOT_FOUND', this.#scrub(`${f.name === 'NoSuchUpload' ? 'no such upload' : 'not found'} while ${what} in ${this.description}`), { cause });
    }
    if (f.name === 'CredentialsProviderError') {
      return unavailable(`no credentials for ${this.description}: pass objectStore.credentials or set the standard AWS environment (while ${what})`);
    }
    if (CREDENTIAL_NAMES.has(f.name) || f.status === 403) {
      return unavailable(`credentials rejected by ${this.description} (${tag}) while ${what}`);
    }
    if (f.name === 'PermanentRedirect' || f.name === 'AuthorizationHeaderMalformed' || f.status === 301) {
      return unavailable(`bucket "${this.bucket}" is not reachable with this region or endpoint (${tag}) while ${what}`);
    }
    if (isRetryable(err)) {
      return unavailable(`${this.description} unavailable after ${attempts} attempt${attempts === 1 ? '' : 's'} (${tag}) while ${what}`);
    }
    if (f.sys && UNREACHABLE_SYS.has(f.sys)) {
      return unavailable(`${this.description} is unreachable (${tag}) while ${what}`);
    }
    return new StratavecError('ERR_IO', this.#scrub(`S3 request failed (${tag}) while ${what} in ${this.description}`), { cause });
  }

  async #confirmBucket(): Promise<void> {
    if (this.#bucketConfirmed) return;
    await this.#call('checking the bucket', () => this.#client.send(new HeadBucketCommand({ Bucket: this.bucket })), true);
    this.#bucketConfirmed = true;
  }

  async #multipart(key: string, k: string, src: SourceFile, partSize: number): Promise<void> {
    const created = await this.#call(`starting upload of ${quoteKey(key)}`, () =>
      this.#client.send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: k })));
    const uploadId = created.UploadId;
    if (!uploadId) throw new StratavecError('ERR_IO', `S3 started an upload of ${quoteKey(key)} without an upload id`);
    const parts = Math.ceil(src.size / partSize);
    const etags: string[] = new Array(parts);
    try {
      let next = 0;
      let failure: { err: unknown } | undefined;
      const worker = async (): Promise<void> => {
        while (failure === undefined && next < parts) {
          const i = next++;
          try {
            const pos = i * partSize;
            const len = Math.min(partSize, src.size - pos);
            const body = await src.read(pos, len);
            const out = await this.#call(`uploading part ${i + 1}/${parts} of ${quoteKey(key)}`, () =>
              this.#client.send(new UploadPartCommand({ Bucket: this.bucket, Key: k, UploadId: uploadId, PartNumber: i + 1, Body: body, ContentLength: len })));
            if (!out.ETag) throw new StratavecError('ERR_IO', `S3 accepted part ${i + 1} of ${quoteKey(key)} without an ETag`);
            etags[i] = out.ETag;
          } catch (err) {
            failure ??= { err };
          }
        }
      };
      await Promise.all(Array.from({ length: Math.min(this.#opts.uploadConcurrency, parts) }, worker));
      if (failure) throw failure.err;
      await this.#call(`completing upload of ${quoteKey(key)}`, () => this.#client.send(new CompleteMultipartUploadCommand({
        Bucket: this.bucket,
        Key: k,
        UploadId: uploadId,
        MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
      })));
    } catch (err) {
      let e: StratavecError;
      if (err instanceof StratavecError) {
        // NoSuchUpload mid-upload means someone (GC, an operator) aborted it under us.
        e = err.code === 'ERR_OBJECT_NOT_FOUND'
          ? new StratavecError('ERR_IO', `upload ${uploadId} of ${quoteKey(key)} was aborted while in progress`, { cause: err.cause })
          : err;
      } else {
        e = new StratavecError('ERR_IO', this.#scrub(`upload of ${quoteKey(key)} failed: ${factsOf(err).message}`), { cause: this.#sanitize(err) });
      }
      let leftover = '';
      try {
        await this.abortUpload(key, uploadId);
      } catch (abortErr) {
        leftover = `; the upload ${uploadId} could not be aborted (${abortErr instanceof StratavecError ? abortErr.code : 'error'}), listIncompleteUploads reports it for GC`;
      }
      if (!leftover) throw e;
      throw new StratavecError(e.code, `${e.message}${leftover}`, { cause: e.cause });
    }
  }
}

/** Yields `body` and fails with ShortBodyError when it ends before `expected` bytes. */
async function* counted(body: AsyncIterable<Uint8Array> | undefined, expected: number | undefined): AsyncIterable<Uint8Array> {
  let n = 0;
  if (body) {
    for await (const chunk of body) {
      n += chunk.byteLength;
      yield chunk;
    }
  }
  if (expected !== undefined && n !== expected) throw new ShortBodyError(`body ended after ${n} of ${expected} bytes`);
}
