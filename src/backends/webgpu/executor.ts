// The WebGPU backend: compile uploads params once (they stay resident), run records
// one command encoder with every dispatch in graph order, then copies the requested
// outputs to staging buffers and `assign:<param>` outputs into the param's buffer.
import type { Graph, Node } from '../../ir/graph.ts';
import { formatShape, numel, sameShape } from '../../ir/shape.ts';
import type { Tensor } from '../../ir/tensor.ts';
import type { WeightStore } from '../../ir/weights.ts';
import {
  ASSIGN_PREFIX,
  type Backend,
  type CompileOptions,
  type Executable,
  type RunRequest,
  rowCopyProblem,
} from '../backend.ts';
import { acquireDevice, checked, type GpuContext, WebGpuError, type WebGpuOptions } from './device.ts';
import { decodeTensor, encodeTensor, gpuByteSize } from './dtypes.ts';
import { type PagingOptions, planPaging } from './paging.ts';
import { PipelineCache } from './pipelines.ts';
import { textureBytes } from './program.ts';
import { buildSchedule, type DeviceRegion, describeNode, type Schedule } from './schedule.ts';
import { PassTimer } from './timing.ts';
import { settle } from './wait.ts';

/** Dispatches per submit when lavapipe runs them on its queue thread (GpuContext.inlineDispatch). */
const SUBMIT_CHUNK = 32;

export interface TimedResult {
  readonly outputs: Record<string, Tensor>;
  /** GPU time of the compute pass from timestamp queries, when the device has them. */
  readonly gpuMs?: number;
  /** Wall time from submit to the queue having finished the work. */
  readonly wallMs: number;
  /** GPU time of each dispatch (schedule order), with `perDispatch` and timestamp queries. */
  readonly dispatchMs?: readonly number[];
}

export interface TimingOptions {
  /**
   * Time every dispatch on its own: each gets a compute pass with timestamp writes (profiling
   * only; the extra passes cost time of their own). Needs a device acquired with `timestamps`.
   */
  readonly perDispatch?: boolean;
}

/** The order of runs and param reads/writes of executables that share buffers. */
class RunQueue {
  tail: Promise<unknown> = Promise.resolve();
}

/**
 * Buffers several executables use (shared params): destroyed when the last one that holds
 * them is disposed.
 */
class BufferRefs {
  private readonly count = new Map<GPUBuffer, number>();
  hold(buffers: Iterable<GPUBuffer>): void {
    for (const b of buffers) this.count.set(b, (this.count.get(b) ?? 0) + 1);
  }
  release(buffers: Iterable<GPUBuffer>): void {
    for (const b of buffers) {
      const left = (this.count.get(b) ?? 1) - 1;
      if (left > 0) this.count.set(b, left);
      else {
        this.count.delete(b);
        b.destroy();
      }
    }
  }
}

export class WebGpuExecutable implements Executable {
  private disposed = false;
  private readonly inputs: Node[];
  private readonly paramIds: Map<string, number>;

  constructor(
    readonly graph: Graph,
    private readonly gpu: GpuContext,
    private readonly schedule: Schedule,
    private readonly onDispose: (e: WebGpuExecutable) => void,
    /** Device bytes of each paged param, by node id (paging.ts); empty without paging. */
    private readonly host: Map<number, Uint8Array<ArrayBuffer>> = new Map(),
    /** Shared with the executables this one shares params with (CompileOptions.share). */
    readonly runQueue: RunQueue = new RunQueue(),
    private readonly refs: BufferRefs = new BufferRefs(),
    /** Other executables' buffers this one uses (its shared params). */
    private readonly borrowed: readonly GPUBuffer[] = [],
  ) {
    this.inputs = graph.inputs();
    this.paramIds = new Map(graph.params().map((p) => [String(p.attrs.name), p.id]));
    this.assignedInPlace = new Set(
      schedule.transfers.filter((t) => t.kind === 'assign').map((t) => t.param as number),
    );
  }

  /** Params whose new value the run writes into their buffer as it goes (Transfer 'assign'). */
  private readonly assignedInPlace: ReadonlySet<number>;

  /** Number of dispatches per run and bytes of pooled intermediate buffers. */
  get stats(): { dispatches: number; pooledBytes: number } {
    return { dispatches: this.schedule.dispatches.length, pooledBytes: this.schedule.pooledBytes };
  }

  /**
   * Bytes of every device buffer this executable holds (resident params, inputs, consts,
   * uniforms and the pool, which also serves paged params) and scratch texture, and host
   * bytes of paged params.
   */
  get memory(): { deviceBytes: number; pooledBytes: number; pagedHostBytes: number; pagedParams: number } {
    let pagedHostBytes = 0;
    for (const b of this.host.values()) pagedHostBytes += b.byteLength;
    return {
      deviceBytes:
        this.schedule.owned.reduce((s, b) => s + b.size, 0) +
        this.schedule.textures.reduce((s, t) => s + textureBytes(t), 0),
      pooledBytes: this.schedule.pooledBytes,
      pagedHostBytes,
      pagedParams: this.host.size,
    };
  }

  run(req: RunRequest): Promise<Record<string, Tensor>> {
    return this.runTimed(req).then((r) => r.outputs);
  }

  /** Runs serialised after earlier runs (they share buffers). */
  runTimed(req: RunRequest, timing: TimingOptions = {}): Promise<TimedResult> {
    return this.serial(() => this.runNow(req, timing));
  }

  /** The schedule's dispatches (node, kernel key), in run order: names what `dispatchMs` times. */
  get dispatches(): readonly {
    readonly node: Node;
    readonly members?: readonly Node[];
    readonly key: string;
  }[] {
    return this.schedule.dispatches;
  }

  /**
   * Runs `fn` after every earlier run/readParam/writeParam of this executable, so a param
   * read or written sees the runs called before it, and never a disposed buffer.
   */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.runQueue.tail.then(() => {
      if (this.disposed)
        throw new WebGpuError('this WebGPU executable was disposed; compile the graph again');
      return fn();
    });
    this.runQueue.tail = next.catch(() => undefined);
    return next;
  }

  /** Wall time of the last run, submit to results: how settle() waits for the next. */
  private lastRunMs: number | undefined;

  /** The device buffer of a resident param (for an executable compiled to share it), if any. */
  residentParam(name: string): { buffer: GPUBuffer; dtype: string; shape: readonly number[] } | undefined {
    const id = this.paramIds.get(name);
    if (id === undefined || this.host.has(id)) return undefined;
    const n = this.graph.node(id);
    return { buffer: this.buf(id).buffer, dtype: n.type.dtype, shape: n.type.shape };
  }

  private async runNow(req: RunRequest, timing: TimingOptions): Promise<TimedResult> {
    const { device } = this.gpu;
    const g = this.graph;
    const wanted = req.outputs ?? g.outputs.map((o) => o.name).filter((n) => !n.startsWith(ASSIGN_PREFIX));
    const outNodes = wanted.map((name) => {
      const o = g.outputs.find((x) => x.name === name);
      if (!o)
        throw new WebGpuError(
          `graph has no output '${name}' (outputs: ${g.outputs.map((x) => x.name).join(', ') || 'none'})`,
        );
      return g.node(o.id);
    });
    for (const n of this.inputs) {
      const name = String(n.attrs.name);
      const t = req.feeds[name];
      const want = `${n.type.dtype}${formatShape(n.type.shape)}`;
      if (!t) throw new WebGpuError(`missing feed for input '${name}' (the graph expects ${want})`);
      if (t.dtype !== n.type.dtype || !sameShape(t.shape, n.type.shape)) {
        throw new WebGpuError(
          `feed for input '${name}' is ${t.dtype}${formatShape(t.shape)} but the graph expects ${want}`,
        );
      }
      const r = this.buf(n.id);
      device.queue.writeBuffer(r.buffer, r.offset, encodeTensor(t));
    }
    const { dispatches } = this.schedule;
    const perDispatch = !!timing.perDispatch && this.gpu.timestamps;
    const ts = this.gpu.timestamps ? new PassTimer(device, perDispatch ? dispatches.length : 1) : undefined;
    const staging: GPUBuffer[] = [];
    const { transfers } = this.schedule;
    const uploads: GPUBuffer[] = [];
    // Download staging by transfer index; outputs computed into paged values read it too, and
    // outputs copied out as they are made (transfer 'output') are read from it.
    const downloads = new Map<number, GPUBuffer>();
    const asked = new Set(outNodes.map((n) => n.id));
    const t0 = performance.now();
    await checked(
      this.gpu,
      () => 'running the graph on WebGPU',
      () => {
        let enc = device.createCommandEncoder();
        // On a lavapipe that runs dispatches on its queue thread, that thread starts on the
        // first chunk while this one encodes the rest (tiny side-by-side step 5.3 -> 4.1 ms).
        // Not with lavapipe's thread pool: its threads need this core (bundled step 29 -> 42 ms).
        const chunk = this.gpu.inlineDispatch && !ts ? SUBMIT_CHUNK : 0;
        // Paged params split the compute pass: copies happen between passes (paging.ts).
        let t = 0;
        let first = true;
        for (let seg = 0; seg <= dispatches.length; ) {
          for (; t < transfers.length && transfers[t].at === seg; t++)
            this.transfer(enc, t, uploads, downloads, asked);
          const end = t < transfers.length ? transfers[t].at : dispatches.length;
          const last = t === transfers.length;
          if (perDispatch && ts) {
            for (let k = seg; k < end; k++) {
              const pass = enc.beginComputePass({ timestampWrites: ts.writes(k, true, true) });
              this.encodeDispatch(pass, k);
              pass.end();
            }
          } else if (end > seg || (last && ts)) {
            let pass = enc.beginComputePass(
              ts && (first || last) ? { timestampWrites: ts.writes(0, first, last) } : {},
            );
            for (let k = seg; k < end; k++) {
              this.encodeDispatch(pass, k);
              if (chunk && (k + 1 - seg) % chunk === 0 && k + 1 < end) {
                pass.end();
                device.queue.submit([enc.finish()]);
                enc = device.createCommandEncoder();
                pass = enc.beginComputePass();
              }
            }
            pass.end();
            first = false;
          }
          if (last) break;
          seg = end;
        }
        for (const n of outNodes) {
          if (this.downloaded(n.id) !== undefined || this.copiedOut(n.id) !== undefined) {
            staging.push(undefined as unknown as GPUBuffer);
            continue;
          }
          const size = gpuByteSize(n.type.dtype, numel(n.type.shape));
          const s = device.createBuffer({ size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
          // A value written into its param in place was freed there; the param holds it.
          const written = transfers.find((x) => x.kind === 'assign' && x.value === n.id);
          const from = written ? (written.target as DeviceRegion) : this.buf(n.id);
          enc.copyBufferToBuffer(from.buffer, from.offset, s, 0, size);
          staging.push(s);
        }
        // Assigns after the output copies: outputs are the values of this run.
        this.recordAssigns(enc, uploads); // its temporaries are destroyed with the uploads
        ts?.record(enc);
        device.queue.submit([enc.finish()]);
      },
    ).catch((e) => this.blame(e));
    const outputs: Record<string, Tensor> = {};
    try {
      await settle(
        this.gpu,
        Promise.all(
          [...staging, ...downloads.values()].filter(Boolean).map((s) => s.mapAsync(GPUMapMode.READ)),
        ).then(() => device.queue.onSubmittedWorkDone()),
        this.lastRunMs,
      );
      this.lastRunMs = performance.now() - t0;
      // Each staging buffer is read once (an output asked under two names shares one).
      const copied = new Map<number, ArrayBuffer>();
      for (const [k, s] of downloads) {
        const bytes = s.getMappedRange().slice(0);
        if (transfers[k].kind === 'download')
          this.host.set(transfers[k].param as number, new Uint8Array(bytes));
        else copied.set(k, bytes);
      }
      outNodes.forEach((n, k) => {
        const d = this.downloaded(n.id);
        const c = this.copiedOut(n.id);
        const bytes =
          c !== undefined
            ? (copied.get(c) as ArrayBuffer).slice(0)
            : d === undefined
              ? staging[k].getMappedRange().slice(0)
              : (this.host.get(transfers[d].param as number) as Uint8Array<ArrayBuffer>).slice().buffer;
        outputs[wanted[k]] = decodeTensor(n.type.dtype, n.type.shape, bytes);
      });
      let gpuMs: number | undefined;
      let dispatchMs: number[] | undefined;
      if (ts) {
        const ms = await ts.read();
        if (perDispatch) dispatchMs = ms;
        gpuMs = ms.reduce((a, b) => a + b, 0);
      }
      return { outputs, gpuMs, dispatchMs, wallMs: performance.now() - t0 };
    } catch (e) {
      throw new WebGpuError(`reading results back failed: ${this.gpu.lostReason() ?? (e as Error).message}`, {
        cause: e,
      });
    } finally {
      for (const s of [...staging, ...uploads, ...downloads.values()]) s?.destroy();
      ts?.destroy();
    }
  }

  private encodeDispatch(pass: GPUComputePassEncoder, k: number): void {
    const d = this.schedule.dispatches[k];
    pass.setPipeline(d.pipeline);
    pass.setBindGroup(0, d.bindGroup);
    pass.dispatchWorkgroups(...d.size);
  }

  /**
   * Copies each `assign:` value into its param's buffer. All read this run's values: a value
   * held in another assigned param's buffer (assign:a = b, assign:b = a) is staged first.
   */
  private recordAssigns(enc: GPUCommandEncoder, temps: GPUBuffer[]): void {
    const copies: { src: DeviceRegion; target: DeviceRegion; bytes: number }[] = [];
    for (const o of this.graph.outputs) {
      if (!o.name.startsWith(ASSIGN_PREFIX)) continue;
      const targetId = this.paramId(o.name.slice(ASSIGN_PREFIX.length));
      if (this.host.has(targetId)) continue; // downloaded to the host during the run
      if (this.assignedInPlace.has(targetId)) continue; // written during the run
      const target = this.buf(targetId);
      const src = this.buf(o.id);
      const p = this.graph.node(targetId).type;
      // Params own their buffers (offset 0): a value in one is that param's.
      if (src.buffer !== target.buffer)
        copies.push({ src, target, bytes: gpuByteSize(p.dtype, numel(p.shape)) });
    }
    const targets = new Set(copies.map((c) => c.target.buffer));
    for (const c of copies) {
      if (!targets.has(c.src.buffer)) continue;
      const tmp = this.gpu.device.createBuffer({
        size: c.bytes,
        usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
      });
      enc.copyBufferToBuffer(c.src.buffer, c.src.offset, tmp, 0, c.bytes);
      temps.push(tmp);
      c.src = { buffer: tmp, offset: 0 };
    }
    for (const { src, target, bytes } of copies) {
      enc.copyBufferToBuffer(src.buffer, src.offset, target.buffer, target.offset, bytes);
    }
  }

  /** Records transfer `k`: host bytes into the pooled buffer, or the new value out to staging. */
  private transfer(
    enc: GPUCommandEncoder,
    k: number,
    uploads: GPUBuffer[],
    downloads: Map<number, GPUBuffer>,
    asked: ReadonlySet<number>,
  ) {
    const t = this.schedule.transfers[k];
    const { device } = this.gpu;
    if (t.kind === 'output') {
      // Copied only when this run returns it (a value asked under two names is copied once).
      if (!asked.has(t.value) || this.copiedOut(t.value) !== k) return;
      const s = device.createBuffer({
        size: t.bytes,
        usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      });
      downloads.set(k, s);
      enc.copyBufferToBuffer(t.buffer.buffer, t.buffer.offset, s, 0, t.bytes);
    } else if (t.kind === 'upload') {
      const s = device.createBuffer({
        size: t.bytes,
        usage: GPUBufferUsage.MAP_WRITE | GPUBufferUsage.COPY_SRC,
        mappedAtCreation: true,
      });
      new Uint8Array(s.getMappedRange()).set(this.host.get(t.param as number) as Uint8Array);
      s.unmap();
      uploads.push(s);
      enc.copyBufferToBuffer(s, 0, t.buffer.buffer, t.buffer.offset, t.bytes);
    } else if (t.kind === 'download') {
      const s = device.createBuffer({
        size: t.bytes,
        usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      });
      downloads.set(k, s);
      enc.copyBufferToBuffer(t.buffer.buffer, t.buffer.offset, s, 0, t.bytes);
    } else {
      const to = t.target as DeviceRegion;
      enc.copyBufferToBuffer(t.buffer.buffer, t.buffer.offset, to.buffer, to.offset, t.bytes);
    }
  }

  /** Index of the transfer that copies output value `id` out as it is made, if any. */
  private copiedOut(id: number): number | undefined {
    const k = this.schedule.transfers.findIndex((t) => t.kind === 'output' && t.value === id);
    return k < 0 ? undefined : k;
  }

  /** Index of the download transfer that carries value `id` to the host, if any. */
  private downloaded(id: number): number | undefined {
    const k = this.schedule.transfers.findIndex((t) => t.kind === 'download' && t.value === id);
    return k < 0 ? undefined : k;
  }

  /** Re-encodes each dispatch alone to name the node whose dispatch the device rejected. */
  private async blame(e: unknown): Promise<never> {
    const { device } = this.gpu;
    for (const [k, d] of this.schedule.dispatches.entries()) {
      try {
        await checked(
          this.gpu,
          () => '',
          () => {
            const enc = device.createCommandEncoder();
            const pass = enc.beginComputePass();
            this.encodeDispatch(pass, k);
            pass.end();
            enc.finish();
          },
        );
      } catch (inner) {
        throw new WebGpuError(
          `running ${describeNode(d.node)} (kernel ${d.key}) failed: ${(inner as Error).message.replace(/^: /, '')}`,
          { cause: e },
        );
      }
    }
    throw e;
  }

  private buf(id: number): DeviceRegion {
    const b = this.schedule.buffers.get(id);
    if (!b) throw new WebGpuError(`internal: no buffer for %${id}`);
    return b;
  }

  private paramId(name: string): number {
    const id = this.paramIds.get(name);
    if (id === undefined) {
      throw new WebGpuError(
        `no parameter '${name}' (params: ${[...this.paramIds.keys()].join(', ') || 'none'})`,
      );
    }
    return id;
  }

  readParam(name: string): Promise<Tensor> {
    const id = this.paramId(name);
    return this.serial(() => this.readParamNow(name, id));
  }

  private async readParamNow(name: string, id: number): Promise<Tensor> {
    const n = this.graph.node(id);
    const paged = this.host.get(id);
    if (paged) return decodeTensor(n.type.dtype, n.type.shape, paged.slice().buffer);
    const { device } = this.gpu;
    const size = gpuByteSize(n.type.dtype, numel(n.type.shape));
    const s = device.createBuffer({ size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    try {
      await checked(
        this.gpu,
        () => `reading param '${name}'`,
        () => {
          const enc = device.createCommandEncoder();
          const r = this.buf(id);
          enc.copyBufferToBuffer(r.buffer, r.offset, s, 0, size);
          device.queue.submit([enc.finish()]);
        },
      );
      await settle(this.gpu, s.mapAsync(GPUMapMode.READ));
      return decodeTensor(n.type.dtype, n.type.shape, s.getMappedRange().slice(0));
    } finally {
      s.destroy();
    }
  }

  async writeParam(name: string, value: Tensor): Promise<void> {
    const n = this.graph.node(this.paramId(name));
    if (value.dtype !== n.type.dtype || !sameShape(value.shape, n.type.shape)) {
      throw new WebGpuError(
        `writeParam '${name}': got ${value.dtype}${formatShape(value.shape)} but the param is ${n.type.dtype}${formatShape(n.type.shape)}`,
      );
    }
    return this.serial(async () => {
      if (this.host.has(n.id)) this.host.set(n.id, encodeTensor(value));
      else {
        await checked(
          this.gpu,
          () => `writing param '${name}'`,
          () => {
            const r = this.buf(n.id);
            this.gpu.device.queue.writeBuffer(r.buffer, r.offset, encodeTensor(value));
          },
        );
      }
    });
  }

  async copyParamRows(
    source: Executable,
    name: string,
    rows: readonly (number | undefined)[],
  ): Promise<void> {
    if (!(source instanceof WebGpuExecutable))
      throw new WebGpuError(`copyParamRows '${name}': the source is not a WebGPU executable`);
    const from = source.graph.node(source.paramId(name));
    const to = this.graph.node(this.paramId(name));
    const problem = rowCopyProblem(name, from.type, to.type, rows);
    if (problem) throw new WebGpuError(problem);
    const rowBytes = gpuByteSize(to.type.dtype, numel(to.type.shape.slice(1)));
    if (rowBytes % 4 !== 0)
      throw new WebGpuError(`copyParamRows '${name}': rows of ${rowBytes} bytes (not whole 4-byte words)`);
    return this.serial(async () => {
      // The source's runs and writes before this call come first (its queue may be another).
      if (source.runQueue !== this.runQueue) await source.runQueue.tail;
      if (this.host.has(to.id) || source.host.has(from.id))
        throw new WebGpuError(
          `copyParamRows '${name}': the param is paged to the host in one of the two executables`,
        );
      await checked(
        this.gpu,
        () => `copying rows of param '${name}'`,
        () => {
          const enc = this.gpu.device.createCommandEncoder();
          const src = source.buf(from.id);
          const dst = this.buf(to.id);
          rows.forEach((r, i) => {
            if (r !== undefined)
              enc.copyBufferToBuffer(
                src.buffer,
                src.offset + i * rowBytes,
                dst.buffer,
                dst.offset + r * rowBytes,
                rowBytes,
              );
          });
          this.gpu.device.queue.submit([enc.finish()]);
        },
      );
    });
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.refs.release([...this.schedule.owned, ...this.borrowed]);
    for (const t of this.schedule.textures) t.destroy();
    this.onDispose(this);
  }
}

export class WebGpuBackend implements Backend {
  readonly name = 'webgpu' as const;
  private ctx: Promise<GpuContext> | undefined;
  private pipelines: PipelineCache | undefined;
  private readonly live = new Set<WebGpuExecutable>();
  private readonly refs = new BufferRefs();
  private disposed = false;

  /**
   * The device is acquired on first use (or by `ready()`), with these options over the environment;
   * `paging` applies to every compile that names none of its own.
   */
  constructor(private readonly opts: WebGpuOptions & { readonly paging?: PagingOptions } = {}) {}

  /** Acquires the adapter and device (once); throws NoAdapterError with the remedy when there is none. */
  ready(): Promise<GpuContext> {
    if (this.disposed) return Promise.reject(new WebGpuError('this WebGPU backend was disposed'));
    this.ctx ??= acquireDevice(this.opts);
    return this.ctx;
  }

  /** Pipelines compiled so far and cache hits (kernels shared between nodes). */
  get cacheStats(): { pipelines: number; hits: number; misses: number } {
    const p = this.pipelines;
    return { pipelines: p?.size ?? 0, hits: p?.hits ?? 0, misses: p?.misses ?? 0 };
  }

  /** Compiles a graph; params the paging plan chooses are held on the host (paging.ts). */
  async compile(
    graph: Graph,
    weights: WeightStore,
    opts: CompileOptions & { readonly paging?: PagingOptions } = {},
  ): Promise<WebGpuExecutable> {
    const gpu = await this.ready();
    this.pipelines ??= new PipelineCache(gpu.device);
    const params = new Map<number, Tensor>();
    for (const p of graph.params()) {
      const name = String(p.attrs.name);
      const t = weights.get(name);
      const want = `${p.type.dtype}${formatShape(p.type.shape)}`;
      if (!t)
        throw new WebGpuError(
          `missing weight '${name}' (the graph expects ${want}); is it in the weight store?`,
        );
      if (t.dtype !== p.type.dtype || !sameShape(t.shape, p.type.shape)) {
        throw new WebGpuError(
          `weight '${name}' is ${t.dtype}${formatShape(t.shape)} but the graph expects ${want}`,
        );
      }
      params.set(p.id, t);
    }
    const names = new Set(graph.params().map((p) => String(p.attrs.name)));
    for (const o of graph.outputs) {
      const target = o.name.slice(ASSIGN_PREFIX.length);
      if (o.name.startsWith(ASSIGN_PREFIX) && !names.has(target)) {
        throw new WebGpuError(`output '${o.name}' assigns to '${target}', which is not a param of the graph`);
      }
    }
    const { paged } = planPaging(graph, opts.paging ?? this.opts.paging);
    const shared = this.sharedParams(graph, paged, opts.share, opts.ownParams);
    const host = new Map([...paged].map((id) => [id, encodeTensor(params.get(id) as Tensor)]));
    const schedule = await buildSchedule({
      graph,
      gpu,
      pipelines: this.pipelines,
      params,
      paged,
      inPlaceAssigns: opts.inPlaceAssigns,
      groups: opts.groups,
      shared,
    });
    const borrowed = [...shared.values()];
    this.refs.hold([...schedule.owned, ...borrowed]);
    const exe = new WebGpuExecutable(
      graph,
      gpu,
      schedule,
      (e) => this.live.delete(e),
      host,
      opts.share ? (opts.share as WebGpuExecutable).runQueue : undefined,
      this.refs,
      borrowed,
    );
    this.live.add(exe);
    return exe;
  }

  /** Node id -> the other executable's buffer, for each param the two have in common. */
  private sharedParams(
    graph: Graph,
    paged: ReadonlySet<number>,
    other?: Executable,
    ownParams?: (name: string) => boolean,
  ): Map<number, GPUBuffer> {
    const out = new Map<number, GPUBuffer>();
    if (!other) return out;
    if (!(other instanceof WebGpuExecutable) || !this.live.has(other))
      throw new WebGpuError(
        'share: the executable to share params with is not a live one of this WebGPU backend',
      );
    const theirNames = new Set(other.graph.params().map((q) => String(q.attrs.name)));
    for (const p of graph.params()) {
      const name = String(p.attrs.name);
      if (!theirNames.has(name) || ownParams?.(name)) continue;
      const theirs = other.residentParam(name);
      const what = `${p.type.dtype}${formatShape(p.type.shape)}`;
      if (!theirs || paged.has(p.id))
        throw new WebGpuError(
          `share: param '${name}' is paged to the host in one of the two executables; compile them without paging (no --device-budget) to share it`,
        );
      if (theirs.dtype !== p.type.dtype || !sameShape(theirs.shape, p.type.shape))
        throw new WebGpuError(
          `share: param '${name}' is ${what} here but ${theirs.dtype}${formatShape(theirs.shape)} in the executable shared with`,
        );
      out.set(p.id, theirs.buffer);
    }
    return out;
  }

  /** Destroys every executable's buffers and the device, so the process can exit. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const e of [...this.live]) e.dispose();
    this.ctx?.then((c) => c.device.destroy()).catch(() => undefined);
  }
}
