// AdaLoRA's host-side part of a training run: PEFT's AdaLoraModel.update_and_allocate,
// called by the trainer after every optimizer step (after optimizer.step(), before
// zero_grad(), as PEFT's docstring asks), with global_step = the steps done before it:
// - global_step < total_step - tfinal: the budget from budget_schedule; on masking steps
//   (every deltaT) mask_to_budget: the triplets whose score is <= the budget's threshold
//   get E = 0, and rank_pattern records which were kept;
// - global_step == total_step - tfinal: the final allocation (force_mask);
// - after it: mask_using_rank_pattern every step (the final pattern holds: E rows re-zeroed).
// The importance EMAs are updated inside the compiled step (allocator.ts); this reads only
// their per-triplet scores.
import type { Graph } from '../../ir/graph.ts';
import { tensor } from '../../ir/tensor.ts';
import { stateName } from '../../passes/optimizer/types.ts';
import { adapterSites } from '../adapters/sites.ts';
import type { MethodSession, StepContext } from '../registry.ts';
import { type Budgets, budgetSchedule, maskThreshold, TRIPLET_SCORE, tripletScores } from './allocator.ts';
import type { AdaLoraOptions } from './options.ts';
import { type AdaLoraData, adaloraStructure } from './structure.ts';

interface Triplets {
  readonly module: string;
  readonly A: string;
  readonly E: string;
  readonly B: string;
  readonly r: number;
}

/** This adapter's modules in the graph, in PEFT's order (sorted names, as _set_budget_scheduler sorts). */
export function adaloraModules(g: Graph, adapter: string): Triplets[] {
  return adapterSites(g)
    .filter((s) => s.structure === adaloraStructure && s.adapter === adapter)
    .map((s) => {
      const d = s.data as AdaLoraData;
      return {
        module: s.module,
        A: String(d.A.attrs.name),
        E: String(d.E.attrs.name),
        B: String(d.B.attrs.name),
        r: d.A.type.shape[0],
      };
    })
    .sort((a, b) => (a.module < b.module ? -1 : a.module > b.module ? 1 : 0));
}

export type RankPattern = Record<string, boolean[]>;

export function startAllocation(
  g: Graph,
  o: AdaLoraOptions,
  ctx: {
    readonly steps: number;
    readonly state?: Record<string, unknown>;
    readonly log: (line: string) => void;
  },
): MethodSession<AdaLoraOptions> {
  const modules = adaloraModules(g, o.adapter_name);
  const bgt: Budgets = { init: modules.reduce((s, m) => s + m.r, 0), target: o.target_r * modules.length };
  let pattern = (ctx.state?.rank_pattern as RankPattern | undefined) ?? null;
  if (ctx.steps !== o.total_step)
    ctx.log(
      `note: adalora total_step is ${o.total_step} but the run trains ${ctx.steps} steps: the budget schedule counts to total_step (PEFT's rule), ` +
        (ctx.steps < o.total_step - o.tfinal
          ? `so it stops at ${budgetSchedule(o, bgt, ctx.steps - 1).budget} of ${bgt.init} triplets, above the target ${bgt.target}`
          : 'and the final allocation holds after it'),
    );

  const readScores = async (read: StepContext['readParam'], name: string) =>
    (await read(stateName(TRIPLET_SCORE, name))).data;

  /** mask_to_budget: zero E below the threshold; returns the kept masks. */
  const maskToBudget = async (c: StepContext, budget: number): Promise<RankPattern> => {
    const scores = new Map<string, Float32Array>();
    for (const m of modules) {
      const [a, e, b] = await Promise.all([m.A, m.E, m.B].map((n) => readScores(c.readParam, n)));
      scores.set(m.module, tripletScores(e, a, b));
    }
    const all = Float32Array.from([...scores.values()].flatMap((s) => [...s]));
    const threshold = maskThreshold(all, bgt.init - budget);
    const next: RankPattern = {};
    for (const m of modules) {
      const keep = [...scores.get(m.module)!].map((s) => !(s <= threshold));
      next[m.module] = keep;
      await applyMask(c, m, keep);
    }
    return next;
  };

  const applyMask = async (c: StepContext, m: Triplets, keep: readonly boolean[]) => {
    const E = await c.readParam(m.E);
    if (keep.every((k, i) => k || E.data[i] === 0)) return;
    const data = Float32Array.from(E.data, (v, i) => (keep[i] ? v : 0));
    await c.writeParam(m.E, tensor(E.dtype, E.shape, data));
  };

  const kept = (p: RankPattern) => Object.values(p).reduce((s, k) => s + k.filter(Boolean).length, 0);
  let logged = false;

  return {
    afterStep: async (c) => {
      const g = c.step - 1;
      const end = o.total_step - o.tfinal;
      if (g < end) {
        const { budget, mask } = budgetSchedule(o, bgt, g);
        if (mask) {
          pattern = await maskToBudget(c, budget);
          if (!logged)
            c.log(
              `adalora: budget ${budget} of ${bgt.init} triplets at step ${c.step}, shrinking to ${bgt.target} by step ${end}`,
            );
          logged = true;
        }
        return { adalora_budget: budget };
      }
      if (g === end) {
        pattern = await maskToBudget(c, bgt.target);
        c.log(
          `adalora: final allocation at step ${c.step}: ${kept(pattern)} of ${bgt.init} triplets kept (target ${bgt.target})`,
        );
        return { adalora_budget: bgt.target };
      }
      if (pattern) for (const m of modules) if (pattern[m.module]) await applyMask(c, m, pattern[m.module]);
      return { adalora_budget: bgt.target };
    },
    state: () => (pattern ? { rank_pattern: pattern } : {}),
    // PEFT saves the last allocation as rank_pattern (keys '<m>.lora_E'); none yet: the recipe's.
    saveOptions: () =>
      pattern
        ? {
            ...o,
            rank_pattern: Object.fromEntries(Object.entries(pattern).map(([m, k]) => [`${m}.lora_E`, k])),
          }
        : o,
  };
}
