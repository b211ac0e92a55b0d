// Inverted dropout with a counter-based mask, so CPU and WebGPU agree bit for bit:
// element i is kept iff hash32(seed ^ imul(step, 0x9e3779b1), i) >= floor(p * 2^32);
// kept values are x / (1 - p), dropped ones 0. step is 0 without a step input.
// p = 0 keeps everything (every hash is >= 0): the identity.
import type { OpAttrs } from '../../ir/ops/index.ts';
import { hash32 } from '../../util/rng.ts';
import { attrsOf, type CpuKernel, empty } from './kernel.ts';

/** The per-(seed, step) key that hash32 mixes with the element index. */
export function dropoutKey(seed: number, step: number): number {
  return (seed ^ Math.imul(step, 0x9e3779b1)) >>> 0;
}

/** Threshold below which a hash drops the element. */
export function dropoutThreshold(p: number): number {
  return Math.floor(p * 2 ** 32);
}

/** Whether element `index` survives dropout with probability `p` at (seed, step). */
export function dropoutKeep(seed: number, step: number, index: number, p: number): boolean {
  return hash32(dropoutKey(seed, step), index) >= dropoutThreshold(p);
}

export const dropout: CpuKernel = ([x, step], ctx) => {
  const { p, seed } = attrsOf<OpAttrs<'dropout'>>(ctx);
  const key = dropoutKey(seed, step ? step.data[0] : 0);
  const threshold = dropoutThreshold(p);
  const keepScale = 1 / (1 - p);
  const out = empty(ctx, x.dtype, x.shape);
  for (let i = 0; i < x.data.length; i++) {
    out.data[i] = hash32(key, i) >= threshold ? x.data[i] * keepScale : 0;
  }
  return out;
};
