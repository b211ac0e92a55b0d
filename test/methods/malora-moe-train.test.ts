// examples/recipes/malora-moe-tiny.json (4 experts per module, top 2) on the bundled model:
// `peftc train` in-process on cpu and webgpu gives the same losses and lowers the eval loss,
// saves the MALORA_MOE folder, which reloads to the trained logits; `peftc merge` on it is
// refused naming the router, and nothing is written.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runTrain } from '../../src/cli/commands/train.ts';
import { loadRecipe } from '../../src/methods/index.ts';
import { cli } from '../cli/run-cli.ts';
import { MODEL, maxAbsDiff, quiet, tokensFile, trainedAndReloaded } from './trained-model.ts';

const RECIPE = 'examples/recipes/malora-moe-tiny.json';
const { dir, tokens } = tokensFile('peftc-malora-moe-');
const out = join(dir, 'cpu');

describe('malora-moe on the bundled model', () => {
  it('trains (cpu and webgpu alike), lowers the eval loss, saves a MALORA_MOE adapter that reloads to the trained logits', async () => {
    const train = (backend: 'cpu' | 'webgpu') =>
      runTrain(
        {
          model: MODEL,
          recipe: RECIPE,
          tokens,
          out: join(dir, backend),
          batch: 2,
          seq: 32,
          backend,
          plot: false,
          evalEvery: 12,
        },
        quiet,
      );
    const cpu = await train('cpu');
    const gpu = await train('webgpu');
    for (const r of [cpu, gpu]) expect(r.evalLosses.at(-1)!.loss).toBeLessThan(r.evalLosses[0].loss - 0.05);
    expect(Math.abs(gpu.evalLosses.at(-1)!.loss - cpu.evalLosses.at(-1)!.loss)).toBeLessThan(2e-3);
    const cfg = JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8'));
    expect(cfg).toMatchObject({ peft_type: 'MALORA_MOE', num_experts: 4, top_k: 2, r: 4, shared_rank: 8 });
    const t = trainedAndReloaded(loadRecipe(RECIPE), join(out, 'checkpoint-12'), out);
    expect(maxAbsDiff(t.trained, t.reloaded)).toBeLessThan(1e-5);
  });

  it('peftc merge refuses the mixture, naming the router, and writes nothing', async () => {
    const to = join(dir, 'merged');
    const r = await cli(['merge', '--model', MODEL, '--adapter', out, '--out', to]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/cannot be merged: its router weighs the experts per token/);
    expect(existsSync(to)).toBe(false);
  });
});
