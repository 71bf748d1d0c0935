// Opening an EWF1 image (E01 / S01 and the variants ewfacquire writes: EWF, SMART, FTK,
// EnCase 1-7, linen 5-7, EWF-X): walk every segment's sections, read the metadata sections,
// index the chunk tables, and hand a ChunkStore to EwfImage. Layouts: ewf1-sections.ts.

import { inflate } from 'node:zlib';
import { ChunkStore, type ChunkStoreOptions } from './chunk-store.js';
import {
  EVF1_SIGNATURE,
  F,
  parseDigest,
  parseError2,
  parseHash,
  parseSession,
  parseVolume,
  startsWith,
  walkSectionsV1,
  type MediaValues,
  type SectionV1,
  type SectorRange,
  type SessionEntry,
} from './ewf1-sections.js';
import { loadTableV1, readTableHeader, type TableV1 } from './ewf1-tables.js';
import { decodeNarrow, decodeUtf16, mergeAcquisitionInfo, parseFlatXml, parseMainCategory, type AcquisitionInfo } from './header-values.js';
import { EwfImage, type EwfMetadata } from './image.js';
import { openSegmentSet, type OpenedSegment } from './segment-set.js';
import { CorruptImageError } from '../../core/errors.js';
import { readBytes, type ByteSource } from '../../sources/source.js';
import type { OpenContext, StoredHash } from '../types.js';

/** Metadata sections bigger than this are refused (EnCase caps text fields at a few KiB). */
const MAX_META_STORED = 16 * 1024 * 1024;
const MAX_META_TEXT = 64 * 1024 * 1024;

export async function openEwf1(ctx: OpenContext, storeOpts: ChunkStoreOptions): Promise<EwfImage> {
  const segs = await openSegmentSet<SectionV1[]>(ctx, {
    format: F,
    headerSize: 13,
    segmentNumber(head, name) {
      if (!startsWith(head, EVF1_SIGNATURE) || head[8] !== 1) throw new CorruptImageError(F, 'not an EWF1 segment file (bad signature)', { file: name, offset: 0 });
      const n = head[9]! | (head[10]! << 8);
      if (n === 0) throw new CorruptImageError(F, 'segment number 0 in file header', { file: name, offset: 9 });
      return n;
    },
    walk: walkSectionsV1,
    isLast: (w) => w[w.length - 1]!.type === 'done',
  });
  try {
    return await build(segs, storeOpts);
  } catch (err) {
    await Promise.all(segs.map((s) => s.source.close().catch(() => undefined)));
    throw err;
  }
}

async function inflateText(src: ByteSource, s: SectionV1): Promise<Uint8Array> {
  if (s.dataSize > MAX_META_STORED) throw new CorruptImageError(F, `'${s.type}' section of ${s.dataSize} bytes is implausibly large`, { file: src.name, offset: s.offset });
  const stored = await readBytes(src, s.dataOffset, s.dataSize, F, `${s.type} section`);
  return new Promise((resolve, reject) =>
    inflate(stored, { maxOutputLength: MAX_META_TEXT }, (err, out) =>
      err ? reject(new CorruptImageError(F, `'${s.type}' section does not decompress (${err.message})`, { file: src.name, offset: s.dataOffset, cause: err })) : resolve(out),
    ),
  );
}

async function build(segs: OpenedSegment<SectionV1[]>[], storeOpts: ChunkStoreOptions): Promise<EwfImage> {
  const acq: AcquisitionInfo = {};
  const notes: string[] = [];
  const hashes: StoredHash[] = [];
  let media: MediaValues | undefined;
  let mediaFrom = '';
  let badMedia: CorruptImageError | undefined;
  let errors: SectorRange[] = [];
  let sessions: SessionEntry[] = [];
  const seen = new Set<string>();
  let header2Categories = 0;
  let headerLines = '';
  const tables: TableV1[] = [];
  const addHash = (algorithm: StoredHash['algorithm'], value: string | undefined, source: string) => {
    if (!value || hashes.some((h) => h.algorithm === algorithm && h.value === value)) return;
    hashes.push({ algorithm, value: value.toLowerCase(), source });
  };

  for (let si = 0; si < segs.length; si++) {
    const { source: src, walk } = segs[si]!;
    let sectors: SectionV1 | undefined;
    for (let k = 0; k < walk.length; k++) {
      const s = walk[k]!;
      switch (s.type) {
        case 'header2':
        case 'header':
        case 'xheader': {
          if (seen.has(s.type)) break;
          seen.add(s.type);
          const text = await inflateText(src, s);
          if (s.type === 'xheader') {
            mergeAcquisitionInfo(acq, parseFlatXml(decodeNarrow(text)), 'xheader');
          } else {
            const str = s.type === 'header2' ? decodeUtf16(text) : decodeNarrow(text);
            if (s.type === 'header2') header2Categories = Number.parseInt(str, 10) || 0;
            else headerLines = str;
            mergeAcquisitionInfo(acq, parseMainCategory(str), 'ewf1');
          }
          break;
        }
        case 'volume':
        case 'disk':
        case 'data': {
          if (s.dataSize > 1024 * 1024) throw new CorruptImageError(F, `'${s.type}' section of ${s.dataSize} bytes is implausibly large`, { file: src.name, offset: s.offset });
          const v = parseVolume(await readBytes(src, s.dataOffset, s.dataSize, F, `${s.type} section`), src.name, s.dataOffset);
          if (!media) {
            // A damaged volume section can be replaced by the data section of a later segment.
            if (!v.checksumOk) {
              badMedia ??= new CorruptImageError(F, `'${s.type}' section checksum mismatch`, { file: src.name, offset: s.dataOffset });
              break;
            }
            media = v;
            mediaFrom = `${s.type} section of ${src.name}`;
          } else if (v.checksumOk && !media.smart && !v.smart && v.setIdentifier !== media.setIdentifier) {
            throw new CorruptImageError(F, `segment ${si + 1} belongs to another image (set identifier ${v.setIdentifier ?? 'none'}, not ${media.setIdentifier ?? 'none'})`, {
              file: src.name,
              offset: s.dataOffset,
            });
          } else if (v.checksumOk && (v.sectorCount !== media.sectorCount || v.sectorsPerChunk !== media.sectorsPerChunk || v.bytesPerSector !== media.bytesPerSector)) {
            throw new CorruptImageError(F, `segment ${si + 1}'s media values disagree with the ${mediaFrom}`, { file: src.name, offset: s.dataOffset });
          }
          break;
        }
        case 'sectors':
          sectors = s;
          break;
        case 'table': {
          const mirror = walk[k + 1]?.type === 'table2' ? walk[k + 1] : undefined;
          const header = await readTableHeader(src, s, mirror);
          if (header.count > 0) tables.push({ seg: si, table: s, mirror, sectors, header, first: 0, count: header.count });
          break;
        }
        case 'table2': {
          if (walk[k - 1]?.type !== 'table') notes.push(`table2 without a table in ${src.name} at ${s.offset} ignored`);
          break;
        }
        case 'hash': {
          const h = parseHash(await readBytes(src, s.dataOffset, Math.min(s.dataSize, 36), F, 'hash section'));
          addHash('md5', h.md5, h.checksumOk ? 'hash section' : 'hash section (section checksum mismatch)');
          break;
        }
        case 'digest': {
          const h = parseDigest(await readBytes(src, s.dataOffset, Math.min(s.dataSize, 80), F, 'digest section'));
          const tag = h.checksumOk ? 'digest section' : 'digest section (section checksum mismatch)';
          addHash('md5', h.md5, tag);
          addHash('sha1', h.sha1, tag);
          break;
        }
        case 'xhash': {
          const x = parseFlatXml(decodeNarrow(await inflateText(src, s)));
          for (const alg of ['md5', 'sha1', 'sha256'] as const) {
            const v = x.get(alg);
            if (v && /^[0-9a-f]+$/i.test(v) && !/^0+$/.test(v)) addHash(alg, v, 'xhash section');
          }
          break;
        }
        case 'error2': {
          if (s.dataSize > 64 * 1024 * 1024) throw new CorruptImageError(F, `error2 section of ${s.dataSize} bytes is implausibly large`, { file: src.name, offset: s.offset });
          const e = parseError2(await readBytes(src, s.dataOffset, s.dataSize, F, 'error2 section'), src.name, s.dataOffset);
          errors = e.ranges;
          if (!e.checksumOk) notes.push('error2 section checksum mismatch');
          break;
        }
        case 'session': {
          if (s.dataSize > 64 * 1024 * 1024) throw new CorruptImageError(F, `session section of ${s.dataSize} bytes is implausibly large`, { file: src.name, offset: s.offset });
          const e = parseSession(await readBytes(src, s.dataOffset, s.dataSize, F, 'session section'), src.name, s.dataOffset);
          sessions = e.sessions;
          if (!e.checksumOk) notes.push('session section checksum mismatch');
          break;
        }
        case 'ltree':
        case 'ltypes':
          throw new CorruptImageError(F, `'${s.type}' section: this is a logical evidence file (L01), not a disk image`, { file: src.name, offset: s.offset });
        default:
          break;
      }
    }
  }
  const first = segs[0]!;
  if (!media) throw badMedia ?? new CorruptImageError(F, 'no volume, disk or data section: media size unknown', { file: first.name });
  if (badMedia) notes.push(`${badMedia.message}; media values taken from the ${mediaFrom}`);
  const { sectorsPerChunk: spc, bytesPerSector: bps } = media;
  if (bps < 1 || bps > 65536 || spc < 1 || spc > 65536) {
    throw new CorruptImageError(F, `implausible geometry: ${spc} sectors per chunk of ${bps} bytes`, { file: first.name });
  }
  const chunkSize = spc * bps;
  if (chunkSize > 128 * 1024 * 1024) throw new CorruptImageError(F, `chunk size ${chunkSize} is implausibly large`, { file: first.name });
  const mediaSize = media.sectorCount * bps;
  if (!Number.isSafeInteger(mediaSize)) throw new CorruptImageError(F, `media size ${media.sectorCount} x ${bps} is too large`, { file: first.name });
  const needed = Math.ceil(mediaSize / chunkSize);
  if (media.chunkCount < needed) {
    throw new CorruptImageError(F, `volume says ${media.chunkCount} chunks, but ${media.sectorCount} sectors need ${needed}`, { file: first.name });
  }
  let next = 0;
  for (const t of tables) {
    t.first = next;
    next += t.count;
  }
  if (next < needed) {
    throw new CorruptImageError(F, `the chunk tables describe ${next} chunks, the media needs ${needed} (segment or table missing?)`, { file: segs[segs.length - 1]!.name });
  }
  const segments = segs.map((s) => ({ name: s.name, source: s.source }));
  const store = new ChunkStore(F, segments, tables, (ti) => loadTableV1(segments[tables[ti]!.seg]!.source, tables[ti]!, chunkSize, tables[ti]!.first), chunkSize, mediaSize, storeOpts);
  const meta: EwfMetadata = {
    version: 1,
    fileFormat: guessFormat(segs, media, header2Categories, headerLines, tables),
    acquisition: acq,
    mediaType: media.mediaType,
    mediaFlags: media.mediaFlags,
    bytesPerSector: bps,
    sectorCount: media.sectorCount,
    sectorsPerChunk: spc,
    compression: compressionName(media),
    errorGranularity: media.errorGranularity,
    setIdentifier: media.setIdentifier,
    hashes,
    readErrors: errors,
    sessions,
    notes,
  };
  return new EwfImage(segments, store, meta);
}

function compressionName(media: MediaValues): string {
  if (media.compressionLevel === 2) return 'deflate, best';
  if (media.compressionLevel === 1) return 'deflate, fast';
  if (media.compressionLevel === 0) return 'none';
  return 'deflate';
}

/** What wrote the image, from its section layout (libewf guesses the same way). */
function guessFormat(segs: OpenedSegment<SectionV1[]>[], media: MediaValues, header2Categories: number, header: string, tables: TableV1[]): string {
  const first = new Set(segs[0]!.walk.map((s) => s.type));
  const all = new Set(segs.flatMap((s) => s.walk.map((x) => x.type)));
  if (first.has('xheader') || all.has('xhash')) return 'EWF-X';
  if (media.smart) return media.signature === 'SMART' ? 'SMART (EWF-S01)' : 'EWF (original)';
  if (first.has('header2')) {
    if (header2Categories <= 1) return 'EnCase 4';
    return tables.some((t) => t.header.base > 0) || all.has('digest') ? 'EnCase 6-7' : 'EnCase 5';
  }
  const lines = header.replace(/\r\n/g, '\n').split('\n');
  const crlf = header.includes('\r\n');
  if ((Number.parseInt(header, 10) || 0) >= 3) return 'linen 5-7';
  const keys = (lines[2] ?? '').split('\t');
  if (segs[0]!.walk.filter((s) => s.type === 'header').length === 1 && crlf) return 'EnCase 1';
  if (keys.includes('r') && !crlf) return 'FTK Imager';
  return 'EnCase 2-3';
}
