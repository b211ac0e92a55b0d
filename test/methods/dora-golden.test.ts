// DoRA against PEFT 0.21 training the same adapter (test/fixtures/peft/dora, made by
// scripts/reference/peft_methods.py): the first step's gradients of lora_A, lora_B and
// the magnitude (PEFT detaches the row norm), and the losses of 3 AdamW steps (lr 1e-2,
// no weight decay, no dropout) from the saved adapter, on the bundled tiny-llama in f32.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CpuBackend, runGraph } from '../../src/backends/cpu/index.ts';
import { tensor } from '../../src/ir/tensor.ts';
import { parseRecipe } from '../../src/methods/index.ts';
import { loadModel } from '../../src/models/llama/index.ts';
import { autodiff, GRAD_PREFIX } from '../../src/passes/autodiff/index.ts';
import { unfuseElementwise } from '../../src/passes/fuse/elementwise.ts';
import { prepareRun } from '../../src/train/setup.ts';

const DIR = 'test/fixtures/peft/dora';
const e = JSON.parse(readFileSync(`${DIR}/expected.json`, 'utf8'));
const ids: number[][] = e.input_ids;
const [batch, seq] = [ids.length, ids[0].length];
const recipe = parseRecipe({
  methods: [
    {
      method: 'lora',
      use_dora: true,
      r: 4,
      lora_alpha: 8,
      target_modules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'down_proj'],
    },
  ],
  optimizer: { type: 'adamw', lr: e.train.lr, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0 },
});
const run = prepareRun(
  loadModel('examples/models/tiny-llama'),
  recipe,
  { batch, seq },
  { seed: 0, initAdapter: `${DIR}/adapter` },
);
const input = tensor('i32', [batch, seq], ids.flat());

/** PEFT's saved name (adapter name removed) -> peftc's graph name. */
const ours = (peftName: string) => `${peftName}.default.weight`;

describe('DoRA against PEFT 0.21', () => {
  it('first-step gradients of lora_A, lora_B and the magnitude equal PEFT (norm detached)', () => {
    // The eval graph is fused (fuse-elementwise); autodiff reads it op by op.
    const g = autodiff(unfuseElementwise(run.forward), { loss: 'loss' });
    const names = Object.keys(e.train.grads);
    const out = runGraph(g, { input_ids: input, labels: input }, run.weights, {
      outputs: names.map((n) => GRAD_PREFIX + ours(n)),
    });
    for (const n of names) {
      const want: number[] = e.train.grads[n].data;
      const got = out[GRAD_PREFIX + ours(n)].data;
      const scale = Math.max(...want.map(Math.abs));
      let worst = 0;
      for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]));
      expect(worst / scale, n).toBeLessThan(1e-4);
    }
  });

  it('3 AdamW steps from the saved adapter give PEFT losses', async () => {
    const exe = await new CpuBackend().compile(run.step, run.weights);
    const losses: number[] = [];
    for (let k = 1; k <= 3; k++) {
      const r = await exe.run({
        feeds: {
          input_ids: input,
          labels: input,
          lr: tensor('f32', [], [e.train.lr]),
          step: tensor('i32', [], [k]),
        },
        outputs: ['loss'],
      });
      losses.push(r.loss.data[0]);
    }
    for (let i = 0; i < 3; i++)
      expect(Math.abs(losses[i] - e.train.losses[i]), `step ${i + 1}`).toBeLessThan(1e-4);
  });
});
