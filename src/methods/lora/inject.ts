// The LoRA rewrite: each targeted module y = f(x) becomes y = f(x) + s * B(A(dropout(x))),
// as rewrite rules applied in one sweep (the result contains the module again, so a
// fixed point would never come). Params are named as PEFT names them (a team contract:
// the adapter reader/writer maps these names):
//   <M>.lora_A.<adapter>.weight [r, in], <M>.lora_B.<adapter>.weight [out, r]
//   <M>.lora_embedding_A.<adapter> [r, vocab], <M>.lora_embedding_B.<adapter> [dim, r]
//   <M>.modules_to_save.<adapter>.<leaf> (a trainable copy the graph uses instead)
import type { GraphBuilder, Value } from '../../ir/builder.ts';
import type { Graph, Node } from '../../ir/graph.ts';
import type { InitSpec } from '../../ir/ops/index.ts';
import { LayeredWeightStore, MapWeightStore, type WeightStore } from '../../ir/weights.ts';
import { type Match, type Rule, rewrite } from '../../passes/rewrite/engine.ts';
import { seedOf } from '../../util/rng.ts';
import {
  expandTargets,
  isAdapterScope,
  isModuleToSave,
  isTargeted,
  patternValue,
  selectTargets,
} from '../targets.ts';
import { loraParamNames } from './branch.ts';
import { branchInput, stepInput } from './branch-input.ts';
import { doraBranch, doraDerived } from './dora.ts';
import { type LoraOptions, loraScale } from './options.ts';
import { isResidualInit, residualInit } from './residual-init.ts';

export class LoraError extends Error {
  override name = 'LoraError';
}

/** The dropout seed of a module's branch. */
export { seedOf };

const KAIMING: InitSpec = { kind: 'kaiming_uniform', a: Math.sqrt(5) };

function linearInits(init: LoraOptions['init_lora_weights'], r: number): [InitSpec, InitSpec] {
  // PiSSA / OLoRA: A and B come from the base weight (residual-init.ts).
  if (init === 'given' || isResidualInit(init)) return [{ kind: 'given' }, { kind: 'given' }];
  if (init === false) return [KAIMING, KAIMING];
  if (init === 'gaussian') return [{ kind: 'normal', std: 1 / r }, { kind: 'zeros' }];
  return [KAIMING, { kind: 'zeros' }];
}

function embeddingInits(init: LoraOptions['init_lora_weights']): [InitSpec, InitSpec] {
  if (init === 'given') return [{ kind: 'given' }, { kind: 'given' }];
  if (init === false)
    return [
      { kind: 'normal', std: 1 },
      { kind: 'normal', std: 1 },
    ];
  return [{ kind: 'zeros' }, { kind: 'normal', std: 1 }];
}

interface Plan {
  readonly o: LoraOptions;
  readonly targets: ReadonlySet<number>;
  readonly step?: Node;
  /** Params replaced by a modules_to_save copy. */
  readonly saved: ReadonlySet<number>;
  /** The original of a saved param, re-emitted once for uses outside its module. */
  readonly originals: Map<number, Value>;
}

/**
 * The matched node's inputs, except that a saved param used outside its own module stays
 * the original: PEFT's ModulesToSaveWrapper copies the module, so a weight tied to it
 * elsewhere (lm_head tied to embed_tokens) keeps reading the frozen original
 * (utils/other.py ModulesToSaveWrapper; tuners_utils.py _check_tied_modules only warns
 * unless ensure_weight_tying).
 */
function ownInputs(p: Plan, m: Match, b: GraphBuilder): Value[] {
  return m.node.inputs.map((id, i) => {
    if (!p.saved.has(id)) return m.inputs[i];
    const src = m.graph.node(id);
    const M = moduleOf(String(src.attrs.name));
    if (m.node.scope === M || m.node.scope.startsWith(`${M}.`)) return m.inputs[i];
    let v = p.originals.get(id);
    if (!v) p.originals.set(id, (v = b.emit('param', [], src.attrs as never, src.scope)));
    return v;
  });
}

function rankAlpha(o: LoraOptions, module: string): { r: number; s: number } {
  const r = patternValue(o.rank_pattern, module, o.r);
  const alpha = patternValue(o.alpha_pattern, module, o.lora_alpha);
  return { r, s: loraScale(alpha, r, o.use_rslora) };
}

function linearBranch(p: Plan, m: Match, b: GraphBuilder): Value {
  const { o } = p;
  const M = m.node.scope;
  const a = o.adapter_name;
  const inputs = ownInputs(p, m, b);
  const x = inputs[0];
  const inF = x.type.shape[x.type.shape.length - 1];
  const outF = m.node.type.shape[m.node.type.shape.length - 1];
  const dtype = x.type.dtype;
  const { r, s } = rankAlpha(o, M);
  const [initA, initB] = linearInits(o.init_lora_weights, r);
  const names = loraParamNames(M, a, 'linear');
  const base = b.copy(m.node, inputs);
  const xd = branchInput(b, m, x, { module: M, adapter: a, p: o.lora_dropout, step: p.step });
  const A = b.atScope(`${M}.lora_A.${a}`, () => b.param(names.A, dtype, [r, inF], 'trainable', initA));
  const h = b.atScope(`${M}.lora_A.${a}`, () => b.linear(xd, A));
  const B = b.atScope(`${M}.lora_B.${a}`, () => b.param(names.B, dtype, [outF, r], 'trainable', initB));
  const y = b.atScope(`${M}.lora_B.${a}`, () => b.scale(b.linear(h, B), s));
  if (!o.use_dora) return b.add(base, y);
  return doraBranch(b, {
    module: M,
    adapter: a,
    kind: 'linear',
    norm: o.dora_norm,
    below: base,
    x,
    xd,
    weight: inputs[1],
    hasBias: inputs.length > 2,
    bias: inputs[2],
    dropout: o.lora_dropout > 0,
    lora: y,
    A,
    B,
    scale: s,
  });
}

function embeddingBranch(p: Plan, m: Match, b: GraphBuilder): Value {
  const { o } = p;
  const M = m.node.scope;
  const a = o.adapter_name;
  const inputs = ownInputs(p, m, b);
  const [table, ids] = inputs;
  const [vocab, dim] = table.type.shape;
  const { r, s } = rankAlpha(o, M);
  const [initA, initB] = embeddingInits(o.init_lora_weights);
  const names = loraParamNames(M, a, 'embedding');
  const base = b.copy(m.node, inputs);
  const A = b.atScope(`${M}.lora_embedding_A.${a}`, () =>
    b.param(names.A, table.type.dtype, [r, vocab], 'trainable', initA),
  );
  const h = b.atScope(`${M}.lora_embedding_A.${a}`, () => b.embedding(b.transpose(A, 0, 1), ids));
  const B = b.atScope(`${M}.lora_embedding_B.${a}`, () =>
    b.param(names.B, table.type.dtype, [dim, r], 'trainable', initB),
  );
  const y = b.atScope(`${M}.lora_embedding_B.${a}`, () => b.scale(b.linear(h, B), s));
  if (!o.use_dora) return b.add(base, y);
  // PEFT's DoraEmbeddingVariant: k (T[ids] + s A^T[ids] B^T), per embedding dim (no dropout on embeddings).
  return doraBranch(b, {
    module: M,
    adapter: a,
    kind: 'embedding',
    norm: o.dora_norm,
    below: base,
    x: ids,
    xd: ids,
    weight: table,
    hasBias: false,
    dropout: false,
    lora: y,
    A,
    B,
    scale: s,
  });
}

function withRole(b: GraphBuilder, n: Node, attrs: Record<string, unknown>): Value {
  return b.emit('param', [], { ...n.attrs, ...attrs } as never, n.scope);
}

/** The module path of a param: its name minus the last segment. */
function moduleOf(paramName: string): string {
  const i = paramName.lastIndexOf('.');
  return i < 0 ? '' : paramName.slice(0, i);
}

/** The rules, as data. `biasParams`: params used as a bias by a targeted module. */
export function loraRules(g: Graph, o: LoraOptions): Rule[] {
  const targets = new Set(selectTargets(g, expandTargets(g, o), ['linear', 'embedding']).map((n) => n.id));
  const saved = new Set(
    g
      .params()
      .filter(
        (n) => !isAdapterScope(n.scope) && isModuleToSave(o.modules_to_save, moduleOf(String(n.attrs.name))),
      )
      .map((n) => n.id),
  );
  const plan: Plan = { o, targets, step: stepInput(g), saved, originals: new Map() };
  const targetBiases = new Set(
    g.nodes
      .filter((n) => targets.has(n.id) && n.op === 'linear' && n.inputs.length === 3)
      .map((n) => n.inputs[2]),
  );
  const a = o.adapter_name;
  return [
    [{ op: 'linear', where: (n) => targets.has(n.id) }, (m, b) => linearBranch(plan, m, b), 'lora-linear'],
    [
      { op: 'embedding', where: (n) => targets.has(n.id) },
      (m, b) => embeddingBranch(plan, m, b),
      'lora-embedding',
    ],
    [
      {
        where: (n) =>
          n.op !== 'param' &&
          n.inputs.some((id) => {
            if (!saved.has(id)) return false;
            const M = moduleOf(String(g.node(id).attrs.name));
            return n.scope !== M && !n.scope.startsWith(`${M}.`);
          }),
      },
      (m, b) => b.copy(m.node, ownInputs(plan, m, b)),
      'lora-keep-tied-original',
    ],
    [
      {
        op: 'param',
        where: (n) =>
          !isAdapterScope(n.scope) && isModuleToSave(o.modules_to_save, moduleOf(String(n.attrs.name))),
      },
      (m, b) => {
        const name = String(m.node.attrs.name);
        const M = moduleOf(name);
        const copy = `${M}.modules_to_save.${a}.${name.slice(M.length + 1)}`;
        return b.atScope(`${M}.modules_to_save.${a}`, () =>
          withRole(b, m.node, { name: copy, role: 'trainable', init: { kind: 'given' } }),
        );
      },
      'lora-modules-to-save',
    ],
    [
      {
        op: 'param',
        attrs: { role: 'frozen' },
        where: (n) =>
          (o.bias === 'all' && String(n.attrs.name).includes('bias')) ||
          (o.bias === 'lora_only' && targetBiases.has(n.id)),
      },
      (m, b) => withRole(b, m.node, { role: 'trainable' }),
      'lora-bias-trainable',
    ],
  ];
}

export interface InjectResult {
  readonly graph: Graph;
  readonly weights?: WeightStore;
  readonly modules: readonly string[];
}

/** Adds adapter `o.adapter_name` to every targeted module. */
export function injectLora(g: Graph, o: LoraOptions, weights?: WeightStore): InjectResult {
  const names = new Set(g.params().map((n) => String(n.attrs.name)));
  const rules = loraRules(g, o);
  const modules: string[] = [];
  const { graph } = rewrite(g, rules, {
    once: true,
    onStep: (s) => {
      if (s.rule === 'lora-linear' || s.rule === 'lora-embedding') modules.push(s.scope);
    },
  });
  for (const M of modules) {
    for (const kind of ['linear', 'embedding'] as const) {
      const { A } = loraParamNames(M, o.adapter_name, kind);
      if (names.has(A))
        throw new LoraError(
          `adapter '${o.adapter_name}' is already on ${M}; give the new adapter another adapter_name`,
        );
    }
  }
  // modules_to_save copies start as the original weights.
  const copies = new MapWeightStore();
  if (weights) {
    for (const p of graph.params()) {
      const name = String(p.attrs.name);
      const orig = name.replace(/\.modules_to_save\.[A-Za-z0-9_-]+\./, '.');
      if (orig !== name && !weights.has(name)) {
        const t = weights.get(orig);
        if (t) copies.set(name, { ...t, data: t.data.slice() });
      }
    }
  }
  let withCopies: WeightStore | undefined =
    weights && copies.map.size ? new LayeredWeightStore([copies, weights]) : weights;
  // PiSSA / OLoRA: the residuals shadow the base weights; A0 and B0 lie below any given A and B.
  if (withCopies && isResidualInit(o.init_lora_weights)) {
    const { residuals, inits } = residualInit(graph, o, withCopies);
    withCopies = new LayeredWeightStore([residuals, withCopies, inits]);
  }
  // DoRA's magnitudes and frozen row norms come from the base weights (modules_to_save copies included).
  const derived = o.use_dora && withCopies ? doraDerived(graph, withCopies) : undefined;
  return {
    graph,
    weights:
      derived?.size && withCopies
        ? new LayeredWeightStore([new MapWeightStore(derived), withCopies])
        : withCopies,
    modules,
  };
}

/** Recomputes whether a module is targeted (for tests and tools). */
export function isLoraTarget(g: Graph, o: LoraOptions, module: string): boolean {
  return isTargeted(expandTargets(g, o), module);
}
