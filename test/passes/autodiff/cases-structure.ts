// Gradient-check problems for layout ops, matmul/linear, gathers and scatters, rope
// and attention (GQA, causal with S != T, additive masks with -inf rows).
import type { Value } from '../../../src/ir/builder.ts';
import { broadcastFrom, dim, type GradCase, shape } from './cases-basic.ts';
import type { Maker } from './gradcheck.ts';

function gatherCase(m: Maker): Value {
  const s = shape(m, 1, 3);
  const ax = m.int(0, s.length - 1);
  const idx = m.ints(shape(m, 0, 2, 3), 0, s[ax] - 1, m.pick(['i32', 'u32'] as const));
  return m.b.gather(m.v(s), idx, m.rng.next() < 0.5 ? ax : ax - s.length);
}

function attentionCase(m: Maker): Value {
  const [nb, hkv, group, s, t, d, dv] = [
    dim(m, 2),
    dim(m, 2),
    dim(m, 3),
    dim(m, 4),
    dim(m, 4),
    2 * dim(m, 2),
    dim(m, 3),
  ];
  const hq = hkv * group;
  const q = m.v([nb, hq, s, d]);
  const k = m.v([nb, hkv, t, d]);
  const v = m.v([nb, hkv, t, dv]);
  const full = [nb, hq, s, t];
  let mask: Value | undefined;
  const kind = m.pick(['none', 'var', 'inf'] as const);
  if (kind === 'var') mask = m.v(broadcastFrom(m, full));
  if (kind === 'inf') {
    // An input mask with -inf entries; row 0 of every (b, h) fully masked now and then.
    const ms = broadcastFrom(m, full);
    const n = ms.reduce((a, x) => a * x, 1);
    const rowLen = ms.length ? ms[ms.length - 1] : 1;
    const killRow0 = m.rng.next() < 0.5;
    const vals = Array.from({ length: n }, (_, i) =>
      (killRow0 && i < rowLen) || m.rng.next() < 0.3 ? Number.NEGATIVE_INFINITY : m.rng.uniform(-1, 1),
    );
    mask = m.input(ms, vals);
  }
  return m.b.attention(q, k, v, mask, {
    causal: m.rng.next() < 0.6,
    scale: m.rng.next() < 0.5 ? null : m.rng.uniform(0.1, 1),
  });
}

export const structureCases: Record<string, GradCase> = {
  matmul: (m) => {
    const batch = shape(m, 0, 2, 3);
    const [mm, k, n] = [dim(m), dim(m), dim(m)];
    const [ta, tb] = [m.rng.next() < 0.5, m.rng.next() < 0.5];
    let [ba, bb] = [broadcastFrom(m, batch), [...batch]];
    if (m.rng.next() < 0.5) [ba, bb] = [bb, ba];
    const a = m.v([...ba, ...(ta ? [k, mm] : [mm, k])]);
    const b = m.v([...bb, ...(tb ? [n, k] : [k, n])]);
    return m.b.matmul(a, b, { transpose_a: ta, transpose_b: tb });
  },
  linear: (m) => {
    const [inF, outF] = [dim(m), dim(m)];
    const x = m.v([...shape(m, 0, 2), inF]);
    return m.b.linear(x, m.v([outF, inF]), m.rng.next() < 0.5 ? m.v([outF]) : undefined);
  },
  reshape: (m) => {
    const s = shape(m, 0, 3);
    const n = s.reduce((a, x) => a * x, 1);
    const target = m.pick([[n], [1, n, 1], [-1], [...s].reverse()]);
    return m.b.reshape(m.v(s), target);
  },
  transpose: (m) => {
    const s = shape(m, 1, 4);
    return m.b.transpose(m.v(s), m.int(-s.length, s.length - 1), m.int(0, s.length - 1));
  },
  permute: (m) => {
    const s = shape(m, 1, 4);
    const perm = s.map((_, i) => i).sort(() => m.rng.next() - 0.5);
    return m.b.permute(m.v(s), perm);
  },
  slice: (m) => {
    const s = shape(m, 1, 3, 5);
    const ax = m.int(0, s.length - 1);
    const start = m.int(0, s[ax]);
    return m.b.slice(m.v(s), m.rng.next() < 0.5 ? ax : ax - s.length, start, m.int(start, s[ax]));
  },
  concat: (m) => {
    const s = shape(m, 1, 3);
    const ax = m.int(0, s.length - 1);
    const parts = Array.from({ length: m.int(1, 3) }, () => {
      const p = [...s];
      p[ax] = dim(m, 3);
      return m.v(p);
    });
    return m.b.concat(parts, m.rng.next() < 0.5 ? ax : ax - s.length);
  },
  roll: (m) => {
    const s = shape(m, 1, 3, 5);
    return m.b.roll(m.v(s), m.int(-7, 7), m.int(-s.length, s.length - 1));
  },
  gather: gatherCase,
  embedding: (m) => {
    const [vocab, d] = [dim(m, 5), dim(m, 3)];
    return m.b.embedding(m.v([vocab, d]), m.ints(shape(m, 0, 2, 4), 0, vocab - 1));
  },
  scatter_add: (m) => {
    const s = shape(m, 0, 2, 3);
    const idxShape = shape(m, 0, 2, 3);
    const ax = m.int(0, s.length);
    const size = dim(m, 4);
    const upd = m.v([...s.slice(0, ax), ...idxShape, ...s.slice(ax)]);
    return m.b.scatterAdd(upd, m.ints(idxShape, 0, size - 1), ax, size);
  },
  // one_hot has no derivative: it only masks a variable here.
  one_hot: (m) => {
    const depth = dim(m, 4);
    const ids = m.ints(shape(m, 0, 2), -1, depth);
    const hot = m.b.oneHot(ids, depth);
    return m.b.mul(m.v(hot.type.shape), hot);
  },
  // attention_softmax has no derivative (the attention backward's recompute): its value
  // only scales a variable here.
  attention_softmax: (m) => {
    const x = m.input([dim(m, 2), dim(m, 4), dim(m, 4)]);
    const p = m.b.emit('attention_softmax', [x], { causal: m.rng.next() < 0.5 });
    return m.b.mul(m.v(p.type.shape), p);
  },
  // cross_entropy_grad has no derivative (it is cross_entropy's): its value only scales a
  // variable here.
  cross_entropy_grad: (m) => {
    const [n, v] = [dim(m, 3), dim(m, 4)];
    const logits = m.input([n, v]);
    const g = m.b.emit('cross_entropy_grad', [logits, m.ints([n], -1, v - 1), m.input([])], {
      ignore_index: -1,
      reduction: 'mean',
    });
    return m.b.mul(m.v(g.type.shape), g);
  },
  broadcast_to: (m) => {
    const full = shape(m);
    return m.b.broadcastTo(m.v(broadcastFrom(m, full)), full);
  },
  rope: (m) => {
    const [nb, h, s, d] = [dim(m, 2), dim(m, 3), dim(m, 4), 2 * dim(m, 3)];
    const pos = m.rng.next() < 0.5 ? m.ints([s], 0, 50) : m.ints([nb, s], 0, 50);
    const layoutIn = m.pick(['bhsd', 'bshd'] as const);
    return m.b.rope(m.v(layoutIn === 'bshd' ? [nb, s, h, d] : [nb, h, s, d]), pos, {
      theta: m.pick([10000, 500]),
      scaling_factor: m.pick([1, 2.5]),
      inverse: m.rng.next() < 0.3,
      layout_in: layoutIn,
      layout_out: m.pick(['bhsd', 'bshd'] as const),
    });
  },
  attention: attentionCase,
};
