// A model ready to run: the LLaMA graph for a shape, with PEFT adapters attached
// (each under its own adapter name) and optionally merged into the base weights.
import type { Graph } from '../ir/graph.ts';
import type { WeightStore } from '../ir/weights.ts';
import { loraBranches, mergeLora } from '../methods/lora/index.ts';
import { attachPeftAdapter } from './adapters.ts';
import { buildLlama, type LlamaBuildOptions, type LlamaShape } from './llama/build.ts';
import { checkModelWeights, type LoadedModel } from './llama/load.ts';

export interface PrepareOptions extends LlamaBuildOptions {
  /** PEFT adapter folders, attached in order as adapters `default`, `adapter1`, `adapter2`, ... */
  readonly adapters?: readonly string[];
  /** Fold every attached adapter into the base weights (W + s B A) and drop the branches. */
  readonly merge?: boolean;
}

export function adapterNameAt(i: number): string {
  return i === 0 ? 'default' : `adapter${i}`;
}

export function prepareModel(
  model: LoadedModel,
  shape: LlamaShape,
  opts: PrepareOptions = {},
): { graph: Graph; weights: WeightStore; merged: string[] } {
  let graph = buildLlama(model.config, shape, opts);
  checkModelWeights(graph, model.weights, model.source);
  let weights = model.weights;
  (opts.adapters ?? []).forEach((dir, i) => {
    const a = attachPeftAdapter(graph, weights, dir, adapterNameAt(i));
    graph = a.graph;
    weights = a.weights;
  });
  const mergedNames: string[] = [];
  if (opts.merge && opts.adapters?.length) {
    for (const br of loraBranches(graph)) mergedNames.push(String(graph.node(br.base.inputs[1]).attrs.name));
    const merged = mergeLora(graph, weights);
    graph = merged.graph;
    weights = merged.weights ?? weights;
  }
  return { graph, weights, merged: [...new Set(mergedNames)] };
}
