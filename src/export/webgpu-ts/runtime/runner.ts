// The runner of an exported model: Dawn's WebGPU in Node (package `webgpu`), the compiled
// kernels as WGSL files, and one plan per compiled length (plan-types.ts). Inputs shorter
// than a compiled length are padded at the end up to it: attention is causal, so the padding
// cannot change the logits of the real tokens, which are all that `logits` returns.
// `generate` runs the KV-cache plans as peftc's DecodeSession runs its graphs for one row
// (prompt in chunks, then one decode run per token; the cache is state shared by those
// plans, written in place), and picks tokens with peftc's own sampler and row bookkeeping
// (sampling.ts, row.ts: copies of peftc's files).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { create, globals } from 'webgpu';
import { type FinishReason, RowDecoder } from '../../../generate/row.ts';
import type { SamplingOptions } from '../../../generate/sampling.ts';
import { kvFeedArrays } from './kv-feeds.ts';
import { MODEL } from './model.ts';
import type { ModelManifest, Plan, PlanRegion, PlanTarget } from './plan-types.ts';
import { type RawTensor, readSafetensors } from './safetensors.ts';

// WebGPU's constants (GPUBufferUsage, ...) are globals in browsers.
Object.assign(globalThis, globals);

export type { FinishReason } from '../../../generate/row.ts';
export type { SamplingOptions } from '../../../generate/sampling.ts';
export type { ModelManifest, Plan, PlanTarget } from './plan-types.ts';
export { MODEL };

export interface GenerateOptions extends SamplingOptions {
  /** Most tokens generated (default 32, as `peftc generate`). */
  readonly maxNewTokens?: number;
  /** Token ids that end the generation (kept as its last id); default the model's (manifest). */
  readonly eos?: readonly number[];
  /** Each generated token, as it is produced. */
  readonly onToken?: (token: number) => void;
  /** The seeded draw stream: prompt i of `peftc generate` draws from stream i (default 0). */
  readonly stream?: number;
}

export interface Generation {
  /** Generated token ids (an end-of-sequence token included). */
  readonly outputIds: number[];
  /** 'stop': an eos token; 'length': maxNewTokens reached, or the cache is full. */
  readonly finishReason: FinishReason;
}

/** Tokens generated when `maxNewTokens` is not given (as `peftc generate`). */
export const DEFAULT_MAX_NEW_TOKENS = 32;

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
  /**
   * Generates after the prompt `ids` as `peftc generate` does (KV cache, batch 1): greedy
   * without sampling options or at temperature 0, else sampled in Hugging Face's order with
   * a seeded generator (seeded runs repeat, and equal peftc's).
   */
  generate(ids: readonly number[], opts?: GenerateOptions): Promise<Generation>;
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
  /** Records the plan's dispatches, its in-place copies between them. */
  readonly run: (enc: GPUCommandEncoder) => void;
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

  // State (KV caches): one buffer per key, shared by the plans that name it.
  const state = new Map<string, GPUBuffer>();
  const ready = new Map<string, Ready>();
  const instantiate = async (file: string): Promise<Ready> => {
    const have = ready.get(file);
    if (have) return have;
    const plan = JSON.parse(readFileSync(join(dir, file), 'utf8')) as Plan;
    device.pushErrorScope('validation');
    const own: GPUBuffer[] = [];
    const bufs = plan.buffers.map((b, i) => {
      if (b.init !== undefined) {
        const s = shared.get(b.init);
        if (!s) throw new Error(`${file}: buffer ${i} wants '${b.init}', which weights.safetensors lacks`);
        return s;
      }
      if (b.state !== undefined) {
        let s = state.get(b.state);
        if (!s) {
          s = device.createBuffer({ size: b.bytes, usage: STORAGE, label: b.state });
          state.set(b.state, s);
        }
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
    if (err) throw new Error(`setting up the plan ${file} failed: ${err.message}`);
    const copies = plan.copies ?? [];
    const r: Ready = {
      plan,
      buffers: bufs,
      run: (enc) => {
        // Copies split the compute pass: before dispatch `at`, as peftc's executor does.
        let c = 0;
        for (let k = 0; k <= steps.length; ) {
          for (; c < copies.length && copies[c].at === k; c++) {
            const { from, to, bytes } = copies[c];
            enc.copyBufferToBuffer(bufs[from.buffer], from.offset, bufs[to.buffer], to.offset, bytes);
          }
          const end = c < copies.length ? copies[c].at : steps.length;
          if (end > k) {
            const pass = enc.beginComputePass();
            for (const s of steps.slice(k, end)) {
              pass.setPipeline(s.p);
              pass.setBindGroup(0, s.bindGroup);
              pass.dispatchWorkgroups(...s.size);
            }
            pass.end();
          }
          if (c === copies.length && end === steps.length) break;
          k = end;
        }
      },
    };
    ready.set(file, r);
    return r;
  };

  /** Writes the feeds, runs the plan and reads `bytes` of its output back (none: nothing read). */
  const runPlan = async (
    r: Ready,
    feeds: readonly [PlanRegion, Int32Array | Float32Array][],
    bytes: number,
  ): Promise<Float32Array> => {
    for (const [at, data] of feeds) device.queue.writeBuffer(r.buffers[at.buffer], at.offset, data);
    const staging = bytes
      ? device.createBuffer({ size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST })
      : undefined;
    try {
      device.pushErrorScope('validation');
      const enc = device.createCommandEncoder();
      r.run(enc);
      if (staging)
        enc.copyBufferToBuffer(r.buffers[r.plan.output.buffer], r.plan.output.offset, staging, 0, bytes);
      device.queue.submit([enc.finish()]);
      const err = await device.popErrorScope();
      if (err) throw new Error(`running the ${r.plan.seq}-token plan failed: ${err.message}`);
      if (!staging) return new Float32Array(0);
      await staging.mapAsync(GPUMapMode.READ);
      const out = new Float32Array(staging.getMappedRange().slice(0));
      if (errors.length) throw new Error(`WebGPU reported: ${errors.splice(0).join('; ')}`);
      return out;
    } finally {
      staging?.destroy();
    }
  };

  const checkIds = (ids: readonly number[], what: string, max: number, why: string) => {
    if (ids.length === 0 || ids.length > max)
      throw new Error(`${what} takes 1 to ${max} tokens (${why}), got ${ids.length}`);
    ids.forEach((id, j) => {
      if (!Number.isInteger(id) || id < 0 || id >= MODEL.vocabSize)
        throw new Error(`token [${j}] = ${JSON.stringify(id)} is not a token id in [0, ${MODEL.vocabSize})`);
    });
  };

  let queue: Promise<unknown> = Promise.resolve();
  let disposed = false;
  const serial = <T>(f: () => Promise<T>): Promise<T> => {
    const next = queue.then(() => {
      if (disposed) throw new Error('this model was disposed; load it again');
      return f();
    });
    queue = next.catch(() => undefined);
    return next;
  };

  const logitsNow = async (ids: readonly number[]): Promise<Float32Array> => {
    checkIds(ids, 'logits', MODEL.lengths[MODEL.lengths.length - 1], 'the longest compiled length');
    const li = MODEL.lengths.findIndex((l) => l >= ids.length);
    const r = await instantiate(MODEL.plans[target][li]);
    const padded = new Int32Array(r.plan.seq).fill(MODEL.padId);
    padded.set(ids);
    return runPlan(r, [[r.plan.input, padded]], ids.length * MODEL.vocabSize * 4);
  };

  /** One run of the KV-cache plan of `seq` tokens: `tokens` appended at slot `start`. */
  const kvRun = async (seq: number, start: number, tokens: readonly number[], read: boolean) => {
    const g = MODEL.generation as NonNullable<ModelManifest['generation']>;
    const r = await instantiate(g.plans[target][g.lengths.indexOf(seq)]);
    const f = kvFeedArrays(start, tokens, seq, g.maxLen);
    const feeds: [PlanRegion, Int32Array | Float32Array][] = [[r.plan.input, f.input_ids]];
    for (const [name, at] of Object.entries(r.plan.feeds ?? {})) {
      const data = f[name as keyof typeof f];
      if (!data) throw new Error(`internal: no feed for the plan's input '${name}'`);
      feeds.push([at, data]);
    }
    return runPlan(r, feeds, read ? MODEL.vocabSize * 4 : 0);
  };

  const generateNow = async (ids: readonly number[], o: GenerateOptions): Promise<Generation> => {
    const g = MODEL.generation;
    if (!g) throw new Error('this package was exported without generate plans; export it again with peftc');
    checkIds(ids, 'generate', g.maxLen, 'the cache slots');
    const maxNewTokens = o.maxNewTokens ?? DEFAULT_MAX_NEW_TOKENS;
    const { temperature, topK, topP, repetitionPenalty, seed } = o;
    const row = new RowDecoder(
      ids,
      {
        maxNewTokens,
        sampling: { temperature, topK, topP, repetitionPenalty, seed },
        eos: new Set(o.eos ?? g.eos),
      },
      o.stream ?? 0,
    );
    if (maxNewTokens <= 0) return { outputIds: [], finishReason: 'length' };
    // A fresh cache: every state buffer zeroed (made by the first plan that names it).
    await instantiate(g.plans[target][0]);
    const enc = device.createCommandEncoder();
    for (const b of state.values()) enc.clearBuffer(b);
    device.queue.submit([enc.finish()]);
    // The prompt in chunks, as DecodeSession.prefill: the shortest power of two that holds it, at most the longest chunk.
    const chunk = g.lengths[g.lengths.length - 1];
    const seq = Math.min(chunk, 2 ** Math.ceil(Math.log2(ids.length)));
    let logits: Float32Array = new Float32Array(0);
    for (let start = 0; start < ids.length; start += seq) {
      const last = start + seq >= ids.length;
      logits = await kvRun(seq, start, ids.slice(start, start + seq), last);
    }
    let length = ids.length;
    for (;;) {
      const r = row.accept(logits, length + 1 > g.maxLen);
      o.onToken?.(r.token);
      if (r.done) return { outputIds: row.out, finishReason: r.done };
      logits = await kvRun(1, length, [r.token], true);
      length++;
    }
  };

  return {
    manifest: MODEL,
    device: { adapter: `${info.vendor || '?'} ${info.device || info.description || '?'}`, target },
    logits: (ids) => serial(() => logitsNow(ids)),
    generate: (ids, opts = {}) => serial(() => generateNow(ids, opts)),
    dispose() {
      if (disposed) return;
      disposed = true;
      device.destroy();
      void gpu; // keeps Dawn's instance alive until here
    },
  };
}
