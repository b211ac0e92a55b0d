// The model graph a command compiles, from a preset or an HF model directory, as the
// trainer builds it (a model dir's 4-bit storage included). Presets come without weights:
// random ones would cost memory and change nothing in the graph.
import { existsSync, statSync } from 'node:fs';
import type { Graph } from '../../ir/graph.ts';
import type { WeightStore } from '../../ir/weights.ts';
import { buildLlama, loadModel, modelGraph, PRESETS, presetConfig } from '../../models/llama/index.ts';
import type { ModelInfo } from '../../passes/index.ts';
import { UserError } from '../errors.ts';

export function commandModelGraph(
  spec: string,
  shape: { batch: number; seq: number },
  build: { loss?: boolean; logits?: boolean },
): { graph: Graph; weights?: WeightStore; info: ModelInfo } {
  const isDir = existsSync(spec) && statSync(spec).isDirectory();
  if (!isDir && !(spec in PRESETS))
    throw new UserError(
      `--model '${spec}' is neither a preset (${Object.keys(PRESETS).join(', ')}) nor a model directory`,
    );
  if (!isDir) {
    const c = presetConfig(spec);
    return { graph: buildLlama(c, shape, build), info: { maxPositionEmbeddings: c.maxPositionEmbeddings } };
  }
  const m = loadModel(spec);
  return { ...modelGraph(m, shape, build), info: { maxPositionEmbeddings: m.config.maxPositionEmbeddings } };
}
