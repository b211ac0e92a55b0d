// LoRA+ as PEFT's create_loraplus_optimizer builds its groups (src/methods/loraplus): every
// trainable param of a LLaMA model with its lr and weight decay, equal to what PEFT 0.21
// built (golden fixture); the rules on synthetic names (embedding LoRA, bias -> no decay,
// 1-D -> B side); recipe order and a missing adapter as errors; qlora + lora + loraplus trains.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runTrain } from '../../src/cli/commands/train.ts';
import type { Graph } from '../../src/ir/graph.ts';
import { parseRecipe, type RecipeInput } from '../../src/methods/index.ts';
import { loraplusGroups, loraplusOptions } from '../../src/methods/loraplus/index.ts';
import { buildLlama, presetConfig } from '../../src/models/llama/index.ts';
import { unfuseElementwise } from '../../src/passes/fuse/elementwise.ts';
import { runPipeline } from '../../src/passes/index.ts';
import { trainableNames } from '../../src/passes/phases.ts';
import { runPipelines, trainSettings } from '../../src/train/setup.ts';
import { peftc } from '../cli/run-cli.ts';

function applyMethods(input: RecipeInput) {
  const recipe = parseRecipe(input);
  const g = buildLlama(presetConfig('tiny'), { batch: 1, seq: 4 }, { loss: true });
  return { recipe, applied: runPipeline(g, runPipelines(recipe).methods, { log: () => {} }).graph };
}

/** name -> [lr, weight_decay] of every trainable param, as the optimizer pass will get them. */
function lrTable(input: RecipeInput): Record<string, [number, number]> {
  const { recipe, applied } = applyMethods(input);
  const shapes = new Map(applied.params().map((p) => [String(p.attrs.name), p.type.shape]));
  const groups = trainSettings(recipe).groups!(trainableNames(applied), (n) => shapes.get(n)!);
  const out: Record<string, [number, number]> = {};
  for (const gr of groups)
    for (const n of gr.params) out[n] = [gr.lrScale * recipe.optimizer.lr, gr.weightDecay];
  return out;
}

/**
 * name -> the factors by which the compiled train step scales its `lr` input on the way to
 * that param's update (read from the graph: `scale` nodes on `lr` among the ancestors of
 * `assign:<param>`); [] = the optimizer's lr itself.
 */
function lrFactorsInGraph(step: Graph, params: readonly string[]): Record<string, number[]> {
  const lr = step.inputs().find((n) => n.attrs.name === 'lr')!;
  const byId = new Map(step.nodes.map((n) => [n.id, n]));
  const out: Record<string, number[]> = {};
  for (const name of params) {
    const o = step.outputs.find((x) => x.name === `assign:${name}`)!;
    const seen = new Set<number>();
    const todo = [o.id];
    const factors = new Set<number>();
    while (todo.length) {
      const n = byId.get(todo.pop()!)!;
      if (seen.has(n.id)) continue;
      seen.add(n.id);
      if (n.op === 'scale' && n.inputs[0] === lr.id) factors.add(Number(n.attrs.factor));
      todo.push(...n.inputs);
    }
    out[name] = [...factors];
  }
  return out;
}

const lora = {
  method: 'lora',
  r: 2,
  lora_alpha: 4,
  target_modules: ['q_proj', 'v_proj', 'embed_tokens'],
  modules_to_save: ['norm', 'lm_head'],
};

describe('loraplus param groups (PEFT create_loraplus_optimizer)', () => {
  it('lists every trainable param of a LLaMA model with its lr and weight decay', () => {
    const t = lrTable({
      methods: [
        lora,
        {
          method: 'loraplus',
          loraplus_lr_ratio: 16,
          loraplus_lr_embedding: 1e-6,
          loraplus_weight_decay: 0.05,
        },
      ],
      // The optimizer's own weight decay is not used: PEFT sets one per group.
      optimizer: { type: 'adamw', lr: 1e-3, weight_decay: 0.01 },
    });
    const A: [number, number] = [1e-3, 0.05];
    const B: [number, number] = [16e-3, 0.05];
    const E: [number, number] = [1e-6, 0.05];
    const layer = (i: number) => ({
      [`model.layers.${i}.input_layernorm.modules_to_save.default.weight`]: B,
      [`model.layers.${i}.post_attention_layernorm.modules_to_save.default.weight`]: B,
      [`model.layers.${i}.self_attn.q_proj.lora_A.default.weight`]: A,
      [`model.layers.${i}.self_attn.q_proj.lora_B.default.weight`]: B,
      [`model.layers.${i}.self_attn.v_proj.lora_A.default.weight`]: A,
      [`model.layers.${i}.self_attn.v_proj.lora_B.default.weight`]: B,
    });
    expect(t).toEqual({
      // The LoRA params of an embedding layer, B included, at loraplus_lr_embedding.
      'model.embed_tokens.lora_embedding_A.default': E,
      'model.embed_tokens.lora_embedding_B.default': E,
      ...layer(0),
      ...layer(1),
      // 1-D (the final norm) -> B side, with decay (RMSNorm is not nn.LayerNorm); 2-D copy -> A.
      'model.norm.modules_to_save.default.weight': B,
      'lm_head.modules_to_save.default.weight': A,
    });
  });

  it('equals the groups PEFT 0.21 builds (test/fixtures/peft/loraplus-groups.json, scripts/reference)', () => {
    const fx = JSON.parse(
      readFileSync(join(import.meta.dirname, '../fixtures/peft/loraplus-groups.json'), 'utf8'),
    ) as {
      lora_config: Record<string, unknown>;
      optimizer: { lr: number; weight_decay: number };
      loraplus: Record<string, number>;
      groups: { lr: number; weight_decay: number; params: string[] }[];
    };
    const t = lrTable({
      methods: [
        { method: 'lora', ...fx.lora_config },
        { method: 'loraplus', ...fx.loraplus },
      ],
      optimizer: { type: 'adamw', ...fx.optimizer },
    });
    const peft: Record<string, [number, number]> = {};
    for (const g of fx.groups)
      for (const n of g.params) peft[n.replace(/^base_model\.model\./, '')] = [g.lr, g.weight_decay];
    expect(Object.keys(t).sort()).toEqual(Object.keys(peft).sort());
    for (const [n, [lr, wd]] of Object.entries(peft)) {
      expect(t[n][0], n).toBeCloseTo(lr, 12);
      expect(t[n][1], n).toBe(wd);
    }
  });

  it('the compiled train step updates each param at its group lr (read from the graph)', () => {
    // Decay 0, so that the only scales of `lr` in the graph are the groups' lr factors.
    const input: RecipeInput = {
      methods: [lora, { method: 'loraplus', loraplus_lr_ratio: 16, loraplus_lr_embedding: 1e-6 }],
      optimizer: { type: 'adamw', lr: 1e-3, weight_decay: 0 },
    };
    const { recipe, applied } = applyMethods(input);
    const step = unfuseElementwise(runPipeline(applied, runPipelines(recipe).train, { log: () => {} }).graph);
    const table = lrTable(input);
    const factors = lrFactorsInGraph(step, Object.keys(table));
    for (const [name, [lr]] of Object.entries(table)) {
      const f = factors[name];
      expect(f.length, name).toBeLessThanOrEqual(1);
      expect((f[0] ?? 1) * 1e-3, name).toBeCloseTo(lr, 12);
    }
    // All three lrs occur: A (x1), B (x16), embedding (1e-6 / 1e-3).
    expect(new Set(Object.values(factors).map((f) => f[0] ?? 1))).toEqual(new Set([1, 16, 1e-6 / 1e-3]));
  });

  it('splits by name and rank exactly as PEFT: embedding LoRA; lora_B or 1-D -> lr * ratio; "bias" there -> no decay', () => {
    const shapes: Record<string, number[]> = {
      'm.q.lora_A.default.weight': [2, 8],
      'm.q.lora_B.default.weight': [8, 2],
      'm.q.bias': [8],
      'm.norm.weight': [8],
      'm.e.lora_embedding_B.default': [8, 2],
      'm.head.weight': [4, 8],
    };
    const o = loraplusOptions.parse({ loraplus_lr_ratio: 4, loraplus_weight_decay: 0.1 });
    const groups = loraplusGroups(Object.keys(shapes), o, {
      shapeOf: (n) => shapes[n],
      lr: 0.5,
      weightDecay: 0.3,
    });
    expect(groups).toEqual([
      {
        name: 'loraplus_A',
        params: ['m.q.lora_A.default.weight', 'm.head.weight'],
        lr: 0.5,
        weight_decay: 0.1,
      },
      { name: 'loraplus_embedding', params: ['m.e.lora_embedding_B.default'], lr: 1e-6, weight_decay: 0.1 },
      {
        name: 'loraplus_B',
        params: ['m.q.lora_B.default.weight', 'm.norm.weight'],
        lr: 2,
        weight_decay: 0.1,
      },
      { name: 'loraplus_B_no_decay', params: ['m.q.bias'], lr: 2, weight_decay: 0 },
    ]);
  });

  it('recipe errors: ratio required, loraplus before lora, no adapter to regroup', () => {
    expect(() => parseRecipe({ methods: [lora, { method: 'loraplus' }] })).toThrow(
      /methods\[1\]\.loraplus_lr_ratio/,
    );
    expect(() => parseRecipe({ methods: [{ method: 'loraplus', loraplus_lr_ratio: 16 }, lora] })).toThrow(
      /loraplus regroups the params of the adapters before it/,
    );
    expect(() =>
      lrTable({
        methods: [{ method: 'loraplus', loraplus_lr_ratio: 16 }],
        optimizer: { type: 'adamw', lr: 1e-3 },
        // The model's own weights trainable, but no LoRA param among them.
        param_groups: [],
      }),
    ).toThrow(/loraplus: no trainable LoRA param to regroup|no trainable parameter/);
  });

  it('qlora + lora + loraplus trains on the bundled model (cpu) and lowers the eval loss', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'peftc-loraplus-'));
    const tokens = join(dir, 'tokens.json');
    // Byte-level rows of the bundled vocabulary (BOS 256), repeated text the model can fit.
    const row = [256, ...Array.from(Buffer.from('the cat sat on the mat. '.repeat(3)))].slice(0, 33);
    writeFileSync(tokens, JSON.stringify(Array.from({ length: 12 }, () => row)));
    let text = '';
    const stream = {
      write: (x: string) => {
        text += x;
        return true;
      },
      isTTY: false,
    };
    const r = await runTrain(
      {
        model: 'examples/models/tiny-llama',
        recipe: 'examples/recipes/qlora-loraplus-tiny.json',
        tokens,
        out: join(dir, 'run'),
        steps: 8,
        batch: 2,
        seq: 32,
        backend: 'cpu',
        plot: false,
        evalEvery: 8,
      },
      stream as never,
    );
    const first = r.evalLosses[0].loss;
    const last = r.evalLosses[r.evalLosses.length - 1].loss;
    expect(last).toBeLessThan(first);
    // The groups the run trained with: lora_A at the recipe's lr 5e-4, lora_B at 16 x that
    // (LLaMA has no biases and lora adds no 1-D param; 7 target modules x 2 layers each).
    expect(r.groups.map((g) => [g.name, g.lr, g.weightDecay, g.params.length])).toEqual([
      ['loraplus_A', 5e-4, 0, 14],
      ['loraplus_B', 8e-3, 0, 14],
    ]);
    expect(r.groups[0].params.every((n) => n.includes('.lora_A.'))).toBe(true);
    expect(r.groups[1].params.every((n) => n.includes('.lora_B.'))).toBe(true);
    expect(text).toContain('optimizer group loraplus_A: lr 0.0005, weight_decay 0, 14 params\n');
    expect(text).toContain('optimizer group loraplus_B: lr 0.008 (16 x 0.0005), weight_decay 0, 14 params\n');
    expect(r.adapterDirs.length).toBe(1);
  });

  it('peftc train (real CLI): the order error names the recipe file; a run logs its groups', () => {
    const dir = mkdtempSync(join(tmpdir(), 'peftc-loraplus-cli-'));
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, JSON.stringify({ methods: [{ method: 'loraplus', loraplus_lr_ratio: 16 }, lora] }));
    const e = peftc(['train', '--model', 'tiny', '--recipe', bad, '--tokens', 'x.json', '--out', dir]);
    expect(e.code).toBe(1);
    expect(e.stderr).toContain(`${bad}: methods[1]: 'lora' conflicts with methods[0] 'loraplus'`);
    expect(e.stderr).toContain('move the loraplus entry after it');
    const tokens = join(dir, 'tokens.json');
    writeFileSync(
      tokens,
      JSON.stringify(Array.from({ length: 4 }, (_, i) => [256, ...Array(16).fill(97 + i)])),
    );
    const r = peftc([
      'train',
      '--model',
      'examples/models/tiny-llama',
      '--recipe',
      'examples/recipes/qlora-loraplus-tiny.json',
      '--tokens',
      tokens,
      '--out',
      join(dir, 'run'),
      '--steps',
      '1',
      '--batch',
      '2',
      '--seq',
      '16',
      '--eval-fraction',
      '0',
      '--backend',
      'cpu',
      '--no-plot',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const lines = (r.stdout + r.stderr).split('\n').filter((l) => l.startsWith('optimizer group'));
    expect(lines).toEqual([
      'optimizer group loraplus_A: lr 0.0005, weight_decay 0, 14 params',
      'optimizer group loraplus_B: lr 0.008 (16 x 0.0005), weight_decay 0, 14 params',
    ]);
  });
});
