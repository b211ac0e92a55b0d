// Next-token choice in Hugging Face's order (METHODS.md "Generation"; transformers'
// RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper, TopKLogitsWarper,
// TopPLogitsWarper): repetition penalty, temperature, top-k, top-p, then a draw from
// the softmax with a seeded generator, so a seeded run repeats exactly. Greedy (argmax
// of the penalized logits) at temperature 0, or when no sampling option is given.
import { Rng } from '../util/rng.ts';

export interface SamplingOptions {
  /** 0 = greedy; absent = 1 when top-k or top-p is given, else greedy. */
  readonly temperature?: number;
  /** Keep the k most likely tokens (ties with the k-th kept, as HF); 0 or absent = off. */
  readonly topK?: number;
  /** Keep the smallest set of most likely tokens whose probability reaches p (at least one); 1 or absent = off. */
  readonly topP?: number;
  /** HF's repetition penalty over the prompt and the generated tokens; 1 or absent = off. */
  readonly repetitionPenalty?: number;
  /** Seed of the draws (default 0). */
  readonly seed?: number;
}

/** True when the options ask for argmax decoding (no draw). */
export function isGreedy(o: SamplingOptions): boolean {
  if (o.temperature === 0) return true;
  return o.temperature === undefined && o.topK === undefined && o.topP === undefined;
}

/**
 * The logits after every processor HF applies, as f64: filtered tokens are -Infinity.
 * `seen` is every token of the row so far (prompt and generated).
 */
export function processLogits(
  logits: ArrayLike<number>,
  seen: Iterable<number>,
  o: SamplingOptions,
): Float64Array {
  const x = Float64Array.from(logits);
  const r = o.repetitionPenalty ?? 1;
  if (r !== 1) {
    for (const id of new Set(seen)) {
      if (id < 0 || id >= x.length) continue;
      x[id] = x[id] < 0 ? x[id] * r : x[id] / r;
    }
  }
  if (isGreedy(o)) return x;
  const t = o.temperature ?? 1;
  if (t !== 1) for (let i = 0; i < x.length; i++) x[i] /= t;
  const k = Math.min(o.topK ?? 0, x.length);
  if (k > 0 && k < x.length) {
    const kth = Float64Array.from(x).sort()[x.length - k]; // ascending: the k-th largest
    for (let i = 0; i < x.length; i++) if (x[i] < kth) x[i] = Number.NEGATIVE_INFINITY;
  }
  const p = o.topP ?? 1;
  if (p < 1) {
    // HF: sort ascending, drop tokens whose cumulative probability is <= 1 - p; the
    // most likely token always stays.
    const probs = softmax(x);
    const order = Array.from(x.keys()).sort((a, b) => x[a] - x[b] || b - a);
    let cum = 0;
    for (let j = 0; j < order.length - 1; j++) {
      cum += probs[order[j]];
      if (cum <= 1 - p) x[order[j]] = Number.NEGATIVE_INFINITY;
      else break;
    }
  }
  return x;
}

export function softmax(x: ArrayLike<number>): Float64Array {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < x.length; i++) if (x[i] > max) max = x[i];
  const out = new Float64Array(x.length);
  let sum = 0;
  for (let i = 0; i < x.length; i++) {
    out[i] = x[i] === Number.NEGATIVE_INFINITY ? 0 : Math.exp(x[i] - max);
    sum += out[i];
  }
  for (let i = 0; i < x.length; i++) out[i] /= sum;
  return out;
}

/** Index of the largest value (the first on ties, as torch.argmax). */
export function argmax(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

/** Chooses the next tokens of one row; its own generator, so rows do not disturb each other's draws. */
export class Sampler {
  private readonly rng: Rng;
  constructor(
    readonly options: SamplingOptions,
    /** Distinguishes the rows of one seeded run. */
    stream = 0,
  ) {
    this.rng = new Rng(options.seed ?? 0).fork(`row${stream}`);
  }

  next(logits: ArrayLike<number>, seen: Iterable<number>): number {
    const x = processLogits(logits, seen, this.options);
    if (isGreedy(this.options)) return argmax(x);
    const probs = softmax(x);
    const u = this.rng.next();
    let cum = 0;
    let lastKept = argmax(probs);
    for (let i = 0; i < probs.length; i++) {
      if (probs[i] === 0) continue;
      lastKept = i;
      cum += probs[i];
      if (u < cum) return i;
    }
    return lastKept; // rounding left u above the total
  }
}
