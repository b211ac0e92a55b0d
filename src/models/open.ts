// Opening `--model`: a bitsandbytes 4-bit checkpoint (QLoRA base), a plain HF
// directory, or a built-in preset. Lives above models/llama because reading a 4-bit
// checkpoint needs the qlora method's graph rewrite.
import { statSync } from 'node:fs';
import { loadBnb4bitModel } from './bnb4bit.ts';
import { ComputeF32View, type LoadedModel, loadModel } from './llama/index.ts';

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

export function openModel(spec: string, opts: { seed?: number } = {}): LoadedModel {
  const bnb = isDir(spec) ? loadBnb4bitModel(spec) : undefined;
  if (!bnb) return loadModel(spec, opts);
  const weights = new ComputeF32View(bnb.weights);
  return {
    config: bnb.config,
    weights,
    source: spec,
    dir: spec,
    storage: (g) => {
      const r = bnb.transform(g);
      return { graph: r.graph, weights: new ComputeF32View(r.weights ?? weights) };
    },
  };
}
