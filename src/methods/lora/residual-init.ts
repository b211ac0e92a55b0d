// PiSSA and OLoRA (init_lora_weights "pissa", "pissa_niter_<N>", "olora"): A and B start
// from the SVD / QR of the module's base weight, and the base weight is replaced by the
// residual W - s B A, so the model computes what it did before training (PEFT's
// pissa_init / olora_init in tuners/lora/layer.py; the numerics are methods/pissa/).
// The pass does this whenever it has the weights: for a fresh run (A, B = the init) and
// for a loaded adapter (the file's A and B shadow the init, the residual is recomputed
// from the original weight, exactly what PEFT's loader does). The initial A0, B0 stay in
// the store under `initial:<name>`, for saving the trained adapter converted to plain
// LoRA on the original weights (peft.ts).
import type { Graph } from '../../ir/graph.ts';
import { tensor } from '../../ir/tensor.ts';
import { MapWeightStore, type WeightStore } from '../../ir/weights.ts';
import { seedOf } from '../../util/rng.ts';
import { adapterSites, baseWeightNode } from '../adapters/sites.ts';
import { oloraInit, pissaInit } from '../pissa/index.ts';
import type { LoraData } from './branch.ts';
import type { LoraOptions } from './options.ts';

export class ResidualInitError extends Error {
  override name = 'ResidualInitError';
}

/** The init rewrites the base weight (PiSSA, OLoRA). */
export function isResidualInit(init: LoraOptions['init_lora_weights']): boolean {
  return (
    typeof init === 'string' && (init === 'pissa' || init === 'olora' || init.startsWith('pissa_niter_'))
  );
}

/** Where the initial A0 / B0 of a residual init are kept in the weight store. */
export const initialName = (param: string) => `initial:${param}`;

export interface ResidualInit {
  /** Residual base weights, by the base weight's name (they shadow the original). */
  readonly residuals: MapWeightStore;
  /** A0 and B0 by param name (below any given A and B) and under initialName(). */
  readonly inits: MapWeightStore;
}

/** The residual init of adapter `o.adapter_name` on every module it targets in `g`. */
export function residualInit(g: Graph, o: LoraOptions, weights: WeightStore): ResidualInit {
  const residuals = new MapWeightStore();
  const inits = new MapWeightStore();
  const init = o.init_lora_weights as string;
  const niter = init.startsWith('pissa_niter_') ? Number(init.slice('pissa_niter_'.length)) : undefined;
  for (const site of adapterSites(g)) {
    if (site.adapter !== o.adapter_name) continue;
    const what = `init_lora_weights "${init}" on ${site.module}`;
    if (site.kind !== 'linear')
      throw new ResidualInitError(
        `${what}: PiSSA/OLoRA initialise linear modules only; leave the embedding out of target_modules`,
      );
    const w = baseWeightNode(g, site);
    if (w.op !== 'param')
      throw new ResidualInitError(
        `${what}: the base weight is a ${w.op} (a 4-bit base); PiSSA/OLoRA on a quantized base (QPiSSA) is not supported yet`,
      );
    const name = String(w.attrs.name);
    const W = residuals.get(name) ?? weights.get(name);
    if (!W) throw new ResidualInitError(`${what}: the base weight '${name}' is not in the weight store`);
    const { A: An, B: Bn, scale } = site.data as LoraData;
    const [r, inF] = An.type.shape;
    const out = W.shape[0];
    const W64 = Float64Array.from(W.data);
    const res =
      init === 'olora'
        ? oloraInit(W64, out, inF, r, scale)
        : pissaInit(W64, out, inF, r, scale, niter === undefined ? {} : { niter, seed: seedOf(name) });
    residuals.set(name, tensor(W.dtype, W.shape, res.residual));
    for (const [p, data, shape] of [
      [String(An.attrs.name), res.A, [r, inF]],
      [String(Bn.attrs.name), res.B, [out, r]],
    ] as const) {
      const t = tensor('f32', [...shape], data);
      inits.set(p, t);
      inits.set(initialName(p), t);
    }
  }
  return { residuals, inits };
}
