// productFlops (bench/step-flops.ts): 2 * output elements * contraction size per product
// node, transposes resolved, batches counted, other ops left out; and on a fused step.
import { expect, it } from 'vitest';
import { productFlops } from '../../bench/step-flops.ts';
import { GraphBuilder } from '../../src/ir/builder.ts';
import { loadRecipe } from '../../src/methods/index.ts';
import { loadModel } from '../../src/models/llama/index.ts';
import { prepareRun } from '../../src/train/setup.ts';

it('counts matmuls (transposed, batched) and linears, nothing else', () => {
  const b = new GraphBuilder();
  const a = b.input('a', 'f32', [2, 5, 3]); // batch 2 of [5,3]
  const w = b.input('w', 'f32', [3, 4]);
  const y = b.matmul(a, w); // [2,5,4], k 3: 2 * 40 * 3
  const at = b.matmul(b.input('t', 'f32', [3, 5]), b.input('u', 'f32', [3, 6]), {
    transpose_a: true,
  }); // [5,6], k 3: 2 * 30 * 3
  const l = b.linear(b.input('x', 'f32', [7, 3]), b.input('lw', 'f32', [4, 3])); // [7,4], k 3
  const g = b.build({ y: b.emit('tanh', [y]), at, l });
  expect(productFlops(g)).toBe(2 * 40 * 3 + 2 * 30 * 3 + 2 * 28 * 3);
});

it('counts the fused step products: the same FLOPs as the unfused forward and backward', () => {
  const model = loadModel('tiny', { seed: 0 });
  const recipe = loadRecipe('bench/baseline/lora-r16-qkvo.json');
  const run = prepareRun(model, recipe, { batch: 2, seq: 16 }, { seed: 0 });
  const ops = new Set(run.step.nodes.map((n) => n.op));
  expect(ops.has('matmul_map')).toBe(true); // fused products are counted too
  // Per token, about: 2 layers * (q,k,v,o + 3 MLP) + lm_head multiply-adds (k, v are narrower: GQA)...
  const h = 64;
  const base = 2 * (4 * h * h + 3 * h * 128) + h * 259;
  // ...at least forward and input gradient; at most with every weight's gradient too.
  expect(productFlops(run.step)).toBeGreaterThan(2 * 2 * base * 32);
  expect(productFlops(run.step)).toBeLessThan(4 * 2 * base * 32);
});
