// A real nginx for HTTP source tests: serves a directory on 127.0.0.1 at an ephemeral port, from
// its own prefix directory and configuration (no system config, no daemon), with an access log
// that records every request's range and body size so tests can count what was fetched.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { ROOT } from './tools.js';

export interface NginxServer {
  /** http://127.0.0.1:PORT (no trailing slash). */
  readonly url: string;
  readonly port: number;
  /** Access log lines parsed: one per request, in order. */
  logLines(): AccessLine[];
  /** Stop nginx (waits for it to exit). Idempotent. */
  stop(): Promise<void>;
  /** Start again on the same port with the same root (after stop()). */
  restart(): Promise<void>;
  /** Stop and remove the prefix directory. */
  dispose(): Promise<void>;
}

export interface AccessLine {
  method: string;
  uri: string;
  status: number;
  bodyBytes: number;
  range: string;
  ifRange: string;
}

const NGINX_BIN = existsSync('/usr/sbin/nginx') ? '/usr/sbin/nginx' : 'nginx';

/** A free TCP port on 127.0.0.1 (released before returning; nginx binds it right after). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

function config(prefix: string, root: string, port: number): string {
  const asRoot = process.getuid?.() === 0 ? 'user root;\n' : '';
  return `${asRoot}worker_processes 1;
daemon off;
master_process on;
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log warn;
events { worker_connections 256; }
http {
  default_type application/octet-stream;
  log_format ranges '$request_method\\t$uri\\t$status\\t$body_bytes_sent\\t$http_range\\t$http_if_range';
  access_log ${prefix}/access.log ranges;
  client_body_temp_path ${prefix}/body;
  proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fastcgi;
  uwsgi_temp_path ${prefix}/uwsgi;
  scgi_temp_path ${prefix}/scgi;
  sendfile on;
  tcp_nopush on;
  keepalive_timeout 60s;
  keepalive_requests 100000;
  server {
    listen 127.0.0.1:${port};
    server_name localhost;
    root ${root};
    location / { }
  }
}
`;
}

async function waitListening(port: number, child: ChildProcess, prefix: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) {
      const log = existsSync(join(prefix, 'error.log')) ? readFileSync(join(prefix, 'error.log'), 'utf8') : '';
      throw new Error(`nginx exited with ${child.exitCode}: ${log.trim().split('\n').slice(-3).join(' | ')}`);
    }
    const ok = await new Promise<boolean>((resolve) => {
      import('node:net').then(({ connect }) => {
        const s = connect(port, '127.0.0.1');
        s.once('connect', () => {
          s.destroy();
          resolve(true);
        });
        s.once('error', () => resolve(false));
      });
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error('nginx did not start listening within 10 s');
}

/** Start nginx serving `root` (a directory). */
export async function startNginx(root: string, opts: { port?: number } = {}): Promise<NginxServer> {
  const base = join(ROOT, '.tmp');
  mkdirSync(base, { recursive: true });
  const prefix = mkdtempSync(join(base, 'nginx-'));
  let port = opts.port ?? (await freePort());
  let child: ChildProcess | undefined;

  const launch = async (): Promise<void> => {
    writeFileSync(join(prefix, 'nginx.conf'), config(prefix, root, port));
    const c = spawn(NGINX_BIN, ['-p', prefix, '-c', join(prefix, 'nginx.conf'), '-e', join(prefix, 'error.log')], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    c.stderr?.resume();
    child = c;
    // Never outlive the test process, even when it dies without calling stop().
    const killOnExit = () => c.kill('SIGKILL');
    process.once('exit', killOnExit);
    c.once('exit', () => process.removeListener('exit', killOnExit));
    await waitListening(port, c, prefix);
  };

  // The chosen port can be taken between freePort() and nginx's bind: try a few.
  for (let attempt = 0; ; attempt++) {
    try {
      await launch();
      break;
    } catch (err) {
      if (attempt >= 3 || opts.port !== undefined) {
        rmSync(prefix, { recursive: true, force: true });
        throw err;
      }
      port = await freePort();
    }
  }

  const stop = async (): Promise<void> => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise<void>((r) => c.once('exit', () => r()));
    c.kill('SIGTERM');
    const timer = setTimeout(() => c.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  };

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    logLines(): AccessLine[] {
      const p = join(prefix, 'access.log');
      if (!existsSync(p)) return [];
      return readFileSync(p, 'utf8')
        .split('\n')
        .filter((l) => l.length > 0)
        .map((l) => {
          const [method = '', uri = '', status = '0', bytes = '0', range = '-', ifRange = '-'] = l.split('\t');
          return { method, uri, status: Number(status), bodyBytes: Number(bytes), range, ifRange };
        });
    },
    stop,
    async restart(): Promise<void> {
      await stop();
      await launch();
    },
    async dispose(): Promise<void> {
      await stop();
      rmSync(prefix, { recursive: true, force: true });
    },
  };
}
