// Several byte sources seen as one, in order: split raw images (disk.001, disk.002, ...).
import { ReadOnlyError } from '../core/errors.js';
import type { ByteSource } from './source.js';

export class SplitSource implements ByteSource {
  readonly size: number;
  readonly writable = false;
  private readonly starts: number[] = [];
  constructor(
    readonly parts: ByteSource[],
    readonly name = parts[0]?.name ?? 'split',
  ) {
    let pos = 0;
    for (const p of parts) {
      this.starts.push(pos);
      pos += p.size;
    }
    this.size = pos;
  }

  async read(dst: Uint8Array, offset: number): Promise<number> {
    if (offset >= this.size) return 0;
    const want = Math.min(dst.length, this.size - offset);
    let done = 0;
    let i = this.find(offset);
    while (done < want && i < this.parts.length) {
      const part = this.parts[i]!;
      const inPart = offset + done - this.starts[i]!;
      const n = Math.min(want - done, part.size - inPart);
      if (n > 0) {
        const got = await part.read(dst.subarray(done, done + n), inPart);
        done += got;
        if (got < n) break;
      }
      i++;
    }
    return done;
  }

  private find(offset: number): number {
    let lo = 0;
    let hi = this.starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.starts[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  fileRuns(offset: number, length: number): Array<{ fd: number; fileOffset: number; length: number }> | undefined {
    if (offset < 0 || offset + length > this.size) return undefined;
    const out: Array<{ fd: number; fileOffset: number; length: number }> = [];
    let done = 0;
    let i = this.find(offset);
    while (done < length && i < this.parts.length) {
      const part = this.parts[i]!;
      const inPart = offset + done - this.starts[i]!;
      const n = Math.min(length - done, part.size - inPart);
      if (n > 0) {
        const runs = part.fileRuns?.(inPart, n);
        if (!runs) return undefined;
        out.push(...runs);
        done += n;
      }
      i++;
    }
    return done === length ? out : undefined;
  }

  async write(): Promise<void> {
    throw new ReadOnlyError('split sources are read-only', { file: this.name });
  }
  async flush(): Promise<void> {}
  async truncate(): Promise<void> {
    throw new ReadOnlyError('split sources are read-only', { file: this.name });
  }
  identity(): string {
    return this.parts.map((p) => p.identity()).join('|');
  }
  async close(): Promise<void> {
    await Promise.all(this.parts.map((p) => p.close()));
  }
}

/**
 * Given one file of a numbered set (disk.001, disk.000, disk.aa, image.1), list the names of the
 * whole set in order, as far as they exist. Returns [name] when name is not part of such a set.
 */
export function splitSetNames(name: string, exists: (n: string) => boolean): string[] {
  const m = /^(.*\.)(\d{2,4})$/.exec(name);
  if (!m) return [name];
  const prefix = m[1]!;
  const width = m[2]!.length;
  const first = Number(m[2]);
  if (first > 1) return [name];
  const names: string[] = [];
  for (let i = first; i < 10 ** width; i++) {
    const n = prefix + String(i).padStart(width, '0');
    if (!exists(n)) break;
    names.push(n);
  }
  return names.length ? names : [name];
}
