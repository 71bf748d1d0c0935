// Several inputs converted into one output are read back to back (qemu-img convert IN1 IN2 OUT).
import { BaseDisk, checkRange, type Disk, type Extent } from '../../core/disk.js';
import { shiftExtents } from '../../core/extents.js';

export class ConcatDisk extends BaseDisk {
  readonly size: number;
  private readonly starts: number[] = [];
  constructor(private readonly parts: Disk[]) {
    super();
    let pos = 0;
    for (const p of parts) {
      this.starts.push(pos);
      pos += p.size;
    }
    this.size = pos;
  }

  private pieces(offset: number, length: number): Array<{ disk: Disk; start: number; from: number; to: number }> {
    const out = [];
    for (let i = 0; i < this.parts.length; i++) {
      const s = this.starts[i]!;
      const d = this.parts[i]!;
      const from = Math.max(offset, s);
      const to = Math.min(offset + length, s + d.size);
      if (to > from) out.push({ disk: d, start: s, from, to });
    }
    return out;
  }

  async read(dst: Uint8Array, offset: number): Promise<void> {
    checkRange(this, offset, dst.length);
    await Promise.all(this.pieces(offset, dst.length).map((p) => p.disk.read(dst.subarray(p.from - offset, p.to - offset), p.from - p.start)));
  }

  override async extents(offset: number, length: number): Promise<Extent[]> {
    checkRange(this, offset, length);
    const out: Extent[] = [];
    for (const p of this.pieces(offset, length)) {
      const list = await p.disk.extents(p.from - p.start, p.to - p.from);
      out.push(...shiftExtents(list, p.start, p.from, p.to));
    }
    return out;
  }
}
