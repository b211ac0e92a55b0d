// The side-by-side report (bench/side-by-side-report.ts): ratios over PyTorch + PEFT, nulls
// and a clear note when the baseline is not installed, one table row per shape.
import { expect, it } from 'vitest';
import {
  formatSideBySide,
  type ShapeMeasurement,
  sideBySideReport,
} from '../../bench/side-by-side-report.ts';

const tiny: ShapeMeasurement = {
  name: 'tiny',
  preset: 'tiny',
  hidden: 64,
  layers: 2,
  batch: 2,
  seq: 16,
  webgpu: { tokensPerS: 3000, msPerStep: 32000 / 3000 },
  cpu: { tokensPerS: 1000, msPerStep: 32 },
  lavapipeThreads: 0,
  productGflop: 0.05,
  pytorch: { tokensPerS: 8000, msPerStep: 4 },
  pytorch1: { tokensPerS: 12000, msPerStep: 32000 / 12000 },
};

it('reports peftc over PyTorch + PEFT per shape, in the JSON and the table', () => {
  const r = sideBySideReport(
    'r.json',
    'lavapipe',
    {
      installed: true,
      python: 'py',
      torch: '2.13.0+cpu',
      transformers: '5.18.0',
      peft: '0.21.0',
      threads: 2,
    },
    [tiny],
  );
  expect(r.shapes[0].lavapipe_threads).toBe(0);
  expect(r.shapes[0].webgpu_product_gflop_per_s).toBeCloseTo(0.05 / (32 / 3000), 9);
  expect(r.shapes[0].tokens_per_s).toEqual({
    peftc_webgpu: 3000,
    peftc_cpu: 1000,
    pytorch: 8000,
    pytorch_1_thread: 12000,
  });
  expect(r.shapes[0].ms_per_step.pytorch).toBe(4);
  expect(r.shapes[0].ratio_over_pytorch).toEqual({ peftc_webgpu: 0.375, peftc_cpu: 0.125 });
  expect(r.shapes[0].ratio_over_pytorch_1_thread).toEqual({ peftc_webgpu: 0.25, peftc_cpu: 1 / 12 });
  const lines = formatSideBySide(r).split('\n');
  expect(lines[1]).toMatch(
    /\| shape .*\| lavapipe threads \| peftc webgpu tokens\/s \| webgpu GFLOP\/s \| peftc cpu tokens\/s \| PyTorch tokens\/s \| PyTorch 1 thread tokens\/s \| webgpu \/ PyTorch x \| webgpu \/ PyTorch 1 thread x \| cpu \/ PyTorch x \|/,
  );
  expect(lines[3]).toMatch(
    /^\| tiny: h64 L2 2x16 \(tiny\) +\| +0 \| +3000 \| +4\.7 \| +1000 \| +8000 \| +12000 \| +0\.375 \| +0\.250 \| +0\.125 \|$/,
  );
  expect(lines.filter((l) => l.startsWith('  '))).toHaveLength(10); // a legend line per column
  expect(lines.join('\n')).toContain('PyTorch 2.13.0+cpu + PEFT 0.21.0');
});

it('says the baseline is not installed, and how to install it, with null ratios', () => {
  const { pytorch: _, pytorch1: _1, lavapipeThreads: _t, ...peftcOnly } = tiny;
  const r = sideBySideReport(
    'r.json',
    'lavapipe',
    { installed: false, reason: 'not installed; run bash bench/baseline/setup.sh' },
    [peftcOnly],
  );
  expect(r.shapes[0].tokens_per_s.pytorch).toBeNull();
  expect(r.shapes[0].ratio_over_pytorch).toEqual({ peftc_webgpu: null, peftc_cpu: null });
  expect(r.shapes[0].lavapipe_threads).toBeNull();
  const text = formatSideBySide(r);
  expect(text).toMatch(/\| +default \| +3000 \| +4\.7 \| +1000 \| +- \| +- \| +- \| +- \| +- \|/);
  expect(text).toContain('PyTorch + PEFT baseline not run: not installed; run bash bench/baseline/setup.sh');
});
