// Shape rules of the tricky ops, through the builder (which reports op and scope).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BuildError, GraphBuilder } from '../../src/ir/builder.ts';
import type { Shape } from '../../src/ir/shape.ts';

function shapeOf(f: (b: GraphBuilder) => { type: { shape: Shape } }): number[] {
  return [...f(new GraphBuilder()).type.shape];
}

function buildError(f: (b: GraphBuilder) => unknown): string {
  try {
    f(new GraphBuilder());
  } catch (e) {
    expect(e).toBeInstanceOf(BuildError);
    return (e as Error).message;
  }
  throw new Error('expected a BuildError');
}

describe('reshape', () => {
  it('infers one -1 from the element count', () => {
    expect(shapeOf((b) => b.reshape(b.input('x', 'f32', [2, 3, 4]), [-1, 4]))).toEqual([6, 4]);
    expect(shapeOf((b) => b.reshape(b.input('x', 'f32', [2, 3, 4]), [4, -1]))).toEqual([4, 6]);
    expect(shapeOf((b) => b.reshape(b.input('x', 'f32', [2, 3, 4]), [-1]))).toEqual([24]);
    expect(shapeOf((b) => b.reshape(b.input('x', 'f32', [5]), [1, -1, 1]))).toEqual([1, 5, 1]);
    expect(shapeOf((b) => b.reshape(b.input('x', 'f32', [1]), []))).toEqual([]);
  });

  it('infers -1 correctly for random factorizations', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 4 }),
        fc.nat(),
        (dims, k) => {
          const hole = k % dims.length;
          const target = dims.map((d, i) => (i === hole ? -1 : d));
          const n = dims.reduce((p, d) => p * d, 1);
          expect(shapeOf((b) => b.reshape(b.input('x', 'f32', [n]), target))).toEqual(dims);
        },
      ),
      { numRuns: 50 },
    );
  });

  it('rejects two -1s and element counts that do not divide', () => {
    expect(buildError((b) => b.reshape(b.input('x', 'f32', [2, 3]), [-1, -1]))).toMatch(
      /reshape: reshape target \[-1,-1\] has more than one -1/,
    );
    expect(buildError((b) => b.reshape(b.input('x', 'f32', [2, 3]), [4, -1]))).toMatch(
      /cannot reshape \[2,3\] \(6 elements\) to \[4,-1\]/,
    );
    expect(buildError((b) => b.reshape(b.input('x', 'f32', [2, 3]), [7]))).toMatch(/cannot reshape/);
  });
});

describe('matmul', () => {
  it('broadcasts batch axes and applies transposes', () => {
    const mm = (a: number[], c: number[], attrs = {}) =>
      shapeOf((b) => b.matmul(b.input('a', 'f32', a), b.input('b', 'f32', c), attrs));
    expect(mm([3, 4], [4, 5])).toEqual([3, 5]);
    expect(mm([2, 1, 3, 4], [5, 4, 2])).toEqual([2, 5, 3, 2]);
    expect(mm([7, 3, 4], [4, 2])).toEqual([7, 3, 2]);
    expect(mm([4, 3], [4, 2], { transpose_a: true })).toEqual([3, 2]);
    expect(mm([3, 4], [2, 4], { transpose_b: true })).toEqual([3, 2]);
    expect(mm([6, 4, 3], [1, 2, 4], { transpose_a: true, transpose_b: true })).toEqual([6, 3, 2]);
  });

  it('names the op and scope when inner sizes or batches disagree', () => {
    expect(
      buildError((b) =>
        b.withScope('model.layers.0.self_attn', () =>
          b.matmul(b.input('a', 'f32', [3, 4]), b.input('b', 'f32', [5, 2])),
        ),
      ),
    ).toMatch(
      /^matmul in model\.layers\.0\.self_attn: matmul inner sizes differ: \[3,4\] x \[5,2\] \(4 vs 5\)/,
    );
    expect(
      buildError((b) => b.matmul(b.input('a', 'f32', [2, 3, 4]), b.input('b', 'f32', [3, 4, 5]))),
    ).toMatch(/do not broadcast/);
    expect(buildError((b) => b.matmul(b.input('a', 'f32', [4]), b.input('b', 'f32', [4, 5])))).toMatch(
      /rank >= 2/,
    );
  });
});

describe('concat', () => {
  it('adds up the axis and accepts negative axes', () => {
    expect(shapeOf((b) => b.concat([b.input('a', 'f32', [2, 3]), b.input('b', 'f32', [2, 5])], -1))).toEqual([
      2, 8,
    ]);
    expect(
      shapeOf((b) => {
        const a = b.input('a', 'f32', [1, 3]);
        return b.concat([a, b.input('b', 'f32', [4, 3]), a], 0);
      }),
    ).toEqual([6, 3]);
  });

  it('rejects shapes that differ off the axis, ranks and dtypes', () => {
    expect(
      buildError((b) => b.concat([b.input('a', 'f32', [2, 3]), b.input('b', 'f32', [3, 3])], 1)),
    ).toMatch(/concat along axis 1: \[3,3\] does not match \[2,3\] off that axis/);
    expect(
      buildError((b) => b.concat([b.input('a', 'f32', [2, 3]), b.input('b', 'f32', [2, 3, 1])], 0)),
    ).toMatch(/does not match/);
    expect(buildError((b) => b.concat([b.input('a', 'f32', [2]), b.input('b', 'i32', [2])], 0))).toMatch(
      /differ in dtype/,
    );
    expect(buildError((b) => b.concat([b.input('a', 'f32', [2])], 1))).toMatch(/axis 1 is out of range/);
  });
});

describe('broadcasting, slices and reductions', () => {
  it('broadcasts elementwise ops as NumPy does', () => {
    const add = (a: number[], c: number[]) =>
      shapeOf((b) => b.add(b.input('a', 'f32', a), b.input('b', 'f32', c)));
    expect(add([3, 1], [4])).toEqual([3, 4]);
    expect(add([], [2, 3])).toEqual([2, 3]);
    expect(add([2, 1, 5], [3, 1])).toEqual([2, 3, 5]);
    expect(buildError((b) => b.add(b.input('a', 'f32', [3]), b.input('b', 'f32', [4])))).toMatch(
      /do not broadcast/,
    );
    expect(buildError((b) => b.add(b.input('a', 'f32', [3]), b.input('b', 'i32', [3])))).toMatch(/one dtype/);
  });

  it('checks slice bounds, permutations and reduction axes', () => {
    expect(shapeOf((b) => b.slice(b.input('x', 'f32', [4, 6]), -1, 2, 5))).toEqual([4, 3]);
    expect(buildError((b) => b.slice(b.input('x', 'f32', [4, 6]), 1, 2, 7))).toMatch(/out of range/);
    expect(shapeOf((b) => b.permute(b.input('x', 'f32', [2, 3, 4]), [2, 0, 1]))).toEqual([4, 2, 3]);
    expect(buildError((b) => b.permute(b.input('x', 'f32', [2, 3, 4]), [0, 0, 1]))).toMatch(
      /not a permutation/,
    );
    expect(shapeOf((b) => b.sum(b.input('x', 'f32', [2, 3, 4]), [0, -1], true))).toEqual([1, 3, 1]);
    expect(shapeOf((b) => b.mean(b.input('x', 'f32', [2, 3, 4]), [1]))).toEqual([2, 4]);
    expect(buildError((b) => b.sum(b.input('x', 'f32', [2, 3]), [1, -1]))).toMatch(/repeat an axis/);
  });

  it('checks attention heads (GQA) and norm weights', () => {
    const q = [1, 4, 3, 2];
    expect(
      shapeOf((b) =>
        b.attention(
          b.input('q', 'f32', q),
          b.input('k', 'f32', [1, 2, 5, 2]),
          b.input('v', 'f32', [1, 2, 5, 6]),
        ),
      ),
    ).toEqual([1, 4, 3, 6]);
    expect(
      buildError((b) =>
        b.attention(
          b.input('q', 'f32', q),
          b.input('k', 'f32', [1, 3, 5, 2]),
          b.input('v', 'f32', [1, 3, 5, 2]),
        ),
      ),
    ).toMatch(/query heads 4 are not a multiple of kv heads 3/);
    expect(
      buildError((b) =>
        b.withScope('model.norm', () =>
          b.rmsnorm(b.input('x', 'f32', [2, 8]), b.param('w', 'f32', [4]), 1e-6),
        ),
      ),
    ).toMatch(/^rmsnorm in model\.norm: rmsnorm weight must have shape \[8\]/);
  });
});
