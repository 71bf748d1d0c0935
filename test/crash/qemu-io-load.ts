// A write load through a foreign NBD client: qemu-io, driven one command at a time over a pipe
// (strictly one: qemu-io reads stdin through stdio and may sit on a second buffered line until
// more input comes). Each write's data (the same writeData(seed, seq, len) the loader uses) is put
// in a pattern file that `write -s` reads; "wrote LEN/LEN bytes at offset OFF" and the next
// prompt mark it done. A good flush prints nothing: the next prompt without "flush failed" marks
// it done. The journal has the loader's format (test/harness/load.ts), so checkDisk judges both.

import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, fsyncSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { chooseWrite, mix, Rng, writeData, type LoadSummary } from '../harness/load.js';

const PROMPT = /qemu-io> /;

export interface QemuIoLoadConfig {
  uri: string;
  journal: string;
  /** Pattern file for `write -s` (rewritten before every write). */
  scratch: string;
  diskSize: number;
  regionStart: number;
  regionLength: number;
  seed: number;
  durationMs: number;
  fsyncEvery: number;
}

export interface QemuIoLoad {
  child: ChildProcess;
  started: Promise<void>;
  done: Promise<LoadSummary>;
}

export function startQemuIoLoad(c: QemuIoLoadConfig): QemuIoLoad {
  // One pipe for both streams keeps error messages in order with the answers.
  const child = spawn('sh', ['-c', 'exec qemu-io -f raw "$0" 2>&1', c.uri], { stdio: ['pipe', 'pipe', 'ignore'] });
  let text = '';
  let seen = 0;
  let exited = false;
  let wake: (() => void) | undefined;
  child.stdout!.on('data', (d: Buffer) => {
    if (process.env.QEMU_IO_DEBUG) process.stderr.write(d);
    text += d.toString();
    wake?.();
  });
  child.on('exit', () => {
    exited = true;
    wake?.();
  });
  child.stdin!.on('error', () => undefined); // EPIPE once qemu-io is gone

  /** Wait until the output after `seen` matches re (or a failure shows, or qemu-io exits). */
  const waitFor = async (re: RegExp): Promise<void> => {
    for (;;) {
      const rest = text.slice(seen);
      const fail = /(\w+ failed: [^\n]*)|(Could not [^\n]*)|(Failed to [^\n]*)/.exec(rest);
      const m = re.exec(rest);
      if (m && (!fail || m.index < fail.index)) {
        seen += m.index + m[0].length;
        return;
      }
      if (fail) throw Object.assign(new Error(`qemu-io: ${fail[0].trim()}`), { code: /Input\/output/.test(fail[0]) ? 'EIO' : 'EQEMUIO' });
      if (exited) throw Object.assign(new Error(`qemu-io exited: ${rest.trim().slice(-300)}`), { code: 'EEXIT' });
      await new Promise<void>((r) => {
        wake = r;
      });
      wake = undefined;
    }
  };
  const send = (cmd: string) => {
    if (!exited) child.stdin!.write(`${cmd}\n`);
  };

  let onStarted!: () => void;
  let onFailed!: (e: Error) => void;
  const started = new Promise<void>((res, rej) => {
    onStarted = res;
    onFailed = rej;
  });
  started.catch(() => undefined);

  const done = (async (): Promise<LoadSummary> => {
    const t0 = Date.now();
    const s: LoadSummary = { writes: 0, bytesWritten: 0, reads: 0, bytesRead: 0, fsyncs: 0, lastSynced: 0, reopens: 0, elapsedMs: 0 };
    const jfd = openSync(c.journal, 'a');
    const line = (l: string, durable = false) => {
      writeSync(jfd, `${l}\n`);
      if (durable) fsyncSync(jfd);
    };
    const rng = new Rng(mix(c.seed, 0x9e10));
    let seq = 0;
    let op = 'open';
    let sinceSync = 0;
    try {
      await waitFor(PROMPT);
      send('length');
      await waitFor(/\d+(\.\d+)? (bytes|KiB|MiB|GiB|TiB)\s*\n/);
      await waitFor(PROMPT);
      onStarted();
      while (Date.now() - t0 < c.durationMs) {
        op = 'write';
        const { off, len } = chooseWrite(rng, c);
        seq++;
        writeFileSync(c.scratch, writeData(c.seed, seq, len));
        line(`W ${seq} ${off} ${len}`);
        send(`write -s ${c.scratch} ${off} ${len}`);
        await waitFor(new RegExp(`wrote ${len}/${len} bytes at offset ${off}\\n`));
        await waitFor(PROMPT);
        line(`D ${seq}`);
        s.writes++;
        s.bytesWritten += len;
        if (++sinceSync >= c.fsyncEvery) {
          op = 'flush';
          send('flush');
          // A good flush prints nothing: the next prompt (and no "flush failed") says it is done.
          await waitFor(PROMPT);
          line(`S ${seq}`, true);
          s.fsyncs++;
          s.lastSynced = seq;
          sinceSync = 0;
        }
      }
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      s.error = { code: e.code ?? 'ERR', message: e.message, op, seq };
      line(`E ${s.error.code} ${op} ${seq} ${e.message.replace(/\s+/g, ' ')}`);
      onFailed(e);
    }
    closeSync(jfd);
    send('quit');
    child.stdin!.end();
    if (!exited) await new Promise((r) => child.once('exit', r));
    s.elapsedMs = Date.now() - t0;
    return s;
  })();
  return { child, started, done };
}
