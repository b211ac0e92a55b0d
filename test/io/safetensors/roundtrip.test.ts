import * as path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bf16BitsToF32, f16BitsToF32 } from '../../../src/io/half.ts';
import { SafetensorsFile, writeSafetensors } from '../../../src/io/safetensors/index.ts';
import type { DType } from '../../../src/ir/dtype.ts';
import { allocFor, type Tensor } from '../../../src/ir/tensor.ts';
import { useTmpDirs } from '../tmp.ts';

const tmp = useTmpDirs();

const dtypes: DType[] = ['f32', 'f16', 'bf16', 'i32', 'u32', 'u8'];

/** A random value exactly representable in `d` (so the round trip must be exact). */
function valueArb(d: DType): fc.Arbitrary<number> {
  switch (d) {
    case 'f32':
      return fc.float({ noNaN: true });
    case 'f16':
      return fc
        .integer({ min: 0, max: 0xffff })
        .map(f16BitsToF32)
        .filter((x) => !Number.isNaN(x));
    case 'bf16':
      return fc
        .integer({ min: 0, max: 0xffff })
        .map(bf16BitsToF32)
        .filter((x) => !Number.isNaN(x));
    case 'i32':
      return fc.integer();
    case 'u32':
      return fc.integer({ min: 0, max: 0xffffffff });
    default:
      return fc.integer({ min: 0, max: 255 });
  }
}

const tensorArb: fc.Arbitrary<Tensor> = fc
  .record({
    dtype: fc.constantFrom(...dtypes),
    shape: fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 0, maxLength: 3 }),
  })
  .chain(({ dtype, shape }) => {
    const n = shape.reduce((a, b) => a * b, 1);
    return fc.array(valueArb(dtype), { minLength: n, maxLength: n }).map((vals) => {
      const data = allocFor(dtype, n);
      vals.forEach((v, i) => {
        data[i] = v;
      });
      return { dtype, shape, data } as Tensor;
    });
  });

const nameArb = fc.oneof(
  fc.string({ minLength: 0, maxLength: 12, unit: 'grapheme' }),
  fc.stringMatching(/^[0-9]{1,3}$/),
);

describe('safetensors round trip', () => {
  it('write then read gives back every tensor exactly (dtypes, empty, scalars, unicode names)', () => {
    fc.assert(
      fc.property(
        fc.dictionary(
          nameArb.filter((n) => n !== '__metadata__'),
          tensorArb,
          { maxKeys: 6 },
        ),
        fc.dictionary(fc.string({ maxLength: 6 }), fc.string({ maxLength: 6 }), { maxKeys: 3 }),
        (tensors, metadata) => {
          const file = path.join(tmp(), 'r.safetensors');
          writeSafetensors(file, tensors, metadata);
          const st = SafetensorsFile.open(file);
          expect(new Set(st.keys())).toEqual(new Set(Object.keys(tensors)));
          expect(st.metadata).toEqual(metadata);
          for (const [name, t] of Object.entries(tensors)) {
            expect(st.info(name).shape).toEqual(t.shape);
            const r = st.read(name);
            expect(r.dtype).toBe(t.dtype);
            expect(r.shape).toEqual(t.shape);
            expect(Array.from(r.data)).toEqual(Array.from(t.data));
          }
        },
      ),
      { numRuns: 60 },
    );
  });

  it('stores floats in a requested dtype, rounding f32 values', () => {
    const file = path.join(tmp(), 'd.safetensors');
    const data = Float32Array.from([1, 1 + 2 ** -12, 65519, 1e-8]);
    writeSafetensors(
      file,
      { w: { dtype: 'f32', shape: [4], data }, i: { dtype: 'i32', shape: [1], data: Int32Array.of(7) } },
      undefined,
      { dtype: 'f16' },
    );
    const st = SafetensorsFile.open(file);
    expect(st.info('w').fileDtype).toBe('F16');
    expect(st.info('i').fileDtype).toBe('I32');
    expect(Array.from(st.read('w').data)).toEqual([1, 1, 65504, 2 ** -24 * Math.round(1e-8 / 2 ** -24)]);
  });

  it('is a WeightStore: get/has/names, undefined for a missing name', () => {
    const file = path.join(tmp(), 's.safetensors');
    writeSafetensors(
      file,
      new Map([['a.weight', { dtype: 'f32', shape: [1], data: Float32Array.of(3) } as Tensor]]),
    );
    const st = SafetensorsFile.open(file);
    expect(st.has('a.weight')).toBe(true);
    expect(st.has('b')).toBe(false);
    expect(st.get('b')).toBeUndefined();
    expect([...st.names()]).toEqual(['a.weight']);
    expect(st.get('a.weight')?.data).toEqual(Float32Array.of(3));
    expect(() => st.read('b')).toThrow(/s\.safetensors: 'b': no such tensor/);
  });
});
