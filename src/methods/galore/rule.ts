// GaLore's projected AdamW as an optimizer update rule (official galore_torch/adamw.py and
// adamw8bit.py at 2cc66f8), for the params of the GaLore group. Per step t (1-based):
//   R = project(G)                       P from the optimizer state (written by the host, session.ts)
//   m = b1 m + (1 - b1) R;  v = b2 v + (1 - b2) R^2            (moments in R's low-rank shape)
//   W -= lr * sqrt(1 - b2^t) / (1 - b1^t) * scale * back(m / (sqrt(v) + eps))
//   W -= lr * wd * W                     (decoupled decay AFTER the update, on the updated W)
// That is GaLoreAdamW exactly: eps is added to sqrt(v), not to sqrt(v_hat) (torch.optim.AdamW
// adds it to the bias-corrected one), and the decay comes last (torch decays first).
// GaLore-8bit (recipe optimizer adamw8bit): the low-rank update is bitsandbytes' 8-bit Adam
// step from p = 0 with weight decay 0 (the official code zeroes p.data and sets the group's
// decay to 0 around update_step), i.e. the existing adamw8bit rule on R's shape; then
// W += back(update) and the decay as above.
// A scalar state `optimizer.galore_hold`, 1 only during the host's refresh probe (session.ts),
// keeps W as it was; the probe's moments and P are restored by the host.
import type { Value } from '../../ir/builder.ts';
import type { Node } from '../../ir/graph.ts';
import { adamw8bit } from '../../passes/optimizer/adamw8bit.ts';
import type { UpdateContext, UpdateRule } from '../../passes/optimizer/types.ts';
import { type GaloreOptions, type Projection, projection } from './options.ts';

/** The host-written flag that makes a step run leave the GaLore weights unchanged (the refresh probe). */
export const HOLD_STATE = 'optimizer.galore_hold';

/** State kinds of the projector matrices, per side ('full' keeps both: left then right). */
export function projectorKinds(side: Projection['side']): string[] {
  return side === 'full' ? ['galore_proj_left', 'galore_proj_right'] : ['galore_proj'];
}

export interface GaloreRuleOptions {
  readonly galore: Pick<GaloreOptions, 'rank' | 'proj_type' | 'scale'>;
  /** 'adamw' = GaLoreAdamW; 'adamw8bit' = GaLoreAdamW8bit (bitsandbytes blockwise state). */
  readonly type: 'adamw' | 'adamw8bit';
  readonly betas: readonly [number, number];
  readonly eps: number;
  readonly minEightBitSize?: number;
}

function weightShape(param: Node): [number, number] {
  const s = param.type.shape;
  if (s.length !== 2)
    throw new Error(
      `galore: '${String(param.attrs.name)}' has shape [${s}]; GaLore projects 2-D weights only`,
    );
  return [s[0], s[1]];
}

/** R = project(G) and back(N) for this param's projection, with P read from the optimizer state. */
function projectors(ctx: UpdateContext, p: Projection) {
  const { b } = ctx;
  const [first, second] = projectorKinds(p.side).map((k, i) => ctx.state(k, p.projectors[i]));
  const project = (g: Value): Value => {
    if (p.side === 'right') return b.matmul(g, first, { transpose_b: true });
    if (p.side === 'left') return b.matmul(first, g, { transpose_a: true });
    return b.matmul(b.matmul(first, g, { transpose_a: true }), second, { transpose_b: true });
  };
  const back = (n: Value): Value => {
    if (p.side === 'right') return b.matmul(n, first);
    if (p.side === 'left') return b.matmul(first, n);
    return b.matmul(b.matmul(first, n), second);
  };
  return { project, back };
}

export function galoreRule(o: GaloreRuleOptions): UpdateRule {
  const [b1, b2] = o.betas;
  const eight =
    o.type === 'adamw8bit'
      ? adamw8bit({ betas: o.betas, eps: o.eps, minEightBitSize: o.minEightBitSize })
      : undefined;
  return (ctx) => {
    const { b, param, value, grad, group, lr, step, state, assignState, shared } = ctx;
    const [m, n] = weightShape(param);
    const p = projection(o.galore, m, n);
    const { project, back } = projectors(ctx, p);
    const low = [...p.low];
    const R = project(grad);
    let update: Value;
    if (eight) {
      // bitsandbytes' step on a zeroed low-rank "param" with the group's decay set to 0.
      const lowParam = { ...param, type: { ...param.type, shape: low } } as Node;
      const delta = eight({
        ...ctx,
        param: lowParam,
        value: b.const(0, low),
        grad: R,
        group: { ...group, weightDecay: 0 },
        state: (kind, shape = low, dtype) => state(kind, shape, dtype),
      });
      // project_back multiplies by scale; p = saved + back(delta).
      update = b.add(value, b.scale(back(delta), o.galore.scale));
    } else {
      const m0 = state('exp_avg', low);
      const v0 = state('exp_avg_sq', low);
      const mt = b.add(b.scale(m0, b1), b.scale(R, 1 - b1));
      const vt = b.add(b.scale(v0, b2), b.scale(b.mul(R, R), 1 - b2));
      assignState('exp_avg', mt);
      assignState('exp_avg_sq', vt);
      const one = b.const(1);
      // step_size = lr * sqrt(1 - b2^t) / (1 - b1^t), per group (lr is the group's).
      const stepSize = shared(`galore step_size:${group.name}:${group.lrScale}:${b1}:${b2}`, () =>
        b.div(
          b.mul(lr, b.unary('sqrt', b.sub(one, b.pow(b.const(b2), step)))),
          b.sub(one, b.pow(b.const(b1), step)),
        ),
      );
      const norm = b.div(mt, b.add(b.unary('sqrt', vt), b.const(o.eps)));
      update = b.sub(value, b.mul(stepSize, b.scale(back(norm), o.galore.scale)));
    }
    // p.add_(p, alpha=-lr * wd): the decay of the already-updated weight.
    const decayed =
      group.weightDecay > 0 ? b.sub(update, b.mul(b.scale(lr, group.weightDecay), update)) : update;
    const hold = shared('galore_hold', () => b.param(HOLD_STATE, 'f32', [], 'state', { kind: 'zeros' }));
    return b.where(hold, value, decayed);
  };
}
