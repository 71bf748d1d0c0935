// qcow2 (qemu docs/interop/qcow2.rst): big-endian header (v2 72 bytes, v3 104+), header
// extensions, L1 -> L2 tables of u64 entries (extended L2: 128-bit), refcount table -> blocks,
// snapshot table, bitmap directory, LUKS header; compressed clusters (raw deflate or zstd) named
// by L2 entries with an offset and a sector count.

import type { Rng } from '../rng.js';
import { emptyStructure, fieldsAt, u16be, u32be, u64be, type Field, type Structure } from '../structure.js';

const L2_MASK = 0x00fffffffffffe00n;

export const REFERENCE_NAMES = [
  '/etc/passwd',
  '/dev/sda',
  '/dev/zero',
  '/proc/self/mem',
  '/sys/kernel/notes',
  '../../../../../../etc/shadow',
  '',
  '.',
  '..',
  '/',
  'nbd://127.0.0.1:1/x',
  'http://127.0.0.1:1/x.qcow2',
  'json:{"file.filename":"/etc/passwd"}',
  'file:///etc/passwd',
  'missing.qcow2',
  'a'.repeat(1023),
  'x\0y',
];

/** qcow version 1: 48-byte header, L1 -> L2 of u64 entries (bit 63: compressed, size above the offset). */
function analyzeQcow1(buf: Uint8Array, seedName: string): Structure {
  const st = emptyStructure();
  st.regions.push([0, 512]);
  st.fields.push(
    ...fieldsAt(0, false, [
      [8, 8, 'backing_file_offset', 'offset'],
      [16, 4, 'backing_file_size', 'size'],
      [24, 8, 'size', 'size'],
      [32, 1, 'cluster_bits', 'shift'],
      [33, 1, 'l2_bits', 'shift'],
      [36, 4, 'crypt_method'],
      [40, 8, 'l1_table_offset', 'offset'],
    ]),
  );
  const cb = buf[32]!;
  const l2Bits = buf[33]!;
  const l1 = u64be(buf, 40);
  const l1Size = Math.min(4096, Math.ceil(u64be(buf, 24) / 2 ** (cb + l2Bits)));
  st.anchors.push(l1);
  st.regions.push([l1, l1 + l1Size * 8]);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.length);
  const shift = BigInt(63 - cb);
  for (let i = 0; i < l1Size && l1 + i * 8 + 8 <= buf.length; i++) {
    st.fields.push({ offset: l1 + i * 8, width: 8, le: false, name: `l1[${i}]`, kind: 'entry' });
    const l2 = Number(dv.getBigUint64(l1 + i * 8, false));
    if (!l2 || l2 + 8 * 2 ** l2Bits > buf.length) continue;
    st.anchors.push(l2);
    st.regions.push([l2, l2 + 512]);
    for (let j = 0; j < 2 ** l2Bits; j++) {
      const e = l2 + j * 8;
      const v = dv.getBigUint64(e, false);
      if (j % 32 === 0) st.fields.push({ offset: e, width: 8, le: false, name: `l2[${i}][${j}]`, kind: 'entry' });
      if (v >> 63n && st.streams.length < 64) {
        const off = Number(v & ((1n << shift) - 1n));
        const len = Number((v >> shift) & ((1n << BigInt(cb)) - 1n));
        if (len > 0) st.streams.push({ offset: off, length: len, codec: 'deflate' });
      }
    }
  }
  st.specials.push({ name: 'qcow backing name', apply: (b, rng) => setBackingName(b, rng, seedName, -1) });
  return st;
}

export function analyzeQcow2(buf: Uint8Array, seedName: string): Structure {
  if (u32be(buf, 4) === 1) return analyzeQcow1(buf, seedName);
  const st = emptyStructure();
  const version = u32be(buf, 4);
  const clusterBits = u32be(buf, 20);
  const cluster = 2 ** clusterBits;
  const headerLen = version >= 3 ? u32be(buf, 100) : 72;
  st.regions.push([0, Math.min(buf.length, cluster)]);
  st.fields.push(
    ...fieldsAt(0, false, [
      [4, 4, 'version'],
      [8, 8, 'backing_file_offset', 'offset'],
      [16, 4, 'backing_file_size', 'size'],
      [20, 4, 'cluster_bits', 'shift'],
      [24, 8, 'size', 'size'],
      [32, 4, 'crypt_method'],
      [36, 4, 'l1_size', 'count'],
      [40, 8, 'l1_table_offset', 'offset'],
      [48, 8, 'refcount_table_offset', 'offset'],
      [56, 4, 'refcount_table_clusters', 'count'],
      [60, 4, 'nb_snapshots', 'count'],
      [64, 8, 'snapshots_offset', 'offset'],
    ]),
  );
  if (version >= 3) {
    st.fields.push(
      ...fieldsAt(0, false, [
        [72, 8, 'incompatible_features', 'flags'],
        [80, 8, 'compatible_features', 'flags'],
        [88, 8, 'autoclear_features', 'flags'],
        [96, 4, 'refcount_order', 'shift'],
        [100, 4, 'header_length', 'size'],
      ]),
    );
    if (headerLen > 104) st.fields.push({ offset: 104, width: 1, le: false, name: 'compression_type', kind: 'any' });
  }
  const compressionType = version >= 3 && headerLen > 104 ? buf[104]! : 0;
  const extendedL2 = version >= 3 && (u64be(buf, 72) & 16) !== 0;

  // Header extensions.
  let p = headerLen;
  let dataFileExt = -1;
  let backingFormatExt = -1;
  let bitmapsExt = -1;
  for (let i = 0; i < 32 && p + 8 <= Math.min(buf.length, cluster); i++) {
    const type = u32be(buf, p);
    const len = u32be(buf, p + 4);
    st.fields.push(...fieldsAt(p, false, [[0, 4, `ext${i}.type`, 'flags'], [4, 4, `ext${i}.length`, 'size']]));
    if (type === 0) break;
    if (type === 0x44415441) dataFileExt = p;
    if (type === 0xe2792aca) backingFormatExt = p;
    if (type === 0x23852875) bitmapsExt = p;
    if (type === 0x0537be77) {
      st.fields.push(...fieldsAt(p + 8, false, [[0, 8, 'crypto.offset', 'offset'], [8, 8, 'crypto.length', 'size']]));
      const luks = u64be(buf, p + 8);
      st.regions.push([luks, luks + 4096]);
      st.anchors.push(luks);
    }
    p += 8 + Math.ceil(len / 8) * 8;
  }
  if (bitmapsExt >= 0) {
    st.fields.push(
      ...fieldsAt(bitmapsExt + 8, false, [
        [0, 4, 'bitmaps.count', 'count'],
        [8, 8, 'bitmaps.directory_size', 'size'],
        [16, 8, 'bitmaps.directory_offset', 'offset'],
      ]),
    );
    const dir = u64be(buf, bitmapsExt + 24);
    st.anchors.push(dir);
    st.regions.push([dir, dir + 256]);
    st.fields.push(
      ...fieldsAt(dir, false, [
        [0, 8, 'bitmap0.table_offset', 'offset'],
        [8, 4, 'bitmap0.table_size', 'count'],
        [12, 4, 'bitmap0.flags', 'flags'],
        [16, 1, 'bitmap0.type'],
        [17, 1, 'bitmap0.granularity_bits', 'shift'],
        [18, 2, 'bitmap0.name_size', 'size'],
        [20, 4, 'bitmap0.extra_data_size', 'size'],
      ]),
    );
  }

  // L1 and the L2 tables it names.
  const l1Off = u64be(buf, 40);
  const l1Size = u32be(buf, 36);
  st.anchors.push(l1Off, u64be(buf, 48), u64be(buf, 64));
  st.regions.push([l1Off, l1Off + Math.min(l1Size * 8, 4096)]);
  const entryBytes = extendedL2 ? 16 : 8;
  const l2Entries = cluster / entryBytes;
  const compressedShift = 62n - BigInt(clusterBits - 8);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.length);
  let l2Seen = 0;
  for (let i = 0; i < Math.min(l1Size, 4096); i++) {
    const at = l1Off + i * 8;
    if (at + 8 > buf.length) break;
    if (i < 16) st.fields.push({ offset: at, width: 8, le: false, name: `l1[${i}]`, kind: 'entry' });
    const l2 = Number(dv.getBigUint64(at, false) & L2_MASK);
    if (!l2 || l2 + cluster > buf.length) continue;
    st.anchors.push(l2);
    st.regions.push([l2, l2 + Math.min(cluster, 4096)]);
    for (let j = 0; j < l2Entries; j++) {
      const e = l2 + j * entryBytes;
      const v = dv.getBigUint64(e, false);
      if (l2Seen < 3 && j % Math.max(1, Math.floor(l2Entries / 24)) === 0) {
        st.fields.push({ offset: e, width: 8, le: false, name: `l2[${i}][${j}]`, kind: 'entry' });
        if (extendedL2) st.fields.push({ offset: e + 8, width: 8, le: false, name: `l2[${i}][${j}].bitmap`, kind: 'flags' });
      }
      if (v & (1n << 62n)) {
        // Compressed: host offset in the low bits, additional 512-byte sectors above them.
        const off = Number(v & ((1n << compressedShift) - 1n));
        const sectors = Number((v >> compressedShift) & ((1n << (62n - compressedShift)) - 1n));
        const len = (sectors + 1) * 512 - (off & 511);
        if (st.streams.length < 64) st.streams.push({ offset: off, length: len, codec: compressionType === 1 ? 'zstd' : 'deflate' });
        if (st.fields.length < 400) st.fields.push({ offset: e, width: 8, le: false, name: `l2[${i}][${j}] compressed`, kind: 'entry' });
      }
    }
    l2Seen++;
  }

  // Refcount table and the first refcount block.
  const rtOff = u64be(buf, 48);
  st.regions.push([rtOff, rtOff + 512]);
  for (let i = 0; i < 4; i++) st.fields.push({ offset: rtOff + i * 8, width: 8, le: false, name: `refcount_table[${i}]`, kind: 'entry' });
  const rb = u64be(buf, rtOff);
  if (rb) {
    st.anchors.push(rb);
    st.regions.push([rb, rb + 512]);
  }

  // Snapshot table: the first entry's fields, and its L1 table.
  const snapOff = u64be(buf, 64);
  if (u32be(buf, 60) > 0 && snapOff + 40 <= buf.length) {
    st.regions.push([snapOff, snapOff + 256]);
    st.fields.push(
      ...fieldsAt(snapOff, false, [
        [0, 8, 'snap0.l1_offset', 'offset'],
        [8, 4, 'snap0.l1_size', 'count'],
        [12, 2, 'snap0.id_size', 'size'],
        [14, 2, 'snap0.name_size', 'size'],
        [32, 4, 'snap0.vm_state_size', 'size'],
        [36, 4, 'snap0.extra_size', 'size'],
      ]),
    );
    if (u32be(buf, snapOff + 36) >= 16) st.fields.push(...fieldsAt(snapOff + 40, false, [[0, 8, 'snap0.vm_state_size_large', 'size'], [8, 8, 'snap0.disk_size', 'size']]));
  }

  st.specials.push({ name: 'qcow2 backing name', apply: (b, rng) => setBackingName(b, rng, seedName, backingFormatExt) });
  if (dataFileExt >= 0) st.specials.push({ name: 'qcow2 data file name', apply: (b, rng) => setExtString(b, rng, dataFileExt, seedName) });
  st.specials.push({ name: 'qcow2 table overlap', apply: (b, rng) => overlap(b, rng, st.fields) });
  void u16be;
  return st;
}

function nameChoices(seedName: string): string[] {
  return [...REFERENCE_NAMES, seedName, `./${seedName}`, 'base.qcow2', 'overlay.qcow2', 'c512.qcow2', 'datafile.raw'];
}

/** Write a backing file name (and maybe a backing format) into the free space after the extensions. */
function setBackingName(b: Uint8Array, rng: Rng, seedName: string, fmtExt: number): Uint8Array {
  if (b.length < 1024) return b;
  const dv = new DataView(b.buffer, b.byteOffset, b.length);
  const name = Buffer.from(rng.pick(nameChoices(seedName)), 'latin1');
  let at = Number(dv.getBigUint64(8, false));
  if (at === 0 || at + name.length > Math.min(b.length, 4096) || rng.chance(0.2)) at = rng.pick([512, 768, 1024 - Math.min(name.length, 1024)]);
  if (at + name.length > b.length) return b;
  b.set(name, at);
  dv.setBigUint64(8, BigInt(at), false);
  dv.setUint32(16, rng.chance(0.9) ? name.length : rng.pick([0, 1024, 0xffffffff, name.length + 100]), false);
  if (fmtExt >= 0 && rng.chance(0.5)) {
    const fmt = rng.pick(['raw', 'qcow2', 'vmdk', 'host_device', 'nbd', 'bogus']);
    const len = dv.getUint32(fmtExt + 4, false);
    const f = Buffer.alloc(len);
    f.write(fmt.slice(0, len), 'latin1');
    b.set(f, fmtExt + 8);
  }
  return b;
}

function setExtString(b: Uint8Array, rng: Rng, ext: number, seedName: string): Uint8Array {
  const len = new DataView(b.buffer, b.byteOffset, b.length).getUint32(ext + 4, false);
  const s = Buffer.alloc(len);
  s.write(rng.pick(nameChoices(seedName)).slice(0, len), 'latin1');
  b.set(s, ext + 8);
  return b;
}

/** Point one table entry at another structure (the L1 at itself, an L2 at the header...). */
function overlap(b: Uint8Array, rng: Rng, fields: Field[]): Uint8Array {
  const entries = fields.filter((f) => f.kind === 'entry' || f.kind === 'offset');
  const targets = fields.filter((f) => f.kind === 'entry' || f.kind === 'offset');
  if (!entries.length) return b;
  const f = rng.pick(entries);
  const t = rng.pick(targets);
  const dv = new DataView(b.buffer, b.byteOffset, b.length);
  if (f.offset + 8 > b.length) return b;
  const flags = f.kind === 'entry' ? (rng.chance(0.5) ? 1n << 63n : 0n) : 0n;
  dv.setBigUint64(f.offset, BigInt(t.offset & ~511) | flags, false);
  return b;
}
