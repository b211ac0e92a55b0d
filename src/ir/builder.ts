// A builder that reads like model code:
//   const b = new GraphBuilder();
//   const x = b.input('x', 'f32', [1, 8, 64]);
//   const y = b.withScope('model.layers.0.mlp.up_proj', () => b.linear(x, b.param(...)));
//   const g = b.build({ y });
// Every op call checks its attrs and shapes at once, so a mistake names the op and scope.
import type { DType } from './dtype.ts';
import { type Attrs, Graph, type GraphOutput, type Node, type ParamRole, type TensorType } from './graph.ts';
import { type CoreOpName, getOp, type InitSpec, type OpAttrs } from './ops/index.ts';
import { type Shape, ShapeError } from './shape.ts';
import { verify } from './verify.ts';

export interface Value {
  readonly id: number;
  readonly type: TensorType;
}

export class BuildError extends Error {
  override name = 'BuildError';
}

type In<K extends CoreOpName> = Partial<OpAttrs<K>>;

export class GraphBuilder {
  private readonly nodes: Node[] = [];
  private readonly byId = new Map<number, Node>();
  private nextId: number;
  private scopeStack: string[] = [];

  constructor(opts: { startId?: number } = {}) {
    this.nextId = opts.startId ?? 0;
  }

  /** A builder that continues `g`: its nodes are kept as they are and new ids follow its largest. */
  static from(g: Graph): GraphBuilder {
    const b = new GraphBuilder({ startId: g.maxId() + 1 });
    for (const n of g.nodes) b.push(n);
    return b;
  }

  /** The Value of a node already in this builder. */
  value(id: number): Value {
    const n = this.byId.get(id);
    if (!n) throw new BuildError(`no node %${id} in this builder`);
    return { id, type: n.type };
  }

  get scope(): string {
    return this.scopeStack.length ? this.scopeStack[this.scopeStack.length - 1] : '';
  }

  /** Runs `fn` with `name` appended to the current scope (joined with '.'). */
  withScope<T>(name: string, fn: () => T): T {
    return this.atScope(this.scope && name ? `${this.scope}.${name}` : this.scope || name, fn);
  }

  /** Runs `fn` with an absolute scope. */
  atScope<T>(scope: string, fn: () => T): T {
    this.scopeStack.push(scope);
    try {
      return fn();
    } finally {
      this.scopeStack.pop();
    }
  }

  /** Adds a node of any registered op; attrs are validated and defaulted by the op's schema. */
  emit(op: string, inputs: readonly Value[], attrs: Attrs = {}, scope: string = this.scope): Value {
    const def = getOp(op);
    const where = `${op}${scope ? ` in ${scope}` : ''}`;
    const parsed = def.attrs.safeParse(attrs);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new BuildError(`${where}: bad attrs: ${issue.path.join('.') || '(attrs)'}: ${issue.message}`);
    }
    const { arity } = def;
    const n = inputs.length;
    if (typeof arity === 'number' ? n !== arity : n < arity[0] || n > arity[1]) {
      throw new BuildError(`${where}: wrong number of inputs (${n})`);
    }
    let type: TensorType;
    try {
      type = def.infer(
        inputs.map((v) => v.type),
        parsed.data,
      );
    } catch (e) {
      if (e instanceof ShapeError) throw new BuildError(`${where}: ${e.message}`);
      throw e;
    }
    const id = this.nextId++;
    this.push({ id, op, inputs: inputs.map((v) => v.id), attrs: parsed.data as Attrs, type, scope });
    return { id, type };
  }

  private push(n: Node): void {
    this.nodes.push(n);
    this.byId.set(n.id, n);
  }

  /** Re-adds an existing node with new inputs (for passes that copy a graph). */
  copy(n: Node, inputs: readonly Value[]): Value {
    return this.emit(n.op, inputs, n.attrs, n.scope);
  }

  /**
   * Re-adds an existing node whose new inputs have exactly its inputs' old types: its attrs
   * were parsed and its type inferred when it was built, and inference is a function of
   * the input types and attrs, so neither is redone (the bulk of a pass's graph copy).
   */
  copySameTypes(n: Node, inputs: readonly Value[]): Value {
    const id = this.nextId++;
    this.push({
      id,
      op: n.op,
      inputs: inputs.map((v) => v.id),
      attrs: n.attrs,
      type: n.type,
      scope: n.scope,
    });
    return { id, type: n.type };
  }

  private op<K extends CoreOpName>(op: K, inputs: readonly Value[], attrs?: In<K>): Value {
    return this.emit(op, inputs, (attrs ?? {}) as Attrs);
  }

  // --- sources
  input(name: string, dtype: DType, shape: Shape): Value {
    return this.op('input', [], { name, dtype, shape: [...shape] });
  }
  param(
    name: string,
    dtype: DType,
    shape: Shape,
    role: ParamRole = 'frozen',
    init: InitSpec = { kind: 'given' },
  ): Value {
    return this.op('param', [], { name, dtype, shape: [...shape], role, init });
  }
  const(value: number | readonly number[], shape: Shape = [], dtype: DType = 'f32'): Value {
    return this.op('const', [], {
      value: typeof value === 'number' ? value : [...value],
      shape: [...shape],
      dtype,
    });
  }

  // --- linear algebra
  matmul(a: Value, b: Value, attrs?: In<'matmul'>): Value {
    return this.op('matmul', [a, b], attrs);
  }
  linear(x: Value, w: Value, bias?: Value): Value {
    return this.op('linear', bias ? [x, w, bias] : [x, w]);
  }

  // --- elementwise
  add(a: Value, b: Value): Value {
    return this.op('add', [a, b]);
  }
  sub(a: Value, b: Value): Value {
    return this.op('sub', [a, b]);
  }
  mul(a: Value, b: Value): Value {
    return this.op('mul', [a, b]);
  }
  div(a: Value, b: Value): Value {
    return this.op('div', [a, b]);
  }
  pow(a: Value, b: Value): Value {
    return this.op('pow', [a, b]);
  }
  maximum(a: Value, b: Value): Value {
    return this.op('maximum', [a, b]);
  }
  minimum(a: Value, b: Value): Value {
    return this.op('minimum', [a, b]);
  }
  unary(
    op: 'neg' | 'abs' | 'exp' | 'log' | 'sqrt' | 'rsqrt' | 'relu' | 'sigmoid' | 'tanh' | 'silu',
    x: Value,
  ): Value {
    return this.op(op, [x]);
  }
  neg(x: Value): Value {
    return this.op('neg', [x]);
  }
  exp(x: Value): Value {
    return this.op('exp', [x]);
  }
  silu(x: Value): Value {
    return this.op('silu', [x]);
  }
  gelu(x: Value, approximate: 'none' | 'tanh' = 'none'): Value {
    return this.op('gelu', [x], { approximate });
  }
  scale(x: Value, factor: number): Value {
    return this.op('scale', [x], { factor });
  }
  where(cond: Value, a: Value, b: Value): Value {
    return this.op('where', [cond, a, b]);
  }
  cast(x: Value, dtype: DType): Value {
    return this.op('cast', [x], { dtype });
  }
  dropout(x: Value, p: number, seed: number, step?: Value): Value {
    return this.op('dropout', step ? [x, step] : [x], { p, seed });
  }

  // --- reductions and normalisation
  sum(x: Value, axes: number[], keepdims = false): Value {
    return this.op('sum', [x], { axes, keepdims });
  }
  mean(x: Value, axes: number[], keepdims = false): Value {
    return this.op('mean', [x], { axes, keepdims });
  }
  max(x: Value, axes: number[], keepdims = false): Value {
    return this.op('max', [x], { axes, keepdims });
  }
  softmax(x: Value, axis = -1): Value {
    return this.op('softmax', [x], { axis });
  }
  logSoftmax(x: Value, axis = -1): Value {
    return this.op('log_softmax', [x], { axis });
  }
  rmsnorm(x: Value, weight: Value, eps: number): Value {
    return this.op('rmsnorm', [x, weight], { eps });
  }
  layernorm(x: Value, weight: Value, bias: Value | undefined, eps: number): Value {
    return this.op('layernorm', bias ? [x, weight, bias] : [x, weight], { eps });
  }
  crossEntropy(logits: Value, labels: Value, attrs?: In<'cross_entropy'>): Value {
    return this.op('cross_entropy', [logits, labels], attrs);
  }

  // --- layout
  reshape(x: Value, shape: number[]): Value {
    return this.op('reshape', [x], { shape });
  }
  transpose(x: Value, dim0: number, dim1: number): Value {
    return this.op('transpose', [x], { dim0, dim1 });
  }
  permute(x: Value, perm: number[]): Value {
    return this.op('permute', [x], { perm });
  }
  slice(x: Value, axis: number, start: number, end: number): Value {
    return this.op('slice', [x], { axis, start, end });
  }
  concat(xs: readonly Value[], axis: number): Value {
    return this.op('concat', xs, { axis });
  }
  roll(x: Value, shift: number, axis: number): Value {
    return this.op('roll', [x], { shift, axis });
  }
  gather(x: Value, idx: Value, axis: number): Value {
    return this.op('gather', [x, idx], { axis });
  }
  embedding(table: Value, ids: Value): Value {
    return this.op('embedding', [table, ids]);
  }

  // --- for gradients
  scatterAdd(updates: Value, idx: Value, axis: number, size: number): Value {
    return this.op('scatter_add', [updates, idx], { axis, size });
  }
  oneHot(ids: Value, depth: number): Value {
    return this.op('one_hot', [ids], { depth });
  }
  greater(a: Value, b: Value): Value {
    return this.op('greater', [a, b]);
  }
  equal(a: Value, b: Value): Value {
    return this.op('equal', [a, b]);
  }
  sign(x: Value): Value {
    return this.op('sign', [x]);
  }
  broadcastTo(x: Value, shape: number[]): Value {
    return this.op('broadcast_to', [x], { shape });
  }

  // --- transformer blocks
  rope(x: Value, positions: Value, attrs?: In<'rope'>): Value {
    return this.op('rope', [x, positions], attrs);
  }
  attention(q: Value, k: Value, v: Value, mask?: Value, attrs?: In<'attention'>): Value {
    return this.op('attention', mask ? [q, k, v, mask] : [q, k, v], attrs);
  }

  /** The nodes so far (for passes that inspect what they built). */
  get built(): readonly Node[] {
    return this.nodes;
  }

  /** Finishes the graph with named outputs and verifies it. */
  build(
    outputs: Record<string, Value> | readonly (readonly [string, Value])[],
    opts: { verify?: boolean } = {},
  ): Graph {
    const list: GraphOutput[] = (Array.isArray(outputs) ? outputs : Object.entries(outputs)).map(
      ([name, v]) => ({
        name,
        id: v.id,
      }),
    );
    const g = new Graph(this.nodes, list);
    return opts.verify === false ? g : verify(g);
  }
}
