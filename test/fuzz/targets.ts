// What the fuzzer aims at: every registered format driver (with its seed images) and the small
// parsers of user or network input (CLI sizes and option lists; the NBD protocol once it lands).
// A case is fully determined by (run seed, case index), so the runner can rebuild any case.

import { readFileSync } from 'node:fs';
import { InvalidArgumentError } from '../../src/core/errors.js';
import { parseSize } from '../../src/core/size.js';
import { parseKeyValues } from '../../src/frontends/cli/common.js';
import { allDrivers } from '../../src/formats/registry.js';
import { classify, guardWritableOpens, InvariantError, runImageCase, WRITABLE_DRIVERS, type MemoryMeter, type Outcome } from './engine.js';
import { analyze } from './formats/index.js';
import { mutate } from './mutate.js';
import { nbdSession, runNbdCase } from './nbd-target.js';
import { probeCase } from './probe-target.js';
import { caseSeed, Rng } from './rng.js';
import { READ_ONLY_SEEDS, sandboxFor, sandboxRoot, seedsFor, type SeedFile } from './seeds.js';
import type { Structure } from './structure.js';

export interface TargetSpec {
  id: string;
  kind: 'image' | 'cli' | 'nbd' | 'probe';
  seeds: SeedFile[];
}

/** Every registered driver, then the CLI parsers. Throws for a driver without seed recipe. */
export function allTargets(filter?: (id: string) => boolean): TargetSpec[] {
  const out: TargetSpec[] = [];
  for (const d of allDrivers()) out.push({ id: d.name, kind: 'image', seeds: seedsFor(d.name) });
  out.push({ id: 'probe', kind: 'probe', seeds: [] });
  out.push({ id: 'nbd', kind: 'nbd', seeds: [] });
  out.push({ id: 'cli', kind: 'cli', seeds: [] });
  return filter ? out.filter((t) => filter(t.id)) : out;
}

export interface BuiltCase {
  target: string;
  seed?: string;
  seedPath?: string;
  format?: string;
  writable?: boolean;
  /** An NBD client session rather than an image. */
  nbd?: boolean;
  steps: string[];
  bytes?: Uint8Array;
  text?: string;
}

/** Loads seeds and analyses them once; builds and runs cases. Used by the worker and the runner. */
export class CaseFactory {
  private readonly loaded = new Map<string, { bytes: Uint8Array; st: Structure }>();
  private others: Uint8Array[] = [];

  constructor(
    readonly targets: TargetSpec[],
    readonly runSeed: number,
  ) {}

  private seedData(s: SeedFile): { bytes: Uint8Array; st: Structure } {
    let d = this.loaded.get(s.path);
    if (!d) {
      const bytes = new Uint8Array(readFileSync(s.path));
      d = { bytes, st: analyze(s.driver, bytes, s.name.split('/').pop()!) };
      this.loaded.set(s.path, d);
      if (bytes.length <= 1 << 20 && this.others.length < 16) this.others.push(bytes);
    }
    return d;
  }

  build(index: number): { c: BuiltCase; rng: Rng } {
    const t = this.targets[index % this.targets.length]!;
    const rng = new Rng(caseSeed(this.runSeed, index));
    if (t.kind === 'cli') return { c: { target: t.id, steps: [], text: cliInput(rng) }, rng };
    if (t.kind === 'probe') {
      const p = probeCase(rng);
      return { c: { target: t.id, seed: 'probe', seedPath: p.name, format: 'auto', steps: p.steps, bytes: p.bytes }, rng };
    }
    if (t.kind === 'nbd') {
      const s = nbdSession(rng);
      const m = rng.chance(0.3) ? { bytes: new Uint8Array(s.bytes), steps: ['generated session'] } : mutate(new Uint8Array(s.bytes), s.st, rng);
      return { c: { target: t.id, steps: m.steps, bytes: m.bytes.slice(), nbd: true }, rng };
    }
    const round = Math.floor(index / this.targets.length);
    const seed = t.seeds[round % t.seeds.length]!;
    const { bytes, st } = this.seedData(seed);
    // Every 50th round opens the seed unchanged: the baseline must keep opening.
    const m = round % 50 === 0 ? { bytes, steps: ['unchanged seed'] } : mutate(bytes, st, rng, this.others);
    const format = rng.chance(0.2) ? 'auto' : t.id;
    const writable = WRITABLE_DRIVERS.includes(t.id) && !READ_ONLY_SEEDS.has(`${t.id}/${seed.name}`) && rng.chance(0.3);
    if (writable) m.steps.push('open writable, write, reopen');
    return { c: { target: t.id, seed: seed.name, seedPath: seed.path, format, writable, steps: m.steps, bytes: m.bytes }, rng };
  }

  async run(c: BuiltCase, rng: Rng, meter: MemoryMeter): Promise<Outcome> {
    if (c.text !== undefined) return runCliCase(c.text);
    if (c.nbd) return runNbdCase(c.bytes!, rng, meter);
    if (c.writable) guardWritableOpens(sandboxRoot());
    const name = c.writable ? sandboxFor(this.seedByPath(c.seedPath!)) : c.seedPath!;
    return runImageCase({ bytes: c.bytes!, name, format: c.format!, writable: c.writable }, rng, meter);
  }

  private seedByPath(path: string): SeedFile {
    for (const t of this.targets) for (const s of t.seeds) if (s.path === path) return s;
    throw new Error(`no seed ${path}`);
  }
}

// CLI parsers: sizes/offsets (parseSize) and option lists (parseKeyValues).
const PIECES = ['0', '1', '512', '4096', '1.5', '0.5', '9007199254740991', '9007199254740992', '18446744073709551616', '1e3', '-1', '+1', ' ', '', '.', '..', 'k', 'K', 'M', 'G', 'T', 'P', 'E', 'B', 'iB', 'KiB', 'MB', 'x', '0x10', '\t', '\n', '\0', ',', '=', '1'.repeat(400), 'NaN', 'Infinity'];

function cliInput(rng: Rng): string {
  let s = '';
  const n = 1 + rng.int(5);
  for (let i = 0; i < n; i++) s += rng.chance(0.85) ? rng.pick(PIECES) : String.fromCharCode(rng.int(rng.chance(0.9) ? 128 : 0x10000));
  return s;
}

const MULT: Record<string, number> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40, p: 2 ** 50, e: 2 ** 60 };

export function runCliCase(text: string): Outcome {
  try {
    let v: number | undefined;
    try {
      v = parseSize(text, 'size');
    } catch (err) {
      if (!(err instanceof InvalidArgumentError)) throw err;
    }
    if (v !== undefined) {
      if (!Number.isSafeInteger(v) || v < 0) throw new InvariantError(`parseSize(${JSON.stringify(text)}) = ${v}`);
      // Oracle for the plain forms: digits, optional suffix, optional B/iB.
      const m = /^\s*(\d+)\s*([kKmMgGtTpPeE]?)(?:i?[bB])?\s*$/.exec(text);
      if (m) {
        const want = Number(m[1]) * MULT[m[2]!.toLowerCase()]!;
        if (want !== v) throw new InvariantError(`parseSize(${JSON.stringify(text)}) = ${v}, expected ${want}`);
      }
    }
    const kv = parseKeyValues([text, `${text},a=b`]);
    if (kv['a'] !== 'b') throw new InvariantError(`parseKeyValues lost a=b after ${JSON.stringify(text)}`);
    return { kind: v === undefined ? 'rejected' : 'ok' };
  } catch (err) {
    return classify(err, 0);
  }
}
