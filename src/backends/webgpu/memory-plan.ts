// The WebGPU memory plan of a graph, computed without a device: which buffer holds every
// value, when a pooled buffer is reused, the paged params' copies, the in-place assigns,
// and the bytes by kind. buildSchedule (schedule.ts) only follows it, creating one GPU
// buffer per planned buffer; `peftc plan` reports it. So the plan's bytes are the bytes
// the executor allocates, by construction.
//
// Pooling: a value's buffer goes back to the pool after its last reader (graph outputs
// live to the end); a request takes the smallest free pooled buffer that fits without
// wasting more than half of it, else a new one (size rounded up to 256). Sources (params,
// inputs, consts) own their buffers; a view ('alias') shares its input's.
import type { Graph, Node } from '../../ir/graph.ts';
import { formatShape, numel } from '../../ir/shape.ts';
import { ASSIGN_PREFIX } from '../backend.ts';
import { WebGpuError } from './device.ts';
import { gpuByteSize } from './dtypes.ts';
import { getKernel } from './kernels/index.ts';
import type { KernelPlan, SoftwareMatmul } from './program.ts';

export type NodePlan = KernelPlan | 'alias' | 'source';

/** What a planned buffer holds, for the memory report. */
export type MemoryKind =
  | 'frozen'
  | 'trainable'
  | 'optimizer'
  | 'inputs'
  | 'constants'
  | 'gradients'
  | 'activations'
  | 'workspace'
  | 'uniforms';

export interface KernelTarget {
  /** The adapter offers shader-f16. */
  readonly f16: boolean;
  /** A CPU adapter (lavapipe): kernels pick CPU-friendly variants. */
  readonly software: boolean;
  /** See KernelContext.softwareMatmul. */
  readonly softwareMatmul?: SoftwareMatmul;
}

export class KernelPlanError extends WebGpuError {
  override name = 'KernelPlanError';
}

export function describeNode(n: Node): string {
  const name = n.op === 'param' || n.op === 'input' ? ` '${String(n.attrs.name)}'` : '';
  return `%${n.id} = ${n.op}${name} ${n.type.dtype}${formatShape(n.type.shape)} in ${n.scope || '(top level)'}`;
}

/** The kernel plan of one node (its dispatches, or that it aliases its input / is a source). */
export function planNode(graph: Graph, node: Node, target: KernelTarget): NodePlan {
  const kernel = getKernel(node.op);
  if (!kernel)
    throw new KernelPlanError(
      `${describeNode(node)}: no WebGPU kernel for op '${node.op}' (register one with registerKernel)`,
    );
  try {
    return kernel({
      node,
      inputs: node.inputs.map((i) => graph.node(i).type),
      out: node.type,
      f16: target.f16,
      software: target.software,
      softwareMatmul: target.softwareMatmul,
    });
  } catch (e) {
    throw new KernelPlanError(`${describeNode(node)}: planning its kernel failed: ${(e as Error).message}`, {
      cause: e,
    });
  }
}

/** One device buffer of the plan. */
export interface PlannedBuffer {
  readonly bytes: number;
  readonly label: string;
  /** Reused through the pool (intermediates, scratch, paged params) or owned by one source. */
  readonly pooled: boolean;
  /** Kind of the value it was made for (a pooled buffer's later tenants may differ). */
  readonly kind: MemoryKind;
}

/** A copy before dispatch `at` (see schedule.ts Transfer), by buffer index. */
export interface PlannedTransfer {
  readonly kind: 'upload' | 'download' | 'assign';
  readonly at: number;
  readonly param: number;
  readonly value: number;
  /** Upload: the param's pooled buffer; download / assign: the buffer holding the new value. */
  readonly buffer: number;
  /** Assign: the param's buffer. */
  readonly target?: number;
  readonly bytes: number;
}

export interface MemoryPlan {
  readonly nodes: readonly NodePlan[];
  readonly buffers: readonly PlannedBuffer[];
  /** Buffer index of each value (aliases share one). */
  readonly valueBuffer: ReadonlyMap<number, number>;
  /** Scratch buffers of each node with some, by buffer index. */
  readonly scratch: ReadonlyMap<number, readonly number[]>;
  readonly transfers: readonly PlannedTransfer[];
  /** Dispatches per run (steps with work). */
  readonly dispatches: number;
  /** Bytes of the uniform buffers (one per dispatch). */
  readonly uniformBytes: number;
  /** Every buffer the executable holds: owned (rounded to 16), pooled (to 256), uniforms. */
  readonly deviceBytes: number;
  readonly pooledBytes: number;
  /**
   * deviceBytes by kind: owned buffers by what they hold; pooled ones by what they hold at
   * the point the pool reaches its full size (while the node that grew it last runs: its
   * inputs, output and scratch live), a free one there counting as workspace.
   */
  readonly byKind: Readonly<Record<MemoryKind, number>>;
}

export interface MemoryPlanOptions {
  /** Params held on the host (paging.ts): pooled on the device only around their update. */
  readonly paged?: ReadonlySet<number>;
  /**
   * Write each param's new value into its buffer once the old value's last reader has run,
   * and free the new value's pooled buffer then, instead of copying every `assign:` value at
   * the end of the run (which keeps them all live). Pays off with per-layer updates
   * (passes/optimizer/per-layer.ts); each copy splits the compute pass.
   */
  readonly inPlaceAssigns?: boolean;
  /** Values that are gradients (for the report; default none). */
  readonly gradients?: ReadonlySet<number>;
}

function paramIdByName(graph: Graph, name: string): number | undefined {
  return graph.params().find((p) => p.attrs.name === name)?.id;
}

/** Device bytes of a node's value. */
const valueBytes = (n: Node) => gpuByteSize(n.type.dtype, numel(n.type.shape));

/** Owned buffers are multiples of 16 bytes (a vec4 binding needs a whole element), at least 16. */
export const ownedSize = (bytes: number) => Math.max(16, Math.ceil(bytes / 16) * 16);

function sourceKind(n: Node): MemoryKind {
  if (n.op === 'input') return 'inputs';
  if (n.op === 'const') return 'constants';
  const role = n.attrs.role;
  return role === 'trainable' ? 'trainable' : role === 'state' ? 'optimizer' : 'frozen';
}

/**
 * The `assign:` outputs that can be written in place: value id -> [param id, position after
 * which to copy]. The value must be that output only, the param neither paged, an output,
 * nor the value itself.
 */
function inPlaceCandidates(
  graph: Graph,
  paged: ReadonlySet<number>,
  lastReader: ReadonlyMap<number, number>,
): Map<number, [number, number]> {
  const outputsOf = new Map<number, number>();
  for (const o of graph.outputs) outputsOf.set(o.id, (outputsOf.get(o.id) ?? 0) + 1);
  const out = new Map<number, [number, number]>();
  for (const o of graph.outputs) {
    if (!o.name.startsWith(ASSIGN_PREFIX)) continue;
    const p = paramIdByName(graph, o.name.slice(ASSIGN_PREFIX.length));
    if (p === undefined || p === o.id || paged.has(p) || outputsOf.has(p) || outputsOf.get(o.id) !== 1)
      continue;
    out.set(o.id, [p, Math.max(graph.position(o.id), lastReader.get(p) ?? -1)]);
  }
  return out;
}

export function planMemory(graph: Graph, target: KernelTarget, opts: MemoryPlanOptions = {}): MemoryPlan {
  const paged = opts.paged ?? new Set<number>();
  const gradients = opts.gradients ?? new Set<number>();
  // Last reader of each value; graph outputs live to the end.
  const lastUse = new Map<number, number>();
  const lastReader = new Map<number, number>();
  graph.nodes.forEach((n, pos) => {
    for (const i of n.inputs) {
      lastUse.set(i, pos);
      lastReader.set(i, pos);
    }
  });
  // A paged param's new value is copied to the host right after it is computed (`downloads`);
  // unless it is also another output, its buffer then lives only as long as its readers.
  const downloads = new Map<number, number[]>();
  for (const o of graph.outputs) {
    const p = o.name.startsWith(ASSIGN_PREFIX)
      ? paramIdByName(graph, o.name.slice(ASSIGN_PREFIX.length))
      : undefined;
    if (p !== undefined && paged.has(p)) {
      if (p !== o.id) downloads.set(o.id, [...(downloads.get(o.id) ?? []), p]);
    } else lastUse.set(o.id, Number.POSITIVE_INFINITY);
  }
  for (const id of downloads.keys()) if (!lastUse.has(id)) lastUse.set(id, graph.position(id));
  // In-place assigns: copied after position `at`, freed after max(at, last reader).
  const inPlace = opts.inPlaceAssigns
    ? inPlaceCandidates(graph, paged, lastReader)
    : new Map<number, [number, number]>();
  const copyAt = new Map<number, number[]>();
  const releaseAt = new Map<number, number[]>();
  for (const [v, [, at]] of inPlace) {
    copyAt.set(at, [...(copyAt.get(at) ?? []), v]);
    const free = Math.max(at, lastReader.get(v) ?? -1);
    releaseAt.set(free, [...(releaseAt.get(free) ?? []), v]);
  }

  const buffers: PlannedBuffer[] = [];
  const free: number[] = [];
  // What each pooled buffer holds now, and a copy taken whenever the pool has grown.
  const tenant: MemoryKind[] = [];
  let atPeak: MemoryKind[] = [];
  let grew = false;
  const acquire = (bytes: number, label: string, kind: MemoryKind): number => {
    let best = -1;
    for (let i = 0; i < free.length; i++) {
      const s = buffers[free[i]].bytes;
      if (s >= bytes && s <= bytes * 2 && (best < 0 || s < buffers[free[best]].bytes)) best = i;
    }
    if (best >= 0) return free.splice(best, 1)[0];
    buffers.push({ bytes: Math.ceil(bytes / 256) * 256, label, pooled: true, kind });
    tenant[buffers.length - 1] = kind;
    grew = true;
    return buffers.length - 1;
  };
  const valueBuffer = new Map<number, number>();
  const refs = new Map<number, number>();
  const valueKind = (n: Node): MemoryKind =>
    n.op === 'param' ? sourceKind(n) : gradients.has(n.id) ? 'gradients' : 'activations';
  const bind = (id: number, b: number) => {
    valueBuffer.set(id, b);
    refs.set(b, (refs.get(b) ?? 0) + 1);
    if (buffers[b].pooled && refs.get(b) === 1) tenant[b] = valueKind(graph.node(id));
  };
  const unref = (id: number) => {
    const b = valueBuffer.get(id) as number;
    const left = (refs.get(b) ?? 0) - 1;
    refs.set(b, left);
    if (left === 0 && buffers[b].pooled) {
      free.push(b);
      tenant[b] = 'workspace';
    }
  };

  const nodes: NodePlan[] = [];
  const scratch = new Map<number, number[]>();
  const transfers: PlannedTransfer[] = [];
  let dispatches = 0;
  let uniformBytes = 0;
  graph.nodes.forEach((node, pos) => {
    const plan = planNode(graph, node, target);
    nodes.push(plan);
    const bytes = valueBytes(node);
    // Paged params get a pooled buffer at their first reader, filled by an upload just before.
    for (const i of new Set(node.inputs)) {
      if (!paged.has(i) || valueBuffer.has(i)) continue;
      const src = graph.node(i);
      const pbytes = valueBytes(src);
      bind(i, acquire(pbytes, describeNode(src), sourceKind(src)));
      transfers.push({
        kind: 'upload',
        at: dispatches,
        param: i,
        value: i,
        buffer: valueBuffer.get(i)!,
        bytes: pbytes,
      });
    }
    if (paged.has(node.id)) {
      // Bound at its first reader (above).
    } else if (plan === 'source') {
      buffers.push({
        bytes: ownedSize(bytes),
        label: describeNode(node),
        pooled: false,
        kind: sourceKind(node),
      });
      bind(node.id, buffers.length - 1);
    } else if (plan === 'alias') {
      bind(node.id, valueBuffer.get(node.inputs[0]) as number);
    } else {
      bind(node.id, acquire(bytes, describeNode(node), valueKind(node)));
      const s = (plan.scratch ?? []).map((b) => {
        const i = acquire(b, `${describeNode(node)} scratch`, 'workspace');
        tenant[i] = 'workspace';
        return i;
      });
      if (s.length) scratch.set(node.id, s);
      for (const step of plan.steps) {
        if (step.workgroups === 0) continue;
        dispatches++;
        uniformBytes += step.uniforms.bytes().byteLength;
      }
      if (grew) atPeak = [...tenant];
      grew = false;
      for (const b of s) free.push(b);
    }
    if (grew) atPeak = [...tenant];
    grew = false;
    for (const p of downloads.get(node.id) ?? []) {
      const tb = valueBytes(graph.node(p));
      transfers.push({
        kind: 'download',
        at: dispatches,
        param: p,
        value: node.id,
        buffer: valueBuffer.get(node.id)!,
        bytes: tb,
      });
    }
    for (const v of copyAt.get(pos) ?? []) {
      const [p] = inPlace.get(v) as [number, number];
      const buffer = valueBuffer.get(v) as number;
      // Only a pooled value is copied early; one held in a source's buffer waits for the end.
      if (!buffers[buffer].pooled) {
        inPlace.delete(v);
        continue;
      }
      const tb = valueBytes(graph.node(p));
      transfers.push({
        kind: 'assign',
        at: dispatches,
        param: p,
        value: v,
        buffer,
        target: valueBuffer.get(p),
        bytes: tb,
      });
    }
    // Inputs whose last reader this was go back to the pool (after the output was taken).
    for (const i of new Set(node.inputs)) if (lastUse.get(i) === pos && !inPlace.has(i)) unref(i);
    for (const v of releaseAt.get(pos) ?? []) if (inPlace.has(v)) unref(v);
    if (
      !paged.has(node.id) &&
      (!lastUse.has(node.id) || (downloads.has(node.id) && lastUse.get(node.id) === pos))
    )
      unref(node.id);
  });
  const byKind: Record<MemoryKind, number> = {
    frozen: 0,
    trainable: 0,
    optimizer: 0,
    inputs: 0,
    constants: 0,
    gradients: 0,
    activations: 0,
    workspace: 0,
    uniforms: uniformBytes,
  };
  let pooledBytes = 0;
  buffers.forEach((b, i) => {
    byKind[b.pooled ? (atPeak[i] ?? 'workspace') : b.kind] += b.bytes;
    if (b.pooled) pooledBytes += b.bytes;
  });
  const deviceBytes = Object.values(byKind).reduce((s, x) => s + x, 0);
  return {
    nodes,
    buffers,
    valueBuffer,
    scratch,
    transfers,
    dispatches,
    uniformBytes,
    deviceBytes,
    pooledBytes,
    byKind,
  };
}
