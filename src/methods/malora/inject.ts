// The MaLoRA rewrite: the allocation (allocate.ts) becomes LoRA options with one
// rank_pattern / alpha_pattern entry per module, LoRA's injection builds the branches
// (lora/inject.ts: names, inits, dropout as PEFT has them), and for a module split by head
// the branch's B (q/k/v) or A (o_proj) is multiplied by a constant 0/1 block mask:
//   q/k/v: B [out, R], R = sum_h r_h; B[o, j] kept iff row o and column j are the same
//          head's (column block h = [sum_{g<h} r_g, ... + r_h), row block h = [h D, (h+1) D));
//   o_proj: A [R, in]; A[j, i] kept iff rank row j and input column i are the same head's.
// So head h's output only reads its own r_h ranks (q/k/v), or its own ranks only read its
// own input block (o). The mask is in the graph, so a masked entry gets a zero gradient and
// never moves (Adam's moments stay 0; decoupled decay scales 0); merge and save use the
// masked tensor, so a block-structured adapter IS a plain LoRA of rank R with those zeros.
// The scale is lora_alpha / r (the nominal r) on every module: PEFT's alpha_m / r_m with
// alpha_pattern[m] = lora_alpha * R_m / r.
import type { GraphBuilder, Value } from '../../ir/builder.ts';
import type { Graph } from '../../ir/graph.ts';
import type { WeightStore } from '../../ir/weights.ts';
import type { PassResult } from '../../passes/pass.ts';
import { rewrite } from '../../passes/rewrite/engine.ts';
import { loraParamNames } from '../lora/branch.ts';
import { injectLora } from '../lora/inject.ts';
import { type LoraOptions, loraOptions } from '../lora/options.ts';
import { type Allocation, type ModulePlan, maloraAllocation } from './allocate.ts';
import type { MaloraOptions } from './options.ts';

/** The LoRA options of an allocation: rank_pattern R_m, alpha_pattern lora_alpha R_m / r per module. */
export function maloraLoraOptions(o: MaloraOptions, alloc: Allocation): LoraOptions {
  return loraOptionsWithRanks(
    o,
    alloc.modules.map((m) => [m.module, m.ranks.reduce((s, r) => s + r, 0)]),
  );
}

/** LoRA options for MaLoRA's targets with these total ranks per module (full module names). */
export function loraOptionsWithRanks(
  o: MaloraOptions,
  ranks: Iterable<readonly [string, number]>,
): LoraOptions {
  const rank_pattern: Record<string, number> = {};
  const alpha_pattern: Record<string, number> = {};
  for (const [module, R] of ranks) {
    rank_pattern[module] = R;
    alpha_pattern[module] = (o.lora_alpha * R) / o.r;
  }
  return loraOptions.parse({
    r: o.r,
    lora_alpha: o.lora_alpha,
    lora_dropout: o.lora_dropout,
    target_modules: o.target_modules,
    exclude_modules: o.exclude_modules,
    layers_to_transform: o.layers_to_transform,
    layers_pattern: o.layers_pattern,
    init_lora_weights: o.init_lora_weights,
    rank_pattern,
    alpha_pattern,
    adapter_name: o.adapter_name,
    ...(o.task_type !== undefined ? { task_type: o.task_type } : {}),
  });
}

/** Head index of each of `n` rows split into blocks of `size` (`sizes` for uneven blocks). */
function blockIndex(sizes: readonly number[]): number[] {
  return sizes.flatMap((s, h) => Array.from({ length: s }, () => h));
}

/** The 0/1 block mask of a head-split module's masked tensor: equal(rowHead [rows, 1], colHead [1, cols]). */
function blockMask(b: GraphBuilder, p: ModulePlan, dtype: Value['type']['dtype']): Value {
  const heads = p.ranks.length;
  const byRank = blockIndex(p.ranks);
  const byHead = blockIndex(Array.from({ length: heads }, () => p.headDim));
  // q/k/v mask B [out, R]: rows by head, columns by rank; o_proj masks A [R, in].
  const [rows, cols] = p.split === 'out' ? [byHead, byRank] : [byRank, byHead];
  return b.equal(b.const(rows, [rows.length, 1], dtype), b.const(cols, [1, cols.length], dtype));
}

/** Which param a head-split module masks: B for an output split, A for an input split. */
export function maskedParam(p: ModulePlan, adapter: string): string {
  const n = loraParamNames(p.module, adapter, 'linear');
  return p.split === 'out' ? n.B : n.A;
}

export interface MaloraInjected extends PassResult {
  readonly allocation: Allocation;
}

/** Adds the MaLoRA adapter `o.adapter_name` to every targeted module. */
export function injectMalora(g: Graph, o: MaloraOptions, weights?: WeightStore): MaloraInjected {
  const allocation = maloraAllocation(g, o);
  const lora = injectLora(g, maloraLoraOptions(o, allocation), weights);
  // A module of one head needs no mask (its block is the whole matrix).
  const masked = new Map(
    allocation.modules
      .filter((p) => p.split !== 'none' && p.ranks.length > 1)
      .map((p) => [maskedParam(p, o.adapter_name), p]),
  );
  if (masked.size === 0) return { graph: lora.graph, weights: lora.weights, allocation };
  const { graph } = rewrite(
    lora.graph,
    [
      [
        { op: 'param', where: (n) => masked.has(String(n.attrs.name)) },
        (m, b) => {
          const p = masked.get(String(m.node.attrs.name))!;
          const param = b.emit('param', [], m.node.attrs as never, m.node.scope);
          return b.atScope(m.node.scope, () => b.mul(param, blockMask(b, p, m.node.type.dtype)));
        },
        'malora-head-mask',
      ],
    ],
    { once: true },
  );
  return { graph, weights: lora.weights, allocation };
}
