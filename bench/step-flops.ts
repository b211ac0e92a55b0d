// The FLOPs of a compiled step's products (matmul, linear, linear_4bit and matmul_map
// nodes, 2 * output elements * contraction size each), to state a step's rate against the
// bench's own matmul rate (issue 21's "small step at >= 80% of the matmul rate").
// Attention's products and every elementwise op are left out, so the rate is a floor.
import type { Graph, Node } from '../src/ir/graph.ts';
import { numel } from '../src/ir/shape.ts';

/** The contraction size of a product node, or undefined for other ops. */
function contraction(g: Graph, n: Node): number | undefined {
  const last = (k: number) => {
    const first = g.node(n.inputs[0]).type.shape;
    return first[first.length - k];
  };
  const product =
    n.op === 'matmul_map' ? (n.attrs.product as { op: string; transpose_a: boolean }) : undefined;
  if (n.op === 'linear' || n.op === 'linear_4bit' || product?.op === 'linear') return last(1);
  if (n.op === 'matmul') return n.attrs.transpose_a ? last(2) : last(1);
  if (product?.op === 'matmul') return product.transpose_a ? last(2) : last(1);
  return undefined;
}

/** 2 * M * N * K summed over the graph's product nodes. */
export function productFlops(g: Graph): number {
  let flops = 0;
  for (const n of g.nodes) {
    const k = contraction(g, n);
    if (k !== undefined) flops += 2 * numel(n.type.shape) * k;
  }
  return flops;
}
