// What every backend offers: compile a graph once, run it many times.
//
// Contract for in-place state (training steps, KV caches): an output named
// `assign:<param name>` is written back into that param's storage at the end of
// the run (the weight store on the CPU, the resident device buffer on WebGPU)
// and is returned only when listed in `outputs`.
import type { Graph } from '../ir/graph.ts';
import type { Tensor } from '../ir/tensor.ts';
import type { WeightStore } from '../ir/weights.ts';

export type BackendName = 'cpu' | 'webgpu';

export const ASSIGN_PREFIX = 'assign:';

export interface RunRequest {
  /** Values for the graph's `input` nodes, by name. */
  readonly feeds: Readonly<Record<string, Tensor>>;
  /** Output names to return (default: every output that is not an `assign:`). */
  readonly outputs?: readonly string[];
}

export interface Executable {
  readonly graph: Graph;
  run(req: RunRequest): Promise<Record<string, Tensor>>;
  /** Current value of a parameter (after any assigns). */
  readParam(name: string): Promise<Tensor>;
  /**
   * Replaces a parameter's value (same dtype and shape), e.g. to hand the trained
   * adapter of a training-step executable to an eval executable of the same model.
   */
  writeParam(name: string, value: Tensor): Promise<void>;
  dispose(): void;
}

/** How a backend may compile a graph; options a backend has no use for are ignored. */
export interface CompileOptions {
  /**
   * Write each param's new value into the param as soon as its old value's last reader has
   * run (the WebGPU backend; the CPU interpreter keeps values on the host anyway).
   */
  readonly inPlaceAssigns?: boolean;
}

export interface Backend {
  readonly name: BackendName;
  /** Binds `weights` (every param of the graph must be present) and prepares the graph to run. */
  compile(graph: Graph, weights: WeightStore, opts?: CompileOptions): Promise<Executable>;
  dispose(): void;
}
