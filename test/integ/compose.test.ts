// Composing disks: partitions (MBR with logical partitions, GPT, made by sfdisk), --offset and
// --sizelimit, several images combined or striped (RAID-0), through every view.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { VIEWS } from '../../src/views/index.js';
import { mount } from '../harness/mount.js';
import { anydisk, patternBytes, run, tempDir, tryRun } from '../harness/tools.js';

const QEMU_FMT: Record<string, string> = { raw: 'raw', vdi: 'vdi', vhd: 'vpc', vmdk: 'vmdk' };
const EXT: Record<string, string> = { raw: 'dd', vdi: 'vdi', vhd: 'vhd', vmdk: 'vmdk' };

function viewFile(mnt: string, base: string, view: string): string {
  return join(mnt, `${base}.${EXT[view]}`);
}

function compareView(reference: string, mnt: string, base: string, view: string): void {
  const r = tryRun('qemu-img', ['compare', '-f', 'raw', '-F', QEMU_FMT[view]!, reference, viewFile(mnt, base, view)]);
  assert.equal(r.status, 0, `${view}: ${r.stdout}${r.stderr}`);
}

function makePartitioned(dir: string, label: 'dos' | 'gpt'): { disk: string; parts: Array<{ node: string; start: number; size: number }> } {
  const disk = join(dir, `${label}.img`);
  writeFileSync(disk, patternBytes(24 * 1024 * 1024, label === 'dos' ? 21 : 22));
  const script =
    label === 'dos'
      ? 'label: dos\nstart=2048, size=4096, type=83\nstart=8192, size=6144, type=c\nstart=16384, type=5\nstart=18432, size=4096, type=83\nstart=24576, size=8192, type=82\n'
      : 'label: gpt\nstart=2048, size=4096, name=alpha\nstart=8192, size=6144, name=beta\nstart=16384, size=20000, name=gamma\n';
  run('sfdisk', ['-q', disk], { input: script });
  const table = JSON.parse(run('sfdisk', ['--json', disk])) as { partitiontable: { partitions: Array<{ node: string; start: number; size: number; type: string }>; sectorsize?: number } };
  const parts = table.partitiontable.partitions
    .filter((p) => !['5', 'f', '85'].includes(p.type))
    .map((p) => ({ node: p.node, start: p.start * 512, size: p.size * 512 }));
  return { disk, parts };
}

for (const label of ['dos', 'gpt'] as const) {
  test(`${label}: every partition alone equals the byte range sfdisk reports, through every view`, () => {
    const { dir, cleanup } = tempDir(`part-${label}`);
    try {
      const { disk, parts } = makePartitioned(dir, label);
      const listing = anydisk(['partitions', '--output', 'json', disk]);
      assert.equal(listing.status, 0, listing.stderr);
      const listed = JSON.parse(listing.stdout) as { scheme: string; partitions: Array<{ index: number; start: number; size: number }> };
      assert.equal(listed.scheme, label === 'dos' ? 'mbr' : 'gpt');
      const data = readFileSync(disk);
      for (const p of parts) {
        const index = Number(/(\d+)$/.exec(p.node)![1]);
        const mine = listed.partitions.find((x) => x.index === index);
        assert.ok(mine, `partition ${index} listed`);
        assert.deepEqual([mine!.start, mine!.size], [p.start, p.size], `partition ${index}`);
        const ref = join(dir, `part${index}.raw`);
        writeFileSync(ref, data.subarray(p.start, p.start + p.size));
        for (const view of VIEWS) {
          const m = mount(dir, ['--partition', String(index), disk, '--out', view.name]);
          try {
            compareView(ref, m.mnt, label, view.name);
          } finally {
            m.umount();
          }
        }
      }
    } finally {
      cleanup();
    }
  });
}

test('--offset and --sizelimit cut a window out of the disk', () => {
  const { dir, cleanup } = tempDir('window');
  try {
    const data = patternBytes(4 * 1024 * 1024, 4);
    const disk = join(dir, 'w.img');
    writeFileSync(disk, data);
    const ref = join(dir, 'ref.raw');
    writeFileSync(ref, data.subarray(1048576, 1048576 + 2000000));
    const m = mount(dir, ['--offset', '1M', '--sizelimit', '2000000', disk, '--out', 'raw']);
    try {
      const got = readFileSync(join(m.mnt, 'w.dd'));
      assert.ok(got.subarray(0, 2000000).equals(readFileSync(ref)));
    } finally {
      m.umount();
    }
  } finally {
    cleanup();
  }
});

for (const n of [2, 3]) {
  test(`raid0 of ${n} images reassembles the original`, () => {
    const { dir, cleanup } = tempDir(`raid0-${n}`);
    try {
      const chunk = 64 * 1024;
      const per = 1024 * 1024;
      const data = patternBytes(per * n, 30 + n);
      const members = Array.from({ length: n }, (_, i) => join(dir, `m${i}.img`));
      const bufs = members.map(() => Buffer.alloc(per));
      for (let k = 0; k < (per * n) / chunk; k++) {
        const d = k % n;
        const at = Math.floor(k / n) * chunk;
        bufs[d]!.set(data.subarray(k * chunk, (k + 1) * chunk), at);
      }
      members.forEach((m, i) => writeFileSync(m, bufs[i]!));
      const ref = join(dir, 'ref.raw');
      writeFileSync(ref, data);
      for (const view of VIEWS.map((v) => v.name)) {
        const m = mount(dir, ['--morph', 'raid0', '--morphopts', `raid_chunksize=${chunk}`, ...members, '--out', view]);
        try {
          compareView(ref, m.mnt, 'm0', view);
        } finally {
          m.umount();
        }
      }
    } finally {
      cleanup();
    }
  });
}

test('combine: split pieces of any size concatenate to the whole', () => {
  const { dir, cleanup } = tempDir('combine');
  try {
    const data = patternBytes(3 * 1024 * 1024 + 4096, 8);
    const cuts = [0, 1000448, 2500096, data.length];
    const pieces = cuts.slice(0, -1).map((c, i) => {
      const p = join(dir, `piece${i}.bin`);
      writeFileSync(p, data.subarray(c, cuts[i + 1]));
      return p;
    });
    const ref = join(dir, 'ref.raw');
    writeFileSync(ref, data);
    for (const view of VIEWS.map((v) => v.name)) {
      const m = mount(dir, ['--morph', 'combine', ...pieces, '--out', view]);
      try {
        compareView(ref, m.mnt, 'piece0', view);
      } finally {
        m.umount();
      }
    }
  } finally {
    cleanup();
  }
});

test('writes through a partition land at the partition offset and nowhere else', () => {
  const { dir, cleanup } = tempDir('part-write');
  try {
    const { disk, parts } = makePartitioned(dir, 'dos');
    const before = readFileSync(disk);
    const p = parts[1]!;
    const m = mount(dir, ['--writethrough', '--inopts', 'rawwritable=true', '--partition', '2', disk, '--out', 'raw']);
    const marker = Buffer.from('anydisk partition write marker');
    try {
      const fd = join(m.mnt, 'dos.dd');
      const f = run('sh', ['-c', `printf '%s' '${marker.toString()}' | dd of=${fd} bs=1 seek=1000 conv=notrunc status=none && sync`]);
      void f;
    } finally {
      m.umount();
    }
    const after = readFileSync(disk);
    const expected = Buffer.from(before);
    marker.copy(expected, p.start + 1000);
    assert.ok(after.equals(expected), 'only the marker bytes changed, at partition start + 1000');
  } finally {
    cleanup();
  }
});

test('writes through a partition land at the partition offset of the qcow2 overlay and nowhere else', () => {
  const { dir, cleanup } = tempDir('part-overlay');
  try {
    const { disk, parts } = makePartitioned(dir, 'gpt');
    const before = readFileSync(disk);
    const p = parts[2]!;
    const cache = join(dir, 'changes.qcow2');
    const marker = Buffer.from('partition write into the overlay');
    const m = mount(dir, ['--cache', cache, '--partition', '3', disk, '--out', 'raw']);
    try {
      run('sh', ['-c', `printf '%s' '${marker.toString()}' | dd of=${join(m.mnt, 'gpt.dd')} bs=1 seek=4097 conv=notrunc status=none && sync`]);
    } finally {
      m.umount();
    }
    assert.ok(readFileSync(disk).equals(before), 'the input is unchanged');
    const out = join(dir, 'out.raw');
    run('qemu-img', ['convert', '-O', 'raw', cache, out]);
    const expected = Buffer.from(before);
    marker.copy(expected, p.start + 4097);
    assert.ok(readFileSync(out).equals(expected), 'the overlay differs from the input only at partition start + 4097');
  } finally {
    cleanup();
  }
});
