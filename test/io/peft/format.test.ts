// The on-disk format, checked key by key against what PEFT's save_pretrained writes.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  loraConfig,
  rankFor,
  readPeftAdapter,
  scalingFor,
  writePeftAdapter,
} from '../../../src/io/peft/index.ts';
import { SafetensorsFile, writeSafetensors } from '../../../src/io/safetensors/index.ts';
import { type Tensor, tensor } from '../../../src/ir/tensor.ts';
import { useTmpDirs } from '../tmp.ts';

const tmp = useTmpDirs();
const q = 'model.layers.0.self_attn.q_proj';
const ones = (shape: number[]) => tensor('f32', shape, new Array(shape.reduce((a, b) => a * b, 1)).fill(1));

describe('PEFT adapter format', () => {
  it('writes the keys, dtypes, metadata and config PEFT writes', () => {
    const dir = path.join(tmp(), 'adapter');
    const weights = new Map<string, Tensor>([
      [`${q}.lora_A.default.weight`, ones([2, 4])],
      [`${q}.lora_B.default.weight`, ones([6, 2])],
      [`${q}.lora_magnitude_vector.default.weight`, ones([6])],
      [`${q}.bias`, ones([6])],
      ['model.embed_tokens.lora_embedding_A.default', ones([2, 10])],
      ['model.embed_tokens.lora_embedding_B.default', ones([4, 2])],
      ['lm_head.modules_to_save.default.weight', tensor('bf16', [10, 4])],
      ['model.norm.bias', ones([4])],
    ]);
    const written = writePeftAdapter(dir, {
      config: {
        r: 2,
        lora_alpha: 4,
        use_dora: true,
        bias: 'all',
        target_modules: ['q_proj', 'embed_tokens'],
        modules_to_save: ['lm_head'],
      },
      weights,
    });
    expect(written).toBe(dir);
    expect(fs.readdirSync(dir).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
    const st = SafetensorsFile.open(path.join(dir, 'adapter_model.safetensors'));
    expect(st.metadata).toEqual({ format: 'pt' });
    expect(new Set(st.keys())).toEqual(
      new Set([
        `base_model.model.${q}.lora_A.weight`,
        `base_model.model.${q}.lora_B.weight`,
        `base_model.model.${q}.lora_magnitude_vector`,
        `base_model.model.${q}.base_layer.bias`,
        'base_model.model.model.embed_tokens.lora_embedding_A',
        'base_model.model.model.embed_tokens.lora_embedding_B',
        'base_model.model.lm_head.weight',
        'base_model.model.model.norm.bias',
      ]),
    );
    for (const k of st.keys()) expect(st.info(k).fileDtype).toBe('F32');
    const text = fs.readFileSync(path.join(dir, 'adapter_config.json'), 'utf8');
    const cfg = JSON.parse(text);
    expect(Object.keys(cfg)).toEqual([...Object.keys(cfg)].sort());
    expect(text.startsWith('{\n  "alpha_pattern": {},\n  "base_model_name_or_path": null,\n')).toBe(true);
    expect(cfg).toMatchObject({ peft_type: 'LORA', r: 2, lora_alpha: 4, use_dora: true, lora_dropout: 0 });

    const back = readPeftAdapter(dir);
    expect(new Set(back.weights.keys())).toEqual(new Set(weights.keys()));
    expect(back.weights.get('lm_head.modules_to_save.default.weight')?.dtype).toBe('f32');
  });

  it('reads what PEFT and older tools write: missing/unknown config keys, alternative key forms', () => {
    const dir = tmp();
    fs.writeFileSync(
      path.join(dir, 'adapter_config.json'),
      JSON.stringify({
        peft_type: 'LORA',
        r: 2,
        target_modules: ['q_proj'],
        modules_to_save: ['score'],
        some_future_key: { x: 1 },
      }),
    );
    writeSafetensors(path.join(dir, 'adapter_model.safetensors'), {
      [`base_model.model.${q}.lora_A.weight`]: ones([2, 3]),
      [`base_model.model.${q}.lora_B.weight`]: tensor('bf16', [5, 2], new Array(10).fill(0.5)),
      [`base_model.model.${q}.lora_magnitude_vector.weight`]: ones([5]),
      'base_model.model.score.modules_to_save.default.weight': ones([2, 3]),
      'base_model.model.model.score.bias': ones([2]),
    });
    const a = readPeftAdapter(dir);
    expect(a.config.lora_alpha).toBe(8);
    expect(a.config.bias).toBe('none');
    expect(a.config.rank_pattern).toEqual({});
    expect((a.config as Record<string, unknown>).some_future_key).toEqual({ x: 1 });
    expect([...a.weights.keys()].sort()).toEqual(
      [
        `${q}.lora_A.default.weight`,
        `${q}.lora_B.default.weight`,
        `${q}.lora_magnitude_vector.default.weight`,
        'score.modules_to_save.default.weight',
        'model.score.modules_to_save.default.bias',
      ].sort(),
    );
    const b = a.weights.get(`${q}.lora_B.default.weight`)!;
    expect(b.dtype).toBe('f32');
    expect(Array.from(b.data)).toEqual(new Array(10).fill(0.5));
    // Unknown keys survive a write.
    const out = path.join(tmp(), 'again');
    writePeftAdapter(out, { config: a.config, weights: a.weights });
    expect(
      JSON.parse(fs.readFileSync(path.join(out, 'adapter_config.json'), 'utf8')).some_future_key,
    ).toEqual({ x: 1 });
  });

  it('a non-default adapter goes in a subfolder named after it, beside the default one', () => {
    const dir = tmp();
    const w = (a: string) => ({
      [`${q}.lora_A.${a}.weight`]: ones([1, 3]),
      [`${q}.lora_B.${a}.weight`]: ones([3, 1]),
    });
    writePeftAdapter(dir, { config: { r: 1 }, weights: w('default') });
    expect(writePeftAdapter(dir, { config: { r: 1 }, weights: w('other'), adapterName: 'other' })).toBe(
      path.join(dir, 'other'),
    );
    expect(fs.readdirSync(dir).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors', 'other']);
    expect([...readPeftAdapter(dir, 'other').weights.keys()]).toEqual(Object.keys(w('other')));
    // Re-writing the default adapter keeps the subfolder.
    writePeftAdapter(dir, { config: { r: 1 }, weights: w('default') });
    expect(fs.existsSync(path.join(dir, 'other', 'adapter_config.json'))).toBe(true);
  });

  it('rank_pattern / alpha_pattern follow PEFT: (.*\\.)?(key)$ must match the whole module name, first key wins', () => {
    const c = loraConfig({
      r: 8,
      lora_alpha: 16,
      rank_pattern: { 'layers.1.self_attn.q_proj': 4, q_proj: 2 },
      alpha_pattern: { v_proj: 3 },
    });
    expect(rankFor(c, 'model.layers.1.self_attn.q_proj')).toBe(4);
    expect(rankFor(c, 'model.layers.11.self_attn.q_proj')).toBe(2);
    expect(rankFor(c, 'model.layers.0.self_attn.q_proj')).toBe(2);
    expect(rankFor(c, 'model.layers.0.self_attn.xq_proj')).toBe(8); // must follow a dot
    expect(rankFor(c, 'model.layers.0.self_attn.q_proj2')).toBe(8); // must end there
    expect(scalingFor(c, 'model.layers.0.self_attn.v_proj')).toBe(3 / 8);
    expect(scalingFor({ ...c, use_rslora: true }, 'model.layers.0.self_attn.o_proj')).toBe(16 / Math.sqrt(8));
  });
});
