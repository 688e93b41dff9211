// What `segment show` tells about one segment's copies: per section its kind, its raw size, and
// for the local and the remote copy the codec and the stored size (so the compression ratio the
// entropy selection achieved), plus the copy totals. Read-only: it reads section tables (the
// mapped local file, two ranged GETs of the remote object) and never fetches section bodies.

import { Codec, SectionKind, type SectionEntry } from '../format/segment.js';
import { StratavecError } from '../format/errors.js';
import type { ColdTier } from './cold.js';
import type { SealedSegment } from './sealed-segment.js';

const KIND_NAMES = new Map<number, string>(Object.entries(SectionKind).map(([name, kind]) => [kind, name]));
const CODEC_NAMES = new Map<number, string>(Object.entries(Codec).map(([name, id]) => [id, name]));

export const sectionKindName = (kind: number) => KIND_NAMES.get(kind) ?? `kind-${kind}`;
export const codecName = (codec: number) => CODEC_NAMES.get(codec) ?? `codec-${codec}`;

/** One section of one copy. */
export interface StoredSection {
  codec: string;
  /** Bytes it takes in that copy (undefined where the copy's section table could not be read). */
  storedBytes: number | undefined;
  /** storedBytes / rawBytes (below 1: the codec saved space). */
  ratio: number | undefined;
}

export interface SectionDetail {
  kind: number;
  name: string;
  rawBytes: number;
  local: StoredSection | undefined;
  remote: StoredSection | undefined;
}

export interface CopyDetail {
  /** A path relative to the database directory (local) or the object key (remote). */
  location: string;
  bytes: number;
  /** bytes / the segment's raw bytes. */
  ratio: number;
  /** Why the section table could not be read (remote: the store did not answer). */
  error?: string;
}

export interface SegmentCopiesDetail {
  rawBytes: number;
  sections: SectionDetail[];
  /** The local segment file of a hot or warm segment (raw, so it can be mapped); undefined when cold. */
  local: CopyDetail | undefined;
  remote: CopyDetail | undefined;
}

function stored(codec: number, entry: SectionEntry | undefined, rawBytes: number, knownRaw: boolean): StoredSection {
  // A section stored with codec none takes its raw size: no table read needed to know it.
  const storedBytes = entry?.storedLength ?? (knownRaw && codec === Codec.none ? rawBytes : undefined);
  return { codec: codecName(codec), storedBytes, ratio: storedBytes === undefined || rawBytes === 0 ? undefined : storedBytes / rawBytes };
}

export async function describeCopies(seg: SealedSegment, cold: ColdTier, localFile: string): Promise<SegmentCopiesDetail> {
  const meta = seg.meta;
  const rawBytes = meta.sections.reduce((n, s) => n + s.rawLength, 0);
  let remoteTable: SectionEntry[] | undefined;
  let remoteError: string | undefined;
  if (meta.remote) {
    try {
      remoteTable = await cold.readTable(meta.remote.key, meta.remote.bytes);
    } catch (err) {
      if (!(err instanceof StratavecError)) throw err;
      remoteError = err.message;
    }
  }
  const localTable = meta.tier === 'warm' ? seg.view?.reader.sections : undefined;
  const sections = meta.sections.map((s, i): SectionDetail => ({
    kind: s.kind,
    name: sectionKindName(s.kind),
    rawBytes: s.rawLength,
    local: meta.tier === 'warm' && meta.local ? stored(meta.local.codecs[i] ?? Codec.none, localTable?.find((e) => e.kind === s.kind), s.rawLength, true) : undefined,
    remote: meta.remote ? stored(meta.remote.codecs[i] ?? Codec.none, remoteTable?.find((e) => e.kind === s.kind), s.rawLength, false) : undefined,
  }));
  const ratio = (b: number) => (rawBytes === 0 ? 1 : b / rawBytes);
  return {
    rawBytes,
    sections,
    local: meta.tier === 'warm' && meta.local ? { location: localFile, bytes: meta.local.bytes, ratio: ratio(meta.local.bytes) } : undefined,
    remote: meta.remote ? { location: meta.remote.key, bytes: meta.remote.bytes, ratio: ratio(meta.remote.bytes), ...(remoteError ? { error: remoteError } : {}) } : undefined,
  };
}
