// The VHDX driver ([MS-VHDX], awakecoding/openspecs MS-VHDX.md @ ab0d9e12; libvhdi's VHDX notes;
// qemu block/vhdx.h): header section (header.ts), log replay in memory (log.ts), region table,
// metadata (metadata.ts), BAT and payload reads (image.ts). Read-only; a differencing disk reports
// its parent through the parent locator (relative_path, volume_path, absolute_win32_path) and
// checks parent_linkage against the parent's DataWriteGuid.

import { CorruptImageError, ReadOnlyError, UnsupportedFeatureError } from '../../core/errors.js';
import { readBytes, type ByteSource } from '../../sources/source.js';
import type { BackingRef, FormatDriver, FormatImage, OpenContext } from '../types.js';
import { vhdxIdentity } from './probe.js';
import { addUnique, pathBaseName, windowsPathCandidates } from '../vhd/util.js';
import { BAT_REGION, hasLog, METADATA_REGION, MiB, readCurrentHeader, readFileIdentifier, readRegionTable, type RegionEntry } from './header.js';
import {
  batEntry,
  PAYLOAD_FULLY_PRESENT,
  PAYLOAD_NOT_PRESENT,
  PAYLOAD_PARTIALLY_PRESENT,
  PAYLOAD_UNDEFINED,
  PAYLOAD_UNMAPPED,
  PAYLOAD_UNMAPPED_V095,
  PAYLOAD_ZERO,
  SB_PRESENT,
  VhdxImage,
  type VhdxLayout,
} from './image.js';
import { replayLog } from './log.js';
import { readMetadata, type VhdxMetadata } from './metadata.js';

const KNOWN_STATES = [PAYLOAD_NOT_PRESENT, PAYLOAD_UNDEFINED, PAYLOAD_ZERO, PAYLOAD_UNMAPPED, PAYLOAD_UNMAPPED_V095, PAYLOAD_FULLY_PRESENT, PAYLOAD_PARTIALLY_PRESENT];

function findRegion(regions: RegionEntry[], guid: string, name: string, src: ByteSource): RegionEntry {
  const r = regions.find((x) => x.guid === guid);
  if (!r) throw new CorruptImageError('vhdx', `region table has no ${name} region`, { file: src.name });
  if (r.fileOffset < MiB || r.fileOffset % MiB || r.length === 0 || r.fileOffset + r.length > src.size) {
    throw new CorruptImageError('vhdx', `${name} region (${r.length} bytes at ${r.fileOffset}) is misaligned or lies past the end of the file`, { file: src.name });
  }
  return r;
}

/** Read the BAT and check every entry the disk uses against the file. */
async function readBat(src: ByteSource, region: RegionEntry, md: VhdxMetadata) {
  const file = src.name;
  const chunkRatio = (2 ** 23 * md.logicalSectorSize) / md.blockSize;
  const dataBlocks = Math.ceil(md.virtualSize / md.blockSize);
  const sbBlocks = Math.ceil(dataBlocks / chunkRatio);
  const total = md.hasParent ? sbBlocks * (chunkRatio + 1) : dataBlocks === 0 ? 0 : dataBlocks + Math.floor((dataBlocks - 1) / chunkRatio);
  if (total * 8 > region.length) {
    throw new CorruptImageError('vhdx', `BAT region (${region.length} bytes) is too small for ${total} entries`, { file, offset: region.fileOffset });
  }
  const raw = await readBytes(src, region.fileOffset, total * 8, 'vhdx', 'BAT');
  const bat = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const where = (i: number) => ({ file, offset: region.fileOffset + i * 8 });
  for (let b = 0; b < dataBlocks; b++) {
    const i = b + Math.floor(b / chunkRatio);
    const { state, offset } = batEntry(bat, i);
    if (!KNOWN_STATES.includes(state)) throw new CorruptImageError('vhdx', `BAT entry ${i} has reserved payload state ${state}`, where(i));
    if (state === PAYLOAD_PARTIALLY_PRESENT) {
      if (!md.hasParent) throw new CorruptImageError('vhdx', `BAT entry ${i} is PARTIALLY_PRESENT in a disk without a parent`, where(i));
      const si = Math.floor(b / chunkRatio) * (chunkRatio + 1) + chunkRatio;
      const sb = batEntry(bat, si);
      if (sb.state !== SB_PRESENT) throw new CorruptImageError('vhdx', `BAT entry ${i} is PARTIALLY_PRESENT but its sector bitmap (entry ${si}) is not present`, where(si));
      if (sb.offset === undefined || sb.offset < MiB || sb.offset + MiB > src.size) throw new CorruptImageError('vhdx', `sector bitmap entry ${si} points past the end of the file`, where(si));
    }
    if (state === PAYLOAD_FULLY_PRESENT || state === PAYLOAD_PARTIALLY_PRESENT) {
      const used = Math.min(md.blockSize, md.virtualSize - b * md.blockSize);
      if (offset === undefined || offset < MiB || offset + used > src.size) {
        throw new CorruptImageError('vhdx', `BAT entry ${i} (block ${b}) points past the end of the file`, where(i));
      }
    }
  }
  return { bat, chunkRatio, dataBlocks };
}

const guidKey = (s: string) => s.trim().replace(/^\{|\}$/g, '').toLowerCase();

function parentRef(md: VhdxMetadata, file: string): BackingRef {
  const loc = md.parentLocator!;
  const linkage = loc.get('parent_linkage');
  if (!linkage) throw new CorruptImageError('vhdx', 'parent locator has no parent_linkage', { file });
  const linkages = [linkage, loc.get('parent_linkage2')].filter((x): x is string => !!x).map(guidKey);
  const names: string[] = [];
  const rel = loc.get('relative_path');
  if (rel) addUnique(names, windowsPathCandidates(rel));
  for (const key of ['volume_path', 'absolute_win32_path']) {
    const v = loc.get(key);
    if (!v) continue;
    const p = v.startsWith('\\\\?\\') ? v.slice(4) : v;
    addUnique(names, p.startsWith('Volume{') ? [pathBaseName(p)] : windowsPathCandidates(p));
  }
  if (names.length === 0) throw new CorruptImageError('vhdx', 'parent locator has no relative_path, volume_path or absolute_win32_path', { file });
  const lss = md.logicalSectorSize;
  return {
    name: names[0]!,
    alternatives: names.slice(1),
    check(parent: FormatImage): string | undefined {
      if (!(parent instanceof VhdxImage)) return `the parent of a differencing VHDX must be a VHDX (found ${parent.format})`;
      if (!linkages.includes(guidKey(parent.dataWriteGuid))) return `its DataWriteGuid {${parent.dataWriteGuid}} is not the parent_linkage {${linkages.join('} or {')}} recorded in the child`;
      if (parent.logicalSectorSize !== lss) return `its logical sector size ${parent.logicalSectorSize} differs from the child's ${lss}`;
      return undefined;
    },
  };
}

export async function openVhdx(ctx: OpenContext): Promise<VhdxImage> {
  const raw = ctx.source;
  const file = raw.name;
  if (ctx.writable) throw new ReadOnlyError('vhdx: writing VHDX images is not supported (open read-only)', { file });
  const creator = await readFileIdentifier(raw);
  const header = await readCurrentHeader(raw);
  if (header.version !== 1) throw new UnsupportedFeatureError('vhdx', `format version ${header.version} (only 1 is defined)`, { file, offset: header.offset + 66 });
  let src: ByteSource = raw;
  let log: VhdxLayout['log'];
  if (hasLog(header)) {
    const r = await replayLog(raw, header);
    src = r.source;
    log = { entries: r.entries, sectors: r.sectors };
  }
  const regions = await readRegionTable(src);
  for (const r of regions) {
    if (r.required && r.guid !== BAT_REGION && r.guid !== METADATA_REGION) throw new UnsupportedFeatureError('vhdx', `required region ${r.guid}`, { file });
  }
  const metaRegion = findRegion(regions, METADATA_REGION, 'metadata', src);
  const batRegion = findRegion(regions, BAT_REGION, 'BAT', src);
  const md = await readMetadata(src, metaRegion.fileOffset, metaRegion.length);
  const { bat, chunkRatio, dataBlocks } = await readBat(src, batRegion, md);
  const layout: VhdxLayout = { header, creator, md, regions, bat, chunkRatio, dataBlocks, log };
  if (md.hasParent) layout.backingRef = parentRef(md, file);
  return new VhdxImage(src, file, layout);
}

export const vhdxDriver: FormatDriver = {
  ...vhdxIdentity,
  open: openVhdx,
};
