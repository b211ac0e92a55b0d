// Test helpers for the matmul kernel tests: a matmul graph of given sizes, transposes and
// batch shapes, and random f32 weights for its params.
import { GraphBuilder } from '../../../src/ir/builder.ts';
import type { Graph } from '../../../src/ir/graph.ts';
import { MapWeightStore } from '../../../src/ir/weights.ts';
import { Rng } from '../../../src/util/rng.ts';
import { randTensor } from '../../ops/case.ts';

/** y = a @ b with a [...ba, m, k] (or [.., k, m] transposed) and b [...bb, k, n] (or [.., n, k]). */
export function matmulGraph(
  m: number,
  k: number,
  n: number,
  ta: boolean,
  tb: boolean,
  ba: number[],
  bb: number[],
) {
  const b = new GraphBuilder();
  const a = b.param('a', 'f32', [...ba, ...(ta ? [k, m] : [m, k])]);
  const w = b.param('b', 'f32', [...bb, ...(tb ? [n, k] : [k, n])]);
  return b.build({ y: b.matmul(a, w, { transpose_a: ta, transpose_b: tb }) });
}

/** Uniform random f32 values for every param of `g`. */
export function weightsOf(g: Graph, seed: number): MapWeightStore {
  const rng = new Rng(seed);
  const w = new MapWeightStore();
  for (const p of g.params()) w.set(String(p.attrs.name), randTensor(rng, 'f32', p.type.shape));
  return w;
}
