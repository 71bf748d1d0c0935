// EWF1 chunk tables. A "table" section holds a 24-byte header (u32 entry count, u64 base offset
// at 8 from EnCase 6 on, Adler-32 at 20), u32 entries (MSB = compressed, low 31 bits = offset
// from the base, or from the file start before EnCase 6) and, from EnCase 2 on, an Adler-32 of
// the entries. "table2" mirrors it and is used when the table fails its checksums.
// A chunk's stored size is the distance to the next entry; the last entry of a table ends where
// its data area ends: the end of the preceding "sectors" section, the end of the table section
// itself (SMART / EWF / EnCase 1 keep chunks inside the table) or the table's start.
// EnCase 6.7.1 overflow: once a sectors section passes 2 GiB the entries use all 32 bits; from
// the chunk that crosses INT32_MAX on, offsets are full 32-bit values and chunks are taken as
// uncompressed (libewf libewf_chunk_group.c, fill_v1).

import { adler32 } from './adler32.js';
import { ChunkKind, type LoadedTable, type TableRef } from './chunk-store.js';
import { F, parseTableHeader, type SectionV1, type TableHeader } from './ewf1-sections.js';
import { AnydiskError, ChecksumError, CorruptImageError } from '../../core/errors.js';
import { readBytes, type ByteSource } from '../../sources/source.js';

/** Largest entry count accepted in one table (EWF-X has no fixed limit; EnCase writes 65534). */
const MAX_ENTRIES = 1 << 24;

export interface TableV1 extends TableRef {
  seg: number;
  table: SectionV1;
  mirror?: SectionV1;
  /** The sectors section that precedes the table in its segment, if any. */
  sectors?: SectionV1;
  header: TableHeader;
}

/** Largest zlib stream a chunk of n bytes can need (deflate stored blocks plus headers, with slack). */
export function zlibBound(n: number): number {
  return n + (n >>> 12) + (n >>> 14) + (n >>> 25) + 64;
}

/** Read and choose a table's header (table2's when table's fails its checksum). */
export async function readTableHeader(src: ByteSource, table: SectionV1, mirror: SectionV1 | undefined): Promise<TableHeader> {
  const tryOne = async (s: SectionV1): Promise<TableHeader> => {
    if (s.dataSize < 24) throw new CorruptImageError(F, `'${s.type}' section of ${s.dataSize} bytes has no room for a table header`, { file: src.name, offset: s.offset });
    const h = parseTableHeader(await readBytes(src, s.dataOffset, 24, F, 'table header'), src.name, s.dataOffset);
    if (!h.checksumOk) throw new ChecksumError(`${F}: '${s.type}' header checksum mismatch`, { file: src.name, offset: s.dataOffset });
    if (h.base < 0 || h.base > src.size) throw new CorruptImageError(F, `'${s.type}' base offset ${h.base} lies outside the file`, { file: src.name, offset: s.dataOffset + 8 });
    if (h.count > MAX_ENTRIES || 24 + h.count * 4 > s.dataSize) {
      throw new CorruptImageError(F, `'${s.type}' claims ${h.count} entries but the section has room for ${Math.floor((s.dataSize - 24) / 4)}`, { file: src.name, offset: s.dataOffset });
    }
    return h;
  };
  try {
    return await tryOne(table);
  } catch (err) {
    if (!mirror) throw err;
    try {
      return await tryOne(mirror);
    } catch {
      throw err;
    }
  }
}

/** Load a table's entries into typed arrays, falling back to table2. */
export async function loadTableV1(src: ByteSource, t: TableV1, chunkSize: number, firstChunkOfMedia: number): Promise<LoadedTable> {
  try {
    return await loadFrom(src, t, t.table, chunkSize, firstChunkOfMedia);
  } catch (err) {
    if (!t.mirror || !(err instanceof AnydiskError)) throw err;
    try {
      return await loadFrom(src, t, t.mirror, chunkSize, firstChunkOfMedia);
    } catch (err2) {
      throw new CorruptImageError(F, `table and table2 both unusable: ${(err as Error).message}; table2: ${(err2 as Error).message}`, {
        file: src.name,
        offset: t.table.offset,
        cause: err,
      });
    }
  }
}

async function loadFrom(src: ByteSource, t: TableV1, s: SectionV1, chunkSize: number, firstChunk: number): Promise<LoadedTable> {
  const header = s === t.table ? t.header : await readTableHeader(src, s, undefined);
  if (header.count !== t.count) {
    throw new CorruptImageError(F, `'${s.type}' has ${header.count} entries, its mirror ${t.count}`, { file: src.name, offset: s.dataOffset });
  }
  const n = t.count;
  const entriesAt = s.dataOffset + 24;
  const hasRoomForFooter = 24 + n * 4 + 4 <= s.dataSize;
  const raw = await readBytes(src, entriesAt, n * 4 + (hasRoomForFooter ? 4 : 0), F, 'table entries');
  const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const base = header.base;
  // SMART / EWF put the first chunk right after the entries: there is no footer to check.
  const firstAbs = base + (dv.getUint32(0, true) & 0x7fffffff);
  if (hasRoomForFooter && firstAbs !== entriesAt + n * 4) {
    const stored = dv.getUint32(n * 4, true);
    const calc = adler32(raw, 0, n * 4);
    if (stored !== calc) {
      throw new ChecksumError(`${F}: '${s.type}' entry array checksum mismatch (stored 0x${stored.toString(16)}, computed 0x${calc.toString(16)})`, {
        file: src.name,
        offset: entriesAt,
      });
    }
  }
  const offsets = new Float64Array(n);
  const sizes = new Uint32Array(n);
  const kinds = new Uint8Array(n);
  let overflow = false;
  const rawMax = chunkSize + 4;
  const zMax = zlibBound(chunkSize);
  for (let k = 0; k < n; k++) {
    const stored = dv.getUint32(k * 4, true);
    const compressed = !overflow && stored >>> 31 === 1;
    const cur = overflow ? stored : stored & 0x7fffffff;
    let size: number;
    if (k < n - 1) {
      const nextStored = dv.getUint32(k * 4 + 4, true);
      const next = overflow ? nextStored : nextStored & 0x7fffffff;
      if (next < cur) {
        if (nextStored < cur) {
          throw new CorruptImageError(F, `chunk ${firstChunk + k}: table offsets go backwards (${cur} then ${next})`, { file: src.name, offset: entriesAt + k * 4 });
        }
        size = nextStored - cur;
      } else {
        size = next - cur;
      }
    } else {
      size = lastChunkEnd(base + cur, t, src.name) - (base + cur);
    }
    const abs = base + cur;
    if (size <= 0) throw new CorruptImageError(F, `chunk ${firstChunk + k}: stored size is ${size}`, { file: src.name, offset: entriesAt + k * 4 });
    if (abs + size > src.size) {
      throw new CorruptImageError(F, `chunk ${firstChunk + k} (${size} bytes at ${abs}) lies past the end of the segment file (size ${src.size})`, {
        file: src.name,
        offset: entriesAt + k * 4,
      });
    }
    if (size > (compressed ? zMax : rawMax)) {
      throw new CorruptImageError(F, `chunk ${firstChunk + k}: stored size ${size} exceeds the ${compressed ? 'compressed bound' : 'chunk size plus checksum'} ${compressed ? zMax : rawMax} for ${chunkSize}-byte chunks`, {
        file: src.name,
        offset: entriesAt + k * 4,
      });
    }
    offsets[k] = abs;
    sizes[k] = size;
    kinds[k] = compressed ? ChunkKind.Zlib : ChunkKind.RawChecksum;
    if (!overflow && cur + size > 0x7fffffff) overflow = true;
  }
  return { seg: t.seg, offsets, sizes, kinds };
}

function lastChunkEnd(abs: number, t: TableV1, file: string): number {
  const s = t.sectors;
  if (s && abs >= s.dataOffset && abs < s.end) return s.end;
  if (abs >= t.table.dataOffset && abs < t.table.end) return t.table.end;
  if (abs < t.table.offset) return t.table.offset;
  throw new CorruptImageError(F, `last chunk of table at ${abs} lies after its table`, { file, offset: t.table.offset });
}
