// collapseBroadcast: the collapsed shapes address the same input element for every output
// element as the original shapes do (so kernels may index with fewer divisions), and
// merge what can be merged.
import fc from 'fast-check';
import { expect, it } from 'vitest';
import { collapseBroadcast } from '../../../src/backends/webgpu/kernels/map.ts';
import { numel } from '../../../src/ir/shape.ts';

/** Flat index of `input`'s element that output element `i` reads under NumPy broadcasting. */
function source(out: readonly number[], input: readonly number[], i: number): number {
  const r = out.length;
  const padded = [...new Array<number>(r - input.length).fill(1), ...input];
  let rest = i;
  let at = 0;
  let stride = 1;
  for (let d = r - 1; d >= 0; d--) {
    const c = rest % out[d];
    rest = Math.floor(rest / out[d]);
    if (padded[d] !== 1) at += c * stride;
    stride *= padded[d];
  }
  return at;
}

const arbCase = fc
  .array(fc.integer({ min: 1, max: 4 }), { minLength: 0, maxLength: 5 })
  .chain((out) =>
    fc.record({
      out: fc.constant(out),
      inputs: fc.array(
        fc.tuple(
          fc.nat(out.length),
          fc.array(fc.boolean(), { minLength: out.length, maxLength: out.length }),
        ),
        { minLength: 1, maxLength: 3 },
      ),
    }),
  )
  .map(({ out, inputs }) => ({
    out,
    // Each input: a suffix of the output's axes, some of them broadcast (size 1).
    inputs: inputs.map(([drop, keep]) => out.slice(drop).map((d, k) => (keep[drop + k] ? d : 1))),
  }));

it('every output element reads the same input element through the collapsed shapes', () => {
  fc.assert(
    fc.property(arbCase, ({ out, inputs }) => {
      const c = collapseBroadcast(out, inputs);
      expect(numel(c.out)).toBe(numel(out));
      expect(c.out.length).toBeLessThanOrEqual(out.length);
      c.inputs.forEach((t, k) => {
        expect(t.length).toBe(c.out.length);
        for (let i = 0; i < numel(out); i++) expect(source(c.out, t, i)).toBe(source(out, inputs[k], i));
      });
    }),
    { numRuns: 300 },
  );
});

it("merges axes every input keeps or broadcasts alike: softmax's row statistics are one division", () => {
  expect(
    collapseBroadcast(
      [4, 4, 64, 64],
      [
        [4, 4, 64, 64],
        [4, 4, 64, 1],
      ],
    ),
  ).toEqual({
    out: [1024, 64],
    inputs: [
      [1024, 64],
      [1024, 1],
    ],
  });
  // A bias over the last axis; a scalar; size-1 output axes dropped.
  expect(collapseBroadcast([2, 1, 3, 5], [[5], [1]])).toEqual({
    out: [6, 5],
    inputs: [
      [1, 5],
      [1, 1],
    ],
  });
  expect(collapseBroadcast([], [[]])).toEqual({ out: [], inputs: [[]] });
});
