// A qcow2 overlay over any read-only disk: the --cache FILE / --owcache FILE write mode. Every
// write lands in FILE, a standard qcow2 image whose backing is the input; the input is never
// written. An overlay is bound to the input it was made over: a fingerprint of the input (its
// size and sampled content, plus the input's identity when it is stable) is kept beside the
// overlay in FILE.anydisk-binding, and mounting the overlay over another input is refused —
// xmount never checks this and silently mixes two disks.

import { createHash } from 'node:crypto';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { Disk } from '../core/disk.js';
import { CorruptImageError, PolicyError } from '../core/errors.js';
import { createOverlay, openQcow2File } from '../formats/qcow2/create.js';
import { OffsetLayer } from './offset.js';

export interface OverlayOptions {
  /** Start the overlay afresh (xmount's --owcache). */
  fresh: boolean;
  /** Identity of the base (the input's files); informative, the fingerprint decides. */
  identity: string;
  /** Recorded as the overlay's backing file, so qemu can open it too where it reads the format. */
  backing?: { name: string; format: string };
}

interface Binding {
  version: 1;
  size: number;
  fingerprint: string;
  input: string;
  created: string;
}

const SAMPLES = 17;
const SAMPLE = 4096;

/** Size plus SHA-256 of 17 evenly spread 4 KiB samples: cheap, and different for another disk. */
export async function fingerprint(disk: Disk): Promise<string> {
  const h = createHash('sha256');
  h.update(`size:${disk.size}`);
  const buf = new Uint8Array(SAMPLE);
  for (let i = 0; i < SAMPLES && disk.size > 0; i++) {
    const n = Math.min(SAMPLE, disk.size);
    const at = Math.floor(((disk.size - n) * i) / (SAMPLES - 1));
    await disk.read(buf.subarray(0, n), at);
    h.update(buf.subarray(0, n));
  }
  return h.digest('hex');
}

export function bindingPath(file: string): string {
  return `${file}.anydisk-binding`;
}

export async function openOverlay(file: string, base: Disk, opts: OverlayOptions): Promise<Disk> {
  const fp = await fingerprint(base);
  const bpath = bindingPath(file);
  if (opts.fresh || !existsSync(file)) {
    rmSync(bpath, { force: true });
    await createOverlay(file, { size: base.size, name: opts.backing?.name, format: opts.backing?.format });
    const binding: Binding = { version: 1, size: base.size, fingerprint: fp, input: opts.backing?.name ?? opts.identity, created: new Date().toISOString() };
    writeFileSync(bpath, JSON.stringify(binding, null, 2) + '\n');
  } else if (existsSync(bpath)) {
    let b: Binding;
    try {
      b = JSON.parse(readFileSync(bpath, 'utf8')) as Binding;
    } catch {
      throw new CorruptImageError('overlay', 'binding file is not valid JSON', { file: bpath });
    }
    if (b.size !== base.size) {
      throw new PolicyError(`overlay was made over a disk of ${b.size} bytes (${b.input}); this input has ${base.size}`, { file });
    }
    if (b.fingerprint !== fp) {
      throw new PolicyError(`overlay was made over another input (${b.input}): content differs; use --owcache to start afresh`, { file });
    }
  }
  const img = await openQcow2File(file, { writable: true, backing: base });
  // qcow2 sizes are whole sectors: an input of another size gets an overlay a little larger,
  // shown at the input's exact size.
  if (img.size !== base.size && img.size !== Math.ceil(base.size / 512) * 512) {
    await img.close();
    throw new PolicyError(`overlay size ${img.size} differs from the input's ${base.size}`, { file });
  }
  return img.size === base.size ? img : new OffsetLayer(img, 0, base.size);
}
