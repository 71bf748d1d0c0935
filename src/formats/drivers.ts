// The format registry: one line per format. Order matters only for equal probe scores.
// A line holds what is free to know (the name and aliases --in / -f accept) and two imports done
// on use: the format's identity (probe, directory test: its light probe.ts), the first time an
// input is probed, and its driver, the first time an image of that format is opened. A command
// given the format (-f qcow2) loads neither the other probes nor the other readers.
// drivers.test.ts checks every line against the identity and driver it loads.
import type { FormatDriver, FormatIdentity, OpenContext, ProbeInput } from './types.js';

export class LazyDriver implements FormatDriver {
  private id: FormatIdentity | undefined;
  private idLoading: Promise<FormatIdentity> | undefined;
  private driver: Promise<FormatDriver> | undefined;

  constructor(
    readonly name: string,
    readonly aliases: readonly string[],
    private readonly importIdentity: () => Promise<FormatIdentity>,
    private readonly importDriver: () => Promise<FormatDriver>,
  ) {}

  /** Import the probe (once); probe(), directoryEntry() and description need it. */
  async loadIdentity(): Promise<FormatIdentity> {
    this.idLoading ??= this.importIdentity().then((id) => (this.id = id));
    return this.idLoading;
  }

  /** The loaded identity; loadProbes() (which probeInput() calls) must have run. */
  identity(): FormatIdentity {
    if (!this.id) throw new Error(`format ${this.name}: probe used before loadProbes()`);
    return this.id;
  }

  get description(): string {
    return this.id?.description ?? this.name;
  }

  probe(input: ProbeInput): number {
    return this.identity().probe(input);
  }

  directoryEntry(dir: string): string | undefined {
    return this.identity().directoryEntry?.(dir);
  }

  /** The full driver (imported on the first call). */
  load(): Promise<FormatDriver> {
    this.driver ??= this.importDriver();
    return this.driver;
  }

  async open(ctx: OpenContext) {
    return (await this.load()).open(ctx);
  }
}

export const DRIVERS: LazyDriver[] = [
  new LazyDriver('raw', ['dd', 'img', 'bin'], async () => (await import('./raw/probe.js')).rawIdentity, async () => (await import('./raw/index.js')).rawDriver),
  new LazyDriver('aff', ['afd', 'afm', 'aaff'], async () => (await import('./aff/probe.js')).affIdentity, async () => (await import('./aff/index.js')).affDriver),
  new LazyDriver('qcow2', ['qcow'], async () => (await import('./qcow2/probe.js')).qcow2Identity, async () => (await import('./qcow2/index.js')).qcow2Driver),
  new LazyDriver('vmdk', [], async () => (await import('./vmdk/probe.js')).vmdkIdentity, async () => (await import('./vmdk/index.js')).vmdkDriver),
  new LazyDriver('vdi', [], async () => (await import('./vdi/probe.js')).vdiIdentity, async () => (await import('./vdi/index.js')).vdiDriver),
  new LazyDriver('vhd', ['vpc'], async () => (await import('./vhd/probe.js')).vhdIdentity, async () => (await import('./vhd/index.js')).vhdDriver),
  new LazyDriver('vhdx', [], async () => (await import('./vhdx/probe.js')).vhdxIdentity, async () => (await import('./vhdx/index.js')).vhdxDriver),
  new LazyDriver('dmg', ['udif'], async () => (await import('./dmg/probe.js')).dmgIdentity, async () => (await import('./dmg/index.js')).dmgDriver),
  new LazyDriver('ewf', ['e01', 's01', 'ex01', 'aewf', 'encase', 'smart'], async () => (await import('./ewf/probe.js')).ewfIdentity, async () => (await import('./ewf/index.js')).ewfDriver),
];

/** Import every format's probe (before probing or looking into a directory). */
export async function loadProbes(): Promise<void> {
  await Promise.all(DRIVERS.map((d) => d.loadIdentity()));
}
