// A throwaway single-node Ceph cluster on 127.0.0.1 for S3 tests against a real S3 server: one
// monitor, one memstore OSD and one RADOS Gateway, in a temp directory, with auth off (the gateway
// still checks SigV4 against its own users). One cluster per test file: startCephRgw() in
// `before`, destroy() in `after`; tests take a fresh bucket each. It must never leave a daemon or
// its directory behind: the daemons are children of this process, killed on its exit, and a
// watchdog kills them if this process dies without running exit handlers (SIGKILL, crash).

import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { promises as fsp, rmSync, existsSync, readFileSync } from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomUUID } from 'node:crypto';
import {
  S3Client, CreateBucketCommand, ListMultipartUploadsCommand,
} from '@aws-sdk/client-s3';

const BINARIES = ['ceph-mon', 'ceph-osd', 'radosgw', 'radosgw-admin', 'monmaptool', 'ceph'];
const BIN_DIRS = ['/usr/bin', '/usr/local/bin', '/usr/sbin'];

/** The gateway user every cluster gets (test-only; the cluster dies with the test process). */
export const RGW_CREDENTIALS = Object.freeze({ accessKeyId: 'STRATAVECRGWTEST', secretAccessKey: 'stratavec-rgw-test-secret' });

/**
 * Why RGW tests cannot run here, or undefined when they can. Pass it as `{ skip }` so the runner
 * prints it: the packages come from .ci/run (apt-get install radosgw ceph-mon ceph-osd).
 */
export function cephRgwSkipReason(): string | undefined {
  const missing = BINARIES.filter((b) => !BIN_DIRS.some((d) => existsSync(path.join(d, b))));
  if (missing.length === 0) return undefined;
  return `Ceph RGW binaries not installed (${missing.join(', ')}); .ci/run installs them (apt-get install radosgw ceph-mon ceph-osd)`;
}

/** One bucket on a running cluster: the shape tests share with the s3rver handle. */
export interface RgwBucket {
  endpoint: string;
  bucket: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
  /** Multipart uploads the server holds under `prefix` (neither completed nor aborted), by ListMultipartUploads. */
  pendingUploads(prefix?: string): Promise<Array<{ uploadId: string; key: string }>>;
}

export interface CephRgwCluster {
  /** http://127.0.0.1:<port>; the same across stopGateway()/startGateway(). */
  endpoint: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
  directory: string;
  /** Seconds from start to a gateway answering requests with the user created. */
  startupSeconds: number;
  /** Creates a new empty bucket (names must be 3-63 chars of [a-z0-9-]). */
  newBucket(name?: string): Promise<RgwBucket>;
  /** Stops the gateway only (the cluster and its data stay), like a dead S3 endpoint. */
  stopGateway(): Promise<void>;
  /** Starts the gateway again on the same port; resolves once it answers. */
  startGateway(): Promise<void>;
  /** Stops gateway, OSD, monitor (in that order) and removes the directory. Idempotent. */
  destroy(): Promise<void>;
}

export interface StartOptions {
  /** Bound on each readiness wait (monitor, OSD active, gateway answering). Default 60 s. */
  timeoutMs?: number;
}

const live = new Set<ChildProcess>();
const liveDirs = new Set<string>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // 'exit' handlers run synchronously: a failed test or an uncaught error still ends here.
  process.on('exit', () => {
    for (const c of live) {
      try { c.kill('SIGKILL'); } catch { /* already gone */ }
    }
    for (const d of liveDirs) rmSync(d, { recursive: true, force: true });
  });
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

function run(cmd: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 4 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.slice(0, 4).join(' ')} failed: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

function tail(file: string, lines = 15): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

async function waitUntil(what: string, timeoutMs: number, probe: () => Promise<boolean>, diag: () => string, child?: ChildProcess): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child && child.exitCode !== null) throw new Error(`Ceph RGW: ${what}: the process exited with ${child.exitCode}\n${diag()}`);
    if (await probe()) return;
    if (Date.now() > deadline) throw new Error(`Ceph RGW: timed out after ${timeoutMs} ms waiting for ${what}\n${diag()}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

function config(dir: string, fsid: string, monPort: number, rgwPort: number): string {
  return `[global]
fsid = ${fsid}
mon host = v2:127.0.0.1:${monPort}
public addr = 127.0.0.1
ms bind msgr1 = false
# Auth off inside the cluster; every messenger mode must then be crc or the gateway loops on auth errors.
auth cluster required = none
auth service required = none
auth client required = none
ms cluster mode = crc
ms service mode = crc
ms client mode = crc
ms mon cluster mode = crc
ms mon service mode = crc
ms mon client mode = crc
run dir = ${dir}/run
admin socket = ${dir}/run/$name.asok
pid file = ${dir}/run/$name.pid
log file = ${dir}/$name.log
crash dir = ${dir}/crash
keyring = ${dir}/keyring
mon data = ${dir}/mon
osd data = ${dir}/osd
rgw data = ${dir}/rgw
osd objectstore = memstore
memstore device bytes = 1073741824
# memstore writes its data out only on a clean shutdown
osd fast shutdown = false
osd pool default size = 1
osd pool default min size = 1
osd pool default pg autoscale mode = off
osd pool default pg num = 8
osd pool default pgp num = 8
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
# small or nearly full test disks must not stop the monitor
mon data avail crit = 0
mon data avail warn = 0
# commit maps at once: starts in ~2 s instead of ~12
paxos propose interval = 0.01
[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:${rgwPort}
rgw dns name = 127.0.0.1
`;
}

/** Starts a cluster, creates the S3 user, and waits until the gateway answers. */
export async function startCephRgw(opts: StartOptions = {}): Promise<CephRgwCluster> {
  const skip = cephRgwSkipReason();
  if (skip) throw new Error(skip);
  const timeoutMs = opts.timeoutMs ?? 60_000;
  installExitHook();
  const t0 = performance.now();
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'stratavec-rgw-'));
  liveDirs.add(dir);
  const conf = path.join(dir, 'ceph.conf');
  const children: ChildProcess[] = [];
  let watchdog: ChildProcess | undefined;
  let gateway: ChildProcess | undefined;
  let destroyed = false;

  const spawnDaemon = (bin: string, args: string[]): ChildProcess => {
    // -f: stay in the foreground, as our child, logging to the file the config names.
    const c = spawn(bin, ['-f', '-c', conf, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    c.stderr?.on('data', (d: Buffer) => { if (stderr.length < 8192) stderr += d.toString(); });
    c.on('exit', () => live.delete(c));
    (c as ChildProcess & { stderrText?: () => string }).stderrText = () => stderr;
    live.add(c);
    children.push(c);
    return c;
  };
  const stopChild = async (c: ChildProcess | undefined): Promise<void> => {
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise<void>((r) => c.once('exit', () => r()));
    c.kill('SIGTERM');
    const t = setTimeout(() => c.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(t);
  };
  const armWatchdog = (): void => {
    watchdog?.kill('SIGKILL');
    const pids = children.filter((c) => c.exitCode === null && c.pid).map((c) => c.pid).join(' ');
    // Outlives a SIGKILLed test process by at most a second, then takes the daemons with it.
    watchdog = spawn('sh', ['-c', `while kill -0 ${process.pid} 2>/dev/null; do sleep 1; done; kill -9 ${pids} 2>/dev/null; rm -rf '${dir}'`], {
      stdio: 'ignore', detached: true,
    });
    watchdog.unref();
  };

  const destroy = async (): Promise<void> => {
    if (destroyed) return;
    destroyed = true;
    // Gateway first (it holds RADOS sessions), then the OSD (memstore flushes), then the monitor.
    for (const c of [...children].reverse()) await stopChild(c);
    watchdog?.kill('SIGKILL');
    await fsp.rm(dir, { recursive: true, force: true });
    liveDirs.delete(dir);
  };

  try {
    for (const d of ['mon', 'osd', 'rgw', 'run', 'crash']) await fsp.mkdir(path.join(dir, d));
    const fsid = randomUUID();
    const monPort = await freePort();
    const rgwPort = await freePort();
    await fsp.writeFile(conf, config(dir, fsid, monPort, rgwPort));
    const endpoint = `http://127.0.0.1:${rgwPort}`;
    const step = timeoutMs;

    const monmap = path.join(dir, 'monmap');
    await run('monmaptool', ['--create', '--fsid', fsid, '--addv', 'a', `[v2:127.0.0.1:${monPort}]`, monmap], step);
    await run('ceph-mon', ['-c', conf, '--mkfs', '-i', 'a', '--monmap', monmap], step);
    const mon = spawnDaemon('ceph-mon', ['-i', 'a']);
    const osdUuid = randomUUID();
    // `ceph osd new` also waits for the monitor to form its quorum of one.
    await run('ceph', ['-c', conf, '--connect-timeout', String(Math.ceil(step / 1000)), 'osd', 'new', osdUuid, '0'], step);
    await run('ceph-osd', ['-c', conf, '-i', '0', '--mkfs', '--osd-uuid', osdUuid], step);
    const osdLog = path.join(dir, 'osd.0.log');
    const osd = spawnDaemon('ceph-osd', ['-i', '0']);
    armWatchdog();
    // The gateway creates its pools at start and gives up if no OSD takes them.
    await waitUntil('the OSD to become active', step, async () => {
      try {
        return (await fsp.readFile(osdLog, 'utf8')).includes('-> active');
      } catch {
        return false;
      }
    }, () => `osd log:\n${tail(osdLog)}\nmon log:\n${tail(path.join(dir, 'mon.a.log'))}`, osd);
    void mon;

    const startGateway = async (): Promise<void> => {
      gateway = spawnDaemon('radosgw', ['-n', 'client.rgw']);
      armWatchdog();
      const g = gateway;
      await waitUntil('the gateway to answer', step, async () => {
        try {
          const res = await fetch(`${endpoint}/`, { signal: AbortSignal.timeout(1000) });
          await res.arrayBuffer();
          return res.status < 500;
        } catch {
          return false;
        }
      }, () => `gateway log:\n${tail(path.join(dir, 'client.rgw.log'))}`, g);
    };
    await startGateway();
    await run('radosgw-admin', ['-c', conf, 'user', 'create', '--uid=stratavec', '--display-name=stratavec',
      `--access-key=${RGW_CREDENTIALS.accessKeyId}`, `--secret=${RGW_CREDENTIALS.secretAccessKey}`], step);
    const startupSeconds = (performance.now() - t0) / 1000;

    const client = new S3Client({
      endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { ...RGW_CREDENTIALS },
      requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED',
    });
    let buckets = 0;
    return {
      endpoint,
      credentials: { ...RGW_CREDENTIALS },
      directory: dir,
      startupSeconds,
      newBucket: async (name) => {
        const bucket = name ?? `stratavec-b${++buckets}`;
        await client.send(new CreateBucketCommand({ Bucket: bucket }));
        return {
          endpoint,
          bucket,
          credentials: { ...RGW_CREDENTIALS },
          pendingUploads: async (prefix = '') => {
            const out: Array<{ uploadId: string; key: string }> = [];
            let keyMarker: string | undefined;
            let idMarker: string | undefined;
            for (;;) {
              const page = await client.send(new ListMultipartUploadsCommand({
                Bucket: bucket, Prefix: prefix, KeyMarker: keyMarker, UploadIdMarker: idMarker,
              }));
              for (const u of page.Uploads ?? []) out.push({ uploadId: u.UploadId!, key: u.Key! });
              if (!page.IsTruncated) return out;
              keyMarker = page.NextKeyMarker;
              idMarker = page.NextUploadIdMarker;
            }
          },
        };
      },
      stopGateway: async () => {
        await stopChild(gateway);
      },
      startGateway: async () => {
        if (gateway && gateway.exitCode === null && gateway.signalCode === null) return;
        await startGateway();
      },
      destroy: async () => {
        client.destroy();
        await destroy();
      },
    };
  } catch (err) {
    await destroy().catch(() => undefined);
    throw err;
  }
}
