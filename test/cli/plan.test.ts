// `peftc plan`: the training step planned without weights. Its bytes are the executor's
// (the same memory plan): on the bundled model they equal what the WebGPU executable really
// allocates for the trainer's step; the JSON carries the contract's keys; 7B shapes plan in
// seconds without reading a weight.
import { describe, expect, it } from 'vitest';
import { createBackend } from '../../src/backends/index.ts';
import type { WebGpuExecutable } from '../../src/backends/webgpu/index.ts';
import { type PlanReport, planStep } from '../../src/cli/commands/plan.ts';
import { loadRecipe } from '../../src/methods/index.ts';
import { loadModel } from '../../src/models/llama/index.ts';
import { prepareRun } from '../../src/train/setup.ts';
import { cli } from './run-cli.ts';

const MODEL = 'examples/models/tiny-llama';

describe('peftc plan', () => {
  for (const recipe of ['examples/recipes/qlora-tiny.json', 'examples/recipes/lora-tiny.json'])
    it(`${recipe}: the planned bytes are the bytes the WebGPU executor allocates for the trainer's step`, async () => {
      const plan = await planStep({ model: MODEL, recipe, batch: 2, seq: 16 });
      const run = prepareRun(loadModel(MODEL), loadRecipe(recipe), { batch: 2, seq: 16 }, { seed: 0 });
      const be = await createBackend('webgpu');
      try {
        const exe = (await be.compile(run.step, run.weights)) as WebGpuExecutable;
        expect(plan.peak_bytes).toBe(exe.memory.deviceBytes);
        expect(plan.dispatches).toBe(exe.stats.dispatches);
        exe.dispose();
      } finally {
        be.dispose();
      }
      const kinds = [
        'frozen_weights',
        'adapters',
        'gradients',
        'optimizer_states',
        'activations',
        'workspace',
      ];
      expect(Object.keys(plan.by_kind).sort()).toEqual([...kinds].sort());
      expect(Object.values(plan.by_kind).reduce((s, x) => s + x, 0)).toBe(plan.peak_bytes);
      expect(plan.params.trainable).toBe(16384);
      expect(plan.params.frozen).toBe(107200);
      if (recipe.includes('qlora')) expect(plan.bits_per_param).toBeCloseTo(4.137, 3);
      else expect(plan.bits_per_param).toBeNull();
    });

  it('--json prints one object with the contract keys; bad input names the flag or file', async () => {
    const r = await cli([
      'plan',
      '--model',
      MODEL,
      '--recipe',
      'examples/recipes/lora-tiny.json',
      '--json',
      '--target',
      'software',
    ]);
    expect(r.code).toBe(0);
    const o = JSON.parse(r.stdout) as PlanReport;
    for (const k of [
      'peak_bytes',
      'by_kind',
      'dispatches',
      'kernels',
      'compile_ms',
      'params',
      'bits_per_param',
    ])
      expect(o).toHaveProperty(k);
    const bad = await cli(['plan', '--model', 'llama-9', '--recipe', 'examples/recipes/lora-tiny.json']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(
      /--model 'llama-9' is neither a preset \(.*llama-2-70b.*\) nor a model directory/,
    );
    const noRecipe = await cli(['plan', '--model', MODEL, '--recipe', 'nope.json']);
    expect(noRecipe.stderr).toMatch(/nope\.json/);
  });

  it('LLaMA-2-7B, 4-bit QLoRA r=16 on q/k/v/o, batch 1 x seq 512, checkpointing: planned without weights', async () => {
    const r = await planStep({
      model: 'llama-2-7b',
      recipe: 'examples/recipes/qlora-7b-plan.json',
      target: 'software',
    });
    expect(r.params.frozen).toBe(6738415616);
    expect(r.params.trainable).toBe(16777216);
    expect(r.bits_per_param).toBeCloseTo(4.127, 3);
    // 4-bit linears (3.14 GiB) + f32 embeddings and lm_head (0.98 GiB) + the rest.
    expect(r.by_kind.frozen_weights / 2 ** 30).toBeGreaterThan(4);
    expect(r.peak_bytes / 2 ** 30).toBeLessThan(5.5);
  }, 20_000);
});
