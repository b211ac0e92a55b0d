// The host side of GaLore's projector refresh. The official optimizer takes the SVD of the
// gradient BEFORE the update of every step t with (t - 1) % update_proj_gap == 0 (its
// `state["step"] % gap` counts earlier updates: step 0, gap, 2 gap, ...), and that step's
// update already uses the new P. The step graph cannot take an SVD, so before such a step
// this session runs a probe: the same step's batches once more through the same compiled
// step (same feeds, so the same gradient; dropout masks follow the step feed) with
// `optimizer.galore_hold` = 1, which keeps every GaLore weight as it was, and reads the
// `grad:<w>` outputs; the low-rank states the probe moved (moments, P) are put back from a
// host copy (they are small: that is GaLore's point). Then the SVD (float64) gives P, written
// into the optimizer state, and the real step runs with it: exactly the official order.
// Cost: one extra forward/backward every update_proj_gap steps (0.5% at the default 200).

import type { Graph } from '../../ir/graph.ts';
import { type Tensor, tensor } from '../../ir/tensor.ts';
import { GRAD_PREFIX, stateName } from '../../passes/optimizer/types.ts';
import type { MethodSession } from '../registry.ts';
import type { GaloreOptions } from './options.ts';
import { galoreParams } from './params.ts';
import { projectorsOf } from './projector.ts';
import { HOLD_STATE, projectorKinds } from './rule.ts';

/** Low-rank state kinds a probe may move (GaLoreAdamW's, and the 8-bit ones). */
const MOMENT_KINDS = ['exp_avg', 'exp_avg_sq', 'exp_avg_absmax', 'exp_avg_sq_absmax'];

/** Whether the update of 1-based step t takes a new projector (official: (t - 1) % gap == 0). */
export function refreshesAt(step: number, gap: number): boolean {
  return (step - 1) % gap === 0;
}

/** The mean of the micro-batches' gradients (the gradient the update sees when accumulating). */
function meanOf(parts: readonly Tensor[]): Tensor {
  if (parts.length === 1) return parts[0];
  const out = new Float32Array(parts[0].data.length);
  for (const p of parts) for (let i = 0; i < out.length; i++) out[i] += p.data[i] / parts.length;
  return tensor('f32', parts[0].shape, out);
}

export function startGalore(
  graph: Graph,
  o: GaloreOptions,
  ctx: { readonly stateNames?: readonly string[] },
): MethodSession<GaloreOptions> {
  const params = galoreParams(graph, o);
  const have = new Set(ctx.stateNames ?? []);
  const moved = params.flatMap((p) =>
    [...MOMENT_KINDS, ...projectorKinds(p.projection.side)]
      .map((k) => stateName(k, p.name))
      .filter((n) => have.has(n)),
  );
  let refreshes = 0;
  return {
    beforeStep: async (s) => {
      if (!refreshesAt(s.step, o.update_proj_gap)) return undefined;
      const saved = new Map<string, Tensor>();
      for (const n of moved) saved.set(n, await s.readParam(n));
      await s.writeParam(HOLD_STATE, tensor('f32', [], [1]));
      let runs: readonly Record<string, Tensor>[];
      try {
        runs = await s.probe(params.map((p) => GRAD_PREFIX + p.name));
      } finally {
        await s.writeParam(HOLD_STATE, tensor('f32', [], [0]));
        for (const [n, t] of saved) await s.writeParam(n, t);
      }
      for (const p of params) {
        const g = meanOf(runs.map((r) => r[GRAD_PREFIX + p.name]));
        const kinds = projectorKinds(p.projection.side);
        const mats = projectorsOf(g, p.projection);
        for (let i = 0; i < kinds.length; i++) await s.writeParam(stateName(kinds[i], p.name), mats[i]);
      }
      refreshes++;
      return { galore_refresh: 1 };
    },
    afterStep: async () => undefined,
    state: () => ({ refreshes }),
  };
}
