// fuse-epilogue (issue 21): a matmul or linear whose only reader is an f32 elementwise node
// of its own shape (a fused_map tree, or one op: the bias or residual add, the LoRA branch
// add `base + s * lora`, an activation) becomes one `matmul_map` node: the product is
// mapped through the reader's program in the matmul's store, so the product never goes
// to memory and the map is no dispatch of its own. Runs after fuse-elementwise; the other
// operands of the map must have the output's shape (read at the stored element's own
// index; a broadcast one, e.g. a per-column scale, leaves the pair unfused). The product
// may reach the reader through reshapes (views: the flat index is the same), each read
// only by the next.
//
// `matmul_map` inputs: the product's operands (a, b for matmul; x, w[, bias] for linear),
// then the map's other inputs. attrs: `product` (the matmul or linear and its transposes,
// whether it has a bias), and the map as in fused_map: `steps` over `args` where the map's
// inputs are numbered in the reader's order with the product at `slot`. An empty program
// is the identity (the product itself: a matmul_map made only for its dropout).
//
// `dropout` (fuse-dropout, passes/fuse/dropout.ts): a dropout applied inside the kernel, the
// mask a pure function of (seed, step, flat element index) as the dropout op's: on operand
// `a` or `b` as it is loaded (its index in that operand's buffer) or on the stored value
// (`out`, after the program, at the output's flat index). Its step input, when it has one,
// is the node's last input. `pre` (fuse-operand-map): a one-input elementwise program
// (LoRA's backward `scale(g, s)`) applied to operand a or b as it is loaded.
import { z } from 'zod';
import type { Value } from '../../ir/builder.ts';
import type { Graph, Node, TensorType } from '../../ir/graph.ts';
import { defineOp, getOp, hasOp, registerOp } from '../../ir/ops/index.ts';
import { stepOf } from '../../ir/ops/math.ts';
import { numel } from '../../ir/shape.ts';
import type { PassDef } from '../pass.ts';
import { rewrite } from '../rewrite/engine.ts';
import { FUSABLE, type FusedStep, fusedStepSchema } from './fused-map.ts';

/** Storage buffers an epilogue may add (a, b, bias, output and these stay within 8). */
export const MAX_EPILOGUE_INPUTS = 4;

const productSchema = z.strictObject({
  op: z.enum(['matmul', 'linear']),
  transpose_a: z.boolean(),
  transpose_b: z.boolean(),
  bias: z.boolean(),
});

const dropoutSchema = z.strictObject({
  /** Operand a or b masked as it is loaded, or the stored value. */
  at: z.enum(['a', 'b', 'out']),
  p: z.number().min(0).lt(1),
  seed: z.number().int().nonnegative(),
  /** Whether the node's last input is the dropout's step (an i32/u32 scalar). */
  step: z.boolean(),
});

export type MatmulDropout = z.infer<typeof dropoutSchema>;

/** A one-input elementwise program applied to operand a or b as it is loaded (fuse-operand-map). */
const preSchema = z.strictObject({
  at: z.enum(['a', 'b']),
  steps: z.array(fusedStepSchema).min(1),
});

export type MatmulPre = z.infer<typeof preSchema>;

const attrs = z.strictObject({
  product: productSchema,
  steps: z.array(fusedStepSchema),
  slot: z.number().int().nonnegative(),
  shape: z.array(z.number().int().nonnegative()),
  dropout: dropoutSchema.optional(),
  pre: preSchema.optional(),
});

export type MatmulMapAttrs = z.infer<typeof attrs>;

/** The `product` attrs of a matmul or linear node. */
export function productAttrs(p: Node): MatmulMapAttrs['product'] {
  return {
    op: p.op as 'matmul' | 'linear',
    transpose_a: !!p.attrs.transpose_a,
    transpose_b: !!p.attrs.transpose_b,
    bias: p.op === 'linear' && p.inputs.length > 2,
  };
}

/** How many node inputs the product takes. */
export const productArity = (a: MatmulMapAttrs) => (a.product.op === 'linear' && a.product.bias ? 3 : 2);

/** Where the map's other inputs (the extras) end: before the dropout's step input, if any. */
export const extrasEnd = (a: MatmulMapAttrs, inputs: number) => inputs - (a.dropout?.step ? 1 : 0);

/** The dropout op's attrs (and whether it reads a step) of a matmul_map's dropout. */
export const dropoutAttrs = (d: MatmulDropout) => ({ p: d.p, seed: d.seed });

export const matmulMap = defineOp({
  name: 'matmul_map',
  arity: [2, Number.POSITIVE_INFINITY],
  attrs,
  infer: (inputs: readonly TensorType[], a) => {
    const k = productArity(a);
    const op = getOp(a.product.op);
    const mm = op.infer(
      inputs.slice(0, k),
      op.attrs.parse(
        a.product.op === 'matmul'
          ? { transpose_a: a.product.transpose_a, transpose_b: a.product.transpose_b }
          : {},
      ),
    );
    const extras = inputs.slice(k, extrasEnd(a, inputs.length));
    const d = a.dropout;
    if (d?.step) {
      const s = inputs[inputs.length - 1];
      if (s.shape.length !== 0 || (s.dtype !== 'i32' && s.dtype !== 'u32'))
        throw new Error(`matmul_map's dropout step must be an i32/u32 scalar, got ${s.dtype} [${s.shape}]`);
    }
    if (d && d.at !== 'out' && inputs[d.at === 'a' ? 0 : 1].dtype !== 'f32')
      throw new Error(`matmul_map's dropout on operand ${d.at} needs an f32 operand`);
    const pre = a.pre;
    if (pre) {
      if (inputs[pre.at === 'a' ? 0 : 1].dtype !== 'f32')
        throw new Error(`matmul_map's operand map on ${pre.at} needs an f32 operand`);
      if (d?.at === pre.at) throw new Error(`matmul_map's operand ${pre.at} has both a dropout and a map`);
      pre.steps.forEach((s, j) => {
        for (const i of s.args)
          if (i > j)
            throw new Error(`matmul_map operand map step ${j} (${s.op}) reads arg ${i}: one input only`);
      });
    }
    if (a.steps.length === 0 && extras.length)
      throw new Error('matmul_map without a program (the identity) takes no map inputs');
    if (mm.dtype !== 'f32' || numel(mm.shape) !== numel(a.shape))
      throw new Error(
        `matmul_map's product must be f32 with ${numel(a.shape)} elements, got ${mm.dtype} [${mm.shape}]`,
      );
    for (const t of extras)
      if (t.dtype !== 'f32' || !epilogueRead(t.shape, a.shape))
        throw new Error(
          `matmul_map operands are f32 of its shape [${a.shape}], one per column or one value, got ${t.dtype} [${t.shape}]`,
        );
    const n = extras.length + 1;
    if (a.slot >= n) throw new Error(`matmul_map slot ${a.slot} is not one of its ${n} map inputs`);
    a.steps.forEach((s, j) => {
      for (const i of s.args)
        if (i >= n + j)
          throw new Error(`matmul_map step ${j} (${s.op}) reads arg ${i}, not an input or an earlier step`);
    });
    return { dtype: 'f32', shape: [...a.shape] };
  },
  doc: 'a matmul or linear whose output goes through an elementwise program before it is stored (fuse-epilogue)',
});

if (!hasOp('matmul_map')) registerOp(matmulMap);

/**
 * How an epilogue reads an operand of `shape` for an output of `out`: at the element's own
 * index ('full'), per column ([N] or [1, .., N], N the output's last dimension), one value
 * (numel 1); undefined for any other broadcast.
 */
export function epilogueRead(
  shape: readonly number[],
  out: readonly number[],
): 'full' | 'column' | 'scalar' | undefined {
  if (shape.join() === out.join()) return 'full';
  if (shape.length > out.length) return undefined;
  if (numel(shape) === 1) return 'scalar';
  const last = shape[shape.length - 1];
  if (out.length && last === out[out.length - 1] && numel(shape) === last) return 'column';
  return undefined;
}

const isF32 = (g: Graph, n: Node) =>
  n.type.dtype === 'f32' && n.inputs.every((i) => g.node(i).type.dtype === 'f32');

/** The elementwise program of a reader node: its fused_map steps, or its one op. */
function programOf(n: Node): FusedStep[] | undefined {
  if (n.op === 'fused_map') return (n.attrs as unknown as { steps: FusedStep[] }).steps;
  if (!FUSABLE.has(n.op)) return undefined;
  return [
    stepOf(
      n.op,
      n.inputs.map((_, i) => i),
      n.attrs,
    ),
  ];
}

interface Found {
  readonly product: Node;
  readonly slot: number;
  readonly steps: FusedStep[];
}

function candidates(g: Graph): Map<number, Found> {
  const users = g.users();
  const outputs = new Set(g.outputs.map((o) => o.id));
  const out = new Map<number, Found>();
  const taken = new Set<number>();
  for (const c of g.nodes) {
    const steps = programOf(c);
    if (!steps || !isF32(g, c)) continue;
    // Each input read once (a product read twice would need its slot twice).
    if (new Set(c.inputs).size !== c.inputs.length) continue;
    const readable = (id: number) => epilogueRead(g.node(id).type.shape, c.type.shape) !== undefined;
    if (!c.inputs.every(readable) || c.inputs.length > MAX_EPILOGUE_INPUTS + 1) continue;
    // The product behind input `id`: through reshapes, each read only by the next.
    const productOf = (id: number): Node | undefined => {
      let reader = c.id;
      let p = g.node(id);
      for (;;) {
        if (outputs.has(p.id) || taken.has(p.id)) return undefined;
        if (!(users.get(p.id) ?? []).every((u) => u === reader)) return undefined;
        if (p.op !== 'reshape') break;
        reader = p.id;
        p = g.node(p.inputs[0]);
      }
      return (p.op === 'matmul' || p.op === 'linear') &&
        isF32(g, p) &&
        numel(p.type.shape) === numel(c.type.shape)
        ? p
        : undefined;
    };
    const slot = c.inputs.findIndex((id) => productOf(id) !== undefined);
    if (slot < 0) continue;
    const product = productOf(c.inputs[slot]) as Node;
    taken.add(product.id);
    out.set(c.id, { product, slot, steps });
  }
  return out;
}

/** The graph with matmul/linear outputs mapped in their stores (see the header). */
export function fuseEpilogue(g: Graph): Graph {
  const found = candidates(g);
  if (found.size === 0) return g;
  return rewrite(
    g,
    [
      [
        { where: (n) => found.has(n.id) },
        (m, b) => {
          const { product: p, slot, steps } = found.get(m.node.id) as Found;
          const others = m.node.inputs.filter((_, i) => i !== slot);
          const a: MatmulMapAttrs = {
            product: productAttrs(p),
            steps,
            slot,
            shape: [...m.node.type.shape],
          };
          return b.emit(
            'matmul_map',
            [...p.inputs, ...others].map((id) => m.value(g.node(id))),
            a as never,
            m.node.scope,
          );
        },
        'fuse-epilogue',
      ],
    ],
    { once: true },
  ).graph;
}

export const fuseEpiloguePass: PassDef = {
  name: 'fuse-epilogue',
  description: 'map matmul/linear outputs through their elementwise reader in the matmul store (matmul_map)',
  run: (g) => fuseEpilogue(g),
};

/** The inverse: every matmul_map back into its product, the map (a fused_map), its dropout and operand map. */
export function unfuseEpilogue(g: Graph): Graph {
  if (!g.nodes.some((n) => n.op === 'matmul_map')) return g;
  return rewrite(
    g,
    [
      [
        { op: 'matmul_map' },
        (m, b) => {
          const a = m.node.attrs as unknown as MatmulMapAttrs;
          const k = productArity(a);
          const d = a.dropout;
          const step = d?.step ? [m.inputs[m.inputs.length - 1]] : [];
          const drop = (v: Value) =>
            b.emit('dropout', [v, ...step], dropoutAttrs(d as MatmulDropout) as never, m.node.scope);
          const pre = a.pre;
          const map = (v: Value) =>
            b.emit('fused_map', [v], { steps: pre?.steps, shape: [...v.type.shape] } as never, m.node.scope);
          const operand = (v: Value, i: number) =>
            d && d.at === 'ab'[i] ? drop(v) : pre && pre.at === 'ab'[i] ? map(v) : v;
          const mm = b.emit(
            a.product.op,
            m.inputs.slice(0, k).map(operand),
            (a.product.op === 'matmul'
              ? { transpose_a: a.product.transpose_a, transpose_b: a.product.transpose_b }
              : {}) as never,
            m.node.scope,
          );
          const ins = [...m.inputs.slice(k, extrasEnd(a, m.inputs.length))];
          const view =
            mm.type.shape.join() === a.shape.join()
              ? mm
              : b.emit('reshape', [mm], { shape: [...a.shape] } as never, m.node.scope);
          ins.splice(a.slot, 0, view);
          const mapped = a.steps.length
            ? b.emit('fused_map', ins, { steps: a.steps, shape: a.shape } as never, m.node.scope)
            : view;
          return d?.at === 'out' ? drop(mapped) : mapped;
        },
        'unfuse-epilogue',
      ],
    ],
    { once: true },
  ).graph;
}
