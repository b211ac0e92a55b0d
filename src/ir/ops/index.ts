// The op table: every op the IR knows, by name. Backends and autodiff key their own
// tables by these names (TypeScript checks they cover every core op).
import type { Attrs } from '../graph.ts';
import type { OpDef } from './def.ts';
import * as elementwise from './elementwise.ts';
import * as grad from './grad.ts';
import * as layout from './layout.ts';
import * as linalg from './linalg.ts';
import { MATH_OPS } from './math.ts';
import * as nn from './nn.ts';
import * as reduce from './reduce.ts';
import * as sources from './sources.ts';

const core = {
  input: sources.input,
  param: sources.param,
  const: sources.constant,
  matmul: linalg.matmul,
  linear: linalg.linear,
  ...MATH_OPS,
  cast: elementwise.cast,
  dropout: elementwise.dropout,
  sum: reduce.sum,
  mean: reduce.mean,
  max: reduce.max,
  softmax: reduce.softmax,
  log_softmax: reduce.log_softmax,
  rmsnorm: reduce.rmsnorm,
  layernorm: reduce.layernorm,
  cross_entropy: reduce.cross_entropy,
  cross_entropy_grad: reduce.cross_entropy_grad,
  reshape: layout.reshape,
  transpose: layout.transpose,
  permute: layout.permute,
  slice: layout.slice,
  concat: layout.concat,
  roll: layout.roll,
  gather: layout.gather,
  embedding: layout.embedding,
  rope: nn.rope,
  attention: nn.attention,
  attention_softmax: nn.attentionSoftmax,
  scatter_add: grad.scatter_add,
  one_hot: grad.one_hot,
  broadcast_to: grad.broadcast_to,
  stop_gradient: grad.stop_gradient,
} as const;

export type CoreOpName = keyof typeof core;
export const CORE_OPS = Object.keys(core) as CoreOpName[];

/** Attrs type of a core op, after schema defaults are applied. */
export type OpAttrs<K extends CoreOpName> = (typeof core)[K] extends OpDef<infer A> ? A : never;

const registry = new Map<string, OpDef>(Object.entries(core) as unknown as [string, OpDef][]);

/** Adds an op from outside the core (a new method's special op). Names must be new. */
export function registerOp<A extends Attrs>(def: OpDef<A>): OpDef<A> {
  if (registry.has(def.name)) throw new Error(`op '${def.name}' is already registered`);
  registry.set(def.name, def as unknown as OpDef);
  return def;
}

export function getOp(name: string): OpDef {
  const def = registry.get(name);
  if (!def) throw new Error(`unknown op '${name}' (known: ${[...registry.keys()].join(', ')})`);
  return def;
}

export function hasOp(name: string): boolean {
  return registry.has(name);
}

export function opNames(): string[] {
  return [...registry.keys()];
}

export type { OpDef } from './def.ts';
export { defineOp } from './def.ts';
export { type InitSpec, initSpec } from './sources.ts';
