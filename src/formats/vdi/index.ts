// VirtualBox VDI images (read-only): a header (header.ts), a block map of u32 entries at offBlocks,
// and data blocks at offData. Entry e < 0xFFFFFFFE: the block's data is at
// offData + e * (cbBlock + cbBlockExtra) + cbBlockExtra; 0xFFFFFFFE: zeros; 0xFFFFFFFF: free —
// read from the parent of a differencing image (VirtualBox's VD layer falls through), else zeros.
// Differencing images (type DIFF, or uuidLinkage set) name their parent only by UUID
// (child's uuidLinkage = parent's uuidCreate); parent.ts finds it, or --inopts parent=FILE names it.
// References: VirtualBox src/VBox/Storage/VDICore.h and VDI.cpp @ 4908d8d1; qemu block/vdi.c.

import { resolve as resolvePath } from 'node:path';
import { BaseDisk, checkRange, type Extent } from '../../core/disk.js';
import { pushExtent } from '../../core/extents.js';
import { CorruptImageError, ReadOnlyError } from '../../core/errors.js';
import { isUrl } from '../../sources/locate.js';
import { readBytes, readExact, type ByteSource } from '../../sources/source.js';
import type { BackingRef, FormatDriver, FormatImage, ImageInfo, OpenContext } from '../types.js';
import { vdiIdentity } from './probe.js';
import { composeWithBacking, readFromBacking } from '../vmdk/backing.js';
import {
  BLOCK_FREE,
  BLOCK_ZERO,
  FORMAT,
  HEADER_READ_SIZE,
  NULL_UUID,
  parseVdiHeader,
  TYPE_DIFF,
  TYPE_NAMES,
  validateVdiHeader,
  type VdiHeader,
} from './header.js';
import { findParentCandidates } from './parent.js';

export class VdiImage extends BaseDisk implements FormatImage {
  readonly format = 'vdi';
  readonly size: number;
  readonly backingRef?: BackingRef;
  private backing?: FormatImage;
  private readonly stride: number;

  constructor(
    private readonly source: ByteSource,
    readonly filename: string,
    readonly header: VdiHeader,
    private readonly blocks: Uint32Array,
    backingRef: BackingRef | undefined,
  ) {
    super();
    this.size = diskSize(header);
    this.stride = header.cbBlock + header.cbBlockExtra;
    this.backingRef = backingRef;
  }

  get uuid(): string {
    return this.header.uuidCreate;
  }

  get isDifferencing(): boolean {
    return this.header.type === TYPE_DIFF || this.header.uuidLinkage !== NULL_UUID;
  }

  setBacking(backing: FormatImage): void {
    this.backing = backing;
  }

  private dataOffset(entry: number): number {
    return this.header.offData + entry * this.stride + this.header.cbBlockExtra;
  }

  async read(dst: Uint8Array, offset: number): Promise<void> {
    checkRange(this, offset, dst.length);
    if (dst.length === 0) return;
    const bs = this.header.cbBlock;
    const end = offset + dst.length;
    const first = Math.floor(offset / bs);
    const last = Math.floor((end - 1) / bs);
    const jobs: Promise<void>[] = [];
    let b = first;
    while (b <= last) {
      const e = this.blocks[b]!;
      let c = b + 1;
      if (e < BLOCK_ZERO) {
        // Blocks stored one after another in the file are read with one request.
        while (c <= last && this.blocks[c] === e + (c - b)) c++;
      } else {
        while (c <= last && this.blocks[c] === e) c++;
      }
      const runStart = Math.max(offset, b * bs);
      const runEnd = Math.min(end, c * bs);
      const sub = dst.subarray(runStart - offset, runEnd - offset);
      if (e === BLOCK_ZERO) sub.fill(0);
      else if (e === BLOCK_FREE) jobs.push(readFromBacking(this.backing, sub, runStart));
      else if (this.header.cbBlockExtra === 0 || c === b + 1) {
        jobs.push(readExact(this.source, sub, this.dataOffset(e) + (runStart - b * bs), FORMAT, `block ${b}`));
      } else {
        // Extra data sits between blocks: one read per block.
        for (let k = b; k < c; k++) {
          const s = Math.max(runStart, k * bs);
          const t = Math.min(runEnd, (k + 1) * bs);
          const part = dst.subarray(s - offset, t - offset);
          jobs.push(readExact(this.source, part, this.dataOffset(this.blocks[k]!) + (s - k * bs), FORMAT, `block ${k}`));
        }
      }
      b = c;
    }
    await Promise.all(jobs);
  }

  override async write(): Promise<void> {
    throw new ReadOnlyError('vdi images are opened read-only (use an overlay to write)', { file: this.filename });
  }

  override async extents(offset: number, length: number): Promise<Extent[]> {
    checkRange(this, offset, length);
    const list: Extent[] = [];
    if (length === 0) return list;
    const bs = this.header.cbBlock;
    const end = offset + length;
    for (let b = Math.floor(offset / bs); b * bs < end; b++) {
      const e = this.blocks[b]!;
      const s = Math.max(offset, b * bs);
      const t = Math.min(end, (b + 1) * bs);
      if (e === BLOCK_FREE) pushExtent(list, s, t - s, 'unallocated');
      else if (e === BLOCK_ZERO) pushExtent(list, s, t - s, 'zero', 0);
      else pushExtent(list, s, t - s, 'data', 0);
    }
    return composeWithBacking(list, this.backing);
  }

  info(): ImageInfo {
    const h = this.header;
    const data: Record<string, unknown> = {
      version: `${h.versionMajor}.${h.versionMinor}`,
      'image-type': TYPE_NAMES[h.type] ?? String(h.type),
      uuid: h.uuidCreate,
      'modification-uuid': h.uuidModify,
    };
    if (h.uuidLinkage !== NULL_UUID) data['parent-uuid'] = h.uuidLinkage;
    if (h.uuidParentModify !== NULL_UUID) data['parent-modification-uuid'] = h.uuidParentModify;
    data['blocks'] = h.cBlocks;
    data['allocated-blocks'] = h.cBlocksAllocated;
    if (h.cbBlockExtra) data['block-extra-size'] = h.cbBlockExtra;
    if (h.comment) data['comment'] = h.comment;
    const info: ImageInfo = {
      filename: this.filename,
      format: 'vdi',
      'virtual-size': this.size,
      'cluster-size': h.cbBlock,
      'format-specific': { type: 'vdi', data },
    };
    if (this.backingRef) {
      info['backing-filename'] = this.backingRef.name;
      if (this.backing) info['full-backing-filename'] = this.backing.filename;
      info['backing-filename-format'] = 'vdi';
    }
    if (this.backing) info['backing-image'] = this.backing.info();
    return info;
  }

  identity(): string {
    return this.source.identity();
  }

  override async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.source.close();
    if (this.backing) await this.backing.close();
  }
}

/** qemu rounds a size that is not a multiple of 512 up (VBoxManage convertfromraw makes those). */
function diskSize(h: VdiHeader): number {
  const rounded = Math.ceil(h.cbDisk / 512) * 512;
  return rounded <= h.cBlocks * h.cbBlock ? rounded : h.cbDisk;
}

/** Read the block map and check every allocated entry against cBlocks and the file size. */
async function readBlockMap(src: ByteSource, h: VdiHeader): Promise<Uint32Array> {
  const file = src.name;
  const raw = await readBytes(src, h.offBlocks, h.cBlocks * 4, FORMAT, 'block map');
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const blocks = new Uint32Array(h.cBlocks);
  const stride = h.cbBlock + h.cbBlockExtra;
  const size = diskSize(h);
  for (let i = 0; i < h.cBlocks; i++) {
    const e = view.getUint32(i * 4, true);
    blocks[i] = e;
    if (e >= BLOCK_ZERO) continue;
    const inDisk = Math.min(h.cbBlock, size - i * h.cbBlock);
    if (inDisk <= 0) continue; // a block past the disk end is never read
    if (e >= h.cBlocks) {
      throw new CorruptImageError(FORMAT, `block map entry ${i} names data block ${e}, beyond the ${h.cBlocks} blocks of the image`, {
        file,
        offset: h.offBlocks + i * 4,
      });
    }
    const at = h.offData + e * stride + h.cbBlockExtra;
    if (at + inDisk > src.size) {
      throw new CorruptImageError(FORMAT, `block ${i} (data block ${e} at 0x${at.toString(16)}) lies past the end of the file (size ${src.size})`, {
        file,
        offset: h.offBlocks + i * 4,
      });
    }
  }
  return blocks;
}

async function parentRef(ctx: OpenContext, h: VdiHeader): Promise<BackingRef> {
  const file = ctx.source.name;
  if (h.uuidLinkage === NULL_UUID) throw new CorruptImageError(FORMAT, 'differencing image without a parent UUID (uuidLinkage is null)', { file });
  const linkage = h.uuidLinkage;
  const check = (parent: FormatImage): string | undefined => {
    if (!(parent instanceof VdiImage)) return `parent is a ${parent.format} image, not VDI`;
    if (parent.header.uuidCreate !== linkage) return `parent UUID is ${parent.header.uuidCreate}, the child needs ${linkage}`;
    return undefined;
  };
  const given = ctx.options['parent'];
  if (given) return { name: isUrl(given) ? given : resolvePath(given), format: 'vdi', check };
  const candidates = isUrl(file) ? [] : await findParentCandidates(file, linkage);
  // No candidate: a name that tells the user which UUID is missing when the registry reports it.
  if (candidates.length === 0) return { name: `{${linkage}}.vdi`, format: 'vdi', check };
  return { name: candidates[0]!, alternatives: candidates.slice(1), format: 'vdi', check };
}

async function openVdi(ctx: OpenContext): Promise<VdiImage> {
  const src = ctx.source;
  const file = src.name;
  if (ctx.writable) throw new ReadOnlyError('VDI images are read-only (keep writes in an overlay: --cache FILE)', { file });
  if (src.size < 72) throw new CorruptImageError(FORMAT, 'file too small for a VDI header', { file });
  const head = await readBytes(src, 0, Math.min(HEADER_READ_SIZE, src.size), FORMAT, 'header');
  const h = parseVdiHeader(head, file);
  validateVdiHeader(h, src.size, file);
  const blocks = await readBlockMap(src, h);
  const differencing = h.type === TYPE_DIFF || h.uuidLinkage !== NULL_UUID;
  const ref = differencing ? await parentRef(ctx, h) : undefined;
  return new VdiImage(src, file, h, blocks, ref);
}

export const vdiDriver: FormatDriver = {
  ...vdiIdentity,
  open: openVdi,
};
