// Per-layer updates (`"optimizer": {"per_layer": true}`, GaLore's layer-wise optimizers):
// the step graph holds the same nodes in another topological order, each update right after
// its gradient; on WebGPU each new value goes into its param in place as soon as the old one
// is read for the last time. Same losses and params as the default step, step by step, on
// both backends, with fewer pooled bytes on WebGPU; refused with clipping or accumulation.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { stepFeeds } from '../../../bench/step-feeds.ts';
import { createBackend } from '../../../src/backends/index.ts';
import type { Tensor } from '../../../src/ir/tensor.ts';
import { verify } from '../../../src/ir/verify.ts';
import { parseRecipe } from '../../../src/methods/index.ts';
import { loadModel } from '../../../src/models/llama/index.ts';
import { prepareRun } from '../../../src/train/setup.ts';

const MODEL = 'examples/models/tiny-llama';
const galore = JSON.parse(readFileSync('examples/recipes/galore-tiny.json', 'utf8'));
const recipe = (perLayer: boolean) =>
  parseRecipe({ ...galore, max_grad_norm: null, optimizer: { ...galore.optimizer, per_layer: perLayer } });

describe('per-layer updates', () => {
  const model = loadModel(MODEL);
  const runs = [false, true].map((p) => prepareRun(model, recipe(p), { batch: 2, seq: 16 }, { seed: 0 }));

  it('reorders the step: same nodes, each update right after its gradient', () => {
    const [plain, layered] = runs.map((r) => r.step);
    verify(layered);
    expect(layered.nodes.map((n) => n.id).sort((a, b) => a - b)).toEqual(
      plain.nodes.map((n) => n.id).sort((a, b) => a - b),
    );
    // The first param update comes before the last backward node of the default order.
    const firstAssign = (g: typeof plain) =>
      Math.min(...g.outputs.filter((o) => o.name.startsWith('assign:')).map((o) => g.position(o.id)));
    expect(firstAssign(layered)).toBeLessThan(firstAssign(plain) - 100);
  });

  for (const backend of ['cpu', 'webgpu'] as const)
    it(`${backend}: the same losses and params as the default step, over 3 steps`, async () => {
      const be = await createBackend(backend);
      try {
        const [plain, layered] = await Promise.all(
          runs.map((r, i) => be.compile(r.step, r.weights, { inPlaceAssigns: i === 1 })),
        );
        const feeds = stepFeeds(2, 16);
        for (let k = 0; k < 3; k++) {
          const [a, b] = await Promise.all([
            plain.run({ feeds: feeds(k) }),
            layered.run({ feeds: feeds(k) }),
          ]);
          expect(b.loss.data[0]).toBeCloseTo(a.loss.data[0], 5);
        }
        let worst = 0;
        for (const name of runs[0].trainable) {
          const [x, y]: Tensor[] = await Promise.all([plain.readParam(name), layered.readParam(name)]);
          for (let i = 0; i < x.data.length; i++) worst = Math.max(worst, Math.abs(x.data[i] - y.data[i]));
        }
        expect(worst).toBeLessThan(1e-5);
        if (backend === 'webgpu') {
          const stats = (e: unknown) => (e as { stats: { pooledBytes: number } }).stats.pooledBytes;
          expect(stats(layered)).toBeLessThan(stats(plain));
        }
        plain.dispose();
        layered.dispose();
      } finally {
        be.dispose();
      }
    });

  it('is refused with max_grad_norm or gradient accumulation, naming optimizer.per_layer', () => {
    expect(() => parseRecipe({ ...galore, optimizer: { ...galore.optimizer, per_layer: true } })).toThrow(
      /optimizer\.per_layer.*cannot be used with max_grad_norm/,
    );
    expect(() =>
      parseRecipe({
        ...galore,
        max_grad_norm: null,
        gradient_accumulation_steps: 2,
        optimizer: { ...galore.optimizer, per_layer: true },
      }),
    ).toThrow(/optimizer\.per_layer.*gradient_accumulation_steps > 1/);
  });
});
