// Merging LoRA adapters into a 4-bit base: dequantize W, add s B A (f64), then either
// keep the result in f32 (merge_into "float": a full-precision model) or requantize it
// with the same settings (merge_into "4bit", as PEFT's merge on a bitsandbytes layer),
// which rounds the merged weight: the log says by how much (max |change|).

import { quantStateToTensors } from '../../io/bitsandbytes.ts';
import type { Graph, Node } from '../../ir/graph.ts';
import { type Tensor, tensor } from '../../ir/tensor.ts';
import { LayeredWeightStore, MapWeightStore, type WeightStore } from '../../ir/weights.ts';
import type { PassResult } from '../../passes/pass.ts';
import { rewrite } from '../../passes/rewrite/engine.ts';
import { quantMap4bit } from '../../quant/blockwise4.ts';
import { dequantizeWeight, type QuantState, quantizeWeight } from '../../quant/quant-state.ts';
import { type AdapterSite, baseWeightNode, checkAdapters } from '../adapters/sites.ts';
import type { Dequant4bitAttrs, DequantAbsmaxAttrs } from './ops.ts';
import type { QloraOptions } from './options.ts';
import { type DequantSettings, emitDequant, QloraError, settingsOf } from './quantize.ts';

/** The dequant_4bit node of an adapter's base module, when it is 4-bit. */
function dequantNode(g: Graph, site: AdapterSite): Node | undefined {
  if (site.kind !== 'linear' || site.base.op !== 'linear') return undefined;
  const w = baseWeightNode(g, site);
  return w.op === 'dequant_4bit' ? w : undefined;
}

/** The QuantState a dequant_4bit node reads: its params from the store, its settings from attrs. */
export function stateFromGraph(g: Graph, dq: Node, weights: WeightStore): QuantState {
  const a = dq.attrs as unknown as Dequant4bitAttrs;
  const arg = (n: Node) => need(weights, String(n.attrs.name)).data;
  const [packedN, absN] = dq.inputs.map((i) => g.node(i));
  let stats: QuantState['stats'];
  if (absN.op === 'dequant_absmax') {
    const at = absN.attrs as unknown as DequantAbsmaxAttrs;
    const [q, nested, map] = absN.inputs.map((i) => g.node(i));
    if (at.offset === null)
      throw new QloraError('qlora-merge: the double-quant offset is unknown (graph built without weights)');
    stats = {
      kind: 'nested',
      qabsmax: Uint8Array.from(arg(q)),
      nestedAbsmax: Float32Array.from(arg(nested)),
      nestedQuantMap: Float32Array.from(arg(map)),
      nestedBlocksize: at.nested_blocksize,
      offset: at.offset,
    };
  } else stats = { kind: 'plain', absmax: Float32Array.from(arg(absN)) };
  return {
    quantType: a.quant_type,
    blocksize: a.blocksize,
    shape: [...a.shape],
    dtype: 'float32',
    packed: Uint8Array.from(arg(packedN)),
    quantMap: quantMap4bit(a.quant_type),
    stats,
  };
}

function need(w: WeightStore, name: string) {
  const t = w.get(name);
  if (!t) throw new QloraError(`qlora-merge needs '${name}', which is not in the weight store`);
  return t;
}

export interface MergeReport {
  /** Largest |requantized - merged| over all weights (0 for merge_into "float"). */
  readonly maxAbsChange: number;
  readonly modules: readonly string[];
  /** Names of the 4-bit weights that were merged (`<m>.weight`). */
  readonly weights: readonly string[];
}

/** The weight name of every dequant_4bit node (its packed param), with the node. */
export function quantizedWeights(g: Graph): Map<string, Node> {
  const out = new Map<string, Node>();
  for (const n of g.ofOp('dequant_4bit')) out.set(String(g.node(n.inputs[0]).attrs.name), n);
  return out;
}

/** Every 4-bit weight of an unfused graph dequantized to f32 (as bitsandbytes does), by weight name. */
export function dequantizeAll(g: Graph, weights: WeightStore): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  for (const [name, dq] of quantizedWeights(g)) {
    const s = stateFromGraph(g, dq, weights);
    out.set(name, tensor('f32', [...s.shape], dequantizeWeight(s)));
  }
  return out;
}

export function mergeQlora(
  g: Graph,
  o: Pick<QloraOptions, 'merge_into'>,
  weights: WeightStore | undefined,
  log: (line: string) => void = () => {},
): PassResult & { report: MergeReport } {
  if (!weights) throw new QloraError('qlora-merge needs the weights (4-bit base and adapters)');
  const branches = checkAdapters(g, 'qlora-merge').filter((site) => dequantNode(g, site));
  if (branches.length === 0)
    throw new QloraError('qlora-merge: no LoRA adapter on a 4-bit linear in the graph');
  const changed = new MapWeightStore();
  const merged = new Map<
    number,
    { name: string; shape: number[]; old: QuantState; settings?: DequantSettings }
  >();
  const w32 = new Map<number, Float64Array>();
  const read = (n: string) => changed.get(n) ?? need(weights, n);
  for (const site of branches) {
    const dq = dequantNode(g, site)!;
    const name = String(g.node(dq.inputs[0]).attrs.name);
    const base = site.base.id;
    const old = stateFromGraph(g, dq, weights);
    if (!w32.has(base)) w32.set(base, Float64Array.from(dequantizeWeight(old)));
    // The adapter's own fold (LoRA: + s B A; DoRA: rescaled rows), in f64.
    const extras = site.structure.fold(site, w32.get(base)!, read);
    for (const [k, t] of extras ?? []) changed.set(k, t);
    merged.set(base, { name, shape: [...old.shape], old });
  }
  let maxAbsChange = 0;
  for (const [base, m] of merged) {
    const W = Float32Array.from(w32.get(base)!);
    if (o.merge_into === 'float') {
      changed.set(m.name, tensor('f32', m.shape, W));
      continue;
    }
    const { old } = m;
    const s = quantizeWeight(W, m.shape, {
      quantType: old.quantType,
      blocksize: old.blocksize,
      doubleQuant: old.stats.kind === 'nested',
      dtype: old.dtype,
    });
    const back = dequantizeWeight(s);
    let worst = 0;
    for (let i = 0; i < W.length; i++) worst = Math.max(worst, Math.abs(back[i] - W[i]));
    maxAbsChange = Math.max(maxAbsChange, worst);
    for (const [k, t] of quantStateToTensors(m.name, s)) changed.set(k, t);
    m.settings = settingsOf(s);
  }
  const modules = [...new Set(branches.map((b) => b.module))];
  if (o.merge_into === '4bit') {
    log(
      `qlora-merge: warning: merging into 4-bit requantizes ${merged.size} weight(s), which rounds the merged values: ` +
        `max |change| = ${maxAbsChange.toExponential(3)}; merge_into "float" keeps them exact`,
    );
  }
  const outs = new Map(branches.map((b) => [b.out.id, b.below]));
  const { graph } = rewrite(
    g,
    [
      [
        { op: 'linear', where: (n) => merged.has(n.id) },
        (mt, b) => {
          const m = merged.get(mt.node.id)!;
          const w = m.settings
            ? emitDequant(b, m.name, m.shape, m.settings)
            : b.param(m.name, 'f32', m.shape, 'frozen');
          const [x, , bias] = mt.inputs;
          return bias ? b.linear(x, w, bias) : b.linear(x, w);
        },
        'qlora-merge-base',
      ],
      [{ where: (n) => outs.has(n.id) }, (mt) => mt.value(outs.get(mt.node.id)!), 'qlora-merge-branch'],
    ],
    { once: true },
  );
  return {
    graph,
    weights: new LayeredWeightStore([changed, weights]),
    report: { maxAbsChange, modules, weights: [...merged.values()].map((m) => m.name) },
  };
}
