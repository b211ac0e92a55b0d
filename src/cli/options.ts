// Options shared by the commands that run graphs: the backend and WebGPU adapter choice.
import { type Command, InvalidArgumentError, Option } from 'commander';
import { BACKENDS, type Backend, type BackendName, createBackend } from '../backends/index.ts';
import { UsageError } from './errors.ts';

export interface BackendCliOptions {
  readonly backend: BackendName;
  readonly webgpuBackend?: string;
  readonly webgpuAdapter?: string;
  readonly webgpuFeatureLevel?: 'core' | 'compatibility';
  readonly deviceBudget?: number;
  readonly lavapipeThreads?: number;
}

// The PEFTC_WEBGPU_* variables are commander env options: a bad value is the same
// usage error as the flag's ("value 'x' from env 'PEFTC_WEBGPU_BACKEND' is invalid.
// Allowed choices are ..."), and a flag given on the command line wins over the env.
export function addBackendOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--backend <name>', 'where graphs run').choices([...BACKENDS]).default('webgpu'))
    .addOption(
      new Option('--webgpu-backend <name>', 'Dawn backend')
        .choices(['vulkan', 'opengles', 'metal', 'd3d12'])
        .env('PEFTC_WEBGPU_BACKEND'),
    )
    .addOption(new Option('--webgpu-adapter <name>', 'WebGPU adapter by name').env('PEFTC_WEBGPU_ADAPTER'))
    .addOption(
      new Option('--webgpu-feature-level <level>', 'WebGPU feature level')
        .choices(['core', 'compatibility'])
        .env('PEFTC_WEBGPU_FEATURE_LEVEL'),
    )
    .addOption(
      new Option(
        '--lavapipe-threads <n>',
        "lavapipe's compute threads (default: one per core); 0 runs each dispatch on lavapipe's queue thread, faster for steps of many tiny dispatches",
      )
        .env('LP_NUM_THREADS')
        .argParser(threadCount),
    )
    .option(
      '--device-budget <MiB>',
      'WebGPU: keep params within this many MiB on the device; optimizer states beyond it are paged to the host',
      positiveNumber('--device-budget'),
    );
}

export function backendFrom(o: BackendCliOptions): Promise<Backend> {
  return createBackend(o.backend, {
    webgpu: {
      backend: o.webgpuBackend as never,
      adapter: o.webgpuAdapter,
      featureLevel: o.webgpuFeatureLevel,
      softwareThreads: o.lavapipeThreads,
      paging: o.deviceBudget ? { deviceBudgetBytes: Math.floor(o.deviceBudget * 2 ** 20) } : undefined,
    },
  });
}

/** A thread count; commander's error names the flag, or LP_NUM_THREADS when the value came from there. */
function threadCount(v: string): number {
  if (!/^\s*\d+\s*$/.test(v)) throw new InvalidArgumentError('Expected a non-negative integer (0 = inline).');
  return Number(v);
}

/** Parses a positive integer flag, naming the flag on bad input. */
export function positiveInt(flag: string): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n <= 0)
      throw new UsageError(`${flag} must be a positive integer, got '${v}'`);
    return n;
  };
}

export function positiveNumber(flag: string): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new UsageError(`${flag} must be a positive number, got '${v}'`);
    return n;
  };
}

/** Parses a non-negative integer flag (e.g. a seed), naming the flag on bad input. */
export function nonNegativeInt(flag: string): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isInteger(n) || n < 0)
      throw new UsageError(`${flag} must be a non-negative integer, got '${v}'`);
    return n;
  };
}

export function collect(v: string, prev: string[] = []): string[] {
  return [...prev, v];
}
