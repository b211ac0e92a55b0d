// What each node of a graph dispatches on WebGPU, planned without a device: its kernel's
// plan (kernels/), or that it is a source or a view; then runs of elementwise nodes merged
// into kernels over several nodes (kernel-groups.ts). The memory plan (memory-plan.ts),
// `peftc ir --kernels` (kernel-list.ts) and the export all start from this one list.
import type { Graph, Node } from '../../ir/graph.ts';
import { formatShape } from '../../ir/shape.ts';
import { WebGpuError } from './device.ts';
import { findGroups, type KernelGroup } from './kernel-groups.ts';
import { getKernel } from './kernels/index.ts';
import type { KernelContext, KernelPlan, SoftwareMatmul } from './program.ts';

/**
 * A node's part of the schedule: its dispatches, that it aliases its input, that it is a
 * source, or that it is a member of a group kernel dispatched by the group's last member.
 */
export type NodePlan = KernelPlan | 'alias' | 'source' | 'member';

/** The storage buffers per shader stage every WebGPU device offers. */
export const MIN_STORAGE_BUFFERS = 8;

export interface KernelTarget {
  /** The adapter offers shader-f16. */
  readonly f16: boolean;
  /** A CPU adapter (lavapipe): kernels pick CPU-friendly variants. */
  readonly software: boolean;
  /** See KernelContext.softwareMatmul. */
  readonly softwareMatmul?: SoftwareMatmul;
  /** See KernelContext.textureDimension (undefined: no scratch textures). */
  readonly textureDimension?: number;
  /**
   * maxStorageBuffersPerShaderStage of the device (default MIN_STORAGE_BUFFERS): how many
   * values a kernel over several nodes may bind.
   */
  readonly storageBuffers?: number;
}

export class KernelPlanError extends WebGpuError {
  override name = 'KernelPlanError';
}

export function describeNode(n: Node): string {
  const name = n.op === 'param' || n.op === 'input' ? ` '${String(n.attrs.name)}'` : '';
  return `%${n.id} = ${n.op}${name} ${n.type.dtype}${formatShape(n.type.shape)} in ${n.scope || '(top level)'}`;
}

/** The kernel plan of one node (its dispatches, or that it aliases its input / is a source). */
export function planNode(graph: Graph, node: Node, target: KernelTarget): KernelPlan | 'alias' | 'source' {
  const kernel = getKernel(node.op);
  if (!kernel)
    throw new KernelPlanError(
      `${describeNode(node)}: no WebGPU kernel for op '${node.op}' (register one with registerKernel)`,
    );
  try {
    return kernel(kernelContext(graph, node, target));
  } catch (e) {
    throw new KernelPlanError(`${describeNode(node)}: planning its kernel failed: ${(e as Error).message}`, {
      cause: e,
    });
  }
}

function kernelContext(graph: Graph, node: Node, target: KernelTarget): KernelContext {
  return {
    node,
    inputs: node.inputs.map((i) => graph.node(i).type),
    out: node.type,
    f16: target.f16,
    software: target.software,
    softwareMatmul: target.softwareMatmul,
    textureDimension: target.textureDimension,
  };
}

/** What a node's kernel plan depends on besides the target. */
function planKey(graph: Graph, n: Node): string {
  const type = (t: Node['type']) => `${t.dtype}${formatShape(t.shape)}`;
  return `${n.op} ${JSON.stringify(n.attrs)} ${n.inputs.map((i) => type(graph.node(i).type)).join(' ')} -> ${type(n.type)}`;
}

export interface KernelsPlan {
  /** By node position. */
  readonly nodes: readonly NodePlan[];
  /** The group each grouped node belongs to, by node id. */
  readonly groupOf: ReadonlyMap<number, KernelGroup>;
}

/**
 * Every node's plan, with runs of elementwise nodes grouped (unless `groups` is false).
 */
export function planKernels(
  graph: Graph,
  target: KernelTarget,
  opts: { readonly groups?: boolean } = {},
): KernelsPlan {
  // A kernel plans from the node's op, attrs and types and the target alone (Kernel,
  // program.ts), so nodes alike plan alike: each layer of a 7B step repeats the first's.
  const planned = new Map<string, KernelPlan | 'alias' | 'source'>();
  const own = graph.nodes.map((n) => {
    const key = planKey(graph, n);
    let plan = planned.get(key);
    if (plan === undefined) {
      plan = planNode(graph, n, target);
      planned.set(key, plan);
    }
    return plan;
  });
  const groupOf = new Map<number, KernelGroup>();
  if (opts.groups === false) return { nodes: own, groupOf };
  const groups = findGroups(graph, own, (n) => kernelContext(graph, n, target), {
    maxBindings: target.storageBuffers ?? MIN_STORAGE_BUFFERS,
  });
  const nodes: NodePlan[] = [...own];
  for (const g of groups) {
    g.members.forEach((m, k) => {
      groupOf.set(m.id, g);
      nodes[graph.position(m.id)] = k === g.members.length - 1 ? g.plan : 'member';
    });
  }
  return { nodes, groupOf };
}
