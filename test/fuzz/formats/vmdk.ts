// VMDK (vmware/open-vmdk vmware_vmdk.h): a descriptor (text; a file of its own, or embedded in a
// sparse extent at descriptorOffset) lists extents; sparse extents start with the little-endian
// "KDMV" header (capacity, grain size, descriptor, GD/RGD offsets, overhead, compression), then
// grain directory -> grain tables of u32 sector numbers; streamOptimized extents hold zlib
// grains behind markers {u64 lba, u32 size} and a footer copy of the header.

import { REFERENCE_NAMES } from './qcow2.js';
import { ascii, emptyStructure, fieldsAt, u32le, u64le, type Structure } from '../structure.js';

function dictionary(self: string): string[] {
  const names = [...REFERENCE_NAMES.filter((n) => !n.includes('\0')), self, 'sparse.vmdk', 'stream.vmdk', 'flat-flat.vmdk', 'split-s001.vmdk', 'missing.vmdk'];
  const lines: string[] = [];
  for (const n of names) {
    lines.push(`RW 2048 FLAT "${n}" 0`, `RW 2048 SPARSE "${n}"`, `RDONLY 2048 VMFS "${n}"`);
    lines.push(`parentFileNameHint="${n}"`);
  }
  lines.push(
    'RW 4294967296 FLAT "flat-flat.vmdk" 0',
    'RW 9007199254740991 ZERO',
    'RW 18446744073709551615 ZERO',
    'RW 0 FLAT "flat-flat.vmdk" 0',
    'RW -1 FLAT "flat-flat.vmdk" 0',
    'RW 2048 FLAT "flat-flat.vmdk" 99999999999999',
    'RW 2048 FLAT "flat-flat.vmdk" -5',
    'RW 2048 VMFSSPARSE "sparse.vmdk"',
    'RW 2048 SESPARSE "sparse.vmdk"',
    'RW 2048 FLAT "flat-flat.vmdk',
    'RW 2048',
    'RW',
    'NOACCESS 2048 ZERO',
    'createType="monolithicFlat"',
    'createType="monolithicSparse"',
    'createType="streamOptimized"',
    'createType="twoGbMaxExtentSparse"',
    'createType="twoGbMaxExtentFlat"',
    'createType="vmfs"',
    'createType="seSparse"',
    'createType="fullDevice"',
    'createType="partitionedDevice"',
    'createType="custom"',
    'parentCID=ffffffff',
    'parentCID=12345678',
    'CID=fffffffe',
    'version=3',
    'version=99',
    'encoding="UTF-16"',
    'ddb.geometry.cylinders = "4294967295"',
    'ddb.geometry.heads = "0"',
    '# Disk DescriptorFile',
    '',
    '"'.repeat(64),
    'x'.repeat(4000),
  );
  return lines;
}

export function analyzeVmdk(buf: Uint8Array, seedName: string): Structure {
  const st = emptyStructure();
  const dict = dictionary(seedName);
  if (u32le(buf, 0) !== 0x564d444b) {
    // A descriptor file: all text, free to grow.
    st.texts.push({ offset: 0, length: buf.length, dictionary: dict, resizable: true });
    st.regions.push([0, buf.length]);
    return st;
  }
  st.regions.push([0, 512]);
  const header = (base: number, tag: string): void => {
    st.fields.push(
      ...fieldsAt(base, true, [
        [4, 4, `${tag}.version`],
        [8, 4, `${tag}.flags`, 'flags'],
        [12, 8, `${tag}.capacity`, 'size'],
        [20, 8, `${tag}.grainSize`, 'size'],
        [28, 8, `${tag}.descriptorOffset`, 'offset'],
        [36, 8, `${tag}.descriptorSize`, 'size'],
        [44, 4, `${tag}.numGTEsPerGT`, 'count'],
        [48, 8, `${tag}.rgdOffset`, 'offset'],
        [56, 8, `${tag}.gdOffset`, 'offset'],
        [64, 8, `${tag}.overHead`, 'size'],
        [77, 2, `${tag}.compressAlgorithm`],
      ]),
    );
  };
  header(0, 'header');
  const descOff = u64le(buf, 28) * 512;
  const descSize = u64le(buf, 36) * 512;
  if (descOff && descSize && descOff + descSize <= buf.length) {
    st.texts.push({ offset: descOff, length: descSize, dictionary: dict, resizable: false });
    st.regions.push([descOff, descOff + Math.min(descSize, 1024)]);
  }
  const grainSize = u64le(buf, 20);
  const gtes = u32le(buf, 44) || 512;
  let gdOff = u64le(buf, 56);
  const streamOptimized = gdOff === 0xffffffffffffffff || (u32le(buf, 8) & 0x10000) !== 0;
  if (streamOptimized && buf.length >= 1536) {
    // Footer: marker (512), header copy (512), end-of-stream marker (512).
    const footer = buf.length - 1024;
    if (u32le(buf, footer) === 0x564d444b) {
      header(footer, 'footer');
      gdOff = u64le(buf, footer + 56);
      st.regions.push([footer - 512, buf.length]);
    }
    // Grain markers: {u64 lba, u32 size} then zlib data, sector aligned.
    let p = u64le(buf, 64) * 512;
    for (let i = 0; i < 4096 && p + 12 <= buf.length - 1536; i++) {
      const size = u32le(buf, p + 8);
      if (size === 0) {
        // Metadata marker: u32 sectors, u32 type at +12.
        const sectors = u64le(buf, p);
        st.fields.push({ offset: p, width: 8, le: true, name: `marker${i}.sectors`, kind: 'count' });
        st.fields.push({ offset: p + 12, width: 4, le: true, name: `marker${i}.type`, kind: 'any' });
        p += 512 + sectors * 512;
        continue;
      }
      if (st.fields.length < 300) {
        st.fields.push({ offset: p, width: 8, le: true, name: `grain${i}.lba`, kind: 'offset' });
        st.fields.push({ offset: p + 8, width: 4, le: true, name: `grain${i}.size`, kind: 'size' });
      }
      if (st.streams.length < 64) st.streams.push({ offset: p + 12, length: size, codec: 'zlib' });
      p += Math.ceil((12 + size) / 512) * 512;
    }
  }
  // Grain directory (and redundant one) -> first grain tables.
  const rgdOff = u64le(buf, 48);
  for (const [gd, tag] of [
    [gdOff, 'gd'],
    [rgdOff, 'rgd'],
  ] as Array<[number, string]>) {
    const at = gd * 512;
    if (!gd || at + 4 > buf.length || gd === 0xffffffffffffffff) continue;
    st.anchors.push(gd); // table entries and header offsets count sectors
    st.regions.push([at, at + 512]);
    const gdEntries = Math.min(Math.ceil(u64le(buf, 12) / (grainSize || 128) / gtes), 1024);
    for (let i = 0; i < Math.max(1, gdEntries); i++) {
      const e = at + i * 4;
      if (e + 4 > buf.length) break;
      if (i < 8) st.fields.push({ offset: e, width: 4, le: true, name: `${tag}[${i}]`, kind: 'entry' });
      const gt = u32le(buf, e) * 512;
      if (!gt || gt + 4 * gtes > buf.length) continue;
      st.anchors.push(gt / 512);
      if (i < 2) {
        st.regions.push([gt, gt + 4 * gtes]);
        for (let j = 0; j < gtes; j += Math.max(1, gtes >> 4)) st.fields.push({ offset: gt + j * 4, width: 4, le: true, name: `${tag}gt${i}[${j}]`, kind: 'entry' });
      }
    }
  }
  void ascii;
  return st;
}
