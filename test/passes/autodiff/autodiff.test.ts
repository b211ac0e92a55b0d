// The pass itself: which params get gradients, that frozen weights and frozen-only
// subgraphs get no backward node, scopes, errors, stop_gradient and registerVjp.
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { registerCpuKernel, runGraph } from '../../../src/backends/cpu/index.ts';
import { GraphBuilder, type Value } from '../../../src/ir/builder.ts';
import type { Graph, Node } from '../../../src/ir/graph.ts';
import { defineOp, registerOp } from '../../../src/ir/ops/index.ts';
import { verify } from '../../../src/ir/verify.ts';
import { MapWeightStore } from '../../../src/ir/weights.ts';
import {
  AutodiffError,
  autodiff,
  autodiffPass,
  GRAD_PREFIX,
  registerVjp,
  stopGradient,
  vjp,
} from '../../../src/passes/autodiff/index.ts';
import { hasPass, registerPass, runPipeline } from '../../../src/passes/index.ts';
import { Rng } from '../../../src/util/rng.ts';
import { checkGradients, makeProblem, type Problem } from './gradcheck.ts';

/** x -> base linear (frozen W) + LoRA (trainable A, B), plus a frozen-only MLP branch; loss = mean of squares. */
function loraGraph(): { g: Graph; weights: MapWeightStore; feeds: Problem['feeds'] } {
  const rng = new Rng(7);
  const b = new GraphBuilder();
  const weights = new MapWeightStore();
  const param = (name: string, shape: number[], role: 'frozen' | 'trainable'): Value => {
    const data = Float64Array.from({ length: shape.reduce((a, x) => a * x, 1) }, () => rng.uniform(-1, 1));
    weights.set(name, { dtype: 'f32', shape, data });
    return b.param(name, 'f32', shape, role);
  };
  const x = b.input('x', 'f32', [2, 3, 4]);
  const y = b.withScope('model.q_proj', () => {
    const base = b.withScope('base_layer', () =>
      b.linear(x, param('model.q_proj.base_layer.weight', [5, 4], 'frozen')),
    );
    const a = b.withScope('lora_A', () =>
      b.linear(x, param('model.q_proj.lora_A.weight', [2, 4], 'trainable')),
    );
    const l = b.withScope('lora_B', () =>
      b.linear(a, param('model.q_proj.lora_B.weight', [5, 2], 'trainable')),
    );
    return b.add(base, b.scale(l, 2));
  });
  const side = b.withScope('model.mlp', () =>
    b.sum(b.silu(b.linear(x, param('model.mlp.up_proj.weight', [6, 4], 'frozen'))), [0, 1, 2]),
  );
  const loss = b.add(b.mean(b.mul(y, y), [0, 1, 2]), side);
  const feeds = {
    x: {
      dtype: 'f32' as const,
      shape: [2, 3, 4],
      data: Float64Array.from({ length: 24 }, () => rng.normal()),
    },
  };
  return { g: b.build({ y, loss }), weights, feeds };
}

const backward = (g: Graph, ad: Graph): Node[] => ad.nodes.filter((n) => !g.has(n.id));

describe('autodiff', () => {
  it('gives gradients only for trainable params; frozen weights get no backward node', () => {
    const { g } = loraGraph();
    const ad = autodiff(g, { loss: 'loss' });
    verify(ad);
    expect(ad.outputs.map((o) => o.name)).toEqual([
      'y',
      'loss',
      `${GRAD_PREFIX}model.q_proj.lora_A.weight`,
      `${GRAD_PREFIX}model.q_proj.lora_B.weight`,
    ]);
    const bw = backward(g, ad);
    expect(bw.length).toBeGreaterThan(0);
    // No gradient buffer shaped like a frozen weight, nothing in the frozen base layer or frozen MLP.
    expect(bw.filter((n) => n.scope.includes('base_layer') || n.scope.startsWith('model.mlp'))).toEqual([]);
    // x is an input, so no backward node even reads a frozen weight (no dx through the base layer).
    const frozen = g.params().filter((p) => p.attrs.role === 'frozen');
    expect(frozen.length).toBe(2);
    expect(bw.filter((n) => frozen.some((p) => n.inputs.includes(p.id)))).toEqual([]);
    // The forward nodes are kept as they were, ids included.
    expect(ad.nodes.slice(0, g.nodes.length)).toEqual(g.nodes);
  });

  it('runs as the pass named autodiff in a pipeline', () => {
    const { g } = loraGraph();
    if (!hasPass('autodiff')) registerPass(autodiffPass);
    const r = runPipeline(g, [{ name: 'autodiff', options: { extraWrt: ['model.mlp.up_proj.weight'] } }], {
      log: () => {},
    });
    expect(r.graph.outputs.map((o) => o.name)).toEqual([
      'y',
      'loss',
      `${GRAD_PREFIX}model.q_proj.lora_A.weight`,
      `${GRAD_PREFIX}model.q_proj.lora_B.weight`,
      `${GRAD_PREFIX}model.mlp.up_proj.weight`,
    ]);
  });

  it('tags backward nodes with the forward node scope', () => {
    const { g } = loraGraph();
    const bw = backward(g, autodiff(g, { loss: 'loss' }));
    const scopes = new Set(bw.map((n) => n.scope));
    expect(scopes).toContain('model.q_proj.lora_A');
    expect(scopes).toContain('model.q_proj.lora_B');
    // lora_A's weight gradient is a matmul in lora_A's scope.
    expect(bw.some((n) => n.op === 'matmul' && n.scope === 'model.q_proj.lora_A')).toBe(true);
  });

  it('LoRA gradients match finite differences', () => {
    const { g, weights, feeds } = loraGraph();
    checkGradients({ graph: g, weights, feeds, out: 'loss' }, 3);
  });

  it('emits no backward node at all when nothing is trainable', () => {
    const { g } = loraGraph();
    const ad = autodiff(g, { loss: 'loss', wrt: () => false });
    expect(ad.nodes.length).toBe(g.nodes.length);
    expect(ad.outputs.map((o) => o.name)).toEqual(['y', 'loss']);
  });

  it('extraWrt adds a frozen weight (GoRA calibration): dW = sum over rows of (dL/dy)^T x', () => {
    const { g, weights, feeds } = loraGraph();
    const name = 'model.q_proj.base_layer.weight';
    const ad = autodiff(g, { loss: 'loss', wrt: () => false, extraWrt: [name] });
    expect(ad.outputs.map((o) => o.name)).toEqual(['y', 'loss', GRAD_PREFIX + name]);
    const r = runGraph(ad, feeds, weights, { precision: 'f64' });
    // loss = mean(y^2) + ...: dL/dy = 2 y / 30, dW[o, i] = sum_r dy[r, o] x[r, i].
    const y = r.y.data;
    const x = feeds.x.data;
    const dW = r[GRAD_PREFIX + name].data;
    for (let o = 0; o < 5; o++) {
      for (let i = 0; i < 4; i++) {
        let s = 0;
        for (let row = 0; row < 6; row++) s += ((2 * y[row * 5 + o]) / 30) * x[row * 4 + i];
        expect(dW[o * 4 + i]).toBeCloseTo(s, 10);
      }
    }
  });

  it('wrt selects params by predicate', () => {
    const { g } = loraGraph();
    const ad = autodiff(g, { loss: 'loss', wrt: (p) => String(p.attrs.name).includes('lora_B') });
    expect(ad.outputs.map((o) => o.name)).toEqual(['y', 'loss', `${GRAD_PREFIX}model.q_proj.lora_B.weight`]);
    // lora_A is not wanted: no backward node in its scope.
    expect(backward(g, ad).filter((n) => n.scope === 'model.q_proj.lora_A')).toEqual([]);
  });

  it('a trainable param that does not reach the loss gets a zero gradient', () => {
    const b = new GraphBuilder();
    const p = b.param('p', 'f32', [2], 'trainable');
    const q = b.param('q', 'f32', [3], 'trainable');
    const g = b.build({ loss: b.sum(b.mul(p, p), [0]), other: b.neg(q) });
    const ad = autodiff(g, { loss: 'loss' });
    const w = new MapWeightStore([
      ['p', { dtype: 'f32', shape: [2], data: Float32Array.of(1, -2) }],
      ['q', { dtype: 'f32', shape: [3], data: Float32Array.of(1, 2, 3) }],
    ]);
    const r = runGraph(ad, {}, w, { outputs: ['grad:p', 'grad:q'] });
    expect(Array.from(r['grad:p'].data)).toEqual([2, -4]);
    expect(Array.from(r['grad:q'].data)).toEqual([0, 0, 0]);
  });

  it('accumulates the cotangent of a value with several users', () => {
    // out = x*x + exp(x) + x: three users of x (one of them twice).
    const problem = makeProblem(11, (m) => {
      const x = m.v([3, 2]);
      return m.b.add(m.b.add(m.b.mul(x, x), m.b.exp(x)), x);
    });
    checkGradients(problem, 11);
  });

  it('rejects a loss that is not a float scalar, unknown extraWrt names and taken grad outputs', () => {
    const b = new GraphBuilder();
    const p = b.param('p', 'f32', [2], 'trainable');
    const y = b.mul(p, p);
    const g = b.build({ y, loss: b.sum(y, [0]), [`${GRAD_PREFIX}p`]: y });
    expect(() => autodiff(g, { loss: 'y' })).toThrow(/loss output 'y' must be a float scalar, got f32\[2\]/);
    expect(() => autodiff(g, { loss: 'nope' })).toThrow(/no output 'nope'/);
    expect(() => autodiff(g, { loss: 'loss', wrt: () => false, extraWrt: ['q'] })).toThrow(AutodiffError);
    expect(() => autodiff(g, { loss: 'loss', wrt: () => false, extraWrt: ['q'] })).toThrow(
      /extraWrt names param 'q', which the graph does not have \(params: p\)/,
    );
    expect(() => autodiff(g, { loss: 'loss' })).toThrow(/already has an output 'grad:p'/);
  });

  it('stop_gradient: same value forward, no gradient through it (DoRA detached norm)', () => {
    const b = new GraphBuilder();
    const x = b.param('x', 'f32', [3], 'trainable');
    // loss = sum(x * detach(x)): the gradient is detach(x) = x, not 2x.
    const g = b.build({ loss: b.sum(b.mul(x, stopGradient(b, x)), [0]) });
    const ad = autodiff(g, { loss: 'loss' });
    const w = new MapWeightStore([['x', { dtype: 'f32', shape: [3], data: Float32Array.of(1, -2, 3) }]]);
    const r = runGraph(ad, {}, w);
    expect(Array.from(r.loss.data)).toEqual([14]);
    expect(Array.from(r['grad:x'].data)).toEqual([1, -2, 3]);
    // Only the detached path: nothing flows into the stop_gradient node.
    const sg = g.ofOp('stop_gradient')[0];
    expect(backward(g, ad).some((n) => n.inputs.includes(sg.id) && n.op !== 'mul')).toBe(false);
  });

  it('registerVjp: an op added outside the core is differentiated through its rule', () => {
    registerOp(
      defineOp({
        name: 'test_cube',
        arity: 1,
        attrs: z.strictObject({}),
        infer: ([x]) => x,
        doc: 'x^3 (test op)',
      }),
    );
    registerCpuKernel('test_cube', ([x]) => ({ ...x, data: x.data.map((v) => v * v * v) }));
    registerVjp(
      'test_cube',
      vjp((c) => [c.b.mul(c.cot, c.b.scale(c.b.mul(c.inputs[0], c.inputs[0]), 3))]),
    );
    expect(() =>
      registerVjp(
        'test_cube',
        vjp(() => []),
      ),
    ).toThrow(/already registered/);
    checkGradients(
      makeProblem(5, (m) => m.b.emit('test_cube', [m.v([2, 3])])),
      5,
    );
  });

  it('names the op and scope when an op has no VJP rule', () => {
    registerOp(
      defineOp({ name: 'test_opaque', arity: 1, attrs: z.strictObject({}), infer: ([x]) => x, doc: 'test' }),
    );
    const b = new GraphBuilder();
    const p = b.param('p', 'f32', [2], 'trainable');
    const y = b.withScope('model.block', () => b.emit('test_opaque', [p]));
    const g = b.build({ loss: b.sum(y, [0]) });
    expect(() => autodiff(g, { loss: 'loss' })).toThrow(
      /in model\.block: op 'test_opaque' has no VJP rule.*registerVjp\('test_opaque', rule\)/,
    );
    // Used on frozen values only, the op needs no rule.
    const b2 = new GraphBuilder();
    const frozen = b2.emit('test_opaque', [b2.param('w', 'f32', [2])]);
    const q = b2.param('q', 'f32', [2], 'trainable');
    const g2 = b2.build({ loss: b2.sum(b2.mul(frozen, q), [0]) });
    expect(autodiff(g2, { loss: 'loss' }).outputs.map((o) => o.name)).toEqual(['loss', 'grad:q']);
  });
});
