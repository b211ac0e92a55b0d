// The sgmv op: the CPU kernel against a plain per-row reference (x A^T B^T, scaled, only the
// rows' own slot and only up to the adapter's true rank), and the WGSL kernel against the
// CPU kernel on random sizes, ranks (zero-padded to r_max), slot counts and adapter mixes,
// rows with no adapter (-1 and out of range) included.
import fc from 'fast-check';
import { expect, it } from 'vitest';
import { runGraph } from '../../../src/backends/cpu/index.ts';
import { GraphBuilder } from '../../../src/ir/builder.ts';
import type { Graph } from '../../../src/ir/graph.ts';
import { type Tensor, tensor } from '../../../src/ir/tensor.ts';
import { MapWeightStore } from '../../../src/ir/weights.ts';
import { sgmvTokensPerGroup } from '../../../src/methods/multi-lora/index.ts';
import { Rng } from '../../../src/util/rng.ts';
import { gpuSuite } from '../../backends/webgpu/gpu.ts';
import { expectClose } from '../../ops/case.ts';

interface Problem {
  readonly rows: number;
  readonly tokens: number;
  readonly inF: number;
  readonly outF: number;
  readonly slots: number;
  readonly rMax: number;
  /** The true rank of each slot's adapter (<= rMax; the rest zero-padded). */
  readonly ranks: readonly number[];
  /** Slot per row: -1 (base), or any integer (>= slots also means none). */
  readonly index: readonly number[];
  /** With the DoRA rescaling input mag [slots, out]. */
  readonly mag: boolean;
  readonly seed: number;
}

const problemArb = (rMaxes: readonly number[]) =>
  fc
    .record({
      rows: fc.integer({ min: 1, max: 5 }),
      tokens: fc.constantFrom(1, 2, 3, 5, 9, 17, 40),
      inF: fc.integer({ min: 1, max: 70 }),
      outF: fc.integer({ min: 1, max: 140 }),
      slots: fc.integer({ min: 1, max: 4 }),
      rMax: fc.constantFrom(...rMaxes),
      mag: fc.boolean(),
      seed: fc.nat(),
    })
    .chain((p) =>
      fc
        .record({
          ranks: fc.array(fc.integer({ min: 0, max: p.rMax }), { minLength: p.slots, maxLength: p.slots }),
          index: fc.array(fc.integer({ min: -1, max: p.slots }), { minLength: p.rows, maxLength: p.rows }),
        })
        .map((q) => ({ ...p, ...q }) as Problem),
    );

function build(p: Problem): { g: Graph; feeds: Record<string, Tensor>; weights: MapWeightStore } {
  const rng = new Rng(p.seed);
  const rand = (n: number) => Float32Array.from({ length: n }, () => rng.uniform(-1, 1));
  const A = rand(p.slots * p.rMax * p.inF);
  const B = rand(p.slots * p.outF * p.rMax);
  // Zero-pad: ranks above a slot's true rank are zero in A and B.
  for (let s = 0; s < p.slots; s++)
    for (let j = p.ranks[s]; j < p.rMax; j++) {
      A.fill(0, (s * p.rMax + j) * p.inF, (s * p.rMax + j + 1) * p.inF);
      for (let o = 0; o < p.outF; o++) B[(s * p.outF + o) * p.rMax + j] = 0;
    }
  const b = new GraphBuilder();
  const x = b.input('x', 'f32', [p.rows, p.tokens, p.inF]);
  const y = b.input('y', 'f32', [p.rows, p.tokens, p.outF]);
  const idx = b.input('idx', 'i32', [p.rows]);
  const out = b.emit('sgmv', [
    y,
    x,
    idx,
    b.param('A', 'f32', [p.slots, p.rMax, p.inF]),
    b.param('B', 'f32', [p.slots, p.outF, p.rMax]),
    b.param('s', 'f32', [p.slots]),
    ...(p.mag ? [b.param('m', 'f32', [p.slots, p.outF])] : []),
  ]);
  const weights = new MapWeightStore(
    new Map([
      ['A', tensor('f32', [p.slots, p.rMax, p.inF], A)],
      ['B', tensor('f32', [p.slots, p.outF, p.rMax], B)],
      ['s', tensor('f32', [p.slots], rand(p.slots))],
      ['m', tensor('f32', [p.slots, p.outF], rand(p.slots * p.outF))],
    ]),
  );
  const feeds = {
    x: tensor('f32', [p.rows, p.tokens, p.inF], rand(p.rows * p.tokens * p.inF)),
    y: tensor('f32', [p.rows, p.tokens, p.outF], rand(p.rows * p.tokens * p.outF)),
    idx: tensor('i32', [p.rows], p.index),
  };
  return { g: b.build({ out }), feeds, weights };
}

/** Per row: [m *] (y + s (x A^T) B^T) over the slot's true rank only, in f64. */
function reference(p: Problem, feeds: Record<string, Tensor>, w: MapWeightStore): Float64Array {
  const [x, y] = [feeds.x.data, feeds.y.data];
  const [A, B, s, m] = ['A', 'B', 's', 'm'].map((n) => w.get(n)!.data);
  const out = Float64Array.from(y);
  for (let r = 0; r < p.rows; r++) {
    const a = p.index[r];
    if (a < 0 || a >= p.slots) continue;
    for (let t = r * p.tokens; t < (r + 1) * p.tokens; t++)
      for (let o = 0; o < p.outF; o++) {
        let acc = 0;
        for (let j = 0; j < p.ranks[a]; j++) {
          let h = 0;
          for (let k = 0; k < p.inF; k++) h += x[t * p.inF + k] * A[(a * p.rMax + j) * p.inF + k];
          acc += h * B[(a * p.outF + o) * p.rMax + j];
        }
        out[t * p.outF + o] += s[a] * acc;
        if (p.mag) out[t * p.outF + o] *= m[a * p.outF + o];
      }
  }
  return out;
}

it('sgmv on the CPU equals each row run with its own adapter (true rank, padding ignored)', () => {
  fc.assert(
    fc.property(problemArb([1, 3, 8, 16]), (p) => {
      const { g, feeds, weights } = build(p);
      const got = runGraph(g, feeds, weights, { precision: 'f64' }).out;
      const want = reference(p, feeds, weights);
      let worst = 0;
      got.data.forEach((v, i) => {
        worst = Math.max(worst, Math.abs(v - want[i]));
      });
      expect(worst).toBeLessThan(1e-9);
    }),
    { numRuns: 40 },
  );
});

it('sgmv rejects mismatched shapes with the op and the shapes named', () => {
  const b = new GraphBuilder();
  const x = b.input('x', 'f32', [2, 3, 8]);
  const y = b.input('y', 'f32', [2, 3, 5]);
  const idx = b.input('idx', 'i32', [3]);
  expect(() =>
    b.emit('sgmv', [
      y,
      x,
      idx,
      b.param('A', 'f32', [2, 4, 8]),
      b.param('B', 'f32', [2, 5, 4]),
      b.param('s', 'f32', [2]),
    ]),
  ).toThrow(/sgmv.*index must be \[2\]/);
});

it('the WGSL kernel groups up to 8 tokens of a row (32 on a CPU adapter), at most 64 (256) (token, rank) pairs', () => {
  expect([1, 3, 8, 20].map((t) => sgmvTokensPerGroup(t, 8))).toEqual([1, 4, 8, 8]);
  expect([16, 64, 100].map((r) => sgmvTokensPerGroup(64, r))).toEqual([4, 1, 1]);
  // A CPU implementation (lavapipe) takes up to 32 tokens and 256 pairs per workgroup.
  expect([8, 64, 100].map((r) => sgmvTokensPerGroup(64, r, true))).toEqual([32, 4, 2]);
});

await gpuSuite('sgmv WGSL vs cpu', ({ backend }) => {
  // r_max is in the pipeline key: a few values (one below the workgroup, one above it).
  it('equals the CPU kernel on random sizes, ranks and adapter mixes', async () => {
    await fc.assert(
      fc.asyncProperty(problemArb([4, 7, 80]), async (p) => {
        const { g, feeds, weights } = build(p);
        const want = runGraph(g, feeds, weights).out;
        const exe = await backend.compile(g, weights);
        try {
          expectClose((await exe.run({ feeds })).out, want, 1e-5, `sgmv ${JSON.stringify(p)}`);
        } finally {
          exe.dispose();
        }
      }),
      { numRuns: 6 },
    );
  });
});
