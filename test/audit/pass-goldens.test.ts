// Audit (issue 3, "Golden tests per pass"): test/golden covers dce, cse, fold,
// canonicalize, lora and lora-disable; these add input IR -> pipeline -> expected IR
// for lora-set-active, lora-merge-adapters (with the merged weight checked against
// W + s B A computed here) and qlora.
import { describe, expect, it } from 'vitest';
import { parseGraph } from '../../src/ir/parser.ts';
import { printGraph } from '../../src/ir/printer.ts';
import { tensor } from '../../src/ir/tensor.ts';
import { MapWeightStore } from '../../src/ir/weights.ts';
import '../../src/methods/index.ts';
import { runPipeline } from '../../src/passes/index.ts';

const ir = (lines: string[]) => `${lines.join('\n')}\n`;

const INPUT = ir([
  'graph {',
  '  %0 = input() {name="x"} : f32[2,8]',
  '  %1 = param() {name="m.q_proj.weight", role="frozen", init={kind="given"}} : f32[4,8] @m.q_proj',
  '  %2 = linear(%0, %1) {} : f32[2,4] @m.q_proj',
  '  %3 = silu(%2) {} : f32[2,4]',
  '  return y=%3',
  '}',
]);

const A = { name: 'lora', options: { r: 1, target_modules: ['q_proj'] } };
const B = { name: 'lora', options: { r: 2, lora_alpha: 8, target_modules: ['q_proj'], adapter_name: 'b' } };

describe('golden: lora-set-active', () => {
  it("keeps only adapter 'b' of two stacked adapters", () => {
    const { graph } = runPipeline(parseGraph(INPUT), [
      A,
      B,
      { name: 'lora-set-active', options: { adapters: ['b'] } },
    ]);
    const expected = ir([
      'graph {',
      '  %0 = input() {name="x"} : f32[2,8]',
      '  %1 = param() {name="m.q_proj.weight", role="frozen", init={kind="given"}} : f32[4,8] @m.q_proj',
      '  %2 = linear(%0, %1) {} : f32[2,4] @m.q_proj',
      '  %3 = param() {name="m.q_proj.lora_A.b.weight", role="trainable", init={kind="kaiming_uniform", a=2.23606797749979}} : f32[2,8] @m.q_proj.lora_A.b',
      '  %4 = linear(%0, %3) {} : f32[2,2] @m.q_proj.lora_A.b',
      '  %5 = param() {name="m.q_proj.lora_B.b.weight", role="trainable", init={kind="zeros"}} : f32[4,2] @m.q_proj.lora_B.b',
      '  %6 = linear(%4, %5) {} : f32[2,4] @m.q_proj.lora_B.b',
      '  %7 = scale(%6) {factor=4} : f32[2,4] @m.q_proj.lora_B.b',
      '  %8 = add(%2, %7) {} : f32[2,4] @m.q_proj',
      '  %9 = silu(%8) {} : f32[2,4]',
      '  return y=%9',
      '}',
    ]);
    expect(printGraph(graph)).toBe(expected);
    // Independently: the same as adding adapter 'b' alone.
    expect(printGraph(graph)).toBe(printGraph(runPipeline(parseGraph(INPUT), [B]).graph));
  });
});

describe('golden: lora-merge-adapters', () => {
  it('gives back the base graph, with W + s B A in the store (s = alpha / r = 4)', () => {
    const base = parseGraph(INPUT);
    const W = Array.from({ length: 32 }, (_, i) => (i % 7) / 4 - 0.75);
    const Bm = [0.5, -1, 0.25, 2, -0.5, 1, 1.5, 0]; // [4, 2]
    const Am = Array.from({ length: 16 }, (_, i) => (i % 5) / 2 - 1); // [2, 8]
    const weights = new MapWeightStore()
      .set('m.q_proj.weight', tensor('f32', [4, 8], W))
      .set('m.q_proj.lora_A.b.weight', tensor('f32', [2, 8], Am))
      .set('m.q_proj.lora_B.b.weight', tensor('f32', [4, 2], Bm));
    const adapted = runPipeline(base, [B]).graph;
    const merged = runPipeline(adapted, ['lora-merge-adapters'], { weights });
    expect(printGraph(merged.graph)).toBe(INPUT);
    const got = Array.from(merged.weights!.get('m.q_proj.weight')!.data);
    const want: number[] = [];
    for (let o = 0; o < 4; o++)
      for (let i = 0; i < 8; i++) {
        let ba = 0;
        for (let k = 0; k < 2; k++) ba += Bm[o * 2 + k] * Am[k * 8 + i];
        want.push(Math.fround(W[o * 8 + i] + 4 * ba));
      }
    expect(got).toHaveLength(32);
    got.forEach((v, j) => {
      expect(Math.abs(v - want[j]), `element ${j}`).toBeLessThanOrEqual(1e-6 * (1 + Math.abs(want[j])));
    });
    // The original store is untouched (passes are pure).
    expect(Array.from(weights.get('m.q_proj.weight')!.data)).toEqual(W.map(Math.fround));
  });
});

describe('golden: qlora', () => {
  it('NF4 with double quantization: packed codes, absmax chain, dequant_4bit feeding the same linear', () => {
    const weights = new MapWeightStore().set(
      'm.q_proj.weight',
      tensor(
        'f32',
        [4, 8],
        Array.from({ length: 32 }, (_, i) => i / 16 - 1),
      ),
    );
    const { graph } = runPipeline(parseGraph(INPUT), [{ name: 'qlora', options: { blocksize: 32 } }], {
      weights,
    });
    expect(printGraph(graph)).toBe(
      ir([
        'graph {',
        '  %0 = input() {name="x"} : f32[2,8]',
        '  %1 = param() {name="m.q_proj.weight", role="frozen", init={kind="given"}} : u8[16,1] @m.q_proj',
        '  %2 = param() {name="m.q_proj.weight.absmax", role="frozen", init={kind="given"}} : u8[1] @m.q_proj',
        '  %3 = param() {name="m.q_proj.weight.nested_absmax", role="frozen", init={kind="given"}} : f32[1] @m.q_proj',
        '  %4 = param() {name="m.q_proj.weight.nested_quant_map", role="frozen", init={kind="given"}} : f32[256] @m.q_proj',
        '  %5 = dequant_absmax(%2, %3, %4) {offset=1, nested_blocksize=256} : f32[1] @m.q_proj',
        '  %6 = dequant_4bit(%1, %5) {quant_type="nf4", blocksize=32, shape=[4, 8]} : f32[4,8] @m.q_proj',
        '  %7 = linear(%0, %6) {} : f32[2,4] @m.q_proj',
        '  %8 = silu(%7) {} : f32[2,4]',
        '  return y=%8',
        '}',
      ]),
    );
  });
});
