// Memory report of a quantized base: bits per parameter of the 4-bit weights as they
// are stored, from the real buffers bound to the graph (packed codes, absmax, and with
// double quantization the u8 absmax, nested absmax and the f32 offset). Expect 4.5 at
// blocksize 64 without double quantization and about 4.127 with it. The 16- and
// 256-entry maps are shared constants in bitsandbytes; they are reported apart.
import { byteSize } from '../../ir/dtype.ts';
import type { Graph, Node } from '../../ir/graph.ts';
import { numel } from '../../ir/shape.ts';
import type { WeightStore } from '../../ir/weights.ts';
import { numelOf } from '../../quant/quant-state.ts';
import type { Dequant4bitAttrs, Linear4bitAttrs } from './ops.ts';

export interface QuantizedWeightMemory {
  readonly weight: string;
  readonly params: number;
  /** Bytes of codes and scales (maps excluded). */
  readonly bytes: number;
  /** Bytes of the per-weight copies of the code maps (nested_quant_map). */
  readonly mapBytes: number;
}

export interface QuantizedBaseReport {
  readonly weights: readonly QuantizedWeightMemory[];
  readonly params: number;
  readonly bytes: number;
  readonly bitsPerParameter: number;
  readonly bitsPerParameterWithMaps: number;
}

function bytesOf(w: WeightStore | undefined, p: Node): number {
  // Without weights (a shapes-only plan), the param's type says how it is stored.
  if (!w) return byteSize(p.type.dtype, numel(p.type.shape));
  const name = String(p.attrs.name);
  const t = w.get(name);
  if (!t) throw new Error(`memory report: weight '${name}' is not in the weight store`);
  return t.dtype === 'u8' ? t.data.length : t.data.length * 4;
}

/** Every 4-bit weight of the graph (dequant_4bit or linear_4bit storage), measured in `weights` (or from the param types). */
export function quantizedBaseReport(g: Graph, weights?: WeightStore): QuantizedBaseReport {
  const seen = new Set<number>();
  const out: QuantizedWeightMemory[] = [];
  for (const n of g.nodes) {
    if (n.op !== 'dequant_4bit' && n.op !== 'linear_4bit') continue;
    const [pIdx, aIdx] = n.op === 'dequant_4bit' ? [0, 1] : [1, 2];
    const packed = g.node(n.inputs[pIdx]);
    if (packed.op !== 'param' || seen.has(packed.id)) continue;
    seen.add(packed.id);
    const shape =
      n.op === 'dequant_4bit'
        ? (n.attrs as unknown as Dequant4bitAttrs).shape
        : [
            (n.attrs as unknown as Linear4bitAttrs).out_features,
            (n.attrs as unknown as Linear4bitAttrs).in_features,
          ];
    let bytes = bytesOf(weights, packed);
    let mapBytes = 0;
    // Double quantization: (q u8, nested f32, map f32[256]), behind dequant_absmax or fused into linear_4bit.
    const absmax = g.node(n.inputs[aIdx]);
    const nested =
      n.op === 'linear_4bit' && (n.attrs as unknown as Linear4bitAttrs).nested
        ? n.inputs.slice(2, 5)
        : absmax.op === 'dequant_absmax'
          ? absmax.inputs
          : undefined;
    if (nested) {
      const [q, nb, map] = nested.map((i) => g.node(i));
      bytes += bytesOf(weights, q) + bytesOf(weights, nb) + 4; // + the f32 offset
      mapBytes += bytesOf(weights, map);
    } else if (absmax.op === 'param') bytes += bytesOf(weights, absmax);
    out.push({ weight: String(packed.attrs.name), params: numelOf(shape), bytes, mapBytes });
  }
  const params = out.reduce((s, w) => s + w.params, 0);
  const bytes = out.reduce((s, w) => s + w.bytes, 0);
  const maps = out.reduce((s, w) => s + w.mapBytes, 0);
  return {
    weights: out,
    params,
    bytes,
    bitsPerParameter: params ? (bytes * 8) / params : 0,
    bitsPerParameterWithMaps: params ? ((bytes + maps) * 8) / params : 0,
  };
}

/**
 * One log line for a graph's 4-bit base, or undefined when it has none:
 * "4-bit base: 14 weights, 229376 params, 118400 bytes = 4.129 bits/param (4.237 with code maps)".
 */
export function describeQuantizedBase(g: Graph, weights: WeightStore): string | undefined {
  const r = quantizedBaseReport(g, weights);
  if (r.weights.length === 0) return undefined;
  return (
    `4-bit base: ${r.weights.length} weights, ${r.params} params, ${r.bytes} bytes = ` +
    `${r.bitsPerParameter.toFixed(3)} bits/param (${r.bitsPerParameterWithMaps.toFixed(3)} with code maps)`
  );
}
