// dce: removes nodes that no output depends on (unused params included). Graph
// inputs stay: they are the graph's interface, and feeds name them.
import type { Graph } from '../../ir/graph.ts';
import type { PassDef } from '../pass.ts';
import { removeDead } from '../rewrite/rebuild.ts';

export function dce(g: Graph): Graph {
  return removeDead(g);
}

export const dcePass: PassDef = {
  name: 'dce',
  description: 'remove nodes no output depends on (graph inputs are kept)',
  run: (g) => dce(g),
};
