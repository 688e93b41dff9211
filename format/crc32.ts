// CRC32 (IEEE, the zlib polynomial) over byte ranges. node:zlib's native crc32 is ~8x a JS table
// on this machine, so it is used whenever this Node has it (20.15+); the table is the fallback.

import * as zlib from 'node:zlib';

type Crc32Fn = (data: Uint8Array, value?: number) => number;
const native: Crc32Fn | undefined = (zlib as unknown as { crc32?: Crc32Fn }).crc32;

let table: Uint32Array | undefined;
function tableCrc(data: Uint8Array, value = 0): number {
  if (!table) {
    table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
  }
  let crc = (value ^ 0xffffffff) >>> 0;
  for (let i = 0; i < data.length; i++) crc = table[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

/** CRC32 of `data`, continuing from `value` (the CRC of the bytes before it) when given. */
export function crc32(data: Uint8Array, value = 0): number {
  return native ? native(data, value) >>> 0 : tableCrc(data, value);
}
