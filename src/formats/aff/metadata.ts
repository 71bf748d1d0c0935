// AFF metadata segments (afflib.h): everything that is not a data page. Values live in the arg
// (pagesize, sectorsize, acquisition_seconds), as an aff_quad (imagesize, badsectors, flag
// AF_SEG_QUADWORD), as text (acquisition_date, acquisition_commandline, device_model...) or as
// binary (md5, sha1, sha256, image_gid, badflag). Stored image hashes are what `verify` checks.

import type { StoredHash } from '../types.js';
import { AF_SEG_QUADWORD, decodeQuad, type Segment } from './segments.js';

/** Metadata segments larger than this are not loaded (dmesg logs can be long; none matter for reading). */
export const MAX_META_SEGMENT = 64 * 1024;
/** Total metadata loaded per image. */
export const MAX_META_TOTAL = 4 * 1024 * 1024;
const MAX_SHOWN_CHARS = 1024;

const HEX_NAMES = new Set(['md5', 'sha1', 'sha256', 'image_gid']);
const HASH_LENGTHS: Record<StoredHash['algorithm'], number> = { md5: 16, sha1: 20, sha256: 32 };

export interface MetaSegment {
  seg: Segment;
  /** Undefined when too large to load. */
  data?: Uint8Array;
}

export function hex(b: Uint8Array): string {
  return Buffer.from(b).toString('hex');
}

/** A segment's value as affinfo would show it: number, text or hex. */
export function displayValue(m: MetaSegment): string | number {
  const { seg, data } = m;
  if (!data) return `(${seg.dataLength} bytes, not loaded)`;
  if (seg.name === 'badflag') return `present (${data.length} bytes)`;
  if (data.length === 0) return seg.arg;
  if (HEX_NAMES.has(seg.name)) return hex(data);
  if ((seg.arg & AF_SEG_QUADWORD) !== 0 && data.length === 8) {
    const q = decodeQuad(data);
    if (q !== undefined) return q;
  }
  const text = asText(data);
  if (text !== undefined) return text.length > MAX_SHOWN_CHARS ? `${text.slice(0, MAX_SHOWN_CHARS)}...` : text;
  const shown = data.subarray(0, 64);
  return hex(shown) + (data.length > shown.length ? '...' : '');
}

/** Printable text (trailing NULs and whitespace removed), or undefined for binary data. */
function asText(data: Uint8Array): string | undefined {
  let end = data.length;
  while (end > 0 && data[end - 1] === 0) end--;
  for (let i = 0; i < end; i++) {
    const c = data[i]!;
    if (c < 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) return undefined;
    if (c === 0x7f) return undefined;
  }
  return Buffer.from(data.subarray(0, end)).toString('utf8').trim();
}

export function textValue(m: MetaSegment | undefined): string | undefined {
  if (!m?.data) return undefined;
  return asText(m.data);
}

export function quadValue(m: MetaSegment | undefined): number | undefined {
  if (!m?.data) return undefined;
  return decodeQuad(m.data);
}

/** md5, sha1 and sha256 segments of the right length, as lower-case hex. */
export function storedHashes(meta: Map<string, MetaSegment>): StoredHash[] {
  const out: StoredHash[] = [];
  for (const algorithm of ['md5', 'sha1', 'sha256'] as const) {
    const m = meta.get(algorithm);
    if (m?.data && m.data.length === HASH_LENGTHS[algorithm]) out.push({ algorithm, value: hex(m.data), source: `segment ${algorithm}` });
  }
  return out;
}
