// EWF segment file names. An image is a set of segment files numbered from 1; the number is in
// each file's header, the name follows a fixed scheme (libewf EWF doc, "Segment file extensions"):
//   EWF1:  .E01 ... .E99, .EAA ... .EZZ, .FAA ... .ZZZ   (.s01 ... for SMART, .L01 for logical)
//   EWF2:  .Ex01 ... .Ex99, .ExAA ... .ExZZ, .EyAA ... .EzZZ
// The case of the letters follows the first segment's extension as it is on disk.

import { basename } from 'node:path';

interface ParsedExtension {
  kind: 'v1' | 'v2';
  /** Everything before the extension's counter part, including the dot. */
  stem: string;
  /** First letter of the extension (E, s, L...). */
  prefix: string;
  /** EWF2: the second letter (x). */
  second?: string;
  upper: boolean;
}

function parseExtension(name: string): ParsedExtension | undefined {
  const base = basename(name);
  const dot = base.lastIndexOf('.');
  if (dot < 0) return undefined;
  const ext = base.slice(dot + 1);
  const stem = name.slice(0, name.length - ext.length);
  let m = /^([A-Za-z])(\d\d|[A-Za-z]{2})$/.exec(ext);
  if (m) {
    const prefix = m[1]!;
    return { kind: 'v1', stem, prefix, upper: prefix === prefix.toUpperCase() };
  }
  m = /^([A-Za-z])([A-Za-z])(\d\d|[A-Za-z]{2})$/.exec(ext);
  if (m) {
    const prefix = m[1]!;
    return { kind: 'v2', stem, prefix, second: m[2]!, upper: prefix === prefix.toUpperCase() };
  }
  return undefined;
}

function lastLetter(ch: string): number {
  return ch === ch.toUpperCase() ? 'Z'.charCodeAt(0) : 'z'.charCodeAt(0);
}

function letters(k: number, upper: boolean): string {
  const a = (upper ? 'A' : 'a').charCodeAt(0);
  return String.fromCharCode(a + Math.floor(k / 26) % 26, a + (k % 26));
}

/**
 * The name of segment `n` (1-based) in the set whose first segment is `firstName`, or undefined
 * when the name does not follow the scheme or the scheme has no name for n.
 */
export function segmentName(firstName: string, n: number): string | undefined {
  const p = parseExtension(firstName);
  if (!p || !Number.isSafeInteger(n) || n < 1) return undefined;
  if (n === 1) return firstName;
  if (n <= 99) {
    const num = String(n).padStart(2, '0');
    return p.kind === 'v1' ? `${p.stem}${p.prefix}${num}` : `${p.stem}${p.prefix}${p.second}${num}`;
  }
  const k = n - 100;
  const block = Math.floor(k / 676);
  const tail = letters(k % 676, p.upper);
  if (p.kind === 'v1') {
    const code = p.prefix.charCodeAt(0) + block;
    if (code > lastLetter(p.prefix)) return undefined;
    return `${p.stem}${String.fromCharCode(code)}${tail}`;
  }
  const code = p.second!.charCodeAt(0) + block;
  if (code > lastLetter(p.second!)) return undefined;
  return `${p.stem}${p.prefix}${String.fromCharCode(code)}${tail}`;
}

/**
 * The name of the first segment, given the name of a segment whose number is known (from its
 * header). Only digit extensions (E02, Ex05) can be turned back reliably.
 */
export function firstSegmentName(name: string, number: number): string | undefined {
  const p = parseExtension(name);
  if (!p || number > 99) return undefined;
  const base = basename(name);
  const ext = base.slice(base.lastIndexOf('.') + 1);
  if (!ext.endsWith(String(number).padStart(2, '0'))) return undefined;
  return p.kind === 'v1' ? `${p.stem}${p.prefix}01` : `${p.stem}${p.prefix}${p.second}01`;
}

/** The same name with the extension's letters in the other case (E02 <-> e02). */
export function otherCase(name: string): string | undefined {
  const base = basename(name);
  const dot = base.lastIndexOf('.');
  if (dot < 0) return undefined;
  const ext = base.slice(dot + 1);
  const swapped = ext === ext.toUpperCase() ? ext.toLowerCase() : ext.toUpperCase();
  if (swapped === ext) return undefined;
  return name.slice(0, name.length - ext.length) + swapped;
}
