// `anydisk serve [--socket P | --port N --bind ADDR] [--export NAME]... [-f FMT] IMAGE...`:
// serve each image as one NBD export, in the foreground, until SIGTERM/SIGINT.
import type { Command } from '@commander-js/extra-typings';
import { readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { basename } from 'node:path';
import type { Disk } from '../../core/disk.js';
import { openImage } from '../../formats/registry.js';
import type { FormatImage } from '../../formats/types.js';
import { NbdServer, type ListenTarget } from '../nbd/server.js';
import { collect, isDebug, parseKeyValues, UsageError } from './common.js';

export interface WriteMode {
  /** Writes go straight into the image (opened writable). */
  writethrough?: boolean;
  /** Writes go to this overlay file, the image stays untouched (the writable-layer work). */
  cache?: string;
}

/**
 * The hook between an opened image and the Disk that is served. Today: the image itself (opened
 * writable for --writethrough, read-only otherwise). The writable-layer work plugs its overlay in
 * here for --cache FILE.
 */
export async function prepareServedDisk(image: FormatImage, mode: WriteMode): Promise<Disk> {
  if (mode.cache) throw new UsageError('--cache is not available yet (needs the writable overlay layer)');
  return image;
}

export function register(program: Command): void {
  program
    .command('serve')
    .description('serve images over NBD (one export per image), until SIGTERM/SIGINT')
    .argument('<image...>', 'image file(s); each becomes one export')
    .option('-f, --format <fmt>', 'input format (default: probe)')
    .option('--inopts <opts>', 'format options key=value,...', collect, [] as string[])
    .option('--socket <path>', 'listen on a unix socket')
    .option('-p, --port <n>', 'TCP port (default 10809; 0 = any free port)')
    .option('-b, --bind <addr>', 'TCP address to listen on', '127.0.0.1')
    .option('-x, --export <name>', 'export name for the next image (repeatable; default: file name)', collect, [] as string[])
    .option('--description <text>', 'export description shown to clients')
    .option('--writethrough', 'serve writable: writes go into the image')
    .option('--cache <file>', 'serve writable with writes kept in an overlay file')
    .option('--pid-file <path>', 'write the process id here once listening')
    .option('--tls-cert <pem>', 'TLS certificate (enables STARTTLS)')
    .option('--tls-key <pem>', 'TLS private key')
    .option('--tls <mode>', 'with a certificate: on (TLS required, default) or optional', 'on')
    .action(async (images, opts) => {
      if (opts.socket && opts.port !== undefined) throw new UsageError('give either --socket or --port, not both');
      if (!!opts.tlsCert !== !!opts.tlsKey) throw new UsageError('--tls-cert and --tls-key go together');
      if (opts.tls !== 'on' && opts.tls !== 'optional') throw new UsageError(`--tls must be on or optional, not '${opts.tls}'`);
      if (opts.export.length > images.length) throw new UsageError('more --export names than images');
      let port = 10809;
      if (opts.port !== undefined) {
        port = Number(opts.port);
        if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`invalid port '${opts.port}'`);
      }
      const target: ListenTarget = opts.socket ? { socket: opts.socket } : { port, host: opts.bind };
      const mode: WriteMode = { writethrough: !!opts.writethrough, cache: opts.cache };
      const writable = !!opts.writethrough;

      const opened: FormatImage[] = [];
      const specs = [];
      try {
        for (const [i, img] of images.entries()) {
          const image = await openImage([img], { format: opts.format, writable, options: parseKeyValues(opts.inopts) });
          opened.push(image);
          const disk = await prepareServedDisk(image, mode);
          specs.push({
            name: opts.export[i] ?? basename(img),
            description: opts.description ?? `${image.format} image ${image.filename} (${disk.size} bytes)`,
            disk,
            writable: writable || !!opts.cache,
          });
        }
        const server = new NbdServer({
          exports: specs,
          tls: opts.tlsCert ? { cert: readFileSync(opts.tlsCert), key: readFileSync(opts.tlsKey!), required: opts.tls === 'on' } : undefined,
          log: isDebug() ? (m) => console.error(`anydisk serve: ${m}`) : undefined,
        });
        const uri = await server.listen(target);
        if (opts.pidFile) writeFileSync(opts.pidFile, `${process.pid}\n`);
        const names = specs.map((s) => s.name).join(', ');
        process.stdout.write(`ready ${uri} exports: ${names}\n`);

        await new Promise<void>((resolve) => {
          const stop = (sig: string) => {
            process.off('SIGTERM', onTerm);
            process.off('SIGINT', onInt);
            if (isDebug()) console.error(`anydisk serve: ${sig}, shutting down`);
            resolve();
          };
          const onTerm = () => stop('SIGTERM');
          const onInt = () => stop('SIGINT');
          process.on('SIGTERM', onTerm);
          process.on('SIGINT', onInt);
        });
        await server.close();
        if (opts.pidFile) {
          try {
            unlinkSync(opts.pidFile);
          } catch {
            /* gone */
          }
        }
      } finally {
        for (const img of opened) await img.close().catch(() => undefined);
      }
    });
}
