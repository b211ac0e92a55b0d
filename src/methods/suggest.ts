// "did you mean": the closest known name by edit distance, when it is close enough.

export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  let pprev = prev;
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
      // A swap of two neighbours counts as one edit (optimal string alignment).
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        cur[j] = Math.min(cur[j], pprev[j - 2] + 1);
    }
    pprev = prev;
    prev = cur;
  }
  return prev[b.length];
}

/** Other words people use for a key (PEFT's `r` is "the rank"). */
const ALIASES: Readonly<Record<string, readonly string[]>> = {
  r: ['rank'],
  lora_alpha: ['alpha'],
  lora_dropout: ['dropout'],
  target_modules: ['targets', 'target_module', 'modules'],
  weight_decay: ['decay', 'wd'],
  lr: ['learning_rate'],
};

/** The closest of `known` to `word` (at most a third of its length away, min 2), or undefined. */
export function closest(word: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Number.POSITIVE_INFINITY;
  for (const k of known) {
    const d = Math.min(
      ...[k, ...(ALIASES[k] ?? [])].map((x) => editDistance(word.toLowerCase(), x.toLowerCase())),
    );
    if (d < bestD) {
      bestD = d;
      best = k;
    }
  }
  return bestD <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}
