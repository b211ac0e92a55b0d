// Issue 5 "build a LLaMA-family decoder ... RoPE with rope_theta and linear rope_scaling
// ... from an HF config.json": configs read from JSON (transformers 4 and 5 dialects)
// with a non-default rope_theta, linear scaling and an explicit head_dim that is not
// hidden_size / num_attention_heads, run on the CPU interpreter against the
// independent plain forward of test/models/llama.
import { describe, expect, it } from 'vitest';
import { runGraph } from '../../src/backends/cpu/index.ts';
import { tensor } from '../../src/ir/tensor.ts';
import {
  buildLlama,
  checkModelWeights,
  parseLlamaConfig,
  randomLlamaWeights,
} from '../../src/models/llama/index.ts';
import { referenceLogits } from '../models/llama/reference-forward.ts';

const common = {
  model_type: 'llama',
  vocab_size: 259,
  hidden_size: 48,
  intermediate_size: 96,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 16, // 4 * 16 = 64 != hidden_size 48
  rms_norm_eps: 1e-5,
  hidden_act: 'silu',
  tie_word_embeddings: false,
};

describe('LLaMA configs from HF JSON (audit, issue 5)', () => {
  for (const [name, json] of [
    [
      'transformers 4: rope_theta 500000, rope_scaling linear x4',
      { ...common, rope_theta: 500000, rope_scaling: { type: 'linear', factor: 4 } },
    ],
    [
      'transformers 5: rope_parameters theta 1e6, linear x2',
      { ...common, rope_parameters: { rope_type: 'linear', rope_theta: 1e6, factor: 2 } },
    ],
  ] as const) {
    it(`matches the plain forward: ${name}`, () => {
      const c = parseLlamaConfig(json);
      expect(c.headDim).toBe(16);
      const w = randomLlamaWeights(c, 9);
      for (const n of w.names()) {
        const d = w.get(n)!.data;
        if (!n.endsWith('norm.weight')) for (let i = 0; i < d.length; i++) d[i] *= 10;
      }
      // Long enough that positions / factor * theta^(-2i/D) differ visibly between configs.
      const ids = Array.from({ length: 12 }, (_, i) => (i * 31 + 7) % 256);
      const g = buildLlama(c, { batch: 1, seq: ids.length });
      checkModelWeights(g, w, 'test');
      const got = runGraph(g, { input_ids: tensor('i32', [1, ids.length], ids) }, w, { precision: 'f64' })
        .logits.data;
      const want = referenceLogits(c, w, ids);
      let maxErr = 0;
      want.forEach((row, i) => {
        row.forEach((v, j) => {
          maxErr = Math.max(maxErr, Math.abs(v - got[i * c.vocabSize + j]));
        });
      });
      expect(maxErr).toBeLessThan(1e-9);
      // The reference is sensitive to theta and the factor: default RoPE gives other logits.
      const plain = referenceLogits({ ...c, ropeTheta: 10000, ropeLinearFactor: 1 }, w, ids);
      let diff = 0;
      plain.forEach((row, i) => {
        row.forEach((v, j) => {
          diff = Math.max(diff, Math.abs(v - got[i * c.vocabSize + j]));
        });
      });
      expect(diff).toBeGreaterThan(1e-3);
    });
  }
});
