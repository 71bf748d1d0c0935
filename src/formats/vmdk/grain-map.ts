// The two-level grain map of a sparse extent: a grain directory (GD, loaded at open) of grain
// table (GT) offsets, and grain tables (loaded on demand, kept in a bounded LRU) of grain offsets.
// KDMV and COWD use u32 sector numbers (0 = unallocated; with the zeroed-grain flag, 1 = zero);
// SESparse uses u64 entries tagged by their top nibble (qemu block/vmdk.c get_cluster_offset).
// When the primary GD is damaged (an entry past the end of the file) and a redundant GD exists,
// the redundant one is used; a primary GT with entries past the end falls back to its redundant copy.

import { CorruptImageError } from '../../core/errors.js';
import { readBytes, type ByteSource } from '../../sources/source.js';
import { FORMAT, SECTOR } from './header.js';
import { LruCache } from './lru.js';

/** Grain states; any value >= 0 is the grain's byte offset in the extent file. */
export const GRAIN_UNALLOCATED = -1;
export const GRAIN_ZERO = -2;
export const GRAIN_BAD = -3;

export type GrainMapKind = 'kdmv' | 'cowd' | 'sesparse';

export interface GrainMapParams {
  source: ByteSource;
  kind: GrainMapKind;
  totalGrains: number;
  gtEntries: number;
  grainSectors: number;
  /** KDMV v2+ zeroed-grain flag: GTE (and GD entry) 1 means a zero grain (table). */
  zeroGrain: boolean;
  /** SESparse: where grain tables and grains start (sectors). */
  seTablesOffset?: number;
  seGrainsOffset?: number;
}

interface Directory {
  entries: Float64Array;
  problem?: { message: string; offset: number };
}

const CACHE_BYTES = 8 << 20;

export class GrainMap {
  readonly gdEntries: number;
  private readonly entrySize: number;
  private readonly primary: Directory;
  private readonly backup?: Directory;
  private readonly cache: LruCache<number, Float64Array>;
  /** Which directory is in use, for info. */
  readonly usingRedundant: boolean;

  private constructor(
    private readonly p: GrainMapParams,
    primary: Directory,
    backup: Directory | undefined,
    usingRedundant: boolean,
  ) {
    this.gdEntries = primary.entries.length;
    this.entrySize = p.kind === 'sesparse' ? 8 : 4;
    this.primary = primary;
    this.backup = backup;
    this.usingRedundant = usingRedundant;
    this.cache = new LruCache(Math.max(8, Math.floor(CACHE_BYTES / (p.gtEntries * 8))));
  }

  /**
   * Load the grain directory at gdOffset (bytes), with the redundant one at rgdOffset (bytes, 0 = none)
   * as a fallback. gdEntries has been computed from the header; it is bounded here by the file size.
   */
  static async open(p: GrainMapParams, gdOffset: number, gdEntries: number, rgdOffset: number): Promise<GrainMap> {
    const primary = await GrainMap.loadDirectory(p, gdOffset, gdEntries, 'grain directory');
    let backup: Directory | undefined;
    if (rgdOffset > 0) {
      backup = await GrainMap.loadDirectory(p, rgdOffset, gdEntries, 'redundant grain directory');
    }
    if (!primary.problem) return new GrainMap(p, primary, backup && !backup.problem ? backup : undefined, false);
    if (backup && !backup.problem) return new GrainMap(p, backup, undefined, true);
    const { message, offset } = primary.problem;
    const also = backup ? ` (the redundant grain directory is damaged too: ${backup.problem!.message})` : '';
    throw new CorruptImageError(FORMAT, `${message}${also}`, { file: p.source.name, offset });
  }

  private static tableEntries(p: GrainMapParams, index: number): number {
    return Math.min(p.gtEntries, p.totalGrains - index * p.gtEntries);
  }

  private static tableBytes(p: GrainMapParams, index: number): number {
    const size = p.kind === 'sesparse' ? 8 : 4;
    return GrainMap.tableEntries(p, index) * size;
  }

  private static async loadDirectory(p: GrainMapParams, offset: number, count: number, what: string): Promise<Directory> {
    const entrySize = p.kind === 'sesparse' ? 8 : 4;
    const bytes = count * entrySize;
    if (offset <= 0 || offset + bytes > p.source.size) {
      return { entries: new Float64Array(0), problem: { message: `${what} (${count} entries at 0x${offset.toString(16)}) lies past the end of the file (size ${p.source.size})`, offset } };
    }
    const raw = await readBytes(p.source, offset, bytes, FORMAT, what);
    const entries = new Float64Array(count);
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    for (let i = 0; i < count; i++) {
      let gt: number;
      if (p.kind === 'sesparse') {
        const v = view.getBigUint64(i * 8, true);
        if (v === 0n) {
          entries[i] = GRAIN_UNALLOCATED;
          continue;
        }
        if (v >> 32n !== 0x10000000n) {
          return { entries, problem: { message: `${what} entry ${i} (0x${v.toString(16)}) is not a valid SESparse grain table reference`, offset: offset + i * 8 } };
        }
        const n = Number(v & 0xffffffffn);
        gt = (p.seTablesOffset! + n * ((p.gtEntries * 8) / SECTOR)) * SECTOR;
      } else {
        const v = view.getUint32(i * 4, true);
        if (v === 0) {
          entries[i] = GRAIN_UNALLOCATED;
          continue;
        }
        if (v === 1 && p.zeroGrain) {
          entries[i] = GRAIN_ZERO;
          continue;
        }
        gt = v * SECTOR;
      }
      const tb = GrainMap.tableBytes(p, i);
      if (gt + tb > p.source.size) {
        return {
          entries,
          problem: { message: `${what} entry ${i}: grain table at 0x${gt.toString(16)} lies past the end of the file (size ${p.source.size})`, offset: offset + i * entrySize },
        };
      }
      entries[i] = gt;
    }
    return { entries };
  }

  private async readTable(gtOffset: number, index: number): Promise<{ table: Float64Array; bad: number }> {
    const p = this.p;
    const n = GrainMap.tableEntries(p, index);
    const raw = await readBytes(p.source, gtOffset, n * this.entrySize, FORMAT, `grain table ${index}`);
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    const table = new Float64Array(n);
    const size = p.source.size;
    let bad = 0;
    for (let i = 0; i < n; i++) {
      let off: number;
      if (p.kind === 'sesparse') {
        const v = view.getBigUint64(i * 8, true);
        const tag = Number(v >> 60n);
        if (tag === 0) {
          off = v === 0n ? GRAIN_UNALLOCATED : GRAIN_BAD;
        } else if (tag === 1 || tag === 2) {
          off = GRAIN_ZERO;
        } else if (tag === 3) {
          const g = Number(((v & 0x0fff000000000000n) >> 48n) | ((v & 0x0000ffffffffffffn) << 12n));
          off = (p.seGrainsOffset! + g * p.grainSectors) * SECTOR;
          if (!Number.isSafeInteger(off) || off >= size) off = GRAIN_BAD;
        } else {
          off = GRAIN_BAD;
        }
      } else {
        const v = view.getUint32(i * 4, true);
        if (v === 0) off = GRAIN_UNALLOCATED;
        else if (v === 1 && p.zeroGrain) off = GRAIN_ZERO;
        else {
          off = v * SECTOR;
          if (off >= size) off = GRAIN_BAD;
        }
      }
      if (off === GRAIN_BAD) bad++;
      table[i] = off;
    }
    return { table, bad };
  }

  private async table(index: number): Promise<Float64Array> {
    return this.cache.getOrLoad(index, async () => {
      const gt = this.primary.entries[index]!;
      const first = await this.readTable(gt, index);
      if (first.bad === 0 || !this.backup) return first.table;
      const alt = this.backup.entries[index]!;
      if (alt < 0) return first.table;
      const second = await this.readTable(alt, index);
      return second.bad === 0 ? second.table : first.table;
    });
  }

  /**
   * States of grains [first, first+count): byte offsets or GRAIN_* values, written into out.
   */
  async lookup(first: number, count: number, out: Float64Array): Promise<void> {
    const per = this.p.gtEntries;
    let g = first;
    const end = first + count;
    while (g < end) {
      const index = Math.floor(g / per);
      const inTable = g - index * per;
      const n = Math.min(end - g, per - inTable);
      const gd = index < this.gdEntries ? this.primary.entries[index]! : GRAIN_UNALLOCATED;
      if (gd < 0) {
        out.fill(gd, g - first, g - first + n);
      } else {
        const t = await this.table(index);
        for (let i = 0; i < n; i++) out[g - first + i] = t[inTable + i] ?? GRAIN_UNALLOCATED;
      }
      g += n;
    }
  }
}
