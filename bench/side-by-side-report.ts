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
  readonly webgpu: StepTiming;
  readonly cpu: StepTiming;
  readonly pytorch?: StepTiming;
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
    readonly tokens_per_s: { peftc_webgpu: number; peftc_cpu: number; pytorch: number | null };
    readonly ms_per_step: { peftc_webgpu: number; peftc_cpu: number; pytorch: number | null };
    /** peftc tokens/s over PyTorch + PEFT tokens/s (null without the baseline). */
    readonly ratio_over_pytorch: { peftc_webgpu: number | null; peftc_cpu: number | null };
  })[];
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
      const torch = s.pytorch?.tokensPerS;
      const ratio = (x: number) => (torch === undefined ? null : x / torch);
      const { webgpu: _w, cpu: _c, pytorch: _p, ...shape } = s;
      return {
        ...shape,
        tokens_per_s: {
          peftc_webgpu: s.webgpu.tokensPerS,
          peftc_cpu: s.cpu.tokensPerS,
          pytorch: torch ?? null,
        },
        ms_per_step: {
          peftc_webgpu: s.webgpu.msPerStep,
          peftc_cpu: s.cpu.msPerStep,
          pytorch: s.pytorch?.msPerStep ?? null,
        },
        ratio_over_pytorch: { peftc_webgpu: ratio(s.webgpu.tokensPerS), peftc_cpu: ratio(s.cpu.tokensPerS) },
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
      header: 'peftc webgpu tokens/s',
      legend: `batch * seq / mean wall time of one training step on ${r.adapter}`,
      cell: (s) => num(s.tokens_per_s.peftc_webgpu, 0),
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
      header: 'webgpu / PyTorch x',
      legend: 'peftc webgpu tokens/s over PyTorch tokens/s (> 1 = peftc faster)',
      cell: (s) => num(orUndefined(s.ratio_over_pytorch.peftc_webgpu), 3),
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
