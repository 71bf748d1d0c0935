// EWF2 (EnCase 7 "Ex01"), per libewf's "Expert Witness Compression Format 2 (EWF2).asciidoc".
//   file header (32): "EVF2\r\n\x81\x00", u8 major 2, u8 minor 1, u16 compression method
//     (0 none, 1 zlib, 2 bzip2), u32 segment number, 16-byte set GUID
//   sections are read back to front: a 64-byte descriptor ENDS each section:
//     u32 type, u32 data flags (1 MD5HASHED, 2 ENCRYPTED), u64 offset of the previous section's
//     descriptor (0 = first section, which starts at 32), u64 data size (incl. padding),
//     u32 descriptor size (64), u32 padding size, md5[16] of the data, 12 bytes 0, u32 Adler-32
//   types: 1 device information, 2 case data, 3 sector data, 4 sector table, 5 error table,
//     6 session table, 8 MD5, 9 SHA1, 0xb encryption keys, 0xd next, 0xf done
//   device information / case data: compressed UTF-16 "serialized file object" text
//   sector table: u64 first chunk, u32 count, u32 0, u32 Adler-32, 12 bytes padding; entries of
//     {u64 offset (or fill pattern), u32 size, u32 flags: 1 COMPRESSED, 2 CHECKSUMED,
//     4 PATTERNFILL (only with COMPRESSED; size 0)}; u32 Adler-32 of the entries
// bzip2 (method 2) is EnCase's own variant without stream header and trailer (libewf issue #4,
// #40): anydisk refuses it rather than guess.

import { createHash } from 'node:crypto';
import { inflate } from 'node:zlib';
import { adler32 } from './adler32.js';
import { ChunkKind, ChunkStore, type ChunkStoreOptions, type LoadedTable, type TableRef } from './chunk-store.js';
import { formatGuid, startsWith, toHex, type SectorRange, type SessionEntry } from './ewf1-sections.js';
import { zlibBound } from './ewf1-tables.js';
import { decodeUtf16, mergeAcquisitionInfo, parseMainCategory, type AcquisitionInfo } from './header-values.js';
import { EwfImage, type EwfMetadata } from './image.js';
import { openSegmentSet, type OpenedSegment } from './segment-set.js';
import { ChecksumError, CorruptImageError, UnsupportedFeatureError } from '../../core/errors.js';
import { FieldReader } from '../../core/bytes.js';
import { readBytes, type ByteSource } from '../../sources/source.js';
import type { OpenContext, StoredHash } from '../types.js';
import { EVF2_SIGNATURE } from './probe.js';

const F = 'ewf';
export const FILE_HEADER_V2 = 32;
export const DESCRIPTOR_V2 = 64;
const MAX_SECTIONS = 1_000_000;
const MAX_META = 16 * 1024 * 1024;

export const enum SectionTypeV2 {
  DeviceInfo = 1,
  CaseData = 2,
  SectorData = 3,
  SectorTable = 4,
  ErrorTable = 5,
  SessionTable = 6,
  Md5 = 8,
  Sha1 = 9,
  EncryptionKeys = 0xb,
  Next = 0xd,
  Done = 0xf,
}

export interface SectionV2 {
  type: number;
  flags: number;
  /** First byte of the section's data. */
  start: number;
  /** Offset of its descriptor (the section ends at descriptor + 64). */
  descriptor: number;
  dataSize: number;
  paddingSize: number;
  md5: Uint8Array;
}

interface SegmentV2 {
  compression: number;
  guid: Uint8Array;
  sections: SectionV2[];
}

/** Walk a segment's sections from its end back to the file header; returns them front to back. */
export async function walkSectionsV2(src: ByteSource): Promise<SegmentV2> {
  const head = await readBytes(src, 0, FILE_HEADER_V2, F, 'EWF2 file header');
  const hr = new FieldReader(head, F, src.name);
  if (hr.u8(8) !== 2) throw new UnsupportedFeatureError(F, `EWF2 major version ${hr.u8(8)}`, { file: src.name, offset: 8 });
  const out: SectionV2[] = [];
  let pos = src.size - DESCRIPTOR_V2;
  if (pos < FILE_HEADER_V2) throw new CorruptImageError(F, `segment of ${src.size} bytes holds no section`, { file: src.name });
  for (;;) {
    if (out.length >= MAX_SECTIONS) throw new CorruptImageError(F, 'too many sections in segment', { file: src.name, offset: pos });
    const d = await readBytes(src, pos, DESCRIPTOR_V2, F, 'section descriptor');
    const r = new FieldReader(d, F, src.name, pos);
    const stored = r.u32le(60);
    const calc = adler32(d, 0, 60);
    if (stored !== calc) {
      throw new CorruptImageError(F, `section descriptor checksum mismatch (stored 0x${stored.toString(16)}, computed 0x${calc.toString(16)}): segment truncated or damaged`, {
        file: src.name,
        offset: pos,
      });
    }
    if (r.u32le(24) !== DESCRIPTOR_V2) throw new CorruptImageError(F, `section descriptor size ${r.u32le(24)}, 64 expected`, { file: src.name, offset: pos + 24 });
    const prev = r.u64le(8, 'previous section offset');
    const start = prev === 0 ? FILE_HEADER_V2 : prev + DESCRIPTOR_V2;
    if (prev !== 0 && (prev < FILE_HEADER_V2 || prev >= pos)) {
      throw new CorruptImageError(F, `previous section offset ${prev} is outside ${FILE_HEADER_V2}..${pos}`, { file: src.name, offset: pos + 8 });
    }
    if (start > pos) throw new CorruptImageError(F, `section starting at ${start} overlaps its descriptor at ${pos}`, { file: src.name, offset: pos });
    const dataSize = r.u64le(16, 'section data size');
    const paddingSize = r.u32le(28);
    if (dataSize > pos - start || paddingSize > dataSize) {
      throw new CorruptImageError(F, `section data size ${dataSize} (padding ${paddingSize}) does not fit in ${pos - start} bytes`, { file: src.name, offset: pos + 16 });
    }
    out.push({ type: r.u32le(0), flags: r.u32le(4), start, descriptor: pos, dataSize, paddingSize, md5: d.slice(32, 48) });
    if (prev === 0) break;
    pos = prev;
  }
  out.reverse();
  return { compression: hr.u16le(10), guid: head.slice(16, 32), sections: out };
}

async function sectionData(src: ByteSource, s: SectionV2, max = MAX_META): Promise<Uint8Array> {
  if (s.dataSize > max) throw new CorruptImageError(F, `section of type ${s.type} with ${s.dataSize} bytes is implausibly large`, { file: src.name, offset: s.start });
  const data = await readBytes(src, s.start, s.dataSize, F, `section type ${s.type}`);
  if (s.flags & 1) {
    const md5 = createHash('md5').update(data).digest();
    if (!md5.equals(Buffer.from(s.md5))) throw new ChecksumError(`${F}: section of type ${s.type} fails its MD5 integrity hash`, { file: src.name, offset: s.start });
  }
  return data;
}

async function objectText(src: ByteSource, s: SectionV2, compression: number): Promise<string> {
  const data = await sectionData(src, s);
  const body = data.subarray(0, data.length - s.paddingSize);
  const looksZlib = body.length >= 2 && (body[0]! & 0x0f) === 8 && ((body[0]! << 8) | body[1]!) % 31 === 0;
  if (compression === 0 && !looksZlib) return decodeUtf16(body);
  const text = await new Promise<Uint8Array>((resolve, reject) =>
    inflate(body, { maxOutputLength: 4 * MAX_META }, (err, out) =>
      err ? reject(new CorruptImageError(F, `section of type ${s.type} does not decompress (${err.message})`, { file: src.name, offset: s.start, cause: err })) : resolve(out),
    ),
  );
  return decodeUtf16(text);
}

interface TableV2 extends TableRef {
  seg: number;
  section: SectionV2;
}

export async function openEwf2(ctx: OpenContext, storeOpts: ChunkStoreOptions): Promise<EwfImage> {
  const segs = await openSegmentSet<SegmentV2>(ctx, {
    format: F,
    headerSize: FILE_HEADER_V2,
    segmentNumber(head, name) {
      if (!startsWith(head, EVF2_SIGNATURE)) throw new CorruptImageError(F, 'not an EWF2 segment file (bad signature)', { file: name, offset: 0 });
      const n = new DataView(head.buffer, head.byteOffset).getUint32(12, true);
      if (n === 0) throw new CorruptImageError(F, 'segment number 0 in file header', { file: name, offset: 12 });
      return n;
    },
    walk: walkSectionsV2,
    isLast: (w) => w.sections[w.sections.length - 1]!.type === SectionTypeV2.Done,
  });
  try {
    return await build(segs, storeOpts);
  } catch (err) {
    await Promise.all(segs.map((s) => s.source.close().catch(() => undefined)));
    throw err;
  }
}

async function build(segs: OpenedSegment<SegmentV2>[], storeOpts: ChunkStoreOptions): Promise<EwfImage> {
  const first = segs[0]!;
  const compression = first.walk.compression;
  if (compression === 2) {
    throw new UnsupportedFeatureError(F, "bzip2-compressed Ex01 (EnCase's bzip2 variant lacks the standard stream header; anydisk will not guess)", { file: first.name, offset: 10 });
  }
  if (compression > 2) throw new CorruptImageError(F, `unknown compression method ${compression}`, { file: first.name, offset: 10 });
  const acq: AcquisitionInfo = {};
  let device: Map<string, string> | undefined;
  let caseData: Map<string, string> | undefined;
  const hashes: StoredHash[] = [];
  let readErrors: SectorRange[] = [];
  let sessions: SessionEntry[] = [];
  const tables: TableV2[] = [];
  let nextChunk = 0;
  for (let si = 0; si < segs.length; si++) {
    const { source: src, walk } = segs[si]!;
    if (Buffer.compare(walk.guid, first.walk.guid) !== 0) {
      throw new CorruptImageError(F, `segment ${si + 1} belongs to another image (set identifier ${formatGuid(walk.guid)})`, { file: src.name, offset: 16 });
    }
    if (walk.compression !== compression) throw new CorruptImageError(F, `segment ${si + 1} uses compression method ${walk.compression}, segment 1 ${compression}`, { file: src.name, offset: 10 });
    for (const s of walk.sections) {
      if (s.flags & 2 || s.type === SectionTypeV2.EncryptionKeys) throw new UnsupportedFeatureError(F, 'encrypted Ex01 images', { file: src.name, offset: s.start });
      if (s.type >= 0x20 && s.type <= 0x2f) throw new UnsupportedFeatureError(F, 'logical evidence (Lx01) sections', { file: src.name, offset: s.start });
      switch (s.type) {
        case SectionTypeV2.DeviceInfo:
          if (!device) device = parseMainCategory(await objectText(src, s, compression));
          break;
        case SectionTypeV2.CaseData:
          if (!caseData) caseData = parseMainCategory(await objectText(src, s, compression));
          break;
        case SectionTypeV2.SectorTable: {
          if (s.dataSize < 36) throw new CorruptImageError(F, `sector table of ${s.dataSize} bytes has no room for its header`, { file: src.name, offset: s.start });
          const h = await readBytes(src, s.start, 20, F, 'sector table header');
          const r = new FieldReader(h, F, src.name, s.start);
          if (r.u32le(16) !== adler32(h, 0, 16)) throw new ChecksumError(`${F}: sector table header checksum mismatch`, { file: src.name, offset: s.start });
          const firstChunk = r.u64le(0, 'first chunk number');
          const count = r.u32le(8);
          if (32 + count * 16 + 4 > s.dataSize) {
            throw new CorruptImageError(F, `sector table claims ${count} entries but holds room for ${Math.floor((s.dataSize - 36) / 16)}`, { file: src.name, offset: s.start });
          }
          if (count === 0) break;
          if (firstChunk !== nextChunk) {
            throw new CorruptImageError(F, `sector table starts at chunk ${firstChunk}, chunk ${nextChunk} expected (out-of-order tables are not supported)`, { file: src.name, offset: s.start });
          }
          tables.push({ seg: si, section: s, first: firstChunk, count });
          nextChunk += count;
          break;
        }
        case SectionTypeV2.ErrorTable: {
          const d = await sectionData(src, s);
          const r = new FieldReader(d, F, src.name, s.start);
          const n = r.u32le(0);
          if (32 + n * 16 > d.length) throw new CorruptImageError(F, `error table claims ${n} entries`, { file: src.name, offset: s.start });
          readErrors = [];
          for (let k = 0; k < n; k++) readErrors.push({ start: r.u64le(32 + k * 16), count: r.u32le(40 + k * 16) });
          break;
        }
        case SectionTypeV2.SessionTable: {
          const d = await sectionData(src, s);
          const r = new FieldReader(d, F, src.name, s.start);
          const n = r.u32le(0);
          if (32 + n * 32 > d.length) throw new CorruptImageError(F, `session table claims ${n} entries`, { file: src.name, offset: s.start });
          sessions = [];
          for (let k = 0; k < n; k++) sessions.push({ startSector: r.u64le(32 + k * 32), audio: (r.u32le(40 + k * 32) & 1) !== 0 });
          break;
        }
        case SectionTypeV2.Md5:
        case SectionTypeV2.Sha1: {
          const len = s.type === SectionTypeV2.Md5 ? 16 : 20;
          const d = await sectionData(src, s);
          if (d.length < len + 4) throw new CorruptImageError(F, `hash section of ${d.length} bytes`, { file: src.name, offset: s.start });
          const ok = new DataView(d.buffer, d.byteOffset).getUint32(len, true) === adler32(d, 0, len);
          const v = toHex(d.subarray(0, len));
          const algorithm = s.type === SectionTypeV2.Md5 ? 'md5' : 'sha1';
          if (!/^0+$/.test(v) && !hashes.some((h) => h.algorithm === algorithm)) {
            hashes.push({ algorithm, value: v, source: `${algorithm} section${ok ? '' : ' (section checksum mismatch)'}` });
          }
          break;
        }
        default:
          break;
      }
    }
  }
  if (!device) throw new CorruptImageError(F, 'no device information section: media size unknown', { file: first.name });
  const num = (m: Map<string, string> | undefined, k: string, dflt?: number): number | undefined => {
    const v = m?.get(k)?.trim();
    if (v === undefined || v === '') return dflt;
    if (!/^\d{1,16}$/.test(v)) throw new CorruptImageError(F, `value '${k}' = '${v}' is not a number`, { file: first.name });
    return Number(v);
  };
  const bps = num(device, 'bp', 512)!;
  const sectorCount = num(device, 'ts');
  const spc = num(caseData, 'sb', 64)!;
  if (sectorCount === undefined) throw new CorruptImageError(F, "device information has no sector count ('ts')", { file: first.name });
  if (bps < 1 || bps > 65536 || spc < 1 || spc > 65536) throw new CorruptImageError(F, `implausible geometry: ${spc} sectors per chunk of ${bps} bytes`, { file: first.name });
  const chunkSize = bps * spc;
  if (chunkSize > 128 * 1024 * 1024) throw new CorruptImageError(F, `chunk size ${chunkSize} is implausibly large`, { file: first.name });
  const mediaSize = sectorCount * bps;
  if (!Number.isSafeInteger(mediaSize)) throw new CorruptImageError(F, 'media size is too large', { file: first.name });
  const needed = Math.ceil(mediaSize / chunkSize);
  const tb = num(caseData, 'tb');
  if (tb !== undefined && tb < needed) throw new CorruptImageError(F, `case data says ${tb} chunks, but ${sectorCount} sectors need ${needed}`, { file: first.name });
  if (nextChunk < needed) throw new CorruptImageError(F, `the sector tables describe ${nextChunk} chunks, the media needs ${needed} (segment missing?)`, { file: segs[segs.length - 1]!.name });
  if (device) mergeAcquisitionInfo(acq, device, 'ewf2');
  if (caseData) mergeAcquisitionInfo(acq, caseData, 'ewf2');
  const segments = segs.map((s) => ({ name: s.name, source: s.source }));
  const store = new ChunkStore(F, segments, tables, (ti) => loadTableV2(segments[tables[ti]!.seg]!.source, tables[ti]!, chunkSize, compression), chunkSize, mediaSize, storeOpts);
  const meta: EwfMetadata = {
    version: 2,
    fileFormat: 'EnCase 7+ (EWF2 Ex01)',
    acquisition: acq,
    driveType: device.get('dt') || undefined,
    isPhysical: device.has('ph') ? device.get('ph') === '1' : undefined,
    bytesPerSector: bps,
    sectorCount,
    sectorsPerChunk: spc,
    compression: compression === 1 ? 'deflate' : 'none',
    errorGranularity: num(caseData, 'gr'),
    setIdentifier: formatGuid(first.walk.guid),
    hashes,
    readErrors,
    sessions,
    notes: [],
  };
  return new EwfImage(segments, store, meta);
}

async function loadTableV2(src: ByteSource, t: TableV2, chunkSize: number, compression: number): Promise<LoadedTable> {
  const n = t.count;
  const at = t.section.start + 32;
  const raw = await readBytes(src, at, n * 16 + 4, F, 'sector table entries');
  const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const stored = dv.getUint32(n * 16, true);
  const calc = adler32(raw, 0, n * 16);
  if (stored !== calc) {
    throw new ChecksumError(`${F}: sector table entries checksum mismatch (stored 0x${stored.toString(16)}, computed 0x${calc.toString(16)})`, { file: src.name, offset: at });
  }
  const offsets = new Float64Array(n);
  const sizes = new Uint32Array(n);
  const kinds = new Uint8Array(n);
  const patterns = new Map<number, Uint8Array>();
  const zMax = zlibBound(chunkSize);
  for (let k = 0; k < n; k++) {
    const e = k * 16;
    const flags = dv.getUint32(e + 12, true);
    const size = dv.getUint32(e + 8, true);
    const chunk = t.first + k;
    if (flags & 1 && flags & 4) {
      kinds[k] = ChunkKind.Pattern;
      patterns.set(k, raw.slice(e, e + 8));
      continue;
    }
    const big = dv.getBigUint64(e, true);
    const kind = flags & 1 ? (compression === 2 ? ChunkKind.Bzip2 : ChunkKind.Zlib) : flags & 2 ? ChunkKind.RawChecksum : ChunkKind.Raw;
    const max = kind === ChunkKind.Zlib || kind === ChunkKind.Bzip2 ? zMax : kind === ChunkKind.RawChecksum ? chunkSize + 4 : chunkSize;
    if (size === 0 || size > max) {
      throw new CorruptImageError(F, `chunk ${chunk}: stored size ${size} is outside 1..${max}`, { file: src.name, offset: at + e });
    }
    if (big + BigInt(size) > BigInt(src.size)) {
      throw new CorruptImageError(F, `chunk ${chunk} (${size} bytes at ${big}) lies past the end of the segment file (size ${src.size})`, { file: src.name, offset: at + e });
    }
    offsets[k] = Number(big);
    sizes[k] = size;
    kinds[k] = kind;
  }
  return { seg: t.seg, offsets, sizes, kinds, patterns };
}
