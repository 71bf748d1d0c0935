// The format registry: one line per format. Order matters only for equal probe scores.
// Each line pairs a format's identity (names and probe, from its light probe.ts) with the import
// of its driver, done the first time an image of that format is opened: a command on a qcow2
// never loads the EWF, AFF or DMG readers (nor their native codecs).
import type { FormatDriver, FormatIdentity, OpenContext } from './types.js';
import { rawIdentity } from './raw/probe.js';
import { affIdentity } from './aff/probe.js';
import { qcow2Identity } from './qcow2/probe.js';
import { vmdkIdentity } from './vmdk/probe.js';
import { vdiIdentity } from './vdi/probe.js';
import { vhdIdentity } from './vhd/probe.js';
import { vhdxIdentity } from './vhdx/probe.js';
import { dmgIdentity } from './dmg/probe.js';
import { ewfIdentity } from './ewf/probe.js';

/** A driver whose open() imports the real one on first use. */
export interface LazyDriver extends FormatDriver {
  /** The full driver (imported on the first call). */
  load(): Promise<FormatDriver>;
}

function lazy(identity: FormatIdentity, importer: () => Promise<FormatDriver>): LazyDriver {
  let loading: Promise<FormatDriver> | undefined;
  const load = () => (loading ??= importer());
  return { ...identity, load, open: async (ctx: OpenContext) => (await load()).open(ctx) };
}

export const DRIVERS: LazyDriver[] = [
  lazy(rawIdentity, async () => (await import('./raw/index.js')).rawDriver),
  lazy(affIdentity, async () => (await import('./aff/index.js')).affDriver),
  lazy(qcow2Identity, async () => (await import('./qcow2/index.js')).qcow2Driver),
  lazy(vmdkIdentity, async () => (await import('./vmdk/index.js')).vmdkDriver),
  lazy(vdiIdentity, async () => (await import('./vdi/index.js')).vdiDriver),
  lazy(vhdIdentity, async () => (await import('./vhd/index.js')).vhdDriver),
  lazy(vhdxIdentity, async () => (await import('./vhdx/index.js')).vhdxDriver),
  lazy(dmgIdentity, async () => (await import('./dmg/index.js')).dmgDriver),
  lazy(ewfIdentity, async () => (await import('./ewf/index.js')).ewfDriver),
];
