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

export { parseSize } from '../../core/size.js';

export function collect(value: string, prev: string[] = []): string[] {
  return [...prev, value];
}

export const SOURCE_CACHE_HELP =
  "input cache mode: none (what has been read leaves the page cache behind the reader) or writeback (it stays, qemu-img's default)";

/** -T: convert and compare read their inputs once, front to back; by default they do not keep them cached. */
export async function applySourceCache(mode: string): Promise<void> {
  if (mode !== 'none' && mode !== 'writeback') throw new UsageError(`-T must be none or writeback, not '${mode}'`);
  const { setStreamingReads } = await import('../../sources/file.js');
  setStreamingReads(mode === 'none');
}
