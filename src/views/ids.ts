// Stable identifiers for views. An emulator's media registry (VirtualBox keys disks by UUID)
// must recognise the same input on the next mount, so UUIDs, VMDK CIDs and the like are derived
// from the input's identity with SHA-256, never drawn at random. Each format and field gets its
// own `purpose`, so NAME.vdi and NAME.vhd registered side by side do not collide.

import { createHash } from 'node:crypto';

/** n bytes (n <= 32) derived from identity and purpose. */
export function stableBytes(identity: string, purpose: string, n: number): Uint8Array {
  const h = createHash('sha256').update(`anydisk-view\0${purpose}\0${identity}`).digest();
  return new Uint8Array(h.buffer, h.byteOffset, n).slice();
}

/**
 * A UUID in RFC 4122 byte order, name-based: the layout of a version-5 UUID (version nibble 5,
 * variant 10xx) filled from SHA-256 instead of SHA-1.
 */
export function stableUuid(identity: string, purpose: string): Uint8Array {
  const b = stableBytes(identity, purpose, 16);
  b[6] = (b[6]! & 0x0f) | 0x50;
  b[8] = (b[8]! & 0x3f) | 0x80;
  return b;
}

/** The usual text form, xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx, of RFC-order bytes. */
export function uuidString(b: Uint8Array): string {
  const h = Buffer.from(b).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

/**
 * The IPRT / Microsoft GUID storage layout used by VDI: the first three fields little-endian.
 * VirtualBox shows the RFC text of the UUID we started from, and qemu swaps them back.
 */
export function uuidMixedEndian(b: Uint8Array): Uint8Array {
  const o = Uint8Array.from(b);
  o[0] = b[3]!;
  o[1] = b[2]!;
  o[2] = b[1]!;
  o[3] = b[0]!;
  o[4] = b[5]!;
  o[5] = b[4]!;
  o[6] = b[7]!;
  o[7] = b[6]!;
  return o;
}
