// The format registry: one line per format. Order matters only for equal probe scores.
import type { FormatDriver } from './types.js';
import { rawDriver } from './raw/index.js';
import { affDriver } from './aff/index.js';
import { qcow2Driver } from './qcow2/index.js';
import { vmdkDriver } from './vmdk/index.js';
import { vdiDriver } from './vdi/index.js';
import { vhdDriver } from './vhd/index.js';
import { vhdxDriver } from './vhdx/index.js';
import { dmgDriver } from './dmg/index.js';
import { ewfDriver } from './ewf/index.js';

export const DRIVERS: FormatDriver[] = [
  rawDriver,
  affDriver,
  qcow2Driver,
  vmdkDriver,
  vdiDriver,
  vhdDriver,
  vhdxDriver,
  dmgDriver,
  ewfDriver,
];
