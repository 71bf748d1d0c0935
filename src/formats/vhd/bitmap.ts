// Sector bitmaps: runs of equal bits, read a byte at a time where the byte is uniform.
// VHD stores them MSB-first (bit 7 of byte 0 = first sector), VHDX LSB-first.

export function bitAt(bitmap: Uint8Array, i: number, msbFirst: boolean): number {
  const b = bitmap[i >> 3] ?? 0;
  return msbFirst ? (b >> (7 - (i & 7))) & 1 : (b >> (i & 7)) & 1;
}

/** The first index in (i, end) whose bit differs from bit i, or end. */
export function runEnd(bitmap: Uint8Array, i: number, end: number, msbFirst: boolean): number {
  const bit = bitAt(bitmap, i, msbFirst);
  const full = bit ? 0xff : 0x00;
  let j = i + 1;
  while (j < end) {
    if ((j & 7) === 0 && j + 8 <= end && bitmap[j >> 3] === full) {
      j += 8;
      continue;
    }
    if (bitAt(bitmap, j, msbFirst) !== bit) return j;
    j++;
  }
  return end;
}
