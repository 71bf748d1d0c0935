// The VMDK view: NAME.vmdk, a monolithicFlat text descriptor, and NAME-flat.vmdk, the disk data
// padded to 512 bytes (vmware/open-vmdk vmware_vmdk.h; VMware "Virtual Disk Format 1.1").
//
// Descriptor:
//   # Disk DescriptorFile / version=1 / encoding="UTF-8" / CID (stable) / parentCID=ffffffff /
//   createType="monolithicFlat" / RW <sectors> FLAT "NAME-flat.vmdk" 0 / DDB: virtualHWVersion 4,
//   geometry, adapterType, uuid (VMware's form) and uuid.image / .modification / .parent /
//   .parentmodification (VirtualBox's keys).
// Why each DDB entry is there:
// - VirtualBox (VMDK.cpp vmdkParseDescriptor...) generates a random ddb.uuid.image (and the other
//   three) when missing and writes it into the descriptor when opened read-write: a new UUID on
//   every mount breaks its media registry. So all four are present and derived from the identity.
// - VirtualBox accepts PCHS heads <= 16 and sectors <= 63 and recomputes otherwise; qemu ignores
//   the geometry. "ide" (16/63) is used up to 2^28 sectors (128 GiB, the ATA 28-bit limit, beyond
//   which CHS means nothing), "lsilogic" (255/63, what qemu and VMware write for SCSI) above.
// - qemu reads the extent line with sscanf: the file name must not hold '"' or a newline; such
//   characters in NAME become '_' in the flat file's name.
// The descriptor is a MemoryFile: VirtualBox and VMware rewrite it (new CID, modification UUID),
// possibly with another length, so it can grow and shrink; changes stay in memory.

import type { Disk } from '../core/disk.js';
import { stableBytes, stableUuid, uuidString } from './ids.js';
import { MemoryFile } from './memory-file.js';
import { layout, RegionFile, sectorPaddedNonEmpty } from './regions.js';
import type { ViewContext, ViewDriver, ViewFile } from './types.js';

const NULL_UUID = '00000000-0000-0000-0000-000000000000';

/** A name safe inside the descriptor's quoted extent file name. */
export function safeExtentName(name: string): string {
  return name.replace(/["\x00-\x1f\x7f]/g, '_');
}

export function vmdkGeometry(sectors: number): { adapter: 'ide' | 'lsilogic'; cylinders: number; heads: number; sectors: number } {
  const ide = sectors <= 2 ** 28;
  const heads = ide ? 16 : 255;
  return { adapter: ide ? 'ide' : 'lsilogic', cylinders: Math.floor(sectors / (heads * 63)), heads, sectors: 63 };
}

/** VMware's own ddb.uuid form: "xx xx xx xx xx xx xx xx-xx xx xx xx xx xx xx xx". */
function vmwareUuid(b: Uint8Array): string {
  const hex = Array.from(b, (x) => x.toString(16).padStart(2, '0'));
  return `${hex.slice(0, 8).join(' ')}-${hex.slice(8).join(' ')}`;
}

export function vmdkDescriptor(flatName: string, sectors: number, identity: string): string {
  const cid = Buffer.from(stableBytes(identity, 'vmdk:cid', 4)).toString('hex');
  const g = vmdkGeometry(sectors);
  const image = stableUuid(identity, 'vmdk:image');
  return [
    '# Disk DescriptorFile',
    'version=1',
    'encoding="UTF-8"',
    `CID=${cid}`,
    'parentCID=ffffffff',
    'createType="monolithicFlat"',
    '',
    '# Extent description',
    `RW ${sectors} FLAT "${flatName}" 0`,
    '',
    '# The Disk Data Base',
    '#DDB',
    '',
    'ddb.virtualHWVersion = "4"',
    `ddb.geometry.cylinders = "${g.cylinders}"`,
    `ddb.geometry.heads = "${g.heads}"`,
    `ddb.geometry.sectors = "${g.sectors}"`,
    `ddb.adapterType = "${g.adapter}"`,
    `ddb.uuid = "${vmwareUuid(image)}"`,
    `ddb.uuid.image = "${uuidString(image)}"`,
    `ddb.uuid.modification = "${uuidString(stableUuid(identity, 'vmdk:modification'))}"`,
    `ddb.uuid.parent = "${NULL_UUID}"`,
    `ddb.uuid.parentmodification = "${NULL_UUID}"`,
    '',
  ].join('\n');
}

export const vmdkView: ViewDriver = {
  name: 'vmdk',
  description: 'VMware monolithicFlat VMDK (NAME.vmdk descriptor + NAME-flat.vmdk)',
  build(disk: Disk, ctx: ViewContext): ViewFile[] {
    const { padded, pad } = sectorPaddedNonEmpty(disk.size);
    const flatName = safeExtentName(`${ctx.baseName}-flat.vmdk`);
    const sectors = padded / 512;
    const text = vmdkDescriptor(flatName, sectors, ctx.identity);
    const g = vmdkGeometry(sectors);
    const facts: Array<[string, string]> = [
      ['format', 'VMDK monolithicFlat descriptor'],
      ['uuid', uuidString(stableUuid(ctx.identity, 'vmdk:image'))],
      ['extent', `${flatName}, ${sectors} sectors`],
      ['geometry', `${g.cylinders}/${g.heads}/${g.sectors} (${g.adapter})`],
    ];
    const descriptor = new MemoryFile(`${ctx.baseName}.vmdk`, new TextEncoder().encode(text), {
      readOnly: disk.readOnly,
      maxSize: 1 << 20,
      facts,
    });
    const flat = new RegionFile(
      flatName,
      layout([
        { kind: 'disk', length: disk.size, diskOffset: 0 },
        { kind: 'zero', length: pad },
      ]),
      disk,
      [['format', 'VMDK flat extent (raw data)']],
    );
    return [descriptor, flat];
  },
};
