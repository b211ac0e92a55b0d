// rank-rule on the bundled model (examples/models/tiny-llama, 2 layers): the allocation per
// module that binding the recipe writes into the lora entry (rank_pattern, alpha_pattern,
// rank 0 -> exclude_modules), the graph that lora then builds (shapes and scale per module
// = PEFT's alpha_m / r_m), errors at recipe time and on the model, and the composition with
// qlora, use_dora and loraplus in one recipe.
import { describe, expect, it } from 'vitest';
import type { Graph } from '../../src/ir/graph.ts';
import {
  bindRecipe,
  loadRecipe,
  parseRecipe,
  type Recipe,
  type RecipeInput,
  recipePipeline,
} from '../../src/methods/index.ts';
import { type LoraOptions, loraScale } from '../../src/methods/lora/options.ts';
import { modulePattern } from '../../src/methods/rank-rule/index.ts';
import { loadModel, modelGraph } from '../../src/models/llama/index.ts';
import { runPipeline } from '../../src/passes/index.ts';
import { prepareRun } from '../../src/train/setup.ts';

const MODEL = 'examples/models/tiny-llama';
const model = loadModel(MODEL);
const base = modelGraph(model, { batch: 1, seq: 8 }, { loss: true, logits: false });
const ALL = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];

function recipe(rule: Record<string, unknown>, lora: Record<string, unknown> = {}): Recipe {
  return parseRecipe({
    methods: [
      { method: 'rank-rule', ...rule },
      { method: 'lora', r: 8, lora_alpha: 16, target_modules: ALL, ...lora },
    ],
  } as RecipeInput);
}

const bound = (r: Recipe) => bindRecipe(r, base.graph);
const loraOf = (r: Recipe) => bound(r).recipe.methods[1].options as LoraOptions;

/** Rank and scale of each adapted module in the graph lora builds from the bound recipe. */
function adapted(r: Recipe): Map<string, { r: number; in: number; out: number }> {
  const g: Graph = runPipeline(base.graph, recipePipeline(bound(r).recipe), { log: () => {} }).graph;
  const out = new Map<string, { r: number; in: number; out: number }>();
  for (const p of g.params()) {
    const name = String(p.attrs.name);
    const m = /^(.*)\.lora_A\.default\.weight$/.exec(name);
    if (m) {
      const B = g.params().find((q) => q.attrs.name === `${m[1]}.lora_B.default.weight`)!;
      out.set(m[1], { r: p.type.shape[0], in: p.type.shape[1], out: B.type.shape[0] });
    }
  }
  return out;
}

describe('rank-rule allocation on the bundled model', () => {
  it('examples/recipes/rank-rule-tiny.json: a rank per module by kind and depth, alpha = 2 * rank', () => {
    const r = loadRecipe('examples/recipes/rank-rule-tiny.json');
    const { notes } = bound(r);
    const lora = loraOf(r);
    const want: Record<string, number> = {};
    for (const d of [0, 1])
      for (const k of ALL) {
        const path = `model.layers.${d}.${k.endsWith('proj') && ['gate_proj', 'up_proj', 'down_proj'].includes(k) ? 'mlp' : 'self_attn'}.${k}`;
        want[path] = k === 'q_proj' || k === 'v_proj' ? Math.min(16, 4 + 4 * d) : k === 'down_proj' ? 8 : 2;
      }
    expect(lora.rank_pattern).toEqual(want);
    expect(lora.alpha_pattern).toEqual(Object.fromEntries(Object.entries(want).map(([k, v]) => [k, 2 * v])));
    expect(lora.exclude_modules).toBeNull();
    // The graph lora builds has exactly those ranks; params = sum r (in + out).
    const got = adapted(r);
    expect(Object.fromEntries([...got].map(([k, v]) => [k, v.r]))).toEqual(want);
    const params = [...got.values()].reduce((s, v) => s + v.r * (v.in + v.out), 0);
    expect(notes[0]).toBe(
      `rank-rule: 14 of 14 target modules adapted, ranks 2..8, ${params.toLocaleString('en-US')} trainable adapter params (r 8 on every target: 16,384)`,
    );
    expect(notes).toContain('  q_proj: r [4, 8] by layer, alpha [8, 16], 1,536 params');
    expect(notes).toContain('  down_proj: r [8, 8] by layer, alpha [16, 16], 3,072 params');
  });

  it('reads in, out and layers; a table entry wins over "*"; kinds it leaves out keep r and lora_alpha', () => {
    const r = recipe(
      { rank: { '*': 'max(in, out) / 32 * layers', o_proj: 1 }, alpha: { q_proj: 'rank * 3' } },
      { target_modules: ['q_proj', 'o_proj', 'gate_proj', 'down_proj'] },
    );
    const lora = loraOf(r);
    for (const d of [0, 1]) {
      const at = (k: string) =>
        `model.layers.${d}.${k === 'q_proj' || k === 'o_proj' ? 'self_attn' : 'mlp'}.${k}`;
      expect(lora.rank_pattern[at('q_proj')]).toBe(4); // max(64, 64) / 32 * 2
      expect(lora.rank_pattern[at('o_proj')]).toBe(1);
      expect(lora.rank_pattern[at('gate_proj')]).toBe(8); // max(64, 128) / 32 * 2
      expect(lora.alpha_pattern[at('q_proj')]).toBe(12);
      // The alpha rule names q_proj only: the others keep lora_alpha (no pattern entry).
      expect(lora.alpha_pattern[at('down_proj')]).toBeUndefined();
    }
    // Table only, without "*": unnamed kinds keep r.
    const t = loraOf(recipe({ rank: { q_proj: 16 } }));
    expect(Object.keys(t.rank_pattern)).toEqual([
      'model.layers.0.self_attn.q_proj',
      'model.layers.1.self_attn.q_proj',
    ]);
    expect(adapted(recipe({ rank: { q_proj: 16 } })).get('model.layers.0.mlp.up_proj')!.r).toBe(8);
  });

  it('rank 0 leaves a module untouched (exclude_modules), with a list or a regex given', () => {
    const r = recipe({ rank: '4 * depth' });
    const lora = loraOf(r);
    expect(lora.exclude_modules).toEqual(
      ALL.map((k) => expect.stringMatching(new RegExp(`^model\\.layers\\.0\\..*${k}$`))),
    );
    const got = adapted(r);
    expect(got.size).toBe(7);
    for (const k of got.keys()) expect(k).toMatch(/^model\.layers\.1\./);
    // A regex exclude_modules of the user's stays in force beside the rank-0 modules.
    const rx = recipe({ rank: '4 * depth' }, { exclude_modules: '.*\\.k_proj' });
    expect(loraOf(rx).exclude_modules).toMatch(/^\(\?:\.\*\\\.k_proj\)\|model\\\.layers\\\.0/);
    expect([...adapted(rx).keys()].filter((k) => k.endsWith('k_proj'))).toEqual([]);
    expect(adapted(rx).size).toBe(6);
    const list = recipe({ rank: '4 * depth' }, { exclude_modules: ['up_proj'] });
    expect(loraOf(list).exclude_modules?.[0]).toBe('up_proj');
    expect(adapted(list).size).toBe(6);
  });

  it('the scale per module in the graph is alpha_m / r_m (rsLoRA: alpha_m / sqrt(r_m)), as PEFT computes it', () => {
    for (const rslora of [false, true]) {
      const r = recipe(
        { rank: '2 + 2 * depth', alpha: 'rank + 1' },
        { use_rslora: rslora, target_modules: ['v_proj'] },
      );
      const g = runPipeline(base.graph, recipePipeline(bound(r).recipe), { log: () => {} }).graph;
      for (const d of [0, 1]) {
        const scope = `model.layers.${d}.self_attn.v_proj.lora_B.default`;
        const scale = g.nodes.find((n) => n.op === 'scale' && n.scope === scope)!;
        const rank = 2 + 2 * d;
        expect(scale.attrs.factor ?? scale.attrs.value ?? scale.attrs.s).toBeCloseTo(
          loraScale(rank + 1, rank, rslora),
          6,
        );
      }
    }
  });

  it('pattern keys are the module names, escaped only when PEFT would match them elsewhere', () => {
    expect(modulePattern([['m.1.q', 4]], ['m.1.q', 'm.10.q'], 8)).toEqual({ 'm.1.q': 4 });
    // `.` is any character for PEFT: 'm.1.q' would also match 'm.1xq', which keeps r 8.
    expect(modulePattern([['m.1.q', 4]], ['m.1.q', 'm.1xq'], 8)).toEqual({ 'm\\.1\\.q': 4 });
  });
});

describe('rank-rule errors', () => {
  const bindError = (r: Recipe) => {
    try {
      bound(r);
    } catch (e) {
      return (e as Error).message;
    }
    throw new Error('no error');
  };

  it('on the model: each names the entry, the rule and what to do', () => {
    expect(bindError(recipe({ rank: { q_prj: 4 } }))).toMatch(
      /^recipe methods\[0\] \('rank-rule'\): rank\.q_prj: no module of kind 'q_prj' among the lora entry's targets \(their kinds: q_proj, k_proj/,
    );
    expect(bindError(recipe({ rank: 'depth / 2' }))).toMatch(
      /rank: gives 0\.5 for model\.layers\.1\.self_attn\.q_proj \(depth 1, layers 2, in 64, out 64\); a rank is a whole number >= 0 .*round\(\.\.\.\)/,
    );
    expect(bindError(recipe({ rank: '4 - 8 * depth' }))).toMatch(
      /gives -4 for .*a rank is a whole number >= 0/,
    );
    expect(bindError(recipe({ rank: '8', alpha: { '*': '2 * rank', k_proj: 'rank - 8' } }))).toMatch(
      /alpha\.k_proj: gives 0 for model\.layers\.0\.self_attn\.k_proj .*; an alpha is a number > 0/,
    );
    expect(bindError(recipe({ rank: '0 * depth' }))).toMatch(
      /gives 0 to every target module \(14\): nothing would be trained/,
    );
    expect(bindError(recipe({ rank: '4 / (depth - depth)' }))).toMatch(/gives (NaN|Infinity) for/);
    // lm_head is outside the layers: a rule reading depth cannot apply to it.
    expect(bindError(recipe({ rank: '4 + depth' }, { target_modules: ['q_proj', 'lm_head'] }))).toMatch(
      /rank: reads depth, which lm_head does not have .*give 'lm_head' a table entry of its own/,
    );
    expect(
      adapted(
        recipe({ rank: { '*': '4 + depth', lm_head: 2 } }, { target_modules: ['q_proj', 'lm_head'] }),
      ).get('lm_head')!.r,
    ).toBe(2);
  });

  it('in the recipe: a lora entry must follow, claimed once, without its own rank_pattern', () => {
    const parse = (methods: unknown[]) => () => parseRecipe({ methods } as RecipeInput);
    expect(parse([{ method: 'lora' }, { method: 'rank-rule', rank: 4 }])).toThrow(
      /methods\[1\]: 'rank-rule' shapes the next lora or dora entry, and none follows it; put it before the entry it applies to/,
    );
    expect(
      parse([{ method: 'rank-rule', rank: 4 }, { method: 'rank-rule', alpha: 4 }, { method: 'lora' }]),
    ).toThrow(/methods\[1\]: methods\[0\] already shapes methods\[2\] \('lora'\); keep one of them/);
    expect(
      parse([
        { method: 'rank-rule', rank: 4 },
        { method: 'lora', rank_pattern: { q_proj: 2 } },
      ]),
    ).toThrow(
      /methods\[1\]\.rank_pattern: remove it: the rank rule makes rank_pattern \(methods\[0\] 'rank-rule' sets it\)/,
    );
    // An alpha-only rule leaves the user's rank_pattern alone.
    expect(
      parse([
        { method: 'rank-rule', alpha: 'rank * 2' },
        { method: 'lora', rank_pattern: { q_proj: 2 } },
      ]),
    ).not.toThrow();
    // It shapes a dora entry too, and the first lora after it when two follow.
    const r = parseRecipe({
      methods: [
        { method: 'rank-rule', rank: '1 + depth' },
        { method: 'dora', target_modules: ['q_proj'] },
        { method: 'lora', adapter_name: 'other', target_modules: ['v_proj'] },
      ],
    } as RecipeInput);
    const b = bound(r).recipe.methods;
    expect((b[1].options as LoraOptions).rank_pattern).toEqual({
      'model.layers.0.self_attn.q_proj': 1,
      'model.layers.1.self_attn.q_proj': 2,
    });
    expect((b[1].options as LoraOptions).use_dora).toBe(true);
    expect((b[2].options as LoraOptions).rank_pattern).toEqual({});
  });
});

describe('rank-rule composes with qlora, use_dora and loraplus', () => {
  it('one recipe: 4-bit base, DoRA adapters of the allocated ranks, LoRA+ groups', () => {
    const r = parseRecipe({
      methods: [
        { method: 'qlora', quant_type: 'nf4', blocksize: 64, double_quant: true },
        { method: 'rank-rule', rank: { q_proj: 'min(16, 4 + 4 * depth)', '*': 2 }, alpha: '2 * rank' },
        {
          method: 'lora',
          use_dora: true,
          r: 8,
          lora_alpha: 16,
          target_modules: ['q_proj', 'v_proj', 'down_proj'],
        },
        { method: 'loraplus', loraplus_lr_ratio: 16 },
      ],
    } as RecipeInput);
    const run = prepareRun(model, r, { batch: 1, seq: 8 }, { seed: 0 });
    expect(run.methodLog[0]).toMatch(/^rank-rule: 6 of 6 target modules adapted, ranks 2\.\.8/);
    const shape = (n: string) => run.step.params().find((p) => p.attrs.name === n)!.type.shape;
    expect(shape('model.layers.0.self_attn.q_proj.lora_A.default.weight')).toEqual([4, 64]);
    expect(shape('model.layers.1.self_attn.q_proj.lora_A.default.weight')).toEqual([8, 64]);
    expect(shape('model.layers.1.mlp.down_proj.lora_B.default.weight')).toEqual([64, 2]);
    expect(shape('model.layers.1.mlp.down_proj.lora_magnitude_vector.default.weight')).toEqual([64]);
    expect(run.step.params().some((p) => String(p.attrs.name).includes('weight.absmax'))).toBe(true);
    expect(run.groups.map((g) => [g.name, g.params.length])).toEqual([
      ['loraplus_A', 6],
      ['loraplus_B', 12],
    ]);
    // What the run saves with: the bound lora options.
    expect(run.saves.map((s) => s.method)).toEqual(['lora']);
    expect((run.saves[0].options as LoraOptions).rank_pattern['model.layers.1.self_attn.q_proj']).toBe(8);
  });
});
