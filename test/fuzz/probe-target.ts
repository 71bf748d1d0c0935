// Small files that start (or end) with another format's magic and little else, opened with
// format auto: every driver's probe sees them, and the one that claims them parses a header
// that is mostly missing. Cheap cases that reach the first checks of every driver.

import { join } from 'node:path';
import type { Rng } from './rng.js';
import { seedRoot } from './seeds.js';

const HEAD_MAGICS: Array<[string, Uint8Array]> = [
  ['qcow2', Uint8Array.from([0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3])],
  ['qcow2v2', Uint8Array.from([0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 2])],
  ['qcow1', Uint8Array.from([0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 1])],
  ['vmdk', Buffer.from('KDMV\x01\x00\x00\x00', 'latin1')],
  ['cowd', Buffer.from('COWD\x01\x00\x00\x00', 'latin1')],
  ['vmdk-desc', Buffer.from('# Disk DescriptorFile\ncreateType="monolithicFlat"\nRW 1 FLAT "x" 0\n', 'latin1')],
  ['vhdx', Buffer.from('vhdxfile', 'latin1')],
  ['ewf', Uint8Array.from([0x45, 0x56, 0x46, 0x09, 0x0d, 0x0a, 0xff, 0x00, 0x01, 0x01, 0x00, 0x00, 0x00])],
  ['ewf2', Uint8Array.from([0x45, 0x56, 0x46, 0x32, 0x0d, 0x0a, 0x81, 0x00])],
  ['smart', Uint8Array.from([0x4d, 0x56, 0x46, 0x09, 0x0d, 0x0a, 0xff, 0x00])],
  ['aff', Buffer.from('AFF10\r\n\0AFF\0', 'latin1')],
  ['vhd', Buffer.from('conectix', 'latin1')],
];
const TAIL_MAGICS: Array<[string, Uint8Array, number]> = [
  ['vhd-footer', Buffer.from('conectix', 'latin1'), 512],
  ['dmg-koly', Buffer.from('koly\x00\x00\x00\x04\x00\x00\x02\x00', 'latin1'), 512],
];
const VDI_AT = 0x40;

export function probeCase(rng: Rng): { bytes: Uint8Array; name: string; steps: string[] } {
  const len = rng.skewed(rng.chance(0.8) ? 4096 : 1 << 20);
  const bytes = new Uint8Array(len);
  const fill = rng.int(3);
  if (fill === 1) for (let i = 0; i < len; i++) bytes[i] = rng.int(256);
  else if (fill === 2) for (let i = 0; i < len; i += 4) bytes[i + 3] = rng.int(4); // small big-endian u32s
  const r = rng.int(HEAD_MAGICS.length + TAIL_MAGICS.length + 1);
  let what: string;
  if (r < HEAD_MAGICS.length) {
    const [n, m] = HEAD_MAGICS[r]!;
    bytes.set(m.subarray(0, Math.min(m.length, len)));
    what = n;
  } else if (r < HEAD_MAGICS.length + TAIL_MAGICS.length) {
    const [n, m, back] = TAIL_MAGICS[r - HEAD_MAGICS.length]!;
    const at = Math.max(0, len - back);
    bytes.set(m.subarray(0, Math.min(m.length, len - at)), at);
    what = n;
  } else {
    if (len >= VDI_AT + 8) bytes.set([0x7f, 0x10, 0xda, 0xbe, 0x01, 0x00, 0x01, 0x00], VDI_AT);
    what = 'vdi';
  }
  return { bytes, name: join(seedRoot(), 'probe', `case.${what}`), steps: [`${what} magic in ${len} bytes (${['zeros', 'random', 'small numbers'][fill]})`] };
}
