// LoRA's merge and unmerge: the generic ones over adapter structures (adapters/merge.ts).
// Merge folds s * B A into the base weight (W' = W + s B A; for an embedding table
// T' = T + s (B A)^T) and removes the branch; unmerge re-injects the adapter from its
// options (its tensors read from the store) and unfolds it. A DoRA adapter (use_dora)
// merges through DoRA's own fold the same way.
import type { Graph } from '../../ir/graph.ts';
import { LayeredWeightStore, MapWeightStore, type WeightStore } from '../../ir/weights.ts';
import type { PassResult } from '../../passes/pass.ts';
import { foldSites, mergeAdapters, selectSites } from '../adapters/merge.ts';
import { doraDerived } from './dora.ts';
import { injectLora } from './inject.ts';
import type { LoraOptions } from './options.ts';

/** Merges the given adapters (default: every adapter in the graph), in graph order. */
export function mergeLora(
  g: Graph,
  weights: WeightStore | undefined,
  adapters?: readonly string[],
): PassResult {
  const { graph, weights: w } = mergeAdapters(g, weights, adapters, 'lora-merge');
  return { graph, weights: w };
}

/** Re-adds adapter `o.adapter_name` (its tensors from the store) and takes it out of the base weights. */
export function unmergeLora(g: Graph, o: LoraOptions, weights: WeightStore | undefined): PassResult {
  const { graph } = injectLora(g, o);
  const sites = selectSites(graph, [o.adapter_name], 'lora-unmerge');
  const changed = foldSites(graph, sites, weights, -1, 'lora-unmerge');
  if (!weights) return { graph, weights: undefined };
  const restored = new LayeredWeightStore([changed, weights]);
  // DoRA's frozen ||W||^2_row buffers follow the restored base weights.
  const derived = o.use_dora ? doraDerived(graph, restored) : new Map();
  return {
    graph,
    weights: derived.size ? new LayeredWeightStore([new MapWeightStore(derived), restored]) : restored,
  };
}
