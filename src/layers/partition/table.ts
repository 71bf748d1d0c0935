// Partition tables inside a disk: MBR (with extended/logical partitions) and GPT. Read-only
// parsing, bounded: at most 128 logical partitions, a GPT entry array of at most 1 MiB, no loops
// in the EBR chain. Layout references: the MBR is 446 bytes of boot code, four 16-byte entries,
// 0x55AA; GPT (UEFI spec, chapter 5) has its header at LBA 1 with signature "EFI PART".

import type { Disk } from '../../core/disk.js';
import { CorruptImageError } from '../../core/errors.js';

export interface Partition {
  /** 1-4 primary MBR, 5.. logical; 1.. for GPT. */
  index: number;
  start: number;
  size: number;
  /** MBR type byte as hex ("0x83") or GPT type GUID. */
  type: string;
  name?: string;
  guid?: string;
  bootable?: boolean;
}

export interface PartitionTable {
  scheme: 'mbr' | 'gpt';
  sectorSize: number;
  partitions: Partition[];
  /** GPT disk GUID or the MBR disk signature. */
  id?: string;
}

const EXTENDED = new Set([0x05, 0x0f, 0x85]);
const MAX_LOGICAL = 128;

async function readAt(disk: Disk, offset: number, length: number): Promise<Uint8Array | undefined> {
  if (offset < 0 || offset + length > disk.size) return undefined;
  const buf = new Uint8Array(length);
  await disk.read(buf, offset);
  return buf;
}

function guidString(b: Uint8Array): string {
  const h = (i: number, n: number, rev: boolean) => {
    const s = Array.from(b.subarray(i, i + n));
    return (rev ? s.reverse() : s).map((x) => x.toString(16).padStart(2, '0')).join('');
  };
  return `${h(0, 4, true)}-${h(4, 2, true)}-${h(6, 2, true)}-${h(8, 2, false)}-${h(10, 6, false)}`.toUpperCase();
}

/** The partition table of a disk, or undefined when it has none. */
export async function readPartitionTable(disk: Disk, what = 'disk'): Promise<PartitionTable | undefined> {
  const mbr = await readAt(disk, 0, 512);
  if (!mbr || mbr[510] !== 0x55 || mbr[511] !== 0xaa) return undefined;
  const dv = new DataView(mbr.buffer, mbr.byteOffset, 512);
  const entries = [0, 1, 2, 3].map((i) => {
    const o = 446 + i * 16;
    return { boot: mbr[o]!, type: mbr[o + 4]!, lba: dv.getUint32(o + 8, true), count: dv.getUint32(o + 12, true) };
  });
  if (entries.some((e) => e.boot !== 0 && e.boot !== 0x80)) return undefined; // boot code, not a table
  if (entries.some((e) => e.type === 0xee)) {
    for (const ss of [512, 4096]) {
      const gpt = await readGpt(disk, ss, what);
      if (gpt) return gpt;
    }
  }
  const parts: Partition[] = [];
  for (let i = 0; i < 4; i++) {
    const e = entries[i]!;
    if (e.type === 0 || e.count === 0) continue;
    parts.push(checked({ index: i + 1, start: e.lba * 512, size: e.count * 512, type: hexType(e.type), bootable: e.boot === 0x80 }, disk, what));
    if (EXTENDED.has(e.type)) parts.push(...(await readLogical(disk, e.lba, what)));
  }
  return { scheme: 'mbr', sectorSize: 512, partitions: parts, id: `0x${dv.getUint32(440, true).toString(16).padStart(8, '0')}` };
}

function hexType(t: number): string {
  return `0x${t.toString(16).padStart(2, '0')}`;
}

function checked(p: Partition, disk: Disk, what: string): Partition {
  if (p.start + p.size > disk.size) {
    // A table that claims more than the disk holds: keep the entry but note it, as sfdisk does.
    throw new CorruptImageError('partition table', `partition ${p.index} (${p.start}+${p.size}) ends past the end of the disk (${disk.size})`, { file: what });
  }
  return p;
}

async function readLogical(disk: Disk, extStart: number, what: string): Promise<Partition[]> {
  const out: Partition[] = [];
  const seen = new Set<number>();
  let ebrLba = extStart;
  for (let n = 0; n < MAX_LOGICAL; n++) {
    if (seen.has(ebrLba)) throw new CorruptImageError('partition table', `extended partition chain loops at sector ${ebrLba}`, { file: what });
    seen.add(ebrLba);
    const ebr = await readAt(disk, ebrLba * 512, 512);
    if (!ebr || ebr[510] !== 0x55 || ebr[511] !== 0xaa) break;
    const dv = new DataView(ebr.buffer, ebr.byteOffset, 512);
    const type = ebr[446 + 4]!;
    const rel = dv.getUint32(446 + 8, true);
    const count = dv.getUint32(446 + 12, true);
    if (type !== 0 && count !== 0) {
      out.push(checked({ index: 5 + out.length, start: (ebrLba + rel) * 512, size: count * 512, type: hexType(type) }, disk, what));
    }
    const nextType = ebr[462 + 4]!;
    const nextRel = dv.getUint32(462 + 8, true);
    if (nextType === 0 || nextRel === 0) break;
    ebrLba = extStart + nextRel;
  }
  return out;
}

async function readGpt(disk: Disk, ss: number, what: string): Promise<PartitionTable | undefined> {
  const hdr = await readAt(disk, ss, 92);
  if (!hdr || Buffer.from(hdr.subarray(0, 8)).toString('latin1') !== 'EFI PART') return undefined;
  const dv = new DataView(hdr.buffer, hdr.byteOffset, hdr.length);
  const entriesLba = Number(dv.getBigUint64(72, true));
  const count = dv.getUint32(80, true);
  const entrySize = dv.getUint32(84, true);
  if (entrySize < 128 || entrySize > 4096 || entrySize % 8 !== 0) {
    throw new CorruptImageError('gpt', `invalid partition entry size ${entrySize}`, { file: what, offset: ss + 84 });
  }
  const total = count * entrySize;
  if (total > 1 << 20 || !Number.isSafeInteger(entriesLba * ss) || entriesLba * ss + total > disk.size) {
    throw new CorruptImageError('gpt', `partition entry array (${count} x ${entrySize} at LBA ${entriesLba}) is out of bounds`, { file: what, offset: ss + 72 });
  }
  const arr = (await readAt(disk, entriesLba * ss, total))!;
  const parts: Partition[] = [];
  for (let i = 0; i < count; i++) {
    const e = arr.subarray(i * entrySize, (i + 1) * entrySize);
    if (e.subarray(0, 16).every((b) => b === 0)) continue;
    const edv = new DataView(e.buffer, e.byteOffset, e.length);
    const first = Number(edv.getBigUint64(32, true));
    const last = Number(edv.getBigUint64(40, true));
    if (last < first) throw new CorruptImageError('gpt', `partition ${i + 1} ends before it starts`, { file: what });
    const name = Buffer.from(e.subarray(56, 128)).toString('utf16le').replace(/\0.*$/s, '');
    parts.push(checked({ index: i + 1, start: first * ss, size: (last - first + 1) * ss, type: guidString(e.subarray(0, 16)), guid: guidString(e.subarray(16, 32)), name }, disk, what));
  }
  return { scheme: 'gpt', sectorSize: ss, partitions: parts, id: guidString(hdr.subarray(56, 72)) };
}
