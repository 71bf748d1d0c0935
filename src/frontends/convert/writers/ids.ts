// Random identifiers for new images (each convert makes a new disk, as qemu-img does).
import { randomBytes } from 'node:crypto';

/** 16 random bytes shaped as an RFC 4122 version-4 UUID in network order. */
export function randomUuid(): Uint8Array {
  const b = new Uint8Array(randomBytes(16));
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  return b;
}

/** The same UUID in Microsoft/IPRT layout (first three fields little-endian). */
export function uuidToLittleEndianFields(u: Uint8Array): Uint8Array {
  const b = new Uint8Array(u);
  b.set([u[3]!, u[2]!, u[1]!, u[0]!, u[5]!, u[4]!, u[7]!, u[6]!], 0);
  return b;
}
