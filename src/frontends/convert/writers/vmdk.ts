// VMDK sparse outputs (vmware/open-vmdk vmware_vmdk.h; little-endian, sizes in sectors).
// monolithicSparse: header (sector 0), embedded descriptor (sectors 1-20), redundant grain
// directory + all its grain tables, primary grain directory + all its grain tables (preallocated,
// so their places are known), then 64 KiB grains in guest order from `overHead`. Each grain table
// is written (both copies) as soon as the guest range it covers is complete.
// streamOptimized: header with gdOffset = GD_AT_END, descriptor, then per grain a marker
// {u64 LBA, u32 size} + zlib data padded to a sector; after the grains of each table a GT marker
// and the table; at the end a GD marker + directory, a footer marker + footer (the header with the
// real gdOffset) and the end-of-stream marker. Grain table entries point at the grain marker.
import { basename } from 'node:path';
import { deflate } from 'node:zlib';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import type { Disk } from '../../../core/disk.js';
import { InvalidArgumentError } from '../../../core/errors.js';
import { feedRange } from '../feed.js';
import { FileSink } from '../sink.js';
import type { WriteContext } from './types.js';

const deflateP = promisify(deflate) as (buf: Uint8Array) => Promise<Buffer>;

const GRAIN_SECTORS = 128;
const GRAIN = GRAIN_SECTORS * 512;
const GTES = 512;
const GT_SECTORS = (GTES * 4) / 512;
const DESC_OFFSET = 1;
const DESC_SECTORS = 20;
const GD_AT_END = 0xffffffffffffffffn;

interface HeaderFields {
  version: number;
  flags: number;
  capacity: number;
  rgdOffset: number;
  gdOffset: bigint;
  overHead: number;
  compress: number;
}

function header(f: HeaderFields): Uint8Array {
  const h = new Uint8Array(512);
  const v = new DataView(h.buffer);
  v.setUint32(0, 0x564d444b, true);
  v.setUint32(4, f.version, true);
  v.setUint32(8, f.flags, true);
  v.setBigUint64(12, BigInt(f.capacity), true);
  v.setBigUint64(20, BigInt(GRAIN_SECTORS), true);
  v.setBigUint64(28, BigInt(DESC_OFFSET), true);
  v.setBigUint64(36, BigInt(DESC_SECTORS), true);
  v.setUint32(44, GTES, true);
  v.setBigUint64(48, BigInt(f.rgdOffset), true);
  v.setBigUint64(56, f.gdOffset, true);
  v.setBigUint64(64, BigInt(f.overHead), true);
  h[72] = 0;
  h[73] = 0x0a;
  h[74] = 0x20;
  h[75] = 0x0d;
  h[76] = 0x0a;
  v.setUint16(77, f.compress, true);
  return h;
}

export function vmdkDescriptor(p: { createType: string; capacity: number; fileName: string; adapter: string; hwversion: string }): string {
  const heads = p.adapter === 'ide' ? 16 : 255;
  const sectors = 63;
  const cylinders = Math.min(16383, Math.floor(p.capacity / (heads * sectors)));
  const cid = randomBytes(4).toString('hex');
  return [
    '# Disk DescriptorFile',
    'version=1',
    `CID=${cid}`,
    'parentCID=ffffffff',
    `createType="${p.createType}"`,
    '',
    '# Extent description',
    `RW ${p.capacity} SPARSE "${p.fileName}"`,
    '',
    '# The Disk Data Base',
    '#DDB',
    '',
    `ddb.virtualHWVersion = "${p.hwversion}"`,
    `ddb.geometry.cylinders = "${cylinders}"`,
    `ddb.geometry.heads = "${heads}"`,
    `ddb.geometry.sectors = "${sectors}"`,
    `ddb.adapterType = "${p.adapter}"`,
    '',
  ].join('\n');
}

function marker(value: number, size: number, type: number): Uint8Array {
  const m = new Uint8Array(512);
  const v = new DataView(m.buffer);
  v.setBigUint64(0, BigInt(value), true);
  v.setUint32(8, size, true);
  v.setUint32(12, type, true);
  return m;
}

function u32le(a: Uint32Array, bytes: number): Uint8Array {
  const out = new Uint8Array(bytes);
  const v = new DataView(out.buffer);
  for (let i = 0; i < a.length; i++) if (a[i]) v.setUint32(i * 4, a[i]!, true);
  return out;
}

export async function writeVmdkSparse(disk: Disk, path: string, ctx: WriteContext, stream: boolean): Promise<void> {
  const adapter = ctx.options.adapter_type ?? 'ide';
  if (!['ide', 'buslogic', 'lsilogic', 'legacyESX'].includes(adapter)) throw new InvalidArgumentError(`vmdk: unknown adapter_type '${adapter}'`);
  const hwversion = ctx.options.hwversion && ctx.options.hwversion !== 'undefined' ? ctx.options.hwversion : '4';
  if (!/^\d+$/.test(hwversion)) throw new InvalidArgumentError(`vmdk: invalid hwversion '${hwversion}'`);
  const capacity = Math.ceil(disk.size / 512);
  const gdEntries = Math.ceil(capacity / (GTES * GRAIN_SECTORS));
  if (gdEntries > 0x3fffffff / GTES) throw new InvalidArgumentError(`vmdk: disk of ${disk.size} bytes is too large`);
  const gdSectors = Math.ceil((gdEntries * 4) / 512);
  const desc = Buffer.from(
    vmdkDescriptor({ createType: stream ? 'streamOptimized' : 'monolithicSparse', capacity, fileName: basename(path), adapter, hwversion }),
  );
  if (desc.length > DESC_SECTORS * 512) throw new InvalidArgumentError('vmdk: descriptor too long');
  const sink = await FileSink.create(path, { sync: ctx.sync });
  try {
    if (stream) await writeStream(disk, sink, ctx, capacity, gdEntries, gdSectors, desc);
    else await writeMonolithic(disk, sink, ctx, capacity, gdEntries, gdSectors, desc);
  } catch (err) {
    await sink.abort();
    throw err;
  }
}

async function writeMonolithic(disk: Disk, sink: FileSink, ctx: WriteContext, capacity: number, gdEntries: number, gdSectors: number, desc: Buffer): Promise<void> {
  const rgdOffset = DESC_OFFSET + DESC_SECTORS;
  const rgtStart = rgdOffset + gdSectors;
  const gdOffset = rgtStart + gdEntries * GT_SECTORS;
  const gtStart = gdOffset + gdSectors;
  const overHead = Math.ceil((gtStart + gdEntries * GT_SECTORS) / GRAIN_SECTORS) * GRAIN_SECTORS;
  await sink.pwrite(header({ version: 1, flags: 0x3, capacity, rgdOffset, gdOffset: BigInt(gdOffset), overHead, compress: 0 }), 0);
  await sink.pwrite(desc, DESC_OFFSET * 512);
  const rgd = new Uint32Array(gdEntries);
  const gd = new Uint32Array(gdEntries);
  for (let i = 0; i < gdEntries; i++) {
    rgd[i] = rgtStart + i * GT_SECTORS;
    gd[i] = gtStart + i * GT_SECTORS;
  }
  await sink.pwrite(u32le(rgd, gdSectors * 512), rgdOffset * 512);
  await sink.pwrite(u32le(gd, gdSectors * 512), gdOffset * 512);

  let gtIndex = -1;
  const gt = new Uint32Array(GTES);
  const flushGt = async () => {
    if (gtIndex < 0) return;
    const bytes = u32le(gt, GT_SECTORS * 512);
    await sink.pwrite(bytes, (rgtStart + gtIndex * GT_SECTORS) * 512);
    await sink.pwrite(bytes, (gtStart + gtIndex * GT_SECTORS) * 512);
    gt.fill(0);
    gtIndex = -1;
  };
  await sink.skipTo(overHead * 512);
  await feedRange(disk, 0, disk.size, GRAIN, {
    async put(offset, data) {
      const grain = offset / GRAIN;
      const g = Math.floor(grain / GTES);
      if (g !== gtIndex) {
        await flushGt();
        gtIndex = g;
      }
      gt[grain % GTES] = sink.position / 512;
      await sink.append(data);
      if (data.length < GRAIN) await sink.append(new Uint8Array(GRAIN - data.length));
    },
  }, { progress: ctx.progress, depth: ctx.depth });
  await flushGt();
  await sink.commit(Math.max(sink.position, overHead * 512));
}

async function writeStream(disk: Disk, sink: FileSink, ctx: WriteContext, capacity: number, gdEntries: number, gdSectors: number, desc: Buffer): Promise<void> {
  const overHead = GRAIN_SECTORS;
  const fields = { version: 3, flags: 0x30001, capacity, rgdOffset: 0, gdOffset: GD_AT_END, overHead, compress: 1 };
  await sink.append(header(fields));
  await sink.append(desc);
  await sink.skipTo(overHead * 512);
  const gd = new Uint32Array(gdEntries);
  let gtIndex = -1;
  const gt = new Uint32Array(GTES);
  const flushGt = async () => {
    if (gtIndex < 0) return;
    await sink.append(marker(GT_SECTORS, 0, 1));
    gd[gtIndex] = sink.position / 512;
    await sink.append(u32le(gt, GT_SECTORS * 512));
    gt.fill(0);
    gtIndex = -1;
  };
  await feedRange(disk, 0, disk.size, GRAIN, {
    prepare: (_off, data) => deflateP(data.length === GRAIN ? data : Buffer.concat([data, Buffer.alloc(GRAIN - data.length)])),
    async put(offset, _data, compressed: Buffer) {
      const grain = offset / GRAIN;
      const g = Math.floor(grain / GTES);
      if (g !== gtIndex) {
        await flushGt();
        gtIndex = g;
      }
      gt[grain % GTES] = sink.position / 512;
      const head = new Uint8Array(12);
      const hv = new DataView(head.buffer);
      hv.setBigUint64(0, BigInt(offset / 512), true);
      hv.setUint32(8, compressed.length, true);
      await sink.append(head);
      await sink.append(compressed);
      await sink.alignTo(512);
    },
  }, { progress: ctx.progress, depth: ctx.depth });
  await flushGt();
  await sink.append(marker(gdSectors, 0, 2));
  const gdOffset = sink.position / 512;
  await sink.append(u32le(gd, gdSectors * 512));
  await sink.append(marker(1, 0, 3));
  await sink.append(header({ ...fields, gdOffset: BigInt(gdOffset) }));
  await sink.append(new Uint8Array(512)); // end of stream
  await sink.commit();
}
