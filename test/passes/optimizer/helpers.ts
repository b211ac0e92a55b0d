// A one-param graph whose gradient is the fed input `g`, with an adamw8bit update appended.
import { GraphBuilder } from '../../../src/ir/builder.ts';
import type { Graph } from '../../../src/ir/graph.ts';
import { type Tensor, tensor } from '../../../src/ir/tensor.ts';
import { MapWeightStore } from '../../../src/ir/weights.ts';
import { adamw8bit, appendOptimizer, paged, type UpdateRule } from '../../../src/passes/optimizer/index.ts';
import {
  blockAbsmaxOf,
  dequantizeBlockwise8Op,
  quantizeBlockwise8Op,
} from '../../../src/passes/optimizer/ops8bit.ts';

export interface StepOptions {
  readonly minEightBitSize?: number;
  readonly weightDecay?: number;
  readonly betas?: readonly [number, number];
  readonly eps?: number;
  readonly paged?: boolean;
  readonly rule?: UpdateRule;
}

export function stepGraph(n: number, o: StepOptions = {}): Graph {
  const b = new GraphBuilder();
  const p = b.param('p', 'f32', [n], 'trainable', { kind: 'zeros' });
  const g = b.input('g', 'f32', [n]);
  const base = b.build([
    ['out', b.sum(p, [0])],
    ['grad:p', g],
  ]);
  const rule =
    o.rule ??
    adamw8bit({ betas: o.betas ?? [0.9, 0.999], eps: o.eps ?? 1e-8, minEightBitSize: o.minEightBitSize });
  return appendOptimizer(base, {
    rule: o.paged ? paged(rule) : rule,
    defaultGroup: { name: 'default', lrScale: 1, weightDecay: o.weightDecay ?? 0 },
  });
}

/** p = a fixed ramp, every state zeros (as bitsandbytes initialises them). */
export function stepStore(g: Graph, n: number, p0?: Float32Array): MapWeightStore {
  const store = new MapWeightStore();
  store.set('p', tensor('f32', [n], p0 ?? Float32Array.from({ length: n }, (_, i) => Math.cos(i) * 0.5)));
  for (const s of g.params().filter((x) => x.attrs.role === 'state')) {
    const t: Tensor = tensor(s.type.dtype, s.type.shape);
    store.set(String(s.attrs.name), t);
  }
  return store;
}

type MapName = 'signed' | 'unsigned';

/** codes, absmax and the round trip of x through the graph ops. */
export function quantGraph(shape: number[], map: MapName, blocksize: number, keepSign: boolean) {
  const b = new GraphBuilder();
  const x = b.input('x', 'f32', shape);
  const am = blockAbsmaxOf(b, x, { blocksize });
  const codes = quantizeBlockwise8Op(b, x, am, { map, blocksize, keep_sign: keepSign });
  const back = dequantizeBlockwise8Op(b, codes, am, { map, blocksize });
  return b.build([
    ['absmax', am],
    ['codes', codes],
    ['back', back],
  ]);
}
