// The kernels the WebGPU backend makes of a graph, planned without a device: the same
// kernel planner and cache key as buildSchedule (schedule.ts), minus buffers,
// pipelines and bind groups. What a kernel plans depends only on the node's types and
// two adapter facts (shader-f16, software adapter), so `peftc ir --kernels` can show
// the dispatch list without compiling or running anything.
import type { Graph, Node } from '../../ir/graph.ts';
import { type KernelTarget, planKernels } from './kernel-plan.ts';
import { pipelineKey } from './pipelines.ts';
import { bindingAccess } from './program.ts';

export { KernelPlanError, type KernelTarget } from './kernel-plan.ts';

export interface PlannedDispatch {
  /** Position in dispatch order. */
  readonly index: number;
  /** The node whose value this dispatch computes (a group kernel's last member). */
  readonly node: Node;
  /** Nodes a group kernel computes besides `node` (kernel-groups.ts). */
  readonly members?: readonly Node[];
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
  /** Nodes computed by a group kernel dispatched at another node. */
  readonly grouped: number;
}

export function listKernels(graph: Graph, target: KernelTarget): KernelList {
  const dispatches: PlannedDispatch[] = [];
  let free = 0;
  let grouped = 0;
  const planned = planKernels(graph, target);
  graph.nodes.forEach((node, pos) => {
    const plan = planned.nodes[pos];
    if (plan === 'member') grouped++;
    if (plan === 'alias' || plan === 'source') free++;
    if (typeof plan === 'string') return;
    const members = planned.groupOf.get(node.id)?.members.slice(0, -1);
    for (const step of plan.steps) {
      if (step.workgroups === 0) continue; // buildSchedule skips these too
      dispatches.push({
        index: dispatches.length,
        node,
        ...(members ? { members } : {}),
        kernel: step.desc.op,
        key: pipelineKey(step.desc, step.bindings.map(bindingAccess)),
        workgroups: step.workgroups,
        workgroupSize: step.desc.workgroup,
      });
    }
  });
  return { dispatches, pipelines: new Set(dispatches.map((d) => d.key)).size, free, grouped };
}
