// The structure-aware analyzers by driver name. A driver without one still gets the generic
// mutations (bit flips, byte sets, truncations, splices) on its seeds.

import { emptyStructure, type Structure } from '../structure.js';
import { analyzeAff } from './aff.js';
import { analyzeDmg } from './dmg.js';
import { analyzeEwf } from './ewf.js';
import { analyzeQcow2 } from './qcow2.js';
import { analyzeVdi } from './vdi.js';
import { analyzeVhd } from './vhd.js';
import { analyzeVhdx } from './vhdx.js';
import { analyzeVmdk } from './vmdk.js';

export type Analyzer = (buf: Uint8Array, seedName: string) => Structure;

function analyzeRaw(buf: Uint8Array): Structure {
  const st = emptyStructure();
  // The MBR: partition entries are what the partition layer parses.
  st.regions.push([0x1be, Math.min(buf.length, 0x200)]);
  for (let i = 0; i < 4; i++) {
    const e = 0x1be + i * 16;
    if (e + 16 > buf.length) break;
    st.fields.push({ offset: e + 4, width: 1, le: true, name: `mbr${i}.type`, kind: 'any' });
    st.fields.push({ offset: e + 8, width: 4, le: true, name: `mbr${i}.lba`, kind: 'offset' });
    st.fields.push({ offset: e + 12, width: 4, le: true, name: `mbr${i}.sectors`, kind: 'count' });
  }
  return st;
}

export const ANALYZERS: Record<string, Analyzer> = {
  raw: analyzeRaw,
  aff: analyzeAff,
  qcow2: analyzeQcow2,
  vhdx: analyzeVhdx,
  vhd: analyzeVhd,
  vdi: analyzeVdi,
  vmdk: analyzeVmdk,
  ewf: analyzeEwf,
  dmg: analyzeDmg,
};

export function analyze(driver: string, buf: Uint8Array, seedName: string): Structure {
  const a = ANALYZERS[driver];
  return a ? a(buf, seedName) : emptyStructure();
}
