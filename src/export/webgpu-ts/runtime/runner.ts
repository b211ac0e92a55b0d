// The runner of an exported model: Dawn's WebGPU in Node (package `webgpu`), the compiled
// kernels as WGSL files, and one plan per compiled length (plan-types.ts). Inputs shorter
// than a compiled length are padded at the end up to it: attention is causal, so the padding
// cannot change the logits of the real tokens, which are all that `logits` returns.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { create, globals } from 'webgpu';
import { MODEL } from './model.ts';
import type { ModelManifest, Plan, PlanTarget } from './plan-types.ts';
import { type RawTensor, readSafetensors } from './safetensors.ts';

// WebGPU's constants (GPUBufferUsage, ...) are globals in browsers.
Object.assign(globalThis, globals);

export type { ModelManifest, Plan, PlanTarget } from './plan-types.ts';
export { MODEL };

export interface LoadOptions {
  /** Dawn flags such as `backend=vulkan` or `adapter=llvmpipe` (default: vulkan on Linux). */
  readonly dawnFlags?: readonly string[];
  /** Kernel variants: 'auto' (default) picks the CPU-adapter ones on lavapipe/SwiftShader. */
  readonly target?: PlanTarget | 'auto';
}

export interface Model {
  readonly manifest: ModelManifest;
  /** The adapter Dawn picked, and the kernel variants in use. */
  readonly device: { readonly adapter: string; readonly target: PlanTarget };
  /** Logits of every token of `ids` (1 to the longest compiled length): f32 [ids.length * vocab]. */
  logits(ids: readonly number[]): Promise<Float32Array>;
  /** Destroys the device and its buffers. */
  dispose(): void;
}

/** The package's own model/ folder. */
export const MODEL_DIR = fileURLToPath(new URL('../model/', import.meta.url));

const STORAGE = 0x80 | 0x4 | 0x8; // GPUBufferUsage.STORAGE | COPY_SRC | COPY_DST

/** Owned buffers are multiples of 16 bytes, at least 16 (as peftc's memory plan makes them). */
const ownedSize = (bytes: number) => Math.max(16, Math.ceil(bytes / 16) * 16);

interface Ready {
  readonly plan: Plan;
  readonly run: (enc: GPUComputePassEncoder) => void;
  readonly buffers: GPUBuffer[];
}

export async function loadModel(dir: string = MODEL_DIR, opts: LoadOptions = {}): Promise<Model> {
  process.env.XDG_RUNTIME_DIR ??= '/tmp'; // Mesa warns on every start without it
  const flags = [...(opts.dawnFlags ?? (process.platform === 'linux' ? ['backend=vulkan'] : []))];
  // Dawn's instance must stay referenced while the device lives.
  const gpu = create(flags);
  const adapter = await gpu.requestAdapter();
  if (!adapter)
    throw new Error('no WebGPU adapter: install a Vulkan driver (on Linux without a GPU: Mesa lavapipe)');
  const info = adapter.info;
  const desc = `${info.vendor} ${info.device} ${info.description} ${info.architecture}`;
  const software = /llvmpipe|lavapipe|swiftshader|software/i.test(desc);
  const target: PlanTarget =
    opts.target && opts.target !== 'auto' ? opts.target : software ? 'software' : 'gpu';
  const requiredLimits: Record<string, number> = {};
  for (const k of MODEL.limits) requiredLimits[k] = adapter.limits[k as keyof GPUSupportedLimits] as number;
  const device = await adapter.requestDevice({ requiredLimits });
  const errors: string[] = [];
  device.addEventListener('uncapturederror', (ev) =>
    errors.push((ev as GPUUncapturedErrorEvent).error.message),
  );

  // Weights and constants: one device buffer per key, shared by every plan.
  const weights = readSafetensors(join(dir, 'weights.safetensors'));
  const shared = new Map<string, GPUBuffer>();
  const upload = (key: string, t: RawTensor): GPUBuffer => {
    const b = device.createBuffer({
      size: ownedSize(t.bytes.byteLength),
      usage: STORAGE,
      mappedAtCreation: true,
      label: key,
    });
    new Uint8Array(b.getMappedRange()).set(t.bytes);
    b.unmap();
    return b;
  };
  for (const [key, t] of weights) shared.set(key, upload(key, t));

  const modules = new Map<number, GPUShaderModule>();
  const pipelines = new Map<string, GPUComputePipeline>();
  const pipeline = (kernel: number, writes: readonly boolean[]): GPUComputePipeline => {
    const key = `${kernel}:${writes.map(Number).join('')}`;
    let p = pipelines.get(key);
    if (p) return p;
    let module = modules.get(kernel);
    if (!module) {
      const file = MODEL.kernels[kernel];
      module = device.createShaderModule({ code: readFileSync(join(dir, file), 'utf8'), label: file });
      modules.set(kernel, module);
    }
    // An explicit layout: 'auto' would drop bindings a shader happens not to read.
    const layout = device.createBindGroupLayout({
      entries: [
        { binding: 0, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'uniform' } },
        ...writes.map((w, i) => ({
          binding: i + 1,
          visibility: GPUShaderStage.COMPUTE,
          buffer: { type: (w ? 'storage' : 'read-only-storage') as GPUBufferBindingType },
        })),
      ],
    });
    p = device.createComputePipeline({
      layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: 'main' },
    });
    pipelines.set(key, p);
    return p;
  };

  const ready = new Map<number, Ready>();
  const instantiate = async (li: number): Promise<Ready> => {
    const have = ready.get(li);
    if (have) return have;
    const plan = JSON.parse(readFileSync(join(dir, MODEL.plans[target][li]), 'utf8')) as Plan;
    device.pushErrorScope('validation');
    const own: GPUBuffer[] = [];
    const bufs = plan.buffers.map((b, i) => {
      if (b.init !== undefined) {
        const s = shared.get(b.init);
        if (!s)
          throw new Error(
            `${MODEL.plans[target][li]}: buffer ${i} wants '${b.init}', which weights.safetensors lacks`,
          );
        return s;
      }
      const made = device.createBuffer({ size: b.bytes, usage: STORAGE });
      own.push(made);
      return made;
    });
    const steps = plan.dispatches.map((d) => {
      const words = new Uint32Array(Math.max(4, d.uniforms.length));
      words.set(d.uniforms);
      const ubuf = device.createBuffer({
        size: words.byteLength,
        usage: GPUBufferUsage.UNIFORM,
        mappedAtCreation: true,
      });
      new Uint32Array(ubuf.getMappedRange()).set(words);
      ubuf.unmap();
      own.push(ubuf);
      const p = pipeline(d.kernel, d.writes);
      const bindGroup = device.createBindGroup({
        layout: p.getBindGroupLayout(0),
        entries: [
          { binding: 0, resource: { buffer: ubuf } },
          ...d.bindings.map((b, i) => ({
            binding: i + 1,
            resource: { buffer: bufs[b.buffer], offset: b.offset, size: b.size },
          })),
        ],
      });
      return { p, bindGroup, size: d.size };
    });
    const err = await device.popErrorScope();
    if (err) throw new Error(`setting up the ${plan.seq}-token plan failed: ${err.message}`);
    const r: Ready = {
      plan,
      buffers: bufs,
      run: (pass) => {
        for (const s of steps) {
          pass.setPipeline(s.p);
          pass.setBindGroup(0, s.bindGroup);
          pass.dispatchWorkgroups(...s.size);
        }
      },
    };
    ready.set(li, r);
    return r;
  };

  let queue: Promise<unknown> = Promise.resolve();
  let disposed = false;
  const logitsNow = async (ids: readonly number[]): Promise<Float32Array> => {
    if (disposed) throw new Error('this model was disposed; load it again');
    const max = MODEL.lengths[MODEL.lengths.length - 1];
    if (ids.length === 0 || ids.length > max)
      throw new Error(`logits takes 1 to ${max} tokens (the longest compiled length), got ${ids.length}`);
    ids.forEach((id, j) => {
      if (!Number.isInteger(id) || id < 0 || id >= MODEL.vocabSize)
        throw new Error(`token [${j}] = ${JSON.stringify(id)} is not a token id in [0, ${MODEL.vocabSize})`);
    });
    const li = MODEL.lengths.findIndex((l) => l >= ids.length);
    const r = await instantiate(li);
    const padded = new Int32Array(r.plan.seq).fill(MODEL.padId);
    padded.set(ids);
    device.queue.writeBuffer(r.buffers[r.plan.input.buffer], r.plan.input.offset, padded);
    const bytes = ids.length * MODEL.vocabSize * 4;
    const staging = device.createBuffer({
      size: bytes,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    try {
      device.pushErrorScope('validation');
      const enc = device.createCommandEncoder();
      const pass = enc.beginComputePass();
      r.run(pass);
      pass.end();
      enc.copyBufferToBuffer(r.buffers[r.plan.output.buffer], r.plan.output.offset, staging, 0, bytes);
      device.queue.submit([enc.finish()]);
      const err = await device.popErrorScope();
      if (err) throw new Error(`running the ${r.plan.seq}-token plan failed: ${err.message}`);
      await staging.mapAsync(GPUMapMode.READ);
      const out = new Float32Array(staging.getMappedRange().slice(0));
      if (errors.length) throw new Error(`WebGPU reported: ${errors.splice(0).join('; ')}`);
      return out;
    } finally {
      staging.destroy();
    }
  };

  return {
    manifest: MODEL,
    device: { adapter: `${info.vendor || '?'} ${info.device || info.description || '?'}`, target },
    logits(ids) {
      const next = queue.then(() => logitsNow(ids));
      queue = next.catch(() => undefined);
      return next;
    },
    dispose() {
      if (disposed) return;
      disposed = true;
      device.destroy();
      void gpu; // keeps Dawn's instance alive until here
    },
  };
}
