// fuse-dropout: dropouts applied inside the matmul kernels that read them (operand
// prologue) or make their input (output mask) give the unfused graph's masks bit for bit,
// and so do one-input maps applied in operand loads (fuse-operand-map, on the other operand):
// on random matmul/linear problems with every matmul kernel variant (WebGPU fused ==
// WebGPU unfused exactly, and the CPU interpreter to rounding), and on the bundled LoRA
// training step with dropout (loss and every updated param, both backends).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { stepFeeds } from '../../../bench/step-feeds.ts';
import { runGraph } from '../../../src/backends/cpu/index.ts';
import { createBackend } from '../../../src/backends/index.ts';
import { WebGpuBackend, type WebGpuOptions } from '../../../src/backends/webgpu/index.ts';
import { listKernels } from '../../../src/backends/webgpu/kernel-list.ts';
import { GraphBuilder } from '../../../src/ir/builder.ts';
import type { Graph } from '../../../src/ir/graph.ts';
import { parseGraph } from '../../../src/ir/parser.ts';
import { printGraph } from '../../../src/ir/printer.ts';
import { tensor } from '../../../src/ir/tensor.ts';
import { verify } from '../../../src/ir/verify.ts';
import { fuseDropout } from '../../../src/passes/fuse/dropout.ts';
import { fuseElementwise } from '../../../src/passes/fuse/elementwise.ts';
import { fuseEpilogue, unfuseEpilogue } from '../../../src/passes/fuse/matmul-map.ts';
import { fuseOperandMap } from '../../../src/passes/fuse/operand-map.ts';
import { randomFeeds, randomWeights } from '../../arbitrary/graphs.ts';
import { cli } from '../../cli/run-cli.ts';
import { bundledLoraRun, compareSteps, maxDiff } from './same.ts';

const fuse = (g: Graph) => verify(fuseOperandMap(fuseDropout(fuseEpilogue(fuseElementwise(g)))));
const count = (g: Graph, op: string) => g.nodes.filter((n) => n.op === op).length;

/** One product with a dropout on operand a or b, or on its result. */
interface Problem {
  readonly op: 'matmul' | 'linear';
  readonly m: number;
  readonly n: number;
  readonly k: number;
  readonly ta: boolean;
  readonly tb: boolean;
  /** A leading batch axis of the matmul's a (b broadcast), or none. */
  readonly batch: number;
  readonly bias: boolean;
  readonly at: 'a' | 'b' | 'out';
  readonly p: number;
  /** Whether the dropout reads the step input. */
  readonly step: boolean;
  /** An epilogue (a residual add) the product already carries. */
  readonly epilogue: boolean;
  /** A one-input map on the other operand (fuse-operand-map): a scale, or a chain of two ops. */
  readonly map: 'none' | 'scale' | 'chain';
}

const arbProblem: fc.Arbitrary<Problem> = fc.record({
  op: fc.constantFrom('matmul' as const, 'linear' as const),
  m: fc.integer({ min: 1, max: 11 }),
  n: fc.integer({ min: 1, max: 10 }),
  k: fc.integer({ min: 1, max: 13 }),
  ta: fc.boolean(),
  tb: fc.boolean(),
  batch: fc.constantFrom(0, 2),
  bias: fc.boolean(),
  at: fc.constantFrom('a' as const, 'b' as const, 'out' as const),
  p: fc.constantFrom(0.05, 0.3, 0.5, 0.9),
  step: fc.boolean(),
  epilogue: fc.boolean(),
  map: fc.constantFrom('none' as const, 'scale' as const, 'chain' as const),
});

function problemGraph(q: Problem, seed: number): Graph {
  const b = new GraphBuilder();
  const step = q.step ? b.input('step', 'i32', []) : undefined;
  const lead = q.batch ? [q.batch] : [];
  let a = b.input(
    'a',
    'f32',
    q.op === 'linear' ? [...lead, q.m, q.k] : [...lead, ...(q.ta ? [q.k, q.m] : [q.m, q.k])],
  );
  let w = b.input('b', 'f32', q.op === 'linear' ? [q.n, q.k] : q.tb ? [q.n, q.k] : [q.k, q.n]);
  const map = (v: typeof a) => (q.map === 'scale' ? b.scale(v, -1.5) : b.exp(b.scale(v, 0.7)));
  if (q.map !== 'none') {
    if (q.at === 'a') w = map(w);
    else a = map(a);
  }
  if (q.at === 'a') a = b.dropout(a, q.p, seed, step);
  if (q.at === 'b') w = b.dropout(w, q.p, seed, step);
  let y =
    q.op === 'linear'
      ? b.linear(a, w, q.bias ? b.input('bias', 'f32', [q.n]) : undefined)
      : b.matmul(a, w, { transpose_a: q.ta, transpose_b: q.tb });
  if (q.epilogue) y = b.add(y, b.input('r', 'f32', [...lead, q.m, q.n]));
  if (q.at === 'out') y = b.dropout(y, q.p, seed, step);
  return b.build({ y });
}

const feedsOf = (g: Graph, seed: number) => ({
  ...randomFeeds(g, seed),
  ...(g.inputs().some((n) => n.attrs.name === 'step') ? { step: tensor('i32', [], [seed % 7]) } : {}),
});

describe('fuse-dropout', () => {
  it('random products: the dropout goes into the kernel; CPU bit for bit, and the inverse too (f64, f32)', () => {
    fc.assert(
      fc.property(arbProblem, fc.nat(1000), (q, seed) => {
        const g = problemGraph(q, seed);
        const f = fuse(g);
        expect(count(f, 'dropout')).toBe(0);
        expect(f.nodes.filter((n) => n.op !== 'input' && n.op !== 'reshape').map((n) => n.op)).toEqual([
          'matmul_map',
        ]);
        const back = verify(unfuseEpilogue(f));
        expect(count(back, 'dropout')).toBe(1);
        const feeds = feedsOf(g, seed);
        for (const precision of ['f64', 'f32'] as const) {
          const want = Array.from(runGraph(g, feeds, randomWeights(g), { precision }).y.data);
          expect(Array.from(runGraph(f, feeds, randomWeights(g), { precision }).y.data)).toEqual(want);
          expect(Array.from(runGraph(back, feeds, randomWeights(g), { precision }).y.data)).toEqual(want);
        }
      }),
      { numRuns: 80 },
    );
  });

  it('the IR text of a matmul_map with a dropout round-trips', () => {
    const g = fuse(
      problemGraph(
        {
          op: 'matmul',
          m: 3,
          n: 2,
          k: 5,
          ta: true,
          tb: false,
          batch: 0,
          bias: false,
          at: 'b',
          p: 0.25,
          step: true,
          epilogue: true,
          map: 'scale',
        },
        7,
      ),
    );
    const text = printGraph(g);
    expect(text).toContain('dropout={at="b"');
    expect(text).toContain('pre={at="a"');
    expect(printGraph(parseGraph(text))).toBe(text);
  });

  // One test per kernel variant and dropout place (each compiles its own pipelines, a few
  // seconds apiece on lavapipe): tiled and GEMV forced through the GPU kernels, M > 4 / <= 4.
  const variants: [string, WebGpuOptions, { min: number; max: number }][] = [
    ['direct/outer', { kernels: 'cpu', softwareMatmul: 'direct' }, { min: 1, max: 11 }],
    ['register', { kernels: 'cpu', softwareMatmul: 'register' }, { min: 1, max: 11 }],
    ['tiled', { kernels: 'gpu' }, { min: 5, max: 11 }],
    ['gemv', { kernels: 'gpu' }, { min: 1, max: 4 }],
  ];
  for (const [label, opts, m] of variants)
    for (const at of ['a', 'b', 'out'] as const)
      it(`WebGPU ${label} kernels, dropout on ${at}: the fused kernel equals the unfused dropout, map and product, and the CPU`, async () => {
        const be = new WebGpuBackend(opts);
        try {
          await be.ready();
        } catch {
          return; // no adapter: the webgpu suites say so
        }
        const problems = arbProblem.chain((q) =>
          fc.integer(m).map((rows) => ({ ...q, m: rows, at }) satisfies Problem),
        );
        try {
          await fc.assert(
            fc.asyncProperty(problems, fc.nat(1000), async (q, seed) => {
              const g = problemGraph(q, seed);
              const f = fuse(g);
              const feeds = feedsOf(g, seed);
              const want = runGraph(g, feeds, randomWeights(g), { precision: 'f32' }).y.data;
              const [x, y] = await Promise.all([
                be.compile(g, randomWeights(g)),
                be.compile(f, randomWeights(f)),
              ]);
              const plain = (await x.run({ feeds })).y.data;
              const got = (await y.run({ feeds })).y.data;
              x.dispose();
              y.dispose();
              // A chain's exp may round differently in the unfused map kernel (its vec4 path).
              if (q.map === 'chain') expect(maxDiff(plain, got)).toBeLessThan(1e-6);
              else expect(Array.from(got)).toEqual(Array.from(plain));
              expect(maxDiff(want, got)).toBeLessThan(1e-5);
            }),
            // The tiled kernel's pipelines (256 invocations, workgroup memory) compile slowest.
            { numRuns: label === 'tiled' ? 2 : 3 },
          );
        } finally {
          be.dispose();
        }
      });

  it('large products on software adapters: the texture kernel stages operands through their dropout or map, and masks its store', async () => {
    // Vec4 and element-wise staging (a transposed or ragged operand), on A and on B.
    const big: Problem = {
      op: 'matmul',
      m: 128,
      n: 257,
      k: 256,
      ta: false,
      tb: true,
      batch: 0,
      bias: false,
      at: 'out',
      p: 0.1,
      step: true,
      epilogue: false,
      map: 'none',
    };
    const cases: Problem[] = [
      { ...big, at: 'a', map: 'scale' },
      { ...big, ta: true, tb: false, at: 'b', p: 0.3, epilogue: true, map: 'chain' },
      { ...big, step: false },
      // The dropout on a transposed operand staged as 4 x 4 blocks (k a multiple of 4).
      { ...big, at: 'b', p: 0.2 },
    ];
    const target = { f16: false, software: true, softwareMatmul: 'texture', textureDimension: 8192 } as const;
    for (const q of cases)
      expect(
        listKernels(fuse(problemGraph(q, 11)), target).dispatches.map(
          (d) => JSON.parse(d.key).program.kernel,
        ),
      ).toEqual(
        // The transposed operand (A with ta, B with tb) is staged as 4 x 4 blocks.
        q.ta
          ? ['texture-stage-blocks', 'texture-stage', 'texture']
          : ['texture-stage', 'texture-stage-blocks', 'texture'],
      );
    const be = new WebGpuBackend({ kernels: 'cpu', softwareMatmul: 'texture' });
    try {
      await be.ready();
    } catch {
      return; // no adapter: the webgpu suites say so
    }
    try {
      for (const q of cases) {
        const g = problemGraph(q, 11);
        const feeds = feedsOf(g, 3);
        const want = runGraph(g, feeds, randomWeights(g), { precision: 'f32' }).y.data;
        const exe = await be.compile(fuse(g), randomWeights(g));
        expect(maxDiff(want, (await exe.run({ feeds })).y.data)).toBeLessThan(1e-5);
        exe.dispose();
      }
    } finally {
      be.dispose();
    }
  });

  it('leaves alone: a dropout with another reader, p = 0, a graph output, a second dropout on one product; a map with another reader', () => {
    const b = new GraphBuilder();
    const x = b.input('x', 'f32', [4, 6]);
    const step = b.input('step', 'i32', []);
    const w = b.param('w', 'f32', [3, 6]);
    // Read by a linear and by an add: stays.
    const d1 = b.dropout(x, 0.1, 1, step);
    const y1 = b.add(b.linear(b.linear(d1, w), b.param('w2', 'f32', [6, 3])), d1);
    // p = 0: the identity, not this pass's business.
    const y2 = b.linear(b.dropout(x, 0, 2, step), w);
    // An output.
    const d3 = b.dropout(x, 0.1, 3, step);
    const y3 = b.linear(d3, w);
    // Two dropouts into one product: one goes into the kernel, the other stays.
    const y4 = b.matmul(b.dropout(x, 0.1, 4, step), b.dropout(b.param('v', 'f32', [6, 5]), 0.1, 5, step));
    // A scale read by a product and an add stays; one read by two products goes into both.
    const s5 = b.scale(x, 3);
    const y5 = b.add(b.linear(b.linear(s5, w), b.param('w3', 'f32', [6, 3])), s5);
    const s6 = b.scale(x, 0.5);
    const y6 = b.add(b.linear(s6, w), b.linear(s6, b.param('w4', 'f32', [3, 6])));
    const g = b.build({ y1, y2, d3, y3, y4, y5, y6 });
    const f = fuse(g);
    expect(count(g, 'dropout')).toBe(5);
    expect(count(f, 'dropout')).toBe(4);
    expect(f.nodes.filter((n) => n.op === 'scale').map((n) => n.attrs.factor)).toEqual([3]);
    const seeds = f.nodes.filter((n) => n.op === 'dropout').map((n) => n.attrs.seed);
    expect(seeds.sort()).toEqual([1, 2, 3, 5]);
    const feeds = { ...randomFeeds(g, 1), step: tensor('i32', [], [3]) };
    const w0 = randomWeights(g, 1);
    const want = runGraph(g, feeds, w0);
    const got = runGraph(f, feeds, w0);
    for (const o of g.outputs) expect(Array.from(got[o.name].data)).toEqual(Array.from(want[o.name].data));
  });

  it('an output mask through a reshape view, and a prologue through reshapes (the LoRA shapes)', () => {
    const b = new GraphBuilder();
    const x = b.input('x', 'f32', [2, 3, 8]);
    const step = b.input('step', 'i32', []);
    const d = b.dropout(x, 0.2, 9, step);
    const h = b.linear(d, b.param('a', 'f32', [4, 8]));
    // A's gradient's product reads the same saved dropout as a [6, 8] view, transposed.
    const ga = b.matmul(b.reshape(b.input('g', 'f32', [2, 3, 4]), [6, 4]), b.reshape(d, [6, 8]), {
      transpose_a: true,
    });
    // The backward's dropout of a product, through a reshape to the activation's shape.
    const dx = b.dropout(
      b.reshape(b.matmul(b.input('gh', 'f32', [6, 4]), b.param('a2', 'f32', [4, 8])), [2, 3, 8]),
      0.2,
      10,
      step,
    );
    const g = b.build({ h, ga, dx });
    const f = fuse(g);
    expect(count(f, 'dropout')).toBe(0);
    expect(count(f, 'matmul_map')).toBe(3);
    const feeds = { ...randomFeeds(g, 2), step: tensor('i32', [], [5]) };
    const w = randomWeights(g, 2);
    const want = runGraph(g, feeds, w);
    const got = runGraph(f, feeds, w);
    for (const o of g.outputs) expect(Array.from(got[o.name].data)).toEqual(Array.from(want[o.name].data));
  });

  const run = bundledLoraRun();

  it('the bundled LoRA step (lora_dropout 0.05) has no dropout left; split back it has them again', () => {
    expect(count(run.step, 'dropout')).toBe(0);
    // And the 14 backward LoRA scalings s * g, each read by two products (fuse-operand-map).
    expect(run.step.nodes.filter((n) => n.op === 'matmul_map' && n.attrs.pre).length).toBe(28);
    // 25 in the step (14 forward, 11 backward); split back, each forward one once per reader
    // (its lora_A linear and the product making lora_A's gradient).
    expect(count(unfuseEpilogue(run.step), 'dropout')).toBe(14 * 2 + 11);
  });

  for (const backend of ['cpu', 'webgpu'] as const)
    it(`${backend}: the dropout-fused LoRA step equals the unfused one: losses and params over 2 steps`, async () => {
      const plain = unfuseEpilogue(run.step);
      const r = await compareSteps(backend, plain, run.step, run, 2, 16);
      expect(r.loss).toBeLessThanOrEqual(backend === 'cpu' ? 0 : 1e-5);
      expect(r.params).toBeLessThanOrEqual(backend === 'cpu' ? 0 : 1e-5);
      if (r.dispatches) expect(r.dispatches[1]).toBeLessThan(r.dispatches[0]);
    });

  it('WebGPU equals the CPU on the fused LoRA step (losses over 2 steps, every param)', async () => {
    const [cpu, gpu] = await Promise.all([createBackend('cpu'), createBackend('webgpu')]);
    try {
      const [a, b] = await Promise.all([
        cpu.compile(run.step, run.weights),
        gpu.compile(run.step, run.weights),
      ]);
      const feeds = stepFeeds(2, 16);
      for (let k = 0; k < 2; k++) {
        const [x, y] = await Promise.all([a.run({ feeds: feeds(k) }), b.run({ feeds: feeds(k) })]);
        expect(Math.abs(x.loss.data[0] - y.loss.data[0])).toBeLessThan(1e-4);
      }
      for (const name of run.trainable) {
        const [p, q] = await Promise.all([a.readParam(name), b.readParam(name)]);
        expect(maxDiff(p.data, q.data)).toBeLessThan(1e-4);
      }
      a.dispose();
      b.dispose();
    } finally {
      cpu.dispose();
      gpu.dispose();
    }
  });

  for (const recipe of ['malora-moe-tiny', 'galore-tiny'])
    it(`peftc ir --train --kernels still works for ${recipe}`, async () => {
      const r = await cli([
        'ir',
        '--model',
        'examples/models/tiny-llama',
        '--recipe',
        `examples/recipes/${recipe}.json`,
        '--train',
        '--kernels',
        '--batch',
        '1',
        '--seq',
        '8',
      ]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout).toContain('dispatches');
    });
});
