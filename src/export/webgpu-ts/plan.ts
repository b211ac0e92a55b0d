// A compiled inference graph as package data (runtime/plan-types.ts): the WebGPU backend's
// own memory plan (memory-plan.ts planMemory, the plan buildSchedule follows) with every
// kernel step's WGSL, uniforms, bindings and dispatch size, as buildSchedule would make
// them. Nothing is compiled on a device here: the plan depends only on the graph and the
// kernel target (shader-f16, software adapter), as `peftc ir --kernels` does.
import { createHash } from 'node:crypto';
import { ASSIGN_PREFIX } from '../../backends/backend.ts';
import { encodeTensor, gpuByteSize } from '../../backends/webgpu/dtypes.ts';
import {
  bindingSize,
  describeNode,
  type KernelTarget,
  planMemory,
  type Region,
} from '../../backends/webgpu/memory-plan.ts';
import { foldDispatch } from '../../backends/webgpu/program.ts';
import { constTensor } from '../../backends/webgpu/schedule.ts';
import type { Graph } from '../../ir/graph.ts';
import { numel } from '../../ir/shape.ts';
import type { Tensor } from '../../ir/tensor.ts';
import type { WeightStore } from '../../ir/weights.ts';
import { UserError } from '../../util/errors.ts';
import type {
  Plan,
  PlanBinding,
  PlanBuffer,
  PlanCopy,
  PlanDispatch,
  PlanRegion,
} from './runtime/plan-types.ts';

/** A buffer's initial bytes, in the device's layout (dtypes.ts encodeTensor), with its IR type. */
export interface Blob {
  readonly tensor: Tensor;
  readonly bytes: Uint8Array<ArrayBuffer>;
}

/** What several plans share: the WGSL files (one per distinct program) and the initial bytes by key. */
export class PackageData {
  readonly kernels: { readonly file: string; readonly code: string }[] = [];
  private readonly byCode = new Map<string, number>();
  readonly blobs = new Map<string, Blob>();

  kernel(op: string, code: string): number {
    let i = this.byCode.get(code);
    if (i === undefined) {
      i = this.kernels.length;
      this.kernels.push({ file: `kernels/${String(i).padStart(3, '0')}-${op}.wgsl`, code });
      this.byCode.set(code, i);
    }
    return i;
  }

  blob(key: string, tensor: Tensor): string {
    if (!this.blobs.has(key)) this.blobs.set(key, { tensor, bytes: encodeTensor(tensor) });
    return key;
  }
}

/** A constant's key: its bytes' hash, so equal constants of several plans share one tensor. */
function constKey(t: Tensor, bytes: Uint8Array): string {
  const h = createHash('sha256').update(t.dtype).update(bytes).digest('hex').slice(0, 16);
  return `peftc.const.${h}`;
}

/** The inputs of a KV-cache graph besides input_ids, as generate/feeds.ts kvFeeds makes them. */
export const KV_FEEDS = ['positions', 'kv_write', 'kv_keep', 'attn_bias', 'last_token'] as const;

/**
 * The plan of an inference graph (input `input_ids` i32 [1, seq], output `logits`), its
 * kernels and initial bytes added to `data`. With `kv`, a KV-cache graph (models/llama
 * build.ts `kvCache`): its feeds (KV_FEEDS) get regions, the params its `assign:` outputs
 * write are state buffers shared by key, and the writes are copies in place, planned as
 * the backend plans them for DecodeSession (`inPlaceAssigns`).
 */
export function graphPlan(
  graph: Graph,
  weights: WeightStore,
  target: KernelTarget,
  data: PackageData,
  opts: { readonly kv?: boolean } = {},
): Plan {
  const inputs = graph.inputs();
  const fed = new Set<string>(['input_ids', ...(opts.kv ? KV_FEEDS : [])]);
  const extra = inputs.filter((n) => !fed.has(String(n.attrs.name)));
  if (extra.length)
    throw new UserError(
      `the inference graph has inputs the package cannot feed: ${extra.map(describeNode).join(', ')}`,
    );
  const logits = graph.outputs.find((o) => o.name === 'logits');
  if (!logits) throw new UserError('the inference graph has no logits output');
  const mem = planMemory(graph, target, { outputsAtEnd: true, inPlaceAssigns: !!opts.kv });
  if (mem.transfers.some((t) => t.kind !== 'assign' || !opts.kv))
    throw new Error('internal: an inference plan with paged params, copied outputs or unexpected assigns');
  const region = (id: number) => mem.valueRegion.get(id) as Region;
  // Params the run writes (`assign:<param>` outputs): state, not weights.
  const paramIds = new Map(graph.params().map((p) => [String(p.attrs.name), p.id]));
  const assigns = graph.outputs.flatMap((o) => {
    const p = o.name.startsWith(ASSIGN_PREFIX) ? paramIds.get(o.name.slice(ASSIGN_PREFIX.length)) : undefined;
    return p === undefined ? [] : [{ param: p, value: o.id }];
  });
  if (assigns.length && !opts.kv) throw new Error('internal: an inference graph that writes its params');
  const state = new Set(assigns.map((a) => a.param));
  // Bound as buildSchedule binds (bindingSize).
  const binding = (r: Region, bytes: number): PlanBinding => ({
    buffer: r.buffer,
    offset: r.offset,
    size: bindingSize(mem.buffers[r.buffer].bytes, r.offset, bytes),
  });
  const nodeBytes = (id: number) => {
    const t = graph.node(id).type;
    return gpuByteSize(t.dtype, numel(t.shape));
  };
  const valueBinding = (id: number) => binding(region(id), nodeBytes(id));
  const init = new Map<number, Pick<PlanBuffer, 'init' | 'state'>>();
  for (const node of graph.nodes) {
    // Sources own their buffers (offset 0).
    if (node.op === 'param') {
      const name = String(node.attrs.name);
      if (state.has(node.id)) {
        init.set(region(node.id).buffer, { state: name });
        continue;
      }
      const t = weights.get(name);
      if (!t) throw new Error(`internal: no weight bound for param '${name}'`);
      init.set(region(node.id).buffer, { init: data.blob(name, t) });
    } else if (node.op === 'const') {
      const t = constTensor(node);
      init.set(region(node.id).buffer, { init: data.blob(constKey(t, encodeTensor(t)), t) });
    }
  }
  const buffers: PlanBuffer[] = mem.buffers.map((b, i) => ({ bytes: b.bytes, ...init.get(i) }));
  const dispatches: PlanDispatch[] = [];
  graph.nodes.forEach((node, pos) => {
    const kp = mem.nodes[pos];
    if (kp === 'source' || kp === 'alias' || kp === 'member') return;
    const scratch = mem.scratch.get(node.id) ?? [];
    for (const step of kp.steps) {
      if (step.workgroups === 0) continue; // buildSchedule skips these too
      dispatches.push({
        kernel: data.kernel(step.desc.op, step.code),
        bindings: step.bindings.map(({ ref }) => {
          // The target has no textureDimension, so no kernel plans a texture.
          if (ref.kind === 'texture') throw new Error('internal: a texture binding in an exported plan');
          return ref.kind === 'output'
            ? valueBinding(node.id)
            : ref.kind === 'scratch'
              ? binding(scratch[ref.index], kp.scratch?.[ref.index] ?? 0)
              : valueBinding(ref.kind === 'value' ? ref.id : node.inputs[ref.index]);
        }),
        writes: step.bindings.map((b) => b.write),
        uniforms: [...step.uniforms.bytes()],
        size: foldDispatch(step.workgroups),
        node: describeNode(node),
      });
    }
  });
  const ids = inputs.find((n) => n.attrs.name === 'input_ids');
  if (!ids) throw new UserError('the inference graph has no input_ids input');
  const plan: Plan = {
    seq: ids.type.shape[1],
    buffers,
    input: region(ids.id),
    output: region(logits.id),
    dispatches,
  };
  if (!opts.kv) return plan;
  // The writes in place as the executor makes them: during the run where planned, else at its end.
  const copies: PlanCopy[] = mem.transfers.map((t) => ({
    at: t.at,
    from: t.buffer,
    to: t.target as Region,
    bytes: t.bytes,
  }));
  const early = new Set(mem.transfers.map((t) => t.param));
  for (const a of assigns) {
    const from = region(a.value);
    const to = region(a.param);
    if (early.has(a.param) || from.buffer === to.buffer) continue;
    copies.push({ at: dispatches.length, from, to, bytes: nodeBytes(a.param) });
  }
  const feeds: Record<string, PlanRegion> = {};
  for (const n of inputs) if (n.attrs.name !== 'input_ids') feeds[String(n.attrs.name)] = region(n.id);
  return { ...plan, feeds, copies };
}
