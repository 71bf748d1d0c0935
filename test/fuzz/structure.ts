// What the structure-aware mutators know about a seed image: its integer fields (header values,
// table entries), where its metadata lives, its compressed payloads and its text parts. Each
// format's analyzer (formats/*.ts) finds these in the seed once; mutations then aim at them.

import type { Rng } from './rng.js';

export type FieldKind = 'offset' | 'count' | 'size' | 'shift' | 'flags' | 'entry' | 'any';

export interface Field {
  offset: number;
  width: 1 | 2 | 4 | 8;
  le: boolean;
  name: string;
  kind: FieldKind;
}

export type Codec = 'zlib' | 'deflate' | 'zstd';

export interface Stream {
  offset: number;
  length: number;
  codec: Codec;
}

export interface TextPart {
  offset: number;
  length: number;
  /** Lines worth putting in (extent lines naming devices, absurd sizes, self references...). */
  dictionary: string[];
  /** The text may grow or shrink (a separate descriptor file), or must keep its length (embedded). */
  resizable: boolean;
}

export interface Special {
  name: string;
  apply(buf: Uint8Array, rng: Rng): Uint8Array;
}

export interface Structure {
  fields: Field[];
  /** [start, end) byte ranges of metadata: headers, tables, descriptors. */
  regions: Array<[number, number]>;
  streams: Stream[];
  texts: TextPart[];
  /** Offsets of known structures: good values for offset fields (overlapping tables). */
  anchors: number[];
  /** Recompute checksums at their original places so that a mutation gets past them. */
  fixup?(buf: Uint8Array): void;
  specials: Special[];
}

export function emptyStructure(): Structure {
  return { fields: [], regions: [], streams: [], texts: [], anchors: [], specials: [] };
}

export function readField(buf: Uint8Array, f: Field): bigint {
  if (f.offset + f.width > buf.length) return 0n;
  const dv = new DataView(buf.buffer, buf.byteOffset + f.offset, f.width);
  switch (f.width) {
    case 1:
      return BigInt(dv.getUint8(0));
    case 2:
      return BigInt(dv.getUint16(0, f.le));
    case 4:
      return BigInt(dv.getUint32(0, f.le));
    case 8:
      return dv.getBigUint64(0, f.le);
  }
}

export function writeField(buf: Uint8Array, f: Field, value: bigint): void {
  if (f.offset + f.width > buf.length) return;
  const v = BigInt.asUintN(f.width * 8, value);
  const dv = new DataView(buf.buffer, buf.byteOffset + f.offset, f.width);
  switch (f.width) {
    case 1:
      dv.setUint8(0, Number(v));
      break;
    case 2:
      dv.setUint16(0, Number(v), f.le);
      break;
    case 4:
      dv.setUint32(0, Number(v), f.le);
      break;
    case 8:
      dv.setBigUint64(0, v, f.le);
      break;
  }
}

/** Shorthand for analyzers: a run of fields of one width and byte order. */
export function fieldsAt(base: number, le: boolean, specs: Array<[number, 1 | 2 | 4 | 8, string, FieldKind?]>): Field[] {
  return specs.map(([off, width, name, kind]) => ({ offset: base + off, width, le, name, kind: kind ?? 'any' }));
}

export function u32be(buf: Uint8Array, off: number): number {
  return off + 4 <= buf.length ? new DataView(buf.buffer, buf.byteOffset + off, 4).getUint32(0, false) : 0;
}
export function u32le(buf: Uint8Array, off: number): number {
  return off + 4 <= buf.length ? new DataView(buf.buffer, buf.byteOffset + off, 4).getUint32(0, true) : 0;
}
export function u16be(buf: Uint8Array, off: number): number {
  return off + 2 <= buf.length ? new DataView(buf.buffer, buf.byteOffset + off, 2).getUint16(0, false) : 0;
}
export function u16le(buf: Uint8Array, off: number): number {
  return off + 2 <= buf.length ? new DataView(buf.buffer, buf.byteOffset + off, 2).getUint16(0, true) : 0;
}
/** A u64 as a number (exact below 2^53; seeds are small). */
export function u64be(buf: Uint8Array, off: number): number {
  return off + 8 <= buf.length ? Number(new DataView(buf.buffer, buf.byteOffset + off, 8).getBigUint64(0, false)) : 0;
}
export function u64le(buf: Uint8Array, off: number): number {
  return off + 8 <= buf.length ? Number(new DataView(buf.buffer, buf.byteOffset + off, 8).getBigUint64(0, true)) : 0;
}

export function ascii(buf: Uint8Array, off: number, len: number): string {
  return Buffer.from(buf.buffer, buf.byteOffset + off, Math.max(0, Math.min(len, buf.length - off))).toString('latin1');
}

/** Find every occurrence of a byte string. */
export function findAll(buf: Uint8Array, needle: Uint8Array | string, limit = 10_000): number[] {
  const n = typeof needle === 'string' ? Buffer.from(needle, 'latin1') : Buffer.from(needle);
  const hay = Buffer.from(buf.buffer, buf.byteOffset, buf.length);
  const out: number[] = [];
  let i = hay.indexOf(n);
  while (i >= 0 && out.length < limit) {
    out.push(i);
    i = hay.indexOf(n, i + 1);
  }
  return out;
}
