// Bounds-checked field access for on-disk structures. 64-bit fields are returned as numbers and
// refused when they cannot be represented exactly (above 2^53 - 1): an image that needs them is
// either corrupt or larger than anything a JS number can address.

import { CorruptImageError } from './errors.js';

export class FieldReader {
  private readonly view: DataView;
  constructor(
    readonly buf: Uint8Array,
    readonly format: string,
    readonly file?: string,
    /** File offset of buf[0], for error messages. */
    readonly base = 0,
  ) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  private check(off: number, len: number, what: string): void {
    if (off < 0 || off + len > this.buf.length) {
      throw new CorruptImageError(this.format, `${what}: structure truncated`, { file: this.file, offset: this.base + off });
    }
  }

  u8(off: number, what = 'field'): number {
    this.check(off, 1, what);
    return this.view.getUint8(off);
  }
  u16be(off: number, what = 'field'): number {
    this.check(off, 2, what);
    return this.view.getUint16(off, false);
  }
  u16le(off: number, what = 'field'): number {
    this.check(off, 2, what);
    return this.view.getUint16(off, true);
  }
  u32be(off: number, what = 'field'): number {
    this.check(off, 4, what);
    return this.view.getUint32(off, false);
  }
  u32le(off: number, what = 'field'): number {
    this.check(off, 4, what);
    return this.view.getUint32(off, true);
  }
  /** A 64-bit big-endian value that must fit in a safe integer. */
  u64be(off: number, what = 'field'): number {
    this.check(off, 8, what);
    return this.safe(this.view.getBigUint64(off, false), off, what);
  }
  u64le(off: number, what = 'field'): number {
    this.check(off, 8, what);
    return this.safe(this.view.getBigUint64(off, true), off, what);
  }
  big64be(off: number, what = 'field'): bigint {
    this.check(off, 8, what);
    return this.view.getBigUint64(off, false);
  }
  big64le(off: number, what = 'field'): bigint {
    this.check(off, 8, what);
    return this.view.getBigUint64(off, true);
  }
  bytes(off: number, len: number, what = 'field'): Uint8Array {
    this.check(off, len, what);
    return this.buf.subarray(off, off + len);
  }
  ascii(off: number, len: number, what = 'field'): string {
    return Buffer.from(this.bytes(off, len, what)).toString('latin1');
  }

  private safe(v: bigint, off: number, what: string): number {
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new CorruptImageError(this.format, `${what} is too large (0x${v.toString(16)})`, { file: this.file, offset: this.base + off });
    }
    return Number(v);
  }
}

/** Format a byte count the way qemu-img does in human output: 1 GiB, 512 KiB, 1.5 MiB. */
export function humanSize(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  if (i === 0) return `${n} B`;
  // Strip zeros after the decimal point only: 100 MiB must not become "1 MiB".
  const s = v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2).replace(/(\.\d*?)0+$/, '$1').replace(/\.$/, '');
  return `${s} ${units[i]}`;
}

export function isPowerOfTwo(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && (n & (n - 1)) === 0 && n <= 2 ** 30 ? true : n > 2 ** 30 && Number.isSafeInteger(n) && Math.log2(n) % 1 === 0;
}
