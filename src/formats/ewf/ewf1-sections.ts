// EWF1 segment files: a 13-byte file header, then sections chained front to back.
//   file header: "EVF\x09\x0d\x0a\xff\x00", 0x01, u16 segment number, u16 0
//   section descriptor (76 bytes): char type[16], u64 next (absolute in the file), u64 size,
//     40 bytes padding, u32 Adler-32 of bytes 0..71
//   "next" and "done" end a segment; they point at themselves (EnCase) or just past
//   themselves (SMART / EWF). A section's size must agree with its next offset (the "dual
//   image" trick makes them disagree).
// Section payload layouts (volume, table, hash, digest, error2, session) follow libewf's
// "Expert Witness Compression Format (EWF).asciidoc" @ c7b1b14b.

import { adler32 } from './adler32.js';
import { CorruptImageError } from '../../core/errors.js';
import { FieldReader } from '../../core/bytes.js';
import { readBytes, type ByteSource } from '../../sources/source.js';

export const F = 'ewf';
export const EVF1_SIGNATURE = [0x45, 0x56, 0x46, 0x09, 0x0d, 0x0a, 0xff, 0x00];
export const LVF1_SIGNATURE = [0x4c, 0x56, 0x46, 0x09, 0x0d, 0x0a, 0xff, 0x00];
export const DESCRIPTOR_SIZE = 76;
/** A segment cannot hold more sections than this (each takes at least 76 bytes anyway). */
const MAX_SECTIONS = 1_000_000;

export interface SectionV1 {
  type: string;
  /** Offset of the descriptor. */
  offset: number;
  /** Offset of the next section (end of this one). */
  end: number;
  /** Payload after the descriptor: [dataOffset, end). */
  dataOffset: number;
  dataSize: number;
}

export function startsWith(buf: Uint8Array, sig: readonly number[]): boolean {
  if (buf.length < sig.length) return false;
  for (let i = 0; i < sig.length; i++) if (buf[i] !== sig[i]) return false;
  return true;
}

/** Walk the section chain of one segment file, checking every descriptor. */
export async function walkSectionsV1(src: ByteSource): Promise<SectionV1[]> {
  const out: SectionV1[] = [];
  let off = 13;
  for (;;) {
    if (out.length >= MAX_SECTIONS) throw new CorruptImageError(F, 'too many sections in segment', { file: src.name, offset: off });
    if (off + DESCRIPTOR_SIZE > src.size) {
      throw new CorruptImageError(F, `section descriptor at ${off} lies past the end of the file (size ${src.size}): segment truncated or last section missing`, {
        file: src.name,
        offset: off,
      });
    }
    const d = await readBytes(src, off, DESCRIPTOR_SIZE, F, 'section descriptor');
    const r = new FieldReader(d, F, src.name, off);
    const stored = r.u32le(72);
    const calc = adler32(d, 0, 72);
    if (stored !== calc) {
      throw new CorruptImageError(F, `section descriptor checksum mismatch (stored 0x${hex8(stored)}, computed 0x${hex8(calc)})`, { file: src.name, offset: off });
    }
    const type = sectionType(d, src.name, off);
    const next = r.u64le(16, 'next section offset');
    const size = r.u64le(24, 'section size');
    if (type === 'next' || type === 'done') {
      out.push({ type, offset: off, end: off + DESCRIPTOR_SIZE, dataOffset: off + DESCRIPTOR_SIZE, dataSize: 0 });
      return out;
    }
    if (next > src.size) {
      throw new CorruptImageError(F, `section '${type}' extends to ${next}, past the end of the file (size ${src.size}): segment truncated?`, {
        file: src.name,
        offset: off,
      });
    }
    if (next < off + DESCRIPTOR_SIZE) {
      throw new CorruptImageError(F, `section '${type}' points to next section at ${next}, before its own end ${off + DESCRIPTOR_SIZE}`, { file: src.name, offset: off });
    }
    if (size !== 0 && size !== next - off) {
      throw new CorruptImageError(F, `section '${type}' size ${size} disagrees with its next offset ${next} (size ${next - off} expected)`, {
        file: src.name,
        offset: off,
      });
    }
    out.push({ type, offset: off, end: next, dataOffset: off + DESCRIPTOR_SIZE, dataSize: next - off - DESCRIPTOR_SIZE });
    off = next;
  }
}

function sectionType(d: Uint8Array, file: string, off: number): string {
  let end = 0;
  while (end < 16 && d[end] !== 0) end++;
  const t = Buffer.from(d.subarray(0, end)).toString('latin1');
  if (!/^[a-z0-9_]{1,16}$/i.test(t)) throw new CorruptImageError(F, `section type '${t.replace(/[^\x20-\x7e]/g, '?')}' is not a name`, { file, offset: off });
  return t.toLowerCase();
}

export function hex8(n: number): string {
  return n.toString(16).padStart(8, '0');
}

export function toHex(b: Uint8Array): string {
  return Buffer.from(b).toString('hex');
}

function allZero(b: Uint8Array): boolean {
  for (const x of b) if (x !== 0) return false;
  return true;
}

// ---- volume / disk / data ------------------------------------------------------------------

export interface MediaValues {
  /** 0 removable, 1 fixed, 3 optical, 0x0e logical, 0x10 memory. */
  mediaType?: number;
  chunkCount: number;
  sectorsPerChunk: number;
  bytesPerSector: number;
  sectorCount: number;
  mediaFlags?: number;
  /** 0 none, 1 good/fast, 2 best. */
  compressionLevel?: number;
  errorGranularity?: number;
  setIdentifier?: string;
  /** The 94-byte layout of EWF / SMART. */
  smart: boolean;
  /** What the 5 signature bytes say (SMART writes "SMART"). */
  signature?: string;
  checksumOk: boolean;
}

export function parseVolume(data: Uint8Array, file: string, offset: number): MediaValues {
  const r = new FieldReader(data, F, file, offset);
  if (data.length >= 1052) {
    const stored = r.u32le(1048);
    const guid = r.bytes(64, 16);
    return {
      mediaType: r.u8(0),
      chunkCount: r.u32le(4),
      sectorsPerChunk: r.u32le(8),
      bytesPerSector: r.u32le(12),
      sectorCount: r.u64le(16, 'sector count'),
      mediaFlags: r.u8(36),
      compressionLevel: r.u8(52),
      errorGranularity: r.u32le(56),
      setIdentifier: allZero(guid) ? undefined : formatGuid(guid),
      smart: false,
      checksumOk: stored === adler32(data, 0, 1048) || stored === 0,
    };
  }
  if (data.length >= 94) {
    const stored = r.u32le(90);
    const sig = Buffer.from(r.bytes(85, 5)).toString('latin1');
    return {
      chunkCount: r.u32le(4),
      sectorsPerChunk: r.u32le(8),
      bytesPerSector: r.u32le(12),
      sectorCount: r.u32le(16),
      smart: true,
      signature: /^[\x20-\x7e]+$/.test(sig) ? sig : undefined,
      checksumOk: stored === adler32(data, 0, 90),
    };
  }
  throw new CorruptImageError(F, `volume section holds ${data.length} bytes, less than the 94 of the smallest layout`, { file, offset });
}

/** GUIDs are printed the way libewf prints them (bytes in stored order). */
export function formatGuid(b: Uint8Array): string {
  const h = toHex(b);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

// ---- table / table2 header -------------------------------------------------------------------

export interface TableHeader {
  count: number;
  base: number;
  checksumOk: boolean;
}

export function parseTableHeader(h: Uint8Array, file: string, offset: number): TableHeader {
  const r = new FieldReader(h, F, file, offset);
  const stored = r.u32le(20);
  const ok = stored === adler32(h, 0, 20);
  // The base offset (EnCase 6+) is zero in older formats; refuse values that cannot be offsets.
  const big = r.big64le(8, 'table base offset');
  const base = big > BigInt(Number.MAX_SAFE_INTEGER) ? -1 : Number(big);
  return { count: r.u32le(0), base, checksumOk: ok };
}

// ---- hash / digest --------------------------------------------------------------------------

export interface StoredDigest {
  md5?: string;
  sha1?: string;
  checksumOk: boolean;
}

export function parseHash(data: Uint8Array): StoredDigest {
  if (data.length < 36) return { checksumOk: false };
  const md5 = data.subarray(0, 16);
  const stored = new DataView(data.buffer, data.byteOffset).getUint32(32, true);
  return { md5: allZero(md5) ? undefined : toHex(md5), checksumOk: stored === adler32(data, 0, 32) };
}

export function parseDigest(data: Uint8Array): StoredDigest {
  if (data.length < 80) return { checksumOk: false };
  const md5 = data.subarray(0, 16);
  const sha1 = data.subarray(16, 36);
  const stored = new DataView(data.buffer, data.byteOffset).getUint32(76, true);
  return {
    md5: allZero(md5) ? undefined : toHex(md5),
    sha1: allZero(sha1) ? undefined : toHex(sha1),
    checksumOk: stored === adler32(data, 0, 76),
  };
}

// ---- error2 / session -------------------------------------------------------------------------

export interface SectorRange {
  start: number;
  count: number;
}

/** error2: 520-byte header (u32 count ... u32 Adler-32 at 516), 8-byte entries, 4-byte footer. */
export function parseError2(data: Uint8Array, file: string, offset: number): { ranges: SectorRange[]; checksumOk: boolean } {
  const r = new FieldReader(data, F, file, offset);
  const count = r.u32le(0, 'error2 entry count');
  if (520 + count * 8 > data.length) {
    throw new CorruptImageError(F, `error2 section claims ${count} entries but holds room for ${Math.max(0, Math.floor((data.length - 520) / 8))}`, { file, offset });
  }
  let ok = r.u32le(516) === adler32(data, 0, 516);
  const ranges: SectorRange[] = [];
  for (let i = 0; i < count; i++) ranges.push({ start: r.u32le(520 + i * 8), count: r.u32le(524 + i * 8) });
  if (count > 0 && 520 + count * 8 + 4 <= data.length) ok = ok && r.u32le(520 + count * 8) === adler32(data, 520, 520 + count * 8);
  return { ranges, checksumOk: ok };
}

export interface SessionEntry {
  startSector: number;
  audio: boolean;
}

/** session: 36-byte header (u32 count, Adler-32 at 32), 32-byte entries {u32 flags, u32 start}, footer. */
export function parseSession(data: Uint8Array, file: string, offset: number): { sessions: SessionEntry[]; checksumOk: boolean } {
  const r = new FieldReader(data, F, file, offset);
  const count = r.u32le(0, 'session count');
  if (36 + count * 32 > data.length) {
    throw new CorruptImageError(F, `session section claims ${count} entries but is ${data.length} bytes`, { file, offset });
  }
  const ok = r.u32le(32) === adler32(data, 0, 32);
  const sessions: SessionEntry[] = [];
  for (let i = 0; i < count; i++) sessions.push({ audio: (r.u32le(36 + i * 32) & 1) !== 0, startSector: r.u32le(40 + i * 32) });
  return { sessions, checksumOk: ok };
}
