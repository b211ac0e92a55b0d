// Cases for the ops autodiff emits (scatter_add, one_hot, broadcast_to) and the graph leaves.
import fc from 'fast-check';
import { GraphBuilder } from '../../src/ir/builder.ts';
import { MapWeightStore } from '../../src/ir/weights.ts';
import { Rng } from '../../src/util/rng.ts';
import {
  at,
  broadcastFrom,
  build,
  type Case,
  type OpCase,
  OUT,
  opCase,
  pick,
  randTensor,
  readBroadcast,
  seedArb,
  shapeArb,
} from './case.ts';

const norm = (a: number, r: number) => (a < 0 ? a + r : a);

/** A graph whose output is one source node (input, param or const). */
function sourceCase(seed: number, shape: number[], op: 'input' | 'param' | 'const'): Case {
  const rng = new Rng(seed);
  const t = randTensor(rng, pick(rng, ['f32', 'i32', 'u32'] as const), shape, { lo: 0, hi: 9 });
  const b = new GraphBuilder();
  const feeds: Record<string, typeof t> = {};
  const weights = new MapWeightStore();
  const fill = rng.next() < 0.3;
  const y = b.withScope('model.case', () => {
    if (op === 'input') {
      feeds.x = t;
      return b.input('x', t.dtype, shape);
    }
    if (op === 'param') {
      weights.set('model.case.w', t);
      return b.param('model.case.w', t.dtype, shape);
    }
    return b.const(fill ? (t.data[0] ?? 7) : Array.from(t.data), shape, t.dtype);
  });
  const graph = b.build({ [OUT]: y });
  return { graph, feeds, weights, inputs: [t], attrs: graph.node(y.id).attrs, out: y.type };
}

function source(op: 'input' | 'param' | 'const'): OpCase {
  return {
    arb: fc
      .record({ seed: seedArb, shape: shapeArb(0, 3) })
      .map(({ seed, shape }) => sourceCase(seed, shape, op)),
    reference: (c) => {
      const v = c.attrs.value;
      if (op === 'const' && typeof v === 'number') return build(c.out.dtype, c.out.shape, () => v);
      return build(c.out.dtype, c.out.shape, (i) => at(c.inputs[0], ...i));
    },
  };
}

export const gradCases = {
  input: source('input'),
  param: source('param'),
  const: source('const'),
  scatter_add: {
    arb: fc
      .record({
        seed: seedArb,
        shape: shapeArb(1, 3),
        idxShape: shapeArb(0, 2),
        size: fc.integer({ min: 1, max: 4 }),
      })
      .map(({ seed, shape, idxShape, size }) => {
        const rng = new Rng(seed);
        const ax = Math.floor(rng.next() * shape.length);
        // Few slots, so repeated indices (which must accumulate) are common.
        const idx = randTensor(rng, pick(rng, ['i32', 'u32'] as const), idxShape, { lo: 0, hi: size - 1 });
        const upd = randTensor(rng, 'f32', [...shape.slice(0, ax), ...idxShape, ...shape.slice(ax + 1)]);
        const axis = rng.next() < 0.5 ? ax : ax - shape.length;
        return opCase('scatter_add', [upd, idx], { axis, size });
      }),
    reference: (c) => {
      const [upd, idx] = c.inputs;
      const ax = norm(c.attrs.axis as number, c.out.shape.length);
      return build('f32', c.out.shape, (i) => {
        let s = 0;
        for (let j = 0; j < idx.data.length; j++) {
          if (idx.data[j] !== i[ax]) continue;
          const jIdx = idx.shape.map(
            (_, a) => Math.floor(j / idx.shape.slice(a + 1).reduce((p, d) => p * d, 1)) % idx.shape[a],
          );
          s += at(upd, ...i.slice(0, ax), ...jIdx, ...i.slice(ax + 1));
        }
        return s;
      });
    },
  },
  one_hot: {
    arb: fc
      .record({ seed: seedArb, shape: shapeArb(0, 2), depth: fc.integer({ min: 1, max: 5 }) })
      .map(({ seed, shape, depth }) => {
        const rng = new Rng(seed);
        const ids = randTensor(rng, 'i32', shape, { lo: -2, hi: depth + 1 }); // some out of range
        return opCase('one_hot', [ids], { depth, dtype: pick(rng, ['f32', 'f16']) });
      }),
    reference: (c) =>
      build(c.out.dtype, c.out.shape, (i) => Number(at(c.inputs[0], ...i.slice(0, -1)) === i[i.length - 1])),
  },
  broadcast_to: {
    arb: fc.record({ seed: seedArb, shape: shapeArb(0, 4) }).map(({ seed, shape }) => {
      const rng = new Rng(seed);
      return opCase(
        'broadcast_to',
        [randTensor(rng, pick(rng, ['f32', 'i32'] as const), broadcastFrom(rng, shape))],
        { shape },
      );
    }),
    reference: (c) => build(c.out.dtype, c.out.shape, (i) => readBroadcast(c.inputs[0], i)),
  },
  stop_gradient: {
    arb: fc.record({ seed: seedArb, shape: shapeArb(0, 4) }).map(({ seed, shape }) => {
      const rng = new Rng(seed);
      return opCase('stop_gradient', [randTensor(rng, pick(rng, ['f32', 'i32'] as const), shape)], {});
    }),
    reference: (c) => build(c.out.dtype, c.out.shape, (i) => at(c.inputs[0], ...i)),
  },
} satisfies Record<string, OpCase>;
