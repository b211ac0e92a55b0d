// The QLoRA ops on the CPU: dequant_4bit / dequant_absmax against src/quant,
// linear_4bit against dequantize-then-linear (both orientations), VJPs against the
// core linear's, and shape errors that say what was wrong.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { runGraph } from '../../../src/backends/cpu/index.ts';
import { quantStateToTensors } from '../../../src/io/bitsandbytes.ts';
import { GraphBuilder, type Value } from '../../../src/ir/builder.ts';
import { tensor } from '../../../src/ir/tensor.ts';
import { MapWeightStore } from '../../../src/ir/weights.ts';
import * as qlora from '../../../src/methods/qlora/index.ts';
import { dequant4bit, linear4bit } from '../../../src/methods/qlora/index.ts';
import { autodiff } from '../../../src/passes/autodiff/index.ts';
import { NF4_TABLE } from '../../../src/quant/nf4.ts';
import { dequantizeWeight, quantizeWeight } from '../../../src/quant/quant-state.ts';
import { expectClose } from '../../ops/case.ts';
import { build, problemArb } from './cases.ts';

describe('dequant_4bit / dequant_absmax', () => {
  it('decode as table[code] * absmax, nibble order high first, odd length', () => {
    // Two codes per byte, first element high: bytes 0x7F, 0x30 -> codes 7, 15, 3, (pad 0).
    const b = new GraphBuilder();
    const p = b.param('p', 'u8', [2]);
    const a = b.param('a', 'f32', [1]);
    const g = b.build({ out: dequant4bit(b, p, a, { quant_type: 'nf4', blocksize: 64, shape: [3] }) });
    const w = new MapWeightStore([
      ['p', tensor('u8', [2], [0x7f, 0x30])],
      ['a', tensor('f32', [1], [2])],
    ]);
    const out = runGraph(g, {}, w).out;
    expect(Array.from(out.data)).toEqual([0, 2, Math.fround(NF4_TABLE[3] * 2)]);
  });

  it('matches dequantizeWeight with and without double quantization', () => {
    fc.assert(
      fc.property(problemArb, (p) => {
        const c = build(p);
        const b = new GraphBuilder();
        const w = qlora.emitDequant(b, 'm.weight', [p.outF, p.inF], qlora.settingsOf(c.state));
        const out = runGraph(b.build({ out: w }), {}, c.weights).out;
        expect(Array.from(out.data)).toEqual(Array.from(dequantizeWeight(c.state)));
      }),
      { numRuns: 40 },
    );
  });
});

describe('linear_4bit on the CPU', () => {
  it('equals dequantize-then-linear (x W^T + b, and x W)', () => {
    fc.assert(
      fc.property(problemArb, (p) => {
        const c = build(p);
        const got = runGraph(c.fused, c.feeds, c.weights, { precision: 'f64' }).out;
        const want = runGraph(c.reference, c.feeds, c.weights, { precision: 'f64' }).out;
        expectClose(got, want, 1e-12, 'linear_4bit');
      }),
      { numRuns: 60 },
    );
  });

  it('gradients w.r.t. the input and the bias equal the core linear rule', () => {
    fc.assert(
      fc.property(problemArb, (p) => {
        const c = build({ ...p, transpose: false });
        // Make x and the bias trainable params so autodiff differentiates them.
        const asParams = (g: typeof c.fused) => {
          const b = new GraphBuilder();
          const map = new Map<number, Value>();
          for (const n of g.nodes) {
            const ins = n.inputs.map((i) => map.get(i)!);
            let v: Value;
            if (n.op === 'input')
              v = b.atScope(n.scope, () => b.param('x', 'f32', n.type.shape, 'trainable'));
            else if (n.op === 'param' && n.attrs.name === 'm.bias')
              v = b.param('m.bias', 'f32', n.type.shape, 'trainable');
            else v = b.atScope(n.scope, () => b.copy(n, ins));
            map.set(n.id, v);
          }
          const out = map.get(g.output('out').id)!;
          const loss = b.sum(
            b.mul(out, out),
            out.type.shape.map((_, i) => i),
          );
          return autodiff(b.build({ loss }), { loss: 'loss' });
        };
        const w = new MapWeightStore(c.weights.map);
        w.set('x', c.feeds.x);
        const got = runGraph(asParams(c.fused), {}, w, { precision: 'f64' });
        const want = runGraph(asParams(c.reference), {}, w, { precision: 'f64' });
        expectClose(got['grad:x'], want['grad:x'], 1e-10, 'grad x');
        if (p.bias) expectClose(got['grad:m.bias'], want['grad:m.bias'], 1e-10, 'grad bias');
      }),
      { numRuns: 30 },
    );
  });

  it('rejects storage that does not fit the weight shape, saying what it expected', () => {
    const b = new GraphBuilder();
    const x = b.input('x', 'f32', [2, 9]);
    const p = b.param('p', 'u8', [40, 1]);
    const a = b.param('a', 'f32', [1]);
    const attrs = { quant_type: 'nf4' as const, blocksize: 64, out_features: 9, in_features: 9 };
    expect(() => linear4bit(b, x, p, a, attrs)).toThrow(/packed codes must be u8 \[41\] or \[41, 1\]/);
    const p2 = b.param('p2', 'u8', [41, 1]);
    expect(() => linear4bit(b, x, p2, a, attrs)).toThrow(/absmax must be f32 \[2\]/);
    const a2 = b.param('a2', 'f32', [2]);
    const x2 = b.input('x2', 'f32', [2, 8]);
    expect(() => linear4bit(b, x2, p2, a2, attrs)).toThrow(/input \[2,8\] does not end in 9/);
    expect(() => linear4bit(b, x, p2, a2, { ...attrs, blocksize: 48 })).toThrow(/blocksize must be one of/);
  });

  it('refuses to run double quantization whose offset is unknown (graph built without weights)', () => {
    const s = quantizeWeight(new Float32Array(64).fill(1), [8, 8], { quantType: 'nf4', doubleQuant: true });
    const b = new GraphBuilder();
    const w = qlora.emitDequant(b, 'w', [8, 8], { ...qlora.settingsOf(s), offset: null });
    const g = b.build({ out: w });
    expect(() => runGraph(g, {}, new MapWeightStore(quantStateToTensors('w', s)))).toThrow(
      /offset is unknown/,
    );
  });
});
