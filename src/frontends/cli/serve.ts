// `anydisk serve [--socket P | --port N --bind ADDR] [--export NAME] [-f FMT] IMAGE...`: serve the
// input over NBD in the foreground until SIGTERM/SIGINT. The input is composed like mount's
// (several names = one image, --morph, --offset/--sizelimit, --partition) and so are the write
// modes (read-only by default, --writethrough, --cache FILE): see frontends/input.ts. More
// read-only exports can be added with --add-export NAME=IMAGE.
import type { Command } from '@commander-js/extra-typings';
import { readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { basename } from 'node:path';
import type { OpenedInput, WriteMode } from '../input.js';
import type { ExportSpec } from '../nbd/export.js';
import type { ListenTarget } from '../nbd/server.js';
import { collect, isDebug, UsageError } from './common.js';

export function register(program: Command): void {
  program
    .command('serve')
    .description('serve an image over NBD (foreground, until SIGTERM/SIGINT); read-only unless a write mode is given')
    .argument('<image...>', 'image file(s) of the one input (several names = one image unless --morph)')
    .option('-f, --format <fmt>', 'input format (default: probe)')
    .option('-i, --in <fmt>', 'same as --format (mount spelling)')
    .option('--inopts <opts>', 'input options key=value,...', collect, [] as string[])
    .option('--socket <path>', 'listen on a unix socket')
    .option('-p, --port <n>', 'TCP port (default 10809; 0 = any free port)')
    .option('-b, --bind <addr>', 'TCP address to listen on', '127.0.0.1')
    .option('-x, --export <name>', 'export name (default: the image file name; "" also reaches it)')
    .option('--add-export <name=image>', 'serve another image, read-only, under NAME (repeatable)', collect, [] as string[])
    .option('--description <text>', 'export description shown to clients')
    .option('--writethrough', 'serve writable: writes go into the image')
    .option('--cache <mode>', "'writethrough', or FILE: a qcow2 overlay that keeps the writes")
    .option('--owcache <file>', 'like --cache FILE, but start FILE afresh')
    .option('--offset <bytes>', 'start of the disk inside the input')
    .option('--sizelimit <bytes>', 'largest size of the disk')
    .option('--morph <how>', 'several images as one disk: combine, raid0, raid1')
    .option('--morphopts <opts>', 'morphing options: raid_chunksize=N', collect, [] as string[])
    .option('--partition <n>', 'serve only partition N of the disk (MBR or GPT)')
    .option('--pid-file <path>', 'write the process id here once listening (removed at exit)')
    .option('--tls-cert <pem>', 'TLS certificate (enables STARTTLS)')
    .option('--tls-key <pem>', 'TLS private key')
    .option('--tls <mode>', 'with a certificate: on (TLS required, default) or optional', 'on')
    .action(async (images, opts) => {
      if (opts.socket && opts.port !== undefined) throw new UsageError('give either --socket or --port, not both');
      if (!!opts.tlsCert !== !!opts.tlsKey) throw new UsageError('--tls-cert and --tls-key go together');
      if (opts.tls !== 'on' && opts.tls !== 'optional') throw new UsageError(`--tls must be on or optional, not '${opts.tls}'`);
      if (opts.format && opts.in && opts.format !== opts.in) throw new UsageError('--format and --in disagree');
      let port = 10809;
      if (opts.port !== undefined) {
        port = Number(opts.port);
        if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`invalid port '${opts.port}'`);
      }
      const extra = opts.addExport.map((a) => {
        const eq = a.indexOf('=');
        if (eq < 0 || eq === a.length - 1) throw new UsageError(`--add-export wants NAME=IMAGE, not '${a}'`);
        return { name: a.slice(0, eq), image: a.slice(eq + 1) };
      });
      const target: ListenTarget = opts.socket ? { socket: opts.socket } : { port, host: opts.bind };
      const write: WriteMode = opts.owcache
        ? { kind: 'overlay', file: opts.owcache, fresh: true }
        : opts.writethrough || opts.cache === 'writethrough'
          ? { kind: 'writethrough' }
          : opts.cache
            ? { kind: 'overlay', file: opts.cache, fresh: false }
            : { kind: 'readonly' };
      const inputOpts = { ...opts, in: opts.format ?? opts.in };

      const { openInput } = await import('../input.js');
      const { inputSpec } = await import('./input-spec.js');
      const { NbdServer } = await import('../nbd/server.js');
      const opened: OpenedInput[] = [];
      try {
        const main = await openInput(inputSpec(images, inputOpts, write));
        opened.push(main);
        const specs: ExportSpec[] = [
          {
            name: opts.export ?? basename(images[0]!),
            description: opts.description ?? `${main.infos.map((i) => `${i.format} ${i.filename}`).join(', ')}, ${main.describe}`,
            disk: main.disk,
            writable: !main.disk.readOnly,
          },
        ];
        for (const e of extra) {
          const o = await openInput(inputSpec([e.image], { inopts: opts.inopts, morphopts: [] }, { kind: 'readonly' }));
          opened.push(o);
          specs.push({ name: e.name, description: `${o.infos.map((i) => `${i.format} ${i.filename}`).join(', ')}, read-only`, disk: o.disk });
        }
        const server = new NbdServer({
          exports: specs,
          tls: opts.tlsCert ? { cert: readFileSync(opts.tlsCert), key: readFileSync(opts.tlsKey!), required: opts.tls === 'on' } : undefined,
          log: isDebug() ? (m) => console.error(`anydisk serve: ${m}`) : undefined,
        });
        const uri = await server.listen(target);
        if (opts.pidFile) writeFileSync(opts.pidFile, `${process.pid}\n`);
        process.stdout.write(`ready ${uri} exports: ${specs.map((s) => s.name).join(', ')}\n`);

        const signal = await new Promise<string>((resolve) => {
          const handlers = ['SIGTERM', 'SIGINT', 'SIGHUP'].map((sig) => {
            const h = () => {
              for (const [s, f] of handlers) process.off(s, f);
              resolve(sig);
            };
            process.on(sig, h);
            return [sig, h] as const;
          });
        });
        if (isDebug()) console.error(`anydisk serve: ${signal}, shutting down`);
        await server.close();
        if (opts.pidFile) {
          try {
            unlinkSync(opts.pidFile);
          } catch {
            /* already gone */
          }
        }
      } finally {
        for (const o of opened) {
          await o.disk.flush().catch(() => undefined);
          await o.disk.close().catch(() => undefined);
          for (const img of o.images) await img.close().catch(() => undefined);
        }
      }
    });
}
