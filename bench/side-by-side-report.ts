// The side-by-side report of `npm run bench` (bench/side-by-side.ts): peftc (webgpu and
// the cpu interpreter) against PyTorch + PEFT on the same shapes and recipe, as one JSON
// object (bench/results/side-by-side.json) and one table. Pure: measuring is elsewhere.
import type { StepTiming } from './step-feeds.ts';
import { type Column, formatTable, num } from './table.ts';

/** One stated shape. */
export interface BenchShape {
  readonly name: string;
  /** The peftc model preset (random weights) both sides build. */
  readonly preset: string;
  readonly hidden: number;
  readonly layers: number;
  readonly batch: number;
  readonly seq: number;
}

/** What was measured for one shape; `pytorch` is absent when the baseline is not installed. */
export interface ShapeMeasurement extends BenchShape {
  /** FLOPs of the step's products (bench/step-flops.ts), in GFLOP. */
  readonly productGflop: number;
  /** lavapipe's compute threads of the webgpu column (WebGpuOptions.softwareThreads); absent: Mesa's default. */
  readonly lavapipeThreads?: number;
  readonly webgpu: StepTiming;
  readonly cpu: StepTiming;
  /** PyTorch + PEFT on the baseline's threads (2, as issue 21 states it). */
  readonly pytorch?: StepTiming;
  /** PyTorch + PEFT on 1 thread: faster than 2 on steps too small to share. */
  readonly pytorch1?: StepTiming;
}

/** How the PyTorch side ran, or why it did not. */
export type BaselineInfo =
  | {
      readonly installed: true;
      readonly python: string;
      readonly torch: string;
      readonly transformers: string;
      readonly peft: string;
      readonly threads: number;
    }
  | { readonly installed: false; readonly reason: string };

export interface SideBySideReport {
  readonly recipe: string;
  readonly adapter: string;
  readonly baseline: BaselineInfo;
  readonly shapes: readonly (BenchShape & {
    /** lavapipe's compute threads of the webgpu column; null: Mesa's default (one per core). */
    readonly lavapipe_threads: number | null;
    /** FLOPs of the step's matmul, linear and matmul_map nodes (attention's own op left out). */
    readonly product_gflop_per_step: number;
    /** Those FLOPs over the webgpu column's step time: a floor on the step's rate. */
    readonly webgpu_product_gflop_per_s: number;
    readonly tokens_per_s: Timings;
    readonly ms_per_step: Timings;
    /** peftc tokens/s over PyTorch + PEFT tokens/s (null without the baseline). */
    readonly ratio_over_pytorch: Ratios;
    /** The same over PyTorch + PEFT on 1 thread. */
    readonly ratio_over_pytorch_1_thread: Ratios;
  })[];
}

interface Timings {
  readonly peftc_webgpu: number;
  readonly peftc_cpu: number;
  readonly pytorch: number | null;
  readonly pytorch_1_thread: number | null;
}
interface Ratios {
  readonly peftc_webgpu: number | null;
  readonly peftc_cpu: number | null;
}

export function sideBySideReport(
  recipe: string,
  adapter: string,
  baseline: BaselineInfo,
  shapes: readonly ShapeMeasurement[],
): SideBySideReport {
  return {
    recipe,
    adapter,
    baseline,
    shapes: shapes.map((s) => {
      const ratios = (torch: StepTiming | undefined): Ratios => ({
        peftc_webgpu: torch ? s.webgpu.tokensPerS / torch.tokensPerS : null,
        peftc_cpu: torch ? s.cpu.tokensPerS / torch.tokensPerS : null,
      });
      const { webgpu: _w, cpu: _c, pytorch: _p, pytorch1: _p1, lavapipeThreads, productGflop, ...shape } = s;
      return {
        ...shape,
        lavapipe_threads: lavapipeThreads ?? null,
        product_gflop_per_step: productGflop,
        webgpu_product_gflop_per_s: productGflop / (s.webgpu.msPerStep / 1000),
        tokens_per_s: {
          peftc_webgpu: s.webgpu.tokensPerS,
          peftc_cpu: s.cpu.tokensPerS,
          pytorch: s.pytorch?.tokensPerS ?? null,
          pytorch_1_thread: s.pytorch1?.tokensPerS ?? null,
        },
        ms_per_step: {
          peftc_webgpu: s.webgpu.msPerStep,
          peftc_cpu: s.cpu.msPerStep,
          pytorch: s.pytorch?.msPerStep ?? null,
          pytorch_1_thread: s.pytorch1?.msPerStep ?? null,
        },
        ratio_over_pytorch: ratios(s.pytorch),
        ratio_over_pytorch_1_thread: ratios(s.pytorch1),
      };
    }),
  };
}

type Row = SideBySideReport['shapes'][number];
const orUndefined = (x: number | null) => x ?? undefined;

/** The report as one table (bench/table.ts style) with a line saying how PyTorch ran or why it did not. */
export function formatSideBySide(r: SideBySideReport): string {
  const b = r.baseline;
  const torchName = b.installed
    ? `PyTorch ${b.torch} + PEFT ${b.peft} (transformers ${b.transformers}), CPU, ${b.threads} threads`
    : 'PyTorch + PEFT';
  const columns: Column<Row>[] = [
    {
      header: 'shape',
      legend: 'hidden size, layers, batch x seq (model preset; random weights, f32)',
      cell: (s) => `${s.name}: h${s.hidden} L${s.layers} ${s.batch}x${s.seq} (${s.preset})`,
    },
    {
      header: 'lavapipe threads',
      legend:
        "lavapipe's compute threads in the webgpu column (LP_NUM_THREADS; 0 = each dispatch on its queue thread, default = one per core)",
      cell: (s) => (s.lavapipe_threads === null ? 'default' : String(s.lavapipe_threads)),
    },
    {
      header: 'peftc webgpu tokens/s',
      legend: `batch * seq / mean wall time of one training step on ${r.adapter}`,
      cell: (s) => num(s.tokens_per_s.peftc_webgpu, 0),
    },
    {
      header: 'webgpu GFLOP/s',
      legend:
        "the step's matmul and linear FLOPs (attention's own op left out) over its webgpu time: a floor on its rate",
      cell: (s) => num(s.webgpu_product_gflop_per_s, 1),
    },
    {
      header: 'peftc cpu tokens/s',
      legend: 'the same on the reference cpu interpreter',
      cell: (s) => num(s.tokens_per_s.peftc_cpu, 0),
    },
    {
      header: 'PyTorch tokens/s',
      legend: `the same step in ${torchName} (bench/baseline/lora_step.py)`,
      cell: (s) => num(orUndefined(s.tokens_per_s.pytorch), 0),
    },
    {
      header: 'PyTorch 1 thread tokens/s',
      legend: 'the same PyTorch step on 1 thread (faster than 2 where a step is too small to share)',
      cell: (s) => num(orUndefined(s.tokens_per_s.pytorch_1_thread), 0),
    },
    {
      header: 'webgpu / PyTorch x',
      legend: 'peftc webgpu tokens/s over PyTorch tokens/s (> 1 = peftc faster)',
      cell: (s) => num(orUndefined(s.ratio_over_pytorch.peftc_webgpu), 3),
    },
    {
      header: 'webgpu / PyTorch 1 thread x',
      legend: 'peftc webgpu tokens/s over PyTorch tokens/s on 1 thread',
      cell: (s) => num(orUndefined(s.ratio_over_pytorch_1_thread.peftc_webgpu), 3),
    },
    {
      header: 'cpu / PyTorch x',
      legend: 'peftc cpu tokens/s over PyTorch tokens/s',
      cell: (s) => num(orUndefined(s.ratio_over_pytorch.peftc_cpu), 3),
    },
  ];
  const notes = b.installed ? [] : [`  PyTorch + PEFT baseline not run: ${b.reason}`];
  return formatTable(`training step side by side, LoRA (${r.recipe}), AdamW, f32`, columns, r.shapes, notes);
}
