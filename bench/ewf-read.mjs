#!/usr/bin/env node
// Sequential read of a whole EWF image: anydisk's ewf driver against ewfmount (+ dd) and
// ewfexport. Usage: node bench/ewf-read.mjs [IMAGE.E01] [--runs N]
// Without an image, a 256 MiB source (1/4 random, 1/4 zeros, 1/2 text-like) is acquired with
// ewfacquire (EnCase 6, fast deflate) into .tmp/bench-ewf/. Each tool runs N times,
// interleaved; the report gives the best and the median wall time and the CPU time (user+sys,
// all threads; for ewfmount the FUSE daemon's CPU plus dd's).
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync, writeFileSync, writeSync, closeSync, readdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';

const ROOT = resolve(new URL('..', import.meta.url).pathname);
const args = process.argv.slice(2);
const runsAt = args.indexOf('--runs');
const RUNS = runsAt >= 0 ? Number(args[runsAt + 1]) : 5;
let image = args.find((a, i) => !a.startsWith('--') && args[i - 1] !== '--runs');
const work = join(ROOT, '.tmp', 'bench-ewf');
mkdirSync(work, { recursive: true });

if (!image) {
  image = join(work, 'perf.E01');
  if (!existsSync(image)) {
    const src = join(work, 'src.raw');
    const fd = openSync(src, 'w');
    const MB = 1024 * 1024;
    const words = 'sector chunk table image evidence segment forensic deflate volume header '.split(' ');
    for (let i = 0; i < 256; i++) {
      let b;
      if (i % 4 === 0) b = randomBytes(MB);
      else if (i % 4 === 1) b = Buffer.alloc(MB);
      else {
        let s = '';
        let k = i;
        while (s.length < MB) s += words[(k = (k * 1103515245 + 12345) >>> 0) % words.length] + ' ';
        b = Buffer.from(s.slice(0, MB));
      }
      writeSync(fd, b);
    }
    closeSync(fd);
    execFileSync('ewfacquire', ['-u', '-q', '-t', join(work, 'perf'), '-f', 'encase6', '-c', 'fast', '-S', '4GiB', src], { stdio: 'ignore' });
    rmSync(src);
  }
}

function cpuOfPid(pid) {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) * (1000 / 100); // utime+stime in ticks (100 Hz)
}

function ours() {
  const code = `
    const { openImage } = await import(${JSON.stringify(join(ROOT, 'dist/src/formats/registry.js'))});
    const img = await openImage([${JSON.stringify(image)}]);
    const b = new Uint8Array(1 << 20);
    const t0 = process.hrtime.bigint();
    for (let off = 0; off < img.size; off += b.length) await img.read(b.subarray(0, Math.min(b.length, img.size - off)), off);
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    const c = process.cpuUsage();
    await img.close();
    console.log(JSON.stringify({ ms, cpu: (c.user + c.system) / 1000, size: img.size }));`;
  const script = join(work, 'read-once.mjs');
  writeFileSync(script, code);
  const r = spawnSync(process.execPath, [script], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout);
}

async function ewfmount() {
  const mnt = join(work, 'mnt');
  mkdirSync(mnt, { recursive: true });
  const p = spawn('ewfmount', ['-X', 'ro', image, mnt], { stdio: 'ignore' });
  const exited = new Promise((r) => p.on('exit', r));
  // ewfmount daemonises: find the daemon by its mount point.
  for (let i = 0; i < 100 && !existsSync(join(mnt, 'ewf1')); i++) await new Promise((r) => setTimeout(r, 50));
  await exited;
  const pid = Number(execFileSync('pgrep', ['-n', '-f', `ewfmount -X ro ${image}`], { encoding: 'utf8' }).trim());
  const c0 = cpuOfPid(pid);
  const t0 = process.hrtime.bigint();
  const dd = spawnSync('bash', ['-c', `TIMEFORMAT=%U+%S; time dd if=${join(mnt, 'ewf1')} of=/dev/null bs=1M status=none`], { encoding: 'utf8' });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const ddCpu = dd.stderr.trim().split('\n').pop().split('+').reduce((a, x) => a + Number(x) * 1000, 0);
  const cpu = cpuOfPid(pid) - c0 + ddCpu;
  execFileSync('fusermount', ['-u', mnt]);
  return { ms, cpu };
}

function ewfexport() {
  const target = join(work, 'export');
  const t0 = process.hrtime.bigint();
  const r = spawnSync('bash', ['-c', `TIMEFORMAT=%U+%S; time ewfexport -u -q -f raw -t ${target} ${image} > /dev/null`], { encoding: 'utf8' });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const cpu = r.stderr.trim().split('\n').pop().split('+').reduce((a, x) => a + Number(x) * 1000, 0);
  for (const f of readdirSync(work)) if (f.startsWith('export')) rmSync(join(work, f));
  return { ms, cpu };
}

const results = { 'anydisk ewf driver': [], 'ewfmount + dd': [], 'ewfexport (to a file)': [] };
let size = 0;
for (let i = 0; i < RUNS; i++) {
  const o = ours();
  size = o.size;
  results['anydisk ewf driver'].push(o);
  results['ewfmount + dd'].push(await ewfmount());
  results['ewfexport (to a file)'].push(ewfexport());
}
const med = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
console.log(`image ${image}: ${(size / 1048576).toFixed(0)} MiB media, ${RUNS} runs each, load average ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
for (const [name, rs] of Object.entries(results)) {
  const ms = rs.map((r) => r.ms);
  const cpu = rs.map((r) => r.cpu);
  console.log(`${name.padEnd(24)} wall best ${Math.min(...ms).toFixed(0).padStart(5)} ms, median ${med(ms).toFixed(0).padStart(5)} ms (${(size / 1048576 / (Math.min(...ms) / 1000)).toFixed(0)} MiB/s best); CPU median ${med(cpu).toFixed(0)} ms`);
}
