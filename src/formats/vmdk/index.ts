// VMDK images (read-only). A VMDK disk is a descriptor plus extents laid end to end:
// - a text descriptor file ("# Disk DescriptorFile", createType, extent lines) naming extent files
//   relative to itself: monolithicFlat, twoGbMaxExtentFlat/Sparse, vmfs, vmfsThin, vmfsSparse, seSparse;
// - a monolithicSparse or streamOptimized KDMV file, which is its own single extent and embeds the
//   descriptor at descriptorOffset (a KDMV file with capacity 0 only carries a descriptor);
// - a bare COWD or SESparse extent file.
// Children name their parent in parentFileNameHint; the parent's CID must equal the child's parentCID.
// References: vmware/open-vmdk vmdk/vmware_vmdk.h @ 03e99ce5; libvmdk VMDK doc; qemu block/vmdk.c.

import { basename } from 'node:path';
import { BaseDisk, checkRange, type DirectPiece, type Extent } from '../../core/disk.js';
import { CorruptImageError, ReadOnlyError, UnsupportedFeatureError } from '../../core/errors.js';
import { readBytes, type ByteSource } from '../../sources/source.js';
import type { BackingRef, FormatDriver, FormatImage, ImageInfo, OpenContext } from '../types.js';
import { u32le, vmdkIdentity } from './probe.js';
import { composeWithBacking, directFromBacking, readFromBacking } from './backing.js';
import { descriptorText, MAX_DESCRIPTOR_BYTES, parseDescriptor, type Descriptor } from './descriptor.js';
import { FlatExtent, NoAccessExtent, ZeroExtent, type VmdkExtent } from './extent.js';
import { COWD_MAGIC, FORMAT, isSeSparseHead, KDMV_MAGIC, parseSparseHeader, SECTOR } from './header.js';
import { openCowd, openKdmv, openSeSparse, SparseExtent } from './sparse-extent.js';

const NO_PARENT = 0xffffffff;
/** Largest range directMap() maps at once (a frontend asks window by window). */
const DIRECT_MAP_MAX = 64 << 20;
/** Extent files one descriptor may open. */
const MAX_EXTENT_FILES = 2048;

interface Placed {
  start: number;
  size: number;
  ext: VmdkExtent;
}

export class VmdkImage extends BaseDisk implements FormatImage {
  readonly format = 'vmdk';
  readonly size: number;
  readonly backingRef?: BackingRef;
  readonly uuid?: string;
  private backing?: FormatImage;
  private readonly starts: number[];

  constructor(
    readonly filename: string,
    private readonly placed: Placed[],
    private readonly sources: ByteSource[],
    readonly createType: string,
    readonly desc: Descriptor | undefined,
    private readonly resolve: (ref: string) => string,
    private readonly dirty: boolean,
  ) {
    super();
    this.size = placed.length ? placed[placed.length - 1]!.start + placed[placed.length - 1]!.size : 0;
    this.starts = placed.map((p) => p.start);
    const hint = desc?.parentFileNameHint;
    if (hint) {
      const alternatives: string[] = [];
      const base = basename(hint.replace(/\\/g, '/'));
      if (base && base !== hint) alternatives.push(base);
      const parentCid = this.parentCid;
      this.backingRef = {
        name: hint,
        format: 'vmdk',
        alternatives,
        check: (parent) => {
          if (!(parent instanceof VmdkImage)) return `parent is a ${parent.format} image, not VMDK`;
          if (parentCid === undefined || parent.cid === undefined) return undefined;
          if (parent.cid !== parentCid) {
            return `child's parentCID is ${hex(parentCid)} but the parent's CID is ${hex(parent.cid)} (the parent changed after the child was made)`;
          }
          return undefined;
        },
      };
    }
    const u = desc?.values.get('ddb.uuid.image') ?? desc?.values.get('ddb.uuid');
    if (u) {
      const h = u.replace(/[\s-]/g, '');
      if (/^[0-9a-fA-F]{32}$/.test(h)) {
        const l = h.toLowerCase();
        this.uuid = `${l.slice(0, 8)}-${l.slice(8, 12)}-${l.slice(12, 16)}-${l.slice(16, 20)}-${l.slice(20)}`;
      }
    }
  }

  get cid(): number | undefined {
    return this.desc?.cid;
  }

  get parentCid(): number | undefined {
    const p = this.desc?.parentCid;
    return p === undefined || p === NO_PARENT ? undefined : p;
  }

  setBacking(backing: FormatImage): void {
    this.backing = backing;
  }

  private index(offset: number): number {
    // Last extent whose start <= offset.
    let lo = 0;
    let hi = this.starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.starts[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  async read(dst: Uint8Array, offset: number): Promise<void> {
    checkRange(this, offset, dst.length);
    let pos = offset;
    const end = offset + dst.length;
    let i = this.index(offset);
    const jobs: Promise<void>[] = [];
    while (pos < end) {
      const p = this.placed[i]!;
      const n = Math.min(end, p.start + p.size) - pos;
      if (n > 0) {
        const sub = dst.subarray(pos - offset, pos - offset + n);
        const start = p.start;
        jobs.push(p.ext.read(sub, pos - start, (d, o) => readFromBacking(this.backing, d, start + o)));
        pos += n;
      }
      i++;
    }
    await Promise.all(jobs);
  }

  /** Plain pieces (flat extents, uncompressed grains, zeros, the parent's own pieces). */
  async directMap(offset: number, length: number): Promise<DirectPiece[]> {
    checkRange(this, offset, length);
    const out: DirectPiece[] = [];
    if (length === 0 || length > DIRECT_MAP_MAX) return out;
    let pos = offset;
    const end = offset + length;
    let i = this.index(offset);
    while (pos < end) {
      const p = this.placed[i++]!;
      const n = Math.min(end, p.start + p.size) - pos;
      if (n <= 0) continue;
      if (p.ext.direct) {
        await p.ext.direct(pos - p.start, n, p.start, out, (o, l) => directFromBacking(this.backing, out, o, l));
      }
      pos += n;
    }
    return out;
  }

  override async write(): Promise<void> {
    throw new ReadOnlyError('vmdk images are opened read-only (use an overlay to write)', { file: this.filename });
  }

  override async extents(offset: number, length: number): Promise<Extent[]> {
    checkRange(this, offset, length);
    const list: Extent[] = [];
    if (length === 0) return list;
    let pos = offset;
    const end = offset + length;
    let i = this.index(offset);
    while (pos < end) {
      const p = this.placed[i]!;
      const n = Math.min(end, p.start + p.size) - pos;
      if (n > 0) {
        await p.ext.map(pos - p.start, n, list, p.start);
        pos += n;
      }
      i++;
    }
    return composeWithBacking(list, this.backing);
  }

  info(): ImageInfo {
    const exts = this.placed.map((p) => ({ ...p.ext.info(), 'virtual-size': p.size }));
    const data: Record<string, unknown> = {
      cid: this.cid ?? NO_PARENT,
      'parent-cid': this.desc?.parentCid ?? NO_PARENT,
      'create-type': this.createType,
      extents: exts,
    };
    const adapter = this.desc?.values.get('ddb.adapterType');
    if (adapter) data['adapter-type'] = adapter;
    const info: ImageInfo = {
      filename: this.filename,
      format: 'vmdk',
      'virtual-size': this.size,
      'dirty-flag': this.dirty,
      'format-specific': { type: 'vmdk', data },
    };
    const sparse = this.placed.map((p) => p.ext).filter((e): e is SparseExtent => e instanceof SparseExtent);
    if (sparse.length === this.placed.length && sparse.length > 0 && sparse.every((e) => e.grainBytes === sparse[0]!.grainBytes)) {
      info['cluster-size'] = sparse[0]!.grainBytes;
    }
    const hint = this.desc?.parentFileNameHint;
    if (hint) {
      info['backing-filename'] = hint;
      info['full-backing-filename'] = this.backing?.filename ?? this.resolve(hint);
      info['backing-filename-format'] = 'vmdk';
    }
    const details: Array<[string, string]> = [];
    if (sparse.some((e) => e.usingRedundant)) details.push(['warning', 'primary grain directory is damaged; the redundant copy is used']);
    if (details.length) info.details = details;
    if (this.backing) info['backing-image'] = this.backing.info();
    return info;
  }

  identity(): string {
    return this.sources.map((s) => s.identity()).join('|');
  }

  override async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const errors: unknown[] = [];
    for (const s of this.sources) await s.close().catch((e) => errors.push(e));
    if (this.backing) await this.backing.close().catch((e) => errors.push(e));
    if (errors.length) throw errors[0];
  }
}

function hex(n: number): string {
  return n.toString(16).padStart(8, '0');
}

async function readEmbeddedDescriptor(src: ByteSource, offsetSectors: number, sizeSectors: number): Promise<Descriptor | undefined> {
  if (offsetSectors === 0 || sizeSectors === 0) return undefined;
  const off = offsetSectors * SECTOR;
  const len = Math.min(sizeSectors * SECTOR, MAX_DESCRIPTOR_BYTES, Math.max(0, src.size - off));
  if (len <= 0) throw new CorruptImageError(FORMAT, 'embedded descriptor lies past the end of the file', { file: src.name, offset: off });
  const bytes = await readBytes(src, off, len, FORMAT, 'embedded descriptor');
  return parseDescriptor(descriptorText(bytes), src.name);
}

/** Open one extent file named by a descriptor line. */
async function openExtentFile(src: ByteSource, type: string, sectors: number, startSector: number): Promise<VmdkExtent> {
  const file = src.name;
  const size = sectors * SECTOR;
  switch (type) {
    case 'FLAT':
    case 'VMFS':
    case 'VMFSRAW':
    case 'VMFSRDM': {
      const start = startSector * SECTOR;
      if (start + size > src.size) {
        throw new CorruptImageError(FORMAT, `${type} extent needs ${start + size} bytes but the file has ${src.size}`, { file });
      }
      return new FlatExtent(src, type, size, start);
    }
    case 'SPARSE':
    case 'VMFSSPARSE': {
      const head = await readBytes(src, 0, Math.min(SECTOR, src.size), FORMAT, 'extent header');
      const magic = u32le(head);
      let ext: SparseExtent;
      if (magic === KDMV_MAGIC) ext = (await openKdmv(src, type)).extent;
      else if (magic === COWD_MAGIC) ext = await openCowd(src, type);
      else if (isSeSparseHead(head)) ext = await openSeSparse(src, type);
      else throw new CorruptImageError(FORMAT, `${type} extent has no KDMV or COWD header`, { file, offset: 0 });
      if (ext.size < size) {
        throw new CorruptImageError(FORMAT, `descriptor gives the extent ${sectors} sectors but its header says ${ext.size / SECTOR}`, { file, offset: 12 });
      }
      return ext;
    }
    case 'SESPARSE': {
      const ext = await openSeSparse(src, type);
      if (ext.size < size) {
        throw new CorruptImageError(FORMAT, `descriptor gives the extent ${sectors} sectors but its header says ${ext.size / SECTOR}`, { file, offset: 16 });
      }
      return ext;
    }
    default:
      throw new UnsupportedFeatureError(FORMAT, `extent type ${type}`, { file });
  }
}

async function openFromDescriptor(ctx: OpenContext, desc: Descriptor, opened: ByteSource[]): Promise<Placed[]> {
  const file = ctx.source.name;
  if (desc.extents.length === 0) throw new CorruptImageError(FORMAT, 'descriptor lists no extents', { file });
  if (desc.extents.filter((e) => e.type !== 'ZERO').length > MAX_EXTENT_FILES) {
    throw new UnsupportedFeatureError(FORMAT, `more than ${MAX_EXTENT_FILES} extent files`, { file });
  }
  const placed: Placed[] = [];
  let start = 0;
  for (const line of desc.extents) {
    const size = line.sectors * SECTOR;
    let ext: VmdkExtent;
    if (line.type === 'ZERO') {
      ext = new ZeroExtent(size);
    } else {
      const src = await ctx.openRelated(line.file!);
      opened.push(src);
      ext = await openExtentFile(src, line.type, line.sectors, line.offset);
    }
    if (line.access === 'NOACCESS') ext = new NoAccessExtent(ext);
    placed.push({ start, size, ext });
    start += size;
    if (!Number.isSafeInteger(start)) throw new CorruptImageError(FORMAT, 'extents add up to more than 2^53 bytes', { file });
  }
  return placed;
}

async function openVmdk(ctx: OpenContext): Promise<VmdkImage> {
  const src = ctx.source;
  const file = src.name;
  if (ctx.writable) throw new ReadOnlyError('VMDK images are read-only (keep writes in an overlay: --cache FILE)', { file });
  if (src.size < 4) throw new CorruptImageError(FORMAT, 'file too small to be a VMDK', { file });
  const head = await readBytes(src, 0, Math.min(SECTOR, src.size), FORMAT, 'header');
  const magic = u32le(head);
  const opened: ByteSource[] = [];
  try {
    let placed: Placed[];
    let desc: Descriptor | undefined;
    let createType: string;
    let dirty = false;
    if (magic === KDMV_MAGIC) {
      const h = parseSparseHeader(await readBytes(src, 0, SECTOR, FORMAT, 'sparse extent header'), file);
      desc = await readEmbeddedDescriptor(src, h.descriptorOffset, h.descriptorSize);
      if (h.capacity === 0 && desc) {
        placed = await openFromDescriptor(ctx, desc, opened);
        createType = desc.createType ?? 'custom';
      } else {
        const { extent, header } = await openKdmv(src, 'SPARSE');
        placed = [{ start: 0, size: extent.size, ext: extent }];
        createType = desc?.createType ?? (extent.compressed ? 'streamOptimized' : 'monolithicSparse');
        dirty = header.uncleanShutdown;
      }
    } else if (magic === COWD_MAGIC) {
      const ext = await openCowd(src, 'VMFSSPARSE');
      placed = [{ start: 0, size: ext.size, ext }];
      createType = 'vmfsSparse';
    } else if (isSeSparseHead(head)) {
      const ext = await openSeSparse(src, 'SESPARSE');
      placed = [{ start: 0, size: ext.size, ext }];
      createType = 'seSparse';
    } else {
      if (src.size > MAX_DESCRIPTOR_BYTES) {
        throw new CorruptImageError(FORMAT, `not a VMDK: no KDMV/COWD header, and too large (${src.size} bytes) for a descriptor file`, { file });
      }
      const bytes = await readBytes(src, 0, src.size, FORMAT, 'descriptor');
      const text = descriptorText(bytes);
      if (!text.includes('createType')) throw new CorruptImageError(FORMAT, 'not a VMDK: no KDMV/COWD header and no descriptor with a createType', { file });
      desc = parseDescriptor(text, file);
      placed = await openFromDescriptor(ctx, desc, opened);
      createType = desc.createType ?? 'custom';
    }
    if (placed.length === 0) throw new CorruptImageError(FORMAT, 'image has no extents', { file });
    return new VmdkImage(file, placed, [src, ...opened], createType, desc, ctx.resolve, dirty);
  } catch (err) {
    await Promise.all(opened.map((s) => s.close().catch(() => undefined)));
    throw err;
  }
}

export const vmdkDriver: FormatDriver = {
  ...vmdkIdentity,
  open: openVmdk,
};
