// LongLoRA (methods/longlora): S2-Attn only in the training graph, full attention in the
// eval/serve graphs; embeddings and norms trainable as modules_to_save; the recipe trains
// the bundled model on cpu and webgpu with the same losses and lowers the eval loss; the
// saved adapter (PEFT LoRA with modules_to_save) reloads to the trained model's logits.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runTrain } from '../../src/cli/commands/train.ts';
import { loadRecipe, parseRecipe } from '../../src/methods/index.ts';
import { loadModel } from '../../src/models/llama/index.ts';
import { prepareRun } from '../../src/train/setup.ts';
import { MODEL, maxAbsDiff, quiet, tokensFile, trainedAndReloaded } from './trained-model.ts';

const RECIPE = 'examples/recipes/longlora-tiny.json';

describe('longlora', () => {
  it('S2-Attn in the train step only; embeddings and norms trainable; LongLoRA defaults', () => {
    const recipe = loadRecipe(RECIPE);
    const run = prepareRun(loadModel(MODEL), recipe, { batch: 1, seq: 32 }, { seed: 0 });
    // Full attention over 32 tokens in the eval graph; groups of 8 (and the 4-token ends) in the step.
    const seqs = (g: typeof run.step) => new Set(g.ofOp('attention').map((n) => n.type.shape[2]));
    expect([...seqs(run.forward)]).toEqual([32]);
    expect([...seqs(run.step)].sort()).toEqual([4, 8]);
    const trainable = run.trainable;
    expect(trainable).toContain('model.embed_tokens.modules_to_save.default.weight');
    expect(trainable).toContain('model.norm.modules_to_save.default.weight');
    expect(trainable).toContain('model.layers.0.input_layernorm.modules_to_save.default.weight');
    expect(trainable.filter((n) => n.includes('.lora_A.')).length).toBe(8);
    const o = recipe.methods[0].options as { r: number; lora_alpha: number; modules_to_save: string[] };
    expect([o.r, o.lora_alpha, o.modules_to_save]).toEqual([8, 16, ['embed_tokens', 'norm']]);
  });

  it('refuses what it does not do yet and recipes that mix it with lora, naming the path', () => {
    expect(() => parseRecipe({ methods: [{ method: 'longlora', model_max_length: 2048 }] })).toThrow(
      /methods\[0\]\.model_max_length: context extension .* is not supported yet/,
    );
    expect(() => parseRecipe({ methods: [{ method: 'longlora', variant: 'wrap' }] })).toThrow(
      /methods\[0\]\.variant/,
    );
    expect(() => parseRecipe({ methods: [{ method: 'longlora' }, { method: 'lora' }] })).toThrow(
      /longlora applies LoRA itself/,
    );
  });

  it('trains on cpu and webgpu (same losses, eval loss down); the adapter reloads to the trained logits', async () => {
    const { dir, tokens } = tokensFile('peftc-longlora-');
    const losses: number[][] = [];
    for (const backend of ['cpu', 'webgpu'] as const) {
      const out = join(dir, backend);
      const r = await runTrain(
        {
          model: MODEL,
          recipe: RECIPE,
          tokens,
          out,
          steps: 6,
          batch: 2,
          seq: 32,
          backend,
          plot: false,
          evalEvery: 6,
        },
        quiet,
      );
      expect(r.evalLosses.at(-1)!.loss).toBeLessThan(r.evalLosses[0].loss);
      losses.push(
        readFileSync(join(out, 'log.jsonl'), 'utf8')
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l))
          .filter((l) => 'loss' in l)
          .map((l) => l.loss),
      );
    }
    for (let i = 0; i < losses[0].length; i++)
      expect(Math.abs(losses[0][i] - losses[1][i])).toBeLessThan(2e-3);
    const out = join(dir, 'cpu');
    expect(JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8'))).toMatchObject({
      modules_to_save: ['embed_tokens', 'norm'],
      r: 8,
    });
    // Trained model (recipe + checkpoint) vs the saved adapter on the base, both full attention.
    const t = trainedAndReloaded(loadRecipe(RECIPE), join(out, 'checkpoint-6'), out);
    expect(maxAbsDiff(t.trained, t.reloaded)).toBeLessThan(1e-5);
  });
});
