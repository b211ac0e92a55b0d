// The MALoRA mixture's adapter structure (adapters/sites.ts): found by its up-projection
// `<M>.lora_up.<a>.weight` under `add(below, scale?(linear(h, up)))`. Disable, set-active
// and save go through it like any adapter. Merge does not exist: the update of a token is
// U diag(g(x)) P S, and the routing weights g(x) depend on the token, so no single weight
// delta equals the mixture (fold says so, naming the module).
import type { Graph, Node } from '../../ir/graph.ts';
import type { AdapterStructure, SiteMatch } from '../adapters/sites.ts';
import { paramNameSet } from '../lora/branch.ts';
import { MethodError } from '../registry.ts';
import { moeParamNames, UP_NAME } from './names.ts';

function at(g: Graph, n: Node): SiteMatch | undefined {
  if (n.op !== 'add' || n.inputs.length !== 2) return undefined;
  let y = g.node(n.inputs[1]);
  if (y.op === 'scale') y = g.node(y.inputs[0]);
  if (y.op !== 'linear' || y.inputs.length !== 2) return undefined;
  const up = g.node(y.inputs[1]);
  const m = up.op === 'param' ? UP_NAME.exec(String(up.attrs.name)) : null;
  if (!m) return undefined;
  const [, module, adapter] = m;
  const names = moeParamNames(module, adapter);
  const params = [names.S, names.P, names.up, names.router];
  const have = paramNameSet(g);
  if (!params.every((p) => have.has(p))) return undefined;
  return { module, adapter, kind: 'linear', below: g.node(n.inputs[0]), params, data: undefined };
}

const noMerge = (site: { module: string; adapter: string }): never => {
  throw new MethodError(
    `malora-moe adapter '${site.adapter}' on ${site.module} cannot be merged: its router weighs the experts per token, ` +
      'so no single weight update equals the mixture; keep the adapter unmerged (peftc logits --adapter <dir>)',
  );
};

export const maloraMoeStructure: AdapterStructure = {
  name: 'malora-moe',
  at,
  fold: noMerge,
  unfold: noMerge,
};
