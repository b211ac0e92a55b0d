// Compiles a graph to a static schedule: the memory plan (memory-plan.ts: which buffer holds
// each value, pooling, paging and in-place copies) made real as device buffers, and every
// node's dispatches with their pipelines, uniforms and bind groups. Nothing here runs on
// the device queue.
import type { Graph, Node } from '../../ir/graph.ts';
import { numel } from '../../ir/shape.ts';
import type { Tensor } from '../../ir/tensor.ts';
import { checked, type GpuContext, WebGpuError } from './device.ts';
import { encodeTensor, gpuByteSize, isPacked } from './dtypes.ts';
import {
  bindingSize,
  describeNode,
  type MemoryPlanOptions,
  type PlannedTransfer,
  planMemory,
  type Region,
} from './memory-plan.ts';
import type { PipelineCache } from './pipelines.ts';
import { bindingAccess, foldDispatch } from './program.ts';

export { describeNode };

export interface Dispatch {
  /** The node the kernel computes; a group kernel's last member. */
  readonly node: Node;
  /** A group kernel's members, `node` last (kernel-groups.ts). */
  readonly members?: readonly Node[];
  readonly key: string;
  readonly pipeline: GPUComputePipeline;
  readonly bindGroup: GPUBindGroup;
  readonly size: readonly [number, number, number];
}

/** Where a value lives on the device: a buffer and a byte offset in it. */
export interface DeviceRegion {
  readonly buffer: GPUBuffer;
  readonly offset: number;
}

/** A planned copy (memory-plan.ts PlannedTransfer) with its device regions. */
export interface Transfer extends Omit<PlannedTransfer, 'buffer' | 'target'> {
  readonly buffer: DeviceRegion;
  /** Assign: the param's region. */
  readonly target?: DeviceRegion;
}

export interface Schedule {
  readonly dispatches: readonly Dispatch[];
  /** Paged-param copies, in dispatch order (empty without paging). */
  readonly transfers: readonly Transfer[];
  /** Device region of each value (aliases share one). */
  readonly buffers: ReadonlyMap<number, DeviceRegion>;
  /** Every buffer the schedule made (shared params' buffers are another executable's). */
  readonly owned: readonly GPUBuffer[];
  /** The scratch textures it made (memory-plan.ts MemoryPlan.textures). */
  readonly textures: readonly GPUTexture[];
  readonly pooledBytes: number;
}

const STORAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

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

export interface ScheduleInputs extends Pick<MemoryPlanOptions, 'paged' | 'inPlaceAssigns' | 'groups'> {
  /** Buffers of params another executable holds (CompileOptions.share), by node id. */
  readonly shared?: ReadonlyMap<number, GPUBuffer>;
  readonly graph: Graph;
  readonly gpu: GpuContext;
  readonly pipelines: PipelineCache;
  /** Host tensor of each param by node id (already checked against the graph). */
  readonly params: ReadonlyMap<number, Tensor>;
}

/** Creates the planned buffers (memory-plan.ts) and every node's dispatches; runs nothing. */
export async function buildSchedule({
  graph,
  gpu,
  pipelines,
  params,
  paged = new Set(),
  inPlaceAssigns = false,
  groups = true,
  shared = new Map(),
}: ScheduleInputs): Promise<Schedule> {
  const { device } = gpu;
  checkSizes(graph, gpu);
  const target = {
    ...gpu,
    storageBuffers: gpu.limits.maxStorageBuffersPerShaderStage,
    textureDimension: gpu.limits.maxTextureDimension2D,
  };
  const plan = planMemory(graph, target, { paged, inPlaceAssigns, groups, external: new Set(shared.keys()) });
  const externalBuffer = new Map<number, GPUBuffer>();
  for (const [id, b] of shared) externalBuffer.set((plan.valueRegion.get(id) as Region).buffer, b);
  // Sources start with their values (params, consts); inputs are written by each run.
  const initial = new Map<number, Uint8Array>();
  for (const node of graph.nodes) {
    if (paged.has(node.id) || shared.has(node.id)) continue;
    const t = node.op === 'param' ? params.get(node.id) : node.op === 'const' ? constTensor(node) : undefined;
    // Sources own their buffers (offset 0).
    if (t) initial.set((plan.valueRegion.get(node.id) as Region).buffer, encodeTensor(t));
  }
  const owned: GPUBuffer[] = [];
  const made = plan.buffers.map((b, i) => {
    const theirs = externalBuffer.get(i);
    if (theirs) return theirs;
    const data = initial.get(i);
    const created = device.createBuffer({
      size: b.bytes,
      usage: STORAGE,
      label: b.label,
      mappedAtCreation: !!data,
    });
    if (data) {
      new Uint8Array(created.getMappedRange()).set(data);
      created.unmap();
    }
    owned.push(created);
    return created;
  });
  const textures = plan.textures.map((t, i) =>
    device.createTexture({
      size: [t.width, t.height],
      format: 'rgba32float',
      usage: GPUTextureUsage.TEXTURE_BINDING | GPUTextureUsage.STORAGE_BINDING,
      label: `scratch texture ${i} (${t.width}x${t.height})`,
    }),
  );
  const region = (r: Region): DeviceRegion => ({ buffer: made[r.buffer], offset: r.offset });
  const regionOf = (id: number) => region(plan.valueRegion.get(id) as Region);
  const binding = (r: DeviceRegion, type: { dtype: Node['type']['dtype']; shape: readonly number[] }) =>
    scratchBinding(r, gpuByteSize(type.dtype, numel(type.shape)));
  const dispatches: Dispatch[] = [];
  const maxStorage = gpu.limits.maxStorageBuffersPerShaderStage;
  for (let pos = 0; pos < graph.nodes.length; pos++) {
    const node = graph.nodes[pos];
    const kp = plan.nodes[pos];
    if (kp === 'source' || kp === 'alias' || kp === 'member') continue;
    if (
      isPacked(node.type.dtype) &&
      kp.steps.some((s) => s.bindings.some((b) => b.write && b.ref.kind === 'output')) &&
      // Map kernels pack whole words; others write elements and cannot.
      !kp.steps.every((s) => s.desc.workgroup.length === 1 && s.desc.workgroup[0] === 256)
    ) {
      throw new WebGpuError(
        `${describeNode(node)}: writing packed ${node.type.dtype} is not supported by this kernel`,
      );
    }
    const valueBinding = (id: number) => binding(regionOf(id), graph.node(id).type);
    const scratchRegions = plan.scratch.get(node.id) ?? [];
    const nodeTextures = plan.textureOf.get(node.id) ?? [];
    for (const step of kp.steps) {
      if (step.workgroups === 0) continue;
      if (step.bindings.length > maxStorage) {
        throw new WebGpuError(
          `${describeNode(node)}: its kernel binds ${step.bindings.length} storage buffers but this adapter allows ${maxStorage} per shader stage`,
        );
      }
      const what = () =>
        `creating the WebGPU kernel for ${describeNode(node)} (kernel ${JSON.stringify(step.desc)})`;
      const access = step.bindings.map(bindingAccess);
      const d = await checked(gpu, what, () => {
        const { pipeline, key } = pipelines.get(step.desc, access, step.code);
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
          const { ref } = b;
          const bound =
            ref.kind === 'texture'
              ? textures[nodeTextures[ref.index]].createView()
              : ref.kind === 'output'
                ? valueBinding(node.id)
                : ref.kind === 'scratch'
                  ? scratchBinding(region(scratchRegions[ref.index]), kp.scratch?.[ref.index] ?? 0)
                  : valueBinding(ref.kind === 'value' ? ref.id : node.inputs[ref.index]);
          entries.push({ binding: i + 1, resource: bound });
        });
        const bindGroup = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
        const members = plan.groupOf.get(node.id)?.members;
        return {
          node,
          ...(members ? { members } : {}),
          key,
          pipeline,
          bindGroup,
          size: foldDispatch(step.workgroups, gpu.limits.maxComputeWorkgroupsPerDimension),
        };
      }).catch((e) => {
        pipelines.forget(step.desc, access);
        throw e;
      });
      dispatches.push(d);
    }
  }
  const transfers: Transfer[] = plan.transfers.map((t) => ({
    ...t,
    buffer: region(t.buffer),
    target: t.target === undefined ? undefined : region(t.target),
  }));
  const buffers = new Map<number, DeviceRegion>();
  for (const [id, r] of plan.valueRegion) buffers.set(id, region(r));
  return { dispatches, transfers, buffers, owned, textures, pooledBytes: plan.pooledBytes };
}

/** A binding of `bytes` at its region (bindingSize: whole 16-byte elements). */
function scratchBinding(r: DeviceRegion, bytes: number): GPUBufferBinding {
  return { buffer: r.buffer, offset: r.offset, size: bindingSize(r.buffer.size, r.offset, bytes) };
}

/** The host tensor of a `const` node (what its device buffer starts with). */
export function constTensor(n: Node): Tensor {
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
