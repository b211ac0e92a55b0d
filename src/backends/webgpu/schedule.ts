// Compiles a graph to a static schedule: every value gets a device buffer (params
// resident, inputs and consts their own, intermediates from a pool that reuses a
// buffer once the last reader of its value has run), every node its dispatches with
// their pipelines, uniforms and bind groups. Nothing here runs on the device queue.
import type { Graph, Node } from '../../ir/graph.ts';
import { formatShape, numel } from '../../ir/shape.ts';
import type { Tensor } from '../../ir/tensor.ts';
import { ASSIGN_PREFIX } from '../backend.ts';
import { checked, type GpuContext, WebGpuError } from './device.ts';
import { encodeTensor, gpuByteSize, isPacked } from './dtypes.ts';
import { getKernel } from './kernels/index.ts';
import type { PipelineCache } from './pipelines.ts';
import { foldDispatch, type KernelPlan } from './program.ts';

export interface Dispatch {
  readonly node: Node;
  readonly key: string;
  readonly pipeline: GPUComputePipeline;
  readonly bindGroup: GPUBindGroup;
  readonly size: readonly [number, number, number];
}

/**
 * A copy before dispatch `at`: between the host and a paged param's device buffer
 * (upload / download, see paging.ts), or a param's new value into the param's own buffer as
 * soon as the old value's last reader has run (assign; `inPlaceAssigns`).
 */
export interface Transfer {
  readonly kind: 'upload' | 'download' | 'assign';
  readonly at: number;
  /** The paged param's node id. */
  readonly param: number;
  /** The value copied: the param itself (upload) or its `assign:` value (download). */
  readonly value: number;
  /** Upload: the param's pooled buffer; download / assign: the buffer holding its `assign:` value. */
  readonly buffer: GPUBuffer;
  /** Assign: the param's buffer. */
  readonly target?: GPUBuffer;
  readonly bytes: number;
}

export interface Schedule {
  readonly dispatches: readonly Dispatch[];
  /** Paged-param copies, in dispatch order (empty without paging). */
  readonly transfers: readonly Transfer[];
  /** Device buffer of each value (aliases share one). */
  readonly buffers: ReadonlyMap<number, GPUBuffer>;
  /** Every buffer the schedule owns (destroyed on dispose). */
  readonly owned: readonly GPUBuffer[];
  readonly pooledBytes: number;
}

const STORAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

export function describeNode(n: Node): string {
  const name = n.op === 'param' || n.op === 'input' ? ` '${String(n.attrs.name)}'` : '';
  return `%${n.id} = ${n.op}${name} ${n.type.dtype}${formatShape(n.type.shape)} in ${n.scope || '(top level)'}`;
}

function mib(b: number): string {
  return `${(b / 1048576).toFixed(1)} MiB`;
}

/** Refuses tensors the device cannot bind, naming the tensor, before anything is allocated. */
export function checkSizes(graph: Graph, gpu: GpuContext): void {
  const maxBind = gpu.limits.maxStorageBufferBindingSize;
  const maxBuf = gpu.limits.maxBufferSize;
  for (const n of graph.nodes) {
    if (n.type.dtype === 'f16' && !gpu.f16) {
      throw new WebGpuError(
        `${describeNode(n)}: f16 tensors need the 'shader-f16' feature, which this adapter (${gpu.adapterInfo}) does not offer; cast to f32 or run with --backend cpu`,
      );
    }
    const bytes = gpuByteSize(n.type.dtype, numel(n.type.shape));
    if (bytes > maxBind || bytes > maxBuf) {
      throw new WebGpuError(
        `tensor ${describeNode(n)} needs ${mib(bytes)} but this adapter (${gpu.adapterInfo}) binds at most ` +
          `${mib(Math.min(maxBind, maxBuf))} per storage buffer (maxStorageBufferBindingSize ${maxBind}, maxBufferSize ${maxBuf}); ` +
          'use a smaller batch or sequence length, or split the tensor',
      );
    }
  }
}

class Pool {
  private readonly free: GPUBuffer[] = [];
  readonly all: GPUBuffer[] = [];
  bytes = 0;
  constructor(private readonly device: GPUDevice) {}
  acquire(bytes: number, label: string): GPUBuffer {
    // Smallest free buffer that fits without wasting more than half of it.
    let best = -1;
    for (let i = 0; i < this.free.length; i++) {
      const s = this.free[i].size;
      if (s >= bytes && s <= bytes * 2 && (best < 0 || s < this.free[best].size)) best = i;
    }
    if (best >= 0) return this.free.splice(best, 1)[0];
    const size = Math.ceil(bytes / 256) * 256;
    const b = this.device.createBuffer({ size, usage: STORAGE, label });
    this.all.push(b);
    this.bytes += size;
    return b;
  }
  release(b: GPUBuffer): void {
    this.free.push(b);
  }
}

export interface ScheduleInputs {
  readonly graph: Graph;
  readonly gpu: GpuContext;
  readonly pipelines: PipelineCache;
  /** Host tensor of each param by node id (already checked against the graph). */
  readonly params: ReadonlyMap<number, Tensor>;
  /** Params held on the host (paging.ts): pooled on the device only around their update. */
  readonly paged?: ReadonlySet<number>;
  /**
   * Write each param's new value into its buffer once the old value's last reader has run,
   * and free the new value's pooled buffer then, instead of copying every `assign:` value at
   * the end of the run (which keeps them all live). Pays off with per-layer updates
   * (passes/optimizer/per-layer.ts); each copy splits the compute pass.
   */
  readonly inPlaceAssigns?: boolean;
}

/**
 * The `assign:` outputs that can be written in place: value id -> [param id, position after
 * which to copy]. The value must be that output only, the param neither paged, an output,
 * nor the value itself.
 */
function inPlaceCandidates(graph: Graph, paged: ReadonlySet<number>): Map<number, [number, number]> {
  const outputsOf = new Map<number, number>();
  for (const o of graph.outputs) outputsOf.set(o.id, (outputsOf.get(o.id) ?? 0) + 1);
  const lastReader = new Map<number, number>();
  graph.nodes.forEach((n, pos) => {
    for (const i of n.inputs) lastReader.set(i, pos);
  });
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

export async function buildSchedule({
  graph,
  gpu,
  pipelines,
  params,
  paged = new Set(),
  inPlaceAssigns = false,
}: ScheduleInputs): Promise<Schedule> {
  const { device } = gpu;
  checkSizes(graph, gpu);
  // Last reader of each value; graph outputs live to the end.
  const lastUse = new Map<number, number>();
  graph.nodes.forEach((n, pos) => {
    for (const i of n.inputs) lastUse.set(i, pos);
  });
  // A paged param's new value is copied to the host right after it is computed (`downloads`);
  // unless it is also another output, its buffer then lives only as long as its readers.
  const downloads = new Map<number, number[]>();
  for (const o of graph.outputs) {
    const target = o.name.startsWith(ASSIGN_PREFIX)
      ? paramIdByName(graph, o.name.slice(ASSIGN_PREFIX.length))
      : undefined;
    if (target !== undefined && paged.has(target)) {
      if (target !== o.id) downloads.set(o.id, [...(downloads.get(o.id) ?? []), target]);
    } else lastUse.set(o.id, Number.POSITIVE_INFINITY);
  }
  for (const id of downloads.keys()) if (!lastUse.has(id)) lastUse.set(id, graph.position(id));
  // In-place assigns: copied after position `at`, freed after max(at, last reader) (`releaseAt`).
  const inPlace = inPlaceAssigns ? inPlaceCandidates(graph, paged) : new Map<number, [number, number]>();
  const copyAt = new Map<number, number[]>();
  const releaseAt = new Map<number, number[]>();
  for (const [v, [, at]] of inPlace) {
    const readers = graph.nodes.reduce((m, n, pos) => (n.inputs.includes(v) ? pos : m), -1);
    copyAt.set(at, [...(copyAt.get(at) ?? []), v]);
    const free = Math.max(at, readers);
    releaseAt.set(free, [...(releaseAt.get(free) ?? []), v]);
  }
  const transfers: Transfer[] = [];

  const pool = new Pool(device);
  const owned: GPUBuffer[] = [];
  const buffers = new Map<number, GPUBuffer>();
  const pooled = new Set<GPUBuffer>();
  const refs = new Map<GPUBuffer, number>();
  const dispatches: Dispatch[] = [];
  const maxStorage = gpu.limits.maxStorageBuffersPerShaderStage;

  const own = (bytes: number, label: string, data?: Uint8Array<ArrayBuffer>): GPUBuffer => {
    const b = device.createBuffer({
      // Multiples of 16: a vec4 binding needs at least one whole element.
      size: Math.max(16, Math.ceil(bytes / 16) * 16),
      usage: STORAGE,
      label,
      mappedAtCreation: !!data,
    });
    if (data) {
      new Uint8Array(b.getMappedRange()).set(data);
      b.unmap();
    }
    owned.push(b);
    return b;
  };
  const bind = (id: number, b: GPUBuffer) => {
    buffers.set(id, b);
    refs.set(b, (refs.get(b) ?? 0) + 1);
  };
  const unref = (id: number) => {
    const b = buffers.get(id) as GPUBuffer;
    const left = (refs.get(b) ?? 0) - 1;
    refs.set(b, left);
    if (left === 0 && pooled.has(b)) pool.release(b);
  };

  for (let pos = 0; pos < graph.nodes.length; pos++) {
    const node = graph.nodes[pos];
    const kernel = getKernel(node.op);
    if (!kernel) {
      throw new WebGpuError(
        `${describeNode(node)}: no WebGPU kernel for op '${node.op}' (register one with registerKernel)`,
      );
    }
    const ctx = {
      node,
      inputs: node.inputs.map((i) => graph.node(i).type),
      out: node.type,
      f16: gpu.f16,
      software: gpu.software,
    };
    let plan: KernelPlan | 'alias' | 'source';
    try {
      plan = kernel(ctx);
    } catch (e) {
      throw new WebGpuError(`${describeNode(node)}: planning its kernel failed: ${(e as Error).message}`, {
        cause: e,
      });
    }
    const bytes = gpuByteSize(node.type.dtype, numel(node.type.shape));
    // Paged params get a pooled buffer at their first reader, filled by an upload just before.
    for (const i of new Set(node.inputs)) {
      if (!paged.has(i) || buffers.has(i)) continue;
      const pbytes = gpuByteSize(graph.node(i).type.dtype, numel(graph.node(i).type.shape));
      const b = pool.acquire(pbytes, describeNode(graph.node(i)));
      pooled.add(b);
      bind(i, b);
      transfers.push({ kind: 'upload', at: dispatches.length, param: i, value: i, buffer: b, bytes: pbytes });
    }
    if (paged.has(node.id)) {
      // Bound at its first reader (above); nothing to allocate here.
    } else if (plan === 'source') {
      const t = node.op === 'param' ? params.get(node.id) : undefined;
      let data = t ? encodeTensor(t) : undefined;
      if (node.op === 'const') data = encodeTensor(constTensor(node));
      bind(node.id, own(bytes, describeNode(node), data));
    } else if (plan === 'alias') {
      bind(node.id, buffers.get(node.inputs[0]) as GPUBuffer);
    } else {
      if (
        isPacked(node.type.dtype) &&
        plan.steps.some((s) => s.bindings.some((b) => b.write && b.ref.kind === 'output'))
      ) {
        // Map kernels pack whole words; others write elements and cannot.
        if (!plan.steps.every((s) => s.desc.workgroup.length === 1 && s.desc.workgroup[0] === 256)) {
          throw new WebGpuError(
            `${describeNode(node)}: writing packed ${node.type.dtype} is not supported by this kernel`,
          );
        }
      }
      const out = pool.acquire(bytes, describeNode(node));
      pooled.add(out);
      bind(node.id, out);
      const scratch = (plan.scratch ?? []).map((s) => pool.acquire(s, `${describeNode(node)} scratch`));
      for (const step of plan.steps) {
        if (step.workgroups === 0) continue;
        if (step.bindings.length > maxStorage) {
          throw new WebGpuError(
            `${describeNode(node)}: its kernel binds ${step.bindings.length} storage buffers but this adapter allows ${maxStorage} per shader stage`,
          );
        }
        const what = () =>
          `creating the WebGPU kernel for ${describeNode(node)} (kernel ${JSON.stringify(step.desc)})`;
        const writes = step.bindings.map((b) => b.write);
        const d = await checked(gpu, what, () => {
          const { pipeline, key } = pipelines.get(step.desc, writes, step.code);
          const ubytes = step.uniforms.bytes();
          const ubuf = device.createBuffer({
            size: ubytes.byteLength,
            usage: GPUBufferUsage.UNIFORM,
            mappedAtCreation: true,
            label: `${describeNode(node)} uniforms`,
          });
          new Uint32Array(ubuf.getMappedRange()).set(ubytes);
          ubuf.unmap();
          owned.push(ubuf);
          const entries: GPUBindGroupEntry[] = [{ binding: 0, resource: { buffer: ubuf } }];
          step.bindings.forEach((b, i) => {
            const buf =
              b.ref.kind === 'output'
                ? out
                : b.ref.kind === 'scratch'
                  ? scratch[b.ref.index]
                  : (buffers.get(node.inputs[b.ref.index]) as GPUBuffer);
            entries.push({ binding: i + 1, resource: { buffer: buf } });
          });
          const bindGroup = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
          return {
            node,
            key,
            pipeline,
            bindGroup,
            size: foldDispatch(step.workgroups, gpu.limits.maxComputeWorkgroupsPerDimension),
          };
        }).catch((e) => {
          pipelines.forget(step.desc, writes);
          throw e;
        });
        dispatches.push(d);
      }
      for (const s of scratch) pool.release(s);
    }
    for (const target of downloads.get(node.id) ?? []) {
      const t = graph.node(target);
      const tbytes = gpuByteSize(t.type.dtype, numel(t.type.shape));
      transfers.push({
        kind: 'download',
        at: dispatches.length,
        param: target,
        value: node.id,
        buffer: buffers.get(node.id) as GPUBuffer,
        bytes: tbytes,
      });
    }
    for (const v of copyAt.get(pos) ?? []) {
      const [p] = inPlace.get(v) as [number, number];
      const buffer = buffers.get(v) as GPUBuffer;
      // Only a pooled value is copied early; one held in a source's buffer waits for the end.
      if (!pooled.has(buffer)) {
        inPlace.delete(v);
        continue;
      }
      const t = graph.node(p);
      const bytes = gpuByteSize(t.type.dtype, numel(t.type.shape));
      transfers.push({
        kind: 'assign',
        at: dispatches.length,
        param: p,
        value: v,
        buffer,
        target: buffers.get(p),
        bytes,
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
  }
  return { dispatches, transfers, buffers, owned: [...owned, ...pool.all], pooledBytes: pool.bytes };
}

function paramIdByName(graph: Graph, name: string): number | undefined {
  return graph.params().find((p) => p.attrs.name === name)?.id;
}

function constTensor(n: Node): Tensor {
  const { value } = n.attrs as { value: number | number[] };
  const len = numel(n.type.shape);
  const data = new Float64Array(len);
  if (typeof value === 'number') data.fill(value);
  else data.set(value);
  const host = n.type.dtype === 'u4' ? undefined : data;
  if (!host) throw new WebGpuError(`${describeNode(n)}: a u4 const is not supported`);
  const typed =
    n.type.dtype === 'i32'
      ? Int32Array.from(host)
      : n.type.dtype === 'u32'
        ? Uint32Array.from(host)
        : n.type.dtype === 'u8'
          ? Uint8Array.from(host)
          : Float32Array.from(host);
  return { dtype: n.type.dtype, shape: n.type.shape, data: typed };
}
