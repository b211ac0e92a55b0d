// The IR's values: immutable graphs of nodes in topological order, SSA ids,
// explicit named outputs, and a `scope` (the HF module path) on every node.
import type { DType } from './dtype.ts';
import type { Shape } from './shape.ts';

export interface TensorType {
  readonly dtype: DType;
  readonly shape: Shape;
}

export type AttrValue =
  | null
  | boolean
  | number
  | string
  | readonly AttrValue[]
  | { readonly [k: string]: AttrValue };
export type Attrs = { readonly [k: string]: AttrValue };

export interface Node {
  /** SSA id, unique in its graph; printed as %id. */
  readonly id: number;
  readonly op: string;
  readonly inputs: readonly number[];
  readonly attrs: Attrs;
  readonly type: TensorType;
  /** HF module path this node belongs to, e.g. model.layers.3.self_attn.q_proj ('' at top level). */
  readonly scope: string;
}

export interface GraphOutput {
  readonly name: string;
  readonly id: number;
}

/** Parameter roles: frozen base weights, trainable weights, and optimizer/runtime state. */
export type ParamRole = 'frozen' | 'trainable' | 'state';

export class Graph {
  readonly nodes: readonly Node[];
  readonly outputs: readonly GraphOutput[];
  private readonly index: ReadonlyMap<number, number>;

  constructor(nodes: readonly Node[], outputs: readonly GraphOutput[]) {
    this.nodes = Object.freeze(
      nodes.map((n) => Object.freeze({ ...n, inputs: Object.freeze([...n.inputs]) })),
    );
    this.outputs = Object.freeze(outputs.map((o) => Object.freeze({ ...o })));
    const index = new Map<number, number>();
    for (let i = 0; i < this.nodes.length; i++) index.set(this.nodes[i].id, i);
    this.index = index;
  }

  has(id: number): boolean {
    return this.index.has(id);
  }

  node(id: number): Node {
    const i = this.index.get(id);
    if (i === undefined) throw new Error(`graph has no node %${id}`);
    return this.nodes[i];
  }

  /** Position of a node in the topological order. */
  position(id: number): number {
    const i = this.index.get(id);
    if (i === undefined) throw new Error(`graph has no node %${id}`);
    return i;
  }

  output(name: string): Node {
    const o = this.outputs.find((x) => x.name === name);
    if (!o)
      throw new Error(
        `graph has no output '${name}' (outputs: ${this.outputs.map((x) => x.name).join(', ')})`,
      );
    return this.node(o.id);
  }

  /** Nodes of one op kind, in order. */
  ofOp(op: string): Node[] {
    return this.nodes.filter((n) => n.op === op);
  }

  params(): Node[] {
    return this.ofOp('param');
  }

  inputs(): Node[] {
    return this.ofOp('input');
  }

  /** id -> ids of the nodes that read it. */
  users(): Map<number, number[]> {
    const u = new Map<number, number[]>();
    for (const n of this.nodes) {
      for (const i of n.inputs) {
        const list = u.get(i);
        if (list) list.push(n.id);
        else u.set(i, [n.id]);
      }
    }
    return u;
  }

  maxId(): number {
    let m = -1;
    for (const n of this.nodes) if (n.id > m) m = n.id;
    return m;
  }

  with(nodes: readonly Node[], outputs: readonly GraphOutput[] = this.outputs): Graph {
    return new Graph(nodes, outputs);
  }
}

export function paramName(n: Node): string {
  return String(n.attrs.name);
}

export function paramRole(n: Node): ParamRole {
  return n.attrs.role as ParamRole;
}
