// Calibration before a run's graphs are built, for methods with a `train.calibrate` hook
// (GoRA): it gets the plain model's forward graph and the mean gradients of params it
// names, frozen ones included. Those gradients come from a graph of their own, forward +
// autodiff w.r.t. exactly those params (treated as differentiable for this graph only),
// run over the first n training batches with no update; the sum stays on the host and is
// dropped after the hook returns. The hook's result replaces the next recipe entry's
// options and adds initial param values (which shadow the params' init specs).
import type { Backend } from '../backends/backend.ts';
import type { Graph } from '../ir/graph.ts';
import type { Tensor } from '../ir/tensor.ts';
import { tensor } from '../ir/tensor.ts';
import { MapWeightStore, type WeightStore } from '../ir/weights.ts';
import { type CalibrationContext, getMethod, type Recipe, type ResolvedMethod } from '../methods/index.ts';
import { type LoadedModel, modelGraph } from '../models/llama/index.ts';
import { runPipeline } from '../passes/index.ts';
import type { Batcher } from './data/index.ts';
import { Progress, type ProgressStream } from './progress.ts';
import { RecipeEntryError, type RunShape } from './setup.ts';

export interface Calibrated {
  readonly recipe: Recipe;
  /** Initial param values from the calibrations (empty: none). */
  readonly init: MapWeightStore;
}

/** Whether any entry of the recipe calibrates. */
export function calibrates(recipe: Recipe): boolean {
  return recipe.methods.some((m) => getMethod(m.method).train?.calibrate);
}

/** The mean gradient of the loss w.r.t. `params` over the first `n` batches of `batcher`. */
export async function meanGradients(
  base: { graph: Graph; weights: WeightStore },
  backend: Backend,
  batcher: Batcher,
  params: readonly string[],
  n: number,
  progress: { stream?: ProgressStream; log: (line: string) => void },
): Promise<Map<string, Tensor>> {
  const g = runPipeline(
    base.graph,
    [{ name: 'autodiff', options: { loss: 'loss', extraWrt: [...params] } }],
    {
      log: () => {},
    },
  ).graph;
  const outputs = params.map((p) => `grad:${p}`);
  const exe = await backend.compile(g, base.weights);
  const sums = new Map<string, Float64Array>();
  const bar = new Progress({ total: n, stream: progress.stream, every: 1 });
  progress.log(`calibration: gradients of ${params.length} frozen weight(s) over ${n} batch(es)`);
  try {
    for (let i = 0; i < n; i++) {
      const b = batcher.batchAt(i);
      const res = await exe.run({
        feeds: { input_ids: b.input_ids, labels: b.labels, step: tensor('i32', [], [i + 1]) },
        outputs: ['loss', ...outputs],
      });
      for (const p of params) {
        const t = res[`grad:${p}`];
        const s = sums.get(p) ?? new Float64Array(t.data.length);
        for (let k = 0; k < s.length; k++) s[k] += t.data[k];
        sums.set(p, s);
      }
      bar.update({ step: i + 1, loss: res.loss.data[0], tokens: b.tokens });
    }
  } finally {
    bar.stop();
    exe.dispose();
  }
  const shapes = new Map(g.params().map((p) => [String(p.attrs.name), p.type.shape]));
  return new Map(
    params.map((p) => [
      p,
      tensor(
        'f32',
        [...(shapes.get(p) ?? [])],
        Float32Array.from(sums.get(p)!, (x) => x / n),
      ),
    ]),
  );
}

/** Runs every calibrating entry of the recipe, in order; returns the reshaped recipe and the inits. */
export async function calibrate(o: {
  model: LoadedModel;
  recipe: Recipe;
  shape: RunShape;
  backend: Backend;
  batcher: Batcher;
  stream?: ProgressStream;
  log: (line: string) => void;
}): Promise<Calibrated> {
  const methods: ResolvedMethod[] = [...o.recipe.methods];
  const init = new MapWeightStore();
  const base = modelGraph(o.model, o.shape, { loss: true, logits: false });
  for (let i = 0; i < methods.length; i++) {
    const m = methods[i];
    const hook = getMethod(m.method).train?.calibrate;
    if (!hook) continue;
    const next = methods[i + 1];
    const ctx: CalibrationContext = {
      graph: base.graph,
      weights: base.weights,
      next,
      gradients: (params, n) =>
        meanGradients(base, o.backend, o.batcher, params, n, { stream: o.stream, log: o.log }),
      log: o.log,
    };
    let res: Awaited<ReturnType<typeof hook>>;
    try {
      res = await hook(m.options, ctx);
    } catch (e) {
      throw new RecipeEntryError(i, m.method, (e as Error).message, { cause: e });
    }
    if (res.next !== undefined && next)
      methods[i + 1] = { method: next.method, options: res.next as Record<string, unknown> };
    for (const [name, t] of res.init ?? []) init.set(name, t);
  }
  return { recipe: { ...o.recipe, methods }, init };
}
