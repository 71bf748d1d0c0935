// A window onto another disk: bytes [offset, offset+size) of the inner disk, as xmount's
// --offset/--sizelimit and as a partition. Every Disk operation is forwarded with the shift.

import { checkRange, type DirectPiece, type DirectWritePiece, type Disk, type Extent } from '../core/disk.js';
import { OutOfRangeError } from '../core/errors.js';
import { shiftExtents } from '../core/extents.js';

export class OffsetLayer implements Disk {
  readonly size: number;
  readonly readOnly: boolean;
  constructor(
    readonly inner: Disk,
    readonly offset: number,
    size?: number,
    /** Close the inner disk with this one. */
    private readonly owns = true,
  ) {
    if (!Number.isSafeInteger(offset) || offset < 0 || offset > inner.size) {
      throw new OutOfRangeError(`offset ${offset} is outside the disk (size ${inner.size})`);
    }
    const avail = inner.size - offset;
    this.size = size === undefined ? avail : Math.min(size, avail);
    if (!Number.isSafeInteger(this.size) || this.size < 0) throw new OutOfRangeError(`invalid size limit ${size}`);
    this.readOnly = inner.readOnly;
  }
  read(dst: Uint8Array, offset: number): Promise<void> {
    checkRange(this, offset, dst.length);
    return this.inner.read(dst, offset + this.offset);
  }
  write(src: Uint8Array, offset: number): Promise<void> {
    checkRange(this, offset, src.length);
    return this.inner.write(src, offset + this.offset);
  }
  writeZeroes(offset: number, length: number): Promise<void> {
    checkRange(this, offset, length);
    return this.inner.writeZeroes(offset + this.offset, length);
  }
  discard(offset: number, length: number): Promise<void> {
    checkRange(this, offset, length);
    return this.inner.discard(offset + this.offset, length);
  }
  flush(): Promise<void> {
    return this.inner.flush();
  }
  async extents(offset: number, length: number): Promise<Extent[]> {
    checkRange(this, offset, length);
    const inner = await this.inner.extents(offset + this.offset, length);
    return shiftExtents(inner, -this.offset, offset, offset + length);
  }
  async directMap(offset: number, length: number): Promise<DirectPiece[]> {
    checkRange(this, offset, length);
    if (!this.inner.directMap || !this.readOnly) return [];
    const inner = await this.inner.directMap(offset + this.offset, length);
    return inner.map((p) => ({ ...p, offset: p.offset - this.offset }));
  }
  async directWriteMap(offset: number, length: number): Promise<DirectWritePiece[]> {
    checkRange(this, offset, length);
    if (!this.inner.directWriteMap || this.readOnly) return [];
    const inner = await this.inner.directWriteMap(offset + this.offset, length);
    return inner.map((p) => ({ ...p, offset: p.offset - this.offset }));
  }
  async close(): Promise<void> {
    if (this.owns) await this.inner.close();
  }
}
