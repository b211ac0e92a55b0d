// Learning-rate schedules as Hugging Face transformers defines them
// (get_constant_schedule_with_warmup, get_linear_schedule_with_warmup,
// get_cosine_schedule_with_warmup). `k` is the 0-based index of the optimizer
// step, as the HF scheduler sees it: with warmup the first update uses lr 0.

export type ScheduleType = 'constant' | 'linear' | 'cosine';

export interface ScheduleSpec {
  readonly type: ScheduleType;
  readonly warmup_steps?: number;
  /** Cosine cycles (HF default 0.5: one half-cosine from lr to 0). */
  readonly num_cycles?: number;
}

export function lrAt(spec: ScheduleSpec | undefined, baseLr: number, k: number, totalSteps: number): number {
  if (!spec) return baseLr;
  const warmup = spec.warmup_steps ?? 0;
  if (k < warmup) return (baseLr * k) / Math.max(1, warmup);
  switch (spec.type) {
    case 'constant':
      return baseLr;
    case 'linear':
      return baseLr * Math.max(0, (totalSteps - k) / Math.max(1, totalSteps - warmup));
    case 'cosine': {
      const progress = (k - warmup) / Math.max(1, totalSteps - warmup);
      const cycles = spec.num_cycles ?? 0.5;
      return baseLr * Math.max(0, 0.5 * (1 + Math.cos(Math.PI * cycles * 2 * progress)));
    }
  }
}
