// Output formats for `convert`, by qemu-img name and common aliases. Each writer module is imported
// when its format is written.
import type { Disk } from '../../../core/disk.js';
import { InvalidArgumentError } from '../../../core/errors.js';
import { isOn, type OutputFormat, type WriteContext } from './types.js';

const rawOutput: OutputFormat = {
  name: 'raw',
  aliases: ['img', 'dd', 'bin'],
  options: ['preallocation'],
  async write(disk: Disk, path: string, ctx: WriteContext) {
    const { writeRaw } = await import('./raw.js');
    return writeRaw(disk, path, ctx);
  },
};

const qcow2Output: OutputFormat = {
  name: 'qcow2',
  aliases: [],
  options: ['cluster_size', 'compat', 'compression_type', 'preallocation', 'lazy_refcounts', 'refcount_bits'],
  async write(disk: Disk, path: string, ctx: WriteContext) {
    const { writeQcow2 } = await import('./qcow2.js');
    return writeQcow2(disk, path, ctx);
  },
};

const vdiOutput: OutputFormat = {
  name: 'vdi',
  aliases: [],
  options: ['static', 'preallocation'],
  async write(disk: Disk, path: string, ctx: WriteContext) {
    if (isOn(ctx.options.static) || ctx.options.preallocation === 'metadata' || ctx.options.preallocation === 'full') return writeView('vdi', 'vdi static', disk, path, ctx);
    const { writeVdiDynamic } = await import('./vdi.js');
    return writeVdiDynamic(disk, path, ctx);
  },
};

const vpcOutput: OutputFormat = {
  name: 'vpc',
  aliases: ['vhd'],
  options: ['subformat', 'force_size'],
  async write(disk: Disk, path: string, ctx: WriteContext) {
    const sub = ctx.options.subformat ?? 'dynamic';
    if (sub === 'fixed') return writeView('vhd', 'vpc fixed', disk, path, ctx);
    if (sub !== 'dynamic') throw new InvalidArgumentError(`vpc: unknown subformat '${sub}' (dynamic or fixed)`);
    const { writeVhdDynamic } = await import('./vhd.js');
    return writeVhdDynamic(disk, path, ctx);
  },
};

const vmdkOutput: OutputFormat = {
  name: 'vmdk',
  aliases: [],
  options: ['subformat', 'adapter_type', 'hwversion', 'compat6'],
  async write(disk: Disk, path: string, ctx: WriteContext) {
    const sub = ctx.options.subformat ?? 'monolithicSparse';
    if (sub === 'monolithicFlat') return writeView('vmdk', 'vmdk monolithicFlat', disk, path, ctx);
    const { writeVmdkSparse } = await import('./vmdk.js');
    if (sub === 'monolithicSparse') return writeVmdkSparse(disk, path, ctx, false);
    if (sub === 'streamOptimized') return writeVmdkSparse(disk, path, ctx, true);
    throw new InvalidArgumentError(`vmdk: subformat '${sub}' is not written (monolithicSparse, streamOptimized, monolithicFlat)`);
  },
};

const vhdxOutput: OutputFormat = {
  name: 'vhdx',
  aliases: [],
  options: ['subformat', 'block_size', 'log_size', 'block_state_zero'],
  async write(disk: Disk, path: string, ctx: WriteContext) {
    const { writeVhdx } = await import('./vhdx.js');
    return writeVhdx(disk, path, ctx);
  },
};

/** The view-backed writers (fixed VDI, fixed VHD, flat VMDK) bring every view: imported on use. */
async function writeView(...args: Parameters<typeof import('./view.js').writeView>): Promise<void> {
  return (await import('./view.js')).writeView(...args);
}

export const OUTPUTS: OutputFormat[] = [rawOutput, qcow2Output, vdiOutput, vpcOutput, vmdkOutput, vhdxOutput];

export function findOutput(name: string): OutputFormat | undefined {
  const n = name.toLowerCase();
  return OUTPUTS.find((o) => o.name === n || o.aliases.includes(n));
}
