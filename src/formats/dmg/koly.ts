// UDIF trailer "koly" (libmodi "Mac OS disk image types"; qemu block/dmg.c): 512 bytes at the end
// of the file, big-endian.
//   0 "koly"  4 version (4)  8 header size (512)  12 flags  16 running data fork offset
//  24 data fork offset  32 data fork length  40 resource fork offset  48 resource fork length
//  56 segment number  60 segment count  64 segment id[16]  80 data checksum (type, size, 128 bytes)
// 216 (0xD8) XML plist offset  224 (0xE0) XML plist length  352 master checksum
// 488 (0x1E8) image variant  492 (0x1EC) sector count
// qemu looks for "koly" in the last 515 bytes because some DMG sizes are odd; we do the same.

import { FieldReader } from '../../core/bytes.js';
import { CorruptImageError } from '../../core/errors.js';
import { readBytes, type ByteSource } from '../../sources/source.js';

export const KOLY_SIZE = 512;

export interface Koly {
  offset: number;
  version: number;
  flags: number;
  dataForkOffset: number;
  dataForkLength: number;
  rsrcForkOffset: number;
  rsrcForkLength: number;
  segmentNumber: number;
  segmentCount: number;
  xmlOffset: number;
  xmlLength: number;
  imageVariant: number;
  sectorCount: number;
}

function isKoly(b: Uint8Array, at: number): boolean {
  return b[at] === 0x6b && b[at + 1] === 0x6f && b[at + 2] === 0x6c && b[at + 3] === 0x79;
}

/** Where the trailer starts in the last bytes of a file, or -1. */
export function findKoly(tail: Uint8Array): number {
  if (tail.length >= KOLY_SIZE && isKoly(tail, tail.length - KOLY_SIZE)) return tail.length - KOLY_SIZE;
  for (let back = KOLY_SIZE + 1; back <= KOLY_SIZE + 3 && back <= tail.length; back++) {
    if (isKoly(tail, tail.length - back)) return tail.length - back;
  }
  return -1;
}

export async function readKoly(src: ByteSource): Promise<Koly> {
  const n = Math.min(src.size, KOLY_SIZE + 3);
  const tail = await readBytes(src, src.size - n, n, 'dmg', 'trailer');
  const at = findKoly(tail);
  if (at < 0) throw new CorruptImageError('dmg', 'no "koly" trailer in the last 515 bytes', { file: src.name, offset: src.size - n });
  const offset = src.size - n + at;
  const r = new FieldReader(tail.subarray(at, at + KOLY_SIZE), 'dmg', src.name, offset);
  return {
    offset,
    version: r.u32be(4),
    flags: r.u32be(12),
    dataForkOffset: r.u64be(24, 'data fork offset'),
    dataForkLength: r.u64be(32, 'data fork length'),
    rsrcForkOffset: r.u64be(40, 'resource fork offset'),
    rsrcForkLength: r.u64be(48, 'resource fork length'),
    segmentNumber: r.u32be(56),
    segmentCount: r.u32be(60),
    xmlOffset: r.u64be(0xd8, 'XML plist offset'),
    xmlLength: r.u64be(0xe0, 'XML plist length'),
    imageVariant: r.u32be(0x1e8),
    sectorCount: r.u64be(0x1ec, 'sector count'),
  };
}
