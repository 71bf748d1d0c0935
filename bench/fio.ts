// Measurements through a mounted file, with fio (installed by the bench's set-up).
import { sh } from './util.js';

interface FioJob {
  read: { bw_bytes: number; iops: number };
  write: { bw_bytes: number; iops: number };
}

function fio(args: string[]): FioJob {
  const out = sh(`fio --output-format=json ${args.join(' ')}`);
  const j = JSON.parse(out.slice(out.indexOf('{'))) as { jobs: FioJob[] };
  return j.jobs[0]!;
}

/** Sequential read of the whole file in 1 MiB reads: MB/s. */
export function seqRead(file: string, size: number): number {
  return fio([`--name=seq`, `--filename=${file}`, '--readonly', '--rw=read', '--bs=1M', '--ioengine=psync', `--size=${size}`]).read.bw_bytes / 1e6;
}

/** Random 4 KiB reads, 4 jobs, for `seconds`: IOPS. */
export function randRead(file: string, size: number, seconds = 6): number {
  return fio([`--name=rr`, `--filename=${file}`, '--readonly', '--rw=randread', '--bs=4k', '--ioengine=psync', '--numjobs=4', '--group_reporting', `--size=${size}`, `--runtime=${seconds}`, '--time_based', '--randrepeat=1']).read.iops;
}

/** Random 4 KiB writes over the first `span` bytes, fsync at the end: IOPS. */
export function randWrite(file: string, span: number, seconds = 6): number {
  return fio([`--name=rw`, `--filename=${file}`, '--rw=randwrite', '--bs=4k', '--ioengine=psync', '--numjobs=4', '--group_reporting', `--size=${span}`, `--runtime=${seconds}`, '--time_based', '--end_fsync=1', '--randrepeat=1']).write.iops;
}

/** Sequential 1 MiB writes of `span` bytes with a final fsync: MB/s. */
export function seqWrite(file: string, span: number): number {
  return fio([`--name=sw`, `--filename=${file}`, '--rw=write', '--bs=1M', '--ioengine=psync', `--size=${span}`, '--end_fsync=1']).write.bw_bytes / 1e6;
}
