// The S3 servers engine suites run against: s3rver (fake, a process-local server per test) and Ceph
// RGW (real, one cluster per test file, a bucket per test). One shape for both, so a test is
// written once and run on each; RGW tests skip with the reason where Ceph is not installed.
// It must never hide a server's gap: what a server does not implement is named in `gaps`.

import { after } from 'node:test';
import { startS3rver, S3RVER_CREDENTIALS } from './s3rver.js';
import { startCephRgw, cephRgwSkipReason, type CephRgwCluster } from './ceph-rgw.js';

export interface S3TestServer {
  endpoint: string;
  bucket: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
  /** Takes the endpoint down (connections refused); data stays. */
  stop(): Promise<void>;
  /** Brings it back on the same endpoint. */
  restart(): Promise<void>;
  /** Ends this test's use of the server (s3rver: stops it and removes its directory). */
  destroy(): Promise<void>;
  /** Multipart uploads the server holds in this bucket, read behind the store's back. */
  pendingUploads(): Promise<Array<{ uploadId: string; key: string }>>;
}

export interface S3ServerKind {
  label: 's3rver' | 'Ceph RGW';
  /** Set when this server cannot run here: pass as the test's `skip`. */
  skip?: string;
  /** True where a wrong secret with a known key id is rejected (s3rver checks no signature). */
  checksSignatures: boolean;
  start(): Promise<S3TestServer>;
}

let cluster: Promise<CephRgwCluster> | undefined;
let afterRegistered = false;
let bucketSeq = 0;

/**
 * Both kinds. Call at module level of a test file (it registers the file's `after` hook that stops
 * the shared Ceph cluster, which starts on the first RGW test that needs it).
 */
export function s3ServerKinds(): S3ServerKind[] {
  if (!afterRegistered) {
    afterRegistered = true;
    after(async () => {
      if (cluster) await (await cluster.catch(() => undefined))?.destroy();
    });
  }
  return [
    {
      label: 's3rver',
      checksSignatures: false,
      start: async () => {
        const s = await startS3rver();
        return {
          endpoint: s.endpoint, bucket: s.bucket, credentials: { ...S3RVER_CREDENTIALS },
          stop: s.stop, restart: s.restart, destroy: s.destroy, pendingUploads: s.pendingUploads,
        };
      },
    },
    {
      label: 'Ceph RGW',
      skip: cephRgwSkipReason(),
      checksSignatures: true,
      start: async () => {
        cluster ??= startCephRgw();
        const c = await cluster;
        await c.startGateway(); // a previous test may have left it stopped by failing midway
        const b = await c.newBucket(`stratavec-t${process.pid}-${++bucketSeq}`);
        return {
          endpoint: b.endpoint, bucket: b.bucket, credentials: b.credentials,
          stop: () => c.stopGateway(),
          restart: () => c.startGateway(),
          destroy: () => c.startGateway(),
          pendingUploads: () => b.pendingUploads(),
        };
      },
    },
  ];
}
