// Test-only builders for VMDK layouts that no installed tool writes: a real streamOptimized
// stream (GD_AT_END, markers, footer), a COWD (vmfsSparse) extent and an SESparse extent.
// Every layout is also read by qemu in the tests, so the builders are checked against an
// independent reader. Layouts follow header.ts / grain-map.ts and the references there.

import { deflateSync } from 'node:zlib';

const S = 512;

function isZero(b: Uint8Array): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

function padSector(n: number): number {
  return Math.ceil(n / S) * S;
}

class Out {
  chunks: Uint8Array[] = [];
  size = 0;
  push(b: Uint8Array): number {
    const at = this.size;
    const padded = new Uint8Array(padSector(b.length));
    padded.set(b);
    this.chunks.push(padded);
    this.size += padded.length;
    return at / S;
  }
  bytes(): Uint8Array {
    const out = new Uint8Array(this.size);
    let o = 0;
    for (const c of this.chunks) {
      out.set(c, o);
      o += c.length;
    }
    return out;
  }
}

export interface KdmvHeaderFields {
  version: number;
  flags: number;
  capacity: number;
  grainSize: number;
  descriptorOffset: number;
  descriptorSize: number;
  numGTEsPerGT: number;
  rgdOffset: number;
  gdOffset: bigint;
  overHead: number;
  compressAlgorithm: number;
}

export function kdmvHeader(f: KdmvHeaderFields): Uint8Array {
  const b = new Uint8Array(S);
  const v = new DataView(b.buffer);
  b.set([0x4b, 0x44, 0x4d, 0x56], 0);
  v.setUint32(4, f.version, true);
  v.setUint32(8, f.flags, true);
  v.setBigUint64(12, BigInt(f.capacity), true);
  v.setBigUint64(20, BigInt(f.grainSize), true);
  v.setBigUint64(28, BigInt(f.descriptorOffset), true);
  v.setBigUint64(36, BigInt(f.descriptorSize), true);
  v.setUint32(44, f.numGTEsPerGT, true);
  v.setBigUint64(48, BigInt(f.rgdOffset), true);
  v.setBigUint64(56, f.gdOffset, true);
  v.setBigUint64(64, BigInt(f.overHead), true);
  b.set([0x0a, 0x20, 0x0d, 0x0a], 73);
  v.setUint16(77, f.compressAlgorithm, true);
  return b;
}

function marker(value: number, type: number): Uint8Array {
  const m = new Uint8Array(S);
  const v = new DataView(m.buffer);
  v.setBigUint64(0, BigInt(value), true);
  v.setUint32(8, 0, true);
  v.setUint32(12, type, true);
  return m;
}

/**
 * A streamOptimized file the way VMware streams it: header with gdOffset = GD_AT_END, embedded
 * descriptor, compressed grains with markers, each grain table after its grains, then the grain
 * directory, the footer (a header copy with the real gdOffset) and the end-of-stream marker.
 */
export function buildStreamOptimized(data: Uint8Array, opts: { grainSectors?: number; gtEntries?: number; cid?: number } = {}): Uint8Array {
  const grainSectors = opts.grainSectors ?? 128;
  const gtEntries = opts.gtEntries ?? 512;
  const gb = grainSectors * S;
  const capacity = Math.ceil(data.length / S);
  const totalGrains = Math.ceil(capacity / grainSectors);
  const gdEntries = Math.ceil(totalGrains / gtEntries);
  const desc = new TextEncoder().encode(
    `# Disk DescriptorFile\nversion=1\nCID=${(opts.cid ?? 0x1234abcd).toString(16)}\nparentCID=ffffffff\ncreateType="streamOptimized"\n\n` +
      `# Extent description\nRDONLY ${capacity} SPARSE "stream.vmdk"\n\n# The Disk Data Base\n#DDB\n\nddb.adapterType = "lsilogic"\n`,
  );
  const descSectors = Math.ceil(desc.length / S);
  const fields: KdmvHeaderFields = {
    version: 3,
    flags: 0x30001,
    capacity,
    grainSize: grainSectors,
    descriptorOffset: 1,
    descriptorSize: descSectors,
    numGTEsPerGT: gtEntries,
    rgdOffset: 0,
    gdOffset: 0xffffffffffffffffn,
    overHead: 1 + descSectors,
    compressAlgorithm: 1,
  };
  const out = new Out();
  out.push(kdmvHeader(fields));
  out.push(desc);
  const gd = new Uint32Array(gdEntries);
  for (let t = 0; t < gdEntries; t++) {
    const gt = new Uint32Array(gtEntries);
    let any = false;
    for (let i = 0; i < gtEntries; i++) {
      const g = t * gtEntries + i;
      if (g >= totalGrains) break;
      const grain = new Uint8Array(gb);
      grain.set(data.subarray(g * gb, Math.min(data.length, (g + 1) * gb)));
      if (isZero(grain)) continue;
      // The last grain of a disk that ends inside a grain holds only the disk's bytes.
      const useful = Math.min(gb, capacity * S - g * gb);
      const z = deflateSync(grain.subarray(0, useful));
      const m = new Uint8Array(12 + z.length);
      const mv = new DataView(m.buffer);
      mv.setBigUint64(0, BigInt(g * grainSectors), true);
      mv.setUint32(8, z.length, true);
      m.set(z, 12);
      gt[i] = out.push(m);
      any = true;
    }
    if (!any) continue;
    const gtBytes = new Uint8Array(gt.buffer);
    out.push(marker(padSector(gtBytes.length) / S, 1));
    gd[t] = out.push(gtBytes);
  }
  const gdBytes = new Uint8Array(gd.buffer);
  out.push(marker(padSector(gdBytes.length) / S, 2));
  const gdSector = out.push(gdBytes);
  out.push(marker(1, 3));
  out.push(kdmvHeader({ ...fields, gdOffset: BigInt(gdSector) }));
  out.push(marker(0, 0));
  return out.bytes();
}

/** A COWD (ESX 2 sparse / vmfsSparse delta) extent: 2048-byte header, GD at sector 4, 4096-entry GTs. */
export function buildCowd(data: Uint8Array, grainSectors = 16): Uint8Array {
  const gb = grainSectors * S;
  const capacity = Math.ceil(data.length / S);
  const totalGrains = Math.ceil(capacity / grainSectors);
  const gdEntries = Math.ceil(totalGrains / 4096);
  const header = new Uint8Array(2048);
  const hv = new DataView(header.buffer);
  header.set([0x43, 0x4f, 0x57, 0x44], 0);
  hv.setUint32(4, 1, true);
  hv.setUint32(8, 3, true);
  hv.setUint32(12, capacity, true);
  hv.setUint32(16, grainSectors, true);
  hv.setUint32(20, 4, true);
  hv.setUint32(24, gdEntries, true);
  const gdSectors = Math.ceil((gdEntries * 4) / S);
  const gtSectors = (4096 * 4) / S;
  const gd = new Uint32Array(gdEntries);
  const gts: Uint32Array[] = [];
  let next = 4 + gdSectors;
  for (let t = 0; t < gdEntries; t++) {
    gd[t] = next;
    next += gtSectors;
    gts.push(new Uint32Array(4096));
  }
  const grains: Uint8Array[] = [];
  for (let g = 0; g < totalGrains; g++) {
    const grain = new Uint8Array(gb);
    grain.set(data.subarray(g * gb, Math.min(data.length, (g + 1) * gb)));
    if (isZero(grain)) continue;
    gts[Math.floor(g / 4096)]![g % 4096] = next;
    next += grainSectors;
    grains.push(grain);
  }
  hv.setUint32(28, next, true);
  const out = new Out();
  out.push(header);
  out.push(new Uint8Array(gd.buffer));
  for (const t of gts) out.push(new Uint8Array(t.buffer));
  for (const g of grains) out.push(g);
  return out.bytes();
}

/**
 * An SESparse extent (grain 8 sectors, 4096-entry GTs of u64). zeroGrains / unmappedGrains list
 * grain numbers to mark as zero (type 2) and SCSI-unmapped (type 1) instead of storing them.
 */
export function buildSeSparse(data: Uint8Array, opts: { zeroGrains?: number[]; unmappedGrains?: number[] } = {}): Uint8Array {
  const gs = 8;
  const gb = gs * S;
  const capacity = Math.ceil(data.length / S);
  const totalGrains = Math.ceil(capacity / gs);
  const nTables = Math.ceil(totalGrains / 4096);
  const gdSectors = Math.max(1, Math.ceil((nTables * 8) / S));
  const gtOffset = 8 + gdSectors;
  const gtSize = nTables * 64;
  const grainsOffset = gtOffset + gtSize;
  const gd = new BigUint64Array(nTables);
  const gts = Array.from({ length: nTables }, () => new BigUint64Array(4096));
  const grains: Uint8Array[] = [];
  const zero = new Set(opts.zeroGrains ?? []);
  const unmapped = new Set(opts.unmappedGrains ?? []);
  for (let g = 0; g < totalGrains; g++) {
    const t = Math.floor(g / 4096);
    const setEntry = (v: bigint) => {
      gts[t]![g % 4096] = v;
      gd[t] = 0x1000000000000000n | BigInt(t);
    };
    if (zero.has(g)) {
      setEntry(0x2000000000000000n);
      continue;
    }
    if (unmapped.has(g)) {
      setEntry(0x1000000000000000n);
      continue;
    }
    const grain = new Uint8Array(gb);
    grain.set(data.subarray(g * gb, Math.min(data.length, (g + 1) * gb)));
    if (isZero(grain)) continue;
    const n = BigInt(grains.length);
    grains.push(grain);
    setEntry(0x3000000000000000n | ((n & 0xfffn) << 48n) | (n >> 12n));
  }
  const h = new Uint8Array(S);
  const hv = new DataView(h.buffer);
  const put = (off: number, v: number | bigint) => hv.setBigUint64(off, BigInt(v), true);
  put(0, 0xcafebaben);
  put(8, 0x0000000200000001n);
  put(16, capacity);
  put(24, gs);
  put(32, 64);
  put(80, 1); // volatile header
  put(88, 1);
  put(96, 2); // journal header
  put(104, 1);
  put(112, 3); // journal
  put(120, 5);
  put(128, 8); // grain directory
  put(136, gdSectors);
  put(144, gtOffset);
  put(152, gtSize);
  put(160, 0); // free bitmap
  put(168, 0);
  put(176, 0); // backmap
  put(184, 0);
  put(192, grainsOffset);
  put(200, grains.length * gs);
  const vol = new Uint8Array(S);
  new DataView(vol.buffer).setBigUint64(0, 0xcafecafen, true);
  const out = new Out();
  out.push(h); // sector 0
  out.push(vol); // sector 1
  out.push(new Uint8Array(6 * S)); // journal header + journal, sectors 2..7
  out.push(new Uint8Array(gd.buffer));
  for (const t of gts) out.push(new Uint8Array(t.buffer));
  for (const g of grains) out.push(g);
  return out.bytes();
}

/** A descriptor file text. */
export function descriptor(createType: string, extents: string[], extra: string[] = [], cid = 0xfeedbeef, parentCid = 0xffffffff): string {
  return [
    '# Disk DescriptorFile',
    'version=1',
    `CID=${cid.toString(16).padStart(8, '0')}`,
    `parentCID=${parentCid.toString(16).padStart(8, '0')}`,
    `createType="${createType}"`,
    ...extra,
    '',
    '# Extent description',
    ...extents,
    '',
    '# The Disk Data Base',
    '#DDB',
    'ddb.adapterType = "ide"',
    '',
  ].join('\n');
}
