// The CPU backend: the Backend contract over runGraph. Outputs named `assign:<param>`
// replace that param's tensor in the executable's own weight store after each run.

import type { Graph } from '../../ir/graph.ts';
import { formatShape, sameShape } from '../../ir/shape.ts';
import type { Tensor } from '../../ir/tensor.ts';
import { MapWeightStore, type WeightStore } from '../../ir/weights.ts';
import { ASSIGN_PREFIX, type Backend, type Executable, type RunRequest } from '../backend.ts';
import { CpuRunError, runGraph } from './interpreter.ts';
import type { Precision } from './kernel.ts';

export class CpuExecutable implements Executable {
  constructor(
    readonly graph: Graph,
    /** This executable's own copy of the weight references (assigns replace entries, never data). */
    readonly weights: MapWeightStore,
    private readonly precision: Precision,
  ) {}

  async run(req: RunRequest): Promise<Record<string, Tensor>> {
    const assigns = this.graph.outputs.filter((o) => o.name.startsWith(ASSIGN_PREFIX)).map((o) => o.name);
    const wanted =
      req.outputs ?? this.graph.outputs.map((o) => o.name).filter((n) => !n.startsWith(ASSIGN_PREFIX));
    const all = [...new Set([...wanted, ...assigns])];
    const res = runGraph(this.graph, req.feeds, this.weights, { precision: this.precision, outputs: all });
    for (const name of assigns) this.weights.set(name.slice(ASSIGN_PREFIX.length), res[name]);
    const out: Record<string, Tensor> = {};
    for (const name of wanted) out[name] = res[name];
    return out;
  }

  async readParam(name: string): Promise<Tensor> {
    const t = this.weights.get(name);
    if (!t) throw new CpuRunError(`no parameter '${name}' (params: ${[...this.weights.names()].join(', ')})`);
    return t;
  }

  async writeParam(name: string, value: Tensor): Promise<void> {
    const t = await this.readParam(name);
    if (t.dtype !== value.dtype || !sameShape(t.shape, value.shape)) {
      throw new CpuRunError(
        `cannot write '${name}': it is ${t.dtype}${formatShape(t.shape)}, the value is ${value.dtype}${formatShape(value.shape)}`,
      );
    }
    this.weights.set(name, value);
  }

  dispose(): void {
    this.weights.map.clear();
  }
}

export class CpuBackend implements Backend {
  readonly name = 'cpu' as const;
  constructor(private readonly opts: { precision?: Precision } = {}) {}

  async compile(graph: Graph, weights: WeightStore): Promise<Executable> {
    const own = new MapWeightStore();
    const params = new Map(graph.params().map((p) => [String(p.attrs.name), p]));
    for (const [name, p] of params) {
      const t = weights.get(name);
      if (!t) {
        throw new CpuRunError(
          `missing weight '${name}' (the graph expects ${p.type.dtype}${formatShape(p.type.shape)}); is it in the weight store?`,
        );
      }
      own.set(name, t);
    }
    for (const o of graph.outputs) {
      if (o.name.startsWith(ASSIGN_PREFIX) && !params.has(o.name.slice(ASSIGN_PREFIX.length))) {
        throw new CpuRunError(
          `output '${o.name}' assigns to '${o.name.slice(ASSIGN_PREFIX.length)}', which is not a param of the graph`,
        );
      }
    }
    return new CpuExecutable(graph, own, this.opts.precision ?? 'f32');
  }

  dispose(): void {}
}
