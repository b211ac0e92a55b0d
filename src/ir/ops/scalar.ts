// Scalar functions JavaScript lacks: erf (for exact GELU).

const TWO_OVER_SQRT_PI = 1.1283791670955126;

/**
 * erf(x) to about 1e-15 absolute: the Maclaurin series for |x| < 2 (terms stay below
 * ~3, so cancellation is negligible), the continued fraction of erfc (60 terms) beyond.
 */
export function erf(x: number): number {
  if (Number.isNaN(x)) return x;
  const ax = Math.abs(x);
  if (ax < 2) {
    // erf(x) = 2/sqrt(pi) * sum_n (-1)^n x^(2n+1) / (n! (2n+1))
    const x2 = x * x;
    let term = x; // (-1)^n x^(2n+1) / n!
    let sum = x;
    for (let n = 1; n < 100; n++) {
      term *= -x2 / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    return TWO_OVER_SQRT_PI * sum;
  }
  if (ax > 6) return Math.sign(x); // erfc(6) ~ 2e-17
  // erfc(x) = exp(-x^2)/sqrt(pi) / (x + (1/2)/(x + 1/(x + (3/2)/(x + 2/(x + ...))))), evaluated from the tail.
  let f = ax;
  for (let k = 60; k >= 1; k--) f = ax + k / 2 / f;
  const erfc = Math.exp(-ax * ax) / (Math.sqrt(Math.PI) * f);
  return Math.sign(x) * (1 - erfc);
}

/** GELU: exact 0.5 x (1 + erf(x / sqrt 2)), or PyTorch's tanh approximation. */
export function gelu(x: number, approximate: 'none' | 'tanh'): number {
  if (approximate === 'tanh') {
    const inner = Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x);
    return 0.5 * x * (1 + Math.tanh(inner));
  }
  return 0.5 * x * (1 + erf(x / Math.SQRT2));
}
