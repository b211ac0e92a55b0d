// LongLoRA (methods/longlora): S2-Attn only in the training graph, full attention in the
// eval/serve graphs; embeddings and norms trainable as modules_to_save; the recipe trains
// the bundled model on cpu and webgpu with the same losses and lowers the eval loss; the
// saved adapter (PEFT LoRA with modules_to_save) reloads to the trained model's logits.
import { readFileSync, writeFileSync } from 'node:fs';
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

  it('model_max_length above max_position_embeddings: linear RoPE interpolation, factor ceil(ratio), in every graph', () => {
    const model = loadModel(MODEL);
    const factors = (mml: number) => {
      const run = prepareRun(
        model,
        parseRecipe({ methods: [{ method: 'longlora', model_max_length: mml }] }),
        { batch: 1, seq: 32 },
        { seed: 0 },
      );
      return [run.forward, run.step].map((g) => [
        ...new Set(g.ofOp('rope').map((n) => n.attrs.scaling_factor)),
      ]);
    };
    // tiny-llama: max_position_embeddings 512.
    expect(factors(2048)).toEqual([[4], [4]]);
    expect(factors(1100)).toEqual([[3], [3]]);
    expect(factors(512)).toEqual([[1], [1]]);
  });

  it('refuses bad values and recipes that mix it with lora, naming the path', () => {
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

  it('a run with model_max_length saves rope_scaling in adapter_config.json; the loader applies it (trained logits)', async () => {
    const { dir, tokens } = tokensFile('peftc-longlora-ctx-');
    const recipeFile = join(dir, 'ctx.json');
    const json = {
      methods: [{ method: 'longlora', model_max_length: 1024 }],
      optimizer: { type: 'adamw', lr: 2e-3 },
    };
    writeFileSync(recipeFile, JSON.stringify(json));
    const out = join(dir, 'run');
    await runTrain(
      {
        model: MODEL,
        recipe: recipeFile,
        tokens,
        out,
        steps: 2,
        batch: 2,
        seq: 32,
        backend: 'cpu',
        plot: false,
      },
      quiet,
    );
    const cfg = JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8'));
    expect(cfg.rope_scaling).toEqual({ type: 'linear', factor: 2 });
    const t = trainedAndReloaded(parseRecipe(json), join(out, 'checkpoint-2'), out);
    expect(maxAbsDiff(t.trained, t.reloaded)).toBeLessThan(1e-5);
    expect(t.attached.graph.ofOp('rope').every((n) => n.attrs.scaling_factor === 2)).toBe(true);
    // A rope_scaling peftc cannot apply is refused, naming the file and key.
    writeFileSync(
      join(out, 'adapter_config.json'),
      JSON.stringify({ ...cfg, rope_scaling: { type: 'yarn', factor: 2 } }),
    );
    expect(() => trainedAndReloaded(parseRecipe(json), join(out, 'checkpoint-2'), out)).toThrow(
      /adapter_config\.json: .*rope_scaling.*not linear RoPE scaling/,
    );
  });
});
