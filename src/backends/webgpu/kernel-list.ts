// The kernels the WebGPU backend makes of a graph, planned without a device: the same
// kernel planner and cache key as buildSchedule (schedule.ts), minus buffers,
// pipelines and bind groups. What a kernel plans depends only on the node's types and
// two adapter facts (shader-f16, software adapter), so `peftc ir --kernels` can show
// the dispatch list without compiling or running anything.
import type { Graph, Node } from '../../ir/graph.ts';
import { getKernel } from './kernels/index.ts';
import { canonicalKey, type KernelPlan } from './program.ts';
import { describeNode } from './schedule.ts';

export interface KernelTarget {
  /** The adapter offers shader-f16. */
  readonly f16: boolean;
  /** A CPU adapter (lavapipe): kernels pick CPU-friendly variants. */
  readonly software: boolean;
}

export interface PlannedDispatch {
  /** Position in dispatch order. */
  readonly index: number;
  /** The node whose value this dispatch computes (one node per kernel until fusion lands). */
  readonly node: Node;
  /** The kernel's program name (ProgramDesc.op; several steps of one node may differ). */
  readonly kernel: string;
  /** The pipeline cache key (canonical program description + binding access). */
  readonly key: string;
  readonly workgroups: number;
  readonly workgroupSize: readonly number[];
}

export interface KernelList {
  readonly dispatches: readonly PlannedDispatch[];
  /** Distinct pipelines (cache keys) the dispatches need. */
  readonly pipelines: number;
  /** Nodes with no dispatch: sources (params, inputs, consts) and views that alias their input. */
  readonly free: number;
}

export class KernelPlanError extends Error {
  override name = 'KernelPlanError';
}

export function listKernels(graph: Graph, target: KernelTarget): KernelList {
  const dispatches: PlannedDispatch[] = [];
  let free = 0;
  for (const node of graph.nodes) {
    const kernel = getKernel(node.op);
    if (!kernel) throw new KernelPlanError(`${describeNode(node)}: no WebGPU kernel for op '${node.op}'`);
    let plan: KernelPlan | 'alias' | 'source';
    try {
      plan = kernel({
        node,
        inputs: node.inputs.map((i) => graph.node(i).type),
        out: node.type,
        f16: target.f16,
        software: target.software,
      });
    } catch (e) {
      throw new KernelPlanError(
        `${describeNode(node)}: planning its kernel failed: ${(e as Error).message}`,
        {
          cause: e,
        },
      );
    }
    if (plan === 'alias' || plan === 'source') {
      free++;
      continue;
    }
    for (const step of plan.steps) {
      if (step.workgroups === 0) continue; // buildSchedule skips these too
      dispatches.push({
        index: dispatches.length,
        node,
        kernel: step.desc.op,
        key: canonicalKey({ program: step.desc, writes: step.bindings.map((b) => b.write) }),
        workgroups: step.workgroups,
        workgroupSize: step.desc.workgroup,
      });
    }
  }
  return { dispatches, pipelines: new Set(dispatches.map((d) => d.key)).size, free };
}
