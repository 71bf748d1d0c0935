// qcow2 header (cluster 0): a 72-byte v2 or >=104-byte v3 big-endian header, then header
// extensions (type, length, data padded to 8) up to an end marker, then the backing file name.
// Spec: qemu/qemu docs/interop/qcow2.rst @ 0a233da8 ("Header", "Header extensions").
//
//   0 magic 'QFI\xfb'   4 version   8 backing_file_offset  16 backing_file_size  20 cluster_bits
//  24 size  32 crypt_method  36 l1_size  40 l1_table_offset  48 refcount_table_offset
//  56 refcount_table_clusters  60 nb_snapshots  64 snapshots_offset
//  v3: 72 incompatible  80 compatible  88 autoclear  96 refcount_order  100 header_length
//      104 compression_type (only when header_length > 104)

import { CorruptImageError, UnsupportedFeatureError } from '../../core/errors.js';
import { FieldReader } from '../../core/bytes.js';

export const FORMAT = 'qcow2';
export const QCOW_MAGIC = 0x514649fb;

export const INCOMPAT_DIRTY = 1n;
export const INCOMPAT_CORRUPT = 2n;
export const INCOMPAT_DATA_FILE = 4n;
export const INCOMPAT_COMPRESSION = 8n;
export const INCOMPAT_EXTL2 = 16n;
export const INCOMPAT_KNOWN = 31n;
export const COMPAT_LAZY_REFCOUNTS = 1n;
export const AUTOCLEAR_BITMAPS = 1n;
export const AUTOCLEAR_DATA_FILE_RAW = 2n;
export const AUTOCLEAR_KNOWN = 3n;

export const EXT_END = 0;
export const EXT_BACKING_FORMAT = 0xe2792aca;
export const EXT_FEATURE_TABLE = 0x6803f857;
export const EXT_BITMAPS = 0x23852875;
export const EXT_CRYPTO = 0x0537be77;
export const EXT_DATA_FILE = 0x44415441;

/** qemu's implementation limits, used as sanity bounds. */
export const MAX_L1_BYTES = 32 * 1024 * 1024;
export const MAX_REFTABLE_BYTES = 8 * 1024 * 1024;
export const MAX_SNAPSHOTS = 65536;
export const MIN_CLUSTER_BITS = 9;
export const MAX_CLUSTER_BITS = 21;

export interface FeatureName {
  type: number;
  bit: number;
  name: string;
}

export interface Qcow2Header {
  version: 2 | 3;
  backingFileOffset: number;
  backingFileSize: number;
  clusterBits: number;
  /** Size as stored in the header. */
  headerSize: number;
  cryptMethod: number;
  l1Size: number;
  l1TableOffset: number;
  refcountTableOffset: number;
  refcountTableClusters: number;
  nbSnapshots: number;
  snapshotsOffset: number;
  incompatible: bigint;
  compatible: bigint;
  autoclear: bigint;
  refcountOrder: number;
  headerLength: number;
  compressionType: number;
  backingFile?: string;
  backingFormat?: string;
  dataFile?: string;
  featureNames: FeatureName[];
  bitmaps?: { count: number; directorySize: number; directoryOffset: number };
  /** Extension types present, in order (for info and for rewriting). */
  extensionTypes: number[];
}

const FEATURE_NAMES: Record<string, string> = {
  '0:0': 'dirty bit',
  '0:1': 'corrupt bit',
  '0:2': 'external data file',
  '0:3': 'compression type',
  '0:4': 'extended L2 entries',
  '1:0': 'lazy refcounts',
  '2:0': 'bitmaps',
  '2:1': 'raw external data',
};

/** The feature name table qemu writes (incompatible 0-4, compatible 0, autoclear 0-1). */
export function standardFeatureNames(): FeatureName[] {
  return Object.entries(FEATURE_NAMES).map(([k, name]) => {
    const [type, bit] = k.split(':').map(Number) as [number, number];
    return { type, bit, name };
  });
}

/** Bytes needed to read the fixed header before the cluster size is known. */
export const HEADER_PROBE = 512;

/**
 * Parse the header. `buf` holds the start of the file: at least the fixed header, ideally the
 * whole first cluster (the caller re-reads once the cluster size is known).
 */
export function parseHeader(buf: Uint8Array, fileSize: number, file: string): Qcow2Header {
  const r = new FieldReader(buf, FORMAT, file);
  const fail = (msg: string, offset?: number) => new CorruptImageError(FORMAT, msg, { file, offset });
  if (buf.length < 72) throw fail(`file too small for a qcow2 header (${fileSize} bytes)`, 0);
  if (r.u32be(0) !== QCOW_MAGIC) throw fail('bad magic, not a qcow2 image', 0);
  const version = r.u32be(4);
  if (version === 1) throw new UnsupportedFeatureError(FORMAT, 'qcow version 1 images (convert with qemu-img convert -O qcow2)', { file });
  if (version !== 2 && version !== 3) throw new UnsupportedFeatureError(FORMAT, `qcow2 version ${version}`, { file });
  const clusterBits = r.u32be(20);
  if (clusterBits < MIN_CLUSTER_BITS || clusterBits > MAX_CLUSTER_BITS) {
    throw fail(`cluster_bits ${clusterBits} outside ${MIN_CLUSTER_BITS}..${MAX_CLUSTER_BITS}`, 20);
  }
  const cs = 2 ** clusterBits;
  const h: Qcow2Header = {
    version,
    backingFileOffset: r.u64be(8, 'backing_file_offset'),
    backingFileSize: r.u32be(16),
    clusterBits,
    headerSize: r.u64be(24, 'size'),
    cryptMethod: r.u32be(32),
    l1Size: r.u32be(36),
    l1TableOffset: r.u64be(40, 'l1_table_offset'),
    refcountTableOffset: r.u64be(48, 'refcount_table_offset'),
    refcountTableClusters: r.u32be(56),
    nbSnapshots: r.u32be(60),
    snapshotsOffset: r.u64be(64, 'snapshots_offset'),
    incompatible: 0n,
    compatible: 0n,
    autoclear: 0n,
    refcountOrder: 4,
    headerLength: 72,
    compressionType: 0,
    featureNames: [],
    extensionTypes: [],
  };
  if (version === 3) {
    if (buf.length < 104) throw fail('v3 header truncated', 72);
    h.incompatible = r.big64be(72);
    h.compatible = r.big64be(80);
    h.autoclear = r.big64be(88);
    h.refcountOrder = r.u32be(96);
    h.headerLength = r.u32be(100);
    if (h.headerLength < 104) throw fail(`header_length ${h.headerLength} is below 104`, 100);
    if (h.headerLength % 8 !== 0) throw fail(`header_length ${h.headerLength} is not a multiple of 8`, 100);
    if (h.headerLength > cs) throw fail(`header_length ${h.headerLength} exceeds the cluster size ${cs}`, 100);
    if (h.headerLength > 104) {
      if (buf.length < 105) throw fail('header truncated', 104);
      h.compressionType = r.u8(104);
    }
  }
  if (h.refcountOrder > 6) throw fail(`refcount_order ${h.refcountOrder} is above 6`, 96);
  if (buf.length >= Math.min(cs, fileSize)) parseExtensions(h, r, Math.min(cs, buf.length), file);
  return h;
}

function parseExtensions(h: Qcow2Header, r: FieldReader, limit: number, file: string): void {
  const fail = (msg: string, offset?: number) => new CorruptImageError(FORMAT, msg, { file, offset });
  const cs = 2 ** h.clusterBits;
  let end = limit;
  if (h.backingFileOffset > 0 && h.backingFileOffset < end) end = h.backingFileOffset;
  let off = h.headerLength;
  const seen = new Set<number>();
  while (off + 8 <= end) {
    const type = r.u32be(off);
    const len = r.u32be(off + 4);
    if (type === EXT_END) break;
    const dataOff = off + 8;
    if (len > end - dataOff) throw fail(`header extension 0x${type.toString(16)} (${len} bytes) runs past the header area`, off);
    if (seen.has(type) && type !== EXT_FEATURE_TABLE) throw fail(`header extension 0x${type.toString(16)} appears twice`, off);
    seen.add(type);
    h.extensionTypes.push(type);
    switch (type) {
      case EXT_BACKING_FORMAT:
        if (len > 1023) throw fail(`backing format name too long (${len} bytes)`, off);
        h.backingFormat = stringAt(r, dataOff, len);
        break;
      case EXT_DATA_FILE:
        if (len > 1023) throw fail(`external data file name too long (${len} bytes)`, off);
        h.dataFile = stringAt(r, dataOff, len);
        break;
      case EXT_FEATURE_TABLE:
        for (let p = dataOff; p + 48 <= dataOff + len; p += 48) {
          h.featureNames.push({ type: r.u8(p), bit: r.u8(p + 1), name: stringAt(r, p + 2, 46) });
        }
        break;
      case EXT_BITMAPS:
        if (len < 24) throw fail(`bitmaps extension too short (${len} bytes)`, off);
        h.bitmaps = {
          count: r.u32be(dataOff),
          directorySize: r.u64be(dataOff + 8, 'bitmap_directory_size'),
          directoryOffset: r.u64be(dataOff + 16, 'bitmap_directory_offset'),
        };
        break;
      default:
        break; // crypto (refused elsewhere) and unknown extensions are skipped
    }
    off = dataOff + Math.ceil(len / 8) * 8;
  }
  if (h.backingFileOffset > 0) {
    if (h.backingFileSize > 1023) throw fail(`backing file name too long (${h.backingFileSize} bytes)`, 16);
    if (h.backingFileSize === 0) return;
    if (h.backingFileOffset + h.backingFileSize > Math.min(cs, r.buf.length)) {
      throw fail(`backing file name (${h.backingFileSize} bytes at ${h.backingFileOffset}) lies outside the first cluster`, 8);
    }
    h.backingFile = Buffer.from(r.bytes(h.backingFileOffset, h.backingFileSize)).toString('utf8');
  }
}

/** A string up to len bytes (names in the feature table are NUL-padded; others are not terminated). */
function stringAt(r: FieldReader, off: number, len: number): string {
  const b = r.bytes(off, len);
  const nul = b.indexOf(0);
  return Buffer.from(nul >= 0 ? b.subarray(0, nul) : b).toString('utf8');
}

/** Human name of a feature bit: from the image's own table, else from the spec. */
export function featureName(h: Qcow2Header, type: number, bit: number): string {
  const own = h.featureNames.find((f) => f.type === type && f.bit === bit);
  return own?.name || FEATURE_NAMES[`${type}:${bit}`] || `${['incompatible', 'compatible', 'autoclear'][type]} bit ${bit}`;
}

/** Validate feature bits and geometry against the file; throws for anything unusable. */
export function validateHeader(h: Qcow2Header, fileSize: number, file: string): void {
  const fail = (msg: string, offset?: number) => new CorruptImageError(FORMAT, msg, { file, offset });
  const cs = 2 ** h.clusterBits;
  if (h.cryptMethod !== 0) {
    throw new UnsupportedFeatureError(FORMAT, `encryption (${h.cryptMethod === 1 ? 'AES' : h.cryptMethod === 2 ? 'LUKS' : `method ${h.cryptMethod}`})`, { file });
  }
  const unknown = h.incompatible & ~INCOMPAT_KNOWN;
  if (unknown) {
    const names: string[] = [];
    for (let b = 0; b < 64; b++) if (unknown & (1n << BigInt(b))) names.push(featureName(h, 0, b));
    throw new UnsupportedFeatureError(FORMAT, `incompatible feature(s): ${names.join(', ')}`, { file });
  }
  if (h.incompatible & INCOMPAT_CORRUPT) {
    throw fail('image is marked corrupt (incompatible bit 1); repair it with qemu-img check -r all', 72);
  }
  if (h.incompatible & INCOMPAT_COMPRESSION) {
    if (h.headerLength <= 104) throw fail('compression type bit set but header has no compression_type field', 72);
    if (h.compressionType === 0) throw fail('compression type bit set but compression_type is 0', 104);
  } else if (h.compressionType !== 0) {
    throw fail(`compression_type ${h.compressionType} without the compression type bit`, 104);
  }
  if (h.compressionType > 1) throw new UnsupportedFeatureError(FORMAT, `compression type ${h.compressionType}`, { file });
  if (h.incompatible & INCOMPAT_EXTL2 && h.clusterBits < 14) {
    throw fail(`extended L2 entries need clusters of at least 16 KiB (cluster_bits ${h.clusterBits})`, 20);
  }
  if (h.l1Size > 0) {
    if (h.l1Size * 8 > MAX_L1_BYTES) throw fail(`L1 table too large (${h.l1Size} entries)`, 36);
    checkTable(h.l1TableOffset, h.l1Size * 8, cs, fileSize, 'L1 table', fail, 40);
  }
  const l2Entries = cs / ((h.incompatible & INCOMPAT_EXTL2) ? 16 : 8);
  const needL1 = Math.ceil(h.headerSize / (cs * l2Entries));
  if (h.l1Size < needL1) throw fail(`L1 table too small: ${h.l1Size} entries for a ${h.headerSize}-byte disk (needs ${needL1})`, 36);
  if (h.refcountTableClusters === 0) throw fail('refcount table has no clusters', 56);
  if (h.refcountTableClusters * cs > MAX_REFTABLE_BYTES) throw fail(`refcount table too large (${h.refcountTableClusters} clusters)`, 56);
  checkTable(h.refcountTableOffset, h.refcountTableClusters * cs, cs, fileSize, 'refcount table', fail, 48);
  if (h.nbSnapshots > MAX_SNAPSHOTS) throw fail(`too many snapshots (${h.nbSnapshots})`, 60);
  if (h.nbSnapshots > 0) checkTable(h.snapshotsOffset, 40, cs, fileSize, 'snapshot table', fail, 64);
  const ranges: Array<[string, number, number]> = [['header', 0, cs], ['refcount table', h.refcountTableOffset, h.refcountTableClusters * cs]];
  if (h.l1Size > 0) ranges.push(['L1 table', h.l1TableOffset, h.l1Size * 8]);
  for (let i = 0; i < ranges.length; i++) {
    for (let j = i + 1; j < ranges.length; j++) {
      const [na, a, la] = ranges[i]!;
      const [nb, b, lb] = ranges[j]!;
      if (a < b + lb && b < a + la) throw fail(`${na} (at ${a}) overlaps ${nb} (at ${b})`, b);
    }
  }
  if ((h.incompatible & INCOMPAT_DATA_FILE) === 0n && h.autoclear & AUTOCLEAR_DATA_FILE_RAW) {
    // qemu clears this bit on such images; reading is unaffected.
  }
}

function checkTable(
  offset: number,
  bytes: number,
  cs: number,
  fileSize: number,
  what: string,
  fail: (m: string, o?: number) => Error,
  field: number,
): void {
  if (offset % cs !== 0) throw fail(`${what} offset ${offset} is not cluster-aligned`, field);
  if (offset === 0) throw fail(`${what} at offset 0 overlaps the header`, field);
  if (offset + bytes > fileSize) throw fail(`${what} (${bytes} bytes at ${offset}) lies past the end of the file (size ${fileSize})`, field);
}

// ---------------------------------------------------------------- writing

export interface HeaderSpec {
  version: 2 | 3;
  clusterBits: number;
  size: number;
  l1Size: number;
  l1TableOffset: number;
  refcountTableOffset: number;
  refcountTableClusters: number;
  nbSnapshots?: number;
  snapshotsOffset?: number;
  incompatible?: bigint;
  compatible?: bigint;
  autoclear?: bigint;
  refcountOrder: number;
  compressionType?: number;
  backingFile?: string;
  backingFormat?: string;
  dataFile?: string;
}

/**
 * Build cluster 0 the way qemu-img writes it: header (112 bytes for v3), backing format and data
 * file extensions, the feature name table when it fits, the end marker, then the backing name.
 */
export function buildHeaderCluster(s: HeaderSpec): Uint8Array {
  const cs = 2 ** s.clusterBits;
  const out = new Uint8Array(cs);
  const dv = new DataView(out.buffer);
  const headerLength = s.version === 3 ? 112 : 72;
  const enc = new TextEncoder();
  const exts: Array<[number, Uint8Array]> = [];
  if (s.backingFormat) exts.push([EXT_BACKING_FORMAT, enc.encode(s.backingFormat)]);
  if (s.dataFile) exts.push([EXT_DATA_FILE, enc.encode(s.dataFile)]);
  const backing = s.backingFile ? enc.encode(s.backingFile) : undefined;
  if (backing && backing.length > 1023) throw new CorruptImageError(FORMAT, 'backing file name longer than 1023 bytes');
  const extBytes = (list: Array<[number, Uint8Array]>) => list.reduce((n, [, d]) => n + 8 + Math.ceil(d.length / 8) * 8, 0);
  if (s.version === 3) {
    const table = new Uint8Array(48 * 8);
    standardFeatureNames().forEach((f, i) => {
      table[i * 48] = f.type;
      table[i * 48 + 1] = f.bit;
      table.set(enc.encode(f.name), i * 48 + 2);
    });
    const withTable = [...exts, [EXT_FEATURE_TABLE, table] as [number, Uint8Array]];
    // qemu-img leaves the table out of clusters below 8 KiB (and wherever it would not fit).
    if (cs >= 8192 && headerLength + extBytes(withTable) + 8 + (backing?.length ?? 0) <= cs) exts.push([EXT_FEATURE_TABLE, table]);
  }
  const extEnd = headerLength + extBytes(exts) + 8;
  if (extEnd + (backing?.length ?? 0) > cs) throw new CorruptImageError(FORMAT, `header does not fit in a ${cs}-byte cluster`);
  dv.setUint32(0, QCOW_MAGIC);
  dv.setUint32(4, s.version);
  if (backing) {
    dv.setBigUint64(8, BigInt(extEnd));
    dv.setUint32(16, backing.length);
    out.set(backing, extEnd);
  }
  dv.setUint32(20, s.clusterBits);
  dv.setBigUint64(24, BigInt(s.size));
  dv.setUint32(36, s.l1Size);
  dv.setBigUint64(40, BigInt(s.l1TableOffset));
  dv.setBigUint64(48, BigInt(s.refcountTableOffset));
  dv.setUint32(56, s.refcountTableClusters);
  dv.setUint32(60, s.nbSnapshots ?? 0);
  dv.setBigUint64(64, BigInt(s.snapshotsOffset ?? 0));
  if (s.version === 3) {
    dv.setBigUint64(72, s.incompatible ?? 0n);
    dv.setBigUint64(80, s.compatible ?? 0n);
    dv.setBigUint64(88, s.autoclear ?? 0n);
    dv.setUint32(96, s.refcountOrder);
    dv.setUint32(100, headerLength);
    out[104] = s.compressionType ?? 0;
  }
  let off = headerLength;
  for (const [type, data] of exts) {
    dv.setUint32(off, type);
    dv.setUint32(off + 4, data.length);
    out.set(data, off + 8);
    off += 8 + Math.ceil(data.length / 8) * 8;
  }
  return out;
}

/** Field offsets the writer updates in place. */
export const HDR_REFCOUNT_TABLE = 48; // u64 offset, then u32 clusters at 56
export const HDR_INCOMPATIBLE = 72;
export const HDR_AUTOCLEAR = 88;
