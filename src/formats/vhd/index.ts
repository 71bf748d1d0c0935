// The VHD (Virtual PC / qemu "vpc") driver: finds and checks the footer, the dynamic header and
// the BAT, chooses the virtual size, and reports the parent of a differencing disk.
// Spec: Microsoft "Virtual Hard Disk Image Format Specification" v1.0 (2006-10-11); libvhdi's
// VHD notes; qemu block/vpc.c (size rule of Dec 2024). See footer.ts and dynamic-header.ts.
//
// Options (--inopts): force=on opens images whose footer or header checksum is wrong;
// size=current (default, as Hyper-V and VirtualBox) | chs (cylinders x heads x sectors x 512) |
// qemu (qemu's creator-based rule: CHS for "vpc " and "qemu" unless the geometry is the maximum).

import { CorruptImageError, InvalidArgumentError, ReadOnlyError, UnsupportedFeatureError } from '../../core/errors.js';
import { readBytes, type ByteSource } from '../../sources/source.js';
import type { BackingRef, FormatDriver, FormatImage, OpenContext } from '../types.js';
import { vhdIdentity } from './probe.js';
import { DYN_COOKIE, DYN_HEADER_SIZE, parseDynamicHeader, readLocators, type DynamicHeader } from './dynamic-header.js';
import {
  chsSize,
  DISK_DIFFERENCING,
  DISK_DYNAMIC,
  DISK_FIXED,
  FOOTER_SIZE,
  footerChecksumOk,
  hasCookie,
  parseFooter,
  qemuUsesChs,
  type VhdFooter,
} from './footer.js';
import { BAT_UNUSED, VhdImage, type VhdLayout } from './image.js';
import { addUnique, beUuidText, bytesEqual, fileUrlPath, windowsPathCandidates } from './util.js';

const MAX_BLOCK_SIZE = 256 * 1024 * 1024;

export function optionOn(v: string | undefined): boolean {
  return v !== undefined && ['on', 'true', 'yes', '1'].includes(v.toLowerCase());
}

const hex32 = (n: number) => `0x${n.toString(16).padStart(8, '0')}`;

/** Find the footer: the last 512 (or 511) bytes, else the copy at offset 0. */
async function locateFooter(src: ByteSource, force: boolean, notes: string[]): Promise<VhdFooter> {
  if (src.size < 511) throw new CorruptImageError('vhd', `file too small (${src.size} bytes) to hold a VHD footer`, { file: src.name });
  const tailLen = Math.min(FOOTER_SIZE, src.size);
  const tail = await readBytes(src, src.size - tailLen, tailLen, 'vhd', 'footer');
  let tailF: VhdFooter | undefined;
  if (tailLen === FOOTER_SIZE && hasCookie(tail, 0)) tailF = parseFooter(tail, src.size - FOOTER_SIZE, src.name);
  else if (hasCookie(tail, tailLen - 511)) tailF = parseFooter(tail.subarray(tailLen - 511), src.size - 511, src.name);
  let headF: VhdFooter | undefined;
  if (src.size >= FOOTER_SIZE * 2) {
    const head = await readBytes(src, 0, FOOTER_SIZE, 'vhd', 'footer copy');
    if (hasCookie(head, 0)) {
      const f = parseFooter(head, 0, src.name);
      if (f.diskType === DISK_DYNAMIC || f.diskType === DISK_DIFFERENCING) headF = f;
    }
  }
  if (!tailF && !headF) throw new CorruptImageError('vhd', `no VHD footer (cookie "conectix") at the end of the file`, { file: src.name, offset: src.size - tailLen });
  if (tailF && footerChecksumOk(tailF)) return tailF;
  if (headF && footerChecksumOk(headF)) {
    notes.push(tailF ? 'the footer at the end has a bad checksum; using the copy at offset 0' : 'no footer at the end of the file (truncated?); using the copy at offset 0');
    return headF;
  }
  const bad = (tailF ?? headF)!;
  const msg = `footer checksum mismatch (stored ${hex32(bad.storedChecksum)}, computed ${hex32(bad.computedChecksum)})`;
  if (!force) throw new CorruptImageError('vhd', `${msg}; the image is damaged (--inopts force=on reads it anyway)`, { file: src.name, offset: bad.offset });
  notes.push(`${msg} ignored (force=on)`);
  return bad;
}

function chooseSize(f: VhdFooter, mode: string): { size: number; rule: string } {
  const chs = chsSize(f);
  switch (mode) {
    case 'current':
      return { size: f.currentSize, rule: 'current_size' };
    case 'chs':
      return { size: chs, rule: 'chs' };
    case 'qemu':
      return qemuUsesChs(f) ? { size: chs, rule: 'chs (qemu rule)' } : { size: f.currentSize, rule: 'current_size (qemu rule)' };
    default:
      throw new InvalidArgumentError(`vhd: unknown size rule '${mode}' (use current, chs or qemu)`);
  }
}

async function readDynamic(src: ByteSource, f: VhdFooter, size: number, force: boolean, notes: string[]): Promise<{ dyn: DynamicHeader; bat: Uint32Array; bitmapSize: number }> {
  const file = src.name;
  if (f.dataOffset > BigInt(src.size - DYN_HEADER_SIZE)) {
    throw new CorruptImageError('vhd', `dynamic header offset 0x${f.dataOffset.toString(16)} lies past the end of the file`, { file, offset: f.offset + 16 });
  }
  const hOff = Number(f.dataOffset);
  const buf = await readBytes(src, hOff, DYN_HEADER_SIZE, 'vhd', 'dynamic header');
  const dyn = parseDynamicHeader(buf, hOff, file);
  if (dyn.cookie !== DYN_COOKIE) throw new CorruptImageError('vhd', `dynamic header has cookie ${JSON.stringify(dyn.cookie)}, expected "cxsparse"`, { file, offset: hOff });
  if (dyn.storedChecksum !== dyn.computedChecksum) {
    const msg = `dynamic header checksum mismatch (stored ${hex32(dyn.storedChecksum)}, computed ${hex32(dyn.computedChecksum)})`;
    if (!force) throw new CorruptImageError('vhd', `${msg}; the image is damaged (--inopts force=on reads it anyway)`, { file, offset: hOff });
    notes.push(`${msg} ignored (force=on)`);
  }
  const bs = dyn.blockSize;
  if (bs < 512 || (bs & (bs - 1)) !== 0) throw new CorruptImageError('vhd', `block size ${bs} is not a power of two of at least 512`, { file, offset: hOff + 32 });
  if (bs > MAX_BLOCK_SIZE) throw new UnsupportedFeatureError('vhd', `block size ${bs} (above 256 MiB)`, { file });
  const needed = Math.ceil(size / bs);
  if (dyn.maxTableEntries < needed) {
    throw new CorruptImageError('vhd', `BAT has ${dyn.maxTableEntries} entries but the disk size ${size} needs ${needed}`, { file, offset: hOff + 28 });
  }
  if (dyn.tableOffset + needed * 4 > src.size) {
    throw new CorruptImageError('vhd', `BAT (${needed} entries at 0x${dyn.tableOffset.toString(16)}) lies past the end of the file`, { file, offset: hOff + 16 });
  }
  const raw = await readBytes(src, dyn.tableOffset, needed * 4, 'vhd', 'BAT');
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const bat = new Uint32Array(needed);
  const bitmapSize = Math.ceil(bs / (512 * 8) / 512) * 512;
  for (let i = 0; i < needed; i++) {
    const e = view.getUint32(i * 4, false);
    bat[i] = e;
    if (e === BAT_UNUSED) continue;
    const used = Math.min(bs, size - i * bs);
    if (e * 512 + bitmapSize + used > src.size) {
      throw new CorruptImageError('vhd', `BAT entry ${i} (sector ${e}) points past the end of the file`, { file, offset: dyn.tableOffset + i * 4 });
    }
  }
  return { dyn, bat, bitmapSize };
}

/** Where the parent may be, in the order to try, and the identity check it must pass. */
function parentRef(dyn: DynamicHeader): BackingRef {
  const relative: string[] = [];
  const absolute: string[] = [];
  for (const loc of dyn.locators) {
    if (loc.value === undefined) continue;
    if (loc.code === 'W2ru' || loc.code === 'Wi2r') addUnique(relative, windowsPathCandidates(loc.value));
    else if (loc.code === 'MacX') addUnique(absolute, [fileUrlPath(loc.value) ?? '']);
    else addUnique(absolute, windowsPathCandidates(loc.value));
  }
  const names: string[] = [];
  addUnique(names, relative);
  addUnique(names, absolute);
  addUnique(names, windowsPathCandidates(dyn.parentName));
  const want = dyn.parentUuid;
  return {
    name: names[0] ?? (dyn.parentName || `parent-${beUuidText(want)}.vhd`),
    alternatives: names.slice(1),
    check(parent: FormatImage): string | undefined {
      if (!(parent instanceof VhdImage)) return `the parent of a differencing VHD must be a VHD (found ${parent.format})`;
      if (!bytesEqual(parent.uuidBytes, want)) return `its UUID ${parent.uuid} is not the parent UUID ${beUuidText(want)} recorded in the child`;
      return undefined;
    },
  };
}

export async function openVhd(ctx: OpenContext): Promise<VhdImage> {
  const src = ctx.source;
  if (ctx.writable) throw new ReadOnlyError('vhd: writing VHD images is not supported (open read-only)', { file: src.name });
  const force = optionOn(ctx.options['force']);
  const notes: string[] = [];
  const footer = await locateFooter(src, force, notes);
  if (![DISK_FIXED, DISK_DYNAMIC, DISK_DIFFERENCING].includes(footer.diskType)) {
    throw new UnsupportedFeatureError('vhd', `disk type ${footer.diskType} (only fixed, dynamic and differencing exist)`, { file: src.name, offset: footer.offset + 60 });
  }
  const { size, rule } = chooseSize(footer, (ctx.options['size'] ?? 'current').toLowerCase());
  const layout: VhdLayout = { footer, size, sizeRule: rule, dataLength: 0, bitmapSize: 0, notes };
  if (footer.diskType === DISK_FIXED) {
    layout.dataLength = footer.offset;
    if (layout.dataLength < size) {
      const msg = `fixed disk data (${layout.dataLength} bytes) is shorter than the disk size ${size}`;
      if (!force) throw new CorruptImageError('vhd', `${msg} (truncated file?)`, { file: src.name });
      notes.push(`${msg}; the rest reads as zeros (force=on)`);
    }
  } else {
    const d = await readDynamic(src, footer, size, force, notes);
    layout.dyn = d.dyn;
    layout.bat = d.bat;
    layout.bitmapSize = d.bitmapSize;
    if (footer.diskType === DISK_DIFFERENCING) {
      await readLocators(src, d.dyn);
      layout.backingRef = parentRef(d.dyn);
    }
  }
  return new VhdImage(src, src.name, layout);
}

export const vhdDriver: FormatDriver = {
  ...vhdIdentity,
  open: openVhd,
};
