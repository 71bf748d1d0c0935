// Sequential-stream detection for read-ahead, in the spirit of the kernel's: a few streams are
// tracked by where the next read is expected; a read close to one of them continues that stream
// and doubles its window (up to the maximum), any other read starts a new stream with no window,
// so random access fetches only what it asks for.

interface Stream {
  /** Where the next sequential read is expected. */
  next: number;
  /** Current read-ahead window in bytes (0 = none yet). */
  window: number;
  /** Read-ahead has been requested up to here. */
  frontier: number;
  lastUse: number;
}

export interface ReadAheadRange {
  start: number;
  end: number;
}

const MAX_STREAMS = 8;

export class ReadAhead {
  private streams: Stream[] = [];
  private clock = 0;
  /** The last access continued a sequential stream. */
  streaming = false;

  constructor(
    private readonly maxWindow: number,
    private readonly minWindow: number,
    /** How far from the expected offset a read still counts as sequential. */
    private readonly slack: number,
    /** Smallest top-up of the window (one full request). */
    private readonly step: number,
  ) {}

  /**
   * Note a read of [offset, offset+length) and return the range to prefetch, if any (not yet
   * clipped to the object's size, not yet filtered against what is cached).
   */
  access(offset: number, length: number): ReadAheadRange | undefined {
    const end = offset + length;
    this.clock++;
    let s = this.streams.find((st) => offset >= st.next - this.slack && offset <= st.next + this.slack);
    this.streaming = s !== undefined;
    if (!s) {
      s = { next: end, window: 0, frontier: end, lastUse: this.clock };
      if (this.streams.length >= MAX_STREAMS) {
        let oldest = 0;
        for (let i = 1; i < this.streams.length; i++) if (this.streams[i]!.lastUse < this.streams[oldest]!.lastUse) oldest = i;
        this.streams.splice(oldest, 1);
      }
      this.streams.push(s);
      return undefined;
    }
    s.lastUse = this.clock;
    s.next = Math.max(s.next, end);
    if (this.maxWindow <= 0) return undefined;
    const grown = Math.min(this.maxWindow, Math.max(s.window * 2, length * 2, this.minWindow));
    s.window = grown;
    if (s.frontier < end) s.frontier = end;
    // Keep about a window in flight, topped up in steps of at least `step` bytes so that each
    // request stays large.
    if (s.frontier - end > s.window - Math.min(this.step, s.window / 2)) return undefined;
    const start = s.frontier;
    const stop = end + s.window;
    if (stop <= start) return undefined;
    s.frontier = stop;
    return { start, end: stop };
  }

  reset(): void {
    this.streams = [];
  }
}
