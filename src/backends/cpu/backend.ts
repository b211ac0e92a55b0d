// The CPU backend: the Backend contract over runGraph. Outputs named `assign:<param>`
// replace that param's tensor in the executable's own weight store after each run.

import type { Graph } from '../../ir/graph.ts';
import { formatShape, sameShape } from '../../ir/shape.ts';
import { type Tensor, tensor } from '../../ir/tensor.ts';
import { MapWeightStore, type WeightStore } from '../../ir/weights.ts';
import {
  ASSIGN_PREFIX,
  type Backend,
  type CompileOptions,
  type Executable,
  type RunRequest,
  rowCopyProblem,
} from '../backend.ts';
import { CpuRunError, runGraph } from './interpreter.ts';
import type { Precision } from './kernel.ts';

/** Executables using each weight store (several when compiled with `share`). */
const storeUsers = new WeakMap<MapWeightStore, number>();

export class CpuExecutable implements Executable {
  /** The params as the interpreter sees them: this executable's own ones, else the shared store's. */
  private readonly params: WeightStore & { set(name: string, t: Tensor): void };

  constructor(
    readonly graph: Graph,
    /** Weight references, shared with the executables compiled to share them (assigns replace entries, never data). */
    readonly weights: MapWeightStore,
    private readonly precision: Precision,
    /** Params held apart from `weights` (CompileOptions.ownParams). */
    own: MapWeightStore = new MapWeightStore(),
  ) {
    const storeOf = (name: string) => (own.has(name) ? own : weights);
    this.params = {
      get: (name) => storeOf(name).get(name),
      has: (name) => own.has(name) || weights.has(name),
      names: () => new Set([...own.names(), ...weights.names()]),
      set: (name, t) => void storeOf(name).set(name, t),
    };
  }

  async run(req: RunRequest): Promise<Record<string, Tensor>> {
    const assigns = this.graph.outputs.filter((o) => o.name.startsWith(ASSIGN_PREFIX)).map((o) => o.name);
    const wanted =
      req.outputs ?? this.graph.outputs.map((o) => o.name).filter((n) => !n.startsWith(ASSIGN_PREFIX));
    const all = [...new Set([...wanted, ...assigns])];
    const res = runGraph(this.graph, req.feeds, this.params, { precision: this.precision, outputs: all });
    for (const name of assigns) this.params.set(name.slice(ASSIGN_PREFIX.length), res[name]);
    const out: Record<string, Tensor> = {};
    for (const name of wanted) out[name] = res[name];
    return out;
  }

  async readParam(name: string): Promise<Tensor> {
    const t = this.params.get(name);
    if (!t) throw new CpuRunError(`no parameter '${name}' (params: ${[...this.params.names()].join(', ')})`);
    return t;
  }

  async writeParam(name: string, value: Tensor): Promise<void> {
    const t = await this.readParam(name);
    if (t.dtype !== value.dtype || !sameShape(t.shape, value.shape)) {
      throw new CpuRunError(
        `cannot write '${name}': it is ${t.dtype}${formatShape(t.shape)}, the value is ${value.dtype}${formatShape(value.shape)}`,
      );
    }
    this.params.set(name, value);
  }

  async copyParamRows(
    source: Executable,
    name: string,
    rows: readonly (number | undefined)[],
  ): Promise<void> {
    if (!(source instanceof CpuExecutable))
      throw new CpuRunError(`copyParamRows '${name}': the source is not a CPU executable`);
    const from = await source.readParam(name);
    const to = await this.readParam(name);
    const problem = rowCopyProblem(name, from, to, rows);
    if (problem) throw new CpuRunError(problem);
    const per = to.shape.slice(1).reduce((a, b) => a * b, 1);
    // A new tensor, never the old one's data: stores hand their tensors out (readParam).
    const data = to.data.slice();
    rows.forEach((r, i) => {
      if (r !== undefined) data.set(from.data.subarray(i * per, (i + 1) * per) as never, r * per);
    });
    this.params.set(name, tensor(to.dtype, to.shape, data));
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    // The store may be shared (CompileOptions.share): cleared by the last executable using it.
    const left = (storeUsers.get(this.weights) ?? 1) - 1;
    storeUsers.set(this.weights, left);
    if (left === 0) this.weights.map.clear();
  }

  private disposed = false;
}

export class CpuBackend implements Backend {
  readonly name = 'cpu' as const;
  constructor(private readonly opts: { precision?: Precision } = {}) {}

  async compile(graph: Graph, weights: WeightStore, opts: CompileOptions = {}): Promise<Executable> {
    // Shared params live in one store: assigns replace its entries, which both see.
    let shared = new MapWeightStore();
    if (opts.share) {
      if (!(opts.share instanceof CpuExecutable))
        throw new CpuRunError('share: the executable to share params with is not a CPU executable');
      shared = opts.share.weights;
    }
    const apart = new MapWeightStore();
    const params = new Map(graph.params().map((p) => [String(p.attrs.name), p]));
    for (const [name, p] of params) {
      const own = opts.ownParams?.(name) ? apart : shared;
      const mine = own.get(name);
      if (mine) {
        if (sameShape(mine.shape, p.type.shape) && mine.dtype === p.type.dtype) continue;
        throw new CpuRunError(
          `share: param '${name}' is ${p.type.dtype}${formatShape(p.type.shape)} here but ${mine.dtype}${formatShape(mine.shape)} in the executable shared with`,
        );
      }
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
    storeUsers.set(shared, (storeUsers.get(shared) ?? 0) + 1);
    return new CpuExecutable(graph, shared, this.opts.precision ?? 'f32', apart);
  }

  dispose(): void {}
}
