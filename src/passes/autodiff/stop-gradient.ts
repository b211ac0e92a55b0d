// stop_gradient: the identity forward, no gradient backward ("detached": DoRA treats
// the row norm ||W + s B A|| as a constant). Registered here with its VJP and CPU
// kernel, since autodiff is the op's reason to exist. Importing this file (or the
// autodiff index) registers it once per process.
import { z } from 'zod';
import { registerCpuKernel } from '../../backends/cpu/kernels.ts';
import type { GraphBuilder, Value } from '../../ir/builder.ts';
import { defineOp, registerOp } from '../../ir/ops/index.ts';
import { registerVjp } from './autodiff.ts';
import { none } from './rule.ts';

export const STOP_GRADIENT = 'stop_gradient';

export const stopGradientOp = registerOp(
  defineOp({
    name: STOP_GRADIENT,
    arity: 1,
    attrs: z.strictObject({}),
    infer: ([x]) => x,
    doc: 'identity; autodiff passes no gradient through it (a detached value)',
  }),
);

registerVjp(STOP_GRADIENT, none('stop_gradient detaches its input by definition'));

// Identity: kernels may return a tensor sharing its input's data (inputs are read-only).
registerCpuKernel(STOP_GRADIENT, ([x]) => x);

/** x, detached: same value forward, treated as a constant by autodiff. */
export function stopGradient(b: GraphBuilder, x: Value): Value {
  return b.emit(STOP_GRADIENT, [x]);
}
