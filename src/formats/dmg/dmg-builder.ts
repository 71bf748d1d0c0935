// Test helper: builds small UDIF files (data fork, one mish table, XML plist or binary resource
// fork, koly trailer) from chunk specs, so codecs and damaged tables can be tested without
// Apple tools.

export interface DmgChunkSpec {
  type: number;
  sectors: number;
  /** Stored bytes (already compressed for compressed types; empty for zero/ignore). */
  stored: Uint8Array;
  /** Override the stored offset/length written in the table (for damage tests). */
  offset?: number;
  length?: number;
}

export function mishTable(chunks: DmgChunkSpec[], firstSector = 0, dataOffset = 0): { mish: Uint8Array; data: Uint8Array } {
  const mish = new Uint8Array(204 + (chunks.length + 1) * 40);
  const v = new DataView(mish.buffer);
  mish.set(Buffer.from('mish', 'latin1'), 0);
  v.setUint32(4, 1);
  v.setBigUint64(8, BigInt(firstSector));
  const total = chunks.reduce((a, c) => a + c.sectors, 0);
  v.setBigUint64(16, BigInt(total));
  v.setBigUint64(24, BigInt(dataOffset));
  v.setUint32(200, chunks.length + 1);
  const parts: Uint8Array[] = [];
  let sector = 0;
  let off = 0;
  chunks.forEach((c, i) => {
    const at = 204 + i * 40;
    v.setUint32(at, c.type);
    v.setBigUint64(at + 8, BigInt(sector));
    v.setBigUint64(at + 16, BigInt(c.sectors));
    v.setBigUint64(at + 24, BigInt(c.offset ?? off));
    v.setBigUint64(at + 32, BigInt(c.length ?? c.stored.length));
    parts.push(c.stored);
    sector += c.sectors;
    off += c.stored.length;
  });
  const end = 204 + chunks.length * 40;
  v.setUint32(end, 0xffffffff);
  v.setBigUint64(end + 8, BigInt(sector));
  return { mish, data: new Uint8Array(Buffer.concat(parts)) };
}

function plistXml(tables: Uint8Array[]): Uint8Array {
  const entries = tables
    .map(
      (t, i) => `\t\t\t<dict>\n\t\t\t\t<key>Attributes</key>\n\t\t\t\t<string>0x0050</string>\n\t\t\t\t<key>Data</key>\n\t\t\t\t<data>\n\t\t\t\t${Buffer.from(t)
        .toString('base64')
        .replace(/(.{52})/g, '$1\n\t\t\t\t')}\n\t\t\t\t</data>\n\t\t\t\t<key>ID</key>\n\t\t\t\t<string>${i}</string>\n\t\t\t\t<key>Name</key>\n\t\t\t\t<string>table &amp; ${i}</string>\n\t\t\t</dict>`,
    )
    .join('\n');
  const xml = `<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">\n<plist version="1.0">\n<dict>\n\t<!-- built by the anydisk tests -->\n\t<key>resource-fork</key>\n\t<dict>\n\t\t<key>blkx</key>\n\t\t<array>\n${entries}\n\t\t</array>\n\t\t<key>plst</key>\n\t\t<array/>\n\t</dict>\n\t<key>flag</key>\n\t<true/>\n</dict>\n</plist>\n`;
  return new Uint8Array(Buffer.from(xml, 'utf8'));
}

/** A classic resource fork holding the tables as 'blkx' resources (ids 0..n-1). */
export function resourceFork(tables: Uint8Array[]): Uint8Array {
  const dataParts: Uint8Array[] = [];
  const offsets: number[] = [];
  let pos = 0;
  for (const t of tables) {
    offsets.push(pos);
    const len = new Uint8Array(4);
    new DataView(len.buffer).setUint32(0, t.length);
    dataParts.push(len, t);
    pos += 4 + t.length;
  }
  const data = Buffer.concat(dataParts);
  const typeListOff = 28;
  const refListOff = 2 + 8; // from the type list start
  const map = new Uint8Array(typeListOff + refListOff + tables.length * 12);
  const mv = new DataView(map.buffer);
  mv.setUint16(24, typeListOff);
  mv.setUint16(26, map.length);
  mv.setUint16(typeListOff, 0); // one type
  map.set(Buffer.from('blkx', 'latin1'), typeListOff + 2);
  mv.setUint16(typeListOff + 6, tables.length - 1);
  mv.setUint16(typeListOff + 8, refListOff);
  tables.forEach((_, i) => {
    const r = typeListOff + refListOff + i * 12;
    mv.setUint16(r, i);
    mv.setUint16(r + 2, 0xffff);
    mv.setUint8(r + 5, (offsets[i]! >> 16) & 0xff);
    mv.setUint16(r + 6, offsets[i]! & 0xffff);
  });
  const hdr = new Uint8Array(256);
  const hv = new DataView(hdr.buffer);
  hv.setUint32(0, 256);
  hv.setUint32(4, 256 + data.length);
  hv.setUint32(8, data.length);
  hv.setUint32(12, map.length);
  return new Uint8Array(Buffer.concat([hdr, data, map]));
}

export function koly(o: { dataForkLength: number; xmlOffset: number; xmlLength: number; rsrcOffset: number; rsrcLength: number; sectorCount: number; segmentCount?: number }): Uint8Array {
  const k = new Uint8Array(512);
  const v = new DataView(k.buffer);
  k.set(Buffer.from('koly', 'latin1'), 0);
  v.setUint32(4, 4);
  v.setUint32(8, 512);
  v.setUint32(12, 1);
  v.setBigUint64(32, BigInt(o.dataForkLength));
  v.setBigUint64(40, BigInt(o.rsrcOffset));
  v.setBigUint64(48, BigInt(o.rsrcLength));
  v.setUint32(56, 1);
  v.setUint32(60, o.segmentCount ?? 1);
  v.setBigUint64(0xd8, BigInt(o.xmlOffset));
  v.setBigUint64(0xe0, BigInt(o.xmlLength));
  v.setUint32(0x1e8, 1);
  v.setBigUint64(0x1ec, BigInt(o.sectorCount));
  return k;
}

/** A whole UDIF file with a single block table. */
export function buildDmg(chunks: DmgChunkSpec[], opts: { resourceFork?: boolean; sectorCount?: number } = {}): Uint8Array {
  const { mish, data } = mishTable(chunks);
  const sectors = opts.sectorCount ?? chunks.reduce((a, c) => a + c.sectors, 0);
  const meta = opts.resourceFork ? resourceFork([mish]) : plistXml([mish]);
  const k = koly({
    dataForkLength: data.length,
    xmlOffset: opts.resourceFork ? 0 : data.length,
    xmlLength: opts.resourceFork ? 0 : meta.length,
    rsrcOffset: opts.resourceFork ? data.length : 0,
    rsrcLength: opts.resourceFork ? meta.length : 0,
    sectorCount: sectors,
  });
  return new Uint8Array(Buffer.concat([data, meta, k]));
}
