// Which weights GaLore trains: the weight param of every targeted linear (PEFT's target
// rules, as every method here selects modules), with its projection.
import type { Graph } from '../../ir/graph.ts';
import { MethodError } from '../registry.ts';
import { selectTargets } from '../targets.ts';
import { type GaloreOptions, type Projection, projection } from './options.ts';

export interface GaloreParam {
  readonly name: string;
  readonly shape: readonly [number, number];
  readonly projection: Projection;
}

/** The targeted linears' weights, in graph order (a weight shared by two targets once). */
export function galoreParams(g: Graph, o: GaloreOptions): GaloreParam[] {
  const out = new Map<string, GaloreParam>();
  for (const lin of selectTargets(g, o, ['linear'])) {
    const w = g.node(lin.inputs[1]);
    if (w.op !== 'param')
      throw new MethodError(
        `galore: the weight of '${lin.scope}' is computed (${w.op}), not a stored tensor: GaLore trains plain full-precision weights (a 4-bit qlora base cannot be trained this way)`,
      );
    const name = String(w.attrs.name);
    if (w.type.dtype !== 'f32')
      throw new MethodError(`galore: '${name}' is ${w.type.dtype}; GaLore trains f32 weights`);
    const [m, n] = w.type.shape;
    out.set(name, { name, shape: [m, n], projection: projection(o, m, n) });
  }
  return [...out.values()];
}
