// AFF (Advanced Forensic Format, AFFLIB v1-v3): the `aff` driver for single .aff files, .afd
// directories of .aff files and .afm metadata files with split raw data. Opening walks every
// segment chain once to build the index (segments.ts); the disk itself is image.ts.
// Spec: simsong/AFFLIBv3 lib/afflib_i.h @ 6a52df7a, lib/afflib.h, afflib_pages.cpp, vnode_afd.cpp,
// vnode_afm.cpp; pitfalls in ../shared/SPECS.md ("AFF").

import { basename } from 'node:path';
import { CorruptImageError, InvalidArgumentError, ReadOnlyError, UnsupportedFeatureError } from '../../core/errors.js';
import { isUrl } from '../../sources/locate.js';
import { readBytes, type ByteSource } from '../../sources/source.js';
import { SplitSource } from '../../sources/split.js';
import type { FormatDriver, FormatImage, OpenContext } from '../types.js';
import { affIdentity } from './probe.js';
import { AffImage, type MissingPolicy, type PageRef } from './image.js';
import {
  afdMemberName,
  afmRawName,
  isAfdMember,
  isValidRawExtension,
  listAfdMembers,
  MAX_FILES,
  nextSplitName,
} from './layout.js';
import { MAX_META_SEGMENT, MAX_META_TOTAL, quadValue, textValue, type MetaSegment } from './metadata.js';
import { pageKind } from './pages.js';
import { FORMAT, isEncryptionName, isPageHashName, isSignatureName, pageNumber, walkSegments, type Segment } from './segments.js';

/** Largest page size accepted (AFFLIB's default and its own limit for compressed pages is 16 MiB). */
const MAX_PAGESIZE = 64 * 1024 * 1024;
const DEFAULT_SECTORSIZE = 512;

export const affDriver: FormatDriver = {
  ...affIdentity,
  open: openAff,
};

async function openAff(ctx: OpenContext): Promise<FormatImage> {
  if (ctx.writable) throw new ReadOnlyError('AFF images are read-only', { file: ctx.source.name });
  const missing = missingPolicy(ctx.options['missing']);
  const primary = ctx.source;
  const opened: ByteSource[] = [];
  try {
    // The files holding segments: the one given, or every member of its AFD directory.
    let sources: ByteSource[] = [primary];
    let fileType: 'AFF' | 'AFD' | 'AFM' = 'AFF';
    let filename = primary.name;
    if (!isUrl(primary.name) && isAfdMember(primary.name) && ctx.options['afd'] !== 'off') {
      fileType = 'AFD';
      sources = await openAfdMembers(ctx, opened);
      filename = ctx.names[0] ?? primary.name;
    } else if (isUrl(primary.name) && /\.afd\/file_000\.aff$/i.test(primary.name)) {
      fileType = 'AFD';
      sources = await openAfdSequence(ctx, opened);
    }

    const segments: Segment[] = [];
    let ignored = 0;
    for (let i = 0; i < sources.length; i++) {
      const walk = await walkSegments(sources[i]!, i);
      for (const s of walk.segments) segments.push(s);
      ignored += walk.ignored;
    }
    refuseProtected(segments, ctx, primary.name);

    // First occurrence wins, across AFD members too (afd_get_seg asks the files in order).
    const pages = new Map<number, PageRef>();
    const metaSegs = new Map<string, Segment>();
    for (const s of segments) {
      const pg = pageNumber(s.name);
      if (pg >= 0) {
        if (!pages.has(pg)) pages.set(pg, { file: s.file, offset: s.dataOffset, length: s.dataLength, arg: s.arg, kind: pageKind(s.arg), inline: s.inline });
      } else if (!isPageHashName(s.name) && !metaSegs.has(s.name)) {
        metaSegs.set(s.name, s);
      }
    }
    const meta = await loadMeta(metaSegs, sources);

    const typeText = textValue(meta.get('aff_file_type'));
    if (fileType === 'AFF' && (typeText === 'AFM' || /\.afm$/i.test(primary.name))) fileType = 'AFM';

    const sectorArg = metaSegs.get('sectorsize')?.arg ?? 0;
    const sectorsize = sectorArg > 0 && sectorArg <= 1024 * 1024 ? sectorArg : DEFAULT_SECTORSIZE;
    const pagesizeSeg = metaSegs.get('pagesize') ?? metaSegs.get('segsize');
    const pagesize = pagesizeSeg?.arg ?? 0;
    if (pagesizeSeg && (pagesize === 0 || pagesize > MAX_PAGESIZE)) {
      throw new CorruptImageError(FORMAT, `page size ${pagesize} out of range (1..${MAX_PAGESIZE})`, {
        file: sources[pagesizeSeg.file]!.name,
        offset: pagesizeSeg.dataOffset,
      });
    }
    const imagesizeMeta = meta.get('imagesize');
    let size: number | undefined;
    if (imagesizeMeta) {
      size = quadValue(imagesizeMeta);
      if (size === undefined) {
        throw new CorruptImageError(FORMAT, 'imagesize segment is not a valid 64-bit value', {
          file: sources[imagesizeMeta.seg.file]!.name,
          offset: imagesizeMeta.seg.dataOffset,
        });
      }
    }
    const badflagData = meta.get('badflag')?.data;
    const badflag = badflagData && badflagData.length >= sectorsize ? badflagData : undefined;

    if (fileType === 'AFM') {
      const raw = await openAfmRaw(ctx, meta, pagesize, size, opened);
      return new AffImage({
        filename,
        fileType,
        sources,
        raw: raw.source,
        rawNames: raw.names,
        size: raw.source.size,
        pagesize,
        sectorsize,
        pages: new Map(),
        meta,
        segmentCount: segments.length,
        ignoredCount: ignored,
        missing,
        badflag,
      });
    }

    if (pagesize === 0 && (pages.size > 0 || (size ?? 0) > 0)) {
      throw new CorruptImageError(FORMAT, 'no pagesize segment: the image cannot be mapped', { file: primary.name });
    }
    if (size === undefined) size = await sizeFromPages(pages, pagesize, sources);
    if (pagesize > 0 && !Number.isSafeInteger(Math.ceil(size / pagesize) * pagesize)) {
      throw new CorruptImageError(FORMAT, `image size ${size} is too large`, { file: primary.name });
    }
    return new AffImage({
      filename,
      fileType,
      sources,
      size,
      pagesize: pagesize || 1,
      sectorsize,
      pages,
      meta,
      segmentCount: segments.length,
      ignoredCount: ignored,
      missing,
      badflag,
    });
  } catch (err) {
    await Promise.allSettled(opened.map((s) => s.close()));
    throw err;
  }
}

function missingPolicy(v: string | undefined): MissingPolicy {
  if (v === undefined || v === 'error') return 'error';
  if (v === 'zero' || v === 'zeros') return 'zero';
  if (v === 'badflag') return 'badflag';
  throw new InvalidArgumentError(`aff: --inopts missing=${v}: expected error, zero or badflag`);
}

function refuseProtected(segments: Segment[], ctx: OpenContext, file: string): void {
  const enc = segments.find((s) => isEncryptionName(s.name));
  if (enc) throw new UnsupportedFeatureError(FORMAT, `encrypted image (segment '${enc.name}')`, { file });
  const sig = segments.find((s) => isSignatureName(s.name));
  if (sig && ctx.options['signatures'] !== 'ignore') {
    throw new UnsupportedFeatureError(FORMAT, `signed image (segment '${sig.name}'; --inopts signatures=ignore reads it unverified)`, { file });
  }
}

/** Read the metadata segments (bounded per segment and in total). */
async function loadMeta(segs: Map<string, Segment>, sources: ByteSource[]): Promise<Map<string, MetaSegment>> {
  const out = new Map<string, MetaSegment>();
  let total = 0;
  for (const [name, seg] of segs) {
    let data = seg.inline;
    if (!data && seg.dataLength <= MAX_META_SEGMENT && total + seg.dataLength <= MAX_META_TOTAL) {
      data = await readBytes(sources[seg.file]!, seg.dataOffset, seg.dataLength, FORMAT, `segment '${name}'`);
      total += seg.dataLength;
    }
    out.set(name, data ? { seg, data } : { seg });
  }
  return out;
}

/** Without an imagesize segment, AFFLIB takes pagesize * highest page + the length of that page. */
async function sizeFromPages(pages: Map<number, PageRef>, pagesize: number, sources: ByteSource[]): Promise<number> {
  let highest = -1;
  for (const pg of pages.keys()) if (pg > highest) highest = pg;
  if (highest < 0) return 0;
  const img = new AffImage({
    filename: sources[0]!.name,
    fileType: 'AFF',
    sources,
    size: Number.MAX_SAFE_INTEGER - (Number.MAX_SAFE_INTEGER % pagesize),
    pagesize,
    sectorsize: DEFAULT_SECTORSIZE,
    pages,
    meta: new Map(),
    segmentCount: 0,
    ignoredCount: 0,
    missing: 'error',
  });
  const len = await img.pageLength(highest);
  const size = highest * pagesize + len;
  if (!Number.isSafeInteger(size)) throw new CorruptImageError(FORMAT, `page ${highest} lies beyond any representable size`, { file: sources[0]!.name });
  return size;
}

async function openAfdMembers(ctx: OpenContext, opened: ByteSource[]): Promise<ByteSource[]> {
  const primary = ctx.source;
  const dir = primary.name.slice(0, primary.name.length - basename(primary.name).length);
  const names = listAfdMembers(dir);
  const mine = basename(primary.name);
  if (!names.includes(mine)) names.push(mine);
  const sources: ByteSource[] = [];
  for (const n of names) {
    if (n === mine) {
      sources.push(primary);
      continue;
    }
    const s = await ctx.openRelated(n);
    opened.push(s);
    sources.push(s);
  }
  return sources;
}

/** Remote AFD: no directory listing, so follow file_000.aff, file_001.aff, ... while they exist. */
async function openAfdSequence(ctx: OpenContext, opened: ByteSource[]): Promise<ByteSource[]> {
  const sources: ByteSource[] = [ctx.source];
  for (let i = 1; i < MAX_FILES; i++) {
    const n = afdMemberName(i);
    if (!(await ctx.relatedExists(n))) break;
    const s = await ctx.openRelated(n);
    opened.push(s);
    sources.push(s);
  }
  return sources;
}

/** The split raw files of an AFM, checked against pages_per_raw_image_file and imagesize. */
async function openAfmRaw(
  ctx: OpenContext,
  meta: Map<string, MetaSegment>,
  pagesize: number,
  imagesize: number | undefined,
  opened: ByteSource[],
): Promise<{ source: ByteSource; names: string[] }> {
  const file = ctx.source.name;
  const extSeg = meta.get('raw_image_file_extension');
  const ext = textValue(extSeg);
  if (!extSeg) throw new CorruptImageError(FORMAT, 'AFM file without a raw_image_file_extension segment', { file });
  if (ext === undefined || !isValidRawExtension(ext)) {
    throw new CorruptImageError(FORMAT, 'AFM raw_image_file_extension is not a valid file extension', { file, offset: extSeg.seg.dataOffset });
  }
  const ppfMeta = meta.get('pages_per_raw_image_file');
  const ppf = ppfMeta ? quadValue(ppfMeta) : 0;
  if (ppf === undefined) throw new CorruptImageError(FORMAT, 'pages_per_raw_image_file is not a valid 64-bit value', { file });
  if (ppf > 0 && pagesize === 0) throw new CorruptImageError(FORMAT, 'AFM is split by pages but has no pagesize segment', { file });
  const splitSize = ppf * pagesize;
  if (!Number.isSafeInteger(splitSize)) throw new CorruptImageError(FORMAT, `split size ${ppf} x ${pagesize} is too large`, { file });

  const names: string[] = [];
  const parts: ByteSource[] = [];
  let name: string | undefined = afmRawName(file, ext);
  let total = 0;
  while (name !== undefined && parts.length < MAX_FILES) {
    if (parts.length > 0) {
      if (imagesize !== undefined && total >= imagesize) break;
      if (!(await ctx.relatedExists(name))) break;
    }
    const s = await ctx.openRelated(name);
    opened.push(s);
    const expect = splitSize > 0 ? splitSize : parts[0]?.size;
    if (expect !== undefined && parts.length > 0 && parts[parts.length - 1]!.size !== expect) {
      throw new CorruptImageError(FORMAT, `split raw file ${names[names.length - 1]} holds ${parts[parts.length - 1]!.size} bytes, expected ${expect}`, { file });
    }
    parts.push(s);
    names.push(basename(name));
    total += s.size;
    name = nextSplitName(name);
  }
  if (splitSize > 0 && parts[parts.length - 1]!.size > splitSize) {
    throw new CorruptImageError(FORMAT, `split raw file ${names[names.length - 1]} is larger than the split size ${splitSize}`, { file });
  }
  if (imagesize !== undefined && total !== imagesize) {
    throw new CorruptImageError(FORMAT, `the raw files hold ${total} bytes but imagesize says ${imagesize}`, { file });
  }
  const source = parts.length === 1 ? parts[0]! : new SplitSource(parts, parts[0]!.name);
  return { source, names };
}
