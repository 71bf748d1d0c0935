// `anydisk mount [--in FMT] IMAGE... [--out FMT] MOUNTPOINT`: show an image as a virtual file of
// another format. Returns once the mount is ready and keeps serving in the background (like
// xmount and sshfs); -f stays attached. xmount's spellings are accepted: --in/--out/--inopts/
// --cache/--owcache/--offset/--sizelimit/-o. `umount` is in umount.ts.

import { statSync, unlinkSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from '@commander-js/extra-typings';
import { baseNameOf } from '../../formats/registry.js';
import { openInput, type InputSpec, type WriteMode } from '../input.js';
import { findView, VIEWS } from '../../views/index.js';
import { mountFiles } from '../fuse/filesystem.js';
import { ViewState } from '../fuse/view-state.js';
import { infoText, LiveTextFile, textFile } from '../../views/memory-file.js';
import { liveHttpSources, type HttpSource } from '../../sources/http/http-source.js';
import { isMountPoint, removeRecord, writeRecord } from '../fuse/state.js';
import { formatInfoText } from './info.js';
import { redirectOutput, runBackgroundMount } from './launch.js';
import { collect, reportError, UsageError } from './common.js';
import { inputSpec } from './input-spec.js';

export interface MountArgs {
  input: InputSpec;
  mountpoint: string;
  outFormat: string;
  fuseOpts: string[];
  allowOther: boolean;
}

/** A clean exit leaves no empty daemon log behind. */
function removeIfEmpty(file: string): void {
  try {
    if (statSync(file).size === 0) unlinkSync(file);
  } catch {
    // already gone
  }
}

async function serveForeground(a: MountArgs, onReady: () => void, logFile?: string): Promise<void> {
  const view = findView(a.outFormat);
  if (!view) throw new UsageError(`unknown output format '${a.outFormat}' (one of: ${VIEWS.map((v) => v.name).join(', ')})`);
  statMountpoint(a.mountpoint);
  const { disk, infos, identity, describe } = await openInput(a.input);
  const spec = a.input;
  let mounted: Awaited<ReturnType<typeof mountFiles>> | undefined;
  let viewState: ViewState | undefined;
  try {
    const baseName = baseNameOf(spec.images[0]!);
    let files = view.build(disk, { baseName, identity });
    if (!disk.readOnly) {
      // Header writes are kept beside the writable image, so a remount shows them again.
      const owner = spec.write.kind === 'overlay' ? spec.write.file : spec.images[0]!;
      viewState = new ViewState(`${resolve(owner)}.anydisk-views`, a.outFormat);
      files = await viewState.attach(files);
    }
    const info =
      infoText(`anydisk ${a.outFormat} view of ${spec.images.join(' ')}`, files) +
      `write mode: ${describe}\n` +
      (spec.morph ? `morphing: ${spec.morph}\n` : '') +
      (spec.offset !== undefined ? `offset: ${spec.offset}\n` : '') +
      (spec.sizelimit !== undefined ? `size limit: ${spec.sizelimit}\n` : '') +
      (spec.partition !== undefined ? `partition: ${spec.partition}\n` : '') +
      `disk size: ${disk.size} bytes\n\n` +
      infos.map((i) => formatInfoText(i)).join('\n');
    files.push(textFile(`${baseName}.info`, info));
    // Remote inputs: their counters, rendered anew on every read of NAME.stats.
    if (liveHttpSources().length) files.push(new LiveTextFile(`${baseName}.stats`, () => httpStatsText(liveHttpSources())));
    mounted = await mountFiles(a.mountpoint, files, {
      // unmounted from outside (fusermount -u): flush, close and exit as on SIGTERM
      onLost: () => void stop('unmount'),
      allowOther: a.allowOther,
      kernelCache: disk.readOnly,
      extra: a.fuseOpts,
    });
  } catch (err) {
    await disk.close().catch(() => undefined);
    throw err;
  }
  writeRecord({ pid: process.pid, mountpoint: resolve(a.mountpoint), images: spec.images, started: new Date().toISOString() });
  const keepAlive = setInterval(() => undefined, 1 << 30);
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    let code = 0;
    try {
      await mounted!.unmount();
    } catch (err) {
      console.error(`anydisk: unmount of ${a.mountpoint} failed on ${signal}: ${(err as Error).message}`);
      code = 1;
    }
    try {
      await viewState?.save();
      await disk.flush();
      await disk.close();
    } catch (err) {
      code = reportError(err);
    }
    removeRecord(a.mountpoint);
    if (logFile) removeIfEmpty(logFile);
    clearInterval(keepAlive);
    process.exit(code);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGHUP', () => void stop('SIGHUP'));
  onReady();
}

/** One block per remote object: its name, then one counter per line. */
function httpStatsText(sources: HttpSource[]): string {
  return sources
    .map((src) => {
      const st = src.stats() as unknown as Record<string, number | boolean>;
      return `${src.name}\n${Object.entries(st)
        .map(([k, v]) => `  ${k}: ${String(v)}`)
        .join('\n')}\n`;
    })
    .join('\n');
}

function statMountpoint(mp: string): void {
  let st;
  try {
    st = statSync(mp);
  } catch {
    throw new UsageError(`mount point ${mp} does not exist`);
  }
  if (!st.isDirectory()) throw new UsageError(`mount point ${mp} is not a directory`);
  if (isMountPoint(resolve(mp))) throw new UsageError(`${mp} is already a mount point`);
}

export function register(program: Command): void {
  program
    .command('mount')
    .description('show IMAGE... as a virtual file of another format inside MOUNTPOINT')
    .argument('<args...>', 'IMAGE... MOUNTPOINT')
    .option('-i, --in <fmt>', 'input format (qemu or auto: probe; raw, qcow2, vmdk, vdi, vhd, vhdx, ewf, aff, dmg)')
    .option('--out <fmt>', 'output view: raw, vdi, vhd, vmdk', 'raw')
    .option('--inopts <opts>', 'input options key=value,... (qemuwritable=true, force=on, ...)', collect, [] as string[])
    .option('--cache <mode>', "'writethrough' (writes go into the input) or FILE (a qcow2 overlay that keeps the writes)")
    .option('--owcache <file>', 'like --cache FILE, but start FILE afresh')
    .option('--writethrough', 'same as --cache writethrough')
    .option('--offset <bytes>', 'start of the disk inside the input')
    .option('--sizelimit <bytes>', 'largest size of the disk')
    .option('--morph <how>', 'several images as one disk: combine (concatenate), raid0, raid1')
    .option('--morphopts <opts>', 'morphing options: raid_chunksize=N', collect, [] as string[])
    .option('--partition <n>', 'show only partition N of the disk (MBR or GPT)')
    .option('-o <fuseopts>', 'FUSE mount options (allow_other, ...)', collect, [] as string[])
    .option('--allow-other', 'let other users use the mount')
    .option('-f, --foreground', 'stay attached; unmount on SIGINT/SIGTERM')
    .option('--daemon-child', 'internal: run as the background daemon')
    .option('--log-file <file>', 'internal: where the daemon writes once detached')
    .action(async (args, opts) => {
      if (args.length < 2) throw new UsageError('mount needs at least one IMAGE and a MOUNTPOINT');
      const mountpoint = args[args.length - 1]!;
      const fuseOpts = opts.o.flatMap((o) => o.split(',')).filter(Boolean);
      const allowOther = !!opts.allowOther || fuseOpts.includes('allow_other');
      const write: WriteMode = opts.owcache
        ? { kind: 'overlay', file: opts.owcache, fresh: true }
        : opts.writethrough || opts.cache === 'writethrough'
          ? { kind: 'writethrough' }
          : opts.cache
            ? { kind: 'overlay', file: opts.cache, fresh: false }
            : { kind: 'readonly' };
      const a: MountArgs = {
        input: inputSpec(args.slice(0, -1), opts, write),
        mountpoint,
        outFormat: opts.out,
        fuseOpts: fuseOpts.filter((o) => o !== 'allow_other'),
        allowOther,
      };
      if (opts.foreground) {
        if (opts.daemonChild && process.send) {
          try {
            await serveForeground(a, () => {
              process.send!({ type: 'ready' });
              process.disconnect();
              if (opts.logFile) redirectOutput(opts.logFile);
            }, opts.logFile);
          } catch (err) {
            const code = reportError(err);
            const message = lastErrorLine(err);
            process.send!({ type: 'error', message, code }, () => process.exit(code));
          }
          return;
        }
        await serveForeground(a, () => console.error(`anydisk: mounted on ${mountpoint}`));
        return;
      }
      statMountpoint(mountpoint);
      process.exitCode = await runBackgroundMount(process.argv[1]!, process.argv.slice(2));
    });
}

/** The input options shared by mount, serve and convert. */
function lastErrorLine(err: unknown): string {
  const e = err as { describe?: () => string; message?: string };
  return `anydisk: ${typeof e?.describe === 'function' ? e.describe() : (e?.message ?? String(err))}`;
}
