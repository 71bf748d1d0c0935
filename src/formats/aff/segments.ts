// AFF segment files (AFFLIB v1-v3). Layout (afflib_i.h, simsong/AFFLIBv3 @ 6a52df7a):
//   file header  "AFF10\r\n\0" (8 bytes), then segments back to back:
//   head  "AFF\0", u32 name_len, u32 data_len, u32 arg      (network byte order)
//   name  name_len bytes (no NUL), data  data_len bytes
//   tail  "ATT\0", u32 segment_len = 16 + name_len + data_len + 8
// A segment with an empty name is free space (AF_IGNORE). 64-bit values (aff_quad) are stored as
// {u32 low, u32 high}, each half big-endian: NOT a plain big-endian u64.
// The index is built by walking the chain forward from the header: every step moves forward by a
// length checked against the file size, so the walk ends.

import { CorruptImageError } from '../../core/errors.js';
import type { ByteSource } from '../../sources/source.js';

export const FORMAT = 'aff';
export const AFF_HEADER = Uint8Array.from([0x41, 0x46, 0x46, 0x31, 0x30, 0x0d, 0x0a, 0x00]); // AFF10\r\n\0
const SEG_MAGIC = 0x41464600; // "AFF\0"
const TAIL_MAGIC = 0x41545400; // "ATT\0"
const HEAD_SIZE = 16;
const TAIL_SIZE = 8;
/** AF_MAX_NAME_LEN is 64; accept a little more from other writers, but nothing absurd. */
const MAX_NAME_LEN = 1024;
/** Segments read ahead in one source read while walking. */
const WINDOW = 64 * 1024;
/** Data up to this size is kept in the index (zero pages hold 4 bytes, quads 8). */
const INLINE_MAX = 16;

/** Segment flag: data is an 8-byte aff_quad. */
export const AF_SEG_QUADWORD = 0x0002;
/** Page flags (arg of a page segment). */
export const AF_PAGE_COMPRESSED = 0x0001;
export const AF_PAGE_COMP_ALG_MASK = 0x00f0;
export const AF_PAGE_COMP_ALG_ZLIB = 0x0000;
export const AF_PAGE_COMP_ALG_BZIP = 0x0010;
export const AF_PAGE_COMP_ALG_LZMA = 0x0020;
export const AF_PAGE_COMP_ALG_ZERO = 0x0030;

export interface Segment {
  name: string;
  arg: number;
  /** Which file of the image (AFD members are numbered in order). */
  file: number;
  /** File offset of the data. */
  dataOffset: number;
  dataLength: number;
  /** The data itself when it is tiny (zero-page counts, quads), read while walking. */
  inline?: Uint8Array;
}

export interface SegmentWalk {
  segments: Segment[];
  /** Free-space segments (empty name) seen. */
  ignored: number;
}

export function hasAffHeader(head: Uint8Array): boolean {
  if (head.length < AFF_HEADER.length) return false;
  for (let i = 0; i < AFF_HEADER.length; i++) if (head[i] !== AFF_HEADER[i]) return false;
  return true;
}

/** Walk every segment of one AFF file. Throws CorruptImageError on anything that is not a segment. */
export async function walkSegments(src: ByteSource, fileIndex: number): Promise<SegmentWalk> {
  const size = src.size;
  const win = new WindowReader(src);
  const head = await win.get(0, AFF_HEADER.length, 'file header');
  if (!hasAffHeader(head)) {
    throw new CorruptImageError(FORMAT, 'not an AFF file (no "AFF10\\r\\n\\0" header)', { file: src.name, offset: 0 });
  }
  const segments: Segment[] = [];
  let ignored = 0;
  let pos = AFF_HEADER.length;
  while (pos < size) {
    const h = await win.get(pos, HEAD_SIZE, 'segment header');
    const dv = new DataView(h.buffer, h.byteOffset, HEAD_SIZE);
    if (dv.getUint32(0) !== SEG_MAGIC) {
      throw new CorruptImageError(FORMAT, 'bad segment header magic (expected "AFF\\0")', { file: src.name, offset: pos });
    }
    const nameLen = dv.getUint32(4);
    const dataLen = dv.getUint32(8);
    const arg = dv.getUint32(12);
    if (nameLen > MAX_NAME_LEN) {
      throw new CorruptImageError(FORMAT, `segment name length ${nameLen} is too large`, { file: src.name, offset: pos });
    }
    const dataOffset = pos + HEAD_SIZE + nameLen;
    const tailOffset = dataOffset + dataLen;
    const end = tailOffset + TAIL_SIZE;
    if (end > size) {
      throw new CorruptImageError(FORMAT, `segment (${nameLen}-byte name, ${dataLen} bytes of data) runs past the end of the file (size ${size})`, {
        file: src.name,
        offset: pos,
      });
    }
    const name = nameLen ? Buffer.from(await win.get(pos + HEAD_SIZE, nameLen, 'segment name')).toString('latin1') : '';
    const inline = name !== '' && dataLen <= INLINE_MAX ? (await win.get(dataOffset, dataLen, `segment '${name}' data`)).slice() : undefined;
    const t = await win.get(tailOffset, TAIL_SIZE, 'segment tail');
    const tv = new DataView(t.buffer, t.byteOffset, TAIL_SIZE);
    if (tv.getUint32(0) !== TAIL_MAGIC) {
      throw new CorruptImageError(FORMAT, `segment '${name}': bad tail magic (expected "ATT\\0")`, { file: src.name, offset: tailOffset });
    }
    // segment_len is a u32: compare modulo 2^32 so that a (legal) segment near 4 GiB still matches.
    const expect = (HEAD_SIZE + nameLen + dataLen + TAIL_SIZE) % 2 ** 32;
    if (tv.getUint32(4) !== expect) {
      throw new CorruptImageError(FORMAT, `segment '${name}': tail length ${tv.getUint32(4)} does not match its head (${expect})`, {
        file: src.name,
        offset: tailOffset,
      });
    }
    if (name === '') ignored++;
    else {
      const seg: Segment = { name, arg, file: fileIndex, dataOffset, dataLength: dataLen };
      if (inline) seg.inline = inline;
      segments.push(seg);
    }
    pos = end;
  }
  return { segments, ignored };
}

/** Reads small structures through a read-ahead window, so that walking many small segments costs few reads. */
class WindowReader {
  private buf = new Uint8Array(0);
  private start = 0;
  constructor(private readonly src: ByteSource) {}

  async get(offset: number, length: number, what: string): Promise<Uint8Array> {
    if (offset < this.start || offset + length > this.start + this.buf.length) {
      if (offset + length > this.src.size) {
        throw new CorruptImageError(FORMAT, `${what} (${length} bytes) lies past the end of the file (size ${this.src.size})`, {
          file: this.src.name,
          offset,
        });
      }
      const n = Math.min(Math.max(WINDOW, length), this.src.size - offset);
      const buf = new Uint8Array(n);
      const got = await this.src.read(buf, offset);
      if (got < length) {
        throw new CorruptImageError(FORMAT, `${what}: short read (${got} of ${length} bytes)`, { file: this.src.name, offset });
      }
      this.buf = buf.subarray(0, got);
      this.start = offset;
    }
    return this.buf.subarray(offset - this.start, offset - this.start + length);
  }
}

/** Decode an aff_quad: {u32 low, u32 high}, each big-endian. Undefined when it does not fit a safe integer. */
export function decodeQuad(data: Uint8Array): number | undefined {
  if (data.length !== 8) return undefined;
  const dv = new DataView(data.buffer, data.byteOffset, 8);
  const low = dv.getUint32(0);
  const high = dv.getUint32(4);
  const v = high * 2 ** 32 + low;
  return Number.isSafeInteger(v) ? v : undefined;
}

/**
 * The page number of a data segment name: `page%d` (AFFv2+) or `seg%d` (AFF v1), decimal as
 * printf writes it (no sign, no leading zeros). -1 for any other name.
 */
export function pageNumber(name: string): number {
  const m = /^(?:page|seg)(0|[1-9][0-9]{0,15})$/.exec(name);
  if (!m) return -1;
  const n = Number(m[1]);
  return Number.isSafeInteger(n) ? n : -1;
}

/** Per-page hash segments (page%d_md5, _sha1, _sha256, and the v1 seg%d_ forms). */
export function isPageHashName(name: string): boolean {
  return /^(?:page|seg)\d+_(?:md5|sha1|sha256)$/.test(name);
}

export function isEncryptionName(name: string): boolean {
  return name.endsWith('/aes256') || name === 'affkey_aes256' || /^affkey_evp\d+$/.test(name);
}

export function isSignatureName(name: string): boolean {
  return name.endsWith('/sha256') || name === 'cert-sha256';
}
