// Sizes and offsets as users write them, parsed the way qemu-img does.
import { InvalidArgumentError } from './errors.js';

/**
 * Plain bytes, or a number with a k/K, M, G, T, P, E suffix (powers of 1024), optionally followed
 * by B or iB. Refuses negatives, fractions of a byte and anything above Number.MAX_SAFE_INTEGER.
 */
export function parseSize(text: string, what = 'size'): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kKmMgGtTpPeE]?)(?:i?[bB])?\s*$/.exec(text);
  if (!m) throw new InvalidArgumentError(`invalid ${what} '${text}'`);
  const mult: Record<string, number> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40, p: 2 ** 50, e: 2 ** 60 };
  const v = Number(m[1]) * mult[m[2]!.toLowerCase()]!;
  if (!Number.isSafeInteger(v) || v < 0) throw new InvalidArgumentError(`${what} '${text}' is out of range`);
  return v;
}
