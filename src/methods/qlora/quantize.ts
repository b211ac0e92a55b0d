// The `qlora` pass: each targeted frozen `linear(x, W[, b])` becomes
// `linear(x, dequant_4bit(packed, absmax)[, b])` with params named exactly as
// bitsandbytes' state-dict keys (`<m>.weight` packed u8 [ceil(n/2), 1],
// `<m>.weight.absmax`, and with double quantization `<m>.weight.nested_absmax`,
// `<m>.weight.nested_quant_map`), so a quantized checkpoint binds by name. `linear`
// stays whole so a LoRA pass after this one still matches its targets; fuse-dequant
// turns it into linear_4bit at lowering time.
//
// Weights: a store holding the bitsandbytes tensors of a weight is used as is (a
// quantized checkpoint); an f32 weight is quantized here and the tensors come back in
// a store layered over the given one. With no store at all the graph is built for its
// shapes only: the double-quant offset is then unknown (null, which the kernels refuse).

import { isBnb4bitWeight, quantStateFromTensors, quantStateToTensors } from '../../io/bitsandbytes.ts';
import { FormatError } from '../../io/errors.ts';
import type { GraphBuilder, Value } from '../../ir/builder.ts';
import type { Graph, Node } from '../../ir/graph.ts';
import { LayeredWeightStore, MapWeightStore, type WeightStore } from '../../ir/weights.ts';
import type { PassResult } from '../../passes/pass.ts';
import { rewrite } from '../../passes/rewrite/engine.ts';
import { numelOf, type QuantState, quantizeWeight } from '../../quant/quant-state.ts';
import { expandTargets, selectTargets } from '../targets.ts';
import { dequant4bit, dequantAbsmax } from './ops.ts';
import type { QloraOptions } from './options.ts';

export class QloraError extends Error {
  override name = 'QloraError';
}

/** Where a store's tensors come from, for error messages (safetensors stores know their files). */
function sourceOf(w: WeightStore): string {
  const files = (w as { files?: readonly string[] }).files;
  return files?.length ? files.join(', ') : '<weight store>';
}

/** The frozen f32 [out, in] weight param of a targeted linear, checked. */
function weightParam(g: Graph, n: Node, users: Map<number, number[]>): Node {
  const w = g.node(n.inputs[1]);
  if (w.op === 'dequant_4bit') {
    const a = w.attrs as { quant_type?: string; blocksize?: number };
    throw new QloraError(
      `qlora: the weight of ${n.scope} is already 4-bit (bitsandbytes ${a.quant_type}, blocksize ${a.blocksize}): the model was loaded quantized; remove the qlora method from the recipe (the other methods then train on the 4-bit base as QLoRA)`,
    );
  }
  if (w.op !== 'param' || w.attrs.role !== 'frozen' || w.type.dtype !== 'f32') {
    throw new QloraError(
      `qlora: the weight of ${n.scope} is ${w.op === 'param' ? `a ${String(w.attrs.role)} ${w.type.dtype} param` : `computed by ${w.op}`}; only frozen f32 params can be quantized (run qlora before other methods)`,
    );
  }
  const others = (users.get(w.id) ?? []).filter((u) => u !== n.id);
  if (others.length) {
    const o = g.node(others[0]);
    throw new QloraError(
      `qlora: weight '${String(w.attrs.name)}' of ${n.scope} is also used by ${o.op}${o.scope ? ` in ${o.scope}` : ''}; exclude ${n.scope} (exclude_modules) to keep it in full precision`,
    );
  }
  return w;
}

/** The quant state of weight `name` from the store: read (bnb layout) or quantized (f32). */
function stateFor(
  name: string,
  shape: readonly number[],
  o: QloraOptions,
  w: WeightStore,
): QuantState | undefined {
  const get = (k: string) => w.get(k);
  const file = sourceOf(w);
  if (isBnb4bitWeight(name, get)) {
    const s = quantStateFromTensors(name, get, file);
    const want = `[${shape.join(', ')}]`;
    if (s.shape.join(',') !== shape.join(',')) {
      throw new FormatError(
        file,
        `4-bit weight has shape [${s.shape.join(', ')}] but the model expects ${want}`,
        name,
      );
    }
    return s;
  }
  const t = w.get(name);
  if (!t) return undefined;
  if (t.dtype === 'u8') {
    throw new FormatError(
      file,
      `is uint8 (packed 4-bit?) but '${name}.quant_state.bitsandbytes__${o.quant_type}' is missing, so it cannot be dequantized`,
      name,
    );
  }
  return quantizeWeight(Float32Array.from(t.data), shape, {
    quantType: o.quant_type,
    blocksize: o.blocksize,
    doubleQuant: o.double_quant,
  });
}

/** Param names (bitsandbytes keys) of a quantized weight `<m>.weight`. */
export function qloraParamNames(weight: string) {
  return {
    packed: weight,
    absmax: `${weight}.absmax`,
    nestedAbsmax: `${weight}.nested_absmax`,
    nestedQuantMap: `${weight}.nested_quant_map`,
  };
}

/** Emits the 4-bit storage params and dequantization of one weight; `state` fixes offset and layout. */
export function emitDequant(
  b: GraphBuilder,
  weight: string,
  shape: readonly number[],
  settings: DequantSettings,
): Value {
  const n = numelOf(shape);
  const blocks = Math.ceil(n / settings.blocksize);
  const k = qloraParamNames(weight);
  const packed = b.param(k.packed, 'u8', [Math.ceil(n / 2), 1], 'frozen');
  let absmax: Value;
  if (settings.nested) {
    const q = b.param(k.absmax, 'u8', [blocks], 'frozen');
    const nested = b.param(k.nestedAbsmax, 'f32', [Math.ceil(blocks / settings.nestedBlocksize)], 'frozen');
    const map = b.param(k.nestedQuantMap, 'f32', [256], 'frozen');
    absmax = dequantAbsmax(b, q, nested, map, {
      offset: settings.offset,
      nested_blocksize: settings.nestedBlocksize,
    });
  } else absmax = b.param(k.absmax, 'f32', [blocks], 'frozen');
  return dequant4bit(b, packed, absmax, {
    quant_type: settings.quantType,
    blocksize: settings.blocksize,
    shape: [...shape],
  });
}

export interface DequantSettings {
  readonly quantType: QuantState['quantType'];
  readonly blocksize: number;
  readonly nested: boolean;
  /** null: unknown (built without weights). */
  readonly offset: number | null;
  readonly nestedBlocksize: number;
}

export function settingsOf(s: QuantState): DequantSettings {
  const nested = s.stats.kind === 'nested';
  return {
    quantType: s.quantType,
    blocksize: s.blocksize,
    nested,
    offset: s.stats.kind === 'nested' ? s.stats.offset : 0,
    nestedBlocksize: s.stats.kind === 'nested' ? s.stats.nestedBlocksize : 256,
  };
}

export interface QuantizeResult extends PassResult {
  /** Module paths whose linear weight is now 4-bit, in graph order. */
  readonly modules: readonly string[];
  readonly weights?: WeightStore;
}

/** The qlora pass. */
export function quantizeLinears(g: Graph, o: QloraOptions, weights?: WeightStore): QuantizeResult {
  const cfg = expandTargets(g, { target_modules: o.target_modules, exclude_modules: o.exclude_modules });
  const targets = selectTargets(g, cfg, ['linear']);
  const users = g.users();
  const plans = new Map<number, { weight: string; shape: number[]; state?: QuantState }>();
  const added = new MapWeightStore();
  for (const n of targets) {
    const w = weightParam(g, n, users);
    const name = String(w.attrs.name);
    const shape = [...w.type.shape];
    const state = weights ? stateFor(name, shape, o, weights) : undefined;
    if (state && !(weights && isBnb4bitWeight(name, (k) => weights.get(k)))) {
      for (const [k, t] of quantStateToTensors(name, state)) added.set(k, t);
    }
    plans.set(n.id, { weight: name, shape, state });
  }
  const modules: string[] = [];
  const { graph } = rewrite(
    g,
    [
      [
        { op: 'linear', where: (n) => plans.has(n.id) },
        (m, b) => {
          const p = plans.get(m.node.id)!;
          const settings = p.state
            ? settingsOf(p.state)
            : {
                quantType: o.quant_type,
                blocksize: o.blocksize,
                nested: o.double_quant,
                offset: null,
                nestedBlocksize: 256,
              };
          const w = emitDequant(b, p.weight, p.shape, settings);
          const [x, , bias] = m.inputs;
          modules.push(m.node.scope);
          return bias ? b.linear(x, w, bias) : b.linear(x, w);
        },
        'qlora-quantize',
      ],
    ],
    { once: true },
  );
  const out = weights && added.map.size ? new LayeredWeightStore([added, weights]) : weights;
  return { graph, weights: out, modules };
}
