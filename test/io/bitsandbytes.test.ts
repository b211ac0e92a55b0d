import { describe, expect, it } from 'vitest';
import {
  isBnb4bitWeight,
  pythonFloatRepr,
  quantStateFromTensors,
  quantStateJson,
  quantStateToTensors,
} from '../../src/io/bitsandbytes.ts';
import type { Tensor } from '../../src/ir/tensor.ts';
import { tensor } from '../../src/ir/tensor.ts';
import { dequantizeWeight, quantizeWeight } from '../../src/quant/index.ts';
import { Rng } from '../../src/util/rng.ts';

const P = 'model.layers.0.self_attn.q_proj.weight';

function weight(rows: number, cols: number, seed = 1): Float32Array {
  const r = new Rng(seed);
  return Float32Array.from({ length: rows * cols }, () => r.normal() * 0.05);
}

const json = (t: Tensor) => new TextDecoder().decode(t.data as Uint8Array);
const bytes = (s: string) => {
  const b = new TextEncoder().encode(s);
  return tensor('u8', [b.length], b);
};

describe('pythonFloatRepr (what json.dumps writes)', () => {
  it('formats like Python repr', () => {
    const cases: [number, string][] = [
      [1, '1.0'],
      [2, '2.0'],
      [-0.5, '-0.5'],
      [0.1, '0.1'],
      [0.0001, '0.0001'],
      [0.00001, '1e-05'],
      [-0.000015, '-1.5e-05'],
      [123.25, '123.25'],
      [1e16, '1e+16'],
      [1234567890123456, '1234567890123456.0'],
      [1.5e300, '1.5e+300'],
      [Math.fround(0.1), '0.10000000149011612'],
      [Math.fround(0.0123), '0.012299999594688416'],
      [0, '0.0'],
    ];
    for (const [x, s] of cases) expect(pythonFloatRepr(x)).toBe(s);
  });
});

describe('bitsandbytes 4-bit state dict', () => {
  it('writes the bitsandbytes keys, dtypes and shapes (plain)', () => {
    const s = quantizeWeight(weight(8, 24), [8, 24], { quantType: 'nf4', blocksize: 64 });
    const m = quantStateToTensors(P, s);
    expect([...m.keys()]).toEqual([P, `${P}.absmax`, `${P}.quant_map`, `${P}.quant_state.bitsandbytes__nf4`]);
    expect(m.get(P)).toMatchObject({ dtype: 'u8', shape: [96, 1] });
    expect(m.get(`${P}.absmax`)).toMatchObject({ dtype: 'f32', shape: [3] });
    expect(m.get(`${P}.quant_map`)).toMatchObject({ dtype: 'f32', shape: [16] });
    expect(json(m.get(`${P}.quant_state.bitsandbytes__nf4`)!)).toBe(
      '{"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [8, 24]}',
    );
  });

  it('writes the nested keys and JSON exactly as QuantState.as_dict(packed=True)', () => {
    const s = quantizeWeight(weight(3, 7), [3, 7], {
      quantType: 'fp4',
      blocksize: 32,
      doubleQuant: true,
      dtype: 'bfloat16',
    });
    if (s.stats.kind !== 'nested') throw new Error('expected nested');
    const m = quantStateToTensors(P, s);
    expect([...m.keys()]).toEqual([
      P,
      `${P}.absmax`,
      `${P}.quant_map`,
      `${P}.nested_absmax`,
      `${P}.nested_quant_map`,
      `${P}.quant_state.bitsandbytes__fp4`,
    ]);
    expect(m.get(P)).toMatchObject({ dtype: 'u8', shape: [11, 1] });
    expect(m.get(`${P}.absmax`)).toMatchObject({ dtype: 'u8', shape: [1] });
    expect(m.get(`${P}.nested_absmax`)).toMatchObject({ dtype: 'f32', shape: [1] });
    expect(m.get(`${P}.nested_quant_map`)).toMatchObject({ dtype: 'f32', shape: [256] });
    expect(quantStateJson(s)).toBe(
      '{"quant_type": "fp4", "blocksize": 32, "dtype": "bfloat16", "shape": [3, 7], ' +
        `"nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": ${pythonFloatRepr(s.stats.offset)}}`,
    );
  });

  it('round trips (plain and nested, nf4 and fp4)', () => {
    for (const doubleQuant of [false, true]) {
      for (const quantType of ['nf4', 'fp4'] as const) {
        const s = quantizeWeight(weight(40, 33, 2), [40, 33], { quantType, blocksize: 64, doubleQuant });
        const m = quantStateToTensors(P, s);
        const back = quantStateFromTensors(P, (k) => m.get(k), 'model.safetensors');
        expect(back).toEqual(s);
        expect(Array.from(dequantizeWeight(back))).toEqual(Array.from(dequantizeWeight(s)));
        expect(isBnb4bitWeight(P, (k) => m.get(k))).toBe(true);
      }
    }
    expect(isBnb4bitWeight('other.weight', () => undefined)).toBe(false);
  });

  it('reads the packed weight in the transposed [1, n/2] form too', () => {
    const s = quantizeWeight(weight(4, 16), [4, 16], { quantType: 'nf4' });
    const m = quantStateToTensors(P, s);
    m.set(P, tensor('u8', [1, 32], s.packed));
    expect(quantStateFromTensors(P, (k) => m.get(k)).packed).toEqual(s.packed);
  });

  describe('bad input', () => {
    const base = () => {
      const s = quantizeWeight(weight(4, 16), [4, 16], { quantType: 'nf4', doubleQuant: true });
      return quantStateToTensors(P, s);
    };
    const read = (m: Map<string, Tensor>) => () =>
      quantStateFromTensors(P, (k) => m.get(k), 'ckpt.safetensors');
    const stateKey = `${P}.quant_state.bitsandbytes__nf4`;

    it('missing absmax names the key and the file', () => {
      const m = base();
      m.delete(`${P}.absmax`);
      expect(read(m)).toThrow(`ckpt.safetensors: '${P}.absmax': missing (needed by ${stateKey})`);
    });

    it('missing quant state says it is not a 4-bit weight', () => {
      const m = base();
      m.delete(stateKey);
      expect(read(m)).toThrow(/not a bitsandbytes 4-bit weight: missing '.*bitsandbytes__nf4' \(or __fp4\)/);
    });

    it('JSON shape that does not match the packed weight', () => {
      const m = base();
      m.set(stateKey, bytes(json(m.get(stateKey)!).replace('[4, 16]', '[4, 18]')));
      expect(read(m)).toThrow(/packed weight \[32, 1\] has 32 bytes but shape \[4, 18\] .* needs 36/);
    });

    it('JSON with a bad field or not JSON at all', () => {
      const m = base();
      m.set(stateKey, bytes(json(m.get(stateKey)!).replace('"shape": [4, 16]', '"shape": "4x16"')));
      expect(read(m)).toThrow(/quant state JSON field 'shape'/);
      m.set(stateKey, bytes('{"quant_type": "nf4", '));
      expect(read(m)).toThrow(/does not hold valid UTF-8 JSON/);
      m.set(stateKey, bytes(json(base().get(stateKey)!).replace('"nf4"', '"fp4"')));
      expect(read(m)).toThrow(/JSON says quant_type 'fp4'/);
    });

    it('half-present double quantization', () => {
      const m = base();
      m.delete(`${P}.nested_absmax`);
      expect(read(m)).toThrow(
        /inconsistent double quantization: absmax is u8, nested tensors present: \[nested_quant_map\]/,
      );
    });

    it('wrong absmax length and a non-standard quant map', () => {
      const m = base();
      m.set(`${P}.absmax`, tensor('u8', [2], [1, 2]));
      expect(read(m)).toThrow(
        new RegExp(`'${P.replaceAll('.', '\\.')}\\.absmax': has 2 values but .* needs 1`),
      );
      const m2 = base();
      m2.set(`${P}.quant_map`, tensor('f32', [16], new Float32Array(16)));
      expect(read(m2)).toThrow(/quant_map': entry 0 is 0 but the nf4 table has -1/);
    });

    it('both nf4 and fp4 quant states', () => {
      const m = base();
      m.set(`${P}.quant_state.bitsandbytes__fp4`, m.get(stateKey)!);
      expect(read(m)).toThrow(/has both .*__nf4 and .*__fp4; keep one/);
    });
  });
});
