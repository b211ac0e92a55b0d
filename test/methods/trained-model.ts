// Shared by the methods' training tests: the token rows they train on, a quiet progress
// stream, and the trained model's logits against its saved adapter's.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runGraph } from '../../src/backends/cpu/index.ts';
import type { Graph } from '../../src/ir/graph.ts';
import { tensor } from '../../src/ir/tensor.ts';
import { LayeredWeightStore, MapWeightStore, type WeightStore } from '../../src/ir/weights.ts';
import { type Recipe, recipePipeline } from '../../src/methods/index.ts';
import { attachPeftAdapter } from '../../src/models/adapters.ts';
import { loadModel, modelGraph } from '../../src/models/llama/index.ts';
import { phasePasses, runPipeline } from '../../src/passes/index.ts';
import { loadCheckpoint } from '../../src/train/checkpoint/checkpoint.ts';

export const MODEL = 'examples/models/tiny-llama';

/** Byte-level rows of the bundled vocabulary (BOS 256): repeated text the model can fit. */
export const ROW = [256, ...Array.from(Buffer.from('the cat sat on the mat. '.repeat(3)))].slice(0, 33);

/** A fresh folder with tokens.json: 12 copies of ROW. */
export function tokensFile(prefix: string): { dir: string; tokens: string } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const tokens = join(dir, 'tokens.json');
  writeFileSync(tokens, JSON.stringify(Array.from({ length: 12 }, () => ROW)));
  return { dir, tokens };
}

/** A progress stream that drops everything. */
export const quiet = { write: () => true, isTTY: false } as never;

export interface TrainedAndReloaded {
  /** Logits of the recipe's methods on the base with the checkpoint's params. */
  readonly trained: ArrayLike<number>;
  /** Logits of the saved adapter attached to `onto` (default: the base model). */
  readonly reloaded: ArrayLike<number>;
  /** The attached adapter, for further checks (merging). */
  readonly attached: { graph: Graph; weights: WeightStore };
  /** Runs a graph's logits as the serve phase does (dropout off, 4-bit fused). */
  readonly logits: (g: Graph, w: WeightStore) => ArrayLike<number>;
}

/** The trained model against its saved adapter, on the first 12 tokens of ROW. */
export function trainedAndReloaded(
  recipe: Recipe,
  checkpoint: string,
  adapter: string,
  onto: (base: { graph: Graph; weights: WeightStore }) => { graph: Graph; weights: WeightStore } = (b) => b,
): TrainedAndReloaded {
  const model = loadModel(MODEL);
  const base = modelGraph(model, { batch: 1, seq: 12 }, { loss: false, logits: true });
  const feeds = { input_ids: tensor('i32', [1, 12], ROW.slice(0, 12)) };
  const logits = (g: Graph, w: WeightStore) =>
    runGraph(runPipeline(g, phasePasses('serve'), { log: () => {} }).graph, feeds, w).logits.data;
  const applied = runPipeline(base.graph, recipePipeline(recipe), {
    weights: base.weights,
    log: () => {},
    model: { maxPositionEmbeddings: model.config.maxPositionEmbeddings },
  });
  const ckpt = loadCheckpoint(checkpoint);
  const trained = logits(
    applied.graph,
    new LayeredWeightStore([new MapWeightStore(ckpt.params), applied.weights!]),
  );
  const target = onto(base);
  const attached = attachPeftAdapter(target.graph, target.weights, adapter);
  return { trained, reloaded: logits(attached.graph, attached.weights), attached, logits };
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}
