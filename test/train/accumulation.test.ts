// Gradient accumulation (gradient_accumulation_steps = k): the optimizer pass against a
// float64 reference of Hugging Face semantics (update with the mean of k micro-batch
// gradients, clipped as a whole, t and lr per optimizer step), then end to end on the
// bundled tiny model: k micro-batches of B rows train like one batch of k*B rows, resume at
// an optimizer-step boundary is bit-exact, and k = 1 leaves the train-step graph as it was.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Backend } from '../../src/backends/backend.ts';
import { CpuBackend } from '../../src/backends/cpu/index.ts';
import { runTrain, type TrainCliOptions } from '../../src/cli/commands/train.ts';
import { SafetensorsFile } from '../../src/io/safetensors/index.ts';
import { GraphBuilder } from '../../src/ir/builder.ts';
import { printGraph } from '../../src/ir/printer.ts';
import { tensor } from '../../src/ir/tensor.ts';
import { bindParams, MapWeightStore } from '../../src/ir/weights.ts';
import { defineRecipe } from '../../src/methods/recipe.ts';
import { openModel } from '../../src/models/open.ts';
import { ByteTokenizer } from '../../src/models/tokenizer/index.ts';
import {
  adamw,
  adamw8bit,
  appendOptimizer,
  type OptimizerPassOptions,
  sgd,
} from '../../src/passes/optimizer/index.ts';
import { loadDataset } from '../../src/train/data/index.ts';
import { lrAt } from '../../src/train/schedule.ts';
import { prepareRun } from '../../src/train/setup.ts';
import { train } from '../../src/train/trainer.ts';

/** Params p, q whose gradients are the fed inputs g, h. */
function gradGraph(n: number) {
  const b = new GraphBuilder();
  const p = b.param('p', 'f32', [n], 'trainable', { kind: 'zeros' });
  const q = b.param('q', 'f32', [n], 'trainable', { kind: 'zeros' });
  return b.build([
    ['out', b.add(p, q)],
    ['grad:p', b.input('g', 'f32', [n])],
    ['grad:q', b.input('h', 'f32', [n])],
  ]);
}

const f32 = (xs: readonly number[]) => tensor('f32', [xs.length], xs);
const scalar = (x: number) => tensor('f32', [], [x]);
const mean = (xs: readonly number[][]) => xs[0].map((_, i) => xs.reduce((s, x) => s + x[i], 0) / xs.length);

async function compile(opts: OptimizerPassOptions, p0: number[], q0: number[]) {
  const g = appendOptimizer(gradGraph(p0.length), opts);
  const store = new MapWeightStore().set('p', f32(p0)).set('q', f32(q0));
  return new CpuBackend().compile(g, bindParams(g, store));
}

const read = async (exe: { readParam(n: string): Promise<{ data: ArrayLike<number> }> }, n: string) =>
  Array.from((await exe.readParam(n)).data);

function expectClose(got: readonly number[], want: readonly number[], tol: number, what: string) {
  expect(got.length, what).toBe(want.length);
  got.forEach((x, i) => {
    expect(Math.abs(x - want[i]), `${what}[${i}]: ${x} vs ${want[i]}`).toBeLessThanOrEqual(
      tol * (1 + Math.abs(want[i])),
    );
  });
}

const vec = (n: number) =>
  fc.array(fc.double({ min: -2, max: 2, noNaN: true }), { minLength: n, maxLength: n });

describe('optimizer pass with accumulate: k', () => {
  it('SGD: params hold between micro-steps; the update uses the mean gradient, clipped as a whole', async () => {
    const k = 3;
    const lr = 0.1;
    const maxNorm = 0.5;
    const exe = await compile(
      {
        rule: sgd({ momentum: 0 }),
        defaultGroup: { name: 'default', lrScale: 1, weightDecay: 0 },
        maxGradNorm: maxNorm,
        accumulate: k,
      },
      [1, -2],
      [0.5, 0],
    );
    let p = [1, -2];
    let q = [0.5, 0];
    const micro = [
      [
        [0.5, 1],
        [-1, 2],
      ],
      [
        [1.5, -3],
        [0.25, 0],
      ],
      [
        [-0.5, 1],
        [2, 1],
      ],
    ];
    for (let t = 1; t <= 2; t++) {
      const before = await read(exe, 'p');
      for (let j = 0; j < k; j++) {
        const [g, h] = micro[j].map((x) => x.map((v) => v * t));
        const res = await exe.run({
          feeds: {
            g: f32(g),
            h: f32(h),
            lr: scalar(lr),
            opt_step: scalar(t),
            apply: scalar(j === k - 1 ? 1 : 0),
          },
          outputs: ['grad_norm'],
        });
        if (j < k - 1) {
          expect(await read(exe, 'p'), 'p between micro-steps').toEqual(before);
          const acc = mean(micro.slice(0, j + 1).map((m) => m[0].map((v) => v * t))).map(
            (x) => (x * (j + 1)) / k,
          );
          expectClose(await read(exe, 'optimizer.grad_acc.p'), acc, 1e-6, 'accumulator');
          continue;
        }
        // Reference: clip_grad_norm_ over the mean gradients of all params, then p -= lr g.
        const gm = mean(micro.map((m) => m[0].map((v) => v * t)));
        const hm = mean(micro.map((m) => m[1].map((v) => v * t)));
        const norm = Math.hypot(...gm, ...hm);
        expect(Math.abs(res.grad_norm.data[0] - norm)).toBeLessThan(1e-5 * norm);
        const coef = Math.min(maxNorm / (norm + 1e-6), 1);
        expect(coef, 'the case must clip').toBeLessThan(1);
        p = p.map((x, i) => x - lr * coef * gm[i]);
        q = q.map((x, i) => x - lr * coef * hm[i]);
        expectClose(await read(exe, 'p'), p, 1e-6, `p after optimizer step ${t}`);
        expectClose(await read(exe, 'q'), q, 1e-6, `q after optimizer step ${t}`);
        expectClose(await read(exe, 'optimizer.grad_acc.p'), [0, 0], 0, 'accumulator after the update');
      }
    }
  });

  it('AdamW: k micro-steps equal PyTorch AdamW on the mean gradients, t per optimizer step', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 2, max: 3 }),
        fc
          .integer({ min: 1, max: 4 })
          .chain((n) =>
            fc.tuple(
              vec(n),
              fc.array(fc.array(vec(n), { minLength: 3, maxLength: 3 }), { minLength: 1, maxLength: 3 }),
            ),
          ),
        async (k, [p0, steps]) => {
          const [b1, b2, eps, lr, wd] = [0.9, 0.999, 1e-8, 0.01, 0.1];
          const exe = await compile(
            {
              rule: adamw({ betas: [b1, b2], eps }),
              defaultGroup: { name: 'default', lrScale: 1, weightDecay: wd },
              accumulate: k,
            },
            p0,
            p0,
          );
          const want = [...p0];
          const m = p0.map(() => 0);
          const v = p0.map(() => 0);
          for (let s = 0; s < steps.length; s++) {
            const t = s + 1;
            for (let j = 0; j < k; j++) {
              await exe.run({
                feeds: {
                  g: f32(steps[s][j]),
                  h: f32(p0.map(() => 0)),
                  lr: scalar(lr),
                  opt_step: scalar(t),
                  apply: scalar(j === k - 1 ? 1 : 0),
                },
              });
            }
            const g = mean(steps[s].slice(0, k));
            for (let i = 0; i < want.length; i++) {
              want[i] -= lr * wd * want[i];
              m[i] = b1 * m[i] + (1 - b1) * g[i];
              v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
              want[i] -= (lr / (1 - b1 ** t)) * (m[i] / (Math.sqrt(v[i]) / Math.sqrt(1 - b2 ** t) + eps));
            }
          }
          // Stated tolerance: f32 against float64, a few steps of lr 0.01.
          expectClose(await read(exe, 'p'), want, 1e-4, 'p');
          expectClose(await read(exe, 'optimizer.exp_avg.p'), m, 1e-5, 'exp_avg');
        },
      ),
      { numRuns: 30 },
    );
  });

  it('SGD momentum with dampening starts its buffer at optimizer step 1, not micro-step 1', async () => {
    const exe = await compile(
      {
        rule: sgd({ momentum: 0.9, dampening: 0.5 }),
        defaultGroup: { name: 'default', lrScale: 1, weightDecay: 0 },
        accumulate: 2,
      },
      [0],
      [0],
    );
    const feed = (g: number, t: number, apply: number) =>
      exe.run({
        feeds: { g: f32([g]), h: f32([0]), lr: scalar(1), opt_step: scalar(t), apply: scalar(apply) },
      });
    await feed(1, 1, 0);
    await feed(3, 1, 1); // mean 2; t = 1: buf = g = 2
    await feed(4, 2, 0);
    await feed(0, 2, 1); // mean 2; buf = 0.9 * 2 + 0.5 * 2 = 2.8
    expectClose(await read(exe, 'optimizer.momentum_buffer.p'), [2.8], 1e-6, 'momentum buffer');
    expectClose(await read(exe, 'p'), [-4.8], 1e-6, 'p');
  });

  it('8-bit AdamW state (u8 codes) is held between micro-steps and matches feeding the mean', async () => {
    const n = 4096;
    const opts = (accumulate: number): OptimizerPassOptions => ({
      rule: adamw8bit({ betas: [0.9, 0.999], eps: 1e-8 }),
      defaultGroup: { name: 'default', lrScale: 1, weightDecay: 0 },
      accumulate,
    });
    const p0 = Array.from({ length: n }, (_, i) => Math.sin(i));
    const g1 = p0.map((_, i) => Math.cos(3 * i));
    const g2 = p0.map((_, i) => Math.sin(7 * i) * 0.5);
    const acc = await compile(opts(2), p0, p0);
    const one = await compile(opts(1), p0, p0);
    const zeros = f32(p0.map(() => 0));
    for (let t = 1; t <= 2; t++) {
      await acc.run({
        feeds: { g: f32(g1), h: zeros, lr: scalar(1e-2), opt_step: scalar(t), apply: scalar(0) },
      });
      if (t === 1) expect(await read(acc, 'optimizer.exp_avg.p')).toEqual(new Array(n).fill(0));
      await acc.run({
        feeds: { g: f32(g2), h: zeros, lr: scalar(1e-2), opt_step: scalar(t), apply: scalar(1) },
      });
      await one.run({ feeds: { g: f32(mean([g1, g2])), h: zeros, lr: scalar(1e-2), step: scalar(t) } });
    }
    expectClose(await read(acc, 'p'), await read(one, 'p'), 1e-6, 'p');
  });

  it('k = 1 builds exactly the graph without accumulation; bad k and clashing inputs are refused', () => {
    const opts: OptimizerPassOptions = {
      rule: adamw({ betas: [0.9, 0.999], eps: 1e-8 }),
      defaultGroup: { name: 'default', lrScale: 1, weightDecay: 0 },
      maxGradNorm: 1,
    };
    const plain = appendOptimizer(gradGraph(2), opts);
    expect(printGraph(appendOptimizer(gradGraph(2), { ...opts, accumulate: 1 }))).toBe(printGraph(plain));
    expect(plain.inputs().map((x) => x.attrs.name)).toEqual(['g', 'h', 'lr', 'step']);
    const acc = appendOptimizer(gradGraph(2), { ...opts, accumulate: 4 });
    expect(acc.inputs().map((x) => x.attrs.name)).toEqual(['g', 'h', 'lr', 'opt_step', 'apply']);
    expect(acc.params().filter((x) => String(x.attrs.name).startsWith('optimizer.grad_acc.')).length).toBe(2);
    for (const bad of [0, 1.5, -2]) {
      expect(() => appendOptimizer(gradGraph(2), { ...opts, accumulate: bad })).toThrow(
        `accumulate must be a positive integer, got ${bad}`,
      );
    }
    const b = GraphBuilder.from(gradGraph(2));
    b.input('apply', 'f32', []);
    const clash = b.build(gradGraph(2).outputs.map((o) => [o.name, b.value(o.id)] as const));
    expect(() => appendOptimizer(clash, { ...opts, accumulate: 2 })).toThrow(/already has an input 'apply'/);
  });

  it('the tiny model train step: k = 1 has no accumulation inputs or states; k = 2 adds them', () => {
    const model = openModel('examples/models/tiny-llama', { seed: 0 });
    const make = (k: number) =>
      prepareRun(
        model,
        defineRecipe({
          methods: [{ method: 'lora', r: 2, lora_alpha: 4, lora_dropout: 0.1, target_modules: ['q_proj'] }],
          optimizer: { type: 'adamw', lr: 1e-3 },
          gradient_accumulation_steps: k,
        } as never),
        { batch: 1, seq: 8 },
        { seed: 0 },
      );
    const one = make(1);
    const two = make(2);
    expect(one.step.inputs().map((x) => x.attrs.name)).toEqual(['input_ids', 'labels', 'step', 'lr']);
    expect(two.step.inputs().map((x) => x.attrs.name)).toEqual([
      'input_ids',
      'labels',
      'step',
      'lr',
      'opt_step',
      'apply',
    ]);
    expect(one.state.filter((s) => s.includes('grad_acc'))).toEqual([]);
    expect(two.state.filter((s) => s.includes('grad_acc')).sort()).toEqual(
      one.trainable.map((t) => `optimizer.grad_acc.${t}`).sort(),
    );
  });
});

const MODEL = 'examples/models/tiny-llama';
// Packed plain text: every row has seq - 1 label tokens, so the mean of the micro-batch mean
// losses is the mean over the whole batch and the two ways of training must agree.
const DATA = 'examples/data/tiny-stories.txt';
const sink = { write: () => true, isTTY: false };
const tmp = () => mkdtempSync(join(tmpdir(), 'peftc-accum-'));

function recipeFile(extra: Record<string, unknown>): string {
  const f = join(tmp(), 'recipe.json');
  writeFileSync(
    f,
    JSON.stringify({
      methods: [
        { method: 'lora', r: 4, lora_alpha: 8, lora_dropout: 0, target_modules: ['q_proj', 'v_proj'] },
      ],
      optimizer: { type: 'sgd', lr: 0.5 },
      ...extra,
    }),
  );
  return f;
}

const run = (recipe: Record<string, unknown>, o: Partial<TrainCliOptions>) => {
  const opts: TrainCliOptions = {
    model: MODEL,
    recipe: recipeFile(recipe),
    data: DATA,
    out: tmp(),
    steps: 3,
    batch: 4,
    seq: 24,
    backend: 'cpu',
    plot: false,
    evalEvery: 1000,
    ...o,
  };
  return runTrain(opts, sink as never).then((r) => ({ ...r, out: opts.out }));
};

function adapter(dir: string): Map<string, number[]> {
  const f = SafetensorsFile.open(join(dir, 'adapter_model.safetensors'));
  return new Map(f.keys().map((n) => [n, Array.from(f.read(n).data as Float32Array)]));
}

/** The log's step records (the step-0 record is the eval baseline, before any step). */
function logRecords(dir: string): Record<string, number>[] {
  return readFileSync(join(dir, 'log.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l))
    .filter((r) => r.step > 0);
}

function maxRelDiff(a: Map<string, number[]>, b: Map<string, number[]>): number {
  expect([...a.keys()].sort()).toEqual([...b.keys()].sort());
  let worst = 0;
  for (const [n, xs] of a) {
    const ys = b.get(n)!;
    const scale = Math.max(...ys.map(Math.abs));
    xs.forEach((x, i) => {
      worst = Math.max(worst, Math.abs(x - ys[i]) / scale);
    });
  }
  return worst;
}

describe('training with gradient_accumulation_steps (cpu, tiny model)', () => {
  it('k micro-batches of B rows = one batch of k*B rows: SGD with clipping, AdamW with a warmup schedule', async () => {
    const cases = [
      // Stated tolerances (max |diff| / max |weight| per tensor, f32, other summation order):
      // SGD 1e-5; AdamW 2e-4, as m / sqrt(v) magnifies the rounding of tiny gradients.
      { name: 'sgd, clipped', tol: 1e-5, recipe: { max_grad_norm: 0.05 } },
      {
        name: 'adamw, linear warmup',
        tol: 2e-4,
        recipe: {
          optimizer: { type: 'adamw', lr: 1e-2, weight_decay: 0.01 },
          schedule: { type: 'linear', warmup_steps: 1 },
        },
      },
    ];
    for (const c of cases) {
      const full = await run({ ...c.recipe, gradient_accumulation_steps: 1 }, { batch: 4 });
      const micro = await run({ ...c.recipe, gradient_accumulation_steps: 2 }, { batch: 2 });
      expect(maxRelDiff(adapter(micro.out), adapter(full.out)), c.name).toBeLessThan(c.tol);
      expect(micro.losses.length, c.name).toBe(3);
      micro.losses.forEach((l, i) => {
        expect(Math.abs(l - full.losses[i]), `${c.name} loss ${i + 1}`).toBeLessThan(1e-5 * l);
      });
      // One log record per optimizer step; lr follows the schedule per optimizer step.
      const lf = logRecords(full.out);
      const lm = logRecords(micro.out);
      expect(lm.map((r) => r.step)).toEqual([1, 2, 3]);
      expect(lm.map((r) => r.lr)).toEqual(lf.map((r) => r.lr));
      const sched = (c.recipe as { schedule?: { type: 'linear'; warmup_steps: number } }).schedule;
      const base = (c.recipe as { optimizer?: { lr: number } }).optimizer?.lr ?? 0.5;
      expect(lm.map((r) => r.lr)).toEqual([0, 1, 2].map((k) => lrAt(sched, base, k, 3)));
      if (c.name.startsWith('sgd')) {
        lm.forEach((r, i) => {
          // The accumulated gradient's norm, over max_grad_norm: every step was clipped.
          expect(r.grad_norm).toBeGreaterThan(0.05);
          expect(Math.abs(r.grad_norm - lf[i].grad_norm)).toBeLessThan(1e-5 * lf[i].grad_norm);
        });
      }
    }
  });

  it('resume at an optimizer-step boundary in the middle of a run is bit-exact (dropout on)', async () => {
    const recipe = {
      methods: [
        { method: 'lora', r: 4, lora_alpha: 8, lora_dropout: 0.1, target_modules: ['q_proj', 'v_proj'] },
      ],
      optimizer: { type: 'adamw', lr: 1e-2 },
      gradient_accumulation_steps: 2,
      max_grad_norm: 1,
    };
    const one = await run(recipe, { steps: 4, batch: 2 });
    const out = tmp();
    await run(recipe, { steps: 2, batch: 2, out });
    const two = await run(recipe, { steps: 4, batch: 2, out, resume: true });
    expect(two.losses).toEqual(one.losses.slice(2));
    expect(adapter(out)).toEqual(adapter(one.out));
    // A checkpoint taken with another accumulation cannot continue exactly.
    await expect(
      run({ ...recipe, gradient_accumulation_steps: 4 }, { steps: 6, batch: 2, out, resume: true }),
    ).rejects.toThrow(/not 4 steps of gradient_accumulation_steps 4/);
  });

  it('feeds each micro-step its own step (dropout masks), apply on the last, and t and lr per optimizer step', async () => {
    const cpu = new CpuBackend();
    const fed: Record<string, number>[] = [];
    let dropoutSteps: boolean[] = [];
    const backend: Backend = {
      name: 'cpu',
      dispose: () => cpu.dispose(),
      async compile(graph, weights) {
        const exe = await cpu.compile(graph, weights);
        const stepInput = graph.inputs().find((n) => n.attrs.name === 'step');
        if (!graph.inputs().some((n) => n.attrs.name === 'apply')) return exe;
        // Dropouts, and those applied inside matmul kernels (fuse-dropout: the step is the last input).
        dropoutSteps = graph.nodes.flatMap((n) =>
          n.op === 'dropout'
            ? [n.inputs[1] === stepInput?.id]
            : n.op === 'matmul_map' && n.attrs.dropout
              ? [n.inputs[n.inputs.length - 1] === stepInput?.id]
              : [],
        );
        return {
          graph,
          run: (req) => {
            const f = req.feeds;
            fed.push(Object.fromEntries(['step', 'apply', 'opt_step', 'lr'].map((k) => [k, f[k].data[0]])));
            return exe.run(req);
          },
          readParam: (n) => exe.readParam(n),
          writeParam: (n, v) => exe.writeParam(n, v),
          copyParamRows: (from, n, rows) => exe.copyParamRows(from, n, rows),
          dispose: () => exe.dispose(),
        };
      },
    };
    const recipe = defineRecipe({
      methods: [{ method: 'lora', r: 2, lora_alpha: 4, lora_dropout: 0.1, target_modules: ['q_proj'] }],
      optimizer: { type: 'sgd', lr: 0.1 },
      schedule: { type: 'linear', warmup_steps: 0 },
      gradient_accumulation_steps: 3,
    } as never);
    const seq = 16;
    await train({
      model: openModel(MODEL, { seed: 0 }),
      recipe,
      dataset: loadDataset({ data: DATA, tokenizer: new ByteTokenizer(), seq, seed: 0 }),
      backend,
      out: tmp(),
      steps: 2,
      batch: 1,
      seed: 0,
      evalEvery: 1000,
      plot: false,
      stream: sink as never,
    });
    expect(dropoutSteps.length).toBeGreaterThan(0);
    expect(dropoutSteps.every(Boolean)).toBe(true);
    const lr = [0, 1].map((k) => Math.fround(lrAt(recipe.schedule, 0.1, k, 2)));
    expect(fed).toEqual([
      { step: 1, apply: 0, opt_step: 1, lr: lr[0] },
      { step: 2, apply: 0, opt_step: 1, lr: lr[0] },
      { step: 3, apply: 1, opt_step: 1, lr: lr[0] },
      { step: 4, apply: 0, opt_step: 2, lr: lr[1] },
      { step: 5, apply: 0, opt_step: 2, lr: lr[1] },
      { step: 6, apply: 1, opt_step: 2, lr: lr[1] },
    ]);
  });

  it('webgpu runs the same accumulating step as the cpu (paged 8-bit AdamW state gated in place)', async () => {
    const recipe = {
      methods: [
        { method: 'lora', r: 4, lora_alpha: 8, lora_dropout: 0.1, target_modules: ['q_proj', 'up_proj'] },
      ],
      optimizer: { type: 'paged_adamw8bit', lr: 1e-2, min_8bit_size: 128 },
      gradient_accumulation_steps: 2,
      max_grad_norm: 1,
    };
    const cpu = await run(recipe, { steps: 3, batch: 2 });
    const gpu = await run(recipe, { steps: 3, batch: 2, backend: 'webgpu' });
    // Stated tolerance, as in train.test.ts: f32 on both, other summation orders, 2e-3 relative.
    cpu.losses.forEach((l, i) => {
      expect(Math.abs(gpu.losses[i] - l), `loss ${i + 1}`).toBeLessThan(2e-3 * l);
    });
  });
});
