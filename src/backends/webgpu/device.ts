// Adapter and device acquisition on Dawn (npm `webgpu`). Options come from the
// caller or from the environment (PEFTC_WEBGPU_BACKEND / _ADAPTER / _FEATURE_LEVEL);
// a missing adapter is an error that says what to install.
import { create, globals } from 'webgpu';
import type { SoftwareMatmul } from './program.ts';

export const DAWN_BACKENDS = ['vulkan', 'opengles', 'opengl', 'metal', 'd3d12', 'd3d11', 'null'] as const;
export type DawnBackend = (typeof DAWN_BACKENDS)[number];
export type FeatureLevel = 'core' | 'compatibility';

export interface WebGpuOptions {
  /** Dawn backend (default: vulkan on Linux, Dawn's choice elsewhere). */
  readonly backend?: DawnBackend;
  /** Adapter name as Dawn lists it (e.g. 'llvmpipe'); a wrong name makes Dawn list the adapters. */
  readonly adapter?: string;
  readonly featureLevel?: FeatureLevel;
  readonly powerPreference?: GPUPowerPreference;
  /** Extra Dawn toggles, e.g. ['disable-dawn-features=timestamp_quantization']. */
  readonly dawnFlags?: readonly string[];
  /** Ask for timestamp-query when the adapter offers it (benchmarks). */
  readonly timestamps?: boolean;
  /**
   * Kernel variants: 'auto' (default) picks CPU-friendly kernels on software adapters;
   * 'gpu' forces the GPU ones (workgroup-shared matmul tiles), e.g. to test them on lavapipe.
   */
  readonly kernels?: 'auto' | 'gpu' | 'cpu';
  /** Matmul kernels on software adapters: see SoftwareMatmul (program.ts). */
  readonly softwareMatmul?: SoftwareMatmul;
  /**
   * lavapipe's compute threads for this device (Mesa's LP_NUM_THREADS, read when the
   * instance is made; default: LP_NUM_THREADS if set, else Mesa's one per core). 0 runs
   * each dispatch on lavapipe's queue thread, without the thread pool's hand-off (~30 µs
   * a dispatch): faster for steps of many tiny dispatches, slower for large ones
   * (DECISIONS.md, "lavapipe's threads"). Other adapters ignore it.
   */
  readonly softwareThreads?: number;
}

export class NoAdapterError extends Error {
  override name = 'NoAdapterError';
}

export class WebGpuError extends Error {
  override name = 'WebGpuError';
}

/** Options merged with the environment; explicit options win. */
export function resolveOptions(
  opts: WebGpuOptions = {},
  env: NodeJS.ProcessEnv = process.env,
): WebGpuOptions {
  const level = opts.featureLevel ?? env.PEFTC_WEBGPU_FEATURE_LEVEL;
  if (level !== undefined && level !== 'core' && level !== 'compatibility') {
    throw new WebGpuError(`PEFTC_WEBGPU_FEATURE_LEVEL must be 'core' or 'compatibility', got '${level}'`);
  }
  const envBackend = env.PEFTC_WEBGPU_BACKEND || undefined;
  if (envBackend !== undefined && !DAWN_BACKENDS.includes(envBackend as DawnBackend)) {
    throw new WebGpuError(
      `PEFTC_WEBGPU_BACKEND must be one of ${DAWN_BACKENDS.join(', ')}, got '${envBackend}'`,
    );
  }
  return {
    ...opts,
    backend:
      opts.backend ??
      (envBackend as DawnBackend | undefined) ??
      (process.platform === 'linux' ? 'vulkan' : undefined),
    adapter: opts.adapter ?? (env.PEFTC_WEBGPU_ADAPTER || undefined),
    featureLevel: level,
  };
}

// The WebGPU constants (GPUBufferUsage, ...) are globals in browsers; code using this
// module reads them at load time.
Object.assign(globalThis, globals);

/**
 * Dawn's GPU object for these options. Its first requestAdapter() prints two notices
 * ("maxDynamic...BuffersPerPipelineLayout artificially reduced") from native code to
 * fd 2; nothing here can turn them off, so the launchers filter them
 * (bin/dawn-notices.js).
 */
export function createGpu(opts: WebGpuOptions): GPU {
  // Mesa warns on every start without it.
  process.env.XDG_RUNTIME_DIR ??= '/tmp';
  const flags: string[] = [];
  if (opts.backend) flags.push(`backend=${opts.backend}`);
  if (opts.adapter) flags.push(`adapter=${opts.adapter}`);
  flags.push(...(opts.dawnFlags ?? []));
  return create(flags);
}

function remedy(opts: WebGpuOptions): string {
  const where = [
    opts.backend && `backend=${opts.backend}`,
    opts.adapter && `adapter=${opts.adapter}`,
    opts.featureLevel && `featureLevel=${opts.featureLevel}`,
  ]
    .filter(Boolean)
    .join(', ');
  return (
    `no WebGPU adapter found${where ? ` (${where})` : ''}. ` +
    'On Debian/Ubuntu run `npm run setup` as root to install Mesa lavapipe (a CPU Vulkan driver; ' +
    'on bookworm mesa-vulkan-drivers 25 from bookworm-backports). Elsewhere install a Vulkan driver ' +
    '(NVIDIA/AMD/Intel, or Mesa >= 24 lavapipe) and libvulkan1. Check with `node scripts/probe-adapter.mjs`; ' +
    'choose another with PEFTC_WEBGPU_BACKEND (e.g. opengles + PEFTC_WEBGPU_FEATURE_LEVEL=compatibility) ' +
    'or PEFTC_WEBGPU_ADAPTER, or run with --backend cpu.'
  );
}

/** The adapters in Dawn's "Available adapters:" list (` * backend: 'vulkan', name: 'llvmpipe (...)'`). */
export function listedAdapters(dawnMessage: string): string[] {
  return [...dawnMessage.matchAll(/^ \* backend: '([^']*)', name: '(.*)'$/gm)].map(
    ([, backend, name]) => `'${name}' (${backend})`,
  );
}

export interface GpuContext {
  /** Dawn's instance: it must stay referenced while the device lives (a collected one crashes Dawn). */
  readonly gpu: GPU;
  readonly device: GPUDevice;
  readonly adapterInfo: string;
  readonly limits: GPUSupportedLimits;
  readonly f16: boolean;
  readonly timestamps: boolean;
  /** Use kernels for a CPU implementation of Vulkan/GL (lavapipe, SwiftShader); see WebGpuOptions.kernels. */
  readonly software: boolean;
  /**
   * A software adapter that runs dispatches on its queue thread (lavapipe with 0 compute
   * threads): this thread's core is free, so the executor submits in chunks and lavapipe
   * runs the first while the rest are encoded.
   */
  readonly inlineDispatch: boolean;
  readonly softwareMatmul?: SoftwareMatmul;
  /** Set when the device is lost; every later use reports it. */
  lostReason(): string | undefined;
  /** Uncaptured errors since the last call (cleared). */
  takeUncaptured(): string[];
}

/** The adapter limits a device is requested with (the adapter's own values, not the defaults). */
export const LIMITS_WANTED = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxStorageBuffersPerShaderStage',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupsPerDimension',
  'maxTextureDimension2D',
] as const;

/** lavapipe's compute threads for these options: the option, else LP_NUM_THREADS, else undefined (Mesa's default). */
export function lavapipeThreads(
  opts: WebGpuOptions,
  env: NodeJS.ProcessEnv = process.env,
): number | undefined {
  if (opts.softwareThreads !== undefined) {
    if (!Number.isInteger(opts.softwareThreads) || opts.softwareThreads < 0)
      throw new WebGpuError(`softwareThreads must be a non-negative integer, got ${opts.softwareThreads}`);
    return opts.softwareThreads;
  }
  const v = env.LP_NUM_THREADS?.trim();
  return v && /^\d+$/.test(v) ? Number(v) : undefined;
}

/** Sets LP_NUM_THREADS (when the option gives it); returns the function that puts the previous value back. */
function withLavapipeThreads(threads: number | undefined): () => void {
  if (threads === undefined) return () => {};
  const before = process.env.LP_NUM_THREADS;
  process.env.LP_NUM_THREADS = String(threads);
  return () => {
    if (before === undefined) delete process.env.LP_NUM_THREADS;
    else process.env.LP_NUM_THREADS = before;
  };
}

/** Requests an adapter and a device with the adapter's limits we rely on, and shader-f16 when offered. */
export async function acquireDevice(options: WebGpuOptions = {}): Promise<GpuContext> {
  const opts = resolveOptions(options);
  const threads = lavapipeThreads(opts);
  let adapter: GPUAdapter | null;
  let gpu: GPU;
  try {
    // Mesa reads LP_NUM_THREADS when Dawn enumerates the adapters, which Dawn does within
    // these two calls: the env is the option's only while they run, so backends made at
    // the same time cannot see each other's.
    const restore = withLavapipeThreads(opts.softwareThreads);
    let asked: Promise<GPUAdapter | null>;
    try {
      gpu = createGpu(opts);
      asked = gpu.requestAdapter({
        featureLevel: opts.featureLevel,
        powerPreference: opts.powerPreference,
      } as GPURequestAdapterOptions);
    } finally {
      restore();
    }
    adapter = await asked;
  } catch (e) {
    const said = (e as Error).message;
    const available = listedAdapters(said);
    // A wrong adapter name: the names to choose from, not the driver install help.
    if (opts.adapter && available.length)
      throw new NoAdapterError(
        `no WebGPU adapter named '${opts.adapter}'${opts.backend ? ` on backend ${opts.backend}` : ''}; available: ${available.join(', ')}\n` +
          'Pass one of these names (a prefix is enough) to --webgpu-adapter or PEFTC_WEBGPU_ADAPTER, or leave it out for the default adapter.',
      );
    throw new NoAdapterError(`${remedy(opts)} (Dawn said: ${said})`);
  }
  if (!adapter) throw new NoAdapterError(remedy(opts));
  const requiredFeatures: GPUFeatureName[] = [];
  const f16 = adapter.features.has('shader-f16');
  if (f16) requiredFeatures.push('shader-f16');
  const timestamps = !!opts.timestamps && adapter.features.has('timestamp-query');
  if (timestamps) requiredFeatures.push('timestamp-query');
  const requiredLimits: Record<string, number> = {};
  for (const k of LIMITS_WANTED) requiredLimits[k] = adapter.limits[k];
  const device = await adapter.requestDevice({ requiredFeatures, requiredLimits });
  let lost: string | undefined;
  device.lost.then((info) => {
    // 'destroyed' is ours (dispose); anything else is a real loss.
    lost = info.reason === 'destroyed' ? 'the device was disposed' : `device lost: ${info.message}`;
  });
  const uncaptured: string[] = [];
  device.addEventListener('uncapturederror', (ev) => {
    uncaptured.push((ev as GPUUncapturedErrorEvent).error.message);
  });
  const info = adapter.info;
  const desc = `${info.vendor} ${info.device} ${info.description} ${info.architecture}`;
  const software =
    opts.kernels === 'cpu' ||
    (opts.kernels !== 'gpu' && /llvmpipe|lavapipe|swiftshader|software/i.test(desc));
  return {
    software,
    inlineDispatch: software && threads === 0 && /llvmpipe|lavapipe/i.test(desc),
    softwareMatmul: opts.softwareMatmul,
    gpu,
    device,
    adapterInfo: `${info.vendor || '?'} ${info.device || info.description || '?'} (${info.architecture || opts.backend || ''})`,
    limits: device.limits,
    f16,
    timestamps,
    lostReason: () => lost,
    takeUncaptured: () => uncaptured.splice(0),
  };
}

/**
 * Runs `fn` inside validation / out-of-memory / internal error scopes and throws a
 * WebGpuError that says `what` when any of them reports.
 */
export async function checked<T>(ctx: GpuContext, what: () => string, fn: () => T): Promise<T> {
  const lost = ctx.lostReason();
  if (lost) throw new WebGpuError(`${what()}: ${lost}`);
  const { device } = ctx;
  device.pushErrorScope('internal');
  device.pushErrorScope('out-of-memory');
  device.pushErrorScope('validation');
  let result: T | undefined;
  let thrown: unknown;
  try {
    result = fn();
  } catch (e) {
    thrown = e;
  }
  // Always pop the scopes, even when fn threw, so they never leak into later work.
  const errs = await Promise.all([device.popErrorScope(), device.popErrorScope(), device.popErrorScope()]);
  if (thrown !== undefined) throw thrown;
  const msgs = errs.filter((e): e is GPUError => e !== null).map((e) => e.message);
  msgs.push(...ctx.takeUncaptured());
  if (msgs.length) throw new WebGpuError(`${what()}: ${msgs.join('; ')}`);
  return result as T;
}
