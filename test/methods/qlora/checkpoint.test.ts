// bitsandbytes 4-bit checkpoints: `peftc quantize` writes the layout (keys, dtypes,
// shapes, quant_state JSON, quantization_config), reading it back gives the same
// dequantized weights and the same model outputs, a missing key names file and key;
// merge into f32 and back into 4-bit (with the rounding warning).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runGraph } from '../../../src/backends/cpu/index.ts';
import { quantStateFromTensors } from '../../../src/io/bitsandbytes.ts';
import { openCheckpoint, writeSafetensors } from '../../../src/io/safetensors/index.ts';
import { tensor } from '../../../src/ir/tensor.ts';
import { bindParams, MapWeightStore } from '../../../src/ir/weights.ts';
import '../../../src/methods/index.ts';
import { mergeQlora, qloraOptions, quantizeLinears } from '../../../src/methods/qlora/index.ts';
import { loadBnb4bitModel, quantizeCheckpoint } from '../../../src/models/bnb4bit.ts';
import { buildLlama, PRESETS, randomLlamaWeights, toHfConfig } from '../../../src/models/llama/index.ts';
import { runPipeline } from '../../../src/passes/pipeline.ts';
import { dequantizeWeight, quantizeWeight } from '../../../src/quant/quant-state.ts';
import { cli } from '../../cli/run-cli.ts';
import { useTmpDirs } from '../../io/tmp.ts';
import { expectClose } from '../../ops/case.ts';

const tiny = PRESETS.tiny;
const tmp = useTmpDirs();

function writeTiny(dir: string) {
  const w = randomLlamaWeights(tiny, 3);
  writeSafetensors(path.join(dir, 'model.safetensors'), w.map);
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(toHfConfig(tiny)));
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), '{}');
  return w;
}

const Q = 'model.layers.1.mlp.down_proj.weight';

describe('peftc quantize and loading bitsandbytes 4-bit checkpoints', () => {
  it('writes the bnb layout; reading it back gives the same dequantized weights and outputs', async () => {
    const src = tmp();
    const w = writeTiny(src);
    const out = path.join(tmp(), 'q');
    const r = await cli(['quantize', '--model', src, '--out', out, '--quant-type', 'nf4', '--double-quant']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    // Bits per parameter measured on the written buffers: ~4.127 with double quant (+ the
    // offset and small weights' nested absmax), 4.5 without.
    expect(r.stdout).toMatch(
      /quantized 14 linear weights .* to nf4 \+ double quant, blocksize 64; wrote .*\n4-bit base: 14 weights, \d+ params, \d+ bytes = 4\.1[2-9]\d bits\/param/,
    );
    const plain = await cli(['quantize', '--model', src, '--out', path.join(tmp(), 'p')]);
    expect(plain.stdout).toMatch(/4-bit base: 14 weights, \d+ params, \d+ bytes = 4\.500 bits\/param/);

    const cfg = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
    expect(cfg.quantization_config).toMatchObject({
      quant_method: 'bitsandbytes',
      load_in_4bit: true,
      bnb_4bit_quant_type: 'nf4',
      bnb_4bit_use_double_quant: true,
      bnb_4bit_compute_dtype: 'float32',
    });
    expect(fs.existsSync(path.join(out, 'tokenizer_config.json'))).toBe(true);
    const st = openCheckpoint(out);
    const keys = st.keys();
    expect(st.info(Q).fileDtype).toBe('U8');
    expect(st.info(Q).shape).toEqual([(64 * 128) / 2, 1]);
    for (const s of [
      'absmax',
      'quant_map',
      'nested_absmax',
      'nested_quant_map',
      'quant_state.bitsandbytes__nf4',
    ])
      expect(keys, s).toContain(`${Q}.${s}`);
    expect(st.info(`${Q}.absmax`).fileDtype).toBe('U8');
    expect(keys).toContain('lm_head.weight');
    expect(st.info('lm_head.weight').fileDtype).toBe('F32');
    expect(keys.filter((k) => k.endsWith('.quant_state.bitsandbytes__nf4')).length).toBe(14);
    const json = new TextDecoder().decode(st.read(`${Q}.quant_state.bitsandbytes__nf4`).data as Uint8Array);
    expect(json).toMatch(
      /^\{"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": \[64, 128\], "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": /,
    );

    // Same dequantized values as quantizing the source weight directly.
    const direct = quantizeWeight(w.get(Q)!.data as Float32Array, [64, 128], {
      quantType: 'nf4',
      doubleQuant: true,
    });
    const back = quantStateFromTensors(Q, (k) => st.get(k));
    expect(Array.from(dequantizeWeight(back))).toEqual(Array.from(dequantizeWeight(direct)));

    // Loading the dir: same outputs as quantizing the f32 model in memory.
    const m = loadBnb4bitModel(out)!;
    expect(m.qlora.quant_type).toBe('nf4');
    const g = buildLlama(m.config, { batch: 1, seq: 4 });
    const loaded = m.transform(g);
    const inMem = quantizeLinears(g, qloraOptions.parse({}), w);
    const feeds = { input_ids: tensor('i32', [1, 4], [1, 2, 3, 4]) };
    const a = runGraph(loaded.graph, feeds, loaded.weights!).logits;
    const b = runGraph(inMem.graph, feeds, inMem.weights!).logits;
    expect(Array.from(a.data)).toEqual(Array.from(b.data));
    expect(loadBnb4bitModel(src)).toBeUndefined();
  });

  it('fails on bad flags and existing output with clear messages', async () => {
    const src = tmp();
    writeTiny(src);
    const r1 = await cli(['quantize', '--model', src, '--out', path.join(tmp(), 'x'), '--blocksize', '48']);
    expect(r1.code).toBe(2); // a usage error
    expect(r1.stderr).toMatch(/--blocksize must be one of 32, 64/);
    const r2 = await cli(['quantize', '--model', src, '--out', src]);
    expect(r2.stderr).toMatch(/already exists/);
  });

  it('a checkpoint with a missing key fails naming the file and the key', () => {
    const src = tmp();
    writeTiny(src);
    const out = path.join(tmp(), 'q');
    quantizeCheckpoint(src, out, { quantType: 'fp4', doubleQuant: false });
    const file = path.join(out, 'model.safetensors');
    const st = openCheckpoint(out);
    const kept = new Map(
      st
        .keys()
        .filter((k) => k !== `${Q}.absmax`)
        .map((k) => [k, st.read(k)] as const),
    );
    fs.rmSync(file);
    writeSafetensors(file, kept);
    const m = loadBnb4bitModel(out)!;
    expect(() => m.transform(buildLlama(m.config, { batch: 1, seq: 2 }))).toThrow(
      `${file}: '${Q}.absmax': missing (needed by ${Q}.quant_state.bitsandbytes__fp4)`,
    );
  });
});

describe('qlora-merge', () => {
  const g = buildLlama(tiny, { batch: 1, seq: 4 });
  const feeds = { input_ids: tensor('i32', [1, 4], [5, 6, 7, 8]) };
  const lora = {
    name: 'lora',
    options: { r: 4, lora_alpha: 8, target_modules: ['q_proj', 'down_proj'], init_lora_weights: false },
  };

  function adapted() {
    const p = runPipeline(g, [{ name: 'qlora', options: {} }, lora], {
      weights: randomLlamaWeights(tiny, 0),
      log: () => {},
    });
    const w = bindParams(p.graph, p.weights!, 1);
    // Larger B so the merge visibly changes the weights.
    for (const n of w.names()) {
      const d = w.get(n)!.data;
      if (n.includes('lora_B')) for (let i = 0; i < d.length; i++) d[i] *= 5;
    }
    return { graph: p.graph, weights: w };
  }

  it('into float equals the unmerged forward', () => {
    const { graph, weights } = adapted();
    const want = runGraph(graph, feeds, weights, { precision: 'f64' }).logits;
    const m = mergeQlora(graph, { merge_into: 'float' }, weights);
    expect(m.graph.ofOp('dequant_4bit').length).toBe(14 - 4);
    expect(m.graph.params().some((p) => String(p.attrs.name).includes('lora_'))).toBe(false);
    const got = runGraph(m.graph, feeds, m.weights!, { precision: 'f64' }).logits;
    expectClose(got, want, 1e-6, 'merged float');
  });

  it('into 4-bit requantizes and warns with the max abs change', () => {
    const { graph, weights } = adapted();
    const lines: string[] = [];
    const m = mergeQlora(graph, { merge_into: '4bit' }, weights, (l) => lines.push(l));
    expect(m.graph.ofOp('dequant_4bit').length).toBe(14);
    expect(lines.join('\n')).toMatch(
      /warning: merging into 4-bit requantizes 4 weight\(s\).*max \|change\| = \d\.\d{3}e-\d+/,
    );
    expect(m.report.maxAbsChange).toBeGreaterThan(0);
    // The stored values are the requantized merged weight: within the reported bound of float merge.
    const f = mergeQlora(graph, { merge_into: 'float' }, weights);
    const name = 'model.layers.0.self_attn.q_proj.weight';
    const q = dequantizeWeight(quantStateFromTensors(name, (k) => m.weights!.get(k)));
    const exact = f.weights!.get(name)!.data;
    let worst = 0;
    for (let i = 0; i < q.length; i++) worst = Math.max(worst, Math.abs(q[i] - exact[i]));
    expect(worst).toBeGreaterThan(0);
    expect(worst).toBeLessThanOrEqual(m.report.maxAbsChange);
    // Runs: the merged 4-bit graph binds the requantized tensors.
    expect(runGraph(m.graph, feeds, m.weights!).logits.shape).toEqual([1, 4, tiny.vocabSize]);
    expect(() => mergeQlora(g, { merge_into: 'float' }, new MapWeightStore())).toThrow(
      /no LoRA adapter on a 4-bit linear/,
    );
  });
});
