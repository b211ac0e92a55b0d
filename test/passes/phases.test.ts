// The phase registry, and its promise: the trainer and `peftc ir` run the same lists,
// so they build the same graphs.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runIr } from '../../src/cli/commands/ir.ts';
import { printGraph } from '../../src/ir/printer.ts';
import { loadRecipe } from '../../src/methods/index.ts';
import { buildLlama, loadModel, presetConfig } from '../../src/models/llama/index.ts';
import { getPhase, phaseNames, phasePasses, runPipeline } from '../../src/passes/index.ts';
import { prepareRun, runPipelines } from '../../src/train/setup.ts';

const EXAMPLES = join(import.meta.dirname, '..', '..', 'examples');
const RECIPES = join(EXAMPLES, 'recipes');
// A model dir, not a preset: ir quantizes with the checkpoint's weights as the trainer does
// (on a preset it has none, and value-dependent attrs such as double quant's offset print null).
const MODEL = join(EXAMPLES, 'models', 'tiny-llama');
const shape = { batch: 1, seq: 8 };

async function irText(args: { recipe: string; train?: boolean; eval?: boolean }): Promise<string> {
  let out = '';
  await runIr({ model: MODEL, ...shape, ...args }, (s) => {
    out += s;
  });
  return out;
}

describe('phase registry', () => {
  it('registers train, eval and serve', () => {
    expect(phaseNames()).toEqual(expect.arrayContaining(['train', 'eval', 'serve']));
    expect(() => getPhase('trian')).toThrow(/unknown phase 'trian' \(known: train, eval, serve/);
  });

  it('lists the train passes, with checkpoint only when the recipe asks', () => {
    const names = (checkpointing: boolean) =>
      phasePasses('train', { train: { optimizer: { type: 'sgd', lr: 0.1 }, checkpointing } }).map(
        (s) => s.name,
      );
    expect(names(false)).toEqual([
      'autodiff',
      'optimizer',
      'fuse-dequant',
      'fuse-rope-layout',
      'fuse-elementwise',
      'fuse-epilogue',
      'fuse-dropout',
      'fuse-operand-map',
    ]);
    expect(names(true)).toEqual([
      'autodiff',
      'checkpoint',
      'optimizer',
      'fuse-dequant',
      'fuse-rope-layout',
      'fuse-elementwise',
      'fuse-epilogue',
      'fuse-dropout',
      'fuse-operand-map',
    ]);
    expect(phasePasses('eval').map((s) => s.name)).toEqual([
      'fuse-dequant',
      'eval-mode',
      'fuse-rope-layout',
      'fuse-elementwise',
      'fuse-epilogue',
    ]);
    expect(() => phasePasses('train')).toThrow(/needs the optimizer settings/);
  });

  it('resolves the optimizer param groups from the params the methods made', () => {
    const recipe = loadRecipe(join(RECIPES, 'lora-tiny.json'));
    const p = runPipelines(recipe);
    const g = runPipeline(buildLlama(presetConfig('tiny'), shape, { loss: true }), p.methods).graph;
    const opt = p.train.find((s) => s.name === 'optimizer');
    const resolved = opt?.resolve?.(g) as { groups: { params: string[] }[] };
    expect(resolved.groups[0].params).toContain('model.layers.0.self_attn.q_proj.lora_A.default.weight');
    // A recipe whose methods add nothing trainable fails there, as the trainer does.
    const frozen = runPipeline(buildLlama(presetConfig('tiny'), shape, { loss: true }), []).graph;
    expect(() => opt?.resolve?.(frozen)).toThrow(/leaves no trainable parameter/);
  });
});

describe('the trainer and peftc ir build the same graphs', () => {
  const dir = mkdtempSync(join(tmpdir(), 'peftc-phases-'));
  // LoRA+ param groups, checkpointing and gradient accumulation: every train-phase option in play.
  const rich = join(dir, 'rich.json');
  writeFileSync(
    rich,
    JSON.stringify({
      methods: [{ method: 'lora', r: 4, target_modules: ['q_proj', 'v_proj'] }],
      optimizer: { type: 'adamw', lr: 1e-3 },
      checkpointing: true,
      gradient_accumulation_steps: 2,
      max_grad_norm: 1,
      param_groups: [{ params: '.*lora_B.*', lr: 4e-3 }],
    }),
  );
  it.each([
    ['lora-tiny.json', join(RECIPES, 'lora-tiny.json')],
    ['qlora-tiny.json', join(RECIPES, 'qlora-tiny.json')],
    ['checkpointing + param groups + accumulation', rich],
  ])('%s', async (_, file) => {
    const run = prepareRun(loadModel(MODEL), loadRecipe(file), shape, { seed: 0 });
    expect(await irText({ recipe: file, train: true })).toBe(printGraph(run.step));
    expect(await irText({ recipe: file, eval: true })).toBe(printGraph(run.forward));
  });
});
