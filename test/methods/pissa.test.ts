// PiSSA / OLoRA through the LoRA method (lora/residual-init.ts): the init leaves the
// outputs unchanged; a trained adapter saved converted to plain LoRA reproduces the
// trained outputs on the ORIGINAL weights; saved in residual form it reloads (the residual
// recomputed, as PEFT's loader does) to the same outputs; what cannot be done is refused.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { runGraph } from '../../src/backends/cpu/index.ts';
import { runTrain } from '../../src/cli/commands/train.ts';
import { writePeftAdapter } from '../../src/io/peft/index.ts';
import type { Graph } from '../../src/ir/graph.ts';
import { tensor } from '../../src/ir/tensor.ts';
import { bindParams, LayeredWeightStore, MapWeightStore, type WeightStore } from '../../src/ir/weights.ts';
import { parseRecipe, recipePipeline } from '../../src/methods/index.ts';
import { injectLora, loraOptions, loraPeftAdapter } from '../../src/methods/lora/index.ts';
import { quantizeLinears } from '../../src/methods/qlora/index.ts';
import { qloraOptions } from '../../src/methods/qlora/options.ts';
import { attachPeftAdapter } from '../../src/models/adapters.ts';
import { buildLlama, loadModel, modelGraph, presetConfig } from '../../src/models/llama/index.ts';
import { runPipeline } from '../../src/passes/index.ts';
import { loadCheckpoint } from '../../src/train/checkpoint/checkpoint.ts';
import { Rng } from '../../src/util/rng.ts';
import { randomFeeds, randomWeights } from '../arbitrary/graphs.ts';
import { testModel } from './properties.ts';

const y = (g: Graph, feeds: Record<string, ReturnType<typeof tensor>>, w: WeightStore) =>
  Array.from(runGraph(g, feeds, w, { precision: 'f64' }).y.data);

function maxDiff(a: number[], b: number[]): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]) / (1 + Math.abs(a[i])));
  return m;
}

const MODEL = 'examples/models/tiny-llama';
const INITS = ['pissa', 'olora', 'pissa_niter_4'] as const;
const shape = { layers: 1, dim: 6, hidden: 5, seq: 2, bias: false };

function setup(init: string, seed: number, extra: Record<string, unknown> = {}) {
  const base = testModel(shape);
  const baseW = randomWeights(base, seed);
  const o = loraOptions.parse({
    r: 2,
    lora_alpha: 4,
    target_modules: ['q_proj', 'v_proj', 'down_proj'],
    init_lora_weights: init,
    ...extra,
  });
  const inj = injectLora(base, o, baseW);
  const w = bindParams(inj.graph, inj.weights!, seed);
  return { base, baseW, o, g: inj.graph, w, methodWeights: inj.weights!, feeds: randomFeeds(base, seed) };
}

/** "Training": every A and B moved by a random step. */
function trained(s: ReturnType<typeof setup>, seed: number) {
  const w = bindParams(s.g, s.w, seed);
  const rng = new Rng(seed + 11);
  for (const p of s.g.params().filter((p) => p.attrs.role === 'trainable')) {
    const name = String(p.attrs.name);
    const t = w.get(name)!;
    w.set(
      name,
      tensor(
        'f32',
        t.shape,
        Float64Array.from(t.data, (v) => v + 0.1 * rng.normal()),
      ),
    );
  }
  return w;
}

function saveAndAttach(s: ReturnType<typeof setup>, w: WeightStore, onto: Graph, ontoW: WeightStore) {
  const dir = mkdtempSync(join(tmpdir(), 'peftc-pissa-'));
  const a = loraPeftAdapter(s.g, s.o, (n) => w.get(n) ?? s.methodWeights.get(n)!, null);
  writePeftAdapter(dir, { config: a.config, weights: a.weights, adapterName: a.adapterName });
  return { ...attachPeftAdapter(onto, ontoW, dir), config: a.config };
}

describe('PiSSA / OLoRA inits', () => {
  for (const init of INITS) {
    it(`${init}: the init leaves the outputs unchanged; the base weights become the residual`, () => {
      fc.assert(
        fc.property(fc.nat(1000), (seed) => {
          const s = setup(init, seed);
          const yb = y(s.base, s.feeds, s.baseW);
          expect(maxDiff(yb, y(s.g, s.feeds, s.w))).toBeLessThan(1e-5);
          const W = 'model.layers.0.self_attn.q_proj.weight';
          expect(maxDiff(Array.from(s.baseW.get(W)!.data), Array.from(s.w.get(W)!.data))).toBeGreaterThan(
            1e-3,
          );
        }),
        { numRuns: 8 },
      );
    });

    it(`${init}: trained, saved as plain LoRA (rank 2r) on the original weights, gives the trained outputs`, () => {
      const s = setup(init, 3);
      const w = trained(s, 3);
      const want = y(s.g, s.feeds, w);
      expect(maxDiff(y(s.base, s.feeds, s.baseW), want)).toBeGreaterThan(1e-3);
      const att = saveAndAttach(s, w, s.base, s.baseW);
      expect(att.config).toMatchObject({ r: 4, lora_alpha: 8, init_lora_weights: true });
      expect(maxDiff(want, y(att.graph, s.feeds, att.weights))).toBeLessThan(1e-5);
    });

    it(`${init}: saved in residual form, reloads on the original weights (residual recomputed) to the trained outputs`, () => {
      const s = setup(init, 4, { save_as: 'residual' });
      const w = trained(s, 4);
      const att = saveAndAttach(s, w, s.base, s.baseW);
      expect(att.config).toMatchObject({ r: 2, lora_alpha: 4, init_lora_weights: init });
      // pissa_niter is randomized: the loader's residual is seeded by the weight name, as the trainer's.
      expect(maxDiff(y(s.g, s.feeds, w), y(att.graph, s.feeds, att.weights))).toBeLessThan(1e-5);
    });
  }

  it('rsLoRA: the converted adapter keeps the scale (alpha x sqrt(2), as PEFT)', () => {
    const s = setup('pissa', 5, { use_rslora: true });
    const w = trained(s, 5);
    const att = saveAndAttach(s, w, s.base, s.baseW);
    expect(att.config.lora_alpha).toBeCloseTo(4 * Math.SQRT2, 12);
    expect(maxDiff(y(s.g, s.feeds, w), y(att.graph, s.feeds, att.weights))).toBeLessThan(1e-5);
  });

  it('refuses what it cannot do, naming the module or the recipe field', () => {
    expect(
      loraOptions.safeParse({ init_lora_weights: 'pissa', use_dora: true }).error?.issues[0].message,
    ).toMatch(/saving as plain LoRA .* would drop the DoRA magnitudes; set "save_as": "residual"/);
    expect(
      loraOptions.safeParse({ init_lora_weights: 'pissa', use_dora: true, save_as: 'residual' }).success,
    ).toBe(true);
    expect(loraOptions.safeParse({ init_lora_weights: 'pissa_niter_x' }).success).toBe(false);
    const llama = buildLlama(presetConfig('tiny'), { batch: 1, seq: 2 });
    const lw = randomWeights(llama, 1);
    expect(() =>
      injectLora(
        llama,
        loraOptions.parse({ init_lora_weights: 'pissa', target_modules: ['embed_tokens'] }),
        lw,
      ),
    ).toThrow(
      /init_lora_weights "pissa" on model\.embed_tokens: PiSSA\/OLoRA initialise linear modules only/,
    );
    const q = quantizeLinears(llama, qloraOptions.parse({}), lw);
    expect(() =>
      injectLora(
        q.graph,
        loraOptions.parse({ init_lora_weights: 'olora', target_modules: ['q_proj'] }),
        q.weights,
      ),
    ).toThrow(
      /init_lora_weights "olora" on model\.layers\.0\.self_attn\.q_proj: .*4-bit base.*not supported yet/,
    );
  });

  it('peftc train with a PiSSA recipe saves plain LoRA that reproduces the trained logits on the untouched model', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'peftc-pissa-train-'));
    const tokens = join(dir, 'tokens.json');
    const row = [256, ...Array.from(Buffer.from('the cat sat on the mat. '.repeat(3)))].slice(0, 33);
    writeFileSync(tokens, JSON.stringify(Array.from({ length: 12 }, () => row)));
    const recipeFile = join(dir, 'pissa.json');
    const recipeJson = {
      methods: [
        {
          method: 'lora',
          r: 4,
          lora_alpha: 8,
          target_modules: ['q_proj', 'v_proj', 'down_proj'],
          init_lora_weights: 'pissa',
        },
      ],
      optimizer: { type: 'adamw', lr: 3e-3 },
    };
    writeFileSync(recipeFile, JSON.stringify(recipeJson));
    const out = join(dir, 'run');
    const r = await runTrain(
      {
        model: MODEL,
        recipe: recipeFile,
        tokens,
        out,
        steps: 6,
        batch: 2,
        seq: 32,
        backend: 'cpu',
        plot: false,
        evalEvery: 6,
      },
      { write: () => true, isTTY: false } as never,
    );
    expect(r.evalLosses.at(-1)!.loss).toBeLessThan(r.evalLosses[0].loss);
    expect(JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8'))).toMatchObject({
      r: 8,
      lora_alpha: 16,
      init_lora_weights: true,
    });
    // The trained model: the recipe on the base (residual weights), the checkpoint's A and B.
    const model = loadModel(MODEL);
    const base = modelGraph(model, { batch: 1, seq: 12 }, { loss: false, logits: true });
    const applied = runPipeline(base.graph, recipePipeline(parseRecipe(recipeJson)), {
      weights: base.weights,
      log: () => {},
    });
    const ckpt = loadCheckpoint(join(out, 'checkpoint-6'));
    const feeds = { input_ids: tensor('i32', [1, 12], row.slice(0, 12)) };
    const want = runGraph(
      applied.graph,
      feeds,
      new LayeredWeightStore([new MapWeightStore(ckpt.params), applied.weights!]),
    ).logits.data;
    // The saved adapter on the ORIGINAL weights, as `peftc logits --adapter` attaches it.
    const att = attachPeftAdapter(base.graph, base.weights, out);
    const got = runGraph(att.graph, feeds, att.weights).logits.data;
    expect(maxDiff(Array.from(want), Array.from(got))).toBeLessThan(1e-5);
    // --init-adapter takes the converted adapter (plain LoRA, rank 2r) as a starting point:
    // the new run's step-0 eval is the trained model's last one.
    const again = join(dir, 'again.json');
    writeFileSync(
      again,
      JSON.stringify({
        ...recipeJson,
        methods: [
          { method: 'lora', r: 8, lora_alpha: 16, target_modules: ['q_proj', 'v_proj', 'down_proj'] },
        ],
      }),
    );
    const r2 = await runTrain(
      {
        model: MODEL,
        recipe: again,
        tokens,
        out: join(dir, 'run2'),
        steps: 1,
        batch: 2,
        seq: 32,
        backend: 'cpu',
        plot: false,
        initAdapter: out,
      },
      { write: () => true, isTTY: false } as never,
    );
    expect(Math.abs(r2.evalLosses[0].loss - r.evalLosses.at(-1)!.loss)).toBeLessThan(1e-4);
  });
});
