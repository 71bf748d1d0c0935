// VMDK sparse extent headers, little-endian throughout (sizes and offsets in 512-byte sectors).
//
// KDMV "hosted sparse extent" header (512 bytes; vmware/open-vmdk vmdk/vmware_vmdk.h @ 03e99ce5):
//   0 magic 'KDMV' | 4 version (1..3) | 8 flags | 12 capacity u64 | 20 grainSize u64
//   28 descriptorOffset u64 | 36 descriptorSize u64 | 44 numGTEsPerGT u32 | 48 rgdOffset u64
//   56 gdOffset u64 (GD_AT_END = ~0: the real header is a footer at end-1024) | 64 overHead u64
//   72 uncleanShutdown u8 | 73 '\n' ' ' '\r' '\n' newline test | 77 compressAlgorithm u16 (1 = deflate)
//   flags: bit 0 newline test valid, bit 1 use redundant GD, bit 2 zeroed-grain GTEs (GTE 1),
//   bit 16 compressed grains, bit 17 markers; other bits in 0xFFFF0000 are incompatible.
// COWD "ESX sparse extent" header (qemu block/vmdk.c vmdk_open_vmfs_sparse, libvmdk doc):
//   0 'COWD' | 4 version | 8 flags | 12 capacity u32 | 16 grainSize u32 | 20 gdOffset u32
//   24 numGDEntries u32 | 28 nextFreeSector u32; grain tables hold 4096 u32 entries.
// SESparse constant header (qemu block/vmdk.c, "format not officially documented"): u64 fields
//   magic 0xcafebabe, version 0x200000001, capacity, grain_size (8), grain_table_size (64 sectors),
//   flags (0), 4 reserved, then {offset,size} sector pairs: volatile header, journal header,
//   journal, grain directory, grain tables, free bitmap, backmap, grains.

import { FieldReader } from '../../core/bytes.js';
import { CorruptImageError, UnsupportedFeatureError } from '../../core/errors.js';

export const SECTOR = 512;
export const FORMAT = 'vmdk';

export const KDMV_MAGIC = 0x564d444b; // "KDMV" read as little-endian u32
export const COWD_MAGIC = 0x44574f43; // "COWD" read as little-endian u32
export const SESPARSE_MAGIC = 0xcafebaben;
export const SESPARSE_VOLATILE_MAGIC = 0xcafecafen;
export const SESPARSE_VERSION = 0x0000000200000001n;
export const GD_AT_END = 0xffffffffffffffffn;

export const FLAG_NL_DETECT = 1 << 0;
export const FLAG_RGD = 1 << 1;
export const FLAG_ZERO_GRAIN = 1 << 2;
export const FLAG_COMPRESSED = 1 << 16;
export const FLAG_MARKERS = 1 << 17;
const KNOWN_INCOMPAT = FLAG_COMPRESSED | FLAG_MARKERS;

export const MARKER_EOS = 0;
export const MARKER_GT = 1;
export const MARKER_GD = 2;
export const MARKER_FOOTER = 3;

/** Largest grain accepted (sectors): 64 MiB; compressed grains are limited further when read. */
export const MAX_GRAIN_SECTORS = 131072;
/** qemu refuses larger grain tables; VMware always writes 512. */
export const MAX_GTES_PER_GT = 512;

export interface SparseHeader {
  version: number;
  flags: number;
  capacity: number; // sectors
  grainSize: number; // sectors
  descriptorOffset: number; // sectors
  descriptorSize: number; // sectors
  numGTEsPerGT: number;
  rgdOffset: number; // sectors
  /** Sectors, or -1 for GD_AT_END. */
  gdOffset: number;
  overHead: number;
  uncleanShutdown: boolean;
  compressAlgorithm: number;
}

function sectorsField(r: FieldReader, off: number, what: string): number {
  const v = r.big64le(off, what);
  // A sector count must stay addressable in bytes as a safe integer.
  if (v > BigInt(Math.floor(Number.MAX_SAFE_INTEGER / SECTOR))) {
    throw new CorruptImageError(FORMAT, `${what} is too large (0x${v.toString(16)} sectors)`, { file: r.file, offset: r.base + off });
  }
  return Number(v);
}

/** Parse a KDMV header (or footer) from a 512-byte buffer. base is its file offset, for messages. */
export function parseSparseHeader(buf: Uint8Array, file: string, base = 0): SparseHeader {
  const r = new FieldReader(buf, FORMAT, file, base);
  if (r.u32le(0, 'magic') !== KDMV_MAGIC) {
    throw new CorruptImageError(FORMAT, 'sparse extent header magic KDMV not found', { file, offset: base });
  }
  const version = r.u32le(4, 'version');
  if (version < 1 || version > 3) throw new UnsupportedFeatureError(FORMAT, `sparse extent version ${version}`, { file, offset: base + 4 });
  const flags = r.u32le(8, 'flags');
  const incompat = (flags & 0xffff0000 & ~KNOWN_INCOMPAT) >>> 0;
  if (incompat) throw new UnsupportedFeatureError(FORMAT, `incompatible flags 0x${incompat.toString(16)}`, { file, offset: base + 8 });
  const gdRaw = r.big64le(56, 'gdOffset');
  const h: SparseHeader = {
    version,
    flags,
    capacity: sectorsField(r, 12, 'capacity'),
    grainSize: sectorsField(r, 20, 'grainSize'),
    descriptorOffset: sectorsField(r, 28, 'descriptorOffset'),
    descriptorSize: sectorsField(r, 36, 'descriptorSize'),
    numGTEsPerGT: r.u32le(44, 'numGTEsPerGT'),
    rgdOffset: sectorsField(r, 48, 'rgdOffset'),
    gdOffset: gdRaw === GD_AT_END ? -1 : sectorsField(r, 56, 'gdOffset'),
    overHead: sectorsField(r, 64, 'overHead'),
    uncleanShutdown: r.u8(72) !== 0,
    compressAlgorithm: r.u16le(77, 'compressAlgorithm'),
  };
  if (flags & FLAG_NL_DETECT) {
    const nl = r.bytes(73, 4);
    if (nl[0] !== 0x0a || nl[1] !== 0x20 || nl[2] !== 0x0d || nl[3] !== 0x0a) {
      throw new CorruptImageError(FORMAT, 'newline test bytes are altered (file transferred in text mode?)', { file, offset: base + 73 });
    }
  }
  if (h.compressAlgorithm > 1) {
    throw new UnsupportedFeatureError(FORMAT, `compression algorithm ${h.compressAlgorithm}`, { file, offset: base + 77 });
  }
  return h;
}

/** Checks that only matter when the header describes grains (capacity > 0). */
export function validateSparseGeometry(h: SparseHeader, file: string, base = 0): void {
  if (h.grainSize < 1 || h.grainSize > MAX_GRAIN_SECTORS) {
    throw new CorruptImageError(FORMAT, `grainSize ${h.grainSize} sectors is out of range (1..${MAX_GRAIN_SECTORS})`, { file, offset: base + 20 });
  }
  if (h.numGTEsPerGT < 1 || h.numGTEsPerGT > MAX_GTES_PER_GT) {
    throw new CorruptImageError(FORMAT, `numGTEsPerGT ${h.numGTEsPerGT} is out of range (1..${MAX_GTES_PER_GT})`, { file, offset: base + 44 });
  }
}

export interface CowdHeader {
  version: number;
  flags: number;
  capacity: number;
  grainSize: number;
  gdOffset: number;
  numGDEntries: number;
  nextFreeSector: number;
}

export const COWD_GT_ENTRIES = 4096;
export const COWD_HEADER_SIZE = 2048;

export function parseCowdHeader(buf: Uint8Array, file: string): CowdHeader {
  const r = new FieldReader(buf, FORMAT, file);
  if (r.u32le(0, 'magic') !== COWD_MAGIC) throw new CorruptImageError(FORMAT, 'COWD magic not found', { file, offset: 0 });
  const h: CowdHeader = {
    version: r.u32le(4, 'version'),
    flags: r.u32le(8, 'flags'),
    capacity: r.u32le(12, 'capacity'),
    grainSize: r.u32le(16, 'grainSize'),
    gdOffset: r.u32le(20, 'gdOffset'),
    numGDEntries: r.u32le(24, 'numGDEntries'),
    nextFreeSector: r.u32le(28, 'nextFreeSector'),
  };
  if (h.grainSize < 1 || h.grainSize > MAX_GRAIN_SECTORS) {
    throw new CorruptImageError(FORMAT, `COWD grainSize ${h.grainSize} sectors is out of range`, { file, offset: 16 });
  }
  return h;
}

export interface SeSparseHeader {
  capacity: number;
  grainSize: number;
  grainTableSize: number; // sectors
  volatileHeaderOffset: number;
  grainDirOffset: number;
  grainDirSize: number;
  grainTablesOffset: number;
  grainTablesSize: number;
  grainsOffset: number;
  grainsSize: number;
}

export function isSeSparseHead(buf: Uint8Array): boolean {
  if (buf.length < 16) return false;
  const v = new DataView(buf.buffer, buf.byteOffset, 16);
  return v.getBigUint64(0, true) === SESPARSE_MAGIC && v.getBigUint64(8, true) === SESPARSE_VERSION;
}

export function parseSeSparseHeader(buf: Uint8Array, file: string): SeSparseHeader {
  const r = new FieldReader(buf, FORMAT, file);
  if (r.big64le(0, 'magic') !== SESPARSE_MAGIC) throw new CorruptImageError(FORMAT, 'SESparse magic not found', { file, offset: 0 });
  const version = r.big64le(8, 'version');
  if (version !== SESPARSE_VERSION) throw new UnsupportedFeatureError(FORMAT, `SESparse version 0x${version.toString(16)}`, { file, offset: 8 });
  const h: SeSparseHeader = {
    capacity: sectorsField(r, 16, 'capacity'),
    grainSize: sectorsField(r, 24, 'grain_size'),
    grainTableSize: sectorsField(r, 32, 'grain_table_size'),
    volatileHeaderOffset: sectorsField(r, 80, 'volatile_header_offset'),
    grainDirOffset: sectorsField(r, 128, 'grain_dir_offset'),
    grainDirSize: sectorsField(r, 136, 'grain_dir_size'),
    grainTablesOffset: sectorsField(r, 144, 'grain_tables_offset'),
    grainTablesSize: sectorsField(r, 152, 'grain_tables_size'),
    grainsOffset: sectorsField(r, 192, 'grains_offset'),
    grainsSize: sectorsField(r, 200, 'grains_size'),
  };
  if (h.grainSize !== 8) throw new UnsupportedFeatureError(FORMAT, `SESparse grain size ${h.grainSize} (only 8 sectors)`, { file, offset: 24 });
  if (h.grainTableSize !== 64) throw new UnsupportedFeatureError(FORMAT, `SESparse grain table size ${h.grainTableSize} (only 64 sectors)`, { file, offset: 32 });
  const flags = r.big64le(40, 'flags');
  if (flags !== 0n) throw new UnsupportedFeatureError(FORMAT, `SESparse flags 0x${flags.toString(16)}`, { file, offset: 40 });
  return h;
}

/** Volatile header: magic 0xcafecafe, free_gt_number, next_txn_seq_number, replay_journal. */
export function checkSeSparseVolatile(buf: Uint8Array, file: string, base: number): void {
  const r = new FieldReader(buf, FORMAT, file, base);
  if (r.big64le(0, 'volatile magic') !== SESPARSE_VOLATILE_MAGIC) {
    throw new CorruptImageError(FORMAT, 'SESparse volatile header magic 0xcafecafe not found', { file, offset: base });
  }
  if (r.big64le(24, 'replay_journal') !== 0n) {
    throw new UnsupportedFeatureError(FORMAT, 'SESparse image is dirty (journal replay needed)', { file, offset: base + 24 });
  }
}
