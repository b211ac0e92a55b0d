// The multi-LoRA rewrite of an inference graph (vLLM's max_loras / max_lora_rank, Punica's
// SGMV): every targeted linear (full precision or linear_4bit, left as it is) gets a slotted
// branch `sgmv(y, x, adapter_index, A, B, scale, mag)` whose params hold `max_loras`
// adapters at once, zero-padded to `max_lora_rank`; mag [slots, out] is DoRA's per-row
// rescaling (ones for LoRA). A module with a bias runs its base product without it, the
// bias added after the branch (DoRA rescales the bias-free output, as PEFT). A new i32
// input `adapter_index` [batch] picks each row's slot (-1 = the base model). The params
// start empty (A, B, scale zero, mag one); a runtime fills a slot by writing them
// (Executable.writeParam), so loading or unloading an adapter never changes the graph.
import { z } from 'zod';
import type { Value } from '../../ir/builder.ts';
import type { Graph, Node } from '../../ir/graph.ts';
import { type Tensor, tensor } from '../../ir/tensor.ts';
import { rebuild } from '../../passes/rewrite/index.ts';
import { MethodError } from '../registry.ts';
import { ALL_LINEAR, candidateModules, isTargeted, outputHeads } from '../targets.ts';
import './cpu.ts';
import './ops.ts';
import './wgsl.ts';

export const ADAPTER_INDEX = 'adapter_index';

export const loraSlotsOptions = z.strictObject({
  /** Modules any adapter may target: PEFT's target_modules (a list of names or suffixes, a regex, or "all-linear"). */
  target_modules: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).default(ALL_LINEAR),
  /** Adapters resident at once (slots). */
  max_loras: z.number().int().positive().default(8),
  /** The largest rank an adapter may have; lower ranks are zero-padded. */
  max_lora_rank: z.number().int().positive().default(16),
});
export type LoraSlotsOptions = z.input<typeof loraSlotsOptions>;
export type LoraSlotsSettings = z.output<typeof loraSlotsOptions>;

export interface SlotModule {
  readonly module: string;
  readonly inFeatures: number;
  readonly outFeatures: number;
  /** Param names: A [slots, r_max, in], B [slots, out, r_max], scale [slots], mag [slots, out]. */
  readonly A: string;
  readonly B: string;
  readonly scale: string;
  readonly mag: string;
}

export interface LoraSlotsLayout {
  readonly settings: LoraSlotsSettings;
  readonly modules: readonly SlotModule[];
}

export function slotParamNames(module: string): { A: string; B: string; scale: string; mag: string } {
  const p = `${module}.lora_slots`;
  return { A: `${p}.A`, B: `${p}.B`, scale: `${p}.scale`, mag: `${p}.mag` };
}

/** The input index of a module linear's bias, or -1. */
function biasInput(n: Node): number {
  if (n.op === 'linear') return n.inputs.length === 3 ? 2 : -1;
  const storage = n.attrs.nested ? 4 : 2;
  return n.inputs.length === storage + 2 ? storage + 1 : -1;
}

/** A forward linear of a module (x W^T, not a transposed linear_4bit of a backward pass). */
function isModuleLinear(n: Node): boolean {
  return (n.op === 'linear' || (n.op === 'linear_4bit' && n.attrs.transpose !== true)) && n.scope !== '';
}

function dims(n: Node): { inF: number; outF: number } {
  const outF = n.type.shape[n.type.shape.length - 1];
  if (n.op === 'linear_4bit') return { inF: Number(n.attrs.in_features), outF };
  return { inF: 0, outF };
}

/** The modules the options select, in graph order (errors name the options when none match). */
export function slotTargets(g: Graph, s: LoraSlotsSettings): Node[] {
  const cands = candidateModules(g, ['linear', 'linear_4bit']).filter(isModuleLinear);
  let cfg = { target_modules: s.target_modules as string | readonly string[] };
  if (typeof s.target_modules === 'string' && s.target_modules.toLowerCase() === ALL_LINEAR) {
    const heads = outputHeads(g);
    cfg = {
      target_modules: [...new Set(cands.map((n) => n.scope))].filter(
        (m) => !heads.has(m) && m !== 'lm_head' && !m.endsWith('.lm_head'),
      ),
    };
  }
  const hits = cands.filter((n) => isTargeted(cfg, n.scope));
  if (!hits.length)
    throw new MethodError(
      `multi-LoRA target_modules ${JSON.stringify(s.target_modules)} match no linear of the model; module names look like: ${[
        ...new Set(cands.map((n) => n.scope)),
      ]
        .slice(0, 6)
        .join(', ')}`,
    );
  const seen = new Set<string>();
  for (const n of hits) {
    if (seen.has(n.scope))
      throw new MethodError(
        `multi-LoRA: module ${n.scope} has more than one linear; cannot give it one slot branch`,
      );
    seen.add(n.scope);
  }
  return hits;
}

/** Adds the slotted branches; returns the graph, the layout and the params' initial (zero) values. */
export function addLoraSlots(
  g: Graph,
  options: LoraSlotsOptions,
): { graph: Graph; layout: LoraSlotsLayout; initial: Map<string, Tensor> } {
  const settings = loraSlotsOptions.parse(options);
  if (g.inputs().some((n) => n.attrs.name === ADAPTER_INDEX))
    throw new MethodError(
      `the graph already has an '${ADAPTER_INDEX}' input (multi-LoRA slots added twice?)`,
    );
  const targets = new Set(slotTargets(g, settings).map((n) => n.id));
  const { max_loras: S, max_lora_rank: R } = settings;
  const modules: SlotModule[] = [];
  const initial = new Map<string, Tensor>();
  let index: Value | undefined;
  const graph = rebuild(g, (n, inputs, r) => {
    if (!targets.has(n.id)) return undefined;
    const { b } = r;
    const bias = biasInput(n);
    const y = b.copy(
      n,
      inputs.filter((_, i) => i !== bias),
    );
    const x = inputs[0];
    const inF = n.op === 'linear' ? r.source.node(n.inputs[1]).type.shape[1] : dims(n).inF;
    const outF = dims(n).outF;
    const names = slotParamNames(n.scope);
    const shapes = { A: [S, R, inF], B: [S, outF, R], scale: [S], mag: [S, outF] };
    const p = (k: 'A' | 'B' | 'scale' | 'mag') => {
      const t = tensor('f32', shapes[k]);
      if (k === 'mag') t.data.fill(1);
      initial.set(names[k], t);
      return b.param(names[k], 'f32', shapes[k], 'frozen', { kind: k === 'mag' ? 'ones' : 'zeros' });
    };
    index ??= b.input(ADAPTER_INDEX, 'i32', [x.type.shape[0]]);
    modules.push({ module: n.scope, inFeatures: inF, outFeatures: outF, ...names });
    const out = b.emit('sgmv', [y, x, index, p('A'), p('B'), p('scale'), p('mag')]);
    return bias < 0 ? out : b.add(out, inputs[bias]);
  });
  return { graph, layout: { settings, modules }, initial };
}
