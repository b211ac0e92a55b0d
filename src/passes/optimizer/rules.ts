// Update rules, written to match PyTorch's torch.optim.AdamW and SGD step for step.
import type { UpdateRule } from './types.ts';

export interface AdamWOptions {
  readonly betas: readonly [number, number];
  readonly eps: number;
}

/**
 * torch.optim.AdamW (amsgrad=False): p -= lr*wd*p; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 * p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
 */
export function adamw({ betas: [b1, b2], eps }: AdamWOptions): UpdateRule {
  return ({ b, value, grad, group, lr, step, state, assignState }) => {
    const m0 = state('exp_avg');
    const v0 = state('exp_avg_sq');
    const m = b.add(b.scale(m0, b1), b.scale(grad, 1 - b1));
    const v = b.add(b.scale(v0, b2), b.scale(b.mul(grad, grad), 1 - b2));
    assignState('exp_avg', m);
    assignState('exp_avg_sq', v);
    const one = b.const(1);
    const bc1 = b.sub(one, b.pow(b.const(b1), step));
    const bc2 = b.sub(one, b.pow(b.const(b2), step));
    const decayed = group.weightDecay ? b.sub(value, b.mul(b.scale(lr, group.weightDecay), value)) : value;
    const denom = b.add(b.div(b.unary('sqrt', v), b.unary('sqrt', bc2)), b.const(eps));
    const stepSize = b.div(lr, bc1);
    return b.sub(decayed, b.mul(stepSize, b.div(m, denom)));
  };
}

export interface SgdOptions {
  readonly momentum: number;
}

/** torch.optim.SGD (dampening 0, nesterov False): g += wd*p; buf = mu*buf + g; p -= lr*buf. */
export function sgd({ momentum }: SgdOptions): UpdateRule {
  return ({ b, value, grad, group, lr, state, assignState }) => {
    const g = group.weightDecay ? b.add(grad, b.scale(value, group.weightDecay)) : grad;
    let dir = g;
    if (momentum) {
      // PyTorch initialises the buffer with the first gradient; with a zero buffer
      // mu*0 + g gives the same first step, so a zeros state is exact.
      dir = b.add(b.scale(state('momentum_buffer'), momentum), g);
      assignState('momentum_buffer', dir);
    }
    return b.sub(value, b.mul(lr, dir));
  };
}
