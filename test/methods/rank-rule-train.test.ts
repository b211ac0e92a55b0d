// rank-rule trained end to end on the bundled model: examples/recipes/rank-rule-tiny.json
// lowers the eval loss on cpu and webgpu (same losses), the run's log shows the allocated
// ranks and the parameter count, the saved adapter is plain PEFT LoRA that reloads (peftc's
// loader and `peftc logits`) to the trained logits. And PEFT's own loader: an adapter peftc
// trained (test/fixtures/peft/rank-rule, made by scripts/reference/peft_rank_rule.py) gets
// from PEFT the ranks and scales (alpha_m / sqrt(r_m), rsLoRA) that peftc allocates for its
// recipe, and PEFT's logits are peftc's.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runGraph } from '../../src/backends/cpu/index.ts';
import { runTrain } from '../../src/cli/commands/train.ts';
import { SafetensorsFile } from '../../src/io/safetensors/file.ts';
import { tensor } from '../../src/ir/tensor.ts';
import { bindRecipe, loadRecipe, mergeAdapters } from '../../src/methods/index.ts';
import type { LoraOptions } from '../../src/methods/lora/options.ts';
import { loraScale } from '../../src/methods/lora/options.ts';
import { allocateRanks, type RankRuleOptions } from '../../src/methods/rank-rule/index.ts';
import { loadModel, modelGraph } from '../../src/models/llama/index.ts';
import { prepareModel } from '../../src/models/prepare.ts';
import { cli } from '../cli/run-cli.ts';
import { MODEL, maxAbsDiff, ROW, tokensFile, trainedAndReloaded } from './trained-model.ts';

const RECIPE = 'examples/recipes/rank-rule-tiny.json';
const FIXTURE = 'test/fixtures/peft/rank-rule';
const { dir, tokens } = tokensFile('peftc-rank-rule-');
const STEPS = 12;

async function train(backend: 'cpu' | 'webgpu') {
  const lines: string[] = [];
  const stream = { write: (s: string) => lines.push(s) > 0, isTTY: false } as never;
  const out = join(dir, backend);
  const r = await runTrain(
    {
      model: MODEL,
      recipe: RECIPE,
      tokens,
      out,
      steps: STEPS,
      batch: 2,
      seq: 32,
      backend,
      plot: false,
      evalEvery: STEPS,
    },
    stream,
  );
  return { r, out, text: lines.join('') };
}

const graph = modelGraph(loadModel(MODEL), { batch: 1, seq: 8 }).graph;

describe('rank-rule trains on the bundled model', () => {
  let cpuOut = '';
  it('lowers the eval loss on cpu and webgpu alike; the log shows the ranks and the parameter count', async () => {
    const cpu = await train('cpu');
    const gpu = await train('webgpu');
    cpuOut = cpu.out;
    for (const { r } of [cpu, gpu])
      expect(r.evalLosses.at(-1)!.loss).toBeLessThan(r.evalLosses[0].loss - 0.5);
    expect(Math.abs(gpu.r.evalLosses.at(-1)!.loss - cpu.r.evalLosses.at(-1)!.loss)).toBeLessThan(2e-3);
    for (const { text } of [cpu, gpu]) {
      expect(text).toMatch(
        /rank-rule: 14 of 14 target modules adapted, ranks 2\.\.8, 8,192 trainable adapter params/,
      );
      expect(text).toContain('q_proj: r [4, 8] by layer, alpha [8, 16], 1,536 params');
    }
    // The saved config is plain LoRA; recipe.json keeps the rule (a resume binds it again).
    const cfg = JSON.parse(readFileSync(join(cpu.out, 'adapter_config.json'), 'utf8'));
    expect(cfg).toMatchObject({ peft_type: 'LORA', r: 8, lora_alpha: 16 });
    expect(cfg.rank_pattern['model.layers.1.self_attn.q_proj']).toBe(8);
    expect(cfg.alpha_pattern['model.layers.0.mlp.up_proj']).toBe(4);
    const saved = JSON.parse(readFileSync(join(cpu.out, 'recipe.json'), 'utf8'));
    expect(saved.methods[0].method).toBe('rank-rule');
    expect(saved.methods[1].rank_pattern).toEqual({});
  });

  it('the saved adapter reloads to the trained logits (peftc loader, merged, and `peftc logits`)', async () => {
    const recipe = bindRecipe(loadRecipe(RECIPE), graph).recipe;
    const t = trainedAndReloaded(recipe, join(cpuOut, `checkpoint-${STEPS}`), cpuOut);
    expect(maxAbsDiff(t.trained, t.reloaded)).toBeLessThan(1e-5);
    const merged = mergeAdapters(t.attached.graph, t.attached.weights);
    expect(maxAbsDiff(t.trained, t.logits(merged.graph, merged.weights!))).toBeLessThan(1e-4);
    const ids = join(dir, 'ids.json');
    const out = join(dir, 'logits.safetensors');
    writeFileSync(ids, JSON.stringify([ROW.slice(0, 12)]));
    const r = await cli([
      'logits',
      '--model',
      MODEL,
      '--adapter',
      cpuOut,
      '--tokens',
      ids,
      '--out',
      out,
      '--backend',
      'cpu',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const got = SafetensorsFile.open(out).read('logits.0').data;
    expect(got.length).toBe(t.trained.length);
    expect(maxAbsDiff(t.trained, got)).toBeLessThan(1e-4);
  });
});

interface Fixture {
  input_ids: number[][];
  modules: Record<string, { r: number; scaling: number }>;
  logits: { data: number[] };
  merged_logits: { data: number[] };
  base_logits: { data: number[] };
}

describe("PEFT's loader on a rank-rule adapter peftc trained (fixture)", () => {
  const e: Fixture = JSON.parse(readFileSync(join(FIXTURE, 'expected.json'), 'utf8'));
  const cfg = JSON.parse(readFileSync(join(FIXTURE, 'adapter', 'adapter_config.json'), 'utf8'));
  const recipe = loadRecipe(join(FIXTURE, 'recipe.json'));

  it("PEFT's r and scaling per module are what peftc allocates for the recipe (rank 0: no adapter)", () => {
    const lora = bindRecipe(recipe, graph).recipe.methods[1].options as LoraOptions;
    expect(cfg.rank_pattern).toEqual(lora.rank_pattern);
    expect(cfg.alpha_pattern).toEqual(lora.alpha_pattern);
    expect(cfg.exclude_modules).toEqual(lora.exclude_modules);
    const alloc = allocateRanks(
      graph,
      recipe.methods[0].options as RankRuleOptions,
      recipe.methods[1].options as LoraOptions,
    );
    const kept = alloc.filter((a) => a.rank > 0);
    expect(alloc.length - kept.length).toBe(5);
    expect(Object.keys(e.modules).sort()).toEqual(kept.map((a) => a.module).sort());
    for (const a of kept) {
      expect(e.modules[a.module].r).toBe(a.rank);
      expect(e.modules[a.module].scaling).toBeCloseTo(loraScale(a.alpha, a.rank, true), 10);
    }
  });

  it("peftc's logits for the adapter are PEFT's, unmerged and merged", () => {
    const model = loadModel(MODEL);
    const [batch, seq] = [e.input_ids.length, e.input_ids[0].length];
    const ids = tensor('i32', [batch, seq], e.input_ids.flat());
    for (const merge of [false, true]) {
      const p = prepareModel(model, { batch, seq }, { adapters: [join(FIXTURE, 'adapter')], merge });
      const got = runGraph(p.graph, { input_ids: ids }, p.weights).logits.data;
      expect(maxAbsDiff(got, (merge ? e.merged_logits : e.logits).data)).toBeLessThan(1e-4);
    }
    // The adapter changes the logits clearly.
    expect(maxAbsDiff(e.logits.data, e.base_logits.data)).toBeGreaterThan(0.5);
  });
});
