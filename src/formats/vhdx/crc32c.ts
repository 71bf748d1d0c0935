// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), table-driven, as MS-VHDX uses for its
// headers, region tables and log entries. Check value: crc32c("123456789") = 0xE3069283.

const TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

function update(c: number, buf: Uint8Array, from: number, to: number): number {
  for (let i = from; i < to; i++) c = TABLE[(c ^ buf[i]!) & 0xff]! ^ (c >>> 8);
  return c;
}

/** CRC-32C of buf; the 4 bytes at skipAt (a checksum field) are counted as zeros when given. */
export function crc32c(buf: Uint8Array, skipAt = -1): number {
  let c = 0xffffffff;
  if (skipAt < 0) {
    c = update(c, buf, 0, buf.length);
  } else {
    c = update(c, buf, 0, skipAt);
    for (let i = 0; i < 4; i++) c = TABLE[c & 0xff]! ^ (c >>> 8);
    c = update(c, buf, skipAt + 4, buf.length);
  }
  return (c ^ 0xffffffff) >>> 0;
}
