// GoRA's rank allocation (official get_allocated_rank, "moderate" strategy, no feature
// smoothing): the budget is what rank-r LoRA on every target costs,
// total = sum_i (in_i + out_i) * r; each weight gets the share p_i of its importance,
// rank_i = floor(round(total * p_i) / (in_i + out_i)), clamped to [min_rank, max_rank].
// Rounding: round() adds at most half a parameter per weight and floor() only removes, so
// before the clamp sum_i rank_i (in_i + out_i) <= total + n / 2; the min_rank floor is the
// only other way over the budget (it lifts a rank, max_rank only lowers one).

export interface AllocationTarget {
  readonly module: string;
  readonly inFeatures: number;
  readonly outFeatures: number;
  /** The importance: one number, or two (the "average of two" types, each normalized). */
  readonly importance: number | readonly [number, number];
}

export interface AllocationOptions {
  /** The nominal rank r (the budget is rank-r LoRA on every target). */
  readonly r: number;
  readonly minRank: number;
  readonly maxRank: number;
  readonly softmax: boolean;
  readonly temperature: number;
}

export interface Allocation {
  /** Rank by module; 0 leaves the module without an adapter. */
  readonly ranks: Map<string, number>;
  /** sum_i (in_i + out_i) * r */
  readonly budget: number;
  /** sum_i (in_i + out_i) * rank_i */
  readonly params: number;
  /** The normalized importance p_i by module (sums to 1). */
  readonly shares: Map<string, number>;
}

/** p_i = I_i / sum I, or softmax(((I - min) / (max - min)) / T) (official get_normalized_importances). */
export function normalizeImportances(
  values: readonly number[],
  softmax: boolean,
  temperature: number,
): number[] {
  if (!softmax) {
    const sum = values.reduce((a, b) => a + b, 0);
    if (!(sum > 0)) return values.map(() => 1 / values.length);
    return values.map((v) => v / sum);
  }
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  const span = hi - lo;
  // All equal: torch divides 0 by 0 (NaN); the only sensible share is the uniform one.
  const z = values.map((v) => (span > 0 ? (v - lo) / span / temperature : 0));
  const m = Math.max(...z);
  const e = z.map((x) => Math.exp(x - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / s);
}

/** Python's round(): halves go to the even neighbour. */
function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

export function allocateRanks(targets: readonly AllocationTarget[], o: AllocationOptions): Allocation {
  if (targets.length === 0) throw new RangeError('GoRA: no target weights to allocate ranks to');
  const features = targets.map((t) => t.inFeatures + t.outFeatures);
  const budget = features.reduce((a, f) => a + f * o.r, 0);
  let shares: number[];
  if (targets.every((t) => typeof t.importance === 'number')) {
    shares = normalizeImportances(
      targets.map((t) => t.importance as number),
      o.softmax,
      o.temperature,
    );
  } else {
    const pair = targets.map((t) =>
      typeof t.importance === 'number' ? [t.importance, t.importance] : t.importance,
    );
    const a = normalizeImportances(
      pair.map((p) => p[0]),
      o.softmax,
      o.temperature,
    );
    const b = normalizeImportances(
      pair.map((p) => p[1]),
      o.softmax,
      o.temperature,
    );
    shares = a.map((x, i) => 0.5 * x + 0.5 * b[i]);
  }
  const ranks = new Map<string, number>();
  const shareMap = new Map<string, number>();
  let params = 0;
  targets.forEach((t, i) => {
    const raw = Math.floor(roundHalfEven(budget * shares[i]) / features[i]);
    const rank = Math.min(Math.max(raw, o.minRank), o.maxRank);
    ranks.set(t.module, rank);
    shareMap.set(t.module, shares[i]);
    params += rank * features[i];
  });
  return { ranks, budget, params, shares: shareMap };
}
