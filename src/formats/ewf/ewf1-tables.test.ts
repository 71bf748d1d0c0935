// The EWF1 table rules that no small ewfacquire image exercises: the EnCase 6.7.1 offsets that
// pass 2 GiB (full 32-bit offsets, chunks taken as uncompressed from the crossing on) and the
// size of a table's last chunk. A sparse in-memory source stands in for a >2 GiB segment.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { adler32 } from './adler32.js';
import { ChunkKind, ChunkStore } from './chunk-store.js';
import { loadTableV1, type TableV1 } from './ewf1-tables.js';
import type { SectionV1 } from './ewf1-sections.js';
import type { ByteSource } from '../../sources/source.js';
import { patternBytes } from '../../../test/harness/tools.js';

class SparseSource implements ByteSource {
  readonly writable = false;
  constructor(
    readonly name: string,
    readonly size: number,
    private readonly regions: Array<{ offset: number; bytes: Uint8Array }>,
  ) {}
  async read(dst: Uint8Array, offset: number): Promise<number> {
    const n = Math.max(0, Math.min(dst.length, this.size - offset));
    dst.fill(0, 0, n);
    for (const r of this.regions) {
      const from = Math.max(offset, r.offset);
      const to = Math.min(offset + n, r.offset + r.bytes.length);
      if (from < to) dst.set(r.bytes.subarray(from - r.offset, to - r.offset), from - offset);
    }
    return n;
  }
  async write(): Promise<void> {}
  async flush(): Promise<void> {}
  async truncate(): Promise<void> {}
  identity(): string {
    return this.name;
  }
  async close(): Promise<void> {}
}

test('ewf tables: EnCase 6.7.1 offsets past 2 GiB switch to full 32-bit offsets, uncompressed', async () => {
  const stored = [0x80000000 | 0x7fff0000, 0x7fff4000, 0x7fffc004, 0x80004008, 0x8000c00c];
  const T = 0x8000c00c + 0x8004; // the table follows the last chunk
  const entries = new Uint8Array(stored.length * 4);
  stored.forEach((v, k) => new DataView(entries.buffer).setUint32(k * 4, v >>> 0, true));
  const footer = new Uint8Array(4);
  new DataView(footer.buffer).setUint32(0, adler32(entries), true);
  // Chunk 3 lives beyond 2 GiB: stored data plus its Adler-32.
  const chunk3 = patternBytes(32768, 3);
  const c3 = new Uint8Array(32772);
  c3.set(chunk3);
  new DataView(c3.buffer).setUint32(32768, adler32(chunk3), true);
  const table: SectionV1 = { type: 'table', offset: T, end: T + 76 + 48, dataOffset: T + 76, dataSize: 48 };
  const sectors: SectionV1 = { type: 'sectors', offset: 13, end: T, dataOffset: 89, dataSize: T - 89 };
  const src = new SparseSource('big.E01', T + 76 + 48 + 76, [
    { offset: T + 76 + 24, bytes: entries },
    { offset: T + 76 + 24 + entries.length, bytes: footer },
    { offset: 0x80004008, bytes: c3 },
  ]);
  const t: TableV1 = { seg: 0, table, sectors, header: { count: 5, base: 0, checksumOk: true }, first: 0, count: 5 };
  const loaded = await loadTableV1(src, t, 32768, 0);
  assert.deepEqual([...loaded.offsets], [0x7fff0000, 0x7fff4000, 0x7fffc004, 0x80004008, 0x8000c00c]);
  assert.deepEqual([...loaded.sizes], [0x4000, 0x8004, 0x8004, 0x8004, 0x8004]);
  assert.deepEqual([...loaded.kinds], [ChunkKind.Zlib, ChunkKind.RawChecksum, ChunkKind.RawChecksum, ChunkKind.RawChecksum, ChunkKind.RawChecksum]);
  // And the chunk past 2 GiB reads back through the store.
  const store = new ChunkStore('ewf', [{ name: src.name, source: src }], [t], () => loadTableV1(src, t, 32768, 0), 32768, 5 * 32768);
  const got = new Uint8Array(32768);
  await store.read(got, 3 * 32768);
  assert.deepEqual(got, chunk3);
});

test('ewf tables: offsets that go backwards, chunks past the file end and oversized chunks are refused', async () => {
  const mk = (stored: number[], T = 200_000, fileSize = 300_000) => {
    const entries = new Uint8Array(stored.length * 4);
    stored.forEach((v, k) => new DataView(entries.buffer).setUint32(k * 4, v >>> 0, true));
    const table: SectionV1 = { type: 'table', offset: T, end: T + 76 + 24 + entries.length + 4, dataOffset: T + 76, dataSize: 24 + entries.length + 4 };
    const sectors: SectionV1 = { type: 'sectors', offset: 13, end: T, dataOffset: 89, dataSize: T - 89 };
    const footer = new Uint8Array(4);
    new DataView(footer.buffer).setUint32(0, adler32(entries), true);
    const src = new SparseSource('t.E01', fileSize, [
      { offset: T + 76 + 24, bytes: entries },
      { offset: T + 76 + 24 + entries.length, bytes: footer },
    ]);
    const t: TableV1 = { seg: 0, table, sectors, header: { count: stored.length, base: 0, checksumOk: true }, first: 0, count: stored.length };
    return loadTableV1(src, t, 32768, 0);
  };
  await assert.rejects(mk([1000, 500, 900]), /offsets go backwards/);
  await assert.rejects(mk([89, 89 + 70_000, 199_000]), /exceeds the chunk size plus checksum/);
  await assert.rejects(mk([0x80000000 | 89, 0x80000000 | (89 + 40_000), 0x80000000 | (89 + 50_000)]), /exceeds the compressed bound/);
  await assert.rejects(mk([89, 89, 1000]), /stored size is 0/);
  // The last chunk of the table ends where the sectors section ends; a chunk past the file end is refused.
  const ok = await mk([89, 89 + 32772, 89 + 2 * 32772], 89 + 3 * 32772);
  assert.deepEqual([...ok.sizes], [32772, 32772, 32772]);
  await assert.rejects(mk([60_000, 60_100, 60_200], 1000, 50_000), /chunk 0 \(100 bytes at 60000\) lies past the end of the segment file/);
});
