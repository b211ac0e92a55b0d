// The MALoRA mixture rewrite: each targeted linear y = W x (+ b) becomes
//   y = W x (+ b) + s * U (g(x) (.) P S dropout(x)),    s = lora_alpha / r
// S [shared_rank, in]: the down-projection subspace the module's experts share;
// P [E r, shared_rank]: expert t's private projection P_t in rows [t r, (t+1) r);
// U [out, E r]: expert t's up-projection in columns [t r, (t+1) r);
// g(x) [E r]: expert t's routing weight repeated over its r columns, from the router
//   p = softmax(x R^T), R [E, in]; the top_k experts of each token keep their p, renormalised
//   to sum 1 (Mixtral's routing), the others get 0.
// Expert t alone is the low-rank update U_t P_t S; the mixture is their routed sum, computed
// densely as two thin matmuls (the experts' total width E r is small beside in and out), so
// no gather/scatter dispatch is needed. The top-k selection is a 0/1 mask from comparisons
// (expert t is kept when fewer than top_k experts have a larger logit; exact ties keep both),
// piecewise constant, so gradients flow through the kept p only, as with torch.topk.
import type { GraphBuilder, Value } from '../../ir/builder.ts';
import type { Graph, Node } from '../../ir/graph.ts';
import type { InitSpec } from '../../ir/ops/index.ts';
import type { PassResult } from '../../passes/pass.ts';
import { type Match, rewrite } from '../../passes/rewrite/engine.ts';
import { branchInput, stepInput } from '../lora/branch-input.ts';
import { MethodError } from '../registry.ts';
import { expandTargets, selectTargets } from '../targets.ts';
import { moeParamNames } from './names.ts';
import type { MaloraMoeOptions } from './options.ts';

const KAIMING: InitSpec = { kind: 'kaiming_uniform', a: Math.sqrt(5) };

/** The routing weights g [..., E] of the tokens x [..., in] (see the header). */
function routingWeights(b: GraphBuilder, o: MaloraMoeOptions, x: Value, router: Value): Value {
  const E = o.num_experts;
  const logits = b.linear(x, router);
  const p = b.softmax(logits, -1);
  if (o.top_k >= E) return p;
  const lead = logits.type.shape.slice(0, -1);
  const axis = lead.length + 1;
  // above[..., t] = #{u : logit_u > logit_t}
  const above = b.sum(b.greater(b.reshape(logits, [...lead, 1, E]), b.reshape(logits, [...lead, E, 1])), [
    axis,
  ]);
  const kept = b.mul(p, b.greater(b.const(o.top_k - 0.5, [], p.type.dtype), above));
  return b.div(kept, b.sum(kept, [lead.length], true));
}

/** The [E r, E] 0/1 matrix that repeats expert t's weight over its r columns (linear(g, it)). */
function expandByRank(b: GraphBuilder, E: number, r: number, dtype: Value['type']['dtype']): Value {
  const m = new Array<number>(E * r * E).fill(0);
  for (let t = 0; t < E; t++) for (let j = 0; j < r; j++) m[(t * r + j) * E + t] = 1;
  return b.const(m, [E * r, E], dtype);
}

function moeBranch(o: MaloraMoeOptions, step: Node | undefined, m: Match, b: GraphBuilder): Value {
  const M = m.node.scope;
  const a = o.adapter_name;
  const x = m.inputs[0];
  const inF = x.type.shape[x.type.shape.length - 1];
  const outF = m.node.type.shape[m.node.type.shape.length - 1];
  const dtype = x.type.dtype;
  const E = o.num_experts;
  const width = E * o.r;
  const init = o.init_lora_weights;
  const given: InitSpec = { kind: 'given' };
  const rand = init === 'given' ? given : KAIMING;
  const upInit = init === 'given' ? given : init === false ? KAIMING : ({ kind: 'zeros' } as InitSpec);
  const n = moeParamNames(M, a);
  const base = b.copy(m.node, m.inputs);
  const xd = branchInput(b, m, x, { module: M, adapter: a, p: o.lora_dropout, step });
  const gate = b.atScope(`${M}.lora_router.${a}`, () => {
    const R = b.param(n.router, dtype, [E, inF], 'trainable', rand);
    return b.linear(routingWeights(b, o, x, R), expandByRank(b, E, o.r, dtype));
  });
  const s = b.atScope(`${M}.lora_S.${a}`, () =>
    b.linear(xd, b.param(n.S, dtype, [o.shared_rank, inF], 'trainable', rand)),
  );
  const h = b.atScope(`${M}.lora_P.${a}`, () =>
    b.mul(b.linear(s, b.param(n.P, dtype, [width, o.shared_rank], 'trainable', rand)), gate),
  );
  const y = b.atScope(`${M}.lora_up.${a}`, () =>
    b.scale(b.linear(h, b.param(n.up, dtype, [outF, width], 'trainable', upInit)), o.lora_alpha / o.r),
  );
  return b.add(base, y);
}

export interface MoeInjected extends PassResult {
  /** The adapted modules with their input and output sizes. */
  readonly modules: ReadonlyArray<{ module: string; inF: number; outF: number }>;
}

/** Adds the mixture `o.adapter_name` to every targeted linear module. */
export function injectMaloraMoe(g: Graph, o: MaloraMoeOptions): MoeInjected {
  const targets = new Set(selectTargets(g, expandTargets(g, o), ['linear']).map((n) => n.id));
  const names = new Set(g.params().map((p) => String(p.attrs.name)));
  for (const id of targets) {
    const M = g.node(id).scope;
    if (names.has(moeParamNames(M, o.adapter_name).S))
      throw new MethodError(
        `adapter '${o.adapter_name}' is already on ${M}; give the new adapter another adapter_name`,
      );
  }
  const step = stepInput(g);
  const modules: Array<{ module: string; inF: number; outF: number }> = [];
  const { graph } = rewrite(
    g,
    [
      [
        { op: 'linear', where: (n) => targets.has(n.id) },
        (m, b) => {
          const x = m.inputs[0].type.shape;
          const y = m.node.type.shape;
          modules.push({ module: m.node.scope, inF: x[x.length - 1], outF: y[y.length - 1] });
          return moeBranch(o, step, m, b);
        },
        'malora-moe-linear',
      ],
    ],
    { once: true },
  );
  return { graph, modules };
}
