// The AdaLoRA rewrite: each targeted linear y = f(x) becomes PEFT's SVDLinear
// (tuners/adalora/layer.py forward):
//   y = f(x) + (dropout(x) @ (A * E)^T @ B^T) * scaling / (ranknum + 1e-5)
// with A [init_r, in], E [init_r, 1], B [out, init_r] named as PEFT's ParameterDicts
// (`<m>.lora_A.<a>`, `<m>.lora_E.<a>`, `<m>.lora_B.<a>`). ranknum is PEFT's frozen scalar,
// always init_r (update_layer fills it with r; resize_modules_by_rank_pattern copies the old
// value back; it is never saved), so it lives in the scale constant here, as LoRA's alpha / r.
// Targets: LoRA's selection (methods/targets.ts), linear modules only (PEFT's
// _create_new_module raises for anything but Linear / Conv1D / Conv2d).
import type { GraphBuilder, Value } from '../../ir/builder.ts';
import { GraphBuilder as Builder } from '../../ir/builder.ts';
import type { Graph, Node } from '../../ir/graph.ts';
import type { InitSpec } from '../../ir/ops/index.ts';
import { type Tensor, tensor } from '../../ir/tensor.ts';
import { LayeredWeightStore, MapWeightStore, type WeightStore } from '../../ir/weights.ts';
import { type Match, rewrite } from '../../passes/rewrite/engine.ts';
import { branchInput, stepInput } from '../lora/branch-input.ts';
import { MethodError } from '../registry.ts';
import { expandTargets, selectTargets } from '../targets.ts';
import { type AdaLoraOptions, adaloraScale } from './options.ts';
import { adaloraParamNames, orthRegScope } from './structure.ts';

/** reset_lora_parameters: E = 0, A and B ~ N(0, 0.02); without it (init false), torch.randn for all three. */
function inits(init: AdaLoraOptions['init_lora_weights']): { A: InitSpec; E: InitSpec; B: InitSpec } {
  if (init === 'given') return { A: { kind: 'given' }, E: { kind: 'given' }, B: { kind: 'given' } };
  if (init === false) {
    const n: InitSpec = { kind: 'normal', std: 1 };
    return { A: n, E: n, B: n };
  }
  return { A: { kind: 'normal', std: 0.02 }, E: { kind: 'zeros' }, B: { kind: 'normal', std: 0.02 } };
}

function branch(o: AdaLoraOptions, step: Node | undefined, m: Match, b: GraphBuilder): Value {
  const M = m.node.scope;
  const a = o.adapter_name;
  const [x] = m.inputs;
  const inF = x.type.shape[x.type.shape.length - 1];
  const outF = m.node.type.shape[m.node.type.shape.length - 1];
  const dtype = x.type.dtype;
  const r = o.init_r;
  const init = inits(o.init_lora_weights);
  const names = adaloraParamNames(M, a);
  const base = b.copy(m.node, m.inputs);
  const xd = branchInput(b, m, x, { module: M, adapter: a, p: o.lora_dropout, step });
  const A = b.atScope(`${M}.lora_A.${a}`, () => b.param(names.A, dtype, [r, inF], 'trainable', init.A));
  const E = b.atScope(`${M}.lora_E.${a}`, () => b.param(names.E, dtype, [r, 1], 'trainable', init.E));
  const h = b.atScope(`${M}.lora_A.${a}`, () => b.linear(xd, b.mul(A, E)));
  const B = b.atScope(`${M}.lora_B.${a}`, () => b.param(names.B, dtype, [outF, r], 'trainable', init.B));
  const y = b.atScope(`${M}.lora_B.${a}`, () => b.scale(b.linear(h, B), adaloraScale(o, r)));
  return b.add(base, y);
}

/** The kept indices of a mask, in order (PEFT indexes by the boolean mask: rows stay in order). */
export function keptIndices(mask: readonly boolean[]): number[] {
  return mask.flatMap((k, i) => (k ? [i] : []));
}

/**
 * A saved adapter keeps only the triplets its rank_pattern mask kept (PEFT's
 * resize_state_dict_by_rank_pattern). peftc's graph always has init_r triplets: the kept
 * ones go back to their places and the dropped ones are zeros (E = 0, and A, B = 0 so no
 * gradient revives them), which computes exactly what PEFT's resized module does.
 */
function padded(o: AdaLoraOptions, module: string, w: WeightStore): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  const mask = o.rank_pattern?.[`${module}.lora_E`];
  if (!mask) return out;
  const names = adaloraParamNames(module, o.adapter_name);
  const kept = keptIndices(mask);
  const R = o.init_r;
  const get = (n: string) => (w.has(n) ? w.get(n) : undefined);
  const [A, E, B] = [get(names.A), get(names.E), get(names.B)];
  if (!A || !E || !B) return out;
  if (A.shape[0] === R && E.shape[0] === R && B.shape[1] === R) return out;
  const inF = A.shape[1];
  const outF = B.shape[0];
  const r = kept.length;
  const A2 = new Float32Array(R * inF);
  const E2 = new Float32Array(R);
  const B2 = new Float32Array(outF * R);
  kept.forEach((dst, src) => {
    A2.set(A.data.subarray(src * inF, (src + 1) * inF), dst * inF);
    E2[dst] = E.data[src];
    for (let i = 0; i < outF; i++) B2[i * R + dst] = B.data[i * r + src];
  });
  out.set(names.A, tensor('f32', [R, inF], A2));
  out.set(names.E, tensor('f32', [R, 1], E2));
  out.set(names.B, tensor('f32', [outF, R], B2));
  return out;
}

/**
 * PEFT's AdaLoraModel.forward adds the orthogonal regularization to `loss`:
 *   loss += orth_reg_weight * mean over every lora_A / lora_B of ||P - I||_F,
 * P = A A^T for lora_A and B^T B for lora_B (each [r, r]), the mean over that count.
 */
function withOrthPenalty(g: Graph, o: AdaLoraOptions, modules: readonly string[]): Graph {
  const loss = g.outputs.find((x) => x.name === 'loss');
  if (!loss || o.orth_reg_weight === 0 || modules.length === 0) return g;
  const b = Builder.from(g);
  const params = new Map(g.params().map((p) => [String(p.attrs.name), p]));
  const R = o.init_r;
  const eye = Array.from({ length: R * R }, (_, i) => (i % (R + 1) === 0 ? 1 : 0));
  const lossValue = b.value(loss.id);
  // In its own scope: the structure's release finds it there to drop it with the adapter.
  const penalty = b.atScope(orthRegScope(o.adapter_name), () => {
    const I = b.const(eye, [R, R]);
    const fro = (P: Value) => {
      const d = b.sub(P, I);
      return b.unary('sqrt', b.sum(b.mul(d, d), [0, 1]));
    };
    const terms: Value[] = [];
    for (const M of modules) {
      const names = adaloraParamNames(M, o.adapter_name);
      const A = b.value(params.get(names.A)!.id);
      const Bt = b.transpose(b.value(params.get(names.B)!.id), 0, 1);
      terms.push(fro(b.linear(A, A)), fro(b.linear(Bt, Bt)));
    }
    const total = b.scale(
      terms.reduce((s, t) => b.add(s, t)),
      o.orth_reg_weight / terms.length,
    );
    return lossValue.type.shape.length ? b.reshape(total, [...lossValue.type.shape]) : total;
  });
  const sum = b.add(lossValue, penalty);
  return b.build(g.outputs.map((x) => [x.name, x.name === 'loss' ? sum : b.value(x.id)] as const));
}

export interface AdaLoraInjectResult {
  readonly graph: Graph;
  readonly weights?: WeightStore;
  readonly modules: readonly string[];
}

/** Adds adapter `o.adapter_name` to every targeted linear; the orth penalty joins `loss` (a training adapter). */
export function injectAdaLora(g: Graph, o: AdaLoraOptions, weights?: WeightStore): AdaLoraInjectResult {
  const targets = selectTargets(g, expandTargets(g, o), ['linear', 'embedding']);
  const emb = targets.find((n) => n.op === 'embedding');
  if (emb)
    throw new MethodError(
      `adalora: ${emb.scope} is an embedding; AdaLoRA adapts linear layers only (PEFT raises for it too); leave it out of target_modules`,
    );
  const names = new Set(g.params().map((n) => String(n.attrs.name)));
  for (const t of targets)
    if (names.has(adaloraParamNames(t.scope, o.adapter_name).A))
      throw new MethodError(
        `adalora: adapter '${o.adapter_name}' is already on ${t.scope}; give the new adapter another adapter_name`,
      );
  const ids = new Set(targets.map((n) => n.id));
  const step = stepInput(g);
  const modules: string[] = [];
  const { graph } = rewrite(
    g,
    [[{ op: 'linear', where: (n) => ids.has(n.id) }, (m, b) => branch(o, step, m, b), 'adalora-linear']],
    { once: true, onStep: (s) => void modules.push(s.scope) },
  );
  // A loaded adapter (init 'given') is the inference adapter PEFT would not regularize.
  const out = o.init_lora_weights === 'given' ? graph : withOrthPenalty(graph, o, modules);
  if (!weights) return { graph: out, weights, modules };
  const pads = new MapWeightStore();
  for (const M of modules) for (const [k, t] of padded(o, M, weights)) pads.set(k, t);
  return {
    graph: out,
    weights: pads.map.size ? new LayeredWeightStore([pads, weights]) : weights,
    modules,
  };
}
