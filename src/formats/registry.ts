// Finding the right driver for a file (scored probing; raw only as the fallback), opening it,
// and resolving its backing chain under the open policy.

import { statSync } from 'node:fs';
import { basename, resolve as resolvePath } from 'node:path';
import { AnydiskError, CorruptImageError, NotFoundError, PolicyError, UnknownFormatError } from '../core/errors.js';
import { checkReference, DEFAULT_POLICY, locationExists, openLocation, resolveRef, type OpenPolicy } from '../sources/locate.js';
import type { ByteSource } from '../sources/source.js';
import { DRIVERS, loadProbes } from './drivers.js';
import type { FormatDriver, FormatImage, ImageInfo, OpenContext, ProbeInput } from './types.js';

const HEAD = 64 * 1024;
const TAIL = 4096;

export function allDrivers(): readonly FormatDriver[] {
  return DRIVERS;
}

/** Look a driver up by name or alias (`qemu` and `auto` mean: probe). */
export function findDriver(name: string): FormatDriver | undefined {
  const n = name.toLowerCase();
  return DRIVERS.find((d) => d.name === n || d.aliases?.includes(n));
}

/** The bytes probes look at (and every format's probe loaded, for pickDriver). */
export async function probeInput(source: ByteSource): Promise<ProbeInput> {
  await loadProbes();
  const head = new Uint8Array(Math.min(HEAD, source.size));
  await source.read(head, 0);
  const tailLen = Math.min(TAIL, source.size);
  const tail = new Uint8Array(tailLen);
  await source.read(tail, source.size - tailLen);
  return { name: source.name, size: source.size, head, tail };
}

/** The best-scoring driver; raw when nothing else scores. */
export function pickDriver(input: ProbeInput): FormatDriver {
  let best: FormatDriver | undefined;
  let bestScore = 0;
  for (const d of DRIVERS) {
    if (d.name === 'raw') continue;
    const s = d.probe(input);
    if (s > bestScore) {
      best = d;
      bestScore = s;
    }
  }
  if (best) return best;
  const raw = findDriver('raw');
  if (!raw) throw new UnknownFormatError('no driver recognises this file', { file: input.name });
  return raw;
}

export interface OpenOptions {
  /** Driver name; undefined, `auto` or `qemu` = probe. */
  format?: string;
  writable?: boolean;
  options?: Record<string, string>;
  policy?: OpenPolicy;
  /** Do not open backing files (for `info` of a broken chain, or `--no-backing`). */
  noBacking?: boolean;
}

/** Open an image given by the user (one or more names) and its whole backing chain. */
export async function openImage(names: string[], opts: OpenOptions = {}): Promise<FormatImage> {
  if (names.length === 0) throw new NotFoundError('no image given');
  names = names.map((n) => (isUrlName(n) ? n : resolvePath(n)));
  const policy = opts.policy ?? DEFAULT_POLICY;
  const top = await openOne(names, opts.format, !!opts.writable, opts.options ?? {}, policy);
  try {
    if (!opts.noBacking) await attachChain(top, policy, opts.options ?? {}, [top.filename]);
  } catch (err) {
    await top.close().catch(() => undefined);
    throw err;
  }
  return top;
}

/**
 * Open an image from a source that is already open (images in memory, tests, the fuzz harness),
 * then its backing chain like openImage. The source belongs to the image from then on: it is
 * closed with it, or here when opening fails. References inside the image resolve relative to
 * source.name.
 */
export async function openSourceImage(source: ByteSource, opts: OpenOptions = {}): Promise<FormatImage> {
  const policy = opts.policy ?? DEFAULT_POLICY;
  const options = opts.options ?? {};
  let top: FormatImage;
  try {
    const driver = forcedDriver(opts.format, source.name) ?? pickDriver(await probeInput(source));
    top = await driver.open(makeContext(source, [source.name], !!opts.writable, options, policy));
  } catch (err) {
    await source.close().catch(() => undefined);
    throw err;
  }
  try {
    if (!opts.noBacking) await attachChain(top, policy, options, [top.filename]);
  } catch (err) {
    await top.close().catch(() => undefined);
    throw err;
  }
  return top;
}

function forcedDriver(format: string | undefined, file: string): FormatDriver | undefined {
  if (!format || format === 'auto' || format === 'qemu') return undefined;
  const d = findDriver(format);
  if (!d) throw new UnknownFormatError(`unknown format '${format}'`, { file });
  return d;
}

async function openOne(
  names: string[],
  format: string | undefined,
  writable: boolean,
  options: Record<string, string>,
  policy: OpenPolicy,
): Promise<FormatImage> {
  const primary = names[0]!;
  const forced = forcedDriver(format, primary);
  // A directory (AFF's .afd) is opened through the file its driver names inside it.
  const dir = await directoryInput(primary, forced);
  const source = await openLocation(dir?.entry ?? primary, { writable });
  try {
    const driver = dir?.driver ?? forced ?? pickDriver(await probeInput(source));
    const ctx = makeContext(source, names, writable, options, policy);
    return await driver.open(ctx);
  } catch (err) {
    await source.close().catch(() => undefined);
    throw err;
  }
}

async function directoryInput(name: string, forced: FormatDriver | undefined): Promise<{ driver: FormatDriver; entry: string } | undefined> {
  if (isUrlName(name)) return undefined;
  try {
    if (!statSync(name).isDirectory()) return undefined;
  } catch {
    return undefined;
  }
  await loadProbes();
  for (const d of forced ? [forced] : DRIVERS) {
    const entry = d.directoryEntry?.(name);
    if (entry) return { driver: d, entry };
  }
  throw new UnknownFormatError('is a directory, and no format driver opens it', { file: name });
}

function makeContext(source: ByteSource, names: string[], writable: boolean, options: Record<string, string>, policy: OpenPolicy): OpenContext {
  const resolve = (ref: string) => resolveRef(source.name, ref);
  return {
    source,
    names,
    writable,
    options,
    resolve,
    async openRelated(ref, o = {}) {
      const full = resolve(ref);
      if (!names.includes(full) && !names.includes(ref)) checkReference(source.name, ref, full, policy);
      return openLocation(full, { writable: !!o.writable && writable });
    },
    async relatedExists(ref) {
      const full = resolve(ref);
      try {
        if (!names.includes(full) && !names.includes(ref)) checkReference(source.name, ref, full, policy);
      } catch {
        return false;
      }
      return locationExists(full);
    },
  };
}

async function attachChain(image: FormatImage, policy: OpenPolicy, options: Record<string, string>, seen: string[]): Promise<void> {
  let child = image;
  for (;;) {
    const ref = child.backingRef;
    if (!ref || !child.setBacking) return;
    if (seen.length > policy.maxDepth) {
      throw new PolicyError(`backing chain longer than ${policy.maxDepth} images`, { file: child.filename });
    }
    const candidates = [ref.name, ...(ref.alternatives ?? [])];
    let parent: FormatImage | undefined;
    let lastErr: unknown;
    let refused: unknown;
    const lookedFor: string[] = [];
    for (const cand of candidates) {
      const full = resolveRef(child.filename, cand);
      try {
        checkReference(child.filename, cand, full, policy);
      } catch (err) {
        refused ??= err;
        continue;
      }
      if (seen.includes(full)) {
        throw new PolicyError(`backing chain loops back to ${full}`, { file: child.filename });
      }
      if (!(await locationExists(full))) {
        if (!lookedFor.includes(full)) lookedFor.push(full);
        lastErr = new NotFoundError(`backing file (parent) ${ref.name} not found (looked for ${lookedFor.join(', ')})`, { file: child.filename });
        continue;
      }
      const opened = await openOne([full], ref.format, false, options, policy);
      const problem = ref.check?.(opened);
      if (problem) {
        await opened.close();
        lastErr = new CorruptImageError(child.format, `parent ${full} does not match: ${problem}`, { file: child.filename });
        continue;
      }
      parent = opened;
      seen.push(full);
      break;
    }
    if (!parent) {
      // A refusal by the policy says more than "not found" for a fallback name tried after it.
      if (refused instanceof AnydiskError) throw refused;
      if (lastErr instanceof AnydiskError) throw lastErr;
      throw new NotFoundError(`backing file ${ref.name} could not be opened`, { file: child.filename, cause: lastErr });
    }
    child.setBacking(parent);
    child = parent;
  }
}

/** info() of the image with its backing chain nested, as qemu-img info --backing-chain shows it. */
export function chainInfo(image: FormatImage): ImageInfo {
  return image.info();
}

export function baseNameOf(name: string): string {
  const b = basename(isUrlName(name) ? new URL(name).pathname : name);
  const dot = b.lastIndexOf('.');
  return dot > 0 ? b.slice(0, dot) : b;
}

function isUrlName(n: string): boolean {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(n);
}
