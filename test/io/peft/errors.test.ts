import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { FormatError } from '../../../src/io/errors.ts';
import { readPeftAdapter, writePeftAdapter } from '../../../src/io/peft/index.ts';
import { writeSafetensors } from '../../../src/io/safetensors/index.ts';
import { type Tensor, tensor } from '../../../src/ir/tensor.ts';
import { useTmpDirs } from '../tmp.ts';

const tmp = useTmpDirs();
const q = 'model.layers.0.self_attn.q_proj';
const P = 'base_model.model.';

function adapterDir(config: object, tensors: Record<string, Tensor>): string {
  const dir = tmp();
  fs.writeFileSync(path.join(dir, 'adapter_config.json'), JSON.stringify(config));
  writeSafetensors(path.join(dir, 'adapter_model.safetensors'), tensors, { format: 'pt' });
  return dir;
}

describe('PEFT adapter errors', () => {
  it('missing adapter_config.json', () => {
    const dir = tmp();
    expect(() => readPeftAdapter(dir)).toThrow(FormatError);
    expect(() => readPeftAdapter(dir)).toThrow(/adapter_config\.json: missing: a PEFT adapter folder holds/);
  });

  it('missing weights, or only a pickle', () => {
    const dir = tmp();
    fs.writeFileSync(path.join(dir, 'adapter_config.json'), '{}');
    expect(() => readPeftAdapter(dir)).toThrow(/adapter_model\.safetensors: missing/);
    fs.writeFileSync(path.join(dir, 'adapter_model.bin'), '');
    expect(() => readPeftAdapter(dir)).toThrow(/safe_serialization=True/);
  });

  it('a bad config value names the key', () => {
    const dir = adapterDir({ r: 'eight' }, {});
    expect(() => readPeftAdapter(dir)).toThrow(/adapter_config\.json: 'r': invalid value/);
    expect(() => readPeftAdapter(adapterDir({ peft_type: 'IA3' }, {}))).toThrow(
      /'peft_type': peft_type 'IA3' is not supported/,
    );
    expect(() => readPeftAdapter(adapterDir({ rank_pattern: { '(': 2 } }, {}))).toThrow(
      /'rank_pattern\.\(': not a valid regular expression/,
    );
  });

  it('a key that is not LoRA-shaped names the file and key', () => {
    const withName = adapterDir({ r: 1 }, { [`${P}${q}.lora_A.default.weight`]: tensor('f32', [1, 2]) });
    expect(() => readPeftAdapter(withName)).toThrow(
      new RegExp(
        `adapter_model\\.safetensors: '${P}${q}\\.lora_A\\.default\\.weight': not a LoRA key PEFT writes`,
      ),
    );
    const noPrefix = adapterDir({ r: 1 }, { [`${q}.lora_A.weight`]: tensor('f32', [1, 2]) });
    expect(() => readPeftAdapter(noPrefix)).toThrow(/does not start with 'base_model\.model\.'/);
  });

  it('ranks disagreeing with r or rank_pattern name the key and the rule', () => {
    const t = {
      [`${P}${q}.lora_A.weight`]: tensor('f32', [4, 3]),
      [`${P}${q}.lora_B.weight`]: tensor('f32', [5, 4]),
    };
    expect(() => readPeftAdapter(adapterDir({ r: 8 }, t))).toThrow(
      new RegExp(
        `'${P}${q}\\.lora_A\\.weight': lora_A has rank 4 \\(shape \\[4,3\\]\\) but the config gives r = 8`,
      ),
    );
    expect(() => readPeftAdapter(adapterDir({ r: 4, rank_pattern: { q_proj: 2 } }, t))).toThrow(
      /rank_pattern\['q_proj'\] = 2 for module 'model\.layers\.0\.self_attn\.q_proj'/,
    );
    expect(
      readPeftAdapter(adapterDir({ r: 2, rank_pattern: { 'layers\\.0\\.self_attn\\.q_proj': 4 } }, t)).weights
        .size,
    ).toBe(2);
  });

  it('A without B, and a magnitude of the wrong size', () => {
    expect(() =>
      readPeftAdapter(adapterDir({ r: 1 }, { [`${P}${q}.lora_A.weight`]: tensor('f32', [1, 3]) })),
    ).toThrow(/lora_A has no matching lora_B for module/);
    const mag = adapterDir(
      { r: 1, use_dora: true },
      {
        [`${P}${q}.lora_A.weight`]: tensor('f32', [1, 3]),
        [`${P}${q}.lora_B.weight`]: tensor('f32', [5, 1]),
        [`${P}${q}.lora_magnitude_vector`]: tensor('f32', [3]),
      },
    );
    expect(() => readPeftAdapter(mag)).toThrow(
      /lora_magnitude_vector': lora_magnitude_vector must have shape \[5\]/,
    );
  });

  it('writing rejects tensors of another adapter and bad ranks before touching the disk', () => {
    const dir = path.join(tmp(), 'out');
    expect(() =>
      writePeftAdapter(dir, {
        config: { r: 1 },
        weights: { [`${q}.lora_A.other.weight`]: tensor('f32', [1, 3]) },
      }),
    ).toThrow(
      /'model\.layers\.0\.self_attn\.q_proj\.lora_A\.other\.weight': not a tensor of adapter 'default'/,
    );
    expect(() =>
      writePeftAdapter(dir, {
        config: { r: 2 },
        weights: {
          [`${q}.lora_A.default.weight`]: tensor('f32', [1, 3]),
          [`${q}.lora_B.default.weight`]: tensor('f32', [3, 1]),
        },
      }),
    ).toThrow(/lora_A has rank 1 .* r = 2/);
    expect(fs.existsSync(dir)).toBe(false);
  });

  it('a failure while writing leaves no adapter folder and no temp folder', () => {
    const parent = tmp();
    const failing: Tensor = {
      dtype: 'f32',
      shape: [3, 1],
      get data(): Float32Array {
        throw new Error('source went away');
      },
    };
    expect(() =>
      writePeftAdapter(path.join(parent, 'out'), {
        config: { r: 1 },
        weights: {
          [`${q}.lora_A.default.weight`]: tensor('f32', [1, 3]),
          [`${q}.lora_B.default.weight`]: failing,
        },
      }),
    ).toThrow(/source went away/);
    expect(fs.readdirSync(parent)).toEqual([]);
  });
});
