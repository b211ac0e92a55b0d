// stop_gradient (a core op): the identity forward, no gradient backward ("detached":
// DoRA treats the row norm ||W + s B A|| as a constant). Its VJP rule is `none`.
import type { GraphBuilder, Value } from '../../ir/builder.ts';

export const STOP_GRADIENT = 'stop_gradient';

/** x, detached: same value forward, treated as a constant by autodiff. */
export function stopGradient(b: GraphBuilder, x: Value): Value {
  return b.emit(STOP_GRADIENT, [x]);
}
