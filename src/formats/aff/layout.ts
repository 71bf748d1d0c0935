// The multi-file AFF layouts (AFFLIB vnode_afd.cpp, vnode_afm.cpp, vnode_split_raw.cpp):
//   AFD: a directory `x.afd/` of ordinary AFF files `file_000.aff`, `file_001.aff`, ... (the metadata
//        is repeated in each; a segment is taken from the first file that has it).
//   AFM: an AFF file `x.afm` holding only metadata, plus the data as split raw files `x.000`,
//        `x.001`, ... The first extension is in segment raw_image_file_extension; each file holds
//        pages_per_raw_image_file * pagesize bytes (0 = not split). Names count 000..999, then A00:
//        the third character stays decimal, the second is base 36 (0-9, A-Z), the first a letter
//        (split_raw_increment_fname): 999 -> A00, A99 -> AA0, AZ9 -> B00, ZZ9 -> no more names.

import { readdirSync, statSync } from 'node:fs';
import { basename, dirname, extname, join } from 'node:path';
import { isUrl } from '../../sources/locate.js';

export const AFD_FIRST = 'file_000.aff';
/** Bound on member files (AFD) and split raw pieces (AFM). */
export const MAX_FILES = 100_000;

export function isAfdDirName(dir: string): boolean {
  return /\.afd$/i.test(basename(dir.replace(/[/\\]+$/, '')));
}

/** Is this file a member of an AFD directory? */
export function isAfdMember(file: string): boolean {
  return /\.aff$/i.test(file) && isAfdDirName(dirname(file));
}

function memberNumber(name: string): number {
  const m = /^file_(\d+)\.aff$/i.exec(name);
  return m ? Number(m[1]) : Number.MAX_SAFE_INTEGER;
}

/** The .aff files of a local AFD directory, file_NNN order first (AFFLIB takes every *.aff in it). */
export function listAfdMembers(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => /\.aff$/i.test(n));
  } catch {
    return [];
  }
  names = names.filter((n) => {
    try {
      return statSync(join(dir, n)).isFile();
    } catch {
      return false;
    }
  });
  names.sort((a, b) => memberNumber(a) - memberNumber(b) || (a < b ? -1 : a > b ? 1 : 0));
  return names.slice(0, MAX_FILES);
}

/** For the registry: the file inside an AFD directory to open as the image's primary source. */
export function afdDirectoryEntry(dir: string): string | undefined {
  if (isUrl(dir) || !isAfdDirName(dir)) return undefined;
  const first = listAfdMembers(dir)[0];
  return first ? join(dir, first) : undefined;
}

export function afdMemberName(i: number): string {
  return `file_${String(i).padStart(3, '0')}.aff`;
}

/** The name of the next split raw file (split_raw_increment_fname), or undefined when the names run out. */
export function nextSplitName(name: string): string | undefined {
  const ext = extname(name).slice(1);
  if (ext.length !== 3) return undefined;
  const stem = name.slice(0, name.length - 3);
  if (/^\d{3}$/.test(ext)) {
    const n = Number(ext);
    return stem + (n === 999 ? 'A00' : String(n + 1).padStart(3, '0'));
  }
  if (!/^[A-Za-z][0-9A-Za-z][0-9]$/.test(ext)) return undefined;
  const lower = ext[0] !== ext[0]!.toUpperCase();
  const c = ext.toUpperCase().split('');
  const b36 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ';
  // third: decimal with carry; second: base 36; first: letters (a carry out of Z ends the names).
  let d2 = Number(c[2]) + 1;
  let carry = d2 === 10;
  if (carry) d2 = 0;
  c[2] = String(d2);
  if (carry) {
    const i1 = b36.indexOf(c[1]!) + 1;
    carry = i1 === 36;
    c[1] = b36[carry ? 0 : i1]!;
  }
  if (carry) {
    const i0 = b36.indexOf(c[0]!) + 1;
    if (i0 === 36) return undefined;
    c[0] = b36[i0]!;
  }
  const out = c.join('');
  return stem + (lower ? out.toLowerCase() : out);
}

/** The first raw file of an AFM: the .afm name with its extension replaced. */
export function afmRawName(afmName: string, ext: string): string {
  const b = basename(afmName);
  const dot = b.lastIndexOf('.');
  return (dot > 0 ? b.slice(0, dot) : b) + '.' + ext;
}

export function isValidRawExtension(ext: string): boolean {
  return /^[^./\\\0]{1,16}$/.test(ext);
}
