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
  return ({ b, value, grad, group, lr, step, state, assignState, shared }) => {
    const m0 = state('exp_avg');
    const v0 = state('exp_avg_sq');
    const m = b.add(b.scale(m0, b1), b.scale(grad, 1 - b1));
    const v = b.add(b.scale(v0, b2), b.scale(b.mul(grad, grad), 1 - b2));
    assignState('exp_avg', m);
    assignState('exp_avg_sq', v);
    // Per-step scalars, shared by every param (keys name what they depend on; lr is per group).
    const bc1 = shared(`1-b^t:${b1}`, () => b.sub(b.const(1), b.pow(b.const(b1), step)));
    const sqrtBc2 = shared(`sqrt(1-b^t):${b2}`, () =>
      b.unary('sqrt', b.sub(b.const(1), b.pow(b.const(b2), step))),
    );
    const stepSize = shared(`lr/(1-b^t):${group.name}:${group.lrScale}:${b1}`, () => b.div(lr, bc1));
    const decayed = group.weightDecay
      ? b.sub(
          value,
          b.mul(
            shared(`lr*wd:${group.name}:${group.lrScale}:${group.weightDecay}`, () =>
              b.scale(lr, group.weightDecay),
            ),
            value,
          ),
        )
      : value;
    const denom = b.add(
      b.div(b.unary('sqrt', v), sqrtBc2),
      shared(`eps:${eps}`, () => b.const(eps)),
    );
    return b.sub(decayed, b.mul(stepSize, b.div(m, denom)));
  };
}

export interface SgdOptions {
  readonly momentum: number;
  readonly dampening?: number;
  readonly nesterov?: boolean;
}

/**
 * torch.optim.SGD: g += wd*p; with momentum, buf = g at the first step and
 * mu*buf + (1 - dampening)*g after; nesterov uses g + mu*buf; p -= lr * direction.
 */
export function sgd({ momentum, dampening = 0, nesterov = false }: SgdOptions): UpdateRule {
  if (nesterov && (momentum <= 0 || dampening !== 0)) {
    throw new Error('SGD: nesterov momentum requires momentum > 0 and zero dampening (as torch.optim.SGD)');
  }
  return ({ b, value, grad, group, lr, step, state, assignState }) => {
    const g = group.weightDecay ? b.add(grad, b.scale(value, group.weightDecay)) : grad;
    let dir = g;
    if (momentum) {
      // The buffer starts as zeros; PyTorch sets it to g at the first step, so the
      // gradient's weight is 1 at t = 1 and (1 - dampening) after.
      const first = b.equal(step, b.const(1));
      const gWeight = dampening ? b.add(b.const(1 - dampening), b.scale(first, dampening)) : undefined;
      const buf = b.add(b.scale(state('momentum_buffer'), momentum), gWeight ? b.mul(g, gWeight) : g);
      assignState('momentum_buffer', buf);
      dir = nesterov ? b.add(g, b.scale(buf, momentum)) : buf;
    }
    return b.sub(value, b.mul(lr, dir));
  };
}
