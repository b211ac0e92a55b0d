// Shared drivers of the galore tests: a weight W with its gradient fed as an input, stepped
// by an optimizer update rule through the compiled step graph on the CPU interpreter.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runGraph } from '../../src/backends/cpu/index.ts';
import { runTrain, type TrainCliOptions } from '../../src/cli/commands/train.ts';
import { GraphBuilder } from '../../src/ir/builder.ts';
import { type Tensor, tensor } from '../../src/ir/tensor.ts';
import { MapWeightStore } from '../../src/ir/weights.ts';
import { appendOptimizer, type UpdateRule } from '../../src/passes/optimizer/index.ts';

export interface StepOptions {
  readonly lr?: number;
  readonly weightDecay?: number;
  /** States written before the update of 1-based step t (what the host session writes, e.g. a new P). */
  readonly before?: (t: number) => Record<string, Tensor>;
}

/** W [m, n] trainable with the gradient fed as input `g`; `steps` updates by `rule`; W after each. */
export function stepRule(
  rule: UpdateRule,
  w0: Tensor,
  grads: Tensor[],
  extra: Record<string, Tensor> = {},
  opts: StepOptions = {},
) {
  const b = new GraphBuilder();
  const W = b.param('W', 'f32', w0.shape, 'trainable');
  const g = b.input('g', 'f32', w0.shape);
  const base = b.build([
    ['loss', b.sum(W, [0, 1])],
    ['grad:W', g],
  ]);
  const graph = appendOptimizer(base, {
    rule,
    defaultGroup: { name: 'default', lrScale: 1, weightDecay: opts.weightDecay ?? 0 },
  });
  const weights = new MapWeightStore();
  for (const p of graph.params()) {
    const name = String(p.attrs.name);
    weights.set(name, extra[name] ?? (name === 'W' ? w0 : tensor(p.type.dtype, p.type.shape)));
  }
  const out: Float32Array[] = [];
  grads.forEach((gt, i) => {
    for (const [n, t] of Object.entries(opts.before?.(i + 1) ?? {})) weights.set(n, t);
    const res = runGraph(
      graph,
      { g: gt, lr: tensor('f32', [], [opts.lr ?? 0.01]), step: tensor('f32', [], [i + 1]) },
      weights,
    );
    for (const o of graph.outputs)
      if (o.name.startsWith('assign:')) weights.set(o.name.slice('assign:'.length), res[o.name]);
    out.push(Float32Array.from(weights.get('W')!.data));
  });
  return out;
}

export function rand(shape: number[], seed: number): Tensor {
  let s = seed;
  const n = shape.reduce((a, c) => a * c, 1);
  return tensor(
    'f32',
    shape,
    Float32Array.from({ length: n }, () => {
      s = (s * 1103515245 + 12345) % 2147483648;
      return s / 2147483648 - 0.5;
    }),
  );
}

export const GALORE_MODEL = 'examples/models/tiny-llama';
export const GALORE_RECIPE = 'examples/recipes/galore-tiny.json';

/** A recipe file's JSON, as tests edit it. */
export type GaloreRecipeJson = { methods: Record<string, unknown>[] } & Record<string, unknown>;

/** `peftc train` (in-process, quiet) of the bundled model with examples/recipes/galore-tiny.json edited. */
export async function trainGalore(
  dir: string,
  name: string,
  edit: (r: GaloreRecipeJson) => void,
  o: Pick<TrainCliOptions, 'tokens' | 'batch' | 'seq' | 'backend' | 'steps' | 'evalEvery'>,
) {
  const recipe = JSON.parse(readFileSync(GALORE_RECIPE, 'utf8'));
  edit(recipe);
  const file = join(dir, `${name}.json`);
  writeFileSync(file, JSON.stringify(recipe));
  const out = join(dir, name);
  const quiet = { write: () => true, isTTY: false };
  const r = await runTrain({ model: GALORE_MODEL, recipe: file, out, plot: false, ...o }, quiet as never);
  return { r, out };
}
