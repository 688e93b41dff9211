// One read replica of the replica bench, in a process of its own (forked by replica.ts), as it
// would run on another machine: it opens the writer's prefix, answers timed query passes, and
// watches for ids the writer acknowledged. Public API only; replies carry the replica's request
// counters so the parent can report GETs and bytes per query.

import { Database, type Replica, type ReplicaOptions } from '../engine/index.js';

export type ReplicaRequest =
  | { op: 'open'; cacheDir: string; options: Omit<ReplicaOptions, 'clock'> }
  | { op: 'first'; query: Float32Array; k: number }
  | { op: 'pass'; queries: Float32Array[]; k: number }
  | { op: 'watch'; id: string }
  | { op: 'close' };

export interface Requests {
  gets: number;
  heads: number;
  lists: number;
  bytesIn: number;
}

export type ReplicaReply =
  | { op: 'open'; ms: number; requests: Requests; segments: number }
  | { op: 'first'; ms: number; requests: Requests; loaded: number }
  | { op: 'pass'; ms: number; latencies: number[]; ids: string[][]; requests: Requests; local: number; segments: number }
  | { op: 'watch'; visibleAt: number }
  | { op: 'close' }
  | { op: 'error'; message: string };

let replica: Replica | undefined;
const yieldToLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

function requests(): Requests {
  return replica!.stats().replica.requests;
}

function minus(a: Requests, b: Requests): Requests {
  return { gets: a.gets - b.gets, heads: a.heads - b.heads, lists: a.lists - b.lists, bytesIn: a.bytesIn - b.bytesIn };
}

async function handle(m: ReplicaRequest): Promise<ReplicaReply> {
  if (m.op === 'open') {
    const t0 = performance.now();
    replica = await Database.openReplica(m.cacheDir, m.options);
    const ms = performance.now() - t0;
    return { op: 'open', ms, requests: requests(), segments: replica.collection('docs').segments().length };
  }
  const col = replica!.collection('docs');
  if (m.op === 'first') {
    const r0 = requests();
    const t0 = performance.now();
    const out = await col.explain(m.query, { k: m.k });
    const ms = performance.now() - t0;
    return { op: 'first', ms, requests: minus(requests(), r0), loaded: out.segments.filter((s) => s.loaded).length };
  }
  if (m.op === 'pass') {
    const r0 = requests();
    const latencies: number[] = [];
    const ids: string[][] = [];
    const t0 = performance.now();
    for (const q of m.queries) {
      const s = performance.now();
      const hits = await col.search(q, { k: m.k, includePayload: false });
      latencies.push(performance.now() - s);
      ids.push(hits.map((h) => h.id));
      await yieldToLoop(); // a server yields between requests; pool replies and refreshes need the loop
    }
    const ms = performance.now() - t0;
    const segs = col.segments();
    return { op: 'pass', ms, latencies, ids, requests: minus(requests(), r0), local: segs.filter((s) => s.tier !== 'cold').length, segments: segs.length };
  }
  if (m.op === 'watch') {
    for (;;) {
      if ((await col.get([m.id]))[0]) return { op: 'watch', visibleAt: Date.now() };
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }
  await replica?.close();
  return { op: 'close' };
}

process.on('message', (m: ReplicaRequest) => {
  handle(m).then((r) => process.send!(r), (err: unknown) => process.send!({ op: 'error', message: (err as Error)?.stack ?? String(err) }))
    .finally(() => {
      if (m.op === 'close') process.disconnect();
    });
});
