import { describe, expect, it } from 'vitest';
import { runGraph } from '../../../src/backends/cpu/index.ts';
import { tensor } from '../../../src/ir/tensor.ts';
import {
  buildLlama,
  checkModelWeights,
  presetConfig,
  randomLlamaWeights,
} from '../../../src/models/llama/index.ts';
import { referenceLogits } from './reference-forward.ts';

describe('LLaMA graph on the CPU interpreter', () => {
  for (const variant of [
    { name: 'tiny (GQA 4:2)', cfg: presetConfig('tiny') },
    {
      name: 'tied, linear rope x2, MHA',
      cfg: { ...presetConfig('tiny'), tieWordEmbeddings: true, ropeLinearFactor: 2, numKvHeads: 4 },
    },
  ]) {
    it(`matches an independent plain forward: ${variant.name}`, () => {
      const c = variant.cfg;
      // Larger init than HF's 0.02 so attention and MLP are far from trivial.
      const w = randomLlamaWeights(c, 7);
      for (const n of w.names()) {
        const d = w.get(n)!.data;
        if (!n.endsWith('norm.weight')) for (let i = 0; i < d.length; i++) d[i] *= 10;
      }
      const ids = [256, 72, 101, 108, 108, 111, 33];
      const g = buildLlama(c, { batch: 1, seq: ids.length });
      checkModelWeights(g, w, 'test');
      const out = runGraph(g, { input_ids: tensor('i32', [1, ids.length], ids) }, w, { precision: 'f64' });
      const want = referenceLogits(c, w, ids);
      const got = out.logits.data;
      let maxErr = 0;
      want.forEach((row, i) => {
        row.forEach((v, j) => {
          maxErr = Math.max(maxErr, Math.abs(v - got[i * c.vocabSize + j]));
        });
      });
      expect(maxErr).toBeLessThan(1e-9);
    });
  }

  it('names the missing tensor and the source', () => {
    const c = presetConfig('tiny');
    const w = randomLlamaWeights(c, 1);
    w.map.delete('model.layers.1.mlp.up_proj.weight');
    const g = buildLlama(c, { batch: 1, seq: 4 });
    expect(() => checkModelWeights(g, w, 'models/x/model.safetensors')).toThrow(
      /models\/x\/model\.safetensors: missing 1 tensor\(s\) the config needs: model\.layers\.1\.mlp\.up_proj\.weight \[128,64\]/,
    );
  });
});
