// The VMDK format's names and probe (kept light: the registry loads it at start; index.ts opens).
import type { FormatIdentity, ProbeInput } from '../types.js';
import { looksLikeDescriptor, MAX_DESCRIPTOR_BYTES } from './descriptor.js';
import { COWD_MAGIC, isSeSparseHead, KDMV_MAGIC } from './header.js';

export function u32le(b: Uint8Array, off = 0): number {
  return b.length >= off + 4 ? new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(off, true) : -1;
}

export const vmdkIdentity: FormatIdentity = {
  name: 'vmdk',
  description: 'VMware VMDK (monolithic/split sparse and flat, streamOptimized, vmfs, COWD, SESparse, descriptor files; read-only)',
  probe(input: ProbeInput): number {
    const magic = u32le(input.head);
    if (magic === KDMV_MAGIC || magic === COWD_MAGIC) return 100;
    if (isSeSparseHead(input.head)) return 100;
    if (input.size <= MAX_DESCRIPTOR_BYTES && looksLikeDescriptor(input.head)) return 100;
    return 0;
  },
};
