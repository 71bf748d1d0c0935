// An output format for `convert`: writes a whole Disk into a new file (under a temporary name,
// renamed on success) knowing all the data up front, so writers are simple and sequential.
import type { Disk } from '../../../core/disk.js';
import type { Progress } from '../progress.js';

export interface WriteContext {
  /** `-o key=value,...` options, qemu-img names (subformat, cluster_size, static, ...). */
  options: Record<string, string>;
  /** `-c`: compress where the format can (qcow2, vmdk streamOptimized always). */
  compress: boolean;
  progress: Progress;
  /** Stable identity of the input, for UUIDs derived from it. */
  identity: string;
  /** Parallel reads in flight. */
  depth: number;
  /**
   * fdatasync the output before it is renamed into place (default). false is qemu-img convert's
   * default cache mode (`-t unsafe`): the data is left to the kernel's writeback.
   */
  sync?: boolean;
}

export interface OutputFormat {
  /** qemu-img's name (raw, qcow2, vdi, vpc, vmdk, vhdx). */
  readonly name: string;
  readonly aliases: readonly string[];
  /** Option names this format understands (others are refused). */
  readonly options: readonly string[];
  write(disk: Disk, path: string, ctx: WriteContext): Promise<void>;
}

/** qemu-style boolean option values. */
export function isOn(v: string | undefined): boolean {
  return v === 'on' || v === 'true' || v === 'yes' || v === '1';
}
