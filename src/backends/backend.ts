// What every backend offers: compile a graph once, run it many times.
//
// Contract for in-place state (training steps, KV caches): an output named
// `assign:<param name>` is written back into that param's storage at the end of
// the run (the weight store on the CPU, the resident device buffer on WebGPU)
// and is returned only when listed in `outputs`. Executables compiled with
// `share` hold the params they have in common once (CompileOptions.share).
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
  /**
   * Copies rows (along the first axis) of param `name` of `source`, an executable of the
   * same backend, into this one's param of that name: source row i becomes row `rows[i]`
   * (skipped where undefined); other rows keep their values. On the device where the
   * backend has one (e.g. a prefill's new KV-cache rows into a decoding session's cache).
   */
  copyParamRows(source: Executable, name: string, rows: readonly (number | undefined)[]): Promise<void>;
  dispose(): void;
}

/**
 * Why rows of `from` cannot be copied into `to` as `rows` says (copyParamRows), or
 * undefined: same dtype and trailing shape, every source row present, targets in range.
 */
export function rowCopyProblem(
  name: string,
  from: { readonly dtype: string; readonly shape: readonly number[] },
  to: { readonly dtype: string; readonly shape: readonly number[] },
  rows: readonly (number | undefined)[],
): string | undefined {
  const trailing = (s: readonly number[]) => s.slice(1).join(',');
  if (from.dtype !== to.dtype || trailing(from.shape) !== trailing(to.shape) || to.shape.length === 0)
    return `copyParamRows '${name}': rows of ${from.dtype}[${from.shape}] do not fit ${to.dtype}[${to.shape}]`;
  if (rows.length > from.shape[0])
    return `copyParamRows '${name}': ${rows.length} rows asked, the source has ${from.shape[0]}`;
  const bad = rows.find((r) => r !== undefined && (!Number.isInteger(r) || r < 0 || r >= to.shape[0]));
  if (bad !== undefined) return `copyParamRows '${name}': target row ${bad} is not in [0, ${to.shape[0]})`;
  return undefined;
}

/** How a backend may compile a graph; options a backend has no use for are ignored. */
export interface CompileOptions {
  /**
   * An executable of the same backend whose params this one uses as its own where the names
   * (and dtype and shape) match: one copy on the device, and what either writes (assigns,
   * writeParam) the other reads. A prefill graph and a decode graph over one KV cache; an
   * eval graph beside a training step. Runs of the two are ordered as they are called.
   */
  readonly share?: Executable;
  /**
   * With `share`: params this executable holds itself even where `share` has one of that
   * name, e.g. a prefill graph's KV cache, sized to its own batch, beside the decode graph's.
   */
  readonly ownParams?: (name: string) => boolean;
  /**
   * Write each param's new value into the param as soon as its old value's last reader has
   * run (the WebGPU backend; the CPU interpreter keeps values on the host anyway).
   */
  readonly inPlaceAssigns?: boolean;
  /**
   * Kernels over several nodes (runs of elementwise nodes as one dispatch, WebGPU
   * kernel-groups.ts); default true. False: one kernel per node, the baseline benches
   * compare against.
   */
  readonly groups?: boolean;
}

export interface Backend {
  readonly name: BackendName;
  /** Binds `weights` (every param of the graph must be present) and prepares the graph to run. */
  compile(graph: Graph, weights: WeightStore, opts?: CompileOptions): Promise<Executable>;
  dispose(): void;
}
