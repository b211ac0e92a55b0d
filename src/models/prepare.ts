// A model ready to run: the LLaMA graph for a shape, with PEFT adapters attached
// (each under its own adapter name) and optionally merged into the base weights.
import type { Graph } from '../ir/graph.ts';
import type { WeightStore } from '../ir/weights.ts';
import { adapterSites, baseWeightNode, mergeAdapters } from '../methods/index.ts';
import { mergeQlora } from '../methods/qlora/index.ts'; // also registers fuse-dequant, which the serve phase runs
import { phasePasses, runPipeline } from '../passes/index.ts';
import { attachPeftAdapter } from './adapters.ts';
import type { LlamaBuildOptions, LlamaShape } from './llama/build.ts';
import { type LoadedModel, modelGraph } from './llama/load.ts';

export interface PrepareOptions extends LlamaBuildOptions {
  /** PEFT adapter folders, attached in order as adapters `default`, `adapter1`, `adapter2`, ... */
  readonly adapters?: readonly string[];
  /** Fold every attached adapter into the base weights (W + s B A) and drop the branches. */
  readonly merge?: boolean;
}

export function adapterNameAt(i: number): string {
  return i === 0 ? 'default' : `adapter${i}`;
}

/**
 * The model's graph as its checkpoint stores it (4-bit bases unfused: dequant_4bit
 * nodes), with the PEFT adapters attached in order.
 */
export function withAdapters(
  model: LoadedModel,
  shape: LlamaShape,
  adapters: readonly string[] = [],
  opts: LlamaBuildOptions = {},
): { graph: Graph; weights: WeightStore } {
  let { graph, weights } = modelGraph(model, shape, opts);
  adapters.forEach((dir, i) => {
    ({ graph, weights } = attachPeftAdapter(graph, weights, dir, adapterNameAt(i)));
  });
  return { graph, weights };
}

export function prepareModel(
  model: LoadedModel,
  shape: LlamaShape,
  opts: PrepareOptions = {},
): { graph: Graph; weights: WeightStore; merged: string[] } {
  let { graph, weights } = withAdapters(model, shape, opts.adapters, opts);
  let merged: string[] = [];
  if (opts.merge && opts.adapters?.length) ({ graph, weights, merged } = mergeAttached(graph, weights));
  // The serve phase (passes/phases.ts): 4-bit bases dequantize inside the matmul, never
  // into a full-precision weight; dropout off (an adapter's lora_dropout only acts in training).
  graph = runPipeline(graph, phasePasses('serve'), { weights }).graph;
  return { graph, weights, merged };
}

/**
 * Folds every attached adapter into its base weight (W + s B A) and drops the branches.
 * On a 4-bit base (dequant_4bit weights) the adapted weights are dequantized and merged in
 * full precision (qlora-merge, merge_into "float", as `peftc merge` writes them); adapters
 * on weights that were never 4-bit then merge as plain LoRA. Returns the merged weight names.
 */
export function mergeAttached(
  graph: Graph,
  weights: WeightStore,
): { graph: Graph; weights: WeightStore; merged: string[] } {
  const names: string[] = [];
  if (adapterSites(graph).some((s) => baseWeightNode(graph, s).op !== 'param')) {
    const q = mergeQlora(graph, { merge_into: 'float' }, weights);
    names.push(...q.report.weights);
    graph = q.graph;
    weights = q.weights ?? weights;
  }
  if (adapterSites(graph).length) {
    const m = mergeAdapters(graph, weights);
    names.push(...m.merged);
    graph = m.graph;
    weights = m.weights ?? weights;
  }
  return { graph, weights, merged: [...new Set(names)] };
}
