// The Apple DMG / UDIF driver (read-only). Spec references: libyal/libmodi "Mac OS disk image
// types" (koly trailer, mish tables; note its entry-count offset of 104 is wrong, 200 is right),
// qemu block/dmg.c (offset arithmetic, 64 MiB chunk bound), node-udif. Layout: koly.ts (trailer),
// plist.ts + mish.ts (block tables from the XML plist or the binary resource fork),
// decompress.ts + adc.ts + lzfse.ts (chunk codecs), image.ts (reads).
// Refused clearly: encrypted images (encrcdsa / cdsaencr), segmented images, unknown chunk types.

import { CorruptImageError, ReadOnlyError, UnsupportedFeatureError } from '../../core/errors.js';
import { readBytes, type ByteSource } from '../../sources/source.js';
import type { FormatDriver, OpenContext } from '../types.js';
import { dmgIdentity, startsWith } from './probe.js';
import { DmgImage, type DmgLayout } from './image.js';
import { readKoly } from './koly.js';
import {
  blkxFromPlist,
  blkxFromResourceFork,
  CHUNK_ADC,
  CHUNK_BZIP2,
  CHUNK_IGNORE,
  CHUNK_LZFSE,
  CHUNK_LZMA,
  CHUNK_RAW,
  CHUNK_ZERO,
  CHUNK_ZLIB,
  parseMish,
  type Chunk,
} from './mish.js';
import { parsePlist } from './plist.js';

/** qemu's bound on one chunk, compressed or not (DMG_LENGTHS_MAX). */
export const MAX_CHUNK = 64 * 1024 * 1024;
const MAX_TABLES_BYTES = 64 * 1024 * 1024;
const COMPRESSED = [CHUNK_ADC, CHUNK_ZLIB, CHUNK_BZIP2, CHUNK_LZMA, CHUNK_LZFSE];

function checkChunks(chunks: Chunk[], size: number, src: ByteSource): void {
  const file = src.name;
  chunks.sort((a, b) => a.offset - b.offset);
  let prevEnd = 0;
  for (const c of chunks) {
    const where = `chunk at guest offset ${c.offset} of "${c.table}"`;
    if (c.offset < prevEnd) throw new CorruptImageError('dmg', `${where} overlaps the previous chunk`, { file });
    if (c.offset + c.length > size) throw new CorruptImageError('dmg', `${where} ends past the disk size ${size}`, { file });
    prevEnd = c.offset + c.length;
    if (c.type === CHUNK_ZERO || c.type === CHUNK_IGNORE) continue;
    if (c.type === CHUNK_RAW) {
      if (c.fileOffset + c.length > src.size) throw new CorruptImageError('dmg', `raw ${where} lies past the end of the file`, { file, offset: c.fileOffset });
      continue;
    }
    if (!COMPRESSED.includes(c.type)) throw new UnsupportedFeatureError('dmg', `chunk type 0x${c.type.toString(16)} (${where})`, { file });
    if (c.length > MAX_CHUNK || c.fileLength > MAX_CHUNK) {
      throw new CorruptImageError('dmg', `${where} is larger than ${MAX_CHUNK} bytes (${c.length} decoded, ${c.fileLength} stored)`, { file });
    }
    if (c.fileOffset + c.fileLength > src.size) throw new CorruptImageError('dmg', `${where} lies past the end of the file`, { file, offset: c.fileOffset });
  }
}

export async function openDmg(ctx: OpenContext): Promise<DmgImage> {
  const src = ctx.source;
  const file = src.name;
  if (ctx.writable) throw new ReadOnlyError('dmg: DMG images can only be opened read-only', { file });
  const head = await readBytes(src, 0, Math.min(8, src.size), 'dmg', 'header');
  const tail = await readBytes(src, Math.max(0, src.size - 8), Math.min(8, src.size), 'dmg', 'trailer');
  if (startsWith(head, 0, 'encrcdsa') || startsWith(tail, 0, 'cdsaencr')) {
    throw new UnsupportedFeatureError('dmg', 'encrypted disk image (AES "encrcdsa"/"cdsaencr" wrapper); decrypt it with hdiutil first', { file });
  }
  const koly = await readKoly(src);
  if (koly.segmentCount > 1) throw new UnsupportedFeatureError('dmg', `segmented image (${koly.segmentCount} segments)`, { file });
  if (koly.dataForkOffset + koly.dataForkLength > src.size) throw new CorruptImageError('dmg', 'data fork lies past the end of the file', { file, offset: koly.offset + 24 });
  let tables: Array<[string, Uint8Array]>;
  let from: DmgLayout['source'];
  if (koly.xmlLength > 0) {
    if (koly.xmlLength > MAX_TABLES_BYTES || koly.xmlOffset + koly.xmlLength > src.size) {
      throw new CorruptImageError('dmg', `XML plist (${koly.xmlLength} bytes at ${koly.xmlOffset}) is too large or lies past the end of the file`, { file, offset: koly.offset + 0xd8 });
    }
    const xml = await readBytes(src, koly.xmlOffset, koly.xmlLength, 'dmg', 'XML plist');
    tables = blkxFromPlist(parsePlist(new TextDecoder('utf-8').decode(xml), file), file);
    from = 'XML plist';
  } else if (koly.rsrcForkLength > 0) {
    if (koly.rsrcForkLength > MAX_TABLES_BYTES || koly.rsrcForkOffset + koly.rsrcForkLength > src.size) {
      throw new CorruptImageError('dmg', `resource fork (${koly.rsrcForkLength} bytes at ${koly.rsrcForkOffset}) is too large or lies past the end of the file`, { file, offset: koly.offset + 40 });
    }
    tables = blkxFromResourceFork(await readBytes(src, koly.rsrcForkOffset, koly.rsrcForkLength, 'dmg', 'resource fork'), file);
    from = 'resource fork';
  } else {
    throw new CorruptImageError('dmg', 'trailer names neither an XML plist nor a resource fork (no block tables)', { file, offset: koly.offset });
  }
  const chunks: Chunk[] = [];
  let end = 0;
  for (const [name, data] of tables) {
    const t = parseMish(data, name, koly.dataForkOffset, file);
    end = Math.max(end, (t.firstSector + t.sectorCount) * 512);
    for (const c of t.chunks) {
      chunks.push(c);
      end = Math.max(end, c.offset + c.length);
    }
  }
  const size = koly.sectorCount > 0 ? koly.sectorCount * 512 : end;
  if (!Number.isSafeInteger(size)) throw new CorruptImageError('dmg', `sector count ${koly.sectorCount} is too large`, { file });
  checkChunks(chunks, size, src);
  return new DmgImage(src, file, { koly, size, chunks, tables: tables.length, source: from });
}

export const dmgDriver: FormatDriver = {
  ...dmgIdentity,
  open: openDmg,
};
