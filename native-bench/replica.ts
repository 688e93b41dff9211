// Replica bench (issue 13, `npm run bench:replica`): on a local Ceph RGW cluster (s3rver, labelled,
// where Ceph is not installed), a writer ingesting while 2 replica processes (replica-child.ts)
// search the same prefix. It reports:
//  - replica open and cold first query (requests, bytes) against raw GETs of the same bytes with
//    the S3 SDK (throughput measured on every segment object in the same run);
//  - steady state: search QPS of each replica against the writer's own, whole passes alternated
//    (writer, replica A, replica B), median of the runs, recall@10 against the writer's exact
//    search, and GETs / bytes per query (refresh polls included);
//  - freshness lag: from the writer's acknowledged upsert to the id's visibility on each replica,
//    with maxUnsealedMs set (seal + upload + manifest + the replica's poll).
// Public API only, plus the SDK for the raw side.

import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as path from 'node:path';
import { GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { Database } from '../engine/index.js';
import { clusteredDataset } from '../harness/datasets.js';
import { startCephRgw, cephRgwSkipReason } from '../harness/ceph-rgw.js';
import { startS3rver, S3RVER_CREDENTIALS } from '../harness/s3rver.js';
import { median, percentile, progress, tempDir, removeDir, num, ms, ratio, round, type BenchOptions, type BenchReport } from './report.js';
import { DIM, HNSW, K } from './search.js';
import type { ReplicaReply, ReplicaRequest, Requests } from './replica-child.js';

export interface ReplicaParams {
  vectors: number;
  segmentRecords: number;
  queries: number;
  /** The writer seals its growing segment once it is this old (the bucket's lag behind acks). */
  maxUnsealedMs: number;
  refreshIntervalMs: number;
  markers: number;
}

export function defaultReplicaParams(quick: boolean, vectors?: number, segmentRecords?: number): ReplicaParams {
  const v = vectors ?? (quick ? 20_000 : 100_000);
  return {
    vectors: v, segmentRecords: Math.min(v, segmentRecords ?? (quick ? 5_000 : 20_000)), queries: quick ? 200 : 500,
    maxUnsealedMs: 1_000, refreshIntervalMs: 250, markers: quick ? 3 : 7,
  };
}

const SEED = 1313;
const REPLICAS = 2;

class ReplicaProcess {
  readonly #child: ChildProcess;
  #pending: ((r: ReplicaReply) => void) | undefined;

  constructor() {
    const file = path.join(path.dirname(fileURLToPath(import.meta.url)), 'replica-child.js');
    this.#child = fork(file, [], { serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.#child.on('message', (r: ReplicaReply) => {
      const p = this.#pending;
      this.#pending = undefined;
      p?.(r);
    });
  }

  ask<T extends ReplicaReply['op']>(m: ReplicaRequest & { op: T }): Promise<Extract<ReplicaReply, { op: T }>> {
    return new Promise((resolve, reject) => {
      this.#pending = (r) => (r.op === 'error' ? reject(new Error(`replica process: ${r.message}`)) : resolve(r as Extract<ReplicaReply, { op: T }>));
      this.#child.send(m);
    });
  }

  kill(): void {
    this.#child.kill('SIGKILL');
  }
}

interface Server {
  label: string;
  endpoint: string;
  bucket: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
  stop(): Promise<void>;
}

async function startServer(): Promise<Server> {
  if (!cephRgwSkipReason()) {
    const c = await startCephRgw();
    const b = await c.newBucket('stratavec-bench');
    return { label: 'Ceph RGW', endpoint: b.endpoint, bucket: b.bucket, credentials: b.credentials, stop: () => c.destroy() };
  }
  const s = await startS3rver();
  return { label: `s3rver (Ceph RGW unavailable: ${cephRgwSkipReason()})`, endpoint: s.endpoint, bucket: s.bucket, credentials: { ...S3RVER_CREDENTIALS }, stop: s.destroy };
}

const perQuery = (r: Requests, n: number) => ({ gets: r.gets / n, heads: r.heads / n, lists: r.lists / n, bytes: r.bytesIn / n });

export async function runReplica(opts: BenchOptions, p: ReplicaParams): Promise<BenchReport> {
  const say = (msg: string) => progress('replica', msg);
  const server = await startServer();
  const dir = await tempDir(opts, 'replica');
  const prefix = 'bench';
  const objectStore = { url: `s3://${server.bucket}/${prefix}`, endpoint: server.endpoint, credentials: { ...server.credentials }, forcePathStyle: true };
  const children: ReplicaProcess[] = [];
  let db: Database | undefined;
  let ingesting = false;
  let ingest: Promise<void> = Promise.resolve();
  try {
    say(`${server.label} on ${server.endpoint}; writer: ${p.vectors} x ${DIM} in segments of ${p.segmentRecords}, maxUnsealedMs ${p.maxUnsealedMs}`);
    const extra = 40_000;
    const data = clusteredDataset({ count: p.vectors + p.queries + extra, dim: DIM, seed: SEED });
    const vec = (i: number) => data.subarray(i * DIM, (i + 1) * DIM);
    const queries = Array.from({ length: p.queries }, (_, q) => vec(p.vectors + q).slice());
    db = await Database.open(path.join(dir, 'writer'), {
      objectStore, segmentMaxRecords: p.segmentRecords, maxUnsealedMs: p.maxUnsealedMs, workers: 1,
      maintenance: { gcIntervalMs: 0, scrubIntervalMs: 0, compactIntervalMs: 0 },
    });
    const col = await db.createCollection('docs', { dimension: DIM, hnsw: HNSW });
    for (let i = 0; i < p.vectors; i += 1000) {
      await col.upsert(Array.from({ length: Math.min(1000, p.vectors - i) }, (_, k) => ({ id: `v-${i + k}`, vector: vec(i + k) })));
    }
    await col.flush();
    await db.flushUploads();
    say(`writer loaded: ${col.segments().length} segments, all uploaded`);

    // The raw side: every segment object fetched once with the SDK, sequentially.
    const s3 = new S3Client({ endpoint: server.endpoint, region: 'us-east-1', credentials: server.credentials, forcePathStyle: true });
    const keys = ((await s3.send(new ListObjectsV2Command({ Bucket: server.bucket, Prefix: `${prefix}/docs/segments/` }))).Contents ?? []).map((o) => o.Key!);
    let rawBytes = 0;
    const tRaw = performance.now();
    for (const key of keys) rawBytes += (await (await s3.send(new GetObjectCommand({ Bucket: server.bucket, Key: key }))).Body!.transformToByteArray()).length;
    const rawMs = performance.now() - tRaw;
    s3.destroy();
    const rawBytesPerMs = rawBytes / rawMs;
    say(`raw GET: ${keys.length} objects, ${num(rawBytes / 2 ** 20, 1)} MiB in ${ms(rawMs)}`);

    // Replicas: open cold, first query.
    const opened: Extract<ReplicaReply, { op: 'open' }>[] = [];
    const firsts: Extract<ReplicaReply, { op: 'first' }>[] = [];
    for (let r = 0; r < REPLICAS; r++) {
      const child = new ReplicaProcess();
      children.push(child);
      opened.push(await child.ask({ op: 'open', cacheDir: path.join(dir, `replica-${r}`), options: { objectStore, refreshIntervalMs: p.refreshIntervalMs, workers: 1 } }));
      firsts.push(await child.ask({ op: 'first', query: queries[0]!, k: K }));
    }
    say(`replicas open: ${opened.map((o) => ms(o.ms)).join(', ')}; first query ${firsts.map((f) => ms(f.ms)).join(', ')}`);

    // Warm-up pass each (segments come local), then the writer starts ingesting.
    for (const c of children) await c.ask({ op: 'pass', queries, k: K });
    let next = p.vectors + p.queries;
    ingesting = true;
    ingest = (async () => {
      while (ingesting && next < data.length / DIM - 200) {
        await col.upsert(Array.from({ length: 200 }, (_, k) => ({ id: `n-${next + k}`, vector: vec(next + k) })));
        next += 200;
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
    })();

    // Whole passes, alternated: writer, replica A, replica B.
    const writerQps: number[] = [];
    const replicaQps: number[][] = children.map(() => []);
    const replicaLat: number[][] = children.map(() => []);
    const writerLat: number[] = [];
    const reqs: Requests[] = [];
    let recallSum = 0;
    let recallN = 0;
    let localShare = '';
    for (let run = 0; run < opts.runs; run++) {
      const t0 = performance.now();
      for (const q of queries) {
        const s = performance.now();
        await col.search(q, { k: K, includePayload: false });
        writerLat.push(performance.now() - s);
        await new Promise((resolve) => setImmediate(resolve));
      }
      writerQps.push(queries.length / ((performance.now() - t0) / 1000));
      for (let r = 0; r < children.length; r++) {
        const pass = await children[r]!.ask({ op: 'pass', queries, k: K });
        replicaQps[r]!.push(queries.length / (pass.ms / 1000));
        replicaLat[r]!.push(...pass.latencies);
        reqs.push(pass.requests);
        localShare = `${pass.local}/${pass.segments}`;
        if (run === 0) {
          // Recall against the writer's exact search (rows ingested since may differ at the margin).
          for (let q = 0; q < Math.min(50, queries.length); q++) {
            const truth = new Set((await col.search(queries[q]!, { k: K, exact: true, includePayload: false })).map((h) => h.id));
            recallSum += pass.ids[q]!.filter((id) => truth.has(id)).length / K;
            recallN++;
          }
        }
      }
      say(`run ${run + 1}/${opts.runs}: writer ${num(writerQps.at(-1)!)} qps, replicas ${replicaQps.map((x) => num(x.at(-1)!)).join(', ')} qps`);
    }

    // Freshness: an acknowledged upsert until each replica returns it.
    const lags: number[][] = children.map(() => []);
    for (let m = 0; m < p.markers; m++) {
      const id = `marker-${m}`;
      const watches = children.map((c) => c.ask({ op: 'watch', id }));
      await new Promise((resolve) => setTimeout(resolve, 50)); // the watchers are polling before the write
      await col.upsert([{ id, vector: vec(m) }]);
      const ackAt = Date.now();
      const seen = await Promise.all(watches);
      seen.forEach((s, r) => lags[r]!.push(s.visibleAt - ackAt));
    }
    ingesting = false;
    await ingest;

    const steady = reqs.reduce((a, b) => ({ gets: a.gets + b.gets, heads: a.heads + b.heads, lists: a.lists + b.lists, bytesIn: a.bytesIn + b.bytesIn }), { gets: 0, heads: 0, lists: 0, bytesIn: 0 });
    const steadyPer = perQuery(steady, reqs.length * queries.length);
    const wq = median(writerQps);
    const firstRaw = firsts.map((f) => f.requests.bytesIn / rawBytesPerMs);
    const allLags = lags.flat();
    const data_ = {
      server: server.label, params: p, raw: { objects: keys.length, bytes: rawBytes, ms: round(rawMs), bytesPerMs: round(rawBytesPerMs) },
      open: opened.map((o) => ({ ms: round(o.ms), requests: o.requests, segments: o.segments })),
      firstQuery: firsts.map((f, r) => ({ ms: round(f.ms), requests: f.requests, loaded: f.loaded, rawGetMsSameBytes: round(firstRaw[r]!), ratio: round(f.ms / firstRaw[r]!) })),
      steady: {
        writerQps: round(wq), replicaQps: replicaQps.map((x) => round(median(x))), ratio: replicaQps.map((x) => round(median(x) / wq)),
        writerP50: round(median(writerLat)), replicaP50: replicaLat.map((l) => round(median(l))), replicaP99: replicaLat.map((l) => round(percentile(l, 99))),
        recall: round(recallSum / Math.max(1, recallN)), perQuery: steadyPer, localSegments: localShare,
      },
      freshness: { lagsMs: lags, medianMs: median(allLags), maxMs: Math.max(...allLags) },
    };
    return {
      name: 'replica',
      data: data_,
      tables: [
        {
          title: `Replica cold start (${server.label}; ${keys.length} segment objects, ${num(rawBytes / 2 ** 20, 1)} MiB; raw GET ${num(rawBytesPerMs * 1000 / 2 ** 20, 1)} MiB/s)`,
          columns: ['replica', 'open', 'open GET/HEAD/LIST', 'first query', 'segments fetched', 'first-query GETs', 'MiB fetched', 'raw GET same bytes', 'ratio'],
          rows: firsts.map((f, r) => [
            String.fromCharCode(65 + r), ms(opened[r]!.ms), `${opened[r]!.requests.gets}/${opened[r]!.requests.heads}/${opened[r]!.requests.lists}`,
            ms(f.ms), String(f.loaded), String(f.requests.gets), num(f.requests.bytesIn / 2 ** 20, 2), ms(firstRaw[r]!), ratio(f.ms / firstRaw[r]!),
          ]),
          notes: ['open: the replica lists the prefix, reads the manifest and fetches each segment\'s id stub (ids + bounds sections) by ranged GETs.',
            'first query: cold segments whose bounds cannot be pruned are fetched whole, decoded and searched in place; raw GET same bytes = those bytes at the SDK\'s measured throughput.'],
        },
        {
          title: `Steady state while the writer ingests 200 rows / 500 ms (${opts.runs} alternated passes of ${queries.length} queries, k=${K}, medians)`,
          columns: ['side', 'QPS', 'vs writer', 'p50', 'p99', 'recall@10', 'GETs/query', 'HEADs/query', 'bytes/query'],
          rows: [
            ['writer', num(wq), '1.00x', ms(median(writerLat)), ms(percentile(writerLat, 99)), '', '', '', ''],
            ...replicaQps.map((x, r) => [
              `replica ${String.fromCharCode(65 + r)}`, num(median(x)), ratio(median(x) / wq), ms(median(replicaLat[r]!)), ms(percentile(replicaLat[r]!, 99)),
              num(recallSum / Math.max(1, recallN), 3), num(steadyPer.gets, 3), num(steadyPer.heads, 3), num(steadyPer.bytes, 0),
            ]),
          ],
          notes: [`replica segments local at the end: ${localShare}; requests include refresh polls (every ${p.refreshIntervalMs} ms) and the new segments the writer sealed meanwhile.`],
        },
        {
          title: `Freshness: acknowledged upsert -> visible on the replica (maxUnsealedMs ${p.maxUnsealedMs}, refreshIntervalMs ${p.refreshIntervalMs})`,
          columns: ['replica', 'lags (ms)', 'median', 'max'],
          rows: lags.map((l, r) => [String.fromCharCode(65 + r), l.map((x) => num(x)).join(' '), ms(median(l)), ms(Math.max(...l))]),
        },
      ],
      conclusion: `replica QPS ${replicaQps.map((x) => ratio(median(x) / wq)).join(' / ')} of the writer's; cold first query ${firsts.map((f, r) => ratio(f.ms / firstRaw[r]!)).join(' / ')} raw GET of its bytes; freshness lag median ${ms(median(allLags))} (max ${ms(Math.max(...allLags))}) with maxUnsealedMs ${p.maxUnsealedMs}`,
    };
  } finally {
    ingesting = false;
    await ingest.catch(() => undefined);
    for (const c of children) {
      await c.ask({ op: 'close' }).catch(() => undefined);
      c.kill();
    }
    await db?.close();
    await removeDir(dir);
    await server.stop();
  }
}
