// The raw view: NAME.dd is the disk's bytes, padded with zeros to a whole sector.
import type { Disk } from '../core/disk.js';
import { layout, RegionFile, sectorPadded } from './regions.js';
import type { ViewContext, ViewDriver, ViewFile } from './types.js';

export const rawView: ViewDriver = {
  name: 'raw',
  aliases: ['dd'],
  description: 'the disk as a plain file (NAME.dd)',
  build(disk: Disk, ctx: ViewContext): ViewFile[] {
    const { pad } = sectorPadded(disk.size);
    return [
      new RegionFile(
        `${ctx.baseName}.dd`,
        layout([
          { kind: 'disk', length: disk.size, diskOffset: 0 },
          { kind: 'zero', length: pad },
        ]),
        disk,
      ),
    ];
  },
};
