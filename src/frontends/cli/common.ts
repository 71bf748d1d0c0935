// What every CLI command shares: option parsing helpers and the one-line error exit.
import { AnydiskError } from '../../core/errors.js';

export class UsageError extends Error {}

let debug = false;
export function setDebug(on: boolean): void {
  debug = on;
}
export function isDebug(): boolean {
  return debug || !!process.env.ANYDISK_DEBUG;
}

/** Print one line for an error (stack only with --debug) and return the exit code to use. */
export function reportError(err: unknown): number {
  if (isDebug()) console.error(err);
  if (err instanceof AnydiskError) {
    console.error(`anydisk: ${err.describe()}`);
    return 1;
  }
  if (err instanceof UsageError) {
    console.error(`anydisk: ${err.message}`);
    return 2;
  }
  const e = err as Error;
  console.error(`anydisk: ${e?.message ?? String(err)}`);
  return 1;
}

/** Parse `a=b,c=d` option lists (xmount's --inopts, qemu-img's -o). Later values win. */
export function parseKeyValues(list: string[] | string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  const items = Array.isArray(list) ? list : list ? [list] : [];
  for (const item of items) {
    for (const part of item.split(',')) {
      if (!part) continue;
      const eq = part.indexOf('=');
      if (eq < 0) out[part.trim()] = 'on';
      else out[part.slice(0, eq).trim()] = part.slice(eq + 1).trim();
    }
  }
  return out;
}

/**
 * Parse a size the way qemu-img does: plain bytes, or a number with k/K, M, G, T, P, E suffix
 * (powers of 1024), optionally with a trailing B/iB. Refuses negatives, fractions of a byte and
 * anything above Number.MAX_SAFE_INTEGER.
 */
export function parseSize(text: string, what = 'size'): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kKmMgGtTpPeE]?)(?:i?[bB])?\s*$/.exec(text);
  if (!m) throw new UsageError(`invalid ${what} '${text}'`);
  const mult: Record<string, number> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40, p: 2 ** 50, e: 2 ** 60 };
  const v = Number(m[1]) * mult[m[2]!.toLowerCase()]!;
  if (!Number.isSafeInteger(v) || v < 0) throw new UsageError(`${what} '${text}' is out of range`);
  return v;
}

export function collect(value: string, prev: string[] = []): string[] {
  return [...prev, value];
}
