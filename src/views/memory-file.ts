// Small files held in memory: a VMDK descriptor (which VirtualBox and VMware rewrite, possibly
// with another length, so it can grow and shrink) and text files such as NAME.info. Changes live
// in memory only; the writable layer decides whether to persist them.

import { checkRange } from '../core/disk.js';
import { NoSpaceError, OutOfRangeError, ReadOnlyError } from '../core/errors.js';
import type { FileFacts } from './regions.js';
import type { ViewFile } from './types.js';

export interface MemoryFileOptions {
  readOnly?: boolean;
  /** Largest size writes may grow the file to (default 1 MiB). */
  maxSize?: number;
  facts?: FileFacts;
}

export class MemoryFile implements ViewFile {
  readonly readOnly: boolean;
  private data: Uint8Array;
  private length: number;
  private readonly maxSize: number;
  private readonly facts: FileFacts;

  constructor(
    readonly name: string,
    initial: Uint8Array,
    opts: MemoryFileOptions = {},
  ) {
    this.readOnly = !!opts.readOnly;
    this.maxSize = opts.maxSize ?? 1 << 20;
    this.facts = opts.facts ?? [];
    this.data = Uint8Array.from(initial);
    this.length = initial.length;
  }

  get size(): number {
    return this.length;
  }

  /** The current content. */
  get bytes(): Uint8Array {
    return this.data.subarray(0, this.length);
  }

  describe(): FileFacts {
    return this.facts;
  }

  async read(dst: Uint8Array, offset: number): Promise<void> {
    checkRange(this, offset, dst.length, this.name);
    dst.set(this.data.subarray(offset, offset + dst.length));
  }

  async write(src: Uint8Array, offset: number): Promise<void> {
    if (this.readOnly) throw new ReadOnlyError(`${this.name} is read-only`);
    if (!Number.isSafeInteger(offset) || offset < 0) throw new OutOfRangeError(`${this.name}: write at ${offset}`);
    const end = offset + src.length;
    if (end > this.length) this.resize(end);
    this.data.set(src, offset);
  }

  async truncate(size: number): Promise<void> {
    if (this.readOnly) throw new ReadOnlyError(`${this.name} is read-only`);
    if (!Number.isSafeInteger(size) || size < 0) throw new OutOfRangeError(`${this.name}: truncate to ${size}`);
    this.resize(size);
  }

  async flush(): Promise<void> {}

  private resize(size: number): void {
    if (size > this.maxSize) throw new NoSpaceError(`${this.name}: would grow past ${this.maxSize} bytes`);
    if (size > this.data.length) {
      const next = new Uint8Array(Math.min(this.maxSize, Math.max(size, this.data.length * 2)));
      next.set(this.data.subarray(0, this.length));
      this.data = next;
    } else if (size < this.length) {
      // Bytes past the new end read as zeros if the file grows again (POSIX truncate semantics).
      this.data.fill(0, size, this.length);
    }
    this.length = size;
  }
}

/** A read-only UTF-8 text file, e.g. NAME.info listing what each view file is. */
export function textFile(name: string, text: string, facts: FileFacts = []): MemoryFile {
  return new MemoryFile(name, new TextEncoder().encode(text), { readOnly: true, facts });
}

/**
 * The text of a NAME.info file: a heading, then every view file with its size and facts. The
 * FUSE frontend can add it with textFile(`${baseName}.info`, infoText(...)).
 */
export function infoText(title: string, files: readonly ViewFile[]): string {
  const lines = [title, ''];
  for (const f of files) {
    lines.push(`${f.name}: ${f.size} bytes${f.readOnly ? ', read-only' : ''}`);
    for (const [k, v] of f.describe?.() ?? []) lines.push(`  ${k}: ${v}`);
  }
  return lines.join('\n') + '\n';
}

/**
 * A read-only text file rendered anew on every read (counters of a running mount). Its size is a
 * fixed upper bound; reads past the current text come back short.
 */
export class LiveTextFile implements ViewFile {
  readonly readOnly = true;
  readonly volatile = true;
  readonly size = 64 * 1024;
  constructor(
    readonly name: string,
    private readonly render: () => string,
  ) {}
  private bytes(): Uint8Array {
    return new TextEncoder().encode(this.render()).subarray(0, this.size);
  }
  async readAt(dst: Uint8Array, offset: number): Promise<number> {
    const b = this.bytes();
    const n = Math.max(0, Math.min(dst.length, b.length - offset));
    if (n > 0) dst.set(b.subarray(offset, offset + n));
    return n;
  }
  async read(dst: Uint8Array, offset: number): Promise<void> {
    const n = await this.readAt(dst, offset);
    dst.fill(0, n);
  }
  async write(): Promise<void> {
    throw new ReadOnlyError(`${this.name} is read-only`);
  }
  async flush(): Promise<void> {}
}
