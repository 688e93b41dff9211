// A real local S3 endpoint for tests: s3rver (fake S3 over a temp directory) on 127.0.0.1, plus a
// fault-injecting HTTP proxy to put in front of it. Also the shims s3rver 3.7.1 needs to be a
// faithful enough S3 on Node 20; each is explained where it is installed.

import * as http from 'node:http';
import * as crypto from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const require = createRequire(import.meta.url);

// s3rver ships no type declarations; this is the part of it the helper uses.
interface KoaContext {
  method: string;
  path: string;
  query: Record<string, string | string[] | undefined>;
  headers: Record<string, string | string[] | undefined>;
  status: number;
  body: unknown;
}
type Middleware = (ctx: KoaContext, next: () => Promise<void>) => Promise<void>;
interface S3rverInstance {
  middleware: Middleware[];
  httpServer?: http.Server;
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
}
type S3rverCtor = new (opts: Record<string, unknown>) => S3rverInstance;
interface S3ErrorCtor {
  new (code: string, message?: string, detail?: Record<string, unknown>): Error;
}

const S3rver = require('s3rver') as S3rverCtor;
const S3Error = require('s3rver/lib/models/error.js') as S3ErrorCtor;
const AWSAccount = require('s3rver/lib/models/account.js') as { registry: Map<string, unknown> };

/** s3rver's built-in key pair. */
export const S3RVER_CREDENTIALS = Object.freeze({ accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' });

export interface S3rverHandle {
  /** http://127.0.0.1:<port>; the port stays the same across restart(). */
  endpoint: string;
  bucket: string;
  /** s3rver's storage directory (removed by stop({ keepDirectory: false })). */
  directory: string;
  /** Closes the server (and every open connection) but keeps its directory for restart(). */
  stop(): Promise<void>;
  /** Serves the same directory on the same port again. */
  restart(): Promise<void>;
  /** Stops the server and removes its directory. */
  destroy(): Promise<void>;
  /**
   * Multipart uploads s3rver holds for the bucket (neither completed nor aborted), read from its
   * directory, so tests can check cleanup without trusting ListMultipartUploads. A directory
   * without its `key` file is not counted: s3rver's UploadPart recreates the directory of an
   * upload aborted under it (real S3 answers NoSuchUpload), and nothing can complete it.
   */
  pendingUploads(): Promise<Array<{ uploadId: string; key: string }>>;
}

export async function startS3rver(opts: { bucket?: string } = {}): Promise<S3rverHandle> {
  installDesShim();
  const bucket = opts.bucket ?? 'stratavec-test';
  const directory = await fsp.mkdtemp(path.join(os.tmpdir(), 'stratavec-s3rver-'));
  let port = 0;
  let server: S3rverInstance | undefined;

  const start = async (): Promise<void> => {
    const s = new S3rver({
      address: '127.0.0.1',
      port,
      silent: true,
      directory,
      configureBuckets: [{ name: bucket }],
    });
    installUploadShims(s, directory);
    const addr = await s.run();
    port = addr.port;
    server = s;
  };
  const stop = async (): Promise<void> => {
    const s = server;
    server = undefined;
    if (!s?.httpServer) return;
    const closed = s.close();
    // Keep-alive sockets from SDK clients would otherwise hold close() open until they idle out.
    s.httpServer.closeAllConnections();
    await closed;
  };

  await start();
  return {
    endpoint: `http://127.0.0.1:${port}`,
    bucket,
    directory,
    stop,
    restart: async () => {
      await stop();
      await start();
    },
    destroy: async () => {
      await stop();
      await fsp.rm(directory, { recursive: true, force: true });
    },
    pendingUploads: async () => {
      const dir = uploadsDir(directory, bucket);
      let ids: string[];
      try {
        ids = await fsp.readdir(dir);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
        throw err;
      }
      const out: Array<{ uploadId: string; key: string }> = [];
      for (const uploadId of ids.sort()) {
        try {
          out.push({ uploadId, key: await fsp.readFile(path.join(dir, uploadId, 'key'), 'utf8') });
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        }
      }
      return out;
    },
  };
}

/** Where s3rver's FilesystemStore keeps multipart parts: `<dir>/<bucket>/._S3rver_uploads/<id>/`. */
function uploadsDir(directory: string, bucket: string): string {
  return path.join(directory, bucket, '._S3rver_uploads');
}

let desShimInstalled = false;

/**
 * s3rver encrypts ListObjectsV2 continuation tokens with single DES ('des'), which OpenSSL 3 (Node
 * >= 17) moved to the legacy provider: every truncated listing answers 500 InternalError. Single
 * DES is 3DES-EDE with three equal keys, and 'des-ede3-cbc' is still in the default provider, so the
 * shim computes the very same bytes. Process-wide, but only the 'des' algorithm is touched.
 */
function installDesShim(): void {
  if (desShimInstalled) return;
  desShimInstalled = true;
  const c = require('node:crypto') as typeof crypto & Record<string, unknown>;
  const origCipher = c.createCipheriv;
  const origDecipher = c.createDecipheriv;
  const triple = (key: crypto.CipherKey): Buffer => {
    const k = Buffer.from(key as Buffer);
    return Buffer.concat([k, k, k]);
  };
  c.createCipheriv = ((alg: string, key: crypto.CipherKey, iv: crypto.BinaryLike | null, o?: unknown) =>
    alg === 'des' ? origCipher('des-ede3-cbc', triple(key), iv) : (origCipher as Function)(alg, key, iv, o)) as typeof crypto.createCipheriv;
  c.createDecipheriv = ((alg: string, key: crypto.CipherKey, iv: crypto.BinaryLike | null, o?: unknown) =>
    alg === 'des' ? origDecipher('des-ede3-cbc', triple(key), iv) : (origDecipher as Function)(alg, key, iv, o)) as typeof crypto.createDecipheriv;
}

function accessKeyOf(ctx: KoaContext): string | undefined {
  const auth = ctx.headers['authorization'];
  const m = typeof auth === 'string' ? /Credential=([^/,\s]+)\//.exec(auth) : null;
  return m?.[1];
}

/**
 * s3rver has no ListMultipartUploads (GET ?uploads answers 501 NotImplemented) and no
 * AbortMultipartUpload (DELETE ?uploadId answers 405 MethodNotAllowed), which the cold tier's GC
 * and failure cleanup rely on. These two minimal handlers read and remove s3rver's own upload
 * directories, inserted just before its router so its XML encoder still renders the response.
 * Requests they cannot vouch for (unknown bucket or access key) fall through to s3rver, which
 * answers with its usual NoSuchBucket / InvalidAccessKeyId. No paging: all uploads in one page.
 */
function installUploadShims(s: S3rverInstance, directory: string): void {
  const shim: Middleware = async (ctx, next) => {
    const parts = ctx.path.split('/').filter(Boolean);
    const bucket = parts[0];
    const isList = ctx.method === 'GET' && parts.length === 1 && 'uploads' in ctx.query;
    const isAbort = ctx.method === 'DELETE' && parts.length >= 2 && typeof ctx.query['uploadId'] === 'string';
    if (!bucket || (!isList && !isAbort)) return next();
    const key = accessKeyOf(ctx);
    if (!key || !AWSAccount.registry.has(key)) return next();
    try {
      if (!(await fsp.stat(path.join(directory, bucket))).isDirectory()) return next();
    } catch {
      return next(); // no such bucket: let s3rver say NoSuchBucket
    }
    const dir = uploadsDir(directory, bucket);
    if (isList) {
      const prefix = typeof ctx.query['prefix'] === 'string' ? ctx.query['prefix'] : '';
      const uploads: Array<{ Key: string; UploadId: string; Initiated: string }> = [];
      let ids: string[] = [];
      try {
        ids = await fsp.readdir(dir);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
      for (const id of ids) {
        let k: string;
        try {
          k = await fsp.readFile(path.join(dir, id, 'key'), 'utf8');
        } catch (err) {
          // s3rver's UploadPart recreates the directory of an aborted upload without its key file.
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
          throw err;
        }
        if (!k.startsWith(prefix)) continue;
        const st = await fsp.stat(path.join(dir, id));
        uploads.push({ Key: k, UploadId: id, Initiated: st.birthtime.toISOString() });
      }
      uploads.sort((a, b) => (a.Key < b.Key ? -1 : a.Key > b.Key ? 1 : a.UploadId < b.UploadId ? -1 : 1));
      ctx.body = {
        ListMultipartUploadsResult: {
          '@': { xmlns: 'http://s3.amazonaws.com/doc/2006-03-01/' },
          Bucket: bucket,
          KeyMarker: '',
          UploadIdMarker: '',
          Prefix: prefix,
          MaxUploads: 1000,
          IsTruncated: false,
          Upload: uploads,
        },
      };
      return;
    }
    const uploadId = String(ctx.query['uploadId']);
    const keyPath = parts.slice(1).join('/');
    let recorded: string | undefined;
    try {
      recorded = await fsp.readFile(path.join(dir, uploadId, 'key'), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (recorded === undefined || recorded !== decodeURIComponent(keyPath) || uploadId.includes('/') || uploadId.includes('..')) {
      throw new S3Error('NoSuchUpload', 'The specified upload does not exist.', { UploadId: uploadId });
    }
    await fsp.rm(path.join(dir, uploadId), { recursive: true, force: true });
    ctx.status = 204;
    ctx.body = '';
  };
  s.middleware.splice(s.middleware.length - 1, 0, shim);
}

// --- fault injection ---

export interface ProxiedRequest {
  method: string;
  /** Path and query as received. */
  url: string;
  /** 1-based count of requests the proxy has seen. */
  n: number;
}

/**
 * What the proxy does with one request: forward it; answer with an S3-style error; destroy the
 * connection (a reset, as a dead or crashing server gives); or hold it without answering.
 */
export type Fault = 'pass' | 'reset' | 'hang' | { status: number; code: string; message?: string };

export interface FaultProxy {
  endpoint: string;
  /** Every request seen, in order (including faulted ones). */
  readonly requests: ProxiedRequest[];
  /** Decides each request's fate; the default forwards everything. */
  fault: (req: ProxiedRequest) => Fault;
  stop(): Promise<void>;
}

export async function startFaultProxy(target: string): Promise<FaultProxy> {
  const t = new URL(target);
  const requests: ProxiedRequest[] = [];
  const proxy: FaultProxy = {
    endpoint: '',
    requests,
    fault: () => 'pass',
    stop: async () => undefined,
  };
  const server = http.createServer((req, res) => {
    const r: ProxiedRequest = { method: req.method ?? 'GET', url: req.url ?? '/', n: requests.length + 1 };
    requests.push(r);
    const f = proxy.fault(r);
    if (f === 'reset') {
      req.socket.destroy();
      return;
    }
    if (f === 'hang') {
      req.resume(); // drain the body so the client is left waiting for the answer only
      return;
    }
    if (typeof f === 'object') {
      req.resume();
      const body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${f.code}</Code><Message>${f.message ?? f.code}</Message><RequestId>fault-${r.n}</RequestId></Error>`;
      res.writeHead(f.status, { 'content-type': 'application/xml', 'content-length': r.method === 'HEAD' ? 0 : Buffer.byteLength(body) });
      res.end(r.method === 'HEAD' ? undefined : body);
      return;
    }
    const up = http.request({
      host: t.hostname,
      port: t.port,
      method: req.method,
      path: req.url,
      headers: req.headers,
    }, (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      upRes.pipe(res);
    });
    up.on('error', () => req.socket.destroy()); // upstream gone: the client sees a reset
    req.pipe(up);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  proxy.endpoint = `http://127.0.0.1:${port}`;
  proxy.stop = async () => {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await closed;
  };
  return proxy;
}
