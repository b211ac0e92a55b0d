// PEFT's ADALORA adapter format: config with rank_pattern masks over init_r, tensors
// `base_model.model.<m>.lora_A|lora_B|lora_E` (no .weight, no adapter name), shapes
// checked against the masks; what disagrees is an error naming the file and key.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { readPeftAdapter, writePeftAdapter } from '../../../src/io/peft/index.ts';
import { SafetensorsFile, writeSafetensors } from '../../../src/io/safetensors/index.ts';
import { type Tensor, tensor } from '../../../src/ir/tensor.ts';
import { adaloraOptionsFromPeft } from '../../../src/methods/adalora/index.ts';
import { useTmpDirs } from '../tmp.ts';

const tmp = useTmpDirs();
const q = 'model.layers.0.self_attn.q_proj';
const P = 'base_model.model.';
const ones = (shape: number[]) =>
  tensor('f32', shape, new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(1));
const config = (extra: object = {}) => ({
  peft_type: 'ADALORA',
  init_r: 4,
  target_r: 2,
  total_step: 10,
  target_modules: ['q_proj'],
  rank_pattern: { [`${q}.lora_E`]: [true, false, true, false] },
  ...extra,
});

function adapterDir(cfg: object, tensors: Record<string, Tensor>): string {
  const dir = tmp();
  fs.writeFileSync(path.join(dir, 'adapter_config.json'), JSON.stringify(cfg));
  writeSafetensors(path.join(dir, 'adapter_model.safetensors'), tensors, { format: 'pt' });
  return dir;
}

const kept = {
  [`${P}${q}.lora_A`]: ones([2, 3]),
  [`${P}${q}.lora_E`]: ones([2, 1]),
  [`${P}${q}.lora_B`]: ones([5, 2]),
};

describe('PEFT ADALORA adapters', () => {
  it('writes and reads keys without .weight and the masks in rank_pattern', () => {
    const dir = tmp();
    writePeftAdapter(dir, {
      config: config(),
      weights: {
        [`${q}.lora_A.default`]: ones([2, 3]),
        [`${q}.lora_E.default`]: ones([2, 1]),
        [`${q}.lora_B.default`]: ones([5, 2]),
      },
    });
    expect(SafetensorsFile.open(path.join(dir, 'adapter_model.safetensors')).keys().sort()).toEqual(
      Object.keys(kept).sort(),
    );
    const back = readPeftAdapter(dir);
    expect([...back.weights.keys()].sort()).toEqual([
      `${q}.lora_A.default`,
      `${q}.lora_B.default`,
      `${q}.lora_E.default`,
    ]);
    expect(back.config).toMatchObject({
      peft_type: 'ADALORA',
      init_r: 4,
      rank_pattern: config().rank_pattern,
    });
  });

  it("reads an older PEFT's saved ranknum and ignores it", () => {
    const dir = adapterDir(config(), { ...kept, [`${P}${q}.ranknum`]: ones([1]) });
    expect(readPeftAdapter(dir).weights.has(`${q}.lora_A.default`)).toBe(true);
  });

  it('refuses masks of the wrong length, tensors that disagree with them, and keys of the other format', () => {
    const short = adapterDir(config({ rank_pattern: { [`${q}.lora_E`]: [true] } }), kept);
    expect(() => readPeftAdapter(short)).toThrow(
      /adapter_config\.json: 'rank_pattern\.model\.layers\.0\.self_attn\.q_proj\.lora_E': a mask of 1 entries, but init_r is 4/,
    );
    const wide = adapterDir(config(), { ...kept, [`${P}${q}.lora_A`]: ones([4, 3]) });
    expect(() => readPeftAdapter(wide)).toThrow(
      /'base_model\.model\.model\.layers\.0\.self_attn\.q_proj\.lora_A': has rank 4 .* rank_pattern\['model\.layers\.0\.self_attn\.q_proj\.lora_E'\] keeps 2/,
    );
    const lora = adapterDir(config(), {
      [`${P}${q}.lora_A.weight`]: ones([2, 3]),
      [`${P}${q}.lora_B.weight`]: ones([5, 2]),
    });
    expect(() => readPeftAdapter(lora)).toThrow(
      /a LoRA tensor \(lora_A \/ lora_B with \.weight\) in this ADALORA adapter; is its peft_type 'LORA'\?/,
    );
    const typed = adapterDir({ ...config(), peft_type: 'LORA', rank_pattern: {} }, kept);
    expect(() => readPeftAdapter(typed)).toThrow(
      /an AdaLoRA tensor .* in this LORA adapter; is its peft_type 'ADALORA'\?/,
    );
    const missing = adapterDir(config(), { [`${P}${q}.lora_A`]: ones([2, 3]) });
    expect(() => readPeftAdapter(missing)).toThrow(/has no matching lora_E \/ lora_B for module/);
  });

  it('a saved config PEFT itself refuses (use_dora, no total_step) is refused on load, naming the field', () => {
    const file = 'a/adapter_config.json';
    const dora = readPeftAdapter(adapterDir(config({ use_dora: true }), kept)).config;
    expect(() => adaloraOptionsFromPeft(dora, 'default', file)).toThrow(
      /'use_dora': AdaLoRA cannot be combined with DoRA/,
    );
    const noTotal = readPeftAdapter(adapterDir(config({ total_step: null }), kept)).config;
    expect(() => adaloraOptionsFromPeft(noTotal, 'default', file)).toThrow(
      /'total_step': missing: PEFT requires total_step/,
    );
  });
});
