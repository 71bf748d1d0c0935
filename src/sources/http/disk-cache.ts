// Optional persistent block cache for remote objects, shared by every process that uses the same
// directory. Per object (keyed by a hash of final URL + ETag/Last-Modified + size + block size):
//   KEY.data  sparse file, block i at i * blockSize (written with one pwrite of the whole block)
//   KEY.idx   8 bytes per block: crc32 of the block (u32 le) + magic 'ADK1' (u32 le), written
//             after the block data; an entry counts only when its magic is there AND the block
//             read back has that crc32, so a torn or half-written block is never served (it is
//             fetched again and rewritten). Writers of the same block write identical bytes.
//   KEY.json  what the object is (for people looking at the directory).
// The directory is bounded: when it grows past maxBytes, whole objects are removed, least
// recently used (by mtime) first.

import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, open, readdir, stat, unlink, utimes, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import type { RemoteObject } from './fetcher.js';

const MAGIC = 0x314b4441; // 'ADK1' little-endian
const ENTRY = 8;

export class DiskCache {
  private written = 0;
  private disabled = false;
  private enforcing: Promise<void> | undefined;
  private readonly pending = new Set<Promise<void>>();
  errors = 0;

  private constructor(
    readonly dir: string,
    readonly key: string,
    private readonly data: FileHandle,
    private readonly index: FileHandle,
    private readonly blockSize: number,
    private readonly objectSize: number,
    private readonly maxBytes: number,
  ) {}

  static keyOf(obj: RemoteObject, blockSize: number): string {
    return createHash('sha256')
      .update(`${obj.url.toString()}\n${obj.etag ?? ''}\n${obj.lastModified ?? ''}\n${obj.size}\n${blockSize}`)
      .digest('hex')
      .slice(0, 40);
  }

  /** undefined when the object has no validator (a cache could not tell versions apart). */
  static async open(dir: string, obj: RemoteObject, blockSize: number, maxBytes: number): Promise<DiskCache | undefined> {
    if (!obj.etag && !obj.lastModified) return undefined;
    await mkdir(dir, { recursive: true });
    const key = DiskCache.keyOf(obj, blockSize);
    const flags = constants.O_RDWR | constants.O_CREAT;
    const data = await open(join(dir, `${key}.data`), flags, 0o644);
    let index: FileHandle;
    try {
      index = await open(join(dir, `${key}.idx`), flags, 0o644);
    } catch (err) {
      await data.close();
      throw err;
    }
    const now = new Date();
    await utimes(join(dir, `${key}.data`), now, now).catch(() => undefined);
    const meta = { url: obj.url.toString(), etag: obj.etag, lastModified: obj.lastModified, size: obj.size, blockSize };
    await writeFile(join(dir, `${key}.json`), JSON.stringify(meta) + '\n').catch(() => undefined);
    const cache = new DiskCache(dir, key, data, index, blockSize, obj.size, maxBytes);
    await cache.enforceBound();
    return cache;
  }

  private blockLength(i: number): number {
    return Math.min(this.blockSize, this.objectSize - i * this.blockSize);
  }

  /** Blocks of [first, end) that are stored and intact. */
  async lookup(first: number, end: number): Promise<Map<number, Uint8Array>> {
    const found = new Map<number, Uint8Array>();
    if (this.disabled || end <= first) return found;
    const entries = Buffer.alloc((end - first) * ENTRY);
    let n: number;
    try {
      ({ bytesRead: n } = await this.index.read(entries, 0, entries.length, first * ENTRY));
    } catch {
      this.errors++;
      return found;
    }
    const present = (i: number) => (i - first + 1) * ENTRY <= n && entries.readUInt32LE((i - first) * ENTRY + 4) === MAGIC;
    let i = first;
    while (i < end) {
      if (!present(i)) {
        i++;
        continue;
      }
      let j = i + 1;
      while (j < end && present(j)) j++;
      // One read for the run [i, j).
      const startByte = i * this.blockSize;
      const len = Math.min(j * this.blockSize, this.objectSize) - startByte;
      const buf = Buffer.allocUnsafe(len);
      let got = 0;
      try {
        ({ bytesRead: got } = await this.data.read(buf, 0, len, startByte));
      } catch {
        this.errors++;
      }
      for (let b = i; b < j; b++) {
        const off = (b - i) * this.blockSize;
        const bl = this.blockLength(b);
        if (off + bl > got) break;
        const block = buf.subarray(off, off + bl);
        if (crc32(block) >>> 0 === entries.readUInt32LE((b - first) * ENTRY)) found.set(b, block);
      }
      i = j;
    }
    return found;
  }

  /**
   * Store a fetched block in the background (failures only disable the cache); `done` is called
   * when the block's memory is no longer used.
   */
  store(i: number, block: Uint8Array, done: () => void = () => undefined): void {
    if (this.disabled || block.length !== this.blockLength(i)) {
      done();
      return;
    }
    const p = this.write(i, block)
      .finally(done)
      .finally(() => this.pending.delete(p));
    this.pending.add(p);
  }

  private async write(i: number, block: Uint8Array): Promise<void> {
    try {
      const entry = Buffer.alloc(ENTRY);
      entry.writeUInt32LE(crc32(block) >>> 0, 0);
      entry.writeUInt32LE(MAGIC, 4);
      await this.data.write(block, 0, block.length, i * this.blockSize);
      await this.index.write(entry, 0, ENTRY, i * ENTRY);
      this.written += block.length;
      if (this.written >= Math.max(this.maxBytes / 8, 16 * 1024 * 1024)) {
        this.written = 0;
        void this.enforceBound();
      }
    } catch {
      this.errors++;
      this.disabled = true;
    }
  }

  /** Remove least recently used objects until the directory is under its bound. */
  enforceBound(): Promise<void> {
    if (this.enforcing) return this.enforcing;
    this.enforcing = this.evict()
      .catch(() => {
        this.errors++;
      })
      .finally(() => {
        this.enforcing = undefined;
      });
    return this.enforcing;
  }

  private async evict(): Promise<void> {
    const objects: { key: string; bytes: number; mtime: number }[] = [];
    let total = 0;
    for (const name of await readdir(this.dir)) {
      if (!name.endsWith('.data')) continue;
      const key = name.slice(0, -5);
      try {
        const st = await stat(join(this.dir, name));
        const bytes = st.blocks * 512;
        total += bytes;
        objects.push({ key, bytes, mtime: st.mtimeMs });
      } catch {
        // removed by another process meanwhile
      }
    }
    if (total <= this.maxBytes) return;
    objects.sort((a, b) => a.mtime - b.mtime);
    const target = this.maxBytes * 0.9;
    for (const o of objects) {
      if (total <= target) break;
      if (o.key === this.key) continue;
      for (const ext of ['.idx', '.data', '.json']) await unlink(join(this.dir, o.key + ext)).catch(() => undefined);
      total -= o.bytes;
    }
    // Our own object alone is over the bound: stop adding to it.
    if (total > this.maxBytes) this.disabled = true;
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.pending]);
    await this.enforcing;
    await this.data.close().catch(() => undefined);
    await this.index.close().catch(() => undefined);
  }
}
