// runGraph: the reference interpreter. Executes only the nodes the requested outputs
// need, in graph order, and frees each value after its last use (refcounts).

import type { Graph, Node } from '../../ir/graph.ts';
import { formatShape, sameShape } from '../../ir/shape.ts';
import type { Tensor } from '../../ir/tensor.ts';
import type { WeightStore } from '../../ir/weights.ts';
import { UserError } from '../../util/errors.ts';
import type { KernelContext, Precision } from './kernel.ts';
import { getCpuKernel } from './kernels.ts';

export class CpuRunError extends UserError {
  override name = 'CpuRunError';
}

export interface RunOptions {
  /** 'f32' (default) rounds every float result to f32; 'f64' computes every float value in f64. */
  readonly precision?: Precision;
  /** Output names to return (default: every output of the graph, `assign:` ones included). */
  readonly outputs?: readonly string[];
  /** Observers for tests and debugging: a node ran, a value was freed. */
  readonly onExecute?: (node: Node, result: Tensor) => void;
  readonly onFree?: (id: number) => void;
}

function describe(n: Node): string {
  return `%${n.id} = ${n.op} in ${n.scope || '(top level)'}`;
}

/**
 * Runs `graph` on the CPU. `feeds` binds the `input` nodes by name (extra feeds are
 * ignored), `weights` the `param` nodes. Returned tensors may share data with feeds or
 * weights: treat them as read-only.
 */
export function runGraph(
  graph: Graph,
  feeds: Readonly<Record<string, Tensor>>,
  weights: WeightStore,
  opts: RunOptions = {},
): Record<string, Tensor> {
  const precision = opts.precision ?? 'f32';
  const wanted = opts.outputs ?? graph.outputs.map((o) => o.name);
  const outIds = wanted.map((name) => {
    const o = graph.outputs.find((x) => x.name === name);
    if (!o) {
      throw new CpuRunError(
        `graph has no output '${name}' (outputs: ${graph.outputs.map((x) => x.name).join(', ') || 'none'})`,
      );
    }
    return o.id;
  });

  // Liveness: a node runs iff a requested output depends on it; refs counts its readers.
  const refs = new Map<number, number>();
  for (const id of outIds) refs.set(id, (refs.get(id) ?? 0) + 1);
  const needed = new Set<number>(outIds);
  for (let p = graph.nodes.length - 1; p >= 0; p--) {
    const n = graph.nodes[p];
    if (!needed.has(n.id)) continue;
    for (const i of n.inputs) {
      needed.add(i);
      refs.set(i, (refs.get(i) ?? 0) + 1);
    }
  }

  const values = new Map<number, Tensor>();
  for (const node of graph.nodes) {
    if (!needed.has(node.id)) continue;
    const kernel = getCpuKernel(node.op);
    if (!kernel)
      throw new CpuRunError(`while executing ${describe(node)}: no CPU kernel for op '${node.op}'`);
    const ins = node.inputs.map((i) => values.get(i) as Tensor);
    const ctx: KernelContext = { node, precision, feeds, weights };
    let result: Tensor;
    try {
      result = kernel(ins, ctx);
    } catch (e) {
      const reason = e instanceof Error ? e.message : String(e);
      throw new CpuRunError(`while executing ${describe(node)}: ${reason}`, { cause: e });
    }
    if (result.dtype !== node.type.dtype || !sameShape(result.shape, node.type.shape)) {
      throw new CpuRunError(
        `while executing ${describe(node)}: the kernel returned ${result.dtype}${formatShape(result.shape)} but the node's type is ${node.type.dtype}${formatShape(node.type.shape)}`,
      );
    }
    opts.onExecute?.(node, result);
    values.set(node.id, result);
    for (const i of node.inputs) release(i);
  }

  const out: Record<string, Tensor> = {};
  wanted.forEach((name, k) => {
    out[name] = values.get(outIds[k]) as Tensor;
  });
  return out;

  function release(id: number): void {
    const left = (refs.get(id) ?? 0) - 1;
    refs.set(id, left);
    if (left === 0) {
      values.delete(id);
      opts.onFree?.(id);
    }
  }
}
