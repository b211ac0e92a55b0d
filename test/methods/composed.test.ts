// The composed recipe examples/recipes/qlora-dora-loraplus.json (qlora, then lora with
// use_dora, then loraplus): trains on the bundled model on both backends (same losses),
// lowers the eval loss, groups DoRA's magnitudes with lora_B as PEFT's LoRA+ does, saves
// a PEFT DoRA adapter that reloads (on the same 4-bit base) to the trained model's logits,
// and merges.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runTrain } from '../../src/cli/commands/train.ts';
import { loadRecipe, mergeAdapters, recipePipeline } from '../../src/methods/index.ts';
import { mergeQlora } from '../../src/methods/qlora/index.ts';
import { runPipeline } from '../../src/passes/index.ts';
import { MODEL, maxAbsDiff, quiet, tokensFile, trainedAndReloaded } from './trained-model.ts';

const RECIPE = 'examples/recipes/qlora-dora-loraplus.json';
const { dir, tokens } = tokensFile('peftc-composed-');

async function train(backend: 'cpu' | 'webgpu') {
  const out = join(dir, `run-${backend}`);
  const r = await runTrain(
    {
      model: MODEL,
      recipe: RECIPE,
      tokens,
      out,
      steps: 8,
      batch: 2,
      seq: 32,
      backend,
      plot: false,
      evalEvery: 8,
    },
    quiet,
  );
  return { r, out, log: readFileSync(join(out, 'log.jsonl'), 'utf8') };
}

const losses = (log: string) =>
  log
    .split('\n')
    .filter((l) => l.includes('"loss"') && !l.includes('eval'))
    .map((l) => JSON.parse(l).loss as number);

describe('qlora + dora + loraplus in one recipe', () => {
  let cpuOut = '';
  it('trains on cpu and webgpu with the same losses, lowers the eval loss, magnitudes in the B group', async () => {
    const cpu = await train('cpu');
    const gpu = await train('webgpu');
    cpuOut = cpu.out;
    for (const { r } of [cpu, gpu]) {
      expect(r.evalLosses.at(-1)!.loss).toBeLessThan(r.evalLosses[0].loss);
      expect(r.groups.map((g) => [g.name, g.params.length])).toEqual([
        ['loraplus_A', 14],
        ['loraplus_B', 28],
      ]);
      expect(r.groups[1].params.filter((n) => n.includes('.lora_magnitude_vector.')).length).toBe(14);
    }
    const [a, b] = [losses(cpu.log), losses(gpu.log)];
    expect(a.length).toBeGreaterThan(0);
    for (let i = 0; i < a.length; i++) expect(Math.abs(a[i] - b[i])).toBeLessThan(2e-3 * (1 + a[i]));
    const cfg = JSON.parse(readFileSync(join(cpu.out, 'adapter_config.json'), 'utf8'));
    expect(cfg).toMatchObject({ peft_type: 'LORA', use_dora: true, r: 8, lora_alpha: 16 });
  });

  it('the saved adapter reloads on the 4-bit base to the logits of the trained graph; merging keeps them', () => {
    const recipe = loadRecipe(RECIPE);
    const [qlora] = recipePipeline(recipe);
    // The saved adapter on the same 4-bit base, as `peftc logits --adapter` attaches it.
    const t = trainedAndReloaded(recipe, join(cpuOut, 'checkpoint-8'), cpuOut, (b) => {
      const q = runPipeline(b.graph, [qlora], { weights: b.weights, log: () => {} });
      return { graph: q.graph, weights: q.weights! };
    });
    const trained = t.trained;
    expect(maxAbsDiff(trained, t.reloaded)).toBeLessThan(1e-5);
    const att = t.attached;
    // Merged into float (dequantize, fold DoRA), the same logits up to the f32 rounding of W'.
    const m = mergeQlora(att.graph, { merge_into: 'float' }, att.weights);
    const rest = mergeAdapters(m.graph, m.weights);
    expect(rest.graph.ofOp('stop_gradient')).toHaveLength(0);
    expect(maxAbsDiff(trained, t.logits(rest.graph, rest.weights!))).toBeLessThan(1e-4);
  });

  it('train --init-adapter starts a DoRA run from the saved DoRA adapter (its magnitudes, A and B)', async () => {
    const out = join(dir, 'run-init');
    const r = await runTrain(
      {
        model: MODEL,
        recipe: RECIPE,
        tokens,
        out,
        steps: 1,
        batch: 2,
        seq: 32,
        backend: 'cpu',
        plot: false,
        initAdapter: cpuOut,
      },
      quiet,
    );
    // The step-0 eval of the new run is the trained adapter's, not a fresh init's.
    const trainedLast = JSON.parse(
      readFileSync(join(cpuOut, 'log.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .filter((l) => l.includes('eval_loss'))
        .at(-1)!,
    ).eval_loss as number;
    expect(Math.abs(r.evalLosses[0].loss - trainedLast)).toBeLessThan(1e-4);
  });
});
