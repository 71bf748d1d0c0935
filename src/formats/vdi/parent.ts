// Finding the parent of a differencing VDI. A VDI child records only its parent's UUID
// (uuidLinkage = parent's uuidCreate), never a file name, so candidates are found by reading the
// headers of the *.vdi files next to the child (and one directory up: VirtualBox keeps
// differencing images in the VM's Snapshots/ folder and base disks beside it).
// Local files only; a remote image needs --inopts parent=FILE.

import { open, readdir } from 'node:fs/promises';
import { basename, dirname, join, relative } from 'node:path';
import { HEADER_READ_SIZE, parseVdiHeader } from './header.js';

/** Files examined per directory at most, so a huge directory cannot stall an open. */
const MAX_FILES_PER_DIR = 1000;

async function headerUuid(path: string): Promise<string | undefined> {
  let fh;
  try {
    fh = await open(path, 'r');
    const st = await fh.stat();
    if (!st.isFile()) return undefined;
    const buf = new Uint8Array(HEADER_READ_SIZE);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    return parseVdiHeader(buf.subarray(0, bytesRead), path).uuidCreate;
  } catch {
    return undefined;
  } finally {
    await fh?.close().catch(() => undefined);
  }
}

/**
 * Names (relative to the child's directory) of *.vdi files whose uuidCreate is `uuid`,
 * the child itself excluded. Same directory first, then the parent directory.
 */
export async function findParentCandidates(childPath: string, uuid: string): Promise<string[]> {
  const childDir = dirname(childPath);
  const dirs = [childDir];
  const up = dirname(childDir);
  if (up !== childDir) dirs.push(up);
  const found: string[] = [];
  for (const dir of dirs) {
    let names: string[];
    try {
      names = await readdir(dir);
    } catch {
      continue;
    }
    const vdis = names.filter((n) => n.toLowerCase().endsWith('.vdi')).sort().slice(0, MAX_FILES_PER_DIR);
    for (const n of vdis) {
      const full = join(dir, n);
      if (full === childPath || (dir === childDir && n === basename(childPath))) continue;
      if ((await headerUuid(full)) === uuid) found.push(relative(childDir, full) || n);
    }
  }
  return found;
}
