// peftc's AdaLoRA rank allocator against a PEFT 0.21 run (scripts/reference/
// adalora_allocator.py -> test/fixtures/peft/adalora-allocator.json): the same start
// values and fed gradients through peftc's compiled step (SGD + the AdaLoRA update
// observer) and its host session give PEFT's params, exp_avg_ipt, exp_avg_unc (float32)
// and rank_pattern after every step, including the final forced allocation and the
// masking after it.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../../src/backends/cpu/index.ts';
import { GraphBuilder, type Value } from '../../src/ir/builder.ts';
import { tensor } from '../../src/ir/tensor.ts';
import { MapWeightStore } from '../../src/ir/weights.ts';
import {
  adaloraOptions,
  importanceObserver,
  injectAdaLora,
  startAllocation,
} from '../../src/methods/adalora/index.ts';
import { appendOptimizer, sgd, stateName } from '../../src/passes/optimizer/index.ts';
import { testModel } from './properties.ts';

type Nested = number[] | number[][];
interface Step {
  grads: Record<string, Nested>;
  params: Record<string, Nested>;
  exp_avg_ipt: Record<string, Nested>;
  exp_avg_unc: Record<string, Nested>;
  rank_pattern: Record<string, boolean[]> | null;
}
const rec = JSON.parse(readFileSync('test/fixtures/peft/adalora-allocator.json', 'utf8')) as {
  config: Record<string, number>;
  lr: number;
  init: Record<string, Nested>;
  steps: Step[];
};
const flat = (x: Nested) => (x as number[]).flat() as number[];

describe('adalora rank allocator vs PEFT 0.21', () => {
  it("gives PEFT's params, importance EMAs and rank_pattern after every step", async () => {
    const o = adaloraOptions.parse({
      ...rec.config,
      target_modules: ['q_proj', 'v_proj'],
      init_lora_weights: false,
    });
    const shape = { layers: 1, dim: 3, hidden: 2, seq: 1, bias: false };
    const forward = injectAdaLora(testModel(shape), o).graph;
    const trainable = forward.params().filter((p) => p.attrs.role === 'trainable');
    const b = new GraphBuilder();
    const outs: [string, Value][] = [];
    for (const p of trainable) {
      const n = String(p.attrs.name);
      b.param(n, 'f32', p.type.shape, 'trainable', { kind: 'given' });
      outs.push([`grad:${n}`, b.input(`g:${n}`, 'f32', p.type.shape)]);
    }
    const step = appendOptimizer(b.build(outs), {
      rule: sgd({ momentum: 0 }),
      defaultGroup: { name: 'default', lrScale: 1, weightDecay: 0 },
      observers: [importanceObserver(o)],
    });
    const store = new MapWeightStore();
    for (const p of step.params()) {
      const n = String(p.attrs.name);
      store.set(
        n,
        p.attrs.role === 'state'
          ? tensor('f32', p.type.shape)
          : tensor('f32', p.type.shape, flat(rec.init[n])),
      );
    }
    const exe = await new CpuBackend().compile(step, store);
    const session = startAllocation(forward, o, { steps: o.total_step, log: () => {} });
    for (let t = 1; t <= rec.steps.length; t++) {
      const s = rec.steps[t - 1];
      const feeds: Record<string, ReturnType<typeof tensor>> = {
        lr: tensor('f32', [], [rec.lr]),
        step: tensor('f32', [], [t]),
      };
      for (const p of trainable)
        feeds[`g:${String(p.attrs.name)}`] = tensor('f32', p.type.shape, flat(s.grads[String(p.attrs.name)]));
      await exe.run({ feeds });
      await session.afterStep({
        step: t,
        readParam: (n) => exe.readParam(n),
        writeParam: (n, v) => exe.writeParam(n, v),
        log: () => {},
      });
      for (const p of trainable) {
        const n = String(p.attrs.name);
        const near = async (name: string, want: Nested) => {
          const got = (await exe.readParam(name)).data;
          const w = flat(want);
          for (let i = 0; i < w.length; i++)
            expect(Math.abs(got[i] - w[i]), `${name}[${i}] after step ${t}`).toBeLessThanOrEqual(1e-6);
        };
        await near(n, s.params[n]);
        // PEFT empties its EMAs at the final allocation (reset_ipt); peftc's are unused from there on.
        if (s.exp_avg_ipt[n]) {
          await near(stateName('adalora_exp_avg_ipt', n), s.exp_avg_ipt[n]);
          await near(stateName('adalora_exp_avg_unc', n), s.exp_avg_unc[n]);
        }
      }
      // PEFT's in-memory keys hold the adapter name; the saved ones (ours) do not.
      const want = s.rank_pattern
        ? Object.fromEntries(Object.entries(s.rank_pattern).map(([k, v]) => [k.replace(/\.default$/, ''), v]))
        : null;
      expect(session.saveOptions!().rank_pattern, `rank_pattern after step ${t}`).toEqual(want);
    }
    expect(rec.steps.at(-1)!.rank_pattern).not.toBeNull();
  });
});
