// From command-line words to the Disk a frontend serves: open the image(s), combine several
// (--morph), apply the write mode (read-only, write-through, qcow2 overlay), then the window
// (--offset/--sizelimit) and the partition. Shared by mount, serve and convert, so every
// frontend composes disks the same way.

import type { Disk } from '../core/disk.js';
import { InvalidArgumentError, NotFoundError, ReadOnlyError } from '../core/errors.js';
import { openImage } from '../formats/registry.js';
import type { FormatImage, ImageInfo } from '../formats/types.js';
import { OffsetLayer } from '../layers/offset.js';
import { parseSize } from '../core/size.js';

export type WriteMode = { kind: 'readonly' } | { kind: 'writethrough' } | { kind: 'overlay'; file: string; fresh: boolean };
export type Morph = 'combine' | 'raid0' | 'raid1';

export interface InputSpec {
  images: string[];
  format?: string;
  inopts: Record<string, string>;
  write: WriteMode;
  /** Open every image on its own and combine them; without it several names are one image. */
  morph?: Morph;
  morphopts?: Record<string, string>;
  offset?: number;
  sizelimit?: number;
  partition?: number;
}

export interface OpenedInput {
  disk: Disk;
  /** The image(s) as opened, for info and identity. */
  images: FormatImage[];
  /** info() of every image, in order. */
  infos: ImageInfo[];
  /** Stable identity of the input (views derive their UUIDs from it). */
  identity: string;
  /** One line: how writes are handled. */
  describe: string;
}

const TRUE = new Set(['1', 'true', 'on', 'yes']);

export async function openInput(spec: InputSpec): Promise<OpenedInput> {
  const writable = spec.write.kind === 'writethrough';
  const images: FormatImage[] = [];
  const closeAll = () => Promise.all(images.map((i) => i.close().catch(() => undefined)));
  try {
    if (spec.morph) {
      for (const name of spec.images) images.push(await openImage([name], { format: spec.format, options: spec.inopts, writable }));
    } else {
      images.push(await openImage(spec.images, { format: spec.format, options: spec.inopts, writable }));
    }
    if (writable) {
      for (const img of images) {
        if (img.format === 'raw' && !TRUE.has(spec.inopts['rawwritable'] ?? spec.inopts['qemuwritable'] ?? '')) {
          throw new ReadOnlyError('write-through into a raw image needs --inopts rawwritable=true', { file: img.filename });
        }
        if (img.readOnly) throw new ReadOnlyError(`${img.format} images cannot be written through; use --cache FILE`, { file: img.filename });
      }
    }
    let disk: Disk = images.length === 1 && !spec.morph ? images[0]! : await combine(images, spec.morph ?? 'combine', spec.morphopts ?? {});
    const identity = images.map((i) => i.identity()).join('+');
    let describe = writable ? `write-through into ${spec.images.join(', ')}` : 'read-only';
    if (spec.write.kind === 'overlay') {
      // The overlay brings the whole qcow2 writer: imported only for --cache FILE.
      const { openOverlay } = await import('../layers/overlay.js');
      disk = await openOverlay(spec.write.file, disk, {
        fresh: spec.write.fresh,
        identity,
        backing: images.length === 1 ? qemuBacking(images[0]!) : undefined,
      });
      describe = `writes kept in ${spec.write.file}`;
    }
    if (spec.offset !== undefined || spec.sizelimit !== undefined) disk = new OffsetLayer(disk, spec.offset ?? 0, spec.sizelimit);
    if (spec.partition !== undefined) disk = await partitionOf(disk, spec.partition, spec.images[0]!);
    return { disk, images, infos: images.map((i) => i.info()), identity, describe };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

// qemu's names for the formats it reads. An overlay records its input as backing file only when
// qemu can open it, so qemu-img check/info/convert keep working on overlays over E01 or AFF (the
// binding file still ties those overlays to their input).
const QEMU_FORMATS: Record<string, string> = { raw: 'raw', qcow2: 'qcow2', vmdk: 'vmdk', vdi: 'vdi', vhd: 'vpc', vhdx: 'vhdx', dmg: 'dmg' };

function qemuBacking(image: FormatImage): { name: string; format: string } | undefined {
  const format = QEMU_FORMATS[image.format];
  return format ? { name: image.filename, format } : undefined;
}

/** Several images as one disk (the layers are imported only for --morph or several inputs). */
async function combine(images: Disk[], morph: Morph, opts: Record<string, string>): Promise<Disk> {
  const { ConcatLayer, Raid0Layer, Raid1Layer } = await import('../layers/combine.js');
  switch (morph) {
    case 'combine':
      return new ConcatLayer(images);
    case 'raid0': {
      const chunk = opts['raid_chunksize'] ? parseSize(opts['raid_chunksize'], 'raid_chunksize') : 512 * 1024;
      return new Raid0Layer(images, chunk);
    }
    case 'raid1':
      return new Raid1Layer(images);
    default:
      throw new InvalidArgumentError(`unknown morphing '${String(morph)}' (combine, raid0, raid1)`);
  }
}

async function partitionOf(disk: Disk, n: number, name: string): Promise<Disk> {
  const { readPartitionTable } = await import('../layers/partition/table.js');
  const table = await readPartitionTable(disk, name);
  if (!table) throw new NotFoundError('the disk has no partition table', { file: name });
  const p = table.partitions.find((x) => x.index === n);
  if (!p) throw new NotFoundError(`no partition ${n} (the ${table.scheme} table has ${table.partitions.map((x) => x.index).join(', ') || 'none'})`, { file: name });
  return new OffsetLayer(disk, p.start, p.size);
}
