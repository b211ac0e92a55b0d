// The slotted rewrite: which linears get a branch (PEFT target rules, all-linear without
// the output head), its params and input, and a biased module: the base product runs
// without the bias, the branch (and DoRA's per-row factor) on it, the bias after.
import { expect, it } from 'vitest';
import { runGraph } from '../../../src/backends/cpu/index.ts';
import { GraphBuilder } from '../../../src/ir/builder.ts';
import { tensor } from '../../../src/ir/tensor.ts';
import { MapWeightStore } from '../../../src/ir/weights.ts';
import { ADAPTER_INDEX, addLoraSlots, slotParamNames } from '../../../src/methods/multi-lora/index.ts';
import { buildLlama, presetConfig } from '../../../src/models/llama/index.ts';

it('all-linear gives every linear but the output head a branch; a list selects by suffix', () => {
  const g = buildLlama(presetConfig('tiny'), { batch: 2, seq: 3 });
  const all = addLoraSlots(g, { max_loras: 2, max_lora_rank: 4 });
  expect(all.layout.modules).toHaveLength(14);
  expect(all.layout.modules.some((m) => m.module === 'lm_head')).toBe(false);
  const some = addLoraSlots(g, { target_modules: ['q_proj', 'down_proj'], max_loras: 2, max_lora_rank: 4 });
  expect(some.layout.modules.map((m) => m.module)).toEqual([
    'model.layers.0.self_attn.q_proj',
    'model.layers.0.mlp.down_proj',
    'model.layers.1.self_attn.q_proj',
    'model.layers.1.mlp.down_proj',
  ]);
  expect(some.graph.inputs().find((n) => n.attrs.name === ADAPTER_INDEX)?.type).toEqual({
    dtype: 'i32',
    shape: [2],
  });
  expect(some.initial.get(slotParamNames('model.layers.0.mlp.down_proj').A)?.shape).toEqual([2, 4, 128]);
  expect(() => addLoraSlots(g, { target_modules: ['nope'] })).toThrow(
    /match no linear of the model; module names look like/,
  );
  expect(() => addLoraSlots(some.graph, {})).toThrow(/already has an 'adapter_index' input/);
});

it('a biased module: mag * (x W^T + s (x A^T) B^T) + bias, the bias outside the rescaling', () => {
  const b = new GraphBuilder();
  const x = b.input('x', 'f32', [2, 1, 3]);
  const y = b.withScope('m.proj', () =>
    b.linear(x, b.param('m.proj.weight', 'f32', [2, 3]), b.param('m.proj.bias', 'f32', [2])),
  );
  const { graph, initial } = addLoraSlots(b.build({ y }), {
    target_modules: ['proj'],
    max_loras: 1,
    max_lora_rank: 1,
  });
  const n = slotParamNames('m.proj');
  const w = new MapWeightStore(initial);
  w.set('m.proj.weight', tensor('f32', [2, 3], [1, 0, 0, 0, 1, 0]));
  w.set('m.proj.bias', tensor('f32', [2], [10, 20]));
  w.set(n.A, tensor('f32', [1, 1, 3], [1, 1, 1]));
  w.set(n.B, tensor('f32', [1, 2, 1], [1, 2]));
  w.set(n.scale, tensor('f32', [1], [0.5]));
  w.set(n.mag, tensor('f32', [1, 2], [2, 3]));
  const xs = tensor('f32', [2, 1, 3], [1, 2, 3, 1, 2, 3]);
  const out = runGraph(graph, { x: xs, [ADAPTER_INDEX]: tensor('i32', [2], [0, -1]) }, w).y.data;
  // Row 0: x W^T = [1, 2], h = 6, s h B^T = [3, 6]; mag * [4, 8] = [8, 24]; + bias. Row 1: base.
  expect(Array.from(out)).toEqual([18, 44, 11, 22]);
});
