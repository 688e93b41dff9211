// The collection manifest: the committed list of live segments with their checksums, tiers and
// tombstones, plus where WAL replay starts. Versioned files, each written by the crash-safe recipe;
// the highest valid version wins. Schema checks live here; commit policy lives in engine/.

import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { StratavecError, ioError } from './errors.js';
import { crc32 } from './crc32.js';
import { writeFileAtomic, TEMP_PREFIX } from './fsutil.js';
import type { Metric } from './segment.js';
import { indexDeclarationProblem, isPayloadSummary, type PayloadIndexes, type PayloadSummary } from './payload-schema.js';

export const MANIFEST_FORMAT = 1;
/** Above this a manifest file is rejected before it is read: a corrupt size must not cost memory. */
export const MAX_MANIFEST_BYTES = 256 * 1024 * 1024;

/** Where a segment is served from: memory (hot), its local file (warm), the object store (cold). */
export type Tier = 'hot' | 'warm' | 'cold';
export const TIERS: readonly Tier[] = Object.freeze(['hot', 'warm', 'cold'] as const);

/** The one check of a tier name given by a caller (API, CLI, options). */
export function checkTier(value: unknown, what = 'tier'): Tier {
  if (value === 'hot' || value === 'warm' || value === 'cold') return value;
  throw new StratavecError('ERR_INVALID_ARGUMENT', `${what} must be hot, warm or cold, got ${typeof value === 'string' ? JSON.stringify(value) : String(value)}`);
}

export interface ManifestSection {
  kind: number;
  rawLength: number;
  /** CRC32 of the decoded bytes: the identity of the section, whatever codec a copy uses. */
  rawCrc: number;
}

/** One stored copy of a segment (the local raw file, or the remote object). */
export interface ManifestCopy {
  bytes: number;
  /** CRC32 of the stored bytes per section, in the order of `sections`. */
  storedCrcs: number[];
  codecs: number[];
}

export interface ManifestSegment {
  id: string;
  seq: number;
  records: number;
  /** Tombstoned row numbers, ascending. */
  deleted: number[];
  sections: ManifestSection[];
  /** Where the durable home copy lives: `warm` = local file, `cold` = object store only. */
  tier: 'warm' | 'cold';
  local?: ManifestCopy;
  remote?: ManifestCopy & { key: string };
  pinned?: Tier;
  createdAt: number;
  /** What the segment holds per indexed payload field, so a filter can skip it unread (absent in
   *  segments written before the field was indexed, or by versions without payload indexes). */
  summary?: PayloadSummary;
  /** The clustering region its rows were assigned to (clustering compaction); absent for rows
   *  never clustered. A region of an older epoch than the manifest's `clustering` is stale: the
   *  segment counts as unclustered. */
  region?: SegmentRegion;
}

/** Which region of which clustering a segment holds. */
export interface SegmentRegion {
  /** The `clustering.epoch` it was assigned under. */
  epoch: number;
  /** Its centroid's index in that clustering. */
  index: number;
}

/**
 * The partitions the last clustering compaction learnt: `k` centroids, each the centre of one region
 * of the space; segments say which region they hold. A new epoch per clustering compaction.
 */
export interface ManifestClustering {
  epoch: number;
  k: number;
  /** `k * dimension` float32, little-endian, base64 (JSON numbers would triple the size). */
  centroids: string;
  createdAt: number;
}

/** A collection's HNSW settings, recorded in its manifest so every seal builds alike. */
export interface HnswParams {
  /** Graph degree: links per node on upper levels; level 0 keeps 2*M. */
  M: number;
  /** Candidate list size while inserting; higher builds slower and finds better links. */
  efConstruction: number;
  /** Default candidate list size at search time (a per-search `ef` overrides it). */
  efSearch: number;
}

export interface CollectionManifest {
  format: number;
  collection: string;
  version: number;
  dimension: number;
  metric: Metric;
  hnsw: HnswParams;
  createdAt: number;
  /** Sequence number the next sealed segment gets. */
  nextSegmentSeq: number;
  /** First WAL file not covered by the segments here: recovery replays it and all after it. */
  walSeq: number;
  segments: ManifestSegment[];
  /** Declared payload indexes (path -> type); absent means none (manifests before indexes). */
  indexes?: PayloadIndexes;
  /** The writer epoch that committed this version (README "Scale past one machine"); absent in
   *  versions written before writers were fenced, which counts as epoch 0. */
  writer?: number;
  /** In a read replica's cache only: the writer's version this local version mirrors. */
  followedVersion?: number;
  /** The current clustering (absent until the first clustering compaction). */
  clustering?: ManifestClustering;
}

/** Encodes `k * dim` centroids for ManifestClustering.centroids. */
export function encodeCentroids(centroids: Float32Array): string {
  const bytes = Buffer.alloc(centroids.length * 4);
  for (let i = 0; i < centroids.length; i++) bytes.writeFloatLE(centroids[i]!, i * 4);
  return bytes.toString('base64');
}

/** The centroids of a (validated) clustering, `k * dimension` row-major. */
export function decodeCentroids(c: ManifestClustering): Float32Array {
  const bytes = Buffer.from(c.centroids, 'base64');
  const out = new Float32Array(bytes.length >>> 2);
  for (let i = 0; i < out.length; i++) out[i] = bytes.readFloatLE(i * 4);
  return out;
}

/** The current region of a segment, or undefined when its rows are unclustered (or stale). */
export function currentRegion(m: Pick<CollectionManifest, 'clustering'>, s: Pick<ManifestSegment, 'region'>): number | undefined {
  return m.clustering !== undefined && s.region?.epoch === m.clustering.epoch ? s.region.index : undefined;
}

const HEADER_RE = /^stratavec-manifest v(\d+) crc32=([0-9a-f]{8}) bytes=(\d+)\n/;

export function encodeManifest(m: CollectionManifest): Buffer {
  const body = Buffer.from(JSON.stringify(m), 'utf8');
  const header = `stratavec-manifest v${MANIFEST_FORMAT} crc32=${crc32(body).toString(16).padStart(8, '0')} bytes=${body.length}\n`;
  return Buffer.concat([Buffer.from(header, 'ascii'), body]);
}

function corrupt(what: string, file: string): StratavecError {
  return new StratavecError('ERR_MANIFEST_CORRUPT', `manifest ${file} is corrupt: ${what}`);
}

export function decodeManifest(buf: Buffer, file = '(buffer)'): CollectionManifest {
  const head = buf.subarray(0, 96).toString('latin1');
  const m = HEADER_RE.exec(head);
  if (!m) throw corrupt('bad header', file);
  if (Number(m[1]) !== MANIFEST_FORMAT) throw corrupt(`unsupported format v${m[1]}`, file);
  const len = Number(m[3]);
  const start = m[0].length;
  if (buf.length - start !== len) throw corrupt(`length ${buf.length - start} != ${len}`, file);
  const body = buf.subarray(start);
  if (crc32(body) !== parseInt(m[2]!, 16)) throw corrupt('CRC32 mismatch', file);
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw new StratavecError('ERR_MANIFEST_CORRUPT', `manifest ${file} is corrupt: bad JSON`, { cause: err });
  }
  validateManifest(parsed, file);
  return parsed;
}

const isInt = (v: unknown, min = 0): v is number => Number.isSafeInteger(v) && (v as number) >= min;

function validateManifest(v: unknown, file: string): asserts v is CollectionManifest {
  const m = v as Partial<CollectionManifest>;
  const bad = (what: string) => corrupt(what, file);
  if (!m || typeof m !== 'object') throw bad('not an object');
  if (m.format !== MANIFEST_FORMAT) throw bad('format');
  if (typeof m.collection !== 'string') throw bad('collection');
  if (!isInt(m.version, 1)) throw bad('version');
  if (!isInt(m.dimension, 1) || m.dimension > 65536) throw bad('dimension');
  if (m.metric !== 'l2' && m.metric !== 'ip' && m.metric !== 'cosine') throw bad('metric');
  if (!m.hnsw || !isInt(m.hnsw.M, 2) || !isInt(m.hnsw.efConstruction, 1) || !isInt(m.hnsw.efSearch, 1)) throw bad('hnsw');
  if (!isInt(m.nextSegmentSeq, 1) || !isInt(m.walSeq, 1)) throw bad('sequence numbers');
  if (!Array.isArray(m.segments)) throw bad('segments');
  if (m.indexes !== undefined && indexDeclarationProblem(m.indexes) !== undefined) throw bad('indexes');
  if (m.writer !== undefined && !isInt(m.writer, 1)) throw bad('writer');
  if (m.followedVersion !== undefined && !isInt(m.followedVersion, 1)) throw bad('followedVersion');
  const cl = m.clustering;
  if (cl !== undefined) {
    if (!cl || !isInt(cl.epoch, 1) || !isInt(cl.k, 1) || !isInt(cl.createdAt) || typeof cl.centroids !== 'string') throw bad('clustering');
    // base64 of k * dimension float32s, checked on the string before anything is decoded.
    if (cl.centroids.length !== 4 * Math.ceil((cl.k * m.dimension * 4) / 3) || !/^[A-Za-z0-9+/]*={0,2}$/.test(cl.centroids)) throw bad('clustering centroids');
  }
  const ids = new Set<string>();
  for (const s of m.segments) {
    if (!s || typeof s.id !== 'string' || ids.has(s.id)) throw bad('segment id');
    ids.add(s.id);
    if (!isInt(s.seq, 1) || s.seq >= m.nextSegmentSeq) throw bad(`segment ${s.id} seq`);
    if (!isInt(s.records)) throw bad(`segment ${s.id} records`);
    if (!Array.isArray(s.deleted) || !s.deleted.every((r) => isInt(r) && r < s.records)) throw bad(`segment ${s.id} tombstones`);
    if (!Array.isArray(s.sections) || !s.sections.every((x) => isInt(x.kind) && isInt(x.rawLength) && isInt(x.rawCrc))) {
      throw bad(`segment ${s.id} sections`);
    }
    if (s.tier !== 'warm' && s.tier !== 'cold') throw bad(`segment ${s.id} tier`);
    if (s.summary !== undefined && (!isPayloadSummary(s.summary) || s.summary.rows !== s.records)) throw bad(`segment ${s.id} payload summary`);
    if (s.region !== undefined) {
      if (!s.region || !isInt(s.region.epoch, 1) || !isInt(s.region.index)) throw bad(`segment ${s.id} region`);
      if (cl !== undefined && s.region.epoch > cl.epoch) throw bad(`segment ${s.id} region epoch`);
      if (cl !== undefined && s.region.epoch === cl.epoch && s.region.index >= cl.k) throw bad(`segment ${s.id} region index`);
    }
  }
}

const MANIFEST_NAME_RE = /^(\d{12})\.manifest$/;

export function manifestFileName(version: number): string {
  return `${String(version).padStart(12, '0')}.manifest`;
}

/** Manifest versions present in `dir`, ascending (temp files and strangers ignored). */
export async function listManifestVersions(dir: string): Promise<number[]> {
  let names: string[];
  try {
    names = await fsp.readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw ioError(err, `listing manifests in ${path.basename(dir)}`);
  }
  return names
    .filter((n) => !n.startsWith(TEMP_PREFIX))
    .map((n) => MANIFEST_NAME_RE.exec(n))
    .filter((x): x is RegExpExecArray => x !== null)
    .map((x) => Number(x[1]))
    .sort((a, b) => a - b);
}

export async function readManifestFile(file: string): Promise<CollectionManifest> {
  let fh: fsp.FileHandle | undefined;
  try {
    fh = await fsp.open(file, 'r');
    const { size } = await fh.stat();
    if (size > MAX_MANIFEST_BYTES) throw corrupt(`size ${size} over the ${MAX_MANIFEST_BYTES}-byte cap`, path.basename(file));
    const buf = Buffer.alloc(size);
    await fh.read(buf, 0, size, 0);
    return decodeManifest(buf, path.basename(file));
  } catch (err) {
    throw err instanceof StratavecError ? err : ioError(err, `reading manifest ${path.basename(file)}`);
  } finally {
    await fh?.close();
  }
}

/**
 * The newest manifest in `dir`. A corrupt newest version is an error, not a silent fall-back to an
 * older one: the WAL before the newest version may already be gone, so the older one could be stale.
 */
export async function loadLatestManifest(dir: string): Promise<CollectionManifest | undefined> {
  const versions = await listManifestVersions(dir);
  const latest = versions.at(-1);
  if (latest === undefined) return undefined;
  const m = await readManifestFile(path.join(dir, manifestFileName(latest)));
  if (m.version !== latest) throw corrupt(`holds version ${m.version}`, manifestFileName(latest));
  return m;
}

/** Writes `m` as version m.version, then prunes all but the newest `keep` versions. */
export async function writeManifest(dir: string, m: CollectionManifest, keep = 3): Promise<void> {
  await writeFileAtomic(path.join(dir, manifestFileName(m.version)), encodeManifest(m));
  const versions = await listManifestVersions(dir);
  for (const v of versions.slice(0, Math.max(0, versions.length - keep))) {
    // Old versions are only a debugging aid once a newer one is durable; a failed unlink is harmless.
    await fsp.rm(path.join(dir, manifestFileName(v)), { force: true }).catch(() => undefined);
  }
}
