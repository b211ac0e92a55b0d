// MaLoRA's rank allocation: which units a target graph has, what a rank of each costs, and
// how many ranks each gets.
//
// Units. With granularity 'matrix' a unit is a targeted linear module [out, in]: one rank
// of it costs in + out parameters (a row of A and a column of B), its full rank is
// min(in, out). With granularity 'head' the attention projections split by head (head size
// D, H = out / D or in / D heads):
//   q_proj, k_proj, v_proj (split 'out'): head h owns rows [h D, (h+1) D) of the output;
//     a rank of it costs in + D (its A row reads the whole input, its B column writes only
//     its own D rows), full rank min(in, D);
//   o_proj (split 'in'): head h owns input columns [h D, (h+1) D); a rank costs D + out
//     (its A row reads only its own D inputs, its B column writes the whole output), full
//     rank min(D, out);
// every other target (the MLP) stays one unit per matrix.
//
// Ranks. cap_u = r_max, or the unit's full rank (at least r_min) when r_max is null;
// w_u = the unit's importance (options.importance, default 1).
//   No budget: r_u = clamp(round(r * w_u / mean(w)), r_min, cap_u)  (uniform r when no
//     importance is given).
//   A budget B (parameters): every unit starts at r_min (the budget must cover that:
//     sum r_min cost_u <= B, else an error says the minimum); then ranks are handed out one
//     at a time, each to the unit with the highest w_u / (r_u + 1) that is below its cap and
//     whose cost still fits in what is left (ties: the earlier unit). This is the
//     highest-averages (D'Hondt) apportionment: ranks proportional to importance, as far as
//     the budget and the caps allow. sum r_u cost_u <= B always.
import type { Graph } from '../../ir/graph.ts';
import { MethodError } from '../registry.ts';
import { expandTargets, patternValue, selectTargets } from '../targets.ts';
import type { MaloraOptions } from './options.ts';

/** How a module splits into heads: by output rows (q/k/v), input columns (o), or not at all. */
export type Split = 'out' | 'in' | 'none';

export interface ModulePlan {
  readonly module: string;
  readonly inF: number;
  readonly outF: number;
  readonly split: Split;
  /** Head size (the module's whole output for split 'none'). */
  readonly headDim: number;
  /** One rank per head, head order (one entry for split 'none'). */
  readonly ranks: readonly number[];
}

export interface Allocation {
  readonly modules: readonly ModulePlan[];
  /** Free adapter parameters: sum over units of rank x cost (allocate.ts header). */
  readonly params: number;
}

interface Unit {
  readonly cost: number;
  readonly cap: number;
  readonly weight: number;
}

const OUT_SPLIT = new Set(['q_proj', 'k_proj', 'v_proj']);

/** The head split of a module by its last name part (granularity 'head'). */
export function headSplit(module: string): Split {
  const leaf = module.slice(module.lastIndexOf('.') + 1);
  return OUT_SPLIT.has(leaf) ? 'out' : leaf === 'o_proj' ? 'in' : 'none';
}

/** Parameters one rank of a head (or matrix) costs. */
export function unitCost(split: Split, inF: number, outF: number, headDim: number): number {
  return split === 'out' ? inF + headDim : split === 'in' ? headDim + outF : inF + outF;
}

/** The free parameters of a module plan (what the budget counts). */
export function modulePlanParams(p: ModulePlan): number {
  const c = unitCost(p.split, p.inF, p.outF, p.headDim);
  return p.ranks.reduce((s, r) => s + r * c, 0);
}

/** The head size: the option, else the (single) head size of the graph's attention ops. */
function resolveHeadDim(g: Graph, o: MaloraOptions): number {
  if (o.head_dim !== null) return o.head_dim;
  const dims = new Set(g.ofOp('attention').map((n) => g.node(n.inputs[0]).type.shape.at(-1)!));
  if (dims.size === 1) return [...dims][0];
  throw new MethodError(
    dims.size === 0
      ? 'malora granularity "head": the graph has no attention op to read the head size from; set head_dim'
      : `malora granularity "head": the attention ops have different head sizes (${[...dims].join(', ')}); set head_dim`,
  );
}

/** Per-unit ranks (see the header); `what` names the adapter in errors. */
export function allocateRanks(
  units: readonly Unit[],
  o: Pick<MaloraOptions, 'r' | 'r_min' | 'budget'>,
  what = 'malora',
): number[] {
  if (o.budget === null) {
    const mean = units.reduce((s, u) => s + u.weight, 0) / Math.max(units.length, 1);
    return units.map((u) =>
      Math.min(u.cap, Math.max(o.r_min, mean > 0 ? Math.round((o.r * u.weight) / mean) : o.r)),
    );
  }
  const ranks = units.map(() => o.r_min);
  const minimum = units.reduce((s, u) => s + o.r_min * u.cost, 0);
  if (minimum > o.budget)
    throw new MethodError(
      `${what}: "budget" ${o.budget} is below the ${minimum} parameters that r_min ${o.r_min} on every unit (${units.length}) needs; raise budget (or r_min lower, or target fewer modules)`,
    );
  let left = o.budget - minimum;
  for (;;) {
    let best = -1;
    let bestQ = 0;
    for (let i = 0; i < units.length; i++) {
      const u = units[i];
      if (ranks[i] >= u.cap || u.cost > left || u.weight <= 0) continue;
      const q = u.weight / (ranks[i] + 1);
      if (best < 0 || q > bestQ) [best, bestQ] = [i, q];
    }
    if (best < 0) return ranks;
    ranks[best]++;
    left -= units[best].cost;
  }
}

/** The allocation for the modules `o` targets in `g`. */
export function maloraAllocation(g: Graph, o: MaloraOptions): Allocation {
  const what = `malora adapter '${o.adapter_name}'`;
  const targets = selectTargets(g, expandTargets(g, o), ['linear', 'embedding']);
  const emb = targets.find((n) => n.op === 'embedding');
  if (emb)
    throw new MethodError(
      `${what}: target_modules names the embedding ${emb.scope}; malora adapts linear modules only (use lora for embeddings)`,
    );
  const headDim = o.granularity === 'head' ? resolveHeadDim(g, o) : 0;
  const shapes = targets.map((n) => {
    const [outF, inF] = g.node(n.inputs[1]).type.shape;
    const split = o.granularity === 'head' ? headSplit(n.scope) : 'none';
    const D = split === 'none' ? outF : headDim;
    const split_ = split === 'out' ? outF : split === 'in' ? inF : D;
    if (split_ % D !== 0)
      throw new MethodError(
        `${what}: ${n.scope} has ${split_} ${split === 'out' ? 'outputs' : 'inputs'}, not a multiple of head_dim ${D}; set head_dim to the model's head size`,
      );
    return { module: n.scope, inF, outF, split, headDim: D, heads: split_ / D };
  });
  const units: Unit[] = [];
  for (const s of shapes) {
    const w = patternValue(o.importance, s.module, 1 as number | number[]);
    if (Array.isArray(w) && (s.split === 'none' || w.length !== s.heads))
      throw new MethodError(
        s.split === 'none'
          ? `${what}: importance for ${s.module} is a list, but this module is not split by head (only q_proj, k_proj, v_proj and o_proj are); give one number`
          : `${what}: importance for ${s.module} lists ${w.length} heads; the module has ${s.heads} (head_dim ${s.headDim})`,
      );
    const full =
      s.split === 'out'
        ? Math.min(s.inF, s.headDim)
        : s.split === 'in'
          ? Math.min(s.headDim, s.outF)
          : Math.min(s.inF, s.outF);
    const cap = o.r_max ?? Math.max(o.r_min, full);
    const cost = unitCost(s.split, s.inF, s.outF, s.headDim);
    for (let h = 0; h < s.heads; h++) units.push({ cost, cap, weight: Array.isArray(w) ? w[h] : w });
  }
  const ranks = allocateRanks(units, o, what);
  let at = 0;
  const modules = shapes.map(({ heads, ...s }) => {
    const p: ModulePlan = { ...s, ranks: ranks.slice(at, at + heads) };
    at += heads;
    return p;
  });
  return { modules, params: modules.reduce((t, p) => t + modulePlanParams(p), 0) };
}
