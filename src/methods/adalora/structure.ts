// AdaLoRA's adapter structure (methods/adapters/sites.ts). A branch is what inject.ts builds,
// PEFT's SVDLinear.forward (tuners/adalora/layer.py):
//   add(base, scale(linear(linear(dropout?(x), mul(A, E)), B), lora_alpha / (ranknum + 1e-5)))
// with params `<m>.lora_A.<a>` [r, in], `<m>.lora_E.<a>` [r, 1], `<m>.lora_B.<a>` [out, r]
// (PEFT's ParameterDict names: no `.weight`). LoRA's structure (lora/branch.ts) never claims
// it: its A must be a param feeding the inner linear, here it is mul(A, E) (a test checks).
// The scale may be gone (s = 1 after canonicalize).
import type { Graph, Node } from '../../ir/graph.ts';
import { removeDead } from '../../passes/rewrite/rebuild.ts';
import {
  type AdapterSite,
  type AdapterStructure,
  type Reader,
  type SiteMatch,
  twoFactorBranch,
} from '../adapters/sites.ts';

export interface AdaLoraData {
  readonly A: Node;
  readonly E: Node;
  readonly B: Node;
  readonly scale: number;
}

const B_NAME = /^(.*)\.lora_B\.([A-Za-z0-9_-]+)$/;

export function adaloraParamNames(module: string, adapter: string) {
  return {
    A: `${module}.lora_A.${adapter}`,
    E: `${module}.lora_E.${adapter}`,
    B: `${module}.lora_B.${adapter}`,
  };
}

function at(g: Graph, n: Node): SiteMatch | undefined {
  const br = twoFactorBranch(g, n);
  if (!br) return undefined;
  const { b: B, a: ae, scale } = br;
  const m = B.op === 'param' ? B_NAME.exec(String(B.attrs.name)) : null;
  if (!m) return undefined;
  const [, module, adapter] = m;
  if (ae.op !== 'mul') return undefined;
  const [A, E] = ae.inputs.map((id) => g.node(id));
  const names = adaloraParamNames(module, adapter);
  if (A.op !== 'param' || A.attrs.name !== names.A || E.op !== 'param' || E.attrs.name !== names.E)
    return undefined;
  const data: AdaLoraData = { A, E, B, scale };
  return {
    module,
    adapter,
    kind: 'linear',
    below: br.below,
    params: [names.A, names.E, names.B],
    data,
  };
}

/** W[o, i] += k * sum_j B[o, j] E[j] A[j, i] in f64 (get_delta_weight: B @ (A * E) * scaling / ranknum). */
function addDelta(site: AdapterSite, W: Float64Array, read: Reader, k: number): void {
  const d = site.data as AdaLoraData;
  const A = read(String(d.A.attrs.name));
  const E = read(String(d.E.attrs.name));
  const B = read(String(d.B.attrs.name));
  const [r, inF] = A.shape;
  const outF = B.shape[0];
  for (let o = 0; o < outF; o++)
    for (let j = 0; j < r; j++) {
      const be = B.data[o * r + j] * E.data[j];
      if (be === 0) continue;
      for (let i = 0; i < inF; i++) W[o * inF + i] += k * be * A.data[j * inF + i];
    }
}

/** The scope of an adapter's orthogonality penalty (inject.ts). */
export const orthRegScope = (adapter: string) => `adalora.orth_reg.${adapter}`;

/**
 * With an adapter removed, its penalty leaves `loss` too (loss = add(loss, penalty), as
 * inject.ts builds it): PEFT's merge_and_unload leaves no AdaLoRA params to regularize.
 */
function release(g: Graph, removed: readonly AdapterSite[]): Graph {
  let out = g;
  for (const a of new Set(removed.map((s) => s.adapter))) {
    const loss = out.outputs.find((o) => o.name === 'loss');
    const n = loss && out.node(loss.id);
    if (n?.op !== 'add' || out.node(n.inputs[1]).scope !== orthRegScope(a)) continue;
    out = out.with(
      out.nodes,
      out.outputs.map((o) => (o.name === 'loss' ? { ...o, id: n.inputs[0] } : o)),
    );
  }
  return out === g ? g : removeDead(out);
}

export const adaloraStructure: AdapterStructure = {
  name: 'adalora',
  at,
  release,
  fold: (site, W, read) => {
    addDelta(site, W, read, (site.data as AdaLoraData).scale);
    return undefined;
  },
  unfold: (site, W, read) => addDelta(site, W, read, -(site.data as AdaLoraData).scale),
};
