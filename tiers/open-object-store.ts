// The one place that turns a user's object-store spec into a store: `file:///abs/dir` or
// `s3://bucket/prefix` (plus S3 settings). It sits beside the interface, not in it, so that
// object-store.ts and its implementations import in one direction only. The S3 store is loaded on
// first use: the AWS SDK costs start-up time a database on a local directory never needs.

import { fileURLToPath } from 'node:url';
import { StratavecError } from '../format/errors.js';
import { fillObjectStoreOptions, quoteKey, type ObjectStore, type ObjectStoreOptions, type S3Settings } from './object-store.js';
import { FsObjectStore } from './fs-object-store.js';

/**
 * Opens the store a spec names: `file:///abs/dir` (created if missing) or `s3://bucket/prefix`
 * (credentials from the standard AWS environment / default chain), or S3 settings with endpoint,
 * region, credentials and forcePathStyle. Opening an S3 store makes no request.
 */
export async function openObjectStore(spec: string | S3Settings, opts: ObjectStoreOptions = {}): Promise<ObjectStore> {
  const filled = fillObjectStoreOptions(opts);
  if (typeof spec === 'string') {
    if (spec.startsWith('file:')) {
      let root: string;
      try {
        root = fileURLToPath(spec);
      } catch (err) {
        throw new StratavecError('ERR_INVALID_ARGUMENT', `object store URL ${quoteKey(spec)} is not a valid file URL`, { cause: err });
      }
      return FsObjectStore.open(root, filled);
    }
    if (spec.startsWith('s3:')) {
      const { S3ObjectStore } = await import('./s3-object-store.js');
      return S3ObjectStore.open({ url: spec }, filled);
    }
    // Never echo the spec: an s3-like URL may carry credentials in its userinfo.
    throw new StratavecError('ERR_INVALID_ARGUMENT', 'object store must be a file:// or s3:// URL');
  }
  if (typeof spec === 'object' && spec !== null && typeof spec.url === 'string') {
    const { S3ObjectStore } = await import('./s3-object-store.js');
    return S3ObjectStore.open(spec, filled);
  }
  throw new TypeError('object store must be a URL string or { url, endpoint?, region?, credentials?, forcePathStyle? }');
}
