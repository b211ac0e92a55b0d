// eval-mode: the graph as torch's `model.eval()` runs it: dropout is the identity.
// Inference (logits, generation) and the trainer's evaluation use it; training
// graphs keep their dropout.
import type { Graph } from '../../ir/graph.ts';
import type { PassDef } from '../pass.ts';
import { rewrite } from '../rewrite/index.ts';

export function evalMode(g: Graph): Graph {
  return rewrite(g, [[{ op: 'dropout' }, (m) => m.inputs[0], 'eval-mode-dropout']], { once: true }).graph;
}

export const evalModePass: PassDef = {
  name: 'eval-mode',
  description: 'dropout becomes the identity, as in model.eval()',
  run: (g) => evalMode(g),
};
