// Kernels over several nodes (kernel-groups.ts): runs of fused elementwise nodes are one
// dispatch, params are written in place only where that is safe, groups respect the
// device's binding limit, and grouped graphs compute what the CPU interpreter does (random
// graphs with assigns, an AdamW-shaped multi-tensor update, the real train step's plan).
import fc from 'fast-check';
import { expect, it } from 'vitest';
import { ASSIGN_PREFIX } from '../../../src/backends/backend.ts';
import type { WebGpuExecutable } from '../../../src/backends/webgpu/index.ts';
import { LOOK_PAST, MAX_MEMBERS } from '../../../src/backends/webgpu/kernel-groups.ts';
import { planKernels } from '../../../src/backends/webgpu/kernel-plan.ts';
import { planMemory } from '../../../src/backends/webgpu/memory-plan.ts';
import { GraphBuilder, type Value } from '../../../src/ir/builder.ts';
import { Graph } from '../../../src/ir/graph.ts';
import { sameShape } from '../../../src/ir/shape.ts';
import { MapWeightStore } from '../../../src/ir/weights.ts';
import { loadRecipe } from '../../../src/methods/index.ts';
import { loadModel } from '../../../src/models/llama/index.ts';
import { fuseElementwise } from '../../../src/passes/fuse/elementwise.ts';
import { prepareRun } from '../../../src/train/setup.ts';
import { Rng } from '../../../src/util/rng.ts';
import { randomFeeds, randomWeights } from '../../arbitrary/graphs.ts';
import { expectClose, randTensor } from '../../ops/case.ts';
import { gpuSuite } from './gpu.ts';
import { expectRunsAsCpu } from './runs-as-cpu.ts';

const SOFTWARE = { f16: false, software: true };

/** AdamW on tensors of the given shapes (m, v, w updated through assigns), fused. */
function adamGraph(shapes: readonly number[][]): Graph {
  const b = new GraphBuilder();
  const lr = b.input('lr', 'f32', []);
  const coef = b.input('coef', 'f32', []);
  const outputs: Record<string, Value> = {};
  shapes.forEach((shape, k) => {
    const w = b.param(`w${k}`, 'f32', shape, 'trainable');
    const m = b.param(`m${k}`, 'f32', shape, 'state');
    const v = b.param(`v${k}`, 'f32', shape, 'state');
    const g = b.mul(b.input(`g${k}`, 'f32', shape), coef);
    const m2 = b.add(b.scale(m, 0.9), b.scale(g, 0.1));
    const v2 = b.add(b.scale(v, 0.999), b.scale(b.mul(g, g), 0.001));
    const w2 = b.sub(w, b.mul(lr, b.div(m2, b.add(b.unary('sqrt', v2), b.const(1e-8)))));
    outputs[`${ASSIGN_PREFIX}m${k}`] = m2;
    outputs[`${ASSIGN_PREFIX}v${k}`] = v2;
    outputs[`${ASSIGN_PREFIX}w${k}`] = w2;
  });
  return fuseElementwise(b.build(outputs));
}

const SHAPES: readonly number[][] = [[4, 3], [3], [1], [5], [4, 3]];
const UNARY = ['exp', 'neg', 'sigmoid', 'tanh'] as const;
const BINARY = ['add', 'mul', 'sub', 'maximum'] as const;

/**
 * Random graphs of elementwise ops over params and inputs of a few shapes (some broadcast
 * into others), now and then a sum or a view between them, fused; each param is assigned
 * one of the values of its shape, as an optimizer does.
 */
const arbElementwise = fc
  .record({
    steps: fc.array(fc.record({ op: fc.nat(11), a: fc.nat(99), b: fc.nat(99) }), {
      minLength: 2,
      maxLength: 18,
    }),
    assigns: fc.array(fc.nat(99), { minLength: 5, maxLength: 5 }),
    seed: fc.nat(1000),
  })
  .map(({ steps, assigns, seed }) => {
    const b = new GraphBuilder();
    const values: Value[] = SHAPES.map((s, k) =>
      k % 2 ? b.input(`x${k}`, 'f32', s) : b.param(`p${k}`, 'f32', s, k === 2 ? 'state' : 'trainable'),
    );
    const pick = (i: number) => values[i % values.length];
    for (const st of steps) {
      const x = pick(st.a);
      const y = pick(st.b);
      if (st.op < 4) values.push(b.unary(UNARY[st.op], x));
      else if (st.op < 8) {
        const both = [x.type.shape, y.type.shape];
        // Broadcastable pairs only: equal shapes, or one of them [1] / [3] against [4, 3].
        const ok = (s: readonly number[], t: readonly number[]) =>
          sameShape(s, t) || (s.length === 1 && (s[0] === 1 || (t.length === 2 && s[0] === t[1])));
        if (ok(both[0], both[1]) || ok(both[1], both[0])) values.push(b[BINARY[st.op - 4]](x, y));
        else values.push(b.scale(x, 0.5));
      } else if (st.op === 8) values.push(b.sum(x, [x.type.shape.length - 1], true));
      else if (st.op === 9) values.push(b.reshape(x, [x.type.shape.reduce((p, q) => p * q, 1)]));
      else values.push(b.scale(x, 1.5));
    }
    const outputs: Record<string, Value> = { y: values[values.length - 1] };
    SHAPES.forEach((shape, k) => {
      if (k % 2) return;
      const same = values.filter((v, i) => i !== k && sameShape(v.type.shape, shape));
      if (same.length) outputs[`${ASSIGN_PREFIX}p${k}`] = same[assigns[k] % same.length];
    });
    // A param nothing reads is not in the graph: its assign goes too.
    const g = fuseElementwise(b.build(outputs));
    const params = new Set(g.params().map((p) => `${ASSIGN_PREFIX}${p.attrs.name}`));
    const kept = g.outputs.filter((o) => !o.name.startsWith(ASSIGN_PREFIX) || params.has(o.name));
    return { graph: new Graph(g.nodes, kept), seed };
  });

it('an AdamW tail over tensors of several sizes: few kernels, every param written in place, within the binding limit', () => {
  const g = adamGraph([[8], [6, 4], [3], [5, 5], [2, 2]]);
  const maps = g.nodes.filter((n) => n.op === 'fused_map').length;
  for (const storageBuffers of [8, 16]) {
    const { nodes, groupOf } = planKernels(g, { ...SOFTWARE, storageBuffers });
    const kernels = nodes.filter((p) => typeof p !== 'string');
    expect(kernels.length).toBeLessThan(maps / 2);
    for (const k of kernels)
      for (const s of k.steps) expect(s.bindings.length).toBeLessThanOrEqual(storageBuffers);
    const inPlace = new Set([...groupOf.values()].flatMap((grp) => [...grp.inPlace.values()]));
    expect(inPlace.size).toBe(15);
    // No copies after the run: each new value lives in its param's buffer.
    const plan = planMemory(g, { ...SOFTWARE, storageBuffers });
    for (const o of g.outputs) {
      const p = g.params().find((n) => `${ASSIGN_PREFIX}${n.attrs.name}` === o.name);
      expect(plan.valueRegion.get(o.id), o.name).toEqual(plan.valueRegion.get(p!.id));
    }
  }
  // The limit decides the size of each group: more bindings, fewer kernels.
  const count = (storageBuffers: number) =>
    planKernels(g, { ...SOFTWARE, storageBuffers }).nodes.filter((p) => typeof p !== 'string').length;
  expect(count(16)).toBeLessThan(count(8));
  // Without groups: one kernel per fused node.
  const own = planKernels(g, SOFTWARE, { groups: false }).nodes.filter((p) => typeof p !== 'string');
  expect(own.length).toBe(maps);
});

it('a param read after the group, or through a view, is not written in place; a broadcast read of a member splits the run', () => {
  const b = new GraphBuilder();
  const p = b.param('p', 'f32', [4], 'trainable');
  const q = b.param('q', 'f32', [4], 'trainable');
  const x = b.input('x', 'f32', [4]);
  const p2 = b.add(b.exp(p), x);
  const q2 = b.add(b.exp(q), x);
  const view = b.exp(b.exp(b.reshape(q, [2, 2])));
  // Read after the group's last member: the sum of the old p.
  const late = b.sum(b.add(b.mul(p, x), x), [0]);
  const g = fuseElementwise(
    b.build({
      [`${ASSIGN_PREFIX}p`]: p2,
      [`${ASSIGN_PREFIX}q`]: q2,
      late,
      view,
    }),
  );
  const { groupOf } = planKernels(g, { ...SOFTWARE, storageBuffers: 16 });
  expect(groupOf.size).toBeGreaterThan(0);
  for (const grp of groupOf.values()) expect([...grp.inPlace.values()]).toEqual([]);

  // y = exp(exp(a)) [4,4]; z = y * s where s [4] reads y... no: z reads a member [4] broadcast.
  const c = new GraphBuilder();
  const a = c.input('a', 'f32', [4]);
  const y = c.add(c.exp(a), c.exp(c.exp(a)));
  const z = c.add(c.exp(c.broadcastTo(c.reshape(y, [4, 1]), [4, 4])), c.const(1));
  const h = fuseElementwise(c.build({ z }));
  const planned = planKernels(h, { ...SOFTWARE, storageBuffers: 16 });
  // The broadcast_to (its own kernel) between them ends the run: nothing reads a member
  // at another element from a register.
  for (const grp of planned.groupOf.values())
    for (const m of grp.members)
      for (const i of m.inputs)
        if (grp.members.some((o) => o.id === i))
          expect(sameShape(h.node(i).type.shape, m.type.shape)).toBe(true);
});

it(`a run passes over up to ${LOOK_PAST} kernels that read none of its values, and ends at one that does`, () => {
  const plan = (reads: boolean) => {
    const b = new GraphBuilder();
    const x = b.input('x', 'f32', [4, 4]);
    const a = b.exp(x);
    const m = b.matmul(reads ? a : x, x);
    const c = b.exp(b.input('w', 'f32', [4, 4]));
    const g = b.build({ a, m, c });
    return { g, groupOf: planKernels(g, { ...SOFTWARE, storageBuffers: 16 }).groupOf, m };
  };
  const apart = plan(false);
  expect(new Set(apart.groupOf.values()).size).toBe(1);
  // The matmul runs before the group's dispatch: the group sits at its last member.
  const [grp] = apart.groupOf.values();
  expect(grp.members.map((n) => n.op)).toEqual(['exp', 'exp']);
  expect(plan(true).groupOf.size).toBe(0);
});

it(`a long chain of elementwise nodes is cut into groups of at most ${MAX_MEMBERS} members`, () => {
  const b = new GraphBuilder();
  let v = b.input('x', 'f32', [8]);
  // Unfused: each node a member; the chain's values are registers, two bindings in all.
  for (let i = 0; i < 150; i++) v = b.scale(v, 1.01);
  const { groupOf } = planKernels(b.build({ y: v }), { ...SOFTWARE, storageBuffers: 16 });
  const groups = new Set(groupOf.values());
  expect(groups.size).toBeGreaterThanOrEqual(Math.ceil(150 / MAX_MEMBERS));
  for (const g of groups) expect(g.members.length).toBeLessThanOrEqual(MAX_MEMBERS);
});

/** Reductions side by side: whole tensors (the clip norm's sums of squares, means, maxima) and rows. */
function reductionsGraph(): Graph {
  const b = new GraphBuilder();
  const outputs: Record<string, Value> = {};
  [[5], [33, 3], [100], [5000], [7, 9], [3, 2, 1500]].forEach((shape, k) => {
    const g = b.input(`g${k}`, 'f32', shape);
    const all = shape.map((_, i) => i);
    outputs[`sq${k}`] = b.sum(b.mul(g, g), all);
    outputs[`mean${k}`] = b.mean(g, all);
    // Rows: a norm over the last axis (DoRA's weight norms, rmsnorm's backward sums).
    if (shape.length > 1) outputs[`rows${k}`] = b.sum(b.mul(g, b.exp(g)), [shape.length - 1]);
  });
  const h = b.input('h', 'f32', [6, 4]);
  outputs.max0 = b.max(h, [0, 1]);
  outputs.max1 = b.max(b.exp(h), [0, 1]);
  return fuseElementwise(b.build(outputs));
}

it('reductions next to each other share kernels, sums apart from maxima, within the binding limit', () => {
  const g = reductionsGraph();
  const own = planKernels(g, SOFTWARE, { groups: false }).nodes.filter((p) => typeof p !== 'string').length;
  const { nodes, groupOf } = planKernels(g, { ...SOFTWARE, storageBuffers: 8 });
  const kernels = nodes.filter((p) => typeof p !== 'string');
  expect(own).toBe(17);
  expect(kernels.length).toBeLessThanOrEqual(7);
  for (const k of kernels) for (const s of k.steps) expect(s.bindings.length).toBeLessThanOrEqual(8);
  for (const grp of new Set(groupOf.values())) {
    const maxima = grp.members.filter(
      (m) => m.op === 'max' || (m.attrs as { reduce?: string }).reduce === 'max',
    );
    expect([0, grp.members.length]).toContain(maxima.length);
  }
});

await gpuSuite('kernel groups on WebGPU', ({ backend }) => {
  it("grouped reductions give their own kernels' values (to rounding: the compiler may contract differently) and the CPU interpreter's", async () => {
    const g = reductionsGraph();
    const feeds = randomFeeds(g, 5);
    const names = g.outputs.map((o) => o.name);
    const w = new MapWeightStore();
    const [grouped, own] = await Promise.all([
      backend.compile(g, w),
      backend.compile(g, w, { groups: false }),
    ]);
    try {
      expect((grouped as WebGpuExecutable).stats.dispatches).toBeLessThan(
        (own as WebGpuExecutable).stats.dispatches,
      );
      const [a, b] = await Promise.all([
        grouped.run({ feeds, outputs: names }),
        own.run({ feeds, outputs: names }),
      ]);
      for (const n of names) expectClose(a[n], b[n], 1e-6, n);
    } finally {
      grouped.dispose();
      own.dispose();
    }
    await expectRunsAsCpu(backend, g, w, { feeds: () => feeds, outputs: names, runs: 1, tol: 1e-4 });
  });

  it('the AdamW tail over 3 steps: params and states as the CPU backend computes them', async () => {
    const g = adamGraph([[8], [6, 4], [3], [5, 5], [130]]);
    const rng = new Rng(3);
    const weights = new MapWeightStore();
    for (const p of g.params())
      weights.set(String(p.attrs.name), randTensor(rng, 'f32', p.type.shape, { lo: 0, hi: 1 }));
    await expectRunsAsCpu(backend, g, weights, {
      feeds: (k) => randomFeeds(g, k),
      outputs: [],
      tol: 1e-5,
      check: (exe) =>
        expect((exe as WebGpuExecutable).stats.dispatches).toBeLessThan(
          g.nodes.filter((n) => n.op === 'fused_map').length / 2,
        ),
    });
  });

  it('random elementwise graphs with assigns: 3 runs as the CPU backend, grouped and written in place', async () => {
    let grouped = 0;
    let inPlace = 0;
    await fc.assert(
      fc.asyncProperty(arbElementwise, async ({ graph: g, seed }) => {
        const planned = planKernels(g, { ...SOFTWARE, storageBuffers: 16 });
        if (planned.groupOf.size) grouped++;
        for (const grp of new Set(planned.groupOf.values())) inPlace += grp.inPlace.size;
        const names = g.outputs.filter((o) => !o.name.startsWith(ASSIGN_PREFIX)).map((o) => o.name);
        await expectRunsAsCpu(backend, g, randomWeights(g, seed), {
          feeds: () => randomFeeds(g, seed),
          outputs: names,
          tol: 1e-4,
        });
      }),
      { numRuns: 25 },
    );
    expect(grouped).toBeGreaterThan(10);
    expect(inPlace).toBeGreaterThan(5);
  });

  it('the bundled LoRA train step: every param and state updated in place, no copies after the run', async () => {
    const run = prepareRun(
      loadModel('examples/models/tiny-llama'),
      loadRecipe('examples/recipes/lora-tiny.json'),
      { batch: 2, seq: 8 },
      { seed: 0 },
    );
    const plan = planMemory(run.step, { ...SOFTWARE, storageBuffers: 16 });
    const assigns = run.step.outputs.filter((o) => o.name.startsWith(ASSIGN_PREFIX));
    const byName = new Map(run.step.params().map((p) => [`${ASSIGN_PREFIX}${p.attrs.name}`, p.id]));
    const inPlace = assigns.filter(
      (o) => plan.valueRegion.get(o.id)?.buffer === plan.valueRegion.get(byName.get(o.name)!)?.buffer,
    );
    // The step counter is a scalar the schedule updates too; every tensor's update is in place.
    expect(inPlace.length).toBeGreaterThanOrEqual(assigns.length - 1);
    expect(backend).toBeDefined();
  });
});
