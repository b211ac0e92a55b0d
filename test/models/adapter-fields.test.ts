// Attaching a saved adapter refuses what it cannot compute as PEFT does (fields peftc
// does not implement, tensors that would bind to nothing) and accepts "off" values.
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runGraph } from '../../src/backends/cpu/index.ts';
import { tensor } from '../../src/ir/tensor.ts';
import { bindParams } from '../../src/ir/weights.ts';
import { injectLora, loraOptions } from '../../src/methods/lora/index.ts';
import { attachPeftAdapter, savePeftAdapter } from '../../src/models/adapters.ts';
import { buildLlama, presetConfig, randomLlamaWeights } from '../../src/models/llama/index.ts';

const c = presetConfig('tiny');
const ids = [256, 10, 20, 30];
const feeds = { input_ids: tensor('i32', [1, ids.length], ids) };
const base = randomLlamaWeights(c, 1);
const g = buildLlama(c, { batch: 1, seq: ids.length });
const opts = loraOptions.parse({
  r: 2,
  lora_alpha: 8,
  target_modules: ['q_proj', 'v_proj'],
  init_lora_weights: false,
});
const injected = injectLora(g, opts, base);
const trained = bindParams(injected.graph, injected.weights!, 5);
const saved = mkdtempSync(join(tmpdir(), 'peftc-fields-'));
savePeftAdapter(saved, injected.graph, (n) => trained.get(n)!, opts, null);
const original = JSON.parse(readFileSync(join(saved, 'adapter_config.json'), 'utf8'));

/** A copy of the saved adapter with config fields patched. */
function patched(fields: Record<string, unknown>): string {
  const dir = mkdtempSync(join(tmpdir(), 'peftc-fields-'));
  cpSync(saved, dir, { recursive: true });
  writeFileSync(join(dir, 'adapter_config.json'), JSON.stringify({ ...original, ...fields }));
  return dir;
}

describe('attaching an adapter: fields that change the math', () => {
  it.each([
    [{ init_lora_weights: 'corda' }, /'init_lora_weights': "corda" means CorDA .*residual/],
    [{ init_lora_weights: 'loftq' }, /'init_lora_weights': "loftq" means LoftQ/],
    [{ lora_bias: true }, /'lora_bias': true means a bias on lora_B/],
    [{ fan_in_fan_out: true }, /'fan_in_fan_out': true means/],
    [{ layer_replication: [[0, 1]] }, /'layer_replication': \[\[0,1\]\] means layer replication/],
    [{ peft_type: 'LOHA' }, /'peft_type': peft_type 'LOHA' is not supported/],
  ])('%j is refused with the file, field and value', (fields, says) => {
    const dir = patched(fields);
    expect(() => attachPeftAdapter(g, base, dir)).toThrow(says);
    expect(() => attachPeftAdapter(g, base, dir)).toThrow(`${dir}/adapter_config.json: '`);
  });

  it('the config is judged before the weights (a variant with extra tensors names its field)', () => {
    const dir = patched({ velora_config: { num_groups: 2 } });
    rmSync(join(dir, 'adapter_model.safetensors'));
    expect(() => attachPeftAdapter(g, base, dir)).toThrow(/'velora_config': .*not supported yet/);
  });

  it('off values, implemented values and unknown keys are accepted and change nothing', () => {
    const want = runGraph(attachPeftAdapter(g, base, saved).graph, feeds, trained).logits;
    const dir = patched({
      init_lora_weights: 'gaussian',
      use_dora: false,
      lora_bias: false,
      fan_in_fan_out: false,
      layer_replication: null,
      trainable_token_indices: null,
      target_parameters: [],
      alora_invocation_tokens: null,
      use_qalora: false,
      megatron_config: null,
      runtime_config: { ephemeral_gpu_offload: false },
      a_key_from_a_newer_peft: 3,
    });
    const a = attachPeftAdapter(g, base, dir);
    expect(runGraph(a.graph, feeds, a.weights).logits.data).toEqual(want.data);
  });

  it('a tensor that binds to no parameter is an error, not dropped', () => {
    // v_proj's tensors stay in the file but the config no longer targets v_proj.
    const dir = patched({ target_modules: ['q_proj'] });
    expect(() => attachPeftAdapter(g, base, dir)).toThrow(
      /adapter_model\.safetensors: 4 tensor\(s\) bind to no parameter .*v_proj\.lora_A\.default\.weight/,
    );
  });

  it("a tied lm_head's saved base copy is not an unbound tensor", () => {
    const tied = { ...c, tieWordEmbeddings: true };
    const tg = buildLlama(tied, { batch: 1, seq: ids.length });
    const tbase = randomLlamaWeights(tied, 2);
    const o = loraOptions.parse({ r: 2, target_modules: ['lm_head', 'q_proj'], init_lora_weights: false });
    const inj = injectLora(tg, o, tbase);
    const w = bindParams(inj.graph, inj.weights!, 5);
    const dir = mkdtempSync(join(tmpdir(), 'peftc-fields-'));
    savePeftAdapter(dir, inj.graph, (n) => w.get(n)!, o, null);
    const a = attachPeftAdapter(tg, tbase, dir);
    expect(a.tensors.has('lm_head.weight')).toBe(true);
    expect(runGraph(a.graph, feeds, a.weights).logits.data).toEqual(
      runGraph(inj.graph, feeds, w).logits.data,
    );
  });
});
