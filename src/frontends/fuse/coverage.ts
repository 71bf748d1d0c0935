// The ranges of a file already handed to the addon as write segments: sorted, disjoint, merged
// where they touch. New segments are cut to what is not covered yet, so the addon never gets two
// segments for one byte (it would drop the second one whole, and with it the part that is new).

export class Coverage {
  private ranges: Array<[number, number]> = [];

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

  add(s: number, e: number): void {
    if (e <= s) return;
    const r = this.ranges;
    // ranges that touch or overlap [s, e) are merged into it
    const i = this.firstEndingAfter(s - 1);
    let j = i;
    let lo = s;
    let hi = e;
    while (j < r.length && r[j]![0] <= e) {
      lo = Math.min(lo, r[j]![0]);
      hi = Math.max(hi, r[j]![1]);
      j++;
    }
    r.splice(i, j - i, [lo, hi]);
  }

  clear(): void {
    this.ranges = [];
  }

  /** Number of disjoint ranges (for tests). */
  get count(): number {
    return this.ranges.length;
  }
}
