// Reductions over axes, softmax-like ops along one axis, norms over the last axis,
// and cross-entropy. Accumulation happens in JS numbers (f64); the result is then
// stored in the run's precision.
import type { OpAttrs } from '../../ir/ops/index.ts';
import { reducedShape } from '../../ir/ops/reduce.ts';
import { normAxis, numel } from '../../ir/shape.ts';
import type { Tensor } from '../../ir/tensor.ts';
import { attrsOf, type CpuKernel, empty, type KernelContext } from './kernel.ts';
import { aroundAxis, broadcastIndex } from './util.ts';

type ReduceAttrs = OpAttrs<'sum'>;

/** Folds every input element into its output slot; the slot of each input is found by broadcasting back. */
function reduceInto(x: Tensor, ctx: KernelContext, init: number, fold: (acc: number, v: number) => number) {
  const { axes } = attrsOf<ReduceAttrs>(ctx);
  const kept = reducedShape(x.shape, axes, true);
  const slot = broadcastIndex(kept, x.shape);
  const acc = new Float64Array(numel(ctx.node.type.shape)).fill(init);
  for (let i = 0; i < x.data.length; i++) acc[slot[i]] = fold(acc[slot[i]], x.data[i]);
  return { acc, count: x.data.length / Math.max(acc.length, 1) };
}

function store(acc: Float64Array, ctx: KernelContext): Tensor {
  const out = empty(ctx, ctx.node.type.dtype, ctx.node.type.shape);
  out.data.set(acc);
  return out;
}

export const sum: CpuKernel = ([x], ctx) => store(reduceInto(x, ctx, 0, (a, v) => a + v).acc, ctx);

export const mean: CpuKernel = ([x], ctx) => {
  const { acc, count } = reduceInto(x, ctx, 0, (a, v) => a + v);
  return store(
    acc.map((s) => s / count),
    ctx,
  );
};

// NaN propagates (as torch.amax); an empty reduction gives -Infinity.
export const max: CpuKernel = ([x], ctx) =>
  store(reduceInto(x, ctx, Number.NEGATIVE_INFINITY, (a, v) => (v > a || Number.isNaN(v) ? v : a)).acc, ctx);

/**
 * A line's max and the sum of exp(x - max) over its `n` elements at `base`, `base + stride`,
 * ...: what a stable softmax, cross-entropy and its gradient each start from.
 */
function maxAndSumExp(data: ArrayLike<number>, base: number, n: number, stride = 1): [number, number] {
  let m = Number.NEGATIVE_INFINITY;
  for (let k = 0; k < n; k++) m = Math.max(m, data[base + k * stride]);
  let s = 0;
  for (let k = 0; k < n; k++) s += Math.exp(data[base + k * stride] - m);
  return [m, s];
}

/** Stable softmax (or log-softmax) of each line along `axis`: subtract the line's max first. */
function softmaxLike(log: boolean): CpuKernel {
  return ([x], ctx) => {
    const { axis } = attrsOf<OpAttrs<'softmax'>>(ctx);
    const [outer, n, inner] = aroundAxis(x.shape, normAxis(axis, x.shape.length));
    const out = empty(ctx, x.dtype, x.shape);
    for (let o = 0; o < outer; o++) {
      for (let j = 0; j < inner; j++) {
        const base = o * n * inner + j;
        const [m, s] = maxAndSumExp(x.data, base, n, inner);
        const logS = Math.log(s);
        for (let k = 0; k < n; k++) {
          const z = x.data[base + k * inner] - m;
          out.data[base + k * inner] = log ? z - logS : Math.exp(z) / s;
        }
      }
    }
    return out;
  };
}

export const softmax = softmaxLike(false);
export const log_softmax = softmaxLike(true);

/** rmsnorm: x * 1/sqrt(mean(x^2) + eps) * w over the last axis (LlamaRMSNorm). */
export const rmsnorm: CpuKernel = ([x, w], ctx) => {
  const { eps } = attrsOf<OpAttrs<'rmsnorm'>>(ctx);
  const d = x.shape[x.shape.length - 1];
  const out = empty(ctx, x.dtype, x.shape);
  for (let r = 0; r < x.data.length / d; r++) {
    let ss = 0;
    for (let i = 0; i < d; i++) ss += x.data[r * d + i] ** 2;
    const inv = 1 / Math.sqrt(ss / d + eps);
    for (let i = 0; i < d; i++) out.data[r * d + i] = x.data[r * d + i] * inv * w.data[i];
  }
  return out;
};

/** layernorm over the last axis with the biased variance (as PyTorch); bias optional. */
export const layernorm: CpuKernel = ([x, w, b], ctx) => {
  const { eps } = attrsOf<OpAttrs<'layernorm'>>(ctx);
  const d = x.shape[x.shape.length - 1];
  const out = empty(ctx, x.dtype, x.shape);
  for (let r = 0; r < x.data.length / d; r++) {
    let s = 0;
    for (let i = 0; i < d; i++) s += x.data[r * d + i];
    const mu = s / d;
    let v = 0;
    for (let i = 0; i < d; i++) v += (x.data[r * d + i] - mu) ** 2;
    const inv = 1 / Math.sqrt(v / d + eps);
    for (let i = 0; i < d; i++) {
      out.data[r * d + i] = (x.data[r * d + i] - mu) * inv * w.data[i] + (b ? b.data[i] : 0);
    }
  }
  return out;
};

/**
 * Softmax cross-entropy of logits [N, V] against i32 labels [N]. Rows labelled
 * ignore_index count for nothing: 'none' gives 0 there, 'mean' divides by the number
 * of counted rows (none counted -> NaN, as PyTorch). Any other label outside [0, V) is an error.
 */
export const cross_entropy: CpuKernel = ([logits, labels], ctx) => {
  const { ignore_index, reduction } = attrsOf<OpAttrs<'cross_entropy'>>(ctx);
  const [n, v] = logits.shape;
  const losses = new Float64Array(n);
  let total = 0;
  let counted = 0;
  for (let r = 0; r < n; r++) {
    const label = labels.data[r];
    if (label === ignore_index) continue;
    if (!(label >= 0 && label < v)) {
      throw new Error(
        `cross_entropy label ${label} in row ${r} is outside [0, ${v}) and is not ignore_index (${ignore_index})`,
      );
    }
    const [m, s] = maxAndSumExp(logits.data, r * v, v);
    losses[r] = m + Math.log(s) - logits.data[r * v + label];
    total += losses[r];
    counted++;
  }
  if (reduction === 'none') return store(losses, ctx);
  return store(Float64Array.of(reduction === 'mean' ? total / counted : total), ctx);
};

export const cross_entropy_grad: CpuKernel = ([logits, labels, cot], ctx) => {
  const { ignore_index, reduction } = attrsOf<OpAttrs<'cross_entropy_grad'>>(ctx);
  const [n, v] = logits.shape;
  let counted = 0;
  for (let r = 0; r < n; r++) if (labels.data[r] !== ignore_index) counted++;
  const out = new Float64Array(n * v);
  for (let r = 0; r < n; r++) {
    const label = labels.data[r];
    if (label === ignore_index) continue;
    // Nothing counted: the loss is NaN (PyTorch); the gradient stays finite (every row is 0).
    const g =
      reduction === 'none'
        ? cot.data[r]
        : reduction === 'sum'
          ? cot.data[0]
          : cot.data[0] / Math.max(counted, 1);
    const [m, s] = maxAndSumExp(logits.data, r * v, v);
    for (let j = 0; j < v; j++)
      out[r * v + j] = (Math.exp(logits.data[r * v + j] - m) / s - (j === label ? 1 : 0)) * g;
  }
  return store(out, ctx);
};
