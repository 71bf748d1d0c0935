// A set of byte ranges [start, end): sorted, disjoint, merged where they touch or overlap. The
// FUSE frontend keeps what it handed the addon as write segments in one (fuse/native.ts); a
// streaming file source keeps what it read and has not dropped from the page cache yet
// (sources/drop-behind.ts).

export class RangeSet {
  private ranges: Array<[number, number]> = [];
  private covered = 0;

  /** Bytes covered. */
  get bytes(): number {
    return this.covered;
  }

  /** Number of disjoint ranges. */
  get count(): number {
    return this.ranges.length;
  }

  /** The lowest range, if any. */
  first(): readonly [number, number] | undefined {
    return this.ranges[0];
  }

  /** Index of the first range that ends after `at`. */
  private firstEndingAfter(at: number): number {
    let lo = 0;
    let hi = this.ranges.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.ranges[mid]![1] <= at) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** The parts of [s, e) not covered, in order. */
  gaps(s: number, e: number): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    let pos = s;
    for (let i = this.firstEndingAfter(s); i < this.ranges.length && pos < e; i++) {
      const [a, b] = this.ranges[i]!;
      if (a >= e) break;
      if (a > pos) out.push([pos, a]);
      pos = Math.max(pos, b);
    }
    if (pos < e) out.push([pos, e]);
    return out;
  }

  /** Add [s, e); returns how many of its bytes were not covered before. */
  add(s: number, e: number): number {
    if (e <= s) return 0;
    const r = this.ranges;
    // ranges that touch or overlap [s, e) are merged into it
    const i = this.firstEndingAfter(s - 1);
    let j = i;
    let lo = s;
    let hi = e;
    let before = 0;
    while (j < r.length && r[j]![0] <= e) {
      lo = Math.min(lo, r[j]![0]);
      hi = Math.max(hi, r[j]![1]);
      before += r[j]![1] - r[j]![0];
      j++;
    }
    r.splice(i, j - i, [lo, hi]);
    const added = hi - lo - before;
    this.covered += added;
    return added;
  }

  /** Remove everything below `at`. */
  removeBelow(at: number): void {
    const r = this.ranges;
    let k = 0;
    while (k < r.length && r[k]![1] <= at) this.covered -= r[k]![1] - r[k++]![0];
    r.splice(0, k);
    if (r.length && r[0]![0] < at) {
      this.covered -= at - r[0]![0];
      r[0]![0] = at;
    }
  }

  clear(): void {
    this.ranges = [];
    this.covered = 0;
  }
}
