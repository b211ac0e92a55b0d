// Cases for data movement. Each reference maps an output index to the input index it reads.
import fc from 'fast-check';
import type { DType } from '../../src/ir/dtype.ts';
import { Rng } from '../../src/util/rng.ts';
import { at, build, type OpCase, opCase, pick, randTensor, seedArb, shapeArb } from './case.ts';

const norm = (a: number, r: number) => (a < 0 ? a + r : a);
const anyDtype: DType[] = ['f32', 'i32', 'u32'];

function shuffled<T>(rng: Rng, xs: readonly T[]): T[] {
  const out = [...xs];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rng.next() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

const randAxis = (rng: Rng, rank: number) => Math.floor(rng.uniform(-rank, rank));

/** Cases over one random tensor of rank >= minRank with attrs drawn from the seed. */
function oneInput(
  op: string,
  minRank: number,
  attrs: (rng: Rng, shape: number[]) => Record<string, unknown>,
) {
  return fc.record({ seed: seedArb, shape: shapeArb(minRank, 4) }).map(({ seed, shape }) => {
    const rng = new Rng(seed);
    const x = randTensor(rng, pick(rng, anyDtype), shape, { lo: 0, hi: 9 });
    return opCase(op, [x], attrs(rng, shape) as never);
  });
}

function indices(rng: Rng, shape: number[], n: number) {
  return randTensor(rng, pick(rng, ['i32', 'u32'] as const), shape, { lo: 0, hi: n - 1 });
}

export const layoutCases = {
  reshape: {
    arb: oneInput('reshape', 0, (rng, shape) => {
      // Regroup the (shuffled) dims into a new shape of the same size; maybe one -1.
      const dims = shuffled(rng, shape);
      const target: number[] = [];
      for (const d of dims) {
        if (target.length && rng.next() < 0.4) target[target.length - 1] *= d;
        else target.push(d);
      }
      if (rng.next() < 0.3) target.push(1);
      if (target.length && rng.next() < 0.4) target[Math.floor(rng.next() * target.length)] = -1;
      return { shape: target };
    }),
    reference: (c) =>
      build(
        c.out.dtype,
        c.out.shape,
        (i) => c.inputs[0].data[i.reduce((f, v, a) => f * c.out.shape[a] + v, 0)],
      ),
  },
  transpose: {
    arb: oneInput('transpose', 1, (rng, s) => ({
      dim0: randAxis(rng, s.length),
      dim1: randAxis(rng, s.length),
    })),
    reference: (c) => {
      const r = c.out.shape.length;
      const [p, q] = [norm(c.attrs.dim0 as number, r), norm(c.attrs.dim1 as number, r)];
      return build(c.out.dtype, c.out.shape, (i) => {
        const j = [...i];
        [j[p], j[q]] = [i[q], i[p]];
        return at(c.inputs[0], ...j);
      });
    },
  },
  permute: {
    arb: oneInput('permute', 0, (rng, s) => ({
      perm: shuffled(
        rng,
        s.map((_, a) => a),
      ),
    })),
    reference: (c) => {
      const perm = c.attrs.perm as number[];
      return build(c.out.dtype, c.out.shape, (i) => {
        const j = new Array<number>(i.length);
        perm.forEach((p, k) => {
          j[p] = i[k];
        });
        return at(c.inputs[0], ...j);
      });
    },
  },
  slice: {
    arb: oneInput('slice', 1, (rng, s) => {
      const axis = randAxis(rng, s.length);
      const n = s[norm(axis, s.length)];
      const a = Math.floor(rng.uniform(0, n + 1));
      const b = Math.floor(rng.uniform(0, n + 1));
      return { axis, start: Math.min(a, b), end: Math.max(a, b) };
    }),
    reference: (c) => {
      const ax = norm(c.attrs.axis as number, c.out.shape.length);
      return build(c.out.dtype, c.out.shape, (i) =>
        at(c.inputs[0], ...i.map((v, a) => (a === ax ? v + (c.attrs.start as number) : v))),
      );
    },
  },
  concat: {
    arb: fc
      .record({ seed: seedArb, shape: shapeArb(1, 4), count: fc.integer({ min: 1, max: 3 }) })
      .map(({ seed, shape, count }) => {
        const rng = new Rng(seed);
        const axis = randAxis(rng, shape.length);
        const dtype = pick(rng, anyDtype);
        const parts = Array.from({ length: count }, () => {
          const s = [...shape];
          s[norm(axis, s.length)] = Math.floor(rng.uniform(1, 4));
          return randTensor(rng, dtype, s, { lo: 0, hi: 9 });
        });
        return opCase('concat', parts, { axis });
      }),
    reference: (c) => {
      const ax = norm(c.attrs.axis as number, c.out.shape.length);
      return build(c.out.dtype, c.out.shape, (i) => {
        let k = i[ax];
        for (const t of c.inputs) {
          if (k < t.shape[ax]) return at(t, ...i.map((v, a) => (a === ax ? k : v)));
          k -= t.shape[ax];
        }
        throw new Error('unreachable: index past the last part');
      });
    },
  },
  roll: {
    arb: oneInput('roll', 1, (rng, s) => ({
      shift: Math.floor(rng.uniform(-7, 8)),
      axis: randAxis(rng, s.length),
    })),
    reference: (c) => {
      const ax = norm(c.attrs.axis as number, c.out.shape.length);
      const n = c.out.shape[ax];
      const shift = c.attrs.shift as number;
      // out[j] = in[j - shift] (mod n)
      return build(c.out.dtype, c.out.shape, (i) =>
        at(c.inputs[0], ...i.map((v, a) => (a === ax ? (((v - shift) % n) + n) % n : v))),
      );
    },
  },
  gather: {
    arb: fc
      .record({ seed: seedArb, shape: shapeArb(1, 3), idxShape: shapeArb(0, 2) })
      .map(({ seed, shape, idxShape }) => {
        const rng = new Rng(seed);
        const axis = randAxis(rng, shape.length);
        const x = randTensor(rng, pick(rng, anyDtype), shape, { lo: 0, hi: 9 });
        return opCase('gather', [x, indices(rng, idxShape, shape[norm(axis, shape.length)])], { axis });
      }),
    reference: (c) => {
      const [x, idx] = c.inputs;
      const ax = norm(c.attrs.axis as number, x.shape.length);
      const m = idx.shape.length;
      return build(c.out.dtype, c.out.shape, (i) => {
        const k = at(idx, ...i.slice(ax, ax + m));
        return at(x, ...i.slice(0, ax), k, ...i.slice(ax + m));
      });
    },
  },
  embedding: {
    arb: fc
      .record({
        seed: seedArb,
        vocab: fc.integer({ min: 1, max: 9 }),
        d: fc.integer({ min: 1, max: 5 }),
        idsShape: shapeArb(1, 2),
      })
      .map(({ seed, vocab, d, idsShape }) => {
        const rng = new Rng(seed);
        const table = { t: randTensor(rng, 'f32', [vocab, d]), as: 'param' as const };
        return opCase('embedding', [table, indices(rng, idsShape, vocab)]);
      }),
    reference: (c) => {
      const [table, ids] = c.inputs;
      return build('f32', c.out.shape, (i) => at(table, at(ids, ...i.slice(0, -1)), i[i.length - 1]));
    },
  },
} satisfies Record<string, OpCase>;
