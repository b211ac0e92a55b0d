// fuse-dropout (issue 21): a dropout whose mask can be applied inside a matmul kernel
// becomes part of that kernel (matmul_map's `dropout` attr), so it is no dispatch of its
// own and its output never goes to memory. The mask is a pure function of (seed, step,
// flat element index), so a kernel can draw it for any element it touches:
// - prologue: every reader of the dropout (through reshapes, views that keep the flat
//   index) is a matmul, linear or matmul_map reading it as operand a or b. Each reader
//   reads the dropout's input instead and masks operand elements as it loads them, at
//   their index in the operand's buffer (LoRA's `linear(dropout(x), A)` and, in the
//   backward, the product that makes A's gradient from the same saved activation).
// - output: the dropout's input is a matmul, linear or matmul_map product read by nothing
//   else (through reshapes each read only by the next): the product's kernel masks the
//   value it stores, at the output's flat index (LoRA's backward `dropout(dx A)`).
// A kernel holds at most one dropout and stays within 8 storage buffers (the step input
// is one more). p = 0 dropouts and dropouts with any other reader are left alone (and an
// output is only masked in its product's store).
// Runs after fuse-epilogue (readers may already be matmul_maps); CPU results are bit for
// bit the unfused graph's (the dropout op's own kernel on the operand or the result).
import type { GraphBuilder, Value } from '../../ir/builder.ts';
import type { Graph, Node } from '../../ir/graph.ts';
import { numel } from '../../ir/shape.ts';
import type { PassDef } from '../pass.ts';
import { rewrite } from '../rewrite/engine.ts';
import { type MatmulDropout, type MatmulMapAttrs, productArity, productAttrs } from './matmul-map.ts';

/** Storage buffers one kernel may bind (WebGPU's default maxStorageBuffersPerShaderStage). */
const MAX_BINDINGS = 8;

const PRODUCTS = new Set(['matmul', 'linear', 'matmul_map']);

interface Prologue {
  readonly dropout: Node;
  /** Which product operand (0: a / x, 1: b / w) reads it. */
  readonly operand: 0 | 1;
}

interface Plan {
  /** Reader id -> the dropout it masks as it loads an operand. */
  readonly prologues: Map<number, Prologue>;
  /** Dropout id -> the product whose store masks it. */
  readonly outs: Map<number, Node>;
}

/** Whether kernel node `n` can take a dropout: a product without one, with a binding left for the step. */
function canTake(n: Node, step: boolean): boolean {
  if (!PRODUCTS.has(n.op) || n.type.dtype !== 'f32') return false;
  if (n.op === 'matmul_map' && (n.attrs as unknown as MatmulMapAttrs).dropout) return false;
  return n.inputs.length + (step ? 1 : 0) + 1 <= MAX_BINDINGS;
}

/** The operand count of a product node (a, b and a linear's bias; a matmul_map's product). */
function operands(n: Node): number {
  return n.op === 'matmul_map' ? productArity(n.attrs as unknown as MatmulMapAttrs) : n.inputs.length;
}

/**
 * The products (matmul, linear, matmul_map) reading `v`, through reshapes, as operand a
 * (0) or b (1), each once, all accepted by `ok`; undefined when anything else reads it (or
 * a reshape of it is an output).
 */
export function operandReaders(
  g: Graph,
  v: Node,
  users: ReadonlyMap<number, readonly number[]>,
  outputs: ReadonlySet<number>,
  ok: (reader: Node, operand: 0 | 1) => boolean,
): Map<number, 0 | 1> | undefined {
  // v and the reshapes of it: the values its readers may read.
  const chain = new Set<number>([v.id]);
  const readers = new Map<number, 0 | 1>();
  const visit = (id: number): boolean => {
    for (const u of users.get(id) ?? []) {
      const n = g.node(u);
      if (n.op === 'reshape') {
        if (outputs.has(u)) return false;
        if (!chain.has(u)) {
          chain.add(u);
          if (!visit(u)) return false;
        }
        continue;
      }
      // Read once, as operand a or b (not a bias or an epilogue's operand).
      const at = n.inputs.flatMap((i, k) => (chain.has(i) ? [k] : []));
      if (!PRODUCTS.has(n.op) || at.length !== 1 || at[0] > 1 || at[0] >= operands(n)) return false;
      if (!ok(n, at[0] as 0 | 1)) return false;
      readers.set(u, at[0] as 0 | 1);
    }
    return true;
  };
  return visit(v.id) ? readers : undefined;
}

function plan(g: Graph): Plan {
  const users = g.users();
  const outputs = new Set(g.outputs.map((o) => o.id));
  const prologues = new Map<number, Prologue>();
  const outs = new Map<number, Node>();
  const taken = new Set<number>();
  const dropouts = g.nodes.filter(
    (d) =>
      d.op === 'dropout' &&
      Number(d.attrs.p) > 0 &&
      d.type.dtype === 'f32' &&
      g.node(d.inputs[0]).type.dtype === 'f32',
  );
  for (const d of dropouts) {
    const step = d.inputs.length > 1;
    const readers = outputs.has(d.id)
      ? undefined
      : operandReaders(
          g,
          d,
          users,
          outputs,
          (r, operand) => canTake(r, step) && !taken.has(r.id) && asMatmulMap(r).pre?.at !== 'ab'[operand],
        );
    // An output's value must be stored: no prologue then (the output mask stores it).
    if (readers?.size) {
      for (const [r, operand] of readers) {
        prologues.set(r, { dropout: d, operand });
        taken.add(r);
      }
      continue;
    }
    // Output: the product behind the dropout's input, through reshapes each read only by the next.
    let reader = d.id;
    let p = g.node(d.inputs[0]);
    for (;;) {
      if (outputs.has(p.id) || !(users.get(p.id) ?? []).every((u) => u === reader)) break;
      if (p.op !== 'reshape') {
        if (canTake(p, step) && !taken.has(p.id) && numel(p.type.shape) === numel(d.type.shape)) {
          outs.set(d.id, p);
          taken.add(p.id);
        }
        break;
      }
      reader = p.id;
      p = g.node(p.inputs[0]);
    }
  }
  return { prologues, outs };
}

const dropoutOf = (d: Node, at: MatmulDropout['at']): MatmulDropout => ({
  at,
  p: Number(d.attrs.p),
  seed: Number(d.attrs.seed),
  step: d.inputs.length > 1,
});

/** The matmul_map attrs of product node `n`: a matmul_map's own, or its product with the identity program. */
export function asMatmulMap(n: Node): MatmulMapAttrs {
  if (n.op === 'matmul_map') return n.attrs as unknown as MatmulMapAttrs;
  return { product: productAttrs(n), steps: [], slot: 0, shape: [...n.type.shape] };
}

/** `x` as a product's operand of `shape`: itself, or a reshape (a view: the flat index is the same). */
export function operandView(b: GraphBuilder, x: Value, shape: readonly number[], scope: string): Value {
  return x.type.shape.join() === shape.join()
    ? x
    : b.emit('reshape', [x], { shape: [...shape] } as never, scope);
}

/** The graph with dropouts applied inside the matmul kernels that read or make them (see the header). */
export function fuseDropout(g: Graph): Graph {
  const { prologues, outs } = plan(g);
  if (prologues.size === 0 && outs.size === 0) return g;
  return rewrite(
    g,
    [
      [
        { where: (n) => prologues.has(n.id) },
        (m, b) => {
          const r = m.node;
          const { dropout: d, operand } = prologues.get(r.id) as Prologue;
          const ins = [...m.inputs];
          ins[operand] = operandView(
            b,
            m.value(g.node(d.inputs[0])),
            g.node(r.inputs[operand]).type.shape,
            r.scope,
          );
          const step = d.inputs.slice(1).map((i) => m.value(g.node(i)));
          const a: MatmulMapAttrs = { ...asMatmulMap(r), dropout: dropoutOf(d, operand ? 'b' : 'a') };
          return b.emit('matmul_map', [...ins, ...step], a as never, r.scope);
        },
        'fuse-dropout-prologue',
      ],
      [
        { where: (n) => outs.has(n.id) },
        (m, b) => {
          const d = m.node;
          const p = outs.get(d.id) as Node;
          const ins: Value[] = p.inputs.map((i) => m.value(g.node(i)));
          const step = d.inputs.slice(1).map((i) => m.value(g.node(i)));
          const a: MatmulMapAttrs = { ...asMatmulMap(p), dropout: dropoutOf(d, 'out') };
          const v = b.emit('matmul_map', [...ins, ...step], a as never, p.scope);
          // The product's shape, then the dropout's (a view: the flat index is the same).
          return v.type.shape.join() === d.type.shape.join()
            ? v
            : b.emit('reshape', [v], { shape: [...d.type.shape] } as never, d.scope);
        },
        'fuse-dropout-output',
      ],
    ],
    { once: true },
  ).graph;
}

export const fuseDropoutPass: PassDef = {
  name: 'fuse-dropout',
  description: 'apply dropout masks inside the matmul kernels that read or make them (matmul_map dropout)',
  run: (g) => fuseDropout(g),
};
