// The GGUF writer and its encodings: the byte layout (read back with @huggingface/gguf and by
// hand), ggml's Q8_0 blocks, f16 rounding, and the RoPE row permutation of llama.cpp.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gguf } from '@huggingface/gguf';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { permuteRopeRows } from '../../../src/export/gguf/llama.ts';
import { byteToUnicode } from '../../../src/export/gguf/tokenizer.ts';
import { decode, encode, type GgufValue, writeGguf } from '../../../src/io/gguf/index.ts';
import { f16BitsToF32, f32ToF16Bits } from '../../../src/io/half.ts';

const dir = mkdtempSync(join(tmpdir(), 'peftc-gguf-io-'));

describe('GGUF writer', () => {
  it('writes header, every metadata type, tensor infos and aligned data that @huggingface/gguf reads back', async () => {
    const file = join(dir, 'a.gguf');
    const metadata = new Map<string, GgufValue>([
      ['general.architecture', { type: 'string', value: 'llama' }],
      ['u8', { type: 'u8', value: 200 }],
      ['i8', { type: 'i8', value: -100 }],
      ['u16', { type: 'u16', value: 60000 }],
      ['i16', { type: 'i16', value: -30000 }],
      ['u32', { type: 'u32', value: 4e9 }],
      ['i32', { type: 'i32', value: -2e9 }],
      ['f32', { type: 'f32', value: 0.5 }],
      ['bool', { type: 'bool', value: true }],
      ['u64', { type: 'u64', value: 2n ** 40n }],
      ['i64', { type: 'i64', value: -(2n ** 40n) }],
      ['f64', { type: 'f64', value: 0.1 }],
      ['arr', { type: 'array', itemType: 'string', values: ['a', 'bé'] }],
      ['arr_i32', { type: 'array', itemType: 'i32', values: [1, -2, 3] }],
    ]);
    const w = Float32Array.from({ length: 3 * 64 }, (_, i) => Math.sin(i));
    const bytes = writeGguf(file, {
      metadata,
      tensors: [
        { name: 'odd', dims: [3], type: 'f32', data: () => [1, 2, 3] },
        { name: 'w16', dims: [64, 3], type: 'f16', data: () => w },
        { name: 'w8', dims: [64, 3], type: 'q8_0', data: () => w },
      ],
    });
    const raw = readFileSync(file);
    expect(raw.length).toBe(bytes);
    expect(raw.subarray(0, 4).toString()).toBe('GGUF');
    const h = await gguf(file, { allowLocalFile: true });
    const m = h.metadata as Record<string, unknown>;
    expect(m.version).toBe(3);
    expect(m.tensor_count).toBe(3n);
    expect(m['general.alignment']).toBe(32);
    expect([m.u8, m.i8, m.u16, m.i16, m.u32, m.i32, m.f32, m.bool]).toEqual([
      200,
      -100,
      60000,
      -30000,
      4e9,
      -2e9,
      0.5,
      true,
    ]);
    expect([m.u64, m.i64, m.f64, m.arr, m.arr_i32]).toEqual([
      2n ** 40n,
      -(2n ** 40n),
      0.1,
      ['a', 'bé'],
      [1, -2, 3],
    ]);
    expect(h.tensorInfos.map((t) => [t.name, t.shape.map(Number), t.dtype, Number(t.offset)])).toEqual([
      ['odd', [3], 0, 0],
      ['w16', [64, 3], 1, 32], // 12 bytes, padded to 32
      ['w8', [64, 3], 8, 32 + 384], // 6 blocks of 34 bytes follow
    ]);
    const start = h.tensorDataOffset as unknown as number;
    expect(Number(start) % 32).toBe(0);
    const at = Number(start) + 32 + 384;
    expect(decode('q8_0', new Uint8Array(raw.subarray(at, at + 6 * 34)), 192)).toEqual(
      decode('q8_0', encode('q8_0', w), 192),
    );
  });

  it('refuses q8_0 rows that are not whole blocks, and writes nothing', () => {
    const file = join(dir, 'bad.gguf');
    expect(() =>
      writeGguf(file, {
        metadata: new Map(),
        tensors: [{ name: 'x', dims: [48, 2], type: 'q8_0', data: () => new Float32Array(96) }],
      }),
    ).toThrow(/multiple of 32/);
    expect(() => readFileSync(file)).toThrow();
  });
});

describe('encodings', () => {
  it("Q8_0 is ggml's block: f16 d = absmax / 127, then 32 int8 roundf(x / d) (halves away from zero)", () => {
    const x = new Float32Array(32);
    x[0] = 127;
    x[1] = -2.5; // x * (1/d) = -2.5 exactly: roundf gives -3
    x[2] = 0.5;
    x[3] = -127;
    const b = encode('q8_0', x);
    expect(b.length).toBe(34);
    expect(new DataView(b.buffer).getUint16(0, true)).toBe(f32ToF16Bits(1));
    expect(Array.from(new Int8Array(b.buffer, 2, 4))).toEqual([127, -3, 1, -127]);
    expect(Array.from(encode('q8_0', new Float32Array(32)))).toEqual(Array(34).fill(0));
  });

  it('Q8_0 and f16 round-trip within half a step', () => {
    fc.assert(
      fc.property(
        fc.array(fc.float({ min: -100, max: 100, noNaN: true }), { minLength: 32, maxLength: 32 }),
        (xs) => {
          const x = Float32Array.from(xs);
          const q = decode('q8_0', encode('q8_0', x), 32);
          const d = f16BitsToF32(f32ToF16Bits(Math.max(...x.map(Math.abs)) / 127));
          // A block whose scale (max |x| / 127) is below f16's smallest subnormal stores d = 0
          // and decodes to zeros (as llama.cpp's does): its values are off by themselves.
          x.forEach((v, i) => {
            const bound = d === 0 ? Math.abs(v) : d / 2 + 1e-3 * Math.abs(v) + 1e-6;
            expect(Math.abs(q[i] - v)).toBeLessThanOrEqual(bound);
          });
          const h = decode('f16', encode('f16', x), 32);
          x.forEach((v, i) => {
            expect(h[i]).toBe(f16BitsToF32(f32ToF16Bits(v)));
          });
        },
      ),
    );
  });

  it("RoPE permutation: row 2j + c of each head is Hugging Face's row c * d/2 + j", () => {
    // 2 heads of 4 rows, 1 column: HF rows [0 1 2 3 | 4 5 6 7] -> llama.cpp [0 2 1 3 | 4 6 5 7].
    expect(Array.from(permuteRopeRows([0, 1, 2, 3, 4, 5, 6, 7], 8, 1, 2))).toEqual([0, 2, 1, 3, 4, 6, 5, 7]);
    const two = permuteRopeRows([0, 10, 1, 11, 2, 12, 3, 13], 4, 2, 1);
    expect(Array.from(two)).toEqual([0, 10, 2, 12, 1, 11, 3, 13]);
  });

  it("byte-level token texts are GPT-2's bytes_to_unicode (256 distinct characters)", () => {
    expect([
      byteToUnicode(32),
      byteToUnicode(65),
      byteToUnicode(0),
      byteToUnicode(173),
      byteToUnicode(255),
    ]).toEqual(['Ġ', 'A', 'Ā', 'Ń', 'ÿ']);
    expect(new Set(Array.from({ length: 256 }, (_, b) => byteToUnicode(b))).size).toBe(256);
  });
});
