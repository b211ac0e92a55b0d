// What a pass is, and the registry of passes by kebab-case name.
//
// A pass is pure: it takes a graph (and a context) and returns a new graph. Passes
// that change weights (merge, unmerge, modules_to_save copies) return the new store
// beside the graph instead of writing into the one they were given.
import type { z } from 'zod';
import type { Graph } from '../ir/graph.ts';
import type { WeightStore } from '../ir/weights.ts';

export interface PassContext<O = unknown> {
  /** The pass's options, already checked and defaulted by its schema. */
  readonly options: O;
  /** Weights so far (from the model, or returned by an earlier pass); absent when none were given. */
  readonly weights?: WeightStore;
  /** Diagnostics sink (rewrite steps when `trace` is on, warnings). */
  readonly log: (line: string) => void;
  /** Log every rewrite step by rule name. */
  readonly trace: boolean;
  /** Facts about the model the graph was built from, when the caller knows them. */
  readonly model?: ModelInfo;
}

/** What a pass may need to know of the model beyond its graph (LongLoRA: the trained context length). */
export interface ModelInfo {
  readonly maxPositionEmbeddings: number;
}

export interface PassResult {
  readonly graph: Graph;
  /** The complete store to use from now on (may layer new tensors over the old store). */
  readonly weights?: WeightStore;
}

export type PassFn<O = unknown> = (graph: Graph, ctx: PassContext<O>) => Graph | PassResult;

export interface PassDef<O = unknown> {
  /** kebab-case, e.g. `dce`, `lora-merge`. */
  readonly name: string;
  readonly description: string;
  /** Options schema; absent means the pass takes no options. */
  readonly options?: z.ZodType<O>;
  readonly run: PassFn<O>;
}

export class PassError extends Error {
  override name = 'PassError';
  constructor(
    message: string,
    readonly pass?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

const KEBAB = /^[a-z][a-z0-9]*(-[a-z0-9]+)*$/;
const registry = new Map<string, PassDef>();

/** Registers a pass under its kebab-case name; names must be new. */
export function registerPass<O>(def: PassDef<O>): PassDef<O> {
  if (!KEBAB.test(def.name)) throw new PassError(`pass name '${def.name}' is not kebab-case`);
  if (registry.has(def.name)) throw new PassError(`pass '${def.name}' is already registered`);
  registry.set(def.name, def as unknown as PassDef);
  return def;
}

export function hasPass(name: string): boolean {
  return registry.has(name);
}

export function getPass(name: string): PassDef {
  const def = registry.get(name);
  if (!def) throw new PassError(`unknown pass '${name}' (known: ${passNames().join(', ')})`);
  return def;
}

export function passNames(): string[] {
  return [...registry.keys()].sort();
}

/** Normalises what a pass returned. */
export function asResult(r: Graph | PassResult, weights: WeightStore | undefined): PassResult {
  return 'nodes' in r ? { graph: r, weights } : { graph: r.graph, weights: r.weights ?? weights };
}
