import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { SafetensorsFile, writeSafetensors } from '../../../src/io/safetensors/index.ts';
import { type Tensor, tensor } from '../../../src/ir/tensor.ts';
import { useTmpDirs } from '../tmp.ts';

const tmp = useTmpDirs();

/** A tensor whose data cannot be produced (e.g. a lazy source that fails): the write fails midway. */
function failingTensor(): Tensor {
  return {
    dtype: 'f32',
    shape: [2],
    get data(): Float32Array {
      throw new Error('source went away');
    },
  };
}

describe('atomic safetensors writes', () => {
  it('a failure mid-write leaves no target file and no temp file', () => {
    const dir = tmp();
    const file = path.join(dir, 'out.safetensors');
    // 'a' sorts first and is written before 'b' fails.
    expect(() => writeSafetensors(file, { a: tensor('f32', [3]), b: failingTensor() })).toThrow(
      /source went away/,
    );
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  it('a failed overwrite keeps the old file intact', () => {
    const dir = tmp();
    const file = path.join(dir, 'out.safetensors');
    writeSafetensors(file, { old: tensor('f32', [1], [42]) });
    expect(() => writeSafetensors(file, { b: failingTensor() })).toThrow();
    expect(fs.readdirSync(dir)).toEqual(['out.safetensors']);
    expect(Array.from(SafetensorsFile.open(file).read('old').data)).toEqual([42]);
  });

  it('a data length that disagrees with the shape is an error naming the tensor', () => {
    const file = path.join(tmp(), 'x.safetensors');
    const bad: Tensor = { dtype: 'f32', shape: [3], data: new Float32Array(2) };
    expect(() => writeSafetensors(file, { w: bad })).toThrow(
      /x\.safetensors: 'w': shape \[3\] needs 3 elements, data has 2/,
    );
    expect(fs.existsSync(file)).toBe(false);
    expect(() => writeSafetensors(file, { q: tensor('u4', [4]) })).toThrow(/'q': cannot store dtype u4/);
  });
});
