// The qlora pass on the tiny LLaMA: QLoRA (qlora + lora) forward and backward equal a
// dequantize-then-LoRA reference; fuse-dequant leaves gradients unchanged and leaves no
// dequant_4bit in the train step; a few AdamW steps lower the loss; merge; memory report.
import { describe, expect, it } from 'vitest';
import { CpuBackend, runGraph } from '../../../src/backends/cpu/index.ts';
import { quantStateFromTensors } from '../../../src/io/bitsandbytes.ts';
import type { Graph } from '../../../src/ir/graph.ts';
import { type Tensor, tensor } from '../../../src/ir/tensor.ts';
import { bindParams, MapWeightStore, type WeightStore } from '../../../src/ir/weights.ts';
import '../../../src/methods/index.ts';
import {
  fuseDequant,
  qloraOptions,
  quantizedBaseReport,
  quantizeLinears,
} from '../../../src/methods/qlora/index.ts';
import { buildLlama, PRESETS, randomLlamaWeights } from '../../../src/models/llama/index.ts';
import { autodiff } from '../../../src/passes/autodiff/index.ts';
import { runPipeline } from '../../../src/passes/pipeline.ts';
import { dequantizeWeight } from '../../../src/quant/quant-state.ts';
import { buildTrainStep } from '../../../src/train/step.ts';
import { expectClose } from '../../ops/case.ts';

const tiny = PRESETS.tiny;
const S = 6;
const lora = {
  name: 'lora',
  options: {
    r: 4,
    lora_alpha: 8,
    target_modules: ['q_proj', 'v_proj', 'down_proj'],
    init_lora_weights: false,
  },
};
const ids = tensor('i32', [1, S], [256, 72, 101, 108, 108, 111]);
const feeds = { input_ids: ids, labels: ids };

function setup(qopts: Record<string, unknown> = {}) {
  const g = buildLlama(tiny, { batch: 1, seq: S }, { loss: true });
  const base = randomLlamaWeights(tiny, 0);
  const q = runPipeline(g, [{ name: 'qlora', options: qopts }, lora], { weights: base, log: () => {} });
  // Reference: the same model with the 4-bit weights dequantized into f32, then plain LoRA.
  const refBase = new MapWeightStore(base.map);
  const quantized = g
    .ofOp('linear')
    .filter((n) => n.scope !== 'lm_head')
    .map((n) => String(g.node(n.inputs[1]).attrs.name));
  for (const name of quantized) {
    const s = quantStateFromTensors(name, (k) => q.weights!.get(k));
    refBase.set(name, tensor('f32', s.shape, dequantizeWeight(s)));
  }
  const r = runPipeline(g, [lora], { weights: refBase, log: () => {} });
  return {
    qGraph: q.graph,
    qWeights: bindParams(q.graph, q.weights!, 7),
    rGraph: r.graph,
    rWeights: bindParams(r.graph, r.weights!, 7),
    quantized,
  };
}

const wrt = { loss: 'loss', extraWrt: ['model.embed_tokens.weight'] };

function gradsOf(g: Graph, w: WeightStore): Record<string, Tensor> {
  return runGraph(autodiff(g, wrt), feeds, w, { precision: 'f64' });
}

describe('qlora pass', () => {
  it('quantizes every linear but lm_head, naming params as bitsandbytes keys', () => {
    const { qGraph, quantized } = setup();
    expect(quantized.length).toBe(tiny.numLayers * 7);
    const names = new Set(qGraph.params().map((p) => String(p.attrs.name)));
    for (const w of quantized) {
      for (const k of [w, `${w}.absmax`, `${w}.nested_absmax`, `${w}.nested_quant_map`])
        expect(names.has(k), k).toBe(true);
    }
    expect(qGraph.params().find((p) => p.attrs.name === 'lm_head.weight')?.type.dtype).toBe('f32');
    expect(qGraph.ofOp('dequant_4bit').length).toBe(quantized.length);
    expect(qGraph.ofOp('dequant_absmax').length).toBe(quantized.length);
  });

  for (const [label, opts] of [
    ['nf4 + double quant', {}],
    ['fp4, blocksize 128, no double quant', { quant_type: 'fp4', blocksize: 128, double_quant: false }],
  ] as const) {
    it(`forward and backward equal dequantize-then-LoRA (${label})`, () => {
      const s = setup(opts);
      const got = gradsOf(s.qGraph, s.qWeights);
      const want = gradsOf(s.rGraph, s.rWeights);
      expectClose(got.loss, want.loss, 1e-10, 'loss');
      const gradNames = Object.keys(want).filter((k) => k.startsWith('grad:'));
      expect(gradNames.length).toBe(tiny.numLayers * 3 * 2 + 1);
      for (const k of gradNames) expectClose(got[k], want[k], 1e-9, k);
      // The gradients are not trivially zero.
      expect(Math.max(...Array.from(got['grad:model.embed_tokens.weight'].data, Math.abs))).toBeGreaterThan(
        1e-4,
      );
    });
  }

  it('fuse-dequant leaves gradients unchanged and no dequant_4bit in the train step', () => {
    const s = setup();
    const ad = autodiff(s.qGraph, wrt);
    const fused = fuseDequant(ad);
    expect(fused.ofOp('dequant_4bit')).toEqual([]);
    // Double quantization: the absmax decode is fused too (no f32 absmax buffer).
    expect(fused.ofOp('dequant_absmax')).toEqual([]);
    expect(fused.ofOp('linear_4bit').every((n) => n.attrs.nested !== null)).toBe(true);
    // Forward (x W^T) and backward (g W) products: two linear_4bit per quantized module, one
    // when nothing upstream needs the input gradient (none here: the embedding is wanted).
    expect(fused.ofOp('linear_4bit').length).toBe(2 * s.quantized.length);
    expect(fused.ofOp('linear_4bit').filter((n) => n.attrs.transpose).length).toBe(s.quantized.length);
    const a = runGraph(ad, feeds, s.qWeights, { precision: 'f64' });
    const b = runGraph(fused, feeds, s.qWeights, { precision: 'f64' });
    for (const k of Object.keys(a)) expectClose(b[k], a[k], 1e-10, k);

    const step = fuseDequant(buildTrainStep(s.qGraph, { optimizer: { type: 'sgd', lr: 0.1 } }));
    expect(step.ofOp('dequant_4bit')).toEqual([]);
    expect(step.ofOp('linear_4bit').length).toBeGreaterThan(0);
  });

  it('QLoRA training on the tiny model lowers the loss (AdamW, CPU)', async () => {
    const s = setup();
    const step = fuseDequant(
      buildTrainStep(s.qGraph, { optimizer: { type: 'adamw', lr: 3e-2, weight_decay: 0 } }),
    );
    const exe = await new CpuBackend().compile(step, bindParams(step, s.qWeights, 7));
    const losses: number[] = [];
    for (let t = 1; t <= 12; t++) {
      const out = await exe.run({
        feeds: { ...feeds, lr: tensor('f32', [], [3e-2]), step: tensor('i32', [], [t]) },
      });
      losses.push(out.loss.data[0]);
    }
    for (let t = 1; t < losses.length; t++) expect(losses[t], losses.join(', ')).toBeLessThan(losses[t - 1]);
    expect(losses[11], losses.join(', ')).toBeLessThan(losses[0] * 0.9);
    // The base stays frozen: the packed codes never change.
    const name = `${s.quantized[0]}`;
    expect(Array.from((await exe.readParam(name)).data)).toEqual(Array.from(s.qWeights.get(name)!.data));
  });

  it('reports bits per parameter from the bound buffers (4.5 plain, ~4.127 double quant)', () => {
    const g = buildLlama(tiny, { batch: 1, seq: 2 });
    const w = randomLlamaWeights(tiny, 0);
    const plain = quantizeLinears(g, qloraOptions.parse({ double_quant: false }), w);
    const dq = quantizeLinears(g, qloraOptions.parse({}), w);
    const rp = quantizedBaseReport(plain.graph, plain.weights!);
    const rd = quantizedBaseReport(dq.graph, dq.weights!);
    expect(rp.params).toBe(tiny.numLayers * (4 * 64 * 64 + 3 * 64 * 128 - 2 * 64 * 64 + 2 * 32 * 64));
    expect(rp.bitsPerParameter).toBe(4.5);
    // 4 + 8/64 + (32 * ceil(blocks/256) + 32) / n per weight: small weights pay more for the nested absmax.
    const expected = rd.weights.reduce((s, x) => s + x.params * 4 + (x.params / 64) * 8 + 64, 0) / rd.params;
    expect(rd.bitsPerParameter).toBeCloseTo(expected, 10);
    expect(rd.bitsPerParameter).toBeGreaterThan(4.125);
    expect(rd.bitsPerParameter).toBeLessThan(4.2);
    // The fused graphs (linear_4bit reading the storage directly) report the same.
    expect(quantizedBaseReport(fuseDequant(plain.graph), plain.weights!)).toEqual(rp);
    expect(quantizedBaseReport(fuseDequant(dq.graph), dq.weights!)).toEqual(rd);
  });

  it('errors clearly: a weight shared with another op, and no target found', () => {
    const g = buildLlama({ ...tiny, tieWordEmbeddings: true }, { batch: 1, seq: 2 });
    expect(() =>
      quantizeLinears(g, qloraOptions.parse({ target_modules: ['lm_head'] }), randomLlamaWeights(tiny, 0)),
    ).toThrow(/'model.embed_tokens.weight' of lm_head is also used by embedding in model.embed_tokens/);
    expect(() => quantizeLinears(g, qloraOptions.parse({ target_modules: ['nope'] }))).toThrow(
      /not found in the model/,
    );
  });
});
