// Random linear_4bit problems shared by the CPU and WebGPU tests: odd in_features,
// partial last blocks, blocksizes 32..256, NF4/FP4, with and without double
// quantization and bias, both orientations; plus the dequantize-then-linear reference.
import fc from 'fast-check';
import { quantStateToTensors } from '../../../src/io/bitsandbytes.ts';
import { GraphBuilder, type Value } from '../../../src/ir/builder.ts';
import type { Graph } from '../../../src/ir/graph.ts';
import { type Tensor, tensor } from '../../../src/ir/tensor.ts';
import { MapWeightStore } from '../../../src/ir/weights.ts';
import {
  type DequantAbsmaxAttrs,
  emitDequant,
  linear4bit,
  type NestedAbsmax,
  settingsOf,
} from '../../../src/methods/qlora/index.ts';
import { dequantizeWeight, type QuantState, quantizeWeight } from '../../../src/quant/quant-state.ts';
import { Rng } from '../../../src/util/rng.ts';

export interface Problem {
  readonly rows: readonly number[];
  readonly outF: number;
  readonly inF: number;
  readonly blocksize: number;
  readonly quantType: 'nf4' | 'fp4';
  readonly doubleQuant: boolean;
  readonly transpose: boolean;
  readonly bias: boolean;
  readonly seed: number;
}

export const problemArb: fc.Arbitrary<Problem> = fc.record({
  rows: fc.oneof(fc.constant([1]), fc.constant([3]), fc.constant([2, 5]), fc.constant([70])),
  outF: fc.integer({ min: 1, max: 40 }),
  // Half multiples of 8 (the kernels' whole-word paths), half anything (odd, straddling words).
  inF: fc.oneof(
    fc.integer({ min: 1, max: 90 }),
    fc.integer({ min: 1, max: 12 }).map((k) => 8 * k),
  ),
  blocksize: fc.constantFrom(32, 64, 128, 256),
  quantType: fc.constantFrom('nf4' as const, 'fp4' as const),
  doubleQuant: fc.boolean(),
  transpose: fc.boolean(),
  bias: fc.boolean(),
  seed: fc.integer({ min: 1, max: 1 << 30 }),
});

export interface Built {
  /** linear_4bit over the storage params. */
  readonly fused: Graph;
  /** linear over an f32 param holding the dequantized weight (transpose: matmul). */
  readonly reference: Graph;
  readonly weights: MapWeightStore;
  readonly feeds: Record<string, Tensor>;
  readonly state: QuantState;
}

function randn(r: Rng, n: number): Float32Array {
  return Float32Array.from({ length: n }, () => r.normal(0, 1));
}

export function build(p: Problem): Built {
  const r = new Rng(p.seed);
  const W = randn(r, p.outF * p.inF);
  const state = quantizeWeight(W, [p.outF, p.inF], {
    quantType: p.quantType,
    blocksize: p.blocksize,
    doubleQuant: p.doubleQuant,
  });
  const weights = new MapWeightStore(quantStateToTensors('m.weight', state));
  weights.set('m.ref', tensor('f32', [p.outF, p.inF], dequantizeWeight(state)));
  weights.set('m.bias', tensor('f32', [p.outF], randn(r, p.outF)));
  const K = p.transpose ? p.outF : p.inF;
  const xShape = [...p.rows, K];
  const feeds = {
    x: tensor(
      'f32',
      xShape,
      randn(
        r,
        xShape.reduce((a, b) => a * b, 1),
      ),
    ),
  };
  const withBias = p.bias && !p.transpose;

  const f = new GraphBuilder();
  const fx = f.input('x', 'f32', xShape);
  // Storage params as the qlora pass names them; take the absmax value dequant_4bit reads.
  const dq = emitDequant(f, 'm.weight', [p.outF, p.inF], settingsOf(state));
  const node = f.built.find((n) => n.id === dq.id)!;
  // With double quantization: the u8 absmax codes, nested absmax and map (fused decode).
  const am = f.built.find((n) => n.id === node.inputs[1])!;
  const absmax: Value | NestedAbsmax =
    am.op === 'dequant_absmax'
      ? {
          q: f.value(am.inputs[0]),
          nested: f.value(am.inputs[1]),
          map: f.value(am.inputs[2]),
          attrs: am.attrs as unknown as DequantAbsmaxAttrs,
        }
      : f.value(am.id);
  const y = linear4bit(
    f,
    fx,
    f.value(node.inputs[0]),
    absmax,
    {
      quant_type: p.quantType,
      blocksize: p.blocksize,
      out_features: p.outF,
      in_features: p.inF,
      transpose: p.transpose,
    },
    withBias ? f.param('m.bias', 'f32', [p.outF]) : undefined,
  );
  const fused = f.build({ out: y });

  const g = new GraphBuilder();
  const gx = g.input('x', 'f32', xShape);
  const w = g.param('m.ref', 'f32', [p.outF, p.inF]);
  let ref: Value;
  if (p.transpose) {
    const flat = g.reshape(gx, [-1, K]);
    ref = g.reshape(g.matmul(flat, w), [...p.rows, p.inF]);
  } else ref = g.linear(gx, w, withBias ? g.param('m.bias', 'f32', [p.outF]) : undefined);
  return { fused, reference: g.build({ out: ref }), weights, feeds, state };
}
