// `npm run bench`: anydisk side by side with its peers (xmount, ewfmount, affuse, qemu-nbd +
// nbdfuse, qemu-img convert) on the same images, alternating runs, medians of at least three,
// page cache dropped before every run. Prints a table of ratios and writes bench/out/results.json
// and docs/performance.md. BENCH_SIZE_MIB (default 1024) and BENCH_RUNS (default 3) tune it; the
// short measures (sequential reads and converts, about a second each) run at least 5 times.
import { cpus, totalmem } from 'node:os';
import { rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { startNginx } from '../test/harness/nginx.js';
import { buildImages, type BenchImages } from './images.js';
import { randRead, randWrite, seqRead, seqWrite } from './fio.js';
import { affuse, anydisk, ewfmount, qemuNbdFuse, xmount, type Mounted } from './peers.js';
import { dropCaches, ensureDir, median, peakRssMiB, sh, trySh } from './util.js';

const ROOT = resolve(new URL('../..', import.meta.url).pathname);
const OUT = ensureDir(join(ROOT, 'bench', 'out'));
const WORK = ensureDir(join(OUT, 'work'));
const SIZE_MIB = Number(process.env.BENCH_SIZE_MIB ?? 1024);
const RUNS = Math.max(3, Number(process.env.BENCH_RUNS ?? 3));
/**
 * Runs of the short measures. A one-second read or convert on this VM swings by 1.5-2x from run
 * to run (the host's disk and page cache, not the tools): five runs keep one or two outliers out
 * of the median.
 */
const SHORT_RUNS = Math.max(5, RUNS);
/** The launcher users run; it runs this node (ANYDISK_NODE). */
const ANYDISK = join(ROOT, 'bin', 'anydisk');
process.env.ANYDISK_NODE ??= process.execPath;

interface Row {
  line: string;
  metric: string;
  unit: string;
  runs: number;
  anydisk: number;
  peer: string;
  peerValue: number;
  /** anydisk / peer for rates; peer / anydisk for times: above 1 means anydisk is better. */
  ratio: number;
  note?: string;
}

const rows: Row[] = [];
const log = (s: string) => process.stderr.write(`bench: ${s}\n`);

type Side = () => Promise<number>;

/**
 * Alternate a and b `runs` times, in the order a b, b a, a b, ... (whoever runs first in a round
 * meets whatever the previous step left behind: writeback, freed blocks); medians. `prepare` runs
 * before each run (by default: drop the page cache).
 */
async function sideBySide(a: Side, b: Side, runs: number, prepare: () => void = dropCaches): Promise<[number, number]> {
  const xa: number[] = [];
  const xb: number[] = [];
  for (let i = 0; i < runs; i++) {
    const order: Array<[Side, number[]]> = i % 2 === 0 ? [[a, xa], [b, xb]] : [[b, xb], [a, xa]];
    for (const [run, into] of order) {
      prepare();
      into.push(await run());
    }
  }
  return [median(xa), median(xb)];
}

async function through<T>(mount: () => Promise<Mounted>, f: (m: Mounted) => T): Promise<T> {
  const m = await mount();
  try {
    return f(m);
  } finally {
    await m.unmount();
  }
}

async function line(name: string, metric: string, unit: string, higherBetter: boolean, a: Side, peer: string, b: Side, runs = RUNS, prepare?: () => void): Promise<void> {
  log(`${name} — ${metric} vs ${peer}`);
  try {
    const [va, vb] = await sideBySide(a, b, runs, prepare);
    const ratio = higherBetter ? va / vb : vb / va;
    rows.push({ line: name, metric, unit, runs, anydisk: va, peer, peerValue: vb, ratio });
  } catch (err) {
    rows.push({ line: name, metric, unit, runs, anydisk: NaN, peer, peerValue: NaN, ratio: NaN, note: (err as Error).message.split('\n')[0] });
  }
}

async function readLines(img: BenchImages, size: number): Promise<void> {
  // [line, input file, anydisk's mount, peer, peer's mount]
  const pairs: Array<[string, string, () => Promise<Mounted>, string, () => Promise<Mounted>]> = [
    ['raw -> vdi', img.raw, () => anydisk(WORK, ['--out', 'vdi', img.raw], '.vdi'), 'xmount', () => xmount(WORK, 'raw', [img.raw], 'vdi')],
    ['E01 -> raw', img.e01, () => anydisk(WORK, ['--out', 'raw', img.e01], '.dd'), 'ewfmount', () => ewfmount(WORK, img.e01)],
    ['E01 -> raw', img.e01, () => anydisk(WORK, ['--out', 'raw', img.e01], '.dd'), 'xmount', () => xmount(WORK, 'ewf', [img.e01], 'raw')],
    ['AFF -> raw', img.aff, () => anydisk(WORK, ['--out', 'raw', img.aff], '.dd'), 'affuse', () => affuse(WORK, img.aff)],
    ['qcow2 -> raw', img.qcow2, () => anydisk(WORK, ['--out', 'raw', img.qcow2], '.dd'), 'qemu-nbd+nbdfuse', () => qemuNbdFuse(WORK, img.qcow2, 'qcow2')],
    ['compressed qcow2 -> raw', img.qcow2c, () => anydisk(WORK, ['--out', 'raw', img.qcow2c], '.dd'), 'qemu-nbd+nbdfuse', () => qemuNbdFuse(WORK, img.qcow2c, 'qcow2')],
    ['vmdk -> raw', img.vmdk, () => anydisk(WORK, ['--out', 'raw', img.vmdk], '.dd'), 'qemu-nbd+nbdfuse', () => qemuNbdFuse(WORK, img.vmdk, 'vmdk')],
  ];
  let rss = NaN;
  for (const [name, input, mA, peer, mB] of pairs) {
    await line(name, 'sequential read', 'MB/s', true, () => through(mA, (m) => {
      const v = seqRead(m.file, size);
      rss = Math.max(Number.isNaN(rss) ? 0 : rss, peakRssMiB(m.pid));
      return v;
    }), peer, () => through(mB, (m) => seqRead(m.file, size)), SHORT_RUNS);
    // The same read with the input file already in the page cache: a cold read follows the host's
    // disk, whose speed swings 2x between runs on this VM; a cached one measures the tools.
    const cached = () => {
      dropCaches();
      sh(`cat ${JSON.stringify(input)} > /dev/null`);
    };
    await line(name, 'sequential read, input cached', 'MB/s', true, () => through(mA, (m) => seqRead(m.file, size)), peer, () => through(mB, (m) => seqRead(m.file, size)), SHORT_RUNS, cached);
    await line(name, 'random 4 KiB read', 'IOPS', true, () => through(mA, (m) => randRead(m.file, size)), peer, () => through(mB, (m) => randRead(m.file, size)));
  }
  // The same raw image from an archive (nginx on 127.0.0.1) against the local file, both through anydisk.
  const nginx = await startNginx(dirname(img.raw));
  try {
    const url = `${nginx.url}/${basename(img.raw)}`;
    await line('raw over HTTP -> raw', 'sequential read', 'MB/s', true, () => through(() => anydisk(WORK, ['--out', 'raw', url], '.dd'), (m) => seqRead(m.file, size)), 'anydisk, local file', () =>
      through(() => anydisk(WORK, ['--out', 'raw', img.raw], '.dd'), (m) => seqRead(m.file, size)), SHORT_RUNS,
    );
  } finally {
    await nginx.stop();
  }
  rows.push({ line: 'daemon', metric: 'peak RSS while streaming', unit: 'MiB', runs: SHORT_RUNS * pairs.length, anydisk: rss, peer: '(limit)', peerValue: 200, ratio: 200 / rss });
}

async function writeLines(img: BenchImages): Promise<void> {
  const span = Math.min(512, SIZE_MIB / 2) * 1024 * 1024;
  const fresh = (name: string, maker: 'anydisk' | 'qemu') => {
    const p = join(WORK, name);
    rmSync(p, { force: true });
    if (maker === 'anydisk') sh(`${ANYDISK} create -f qcow2 -b ${img.qcow2} -F qcow2 ${p}`);
    else sh(`qemu-img create -q -f qcow2 -b ${img.qcow2} -F qcow2 ${p}`);
    return p;
  };
  const ours = (f: (m: Mounted) => number) => through(() => anydisk(WORK, ['--writethrough', '--out', 'raw', fresh('w-any.qcow2', 'anydisk')], '.dd'), f);
  const theirs = (f: (m: Mounted) => number) => through(() => qemuNbdFuse(WORK, fresh('w-qemu.qcow2', 'qemu'), 'qcow2', true), f);
  await line('qcow2 overlay', 'random 4 KiB write', 'IOPS', true, () => ours((m) => randWrite(m.file, span)), 'qemu-nbd+nbdfuse', () => theirs((m) => randWrite(m.file, span)));
  await line('qcow2 overlay', 'sequential write', 'MB/s', true, () => ours((m) => seqWrite(m.file, span)), 'qemu-nbd+nbdfuse', () => theirs((m) => seqWrite(m.file, span)));
}

async function timed(f: () => Promise<unknown> | unknown): Promise<number> {
  const t = process.hrtime.bigint();
  await f();
  return Number(process.hrtime.bigint() - t) / 1e6;
}

async function latencyLines(img: BenchImages): Promise<void> {
  const mountTime = async (mount: () => Promise<Mounted>) => {
    let m: Mounted | undefined;
    const ms = await timed(async () => {
      m = await mount();
      statSync(m.file);
    });
    await m!.unmount();
    return ms;
  };
  await line('1 TiB sparse qcow2', 'mount until ready', 'ms', false, () => mountTime(() => anydisk(WORK, ['--out', 'vdi', img.sparse1t], '.vdi')), 'qemu-nbd+nbdfuse', () => mountTime(() => qemuNbdFuse(WORK, img.sparse1t, 'qcow2')));
  await line('100-segment E01', 'mount until ready', 'ms', false, () => mountTime(() => anydisk(WORK, ['--out', 'raw', img.e01x100], '.dd')), 'ewfmount', () => mountTime(() => ewfmount(WORK, img.e01x100)));
  await line('100-segment E01', 'mount until ready', 'ms', false, () => mountTime(() => anydisk(WORK, ['--out', 'raw', img.e01x100], '.dd')), 'xmount', () => mountTime(() => xmount(WORK, 'ewf', [img.e01x100], 'raw')));
}

async function convertLines(img: BenchImages): Promise<void> {
  const out = (n: string) => join(WORK, n);
  // Tiny inputs: before each timed run a tool converts one of them (untimed), so its own binary and
  // code are back in the page cache that was just dropped, while the image's data stays cold.
  // Without it the measure counts reading node's 100 MB binary against qemu-img's few.
  const tiny = { raw: out('tiny.raw'), qcow2: out('tiny.qcow2') };
  writeFileSync(tiny.raw, Buffer.alloc(1 << 20, 0x5a));
  rmSync(tiny.qcow2, { force: true });
  sh(`qemu-img convert -f raw -O qcow2 ${tiny.raw} ${tiny.qcow2}`);
  // The old output goes before the cache drop: its freed blocks (discarded, as / is mounted with
  // `discard`) are then committed by the drop's sync instead of during the timed run.
  const run = (warm: string, target: string, cmd: string) => async () => {
    rmSync(target, { force: true });
    dropCaches();
    sh(warm);
    return timed(() => sh(cmd));
  };
  const cases: Array<[string, string, 'raw' | 'qcow2', string, string]> = [
    ['raw -> qcow2', img.raw, 'raw', 'qcow2', 'qcow2'],
    ['qcow2 -> vdi', img.qcow2, 'qcow2', 'vdi', 'vdi'],
  ];
  for (const [name, src, inFmt, outFmt, ext] of cases) {
    const warmOut = out(`warm.${ext}`);
    const any = (from: string, to: string) => `${ANYDISK} convert -t unsafe -f ${inFmt} -O ${outFmt} ${from} ${to}`;
    const qemu = (from: string, to: string) => `rm -f ${to}; qemu-img convert -f ${inFmt} -O ${outFmt} ${from} ${to}`;
    // -t unsafe: no fdatasync, like qemu-img convert's default cache mode (and ewfexport)
    await line(
      `convert ${name}`,
      'time',
      'ms',
      false,
      run(`rm -f ${warmOut}; ${any(tiny[inFmt], warmOut)}`, out(`c-any.${ext}`), any(src, out(`c-any.${ext}`))),
      'qemu-img convert',
      run(qemu(tiny[inFmt], warmOut), out(`c-qemu.${ext}`), qemu(src, out(`c-qemu.${ext}`))),
      SHORT_RUNS,
    );
  }
  await line(
    'convert E01 -> raw',
    'time',
    'ms',
    false,
    run(`rm -f ${out('warm.raw')}; ${ANYDISK} convert -t unsafe -f raw -O raw ${tiny.raw} ${out('warm.raw')}`, out('c-any.raw'), `${ANYDISK} convert -t unsafe -O raw ${img.e01} ${out('c-any.raw')}`),
    'ewfexport',
    run('ewfexport -V >/dev/null', out('c-ewf.raw'), `ewfexport -u -q -f raw -t ${out('c-ewf')} ${img.e01} >/dev/null`),
    SHORT_RUNS,
  );
}

function report(): string {
  const fmt = (v: number) => (Number.isNaN(v) ? 'n/a' : v >= 100 ? v.toFixed(0) : v.toFixed(2));
  const lines = ['| line | metric | runs | anydisk | peer | peer value | ratio (>1: anydisk better) |', '|---|---|---|---|---|---|---|'];
  for (const r of rows) {
    lines.push(`| ${r.line} | ${r.metric} (${r.unit}) | ${r.runs} | ${fmt(r.anydisk)} | ${r.peer} | ${fmt(r.peerValue)} | ${fmt(r.ratio)}${r.note ? ` — failed: ${r.note}` : ''} |`);
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const started = Date.now();
  const img = buildImages(join(OUT, 'images'), SIZE_MIB, log);
  const size = statSync(img.raw).size;
  const only = (process.env.BENCH_ONLY ?? 'read,write,latency,convert').split(',');
  // An untimed round first: the bench starts right after the build (npm run bench), and its first
  // line used to meet what that left behind (writeback, a busy host); raw -> vdi, its first line,
  // came out at 0.68-0.72 in such runs and at 1.1-1.8 elsewhere.
  log('warm-up (untimed): one sequential read through anydisk and through xmount');
  dropCaches();
  await through(() => anydisk(WORK, ['--out', 'vdi', img.raw], '.vdi'), (m) => seqRead(m.file, size)).catch(() => undefined);
  dropCaches();
  await through(() => xmount(WORK, 'raw', [img.raw], 'vdi'), (m) => seqRead(m.file, size)).catch(() => undefined);
  if (only.includes('read')) await readLines(img, size);
  if (only.includes('write')) await writeLines(img);
  if (only.includes('latency')) await latencyLines(img);
  if (only.includes('convert')) await convertLines(img);
  const table = report();
  const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, ${trySh('uname -sr').out.trim()}, node ${process.version}`;
  const when = new Date().toISOString();
  process.stdout.write(`\n${table}\n\nmachine: ${machine}; image ${SIZE_MIB} MiB; medians of the runs shown; ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
  writeFileSync(join(OUT, 'results.json'), JSON.stringify({ when, machine, sizeMiB: SIZE_MIB, runs: RUNS, rows }, null, 2));
  // docs/performance.md shows whole runs only: a BENCH_ONLY run leaves it alone
  if (process.env.BENCH_ONLY) return;
  writeFileSync(
    join(ROOT, 'docs', 'performance.md'),
    `# Performance\n\nThe latest \`npm run bench\` (${when}), on ${machine}; a ${SIZE_MIB} MiB ext4 disk with mixed content, medians of alternating runs (the runs column counts each tool's; peak RSS is the highest over the sequential reads), page cache dropped before each run (the "input cached" lines then read the input file once, so they measure the tools rather than the host's disk). Ratios above 1 mean anydisk is better (rates: anydisk / peer; times: peer / anydisk). "n/a" lines failed, with the reason.\n\n${table}\n`,
  );
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
