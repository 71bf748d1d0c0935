// Consistency check of a qcow2 image, as qemu-img check does it: count the references to every
// host cluster from the metadata (header, L1/L2 tables of the active state and of every snapshot,
// data clusters, compressed streams, snapshot table, refcount table and blocks, bitmaps) and
// compare them with the stored refcounts. Stored < referenced is a corruption (a write could
// reuse the cluster); stored > referenced is a leak (wasted space). Also checks the "copied" flags
// of the active tables. Repair: leaks are fixed in place; refcount corruptions rebuild the whole
// refcount structure at the end of the file (the old one becomes free space), then fix the flags.
// Spec: qcow2.rst "Host cluster management"; behaviour and messages follow qemu-img check.

import { CorruptImageError, UnsupportedFeatureError } from '../../core/errors.js';
import type { ByteSource } from '../../sources/source.js';
import { AUTOCLEAR_BITMAPS, FORMAT, HDR_INCOMPATIBLE, HDR_REFCOUNT_TABLE, INCOMPAT_DIRTY } from './header.js';
import type { Qcow2Image } from './image.js';
import { COPIED_HI, compressedRange, entryType, offsetOf, readL2, splitOffset, type L2Entry } from './mapping.js';
import { getRefcount, setRefcount } from './refcount.js';

export interface CheckResult {
  corruptions: number;
  leaks: number;
  checkErrors: number;
  corruptionsFixed: number;
  leaksFixed: number;
  imageEndOffset: number;
  totalClusters: number;
  allocatedClusters: number;
  fragmentedClusters: number;
  compressedClusters: number;
  /** Messages in qemu-img's words (it prints them on stderr). */
  messages: string[];
}

const MAX_CHECK_CLUSTERS = 2 ** 26;

interface Scan {
  result: CheckResult;
  computed: Uint32Array;
  stored: Float64Array;
  /** Highest table index with a block, and where the blocks are (table index -> offset). */
  table: number[];
  /** Active L2 tables and their entries, for the copied-flag check. */
  activeL2: Array<{ l1Index: number; l1Entry: bigint; offset: number; data: Uint8Array }>;
}

async function readAt(src: ByteSource, offset: number, length: number): Promise<Uint8Array> {
  const b = new Uint8Array(length);
  const n = await src.read(b, offset);
  if (n < length) throw new CorruptImageError(FORMAT, `short read of ${length} bytes at ${offset}`, { file: src.name, offset });
  return b;
}

async function scan(img: Qcow2Image): Promise<Scan> {
  const src = img.source;
  const h = img.header;
  const cs = img.clusterSize;
  const geo = img.geo;
  const nClusters = Math.ceil(src.size / cs);
  if (nClusters > MAX_CHECK_CLUSTERS) throw new UnsupportedFeatureError(FORMAT, `checking images over ${MAX_CHECK_CLUSTERS} clusters`, { file: img.filename });
  const result: CheckResult = {
    corruptions: 0,
    leaks: 0,
    checkErrors: 0,
    corruptionsFixed: 0,
    leaksFixed: 0,
    imageEndOffset: 0,
    totalClusters: Math.ceil(img.size / cs),
    allocatedClusters: 0,
    fragmentedClusters: 0,
    compressedClusters: 0,
    messages: [],
  };
  const computed = new Uint32Array(nClusters);
  const err = (msg: string) => {
    result.messages.push(msg);
    result.corruptions++;
  };
  const inc = (offset: number, bytes: number, what: string) => {
    if (bytes <= 0) return;
    const first = Math.floor(offset / cs);
    const last = Math.floor((offset + bytes - 1) / cs);
    for (let c = first; c <= last; c++) {
      if (c >= nClusters) {
        err(`ERROR: ${what} at offset 0x${(c * cs).toString(16)} is beyond the end of the image file`);
        return;
      }
      computed[c]!++;
    }
  };
  inc(0, cs, 'header');
  const activeL2: Scan['activeL2'] = [];
  const walkL1 = async (l1Offset: number, l1Size: number, active: boolean) => {
    if (l1Size === 0) return;
    inc(l1Offset, l1Size * 8, 'L1 table');
    if (l1Offset + l1Size * 8 > src.size) return;
    const l1 = await readAt(src, l1Offset, l1Size * 8);
    const v = new DataView(l1.buffer);
    let prevHost = 0;
    for (let i = 0; i < l1Size; i++) {
      const hi = v.getUint32(i * 8);
      const lo = v.getUint32(i * 8 + 4);
      const l2 = offsetOf(hi, lo);
      if (!l2) continue;
      if (l2 % cs) {
        err(`ERROR l2_offset=${l2.toString(16)}: Table is not cluster aligned; L1 entry corrupted`);
        continue;
      }
      inc(l2, cs, 'L2 table');
      if (l2 + cs > src.size) continue;
      const data = await readAt(src, l2, cs);
      if (active) activeL2.push({ l1Index: i, l1Entry: v.getBigUint64(i * 8), offset: l2, data });
      const t = { offset: l2, data, view: new DataView(data.buffer), dirty: false, evicted: false };
      for (let k = 0; k < geo.l2Entries; k++) {
        const e = readL2(t, geo, k);
        const type = entryType(geo, e);
        if (type === 'compressed') {
          if (geo.dataFile) {
            err(`ERROR compressed cluster in an image with an external data file (l2 entry ${hex(e)})`);
            continue;
          }
          if (e.hi & COPIED_HI) err(`ERROR: coffset=0x${compressedRange(geo, e).host.toString(16)}: copied flag must never be set for compressed clusters`);
          const { host, bytes } = compressedRange(geo, e);
          const start = host - (host % 512);
          inc(start, host + bytes - start, 'compressed cluster');
          if (active) {
            result.allocatedClusters++;
            result.compressedClusters++;
            result.fragmentedClusters++; // compressed clusters are fragmented by nature (qemu counts them so)
          }
          continue;
        }
        if (geo.extL2 && e.allocBits & e.zeroBits) err(`ERROR invalid cluster entry 0x${hex(e)}: subcluster both allocated and zero`);
        if (type !== 'normal' && type !== 'zero-alloc') continue;
        const host = offsetOf(e.hi, e.lo);
        if (host % cs) {
          err(`ERROR offset=${host.toString(16)}: Cluster is not properly aligned; L2 entry corrupted.`);
          continue;
        }
        if (active) {
          result.allocatedClusters++;
          if (prevHost && host !== prevHost + cs) result.fragmentedClusters++;
          prevHost = host;
        }
        if (!geo.dataFile) inc(host, cs, 'data cluster');
      }
    }
  };
  await walkL1(h.l1TableOffset, h.l1Size, true);
  for (const sn of img.snapshots) await walkL1(sn.l1TableOffset, sn.l1Size, false);
  if (h.nbSnapshots) inc(h.snapshotsOffset, img.snapshotTableBytes, 'snapshot table');
  // Refcount structures.
  inc(h.refcountTableOffset, h.refcountTableClusters * cs, 'refcount table');
  const rt = await readAt(src, h.refcountTableOffset, h.refcountTableClusters * cs);
  const rtv = new DataView(rt.buffer);
  const perBlock = (cs * 8) / 2 ** h.refcountOrder;
  const table: number[] = [];
  const stored = new Float64Array(nClusters);
  for (let i = 0; i < rt.length / 8; i++) {
    const off = Number(rtv.getBigUint64(i * 8) & ~0x1ffn);
    table.push(off);
    if (!off) continue;
    if (off % cs) {
      err(`ERROR refcount block ${i} is not cluster aligned; refcount table entry corrupted`);
      table[i] = 0;
      continue;
    }
    if (off / cs >= nClusters) {
      err(`ERROR refcount block ${i} is outside image`);
      table[i] = 0;
      continue;
    }
    inc(off, cs, 'refcount block');
    if (i * perBlock >= nClusters) continue;
    const raw = new Uint8Array(cs);
    await src.read(raw, off); // a block cut short by the end of the file reads as zeros
    const blk = new DataView(raw.buffer);
    for (let k = 0; k < perBlock && i * perBlock + k < nClusters; k++) stored[i * perBlock + k] = getRefcount(blk, h.refcountOrder, k);
  }
  // Bitmaps (their directory, tables and data clusters are refcounted too). Like qemu, ignore
  // them when the autoclear bit says a program without bitmap support wrote the image: their
  // clusters then show up as leaks.
  if (h.bitmaps && h.autoclear & AUTOCLEAR_BITMAPS && h.bitmaps.directorySize > 0 && h.bitmaps.directorySize <= 64 * 1024 * 1024) {
    const { directoryOffset: dOff, directorySize: dSize } = h.bitmaps;
    inc(dOff, dSize, 'bitmap directory');
    if (dOff + dSize <= src.size) {
      const dir = await readAt(src, dOff, dSize);
      const dv = new DataView(dir.buffer);
      for (let p = 0, n = 0; p + 24 <= dSize && n < h.bitmaps.count; n++) {
        const tOff = Number(dv.getBigUint64(p) & ~0x1ffn);
        const tSize = dv.getUint32(p + 8);
        const nameSize = dv.getUint16(p + 18);
        const extra = dv.getUint32(p + 20);
        if (tOff && tSize * 8 <= 64 * 1024 * 1024) {
          inc(tOff, tSize * 8, 'bitmap table');
          if (tOff + tSize * 8 <= src.size) {
            const bt = new DataView((await readAt(src, tOff, tSize * 8)).buffer);
            for (let k = 0; k < tSize; k++) {
              const o = Number(bt.getBigUint64(k * 8) & 0x00fffffffffffe00n);
              if (o) inc(o, cs, 'bitmap data');
            }
          }
        }
        p += Math.ceil((24 + extra + nameSize) / 8) * 8;
      }
    }
  }
  return { result, computed, stored, table, activeL2 };
}

function compare(s: Scan, cs: number): Array<[cluster: number, stored: number, computed: number]> {
  const diffs: Array<[number, number, number]> = [];
  let highest = -1;
  for (let c = 0; c < s.computed.length; c++) {
    const a = s.stored[c]!;
    const b = s.computed[c]!;
    if (a > 0 || b > 0) highest = c;
    if (a === b) continue;
    diffs.push([c, a, b]);
    if (a < b) {
      s.result.messages.push(`ERROR cluster ${c} refcount=${a} reference=${b}`);
      s.result.corruptions++;
    } else {
      s.result.messages.push(`Leaked cluster ${c} refcount=${a} reference=${b}`);
      s.result.leaks++;
    }
  }
  s.result.imageEndOffset = (highest + 1) * cs;
  return diffs;
}

function copiedMismatches(s: Scan, img: Qcow2Image): Array<{ offset: number; index: number; set: boolean }> {
  const out: Array<{ offset: number; index: number; set: boolean }> = [];
  const geo = img.geo;
  if (geo.dataFile) return out;
  const cs = img.clusterSize;
  const refOf = (off: number) => s.stored[Math.floor(off / cs)] ?? 0;
  for (const t of s.activeL2) {
    const rc = refOf(t.offset);
    const copied = (t.l1Entry & (1n << 63n)) !== 0n;
    if ((rc === 1) !== copied) {
      s.result.messages.push(`ERROR OFLAG_COPIED L2 cluster: l1_index=${t.l1Index} l1_entry=${t.l1Entry.toString(16)} refcount=${rc}`);
      s.result.corruptions++;
      out.push({ offset: img.header.l1TableOffset + t.l1Index * 8, index: -1, set: rc === 1 });
    }
    const view = { offset: t.offset, data: t.data, view: new DataView(t.data.buffer), dirty: false, evicted: false };
    for (let k = 0; k < geo.l2Entries; k++) {
      const e = readL2(view, geo, k);
      const type = entryType(geo, e);
      if (type !== 'normal' && type !== 'zero-alloc') continue;
      const r = refOf(offsetOf(e.hi, e.lo));
      if ((r === 1) !== ((e.hi & COPIED_HI) !== 0)) {
        s.result.messages.push(`ERROR OFLAG_COPIED data cluster: l2_entry=${hex(e)} refcount=${r}`);
        s.result.corruptions++;
        out.push({ offset: t.offset + k * geo.entryBytes, index: k, set: r === 1 });
      }
    }
  }
  return out;
}

function hex(e: L2Entry): string {
  return ((BigInt(e.hi >>> 0) << 32n) | BigInt(e.lo >>> 0)).toString(16).padStart(16, '0');
}

/** Check the image; with repair, fix what can be fixed (the source must be writable). */
export async function checkQcow2(img: Qcow2Image, opts: { repair?: 'leaks' | 'all' } = {}): Promise<CheckResult> {
  const cs = img.clusterSize;
  let s = await scan(img);
  let diffs = compare(s, cs);
  const copied = copiedMismatches(s, img);
  if (!opts.repair) return s.result;
  const first = s.result;
  const src = img.source;
  const h = img.header;
  let fixedLeaks = 0;
  let fixedCorruptions = 0;
  const corrupt = diffs.some(([, a, b]) => a < b);
  if (corrupt && opts.repair === 'all') {
    first.messages.push('Rebuilding refcount structure');
    await rebuild(img, s);
    fixedCorruptions += diffs.filter(([, a, b]) => a < b).length;
    fixedLeaks += diffs.filter(([, a, b]) => a > b).length;
  } else if (diffs.some(([, a, b]) => a > b)) {
    // Leaks: lower the stored refcounts in place (only ever decreases).
    const byBlock = new Map<number, Array<[number, number]>>();
    const perBlock = (cs * 8) / 2 ** h.refcountOrder;
    for (const [c, a, b] of diffs) {
      if (a <= b) continue;
      const ti = Math.floor(c / perBlock);
      if (!byBlock.has(ti)) byBlock.set(ti, []);
      byBlock.get(ti)!.push([c % perBlock, b]);
      first.messages.push(`Repairing cluster ${c} refcount=${a} reference=${b}`);
      fixedLeaks++;
    }
    for (const [ti, list] of byBlock) {
      const off = s.table[ti]!;
      const blk = await readAt(src, off, cs);
      const v = new DataView(blk.buffer);
      for (const [k, val] of list) setRefcount(v, h.refcountOrder, k, val);
      await src.write(blk, off);
    }
    await src.flush();
  }
  if (opts.repair === 'all' && (copied.length || fixedCorruptions)) {
    s = await scan(img);
    diffs = compare(s, cs);
    for (const m of copiedMismatches(s, img)) {
      const b = await readAt(src, m.offset, 4);
      const v = new DataView(b.buffer);
      v.setUint32(0, m.set ? (v.getUint32(0) | COPIED_HI) >>> 0 : v.getUint32(0) & ~COPIED_HI);
      await src.write(b, m.offset);
      fixedCorruptions++;
    }
    await src.flush();
  }
  if (opts.repair === 'all' && h.incompatible & INCOMPAT_DIRTY) {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, h.incompatible & ~INCOMPAT_DIRTY);
    await src.write(b, HDR_INCOMPATIBLE);
    await src.flush();
  }
  first.leaksFixed = fixedLeaks;
  first.corruptionsFixed = fixedCorruptions;
  return first;
}

/**
 * Write a new refcount table and blocks after the last referenced cluster, holding exactly the
 * computed references (plus the new structures), sync, then point the header at them.
 */
async function rebuild(img: Qcow2Image, s: Scan): Promise<void> {
  const src = img.source;
  const h = img.header;
  const cs = img.clusterSize;
  const order = h.refcountOrder;
  const perBlock = (cs * 8) / 2 ** order;
  // References without the old refcount structures.
  const refs = Float64Array.from(s.computed);
  const drop = (off: number, n: number) => {
    for (let c = Math.floor(off / cs); c < Math.ceil((off + n) / cs) && c < refs.length; c++) refs[c] = Math.max(0, refs[c]! - 1);
  };
  drop(h.refcountTableOffset, h.refcountTableClusters * cs);
  for (const off of s.table) if (off) drop(off, cs);
  let end = refs.length;
  while (end > 0 && refs[end - 1] === 0) end--;
  const start = end; // new structures go right after the last used cluster
  let tc = 1;
  let nb = 1;
  for (let i = 0; i < 100; i++) {
    const total = start + tc + nb;
    const b = Math.ceil(total / perBlock);
    const t = Math.ceil((b * 8) / cs);
    if (b === nb && t === tc) break;
    nb = b;
    tc = t;
  }
  const total = start + tc + nb;
  const blocks = new Uint8Array(nb * cs);
  for (let c = 0; c < total; c++) {
    const v = c < start ? refs[c]! : 1;
    if (!v) continue;
    const k = Math.floor(c / perBlock);
    setRefcount(new DataView(blocks.buffer, k * cs, cs), order, c % perBlock, v);
  }
  const table = new Uint8Array(tc * cs);
  const tv = new DataView(table.buffer);
  for (let k = 0; k < nb; k++) {
    const [hi, lo] = splitOffset((start + tc + k) * cs);
    tv.setUint32(k * 8, hi);
    tv.setUint32(k * 8 + 4, lo);
  }
  await src.write(table, start * cs);
  await src.write(blocks, (start + tc) * cs);
  await src.flush();
  const hdr = new Uint8Array(12);
  const hv = new DataView(hdr.buffer);
  hv.setBigUint64(0, BigInt(start * cs));
  hv.setUint32(8, tc);
  await src.write(hdr, HDR_REFCOUNT_TABLE);
  await src.flush();
  h.refcountTableOffset = start * cs;
  h.refcountTableClusters = tc;
}

/** qemu-img check's human report. */
export function formatCheck(r: CheckResult): string {
  const lines: string[] = [];
  if (r.corruptions === 0 && r.leaks === 0 && r.checkErrors === 0) lines.push('No errors were found on the image.');
  else {
    if (r.corruptions) lines.push('', `${r.corruptions} errors were found on the image.`, 'Data may be corrupted, or further writes to the image may corrupt it.');
    if (r.leaks) lines.push('', `${r.leaks} leaked clusters were found on the image.`, 'This means waste of disk space, but no harm to data.');
    if (r.checkErrors) lines.push('', `${r.checkErrors} internal errors have occurred during the check.`);
  }
  if (r.totalClusters && r.allocatedClusters) {
    const pct = (n: number) => percent(n, r.totalClusters);
    const pctA = (n: number) => percent(n, r.allocatedClusters);
    lines.push(`${r.allocatedClusters}/${r.totalClusters} = ${pct(r.allocatedClusters)}% allocated, ${pctA(r.fragmentedClusters)}% fragmented, ${pctA(r.compressedClusters)}% compressed clusters`);
  }
  if (r.imageEndOffset) lines.push(`Image end offset: ${r.imageEndOffset}`);
  return lines.join('\n') + '\n';
}

/** printf("%0.2f") of a percentage: exact ties round to even, as glibc does. */
function percent(n: number, of: number): string {
  const x = (100 * n * 100) / of;
  const f = Math.floor(x);
  const r = x - f === 0.5 ? (f % 2 === 0 ? f : f + 1) : Math.round(x);
  return (r / 100).toFixed(2);
}

/** qemu-img check's JSON report. */
export function checkJson(r: CheckResult, filename: string): Record<string, unknown> {
  const out: Record<string, unknown> = { 'image-end-offset': r.imageEndOffset, 'total-clusters': r.totalClusters, 'check-errors': r.checkErrors };
  if (r.corruptions) out.corruptions = r.corruptions;
  if (r.leaks) out.leaks = r.leaks;
  if (r.corruptionsFixed) out['corruptions-fixed'] = r.corruptionsFixed;
  if (r.leaksFixed) out['leaks-fixed'] = r.leaksFixed;
  if (r.allocatedClusters) out['allocated-clusters'] = r.allocatedClusters;
  if (r.fragmentedClusters) out['fragmented-clusters'] = r.fragmentedClusters;
  if (r.compressedClusters) out['compressed-clusters'] = r.compressedClusters;
  out.filename = filename;
  out.format = FORMAT;
  return out;
}
