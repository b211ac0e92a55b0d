// examples/recipes/malora-tiny.json (rank per head under a parameter budget) on the bundled
// model: `peftc train` (in-process, cpu and webgpu) lowers the eval loss and saves a plain PEFT LoRA
// adapter (rank_pattern = the heads' rank sums, alpha_pattern keeping lora_alpha / r, the
// off-block zeros written) that peftc's own loader reloads to the trained logits, merged
// too; the real CLI refuses a budget below the minimum, naming the key.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runGraph } from '../../src/backends/cpu/index.ts';
import { runTrain } from '../../src/cli/commands/train.ts';
import { SafetensorsFile } from '../../src/io/safetensors/file.ts';
import { LayeredWeightStore, MapWeightStore } from '../../src/ir/weights.ts';
import { loadRecipe, mergeAdapters, recipePipeline } from '../../src/methods/index.ts';
import { maloraAllocation, maloraOptions } from '../../src/methods/malora/index.ts';
import { attachPeftAdapter } from '../../src/models/adapters.ts';
import { loadModel, modelGraph } from '../../src/models/llama/index.ts';
import { phasePasses, runPipeline } from '../../src/passes/index.ts';
import { loadCheckpoint } from '../../src/train/checkpoint/checkpoint.ts';
import { peftc } from '../cli/run-cli.ts';

const RECIPE = 'examples/recipes/malora-tiny.json';
const MODEL = 'examples/models/tiny-llama';
const dir = mkdtempSync(join(tmpdir(), 'peftc-malora-'));
const tokens = join(dir, 'tokens.json');
const row = [256, ...Array.from(Buffer.from('the cat sat on the mat. '.repeat(3)))].slice(0, 33);
writeFileSync(tokens, JSON.stringify(Array.from({ length: 12 }, () => row)));
const quiet = { write: () => true, isTTY: false };
const out = join(dir, 'run');

describe('malora on the bundled model', () => {
  it('trains (cpu and webgpu, same eval loss), lowers the eval loss, saves plain PEFT LoRA within the budget', async () => {
    const train = (backend: 'cpu' | 'webgpu') =>
      runTrain(
        {
          model: MODEL,
          recipe: RECIPE,
          tokens,
          out: backend === 'cpu' ? out : join(dir, backend),
          batch: 2,
          seq: 32,
          backend,
          plot: false,
          evalEvery: 12,
        },
        quiet as never,
      );
    const r = await train('cpu');
    const gpu = await train('webgpu');
    for (const x of [r, gpu]) expect(x.evalLosses.at(-1)!.loss).toBeLessThan(x.evalLosses[0].loss);
    expect(Math.abs(gpu.evalLosses.at(-1)!.loss - r.evalLosses.at(-1)!.loss)).toBeLessThan(2e-3);
    const cfg = JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8'));
    expect(cfg).toMatchObject({ peft_type: 'LORA', r: 4, lora_alpha: 16 });
    const model = loadModel(MODEL);
    const { graph } = modelGraph(model, { batch: 1, seq: 8 });
    const { method: _, ...entry } = JSON.parse(readFileSync(RECIPE, 'utf8')).methods[0];
    const alloc = maloraAllocation(graph, maloraOptions.parse(entry));
    expect(alloc.params).toBeLessThanOrEqual(16384);
    const st = SafetensorsFile.open(join(out, 'adapter_model.safetensors'));
    let nonzero = 0;
    for (const m of alloc.modules) {
      const R = m.ranks.reduce((s, x) => s + x, 0);
      expect(cfg.rank_pattern[m.module]).toBe(R);
      expect(cfg.alpha_pattern[m.module]).toBeCloseTo((16 * R) / 4, 12);
      const A = st.read(`base_model.model.${m.module}.lora_A.weight`);
      const B = st.read(`base_model.model.${m.module}.lora_B.weight`);
      expect([A.shape, B.shape]).toEqual([
        [R, m.inF],
        [m.outF, R],
      ]);
      nonzero += [...A.data, ...B.data].filter((v) => v !== 0).length;
    }
    // The file's nonzeros are at most the free params (the off-block entries are exact zeros).
    expect(nonzero).toBeLessThanOrEqual(alloc.params);
    expect(nonzero).toBeGreaterThan(alloc.params * 0.9);
    // q_proj's first head weighs 2: it gets more rank than the others.
    const q = alloc.modules.find((m) => m.module.endsWith('0.self_attn.q_proj'))!;
    expect(q.ranks[0]).toBeGreaterThan(q.ranks[1]);
  });

  it("the saved adapter reloads through peftc's LoRA loader to the trained logits; merged too", () => {
    const model = loadModel(MODEL);
    const base = modelGraph(model, { batch: 1, seq: 12 }, { loss: false, logits: true });
    const applied = runPipeline(base.graph, recipePipeline(loadRecipe(RECIPE)), {
      weights: base.weights,
      log: () => {},
    });
    const ckpt = loadCheckpoint(join(out, 'checkpoint-12'));
    const trainedW = new LayeredWeightStore([new MapWeightStore(ckpt.params), applied.weights!]);
    const feeds = {
      input_ids: { dtype: 'i32' as const, shape: [1, 12], data: Int32Array.from(row.slice(0, 12)) },
    };
    const serve = (g: typeof base.graph) => runPipeline(g, phasePasses('serve'), { log: () => {} }).graph;
    const trained = runGraph(serve(applied.graph), feeds, trainedW).logits.data;
    const att = attachPeftAdapter(base.graph, base.weights, out);
    const reloaded = runGraph(serve(att.graph), feeds, att.weights).logits.data;
    const merged = mergeAdapters(att.graph, att.weights);
    const mergedLogits = runGraph(serve(merged.graph), feeds, merged.weights!).logits.data;
    const base0 = runGraph(serve(base.graph), feeds, base.weights).logits.data;
    let worst = 0;
    let worstMerged = 0;
    let moved = 0;
    for (let i = 0; i < trained.length; i++) {
      worst = Math.max(worst, Math.abs(trained[i] - reloaded[i]));
      worstMerged = Math.max(worstMerged, Math.abs(trained[i] - mergedLogits[i]));
      moved = Math.max(moved, Math.abs(trained[i] - base0[i]));
    }
    expect(moved).toBeGreaterThan(0.1);
    expect(worst).toBeLessThan(1e-5);
    expect(worstMerged).toBeLessThan(1e-4);
  });

  it('peftc train (real CLI) refuses a budget below the minimum, naming the key and the minimum', async () => {
    const recipe = JSON.parse(readFileSync(RECIPE, 'utf8'));
    recipe.methods[0].budget = 500;
    const file = join(dir, 'small.json');
    writeFileSync(file, JSON.stringify(recipe));
    const r = peftc(
      `train --model ${MODEL} --recipe ${file} --tokens ${tokens} --out ${join(dir, 'no')} --steps 1 --backend cpu`.split(
        ' ',
      ),
    );
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(
      /malora adapter 'default': "budget" 500 is below the 3072 parameters that r_min 1 on every unit \(30\) needs/,
    );
  });
});
