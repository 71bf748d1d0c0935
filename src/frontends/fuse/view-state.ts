// What an emulator writes into a view's own metadata (a VDI header, a VHD footer, a VMDK
// descriptor) is not disk data, so it cannot live in the disk. It is kept in a small state file
// beside the writable image (`IMAGE.anydisk-views`), saved atomically on every flush and at
// unmount, and replayed on the next mount of the same view, so the emulator sees again what it
// wrote. Data writes are not touched: they go to the disk.

import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { CorruptImageError } from '../../core/errors.js';
import type { ViewFile } from '../../views/types.js';

interface FileState {
  size: number;
  /** [offset, base64 bytes] of metadata ranges that were written. */
  patches: Array<[number, string]>;
}

interface StateFile {
  version: 1;
  view: string;
  files: Record<string, FileState>;
}

const MAX_STATE = 64 << 20;

/** Merge [s, e) into a sorted list of disjoint ranges. */
function addRange(list: Array<[number, number]>, s: number, e: number): void {
  list.push([s, e]);
  list.sort((a, b) => a[0] - b[0]);
  const out: Array<[number, number]> = [];
  for (const r of list) {
    const last = out[out.length - 1];
    if (last && r[0] <= last[1]) last[1] = Math.max(last[1], r[1]);
    else out.push([r[0], r[1]]);
  }
  list.splice(0, list.length, ...out);
}

export class ViewState {
  private readonly dirty = new Map<string, Array<[number, number]>>();
  private files: ViewFile[] = [];

  constructor(
    readonly path: string,
    readonly view: string,
  ) {}

  private load(): StateFile | undefined {
    let text: string;
    try {
      text = readFileSync(this.path, 'utf8');
    } catch {
      return undefined;
    }
    if (text.length > MAX_STATE) throw new CorruptImageError('view state', 'state file is too large', { file: this.path });
    let st: StateFile;
    try {
      st = JSON.parse(text) as StateFile;
    } catch {
      throw new CorruptImageError('view state', 'state file is not valid JSON', { file: this.path });
    }
    if (st.version !== 1 || typeof st.files !== 'object') throw new CorruptImageError('view state', 'unknown state file version', { file: this.path });
    return st.view === this.view ? st : undefined;
  }

  /** Replay saved metadata writes into the files and wrap them so new ones are recorded. */
  async attach(files: ViewFile[]): Promise<ViewFile[]> {
    const saved = this.load();
    for (const f of files) {
      const st = saved?.files[f.name];
      if (!st || f.readOnly) continue;
      if (f.truncate && st.size !== f.size) await f.truncate(st.size);
      const ranges = this.allowed(f);
      for (const [off, b64] of st.patches) {
        const bytes = Buffer.from(b64, 'base64');
        if (off < 0 || off + bytes.length > f.size || !ranges.some(([s, e]) => off >= s && off + bytes.length <= e)) {
          throw new CorruptImageError('view state', `patch for ${f.name} at ${off} is outside the view's metadata`, { file: this.path });
        }
        await f.write(bytes, off);
        this.record(f, off, off + bytes.length);
      }
    }
    this.files = files.map((f) => (f.readOnly ? f : this.wrap(f)));
    return this.files;
  }

  private allowed(f: ViewFile): Array<[number, number]> {
    return f.metadataRanges ? f.metadataRanges() : [[0, Number.MAX_SAFE_INTEGER]];
  }

  private record(f: ViewFile, s: number, e: number): void {
    let list = this.dirty.get(f.name);
    if (!list) this.dirty.set(f.name, (list = []));
    addRange(list, s, e);
  }

  private wrap(f: ViewFile): ViewFile {
    const ranges = this.allowed(f);
    const self = this;
    const w: ViewFile = {
      name: f.name,
      get size() {
        return f.size;
      },
      readOnly: f.readOnly,
      read: (dst, off) => f.read(dst, off),
      async write(src, off) {
        await f.write(src, off);
        const end = off + src.length;
        for (const [s, e] of ranges) {
          const a = Math.max(s, off);
          const b = Math.min(e, end);
          if (b > a) self.record(f, a, b);
        }
      },
      async flush() {
        await f.flush();
        await self.save();
      },
      describe: f.describe?.bind(f),
      metadataRanges: f.metadataRanges?.bind(f),
    };
    if (f.directWriteSegments) {
      // data only: a write into the recorded metadata must come through write() above
      w.directWriteSegments = async (off, len) => (await f.directWriteSegments!(off, len)).filter((s) => !ranges.some(([a, b]) => s.start < b && a < s.start + s.length));
    }
    if (f.truncate) {
      w.truncate = async (size) => {
        await f.truncate!(size);
        self.record(f, 0, 0);
      };
    }
    return w;
  }

  /** Write the state file atomically (temp file, fsync, rename); nothing to do when clean. */
  async save(): Promise<void> {
    if (this.dirty.size === 0) return;
    const st: StateFile = { version: 1, view: this.view, files: {} };
    for (const f of this.files) {
      const ranges = (this.dirty.get(f.name) ?? []).filter(([s, e]) => e > s);
      if (!this.dirty.has(f.name)) continue;
      const patches: Array<[number, string]> = [];
      for (const [s, e] of ranges) {
        const end = Math.min(e, f.size);
        if (end <= s) continue;
        const buf = new Uint8Array(end - s);
        await f.read(buf, s);
        patches.push([s, Buffer.from(buf).toString('base64')]);
      }
      st.files[f.name] = { size: f.size, patches };
    }
    const tmp = `${this.path}.tmp`;
    const fd = openSync(tmp, 'w', 0o644);
    try {
      writeSync(fd, JSON.stringify(st));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, this.path);
  }
}
