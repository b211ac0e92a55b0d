import { describe, expect, it } from 'vitest';
import { runGraph } from '../../src/backends/cpu/index.ts';
import { GraphBuilder } from '../../src/ir/builder.ts';
import type { Graph } from '../../src/ir/graph.ts';
import { tensor } from '../../src/ir/tensor.ts';
import { bindParams, MapWeightStore } from '../../src/ir/weights.ts';
import {
  adapterNames,
  disableAdapters,
  injectLora,
  type LoraOptionsInput,
  loraOptions,
  mergeLora,
  seedOf,
  setActiveAdapters,
} from '../../src/methods/lora/index.ts';
import { buildLlama, presetConfig } from '../../src/models/llama/index.ts';
import { runPipeline } from '../../src/passes/index.ts';
import '../../src/methods/index.ts';
import { randomWeights } from '../arbitrary/graphs.ts';

const llama = buildLlama(presetConfig('tiny'), { batch: 1, seq: 4 });
const lora = (g: Graph, o: LoraOptionsInput, w?: MapWeightStore) => injectLora(g, loraOptions.parse(o), w);
const param = (g: Graph, name: string) => g.params().find((p) => p.attrs.name === name);
const Q0 = 'model.layers.0.self_attn.q_proj';

describe('LoRA injection', () => {
  it('adds PEFT-named params with the right shapes, roles and inits; the base stays frozen', () => {
    const { graph, modules } = lora(llama, { r: 4, lora_alpha: 16, target_modules: ['q_proj', 'k_proj'] });
    expect(modules).toEqual([
      Q0,
      'model.layers.0.self_attn.k_proj',
      'model.layers.1.self_attn.q_proj',
      'model.layers.1.self_attn.k_proj',
    ]);
    const A = param(graph, `${Q0}.lora_A.default.weight`)!;
    const B = param(graph, `${Q0}.lora_B.default.weight`)!;
    expect(A.type.shape).toEqual([4, 64]);
    expect(B.type.shape).toEqual([64, 4]);
    expect(param(graph, 'model.layers.0.self_attn.k_proj.lora_B.default.weight')!.type.shape).toEqual([
      32, 4,
    ]);
    expect([A.attrs.role, B.attrs.role]).toEqual(['trainable', 'trainable']);
    expect(A.attrs.init).toEqual({ kind: 'kaiming_uniform', a: Math.sqrt(5) });
    expect(B.attrs.init).toEqual({ kind: 'zeros' });
    expect(param(graph, `${Q0}.weight`)!.attrs.role).toBe('frozen');
    expect(graph.ofOp('scale').map((n) => n.attrs.factor)).toEqual([4, 4, 4, 4]);
    expect(graph.ofOp('dropout')).toHaveLength(0);
  });

  it('scales by alpha/sqrt(r) with rsLoRA, and takes r/alpha per module from rank_pattern/alpha_pattern', () => {
    expect(lora(llama, { r: 4, lora_alpha: 16, use_rslora: true }).graph.ofOp('scale')[0].attrs.factor).toBe(
      8,
    );
    const { graph } = lora(llama, {
      r: 4,
      lora_alpha: 8,
      target_modules: ['q_proj', 'v_proj'],
      rank_pattern: { 'layers.1.self_attn.v_proj': 2 },
      alpha_pattern: { q_proj: 32 },
    });
    expect(param(graph, 'model.layers.1.self_attn.v_proj.lora_A.default.weight')!.type.shape).toEqual([
      2, 64,
    ]);
    expect(param(graph, 'model.layers.0.self_attn.v_proj.lora_A.default.weight')!.type.shape).toEqual([
      4, 64,
    ]);
    const scales = graph.ofOp('scale').map((n) => [n.scope.split('.lora_B')[0], n.attrs.factor]);
    expect(scales).toEqual([
      [Q0, 8],
      ['model.layers.0.self_attn.v_proj', 2],
      ['model.layers.1.self_attn.q_proj', 8],
      ['model.layers.1.self_attn.v_proj', 4],
    ]);
  });

  it('gaussian init: A ~ N(0, 1/r)', () => {
    const { graph } = lora(llama, { r: 4, init_lora_weights: 'gaussian' });
    expect(param(graph, `${Q0}.lora_A.default.weight`)!.attrs.init).toEqual({ kind: 'normal', std: 0.25 });
  });

  it('adds a dropout per module, seeded from the module path, fed by a `step` input when there is one', () => {
    const { graph } = lora(llama, { lora_dropout: 0.1, target_modules: ['q_proj'] });
    const d = graph.ofOp('dropout');
    expect(d.map((n) => n.scope)).toEqual([
      `${Q0}.lora_dropout.default`,
      'model.layers.1.self_attn.q_proj.lora_dropout.default',
    ]);
    expect(d[0].attrs).toEqual({ p: 0.1, seed: seedOf(`${Q0}.lora_dropout.default`) });
    expect(d[0].attrs.seed).not.toBe(d[1].attrs.seed);
    const b = new GraphBuilder();
    const x = b.input('x', 'f32', [2, 3]);
    b.input('step', 'u32', []);
    const y = b.atScope('m.q_proj', () => b.linear(x, b.param('m.q_proj.weight', 'f32', [3, 3])));
    const g2 = lora(b.build({ y }), { lora_dropout: 0.5, target_modules: ['q_proj'] }).graph;
    expect(g2.ofOp('dropout')[0].inputs).toHaveLength(2);
  });

  it('computes W x + b + s B A x (checked against a hand computation)', () => {
    const b = new GraphBuilder();
    const x = b.input('x', 'f32', [1, 2]);
    const y = b.atScope('m.v_proj', () =>
      b.linear(x, b.param('m.v_proj.weight', 'f32', [2, 2]), b.param('m.v_proj.bias', 'f32', [2])),
    );
    const { graph } = lora(b.build({ y }), { r: 1, lora_alpha: 3, target_modules: ['v_proj'] });
    const w = new MapWeightStore([
      ['m.v_proj.weight', tensor('f32', [2, 2], [1, 2, 3, 4])],
      ['m.v_proj.bias', tensor('f32', [2], [10, 20])],
      ['m.v_proj.lora_A.default.weight', tensor('f32', [1, 2], [1, -1])],
      ['m.v_proj.lora_B.default.weight', tensor('f32', [2, 1], [2, 5])],
    ]);
    const out = runGraph(graph, { x: tensor('f32', [1, 2], [1, 3]) }, w).y;
    // W x + b = [1+6+10, 3+12+20] = [17, 35]; A x = 1-3 = -2; s B A x = 3 * [-4, -10].
    expect(Array.from(out.data)).toEqual([5, 5]);
  });

  it("bias 'all' makes every bias trainable, 'lora_only' only the targeted modules' biases", () => {
    const b = new GraphBuilder();
    const x = b.input('x', 'f32', [1, 2]);
    const mk = (s: string) =>
      b.atScope(s, () =>
        b.linear(x, b.param(`${s}.weight`, 'f32', [2, 2]), b.param(`${s}.bias`, 'f32', [2])),
      );
    const g = b.build({ q: mk('m.q_proj'), k: mk('m.k_proj') });
    const roles = (o: LoraOptionsInput) =>
      Object.fromEntries(
        lora(g, { target_modules: ['q_proj'], ...o })
          .graph.params()
          .filter((p) => String(p.attrs.name).endsWith('bias'))
          .map((p) => [p.attrs.name, p.attrs.role]),
      );
    expect(roles({ bias: 'none' })).toEqual({ 'm.q_proj.bias': 'frozen', 'm.k_proj.bias': 'frozen' });
    expect(roles({ bias: 'all' })).toEqual({ 'm.q_proj.bias': 'trainable', 'm.k_proj.bias': 'trainable' });
    expect(roles({ bias: 'lora_only' })).toEqual({ 'm.q_proj.bias': 'trainable', 'm.k_proj.bias': 'frozen' });
  });

  it('modules_to_save: a trainable copy named <M>.modules_to_save.<adapter>.weight, starting as the original', () => {
    const w = new MapWeightStore([
      ['lm_head.weight', tensor('f32', [259, 64], new Float32Array(259 * 64).fill(0.5))],
    ]);
    const { graph, weights } = lora(llama, { modules_to_save: ['lm_head'] }, w);
    const copy = param(graph, 'lm_head.modules_to_save.default.weight')!;
    expect(copy.attrs.role).toBe('trainable');
    expect(param(graph, 'lm_head.weight')).toBeUndefined();
    expect(weights!.get('lm_head.modules_to_save.default.weight')!.data[7]).toBe(0.5);
    expect(
      disableAdapters(graph)
        .params()
        .map((p) => p.attrs.name),
    ).toContain('lm_head.weight');
  });

  it('LoRA on an embedding: A = 0 and B ~ N(0, 1) by default; the output is table[ids] + s (A^T[ids]) B^T', () => {
    const { graph } = lora(llama, { r: 2, lora_alpha: 4, target_modules: ['embed_tokens'] });
    const A = param(graph, 'model.embed_tokens.lora_embedding_A.default')!;
    expect(A.type.shape).toEqual([2, 259]);
    expect(A.attrs.init).toEqual({ kind: 'zeros' });
    expect(param(graph, 'model.embed_tokens.lora_embedding_B.default')!.attrs.init).toEqual({
      kind: 'normal',
      std: 1,
    });
    const b = new GraphBuilder();
    const ids = b.input('ids', 'i32', [2]);
    const e = b.atScope('emb', () => b.embedding(b.param('emb.weight', 'f32', [3, 2]), ids));
    const g = lora(b.build({ e }), { r: 1, lora_alpha: 2, target_modules: ['emb'] }).graph;
    const w = new MapWeightStore([
      ['emb.weight', tensor('f32', [3, 2], [0, 1, 2, 3, 4, 5])],
      ['emb.lora_embedding_A.default', tensor('f32', [1, 3], [1, 2, 3])],
      ['emb.lora_embedding_B.default', tensor('f32', [2, 1], [10, 100])],
    ]);
    const out = runGraph(g, { ids: tensor('i32', [2], [2, 0]) }, w).e;
    // id 2: [4, 5] + 2 * 3 * [10, 100]; id 0: [0, 1] + 2 * 1 * [10, 100].
    expect(Array.from(out.data)).toEqual([64, 605, 20, 201]);
    const merged = mergeLora(g, w);
    expect(
      Array.from(runGraph(merged.graph, { ids: tensor('i32', [2], [2, 0]) }, merged.weights!).e.data),
    ).toEqual([64, 605, 20, 201]);
  });

  it('never targets its own lora_A / lora_B modules (all-linear on an adapted graph)', () => {
    const once = lora(llama, { target_modules: 'all-linear' }).graph;
    const twice = lora(once, { target_modules: 'all-linear', adapter_name: 'second' }).graph;
    expect(twice.params().filter((p) => String(p.attrs.name).includes('.lora_A.')).length).toBe(2 * 14);
    expect(twice.params().some((p) => String(p.attrs.name).includes('lora_A.default.lora_A'))).toBe(false);
  });
});

describe('several adapters', () => {
  const two = lora(lora(llama, { target_modules: ['q_proj'] }).graph, {
    target_modules: ['q_proj', 'v_proj'],
    adapter_name: 'other',
    r: 2,
  }).graph;

  it('stacks named adapters on one module and lists them', () => {
    expect(adapterNames(two).sort()).toEqual(['default', 'other']);
    expect(() => lora(two, { target_modules: ['q_proj'] })).toThrow(
      /adapter 'default' is already on model\.layers\.0\.self_attn\.q_proj/,
    );
  });

  it('set-active keeps only the named adapters; disable removes all; unknown names are errors', () => {
    expect(adapterNames(setActiveAdapters(two, ['other']))).toEqual(['other']);
    const none = disableAdapters(two);
    expect(adapterNames(none)).toEqual([]);
    expect(none.nodes.length).toBe(llama.nodes.length);
    expect(() => setActiveAdapters(two, ['nope'])).toThrow(
      /no adapter named 'nope' \(the graph has: other, default\)/,
    );
    const viaPass = runPipeline(two, [{ name: 'lora-set-active', options: { adapters: ['default'] } }]).graph;
    expect(adapterNames(viaPass)).toEqual(['default']);
  });

  it('merges several adapters in order (forward unchanged) and merging without weights is a clear error', () => {
    const cfg = presetConfig('tiny');
    const g = lora(lora(buildLlama(cfg, { batch: 1, seq: 3 }), { init_lora_weights: false }).graph, {
      adapter_name: 'b',
      init_lora_weights: false,
      target_modules: ['q_proj', 'o_proj'],
    }).graph;
    const w = bindParams(g, randomWeights(buildLlama(cfg, { batch: 1, seq: 3 }), 3), 3);
    const feeds = { input_ids: tensor('i32', [1, 3], [5, 17, 200]) };
    const y = runGraph(g, feeds, w, { precision: 'f64' }).logits.data;
    const merged = runPipeline(g, ['lora-merge-adapters'], { weights: w });
    expect(adapterNames(merged.graph)).toEqual([]);
    const y2 = runGraph(merged.graph, feeds, merged.weights!, { precision: 'f64' }).logits.data;
    for (let i = 0; i < y.length; i++)
      expect(Math.abs(y2[i] - y[i])).toBeLessThanOrEqual(1e-5 * (1 + Math.abs(y[i])));
    expect(() => runPipeline(g, ['lora-merge'])).toThrow(
      /lora-merge.*needs the weight 'model\.layers\.0\.self_attn\.q_proj\.weight'/,
    );
  });
});
