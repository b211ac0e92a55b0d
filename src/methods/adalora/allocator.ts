// PEFT 0.21's RankAllocator (tuners/adalora/layer.py), split where it runs:
// - in the compiled step (observer, called by the optimizer pass right after each param's
//   update): update_ipt's ipt = |p * grad| with the updated p and that step's gradient,
//   exp_avg_ipt = beta1 exp_avg_ipt + (1 - beta1) ipt, exp_avg_unc = beta2 exp_avg_unc +
//   (1 - beta2) |ipt - exp_avg_ipt|, kept as optimizer states (so checkpoints hold them),
//   plus each param's per-triplet score (its element scores exp_avg_ipt * exp_avg_unc
//   averaged as mask_to_budget averages them: A over its row, B over its column, E as is);
// - on the host (the method's session, session.ts): budget_schedule and mask_to_budget
//   from those scores.
// `globalStep` is PEFT's global_step argument of update_and_allocate: 0 at the first step
// (PEFT's AdaLoRA example and the original code call it with the count of steps done
// before this one).
import type { Value } from '../../ir/builder.ts';
import type { UpdateObserver } from '../../passes/optimizer/types.ts';
import type { AdaLoraOptions } from './options.ts';

export const EXP_AVG_IPT = 'adalora_exp_avg_ipt';
export const EXP_AVG_UNC = 'adalora_exp_avg_unc';
/** A param's per-triplet score, [r]: what mask_to_budget reads of it. */
export const TRIPLET_SCORE = 'adalora_score';

/** `<m>.lora_A|lora_B|lora_E.<adapter>` -> module and part. */
export function svdParam(
  name: string,
  adapter: string,
): { module: string; part: 'A' | 'B' | 'E' } | undefined {
  const suffix = `.${adapter}`;
  if (!name.endsWith(suffix)) return undefined;
  const m = /^(.+)\.lora_([ABE])$/.exec(name.slice(0, -suffix.length));
  return m ? { module: m[1], part: m[2] as 'A' | 'B' | 'E' } : undefined;
}

/** The in-step half of the allocator, for the optimizer pass (MethodTraining.observe). */
export function importanceObserver(o: AdaLoraOptions): UpdateObserver {
  return ({ b, param, next, grad, step, state, assignState }) => {
    const which = svdParam(String(param.attrs.name), o.adapter_name);
    if (!which) return;
    const ipt = b.unary('abs', b.mul(next, grad));
    const e0 = state(EXP_AVG_IPT);
    const u0 = state(EXP_AVG_UNC);
    const e1 = b.add(b.scale(e0, o.beta1), b.scale(ipt, 1 - o.beta1));
    const u1 = b.add(b.scale(u0, o.beta2), b.scale(b.unary('abs', b.sub(ipt, e1)), 1 - o.beta2));
    // update_and_allocate updates only while global_step < total_step - tfinal; step is t = global_step + 1.
    const live = b.greater(b.const(o.total_step - o.tfinal + 1), step);
    const e = b.where(live, e1, e0);
    const u = b.where(live, u1, u0);
    assignState(EXP_AVG_IPT, e);
    assignState(EXP_AVG_UNC, u);
    const s = b.mul(e1, u1);
    const [r] = which.part === 'B' ? [param.type.shape[1]] : [param.type.shape[0]];
    const score: Value =
      which.part === 'A' ? b.mean(s, [1]) : which.part === 'B' ? b.mean(s, [0]) : b.reshape(s, [r]);
    // Frozen with the EMAs. (Reading the old score also keeps the state a param that passes
    // after the optimizer see used: a write-only state is dropped by the rewrite engine's
    // dead-code removal, e.g. under qlora's fuse-dequant.)
    assignState(TRIPLET_SCORE, b.where(live, score, state(TRIPLET_SCORE, [r])));
  };
}

/** Budgets in triplets: init_bgt = sum of the modules' ranks, target_bgt = target_r x modules. */
export interface Budgets {
  readonly init: number;
  readonly target: number;
}

/** budget_schedule(step): the budget and whether this step masks. */
export function budgetSchedule(
  o: Pick<AdaLoraOptions, 'tinit' | 'tfinal' | 'total_step' | 'deltaT'>,
  bgt: Budgets,
  step: number,
): { budget: number; mask: boolean } {
  if (step <= o.tinit) return { budget: bgt.init, mask: false };
  if (step > o.total_step - o.tfinal) return { budget: bgt.target, mask: true };
  const mul = 1 - (step - o.tinit) / (o.total_step - o.tfinal - o.tinit);
  // Python's int() truncates toward zero.
  return { budget: Math.trunc((bgt.init - bgt.target) * mul ** 3 + bgt.target), mask: step % o.deltaT === 0 };
}

/** One module's triplet scores as _combine_ipt adds them in float32: s(E) + (mean s(A) + mean s(B)). */
export function tripletScores(
  e: ArrayLike<number>,
  a: ArrayLike<number>,
  b: ArrayLike<number>,
): Float32Array {
  const out = new Float32Array(e.length);
  for (let i = 0; i < e.length; i++) out[i] = Math.fround(e[i] + Math.fround(a[i] + b[i]));
  return out;
}

/**
 * mask_to_budget's threshold: torch.kthvalue(all scores, k = init_bgt - budget), the k-th
 * smallest (1-based). Triplets with a score <= it are masked.
 */
export function maskThreshold(all: ArrayLike<number>, k: number): number {
  if (!Number.isInteger(k) || k < 1 || k > all.length)
    throw new RangeError(
      `adalora: cannot mask ${k} of ${all.length} triplets (k must be in 1..${all.length})`,
    );
  return Float32Array.from(all).sort()[k - 1];
}
