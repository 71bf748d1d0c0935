// The VMDK text descriptor: a separate small file ("# Disk DescriptorFile") or embedded in a
// monolithicSparse file at descriptorOffset. Lines of `key=value` (CID, parentCID, createType,
// parentFileNameHint; values may be quoted — createType sometimes is not), extent lines
// `RW|RDONLY|NOACCESS <sectors> FLAT|SPARSE|ZERO|VMFS|VMFSSPARSE|SESPARSE|VMFSRDM|VMFSRAW "file" [offset]`,
// and the disk database `ddb.key = "value"`. Reference: libvmdk "VMWare Virtual Disk Format" §2,
// qemu block/vmdk.c vmdk_parse_extents.

import { CorruptImageError } from '../../core/errors.js';
import { FORMAT } from './header.js';

export type ExtentAccess = 'RW' | 'RDONLY' | 'NOACCESS';
export type ExtentType = 'FLAT' | 'SPARSE' | 'ZERO' | 'VMFS' | 'VMFSSPARSE' | 'SESPARSE' | 'VMFSRDM' | 'VMFSRAW';

const EXTENT_TYPES = new Set<string>(['FLAT', 'SPARSE', 'ZERO', 'VMFS', 'VMFSSPARSE', 'SESPARSE', 'VMFSRDM', 'VMFSRAW']);

export interface ExtentLine {
  access: ExtentAccess;
  sectors: number;
  type: ExtentType;
  file?: string;
  /** Start sector inside the file (flat extents). */
  offset: number;
  line: number;
}

export interface Descriptor {
  version?: number;
  cid?: number;
  parentCid?: number;
  createType?: string;
  parentFileNameHint?: string;
  extents: ExtentLine[];
  /** Every key=value pair, ddb.* included, keys as written. */
  values: Map<string, string>;
}

/** Largest descriptor text accepted (qemu reads at most 1 MiB). */
export const MAX_DESCRIPTOR_BYTES = 1 << 20;
const MAX_EXTENTS = 65536;

/** The descriptor text from raw bytes: stops at the first NUL (embedded descriptors are zero-padded). */
export function descriptorText(bytes: Uint8Array): string {
  let end = bytes.indexOf(0);
  if (end < 0) end = bytes.length;
  return Buffer.from(bytes.buffer, bytes.byteOffset, end).toString('utf8');
}

function unquote(v: string): string {
  const t = v.trim();
  if (t.length >= 2 && t.startsWith('"') && t.endsWith('"')) return t.slice(1, -1);
  return t;
}

function parseHex32(v: string, key: string, file: string): number {
  const t = unquote(v);
  if (!/^[0-9a-fA-F]{1,8}$/.test(t)) throw new CorruptImageError(FORMAT, `descriptor: ${key}=${t} is not a 32-bit hex value`, { file });
  return parseInt(t, 16);
}

const EXTENT_RE = /^(RW|RDONLY|NOACCESS)\s+(\d+)\s+([A-Za-z]+)(?:\s+"([^"]*)"(?:\s+(\d+))?)?(?:\s.*)?$/;

export function parseDescriptor(text: string, file: string): Descriptor {
  const d: Descriptor = { extents: [], values: new Map() };
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.replace(/\r$/, '').trim();
    if (!line || line.startsWith('#')) continue;
    const m = EXTENT_RE.exec(line);
    if (m) {
      const type = m[3]!.toUpperCase();
      if (!EXTENT_TYPES.has(type)) throw new CorruptImageError(FORMAT, `descriptor line ${i + 1}: unknown extent type ${m[3]}`, { file });
      const sectors = Number(m[2]);
      if (!Number.isSafeInteger(sectors) || sectors <= 0 || sectors * 512 > Number.MAX_SAFE_INTEGER) {
        throw new CorruptImageError(FORMAT, `descriptor line ${i + 1}: bad extent size ${m[2]}`, { file });
      }
      const offset = m[5] !== undefined ? Number(m[5]) : 0;
      if (!Number.isSafeInteger(offset) || offset * 512 > Number.MAX_SAFE_INTEGER) {
        throw new CorruptImageError(FORMAT, `descriptor line ${i + 1}: bad extent offset ${m[5]}`, { file });
      }
      if (type !== 'ZERO' && m[4] === undefined) {
        throw new CorruptImageError(FORMAT, `descriptor line ${i + 1}: ${type} extent without a file name`, { file });
      }
      if (type !== 'ZERO' && m[4] === '') throw new CorruptImageError(FORMAT, `descriptor line ${i + 1}: empty extent file name`, { file });
      if (d.extents.length >= MAX_EXTENTS) throw new CorruptImageError(FORMAT, `descriptor has more than ${MAX_EXTENTS} extents`, { file });
      d.extents.push({ access: m[1] as ExtentAccess, sectors, type: type as ExtentType, file: m[4], offset, line: i + 1 });
      continue;
    }
    const eq = line.indexOf('=');
    if (eq <= 0) continue; // tolerate unknown lines, as VMware and qemu do
    const key = line.slice(0, eq).trim();
    const value = unquote(line.slice(eq + 1));
    d.values.set(key, value);
    switch (key) {
      case 'version': {
        const v = Number(value);
        if (Number.isInteger(v)) d.version = v;
        break;
      }
      case 'CID':
        d.cid = parseHex32(value, key, file);
        break;
      case 'parentCID':
        d.parentCid = parseHex32(value, key, file);
        break;
      case 'createType':
        d.createType = value;
        break;
      case 'parentFileNameHint':
        d.parentFileNameHint = value;
        break;
    }
  }
  return d;
}

/** Probe: does this look like a text descriptor? */
export function looksLikeDescriptor(head: Uint8Array): boolean {
  const n = Math.min(head.length, 4096);
  if (n < 16) return false;
  const text = Buffer.from(head.buffer, head.byteOffset, n).toString('latin1');
  // Text up to the first NUL; what follows it is ignored, as qemu (a C string) and
  // descriptorText do. qemu rewrites a descriptor in place when it changes the CID and leaves the
  // old text's last bytes after the new NUL when the new CID has fewer hex digits.
  const nul = text.indexOf('\0');
  const body = nul >= 0 ? text.slice(0, nul) : text;
  if (/[\x01-\x08\x0e-\x1f]/.test(body)) return false;
  const t = body.replace(/^\uFEFF/, '').replace(/^\s+/, '');
  if (!/createType\s*=/.test(body)) return false;
  if (t.startsWith('# Disk DescriptorFile')) return true;
  // qemu's probe: comment and blank lines, then version=1|2|3.
  for (const raw of t.split('\n')) {
    const line = raw.replace(/\r$/, '').trim();
    if (!line || line.startsWith('#')) continue;
    return /^version=[123]$/.test(line);
  }
  return false;
}
