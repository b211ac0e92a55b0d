// Shared by the fusion tests: a fused graph (and its unfused inverse) against the original.
import { expect } from 'vitest';
import { stepFeeds } from '../../../bench/step-feeds.ts';
import { runGraph } from '../../../src/backends/cpu/index.ts';
import { createBackend } from '../../../src/backends/index.ts';
import type { WebGpuExecutable } from '../../../src/backends/webgpu/index.ts';
import type { Graph } from '../../../src/ir/graph.ts';
import type { WeightStore } from '../../../src/ir/weights.ts';
import { loadRecipe } from '../../../src/methods/index.ts';
import { loadModel } from '../../../src/models/llama/index.ts';
import { prepareRun } from '../../../src/train/setup.ts';
import { randomFeeds, randomWeights } from '../../arbitrary/graphs.ts';

/** Largest |a - b| / (1 + |a|), NaN equal to NaN. */
export function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    if (Number.isNaN(a[i]) && Number.isNaN(b[i])) continue;
    const d = Math.abs(a[i] - b[i]);
    m = Math.max(m, Number.isNaN(d) ? Infinity : d / (1 + Math.abs(a[i])));
  }
  return m;
}

/** `fused` and `back` give `g`'s outputs bit for bit on the CPU, in f64 and f32: the same kernels step by step. */
export function expectSameOnCpu(g: Graph, fused: Graph, back: Graph, seed: number): void {
  const feeds = randomFeeds(g, seed);
  const w = randomWeights(g, seed);
  for (const precision of ['f64', 'f32'] as const) {
    const want = runGraph(g, feeds, w, { precision });
    const got = runGraph(fused, feeds, w, { precision });
    const again = runGraph(back, feeds, w, { precision });
    for (const o of g.outputs) {
      expect(Array.from(got[o.name].data)).toEqual(Array.from(want[o.name].data));
      expect(Array.from(again[o.name].data)).toEqual(Array.from(want[o.name].data));
    }
  }
}

/**
 * Two compiled forms of one training step on `backend`, 2 steps each on the bench feeds:
 * the largest loss difference, the largest param difference (maxDiff) and, on WebGPU,
 * the dispatch counts of both.
 */
export async function compareSteps(
  backend: 'cpu' | 'webgpu',
  plain: Graph,
  fused: Graph,
  run: { readonly weights: WeightStore; readonly trainable: readonly string[] },
  batch: number,
  seq: number,
): Promise<{ loss: number; params: number; dispatches?: [number, number] }> {
  const be = await createBackend(backend);
  try {
    // The plain graph as the node-per-kernel schedule (no group kernels either): the baseline.
    const [a, b] = await Promise.all([
      be.compile(plain, run.weights, { groups: false }),
      be.compile(fused, run.weights),
    ]);
    const feeds = stepFeeds(batch, seq);
    let loss = 0;
    for (let k = 0; k < 2; k++) {
      const [x, y] = await Promise.all([a.run({ feeds: feeds(k) }), b.run({ feeds: feeds(k) })]);
      loss = Math.max(loss, Math.abs(x.loss.data[0] - y.loss.data[0]));
    }
    let params = 0;
    for (const name of run.trainable) {
      const [p, q] = await Promise.all([a.readParam(name), b.readParam(name)]);
      params = Math.max(params, maxDiff(p.data, q.data));
    }
    const d = (e: unknown) => (e as WebGpuExecutable).stats.dispatches;
    const dispatches: [number, number] | undefined = backend === 'webgpu' ? [d(a), d(b)] : undefined;
    a.dispose();
    b.dispose();
    return { loss, params, dispatches };
  } finally {
    be.dispose();
  }
}

/** The bundled model's LoRA training step (lora-tiny.json, with dropout), batch 2 x seq 16, as the trainer prepares it. */
export function bundledLoraRun(): ReturnType<typeof prepareRun> {
  return prepareRun(
    loadModel('examples/models/tiny-llama'),
    loadRecipe('examples/recipes/lora-tiny.json'),
    { batch: 2, seq: 16 },
    { seed: 0 },
  );
}
