// Byte-exact checks against the format as the reference implementation writes it.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { SafetensorsFile, writeSafetensors } from '../../../src/io/safetensors/index.ts';
import { tensor } from '../../../src/ir/tensor.ts';
import { useTmpDirs } from '../tmp.ts';

const tmp = useTmpDirs();

function u64le(n: number): number[] {
  return [n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, (n >> 24) & 0xff, 0, 0, 0, 0];
}
const ascii = (s: string) => [...Buffer.from(s, 'utf8')];

describe('safetensors bytes', () => {
  it('reads the unpadded example from the reference docs', () => {
    // From huggingface/safetensors `SafeTensors::deserialize` docs: I32 [2,2], 16 zero bytes.
    const json = '{"test":{"dtype":"I32","shape":[2,2],"data_offsets":[0,16]}}';
    expect(json.length).toBe(0x3c);
    const file = path.join(tmp(), 'doc.safetensors');
    fs.writeFileSync(file, Uint8Array.from([...u64le(0x3c), ...ascii(json), ...new Array(16).fill(0)]));
    const st = SafetensorsFile.open(file);
    expect(st.keys()).toEqual(['test']);
    expect(st.info('test')).toMatchObject({ fileDtype: 'I32', dtype: 'i32', shape: [2, 2], byteLength: 16 });
    const t = st.read('test');
    expect(t.dtype).toBe('i32');
    expect(t.data).toEqual(new Int32Array(4));
  });

  it('writes the header byte for byte as the reference does (space padding, dtype then name order)', () => {
    const file = path.join(tmp(), 'w.safetensors');
    writeSafetensors(
      file,
      {
        // Names chosen so that dtype order (F32 before I32 before U8) disagrees with name order.
        a: tensor('u8', [3], [1, 2, 3]),
        z: tensor('f32', [], [1.5]),
        b: tensor('i32', [2], [-1, 258]),
        c: tensor('f32', [0, 2]),
      },
      { format: 'pt' },
    );
    const json =
      '{"__metadata__":{"format":"pt"},' +
      '"c":{"dtype":"F32","shape":[0,2],"data_offsets":[0,0]},' +
      '"z":{"dtype":"F32","shape":[],"data_offsets":[0,4]},' +
      '"b":{"dtype":"I32","shape":[2],"data_offsets":[4,12]},' +
      '"a":{"dtype":"U8","shape":[3],"data_offsets":[12,15]}}';
    const padded = Math.ceil(json.length / 8) * 8;
    const expected = [
      ...u64le(padded),
      ...ascii(json),
      ...new Array(padded - json.length).fill(0x20),
      ...[0x00, 0x00, 0xc0, 0x3f], // 1.5f
      ...[0xff, 0xff, 0xff, 0xff, 0x02, 0x01, 0x00, 0x00], // -1, 258
      ...[1, 2, 3],
    ];
    expect([...fs.readFileSync(file)]).toEqual(expected);
  });

  it('encodes f16 and bf16 little-endian with round-to-nearest-even', () => {
    const file = path.join(tmp(), 'h.safetensors');
    writeSafetensors(file, { h: tensor('f16', [2], [1, -2]), b: tensor('bf16', [1], [1 + 3 * 2 ** -8]) });
    const buf = fs.readFileSync(file);
    const n = Number(buf.readBigUInt64LE(0));
    const data = [...buf.subarray(8 + n)];
    // BF16 (enum rank above F16) first: 0x3f82; then f16 1 = 0x3c00, -2 = 0xc000.
    expect(data).toEqual([0x82, 0x3f, 0x00, 0x3c, 0x00, 0xc0]);
  });

  it('sorts names by UTF-8 bytes like the reference (not UTF-16 code units)', () => {
    const file = path.join(tmp(), 'u.safetensors');
    // U+FF5E (3 UTF-8 bytes, EF BD 9E) vs U+1F600 (4 bytes, F0 ...): UTF-8 puts U+FF5E first,
    // UTF-16 puts U+1F600 (surrogate D83D) first.
    writeSafetensors(file, { '\u{1F600}': tensor('f32', [1], [1]), '\uFF5E': tensor('f32', [1], [2]) });
    expect(SafetensorsFile.open(file).keys()).toEqual(['\uFF5E', '\u{1F600}']);
  });
});
