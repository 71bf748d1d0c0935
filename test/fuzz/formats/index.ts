// The structure-aware analyzers by driver name. A driver without one still gets the generic
// mutations (bit flips, byte sets, truncations, splices) on its seeds.

import { emptyStructure, type Structure } from '../structure.js';
import { analyzeAff } from './aff.js';
import { analyzePartitions } from './partition.js';
import { analyzeDmg } from './dmg.js';
import { analyzeEwf } from './ewf.js';
import { analyzeQcow2 } from './qcow2.js';
import { analyzeVdi } from './vdi.js';
import { analyzeVhd } from './vhd.js';
import { analyzeVhdx } from './vhdx.js';
import { analyzeVmdk } from './vmdk.js';

export type Analyzer = (buf: Uint8Array, seedName: string) => Structure;

/** A raw disk's structure is its partition table (what the partition layer parses). */
const analyzeRaw: Analyzer = (buf) => analyzePartitions(buf);

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
