// examples/recipes/adalora-tiny.json on the bundled model: trains on cpu and webgpu (same
// losses), lowers the eval loss, logs the budget each step down to the target, saves a
// PEFT ADALORA adapter (rank_pattern masks, tensors cut to the kept triplets, no ranknum)
// that reloads to the trained model's logits, merged or not; `peftc logits --adapter` and
// `peftc train --init-adapter` take it (real CLI).
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runGraph } from '../../src/backends/cpu/index.ts';
import { runTrain } from '../../src/cli/commands/train.ts';
import { SafetensorsFile } from '../../src/io/safetensors/file.ts';
import { LayeredWeightStore, MapWeightStore } from '../../src/ir/weights.ts';
import { loadRecipe, mergeAdapters, recipePipeline } from '../../src/methods/index.ts';
import { attachPeftAdapter } from '../../src/models/adapters.ts';
import { loadModel, modelGraph } from '../../src/models/llama/index.ts';
import { phasePasses, runPipeline } from '../../src/passes/index.ts';
import { loadCheckpoint } from '../../src/train/checkpoint/checkpoint.ts';
import { cli, peftc } from '../cli/run-cli.ts';

const RECIPE = 'examples/recipes/adalora-tiny.json';
const MODEL = 'examples/models/tiny-llama';
const dir = mkdtempSync(join(tmpdir(), 'peftc-adalora-'));
const tokens = join(dir, 'tokens.json');
const row = [256, ...Array.from(Buffer.from('the cat sat on the mat. '.repeat(3)))].slice(0, 33);
writeFileSync(tokens, JSON.stringify(Array.from({ length: 12 }, () => row)));
const quiet = { write: () => true, isTTY: false };

async function train(backend: 'cpu' | 'webgpu') {
  const out = join(dir, `run-${backend}`);
  const r = await runTrain(
    { model: MODEL, recipe: RECIPE, tokens, out, batch: 2, seq: 32, backend, plot: false, evalEvery: 12 },
    quiet as never,
  );
  const log = readFileSync(join(out, 'log.jsonl'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
  return { r, out, log };
}

describe('adalora on the bundled model', () => {
  let cpuOut = '';
  it('trains on cpu and webgpu with the same losses, lowers the eval loss, logs the budget, saves PEFT ADALORA', async () => {
    const cpu = await train('cpu');
    const gpu = await train('webgpu');
    cpuOut = cpu.out;
    for (const { r } of [cpu, gpu]) expect(r.evalLosses.at(-1)!.loss).toBeLessThan(r.evalLosses[0].loss);
    const steps = cpu.log.filter((x) => x.loss !== undefined);
    expect(steps).toHaveLength(12);
    for (let i = 0; i < steps.length; i++)
      expect(Math.abs(steps[i].loss - gpu.log.filter((x) => x.loss !== undefined)[i].loss)).toBeLessThan(
        2e-3,
      );
    // 7 targets x 2 layers x init_r 8 = 112 triplets; target_r 4: 56. tinit 2, total_step 12, tfinal 2.
    expect(steps.map((x) => x.adalora_budget)).toEqual([112, 112, 112, 93, 79, 69, 63, 58, 56, 56, 56, 56]);
    const cfg = JSON.parse(readFileSync(join(cpu.out, 'adapter_config.json'), 'utf8'));
    expect(cfg).toMatchObject({
      peft_type: 'ADALORA',
      init_r: 8,
      target_r: 4,
      total_step: 12,
      lora_alpha: 16,
    });
    const masks = Object.entries(cfg.rank_pattern as Record<string, boolean[]>);
    expect(masks).toHaveLength(14);
    expect(masks.every(([k, m]) => k.endsWith('.lora_E') && m.length === 8)).toBe(true);
    // The final allocation keeps the target budget; the file holds just the kept triplets.
    expect(masks.flatMap(([, m]) => m).filter(Boolean).length).toBe(56);
    const st = SafetensorsFile.open(join(cpu.out, 'adapter_model.safetensors'));
    expect(st.keys().some((k) => k.includes('ranknum') || k.endsWith('.weight'))).toBe(false);
    for (const [k, m] of masks) {
      const M = `base_model.model.${k.slice(0, -'.lora_E'.length)}`;
      const r = m.filter(Boolean).length;
      expect([
        st.info(`${M}.lora_A`).shape[0],
        st.info(`${M}.lora_E`).shape,
        st.info(`${M}.lora_B`).shape[1],
      ]).toEqual([r, [r, 1], r]);
    }
  });

  it('the saved adapter reloads to the logits of the trained graph; merged too', () => {
    const model = loadModel(MODEL);
    const shape = { batch: 1, seq: 12 };
    const base = modelGraph(model, shape, { loss: false, logits: true });
    const recipe = loadRecipe(RECIPE);
    const feeds = {
      input_ids: { dtype: 'i32' as const, shape: [1, 12], data: Int32Array.from(row.slice(0, 12)) },
    };
    const applied = runPipeline(base.graph, recipePipeline(recipe), { weights: base.weights, log: () => {} });
    const ckpt = loadCheckpoint(join(cpuOut, 'checkpoint-12'));
    const trainedW = new LayeredWeightStore([new MapWeightStore(ckpt.params), applied.weights!]);
    const serve = (g: typeof base.graph) => runPipeline(g, phasePasses('serve'), { log: () => {} }).graph;
    const trained = runGraph(serve(applied.graph), feeds, trainedW).logits.data;
    const att = attachPeftAdapter(base.graph, base.weights, cpuOut);
    const reloaded = runGraph(serve(att.graph), feeds, att.weights).logits.data;
    const merged = mergeAdapters(att.graph, att.weights);
    const mergedLogits = runGraph(serve(merged.graph), feeds, merged.weights!).logits.data;
    let worst = 0;
    let worstMerged = 0;
    for (let i = 0; i < trained.length; i++) {
      worst = Math.max(worst, Math.abs(trained[i] - reloaded[i]));
      worstMerged = Math.max(worstMerged, Math.abs(trained[i] - mergedLogits[i]));
    }
    expect(worst).toBeLessThan(1e-5);
    expect(worstMerged).toBeLessThan(1e-4);
  });

  it('a resumed run keeps the allocation (the session state rides in the checkpoint)', async () => {
    const out = join(dir, 'resumed');
    const run = (steps: number, resume: boolean) =>
      runTrain(
        {
          model: MODEL,
          recipe: RECIPE,
          tokens,
          out,
          steps,
          batch: 2,
          seq: 32,
          backend: 'cpu',
          plot: false,
          resume,
        },
        quiet as never,
      );
    // Step 11 makes the final allocation; step 12, after the resume, re-applies it from the checkpoint.
    await run(11, false);
    await run(12, true);
    const cfg = (d: string) => JSON.parse(readFileSync(join(d, 'adapter_config.json'), 'utf8'));
    expect(cfg(out).rank_pattern).toEqual(cfg(cpuOut).rank_pattern);
    const st = (d: string) => SafetensorsFile.open(join(d, 'adapter_model.safetensors'));
    const key = `base_model.model.model.layers.0.self_attn.q_proj.lora_E`;
    expect([...st(out).read(key).data]).toEqual([...st(cpuOut).read(key).data]);
  });

  it('composes: qlora, then adalora, then loraplus (E in the A group, as PEFT groups a 2-D lora_E) trains', async () => {
    const recipe = JSON.parse(readFileSync(RECIPE, 'utf8'));
    recipe.methods = [
      { method: 'qlora', quant_type: 'nf4', blocksize: 64 },
      ...recipe.methods,
      { method: 'loraplus', loraplus_lr_ratio: 16 },
    ];
    const file = join(dir, 'composed.json');
    writeFileSync(file, JSON.stringify(recipe));
    const out = join(dir, 'composed');
    const r = await runTrain(
      { model: MODEL, recipe: file, tokens, out, steps: 5, batch: 2, seq: 32, backend: 'cpu', plot: false },
      quiet as never,
    );
    expect(r.evalLosses.at(-1)!.loss).toBeLessThan(r.evalLosses[0].loss);
    expect(r.groups.map((g) => [g.name, g.params.length])).toEqual([
      ['loraplus_A', 28],
      ['loraplus_B', 14],
    ]);
    expect(JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8')).peft_type).toBe('ADALORA');
  });

  it('refuses adalora with use_dora, naming the recipe and the reason (CLI)', async () => {
    const recipe = JSON.parse(readFileSync(RECIPE, 'utf8'));
    recipe.methods[0].use_dora = true;
    const file = join(dir, 'dora.json');
    writeFileSync(file, JSON.stringify(recipe));
    const r = await cli(
      `train --model ${MODEL} --recipe ${file} --tokens ${tokens} --out ${join(dir, 'no')} --steps 1 --backend cpu`.split(
        ' ',
      ),
    );
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(
      /dora\.json.*methods\[0\]\.use_dora: AdaLoRA cannot be combined with DoRA: PEFT refuses it/s,
    );
  });

  it('peftc logits --adapter and train --init-adapter take the AdaLoRA adapter (real CLI)', async () => {
    const logits = await peftc(
      `logits --model ${MODEL} --adapter ${cpuOut} --tokens ${tokens} --out ${join(dir, 'l.safetensors')} --backend cpu`.split(
        ' ',
      ),
    );
    expect(logits.stderr).toBe('');
    expect(logits.code).toBe(0);
    const again = await peftc(
      `train --model ${MODEL} --recipe ${RECIPE} --tokens ${tokens} --out ${join(dir, 'again')} --steps 1 --batch 2 --seq 32 --backend cpu --no-plot --init-adapter ${cpuOut}`.split(
        ' ',
      ),
    );
    expect(again.stderr).toBe('');
    expect(again.code).toBe(0);
    // It starts from the trained adapter, far below the first run's start. (Not at its end: the
    // orth penalty in the eval loss sees the dropped triplets' A rows and B columns as zeros.)
    const first = readFileSync(join(cpuOut, 'log.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    const start = JSON.parse(readFileSync(join(dir, 'again', 'log.jsonl'), 'utf8').split('\n')[0]);
    expect(start.eval_loss).toBeLessThan(first[0].eval_loss - 0.5);
  });
});
