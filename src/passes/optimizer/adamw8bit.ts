// bitsandbytes' AdamW8bit (optim/adamw.py -> Optimizer2State 'adam', optim_bits 8) as an
// update rule, and the paged variants' marker. Per step, as kOptimizerStatic8bit2StateBlockwise:
//   m = map1[c1] * absmax1, v = map2[c2] * absmax2           (dequantize, blocks of 256)
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g g
//   p += (-lr * sqrt(1 - b2^t) / (1 - b1^t)) * m / (sqrt(v) + sqrt(1 - b2^t) eps)
//   p *= 1 - lr wd                                            (decay after the step, when wd > 0)
//   absmax = max |.| per block; c = quantize(m / absmax) (signed map, sign kept), v's unsigned.
// Where g is NaN or inf the element's m and v become 0 and p is left as it was.
// Params with fewer than min_8bit_size (4096) elements keep f32 state, updated by the same
// formula (bitsandbytes' 32-bit 'adam' kernel), as Optimizer2State.init_state does.
// The WGSL lowerings of the 8-bit ops register themselves, as qlora's do.
import '../../backends/webgpu/kernels/quant8.ts';
import type { Value } from '../../ir/builder.ts';
import { numel } from '../../ir/shape.ts';
import { blockAbsmaxOf, dequantizeBlockwise8Op, quantizeBlockwise8Op } from './ops8bit.ts';
import type { AdamWOptions } from './rules.ts';
import type { UpdateRule } from './types.ts';

export interface AdamW8bitOptions extends AdamWOptions {
  /** Params with fewer elements keep 32-bit state (bitsandbytes' min_8bit_size, default 4096). */
  readonly minEightBitSize?: number;
}

/** bitsandbytes' state blocksize for the blockwise 8-bit optimizers (fixed there too). */
export const OPTIMIZER_BLOCKSIZE = 256;

/** Whether a param of `n` elements gets 8-bit state. */
export function usesEightBitState(n: number, minEightBitSize = 4096): boolean {
  return n >= minEightBitSize;
}

/** Kinds of the state params: u8 codes (param's shape) and f32 absmax per block. */
export const STATE8 = {
  m: 'exp_avg',
  mAbsmax: 'exp_avg_absmax',
  v: 'exp_avg_sq',
  vAbsmax: 'exp_avg_sq_absmax',
} as const;

export function adamw8bit({ betas: [b1, b2], eps, minEightBitSize = 4096 }: AdamW8bitOptions): UpdateRule {
  return ({ b, param, value, grad, group, lr, step, state, assignState }) => {
    const n = numel(param.type.shape);
    const eight = usesEightBitState(n, minEightBitSize);
    const blocksize = OPTIMIZER_BLOCKSIZE;
    const blocks = [Math.ceil(n / blocksize)];
    let m0: Value;
    let v0: Value;
    if (eight) {
      const codes = (kind: string) => state(kind, param.type.shape, 'u8');
      m0 = dequantizeBlockwise8Op(b, codes(STATE8.m), state(STATE8.mAbsmax, blocks), {
        map: 'signed',
        blocksize,
      });
      v0 = dequantizeBlockwise8Op(b, codes(STATE8.v), state(STATE8.vAbsmax, blocks), {
        map: 'unsigned',
        blocksize,
      });
    } else {
      m0 = state(STATE8.m);
      v0 = state(STATE8.v);
    }
    // g - g is 0 exactly when g is finite.
    const finite = b.equal(b.sub(grad, grad), b.const(0));
    const zero = b.const(0);
    const m = b.where(finite, b.add(b.scale(m0, b1), b.scale(grad, 1 - b1)), zero);
    const v = b.where(finite, b.add(b.scale(v0, b2), b.mul(b.scale(grad, 1 - b2), grad)), zero);
    if (eight) {
      const am = blockAbsmaxOf(b, m, { blocksize });
      const av = blockAbsmaxOf(b, v, { blocksize });
      assignState(STATE8.m, quantizeBlockwise8Op(b, m, am, { map: 'signed', blocksize, keep_sign: true }));
      assignState(STATE8.mAbsmax, am);
      assignState(STATE8.v, quantizeBlockwise8Op(b, v, av, { map: 'unsigned', blocksize }));
      assignState(STATE8.vAbsmax, av);
    } else {
      assignState(STATE8.m, m);
      assignState(STATE8.v, v);
    }
    const one = b.const(1);
    const c1 = b.sub(one, b.pow(b.const(b1), step));
    const c2 = b.unary('sqrt', b.sub(one, b.pow(b.const(b2), step)));
    const stepSize = b.div(b.neg(b.mul(lr, c2)), c1);
    const denom = b.add(b.unary('sqrt', v), b.scale(c2, eps));
    let next = b.add(value, b.mul(stepSize, b.div(m, denom)));
    if (group.weightDecay > 0) next = b.mul(next, b.sub(one, b.scale(lr, group.weightDecay)));
    return b.where(finite, next, value);
  };
}

/** Scope segment that marks optimizer state as paged (host-resident, streamed in for its update). */
export const PAGED_SCOPE = 'paged';

/**
 * The same rule with its state marked paged (bitsandbytes' PagedAdamW / PagedAdamW8bit): the
 * state params get scope `optimizer.<param>.paged`, which the WebGPU backend keeps on the host
 * (src/backends/webgpu/paging.ts). The arithmetic is unchanged.
 */
export function paged(rule: UpdateRule): UpdateRule {
  return (ctx) => ctx.b.withScope(PAGED_SCOPE, () => rule(ctx));
}
