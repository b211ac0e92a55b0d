// What savePeftAdapter writes, compared with what PEFT's save_pretrained writes for the
// same LoraConfig (read from huggingface/peft main: tuners/tuners_utils.py inject_adapter,
// _maybe_include_all_linear_layers, _find_minimal_target_modules; utils/save_and_load.py
// get_peft_model_state_dict).
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runGraph } from '../../src/backends/cpu/index.ts';
import { SafetensorsFile } from '../../src/io/safetensors/file.ts';
import { tensor } from '../../src/ir/tensor.ts';
import { bindParams } from '../../src/ir/weights.ts';
import { injectLora, type LoraOptionsInput, loraOptions } from '../../src/methods/lora/index.ts';
import { attachPeftAdapter, savePeftAdapter } from '../../src/models/adapters.ts';
import { buildLlama, presetConfig, randomLlamaWeights } from '../../src/models/llama/index.ts';

const ids = [256, 10, 20, 30, 40, 50];
const feeds = { input_ids: tensor('i32', [1, ids.length], ids) };

function train(layers: number, o: LoraOptionsInput) {
  const c = { ...presetConfig('tiny'), numLayers: layers };
  const base = randomLlamaWeights(c, 1);
  const g = buildLlama(c, { batch: 1, seq: ids.length });
  const opts = loraOptions.parse({ r: 4, lora_alpha: 8, init_lora_weights: false, ...o });
  const injected = injectLora(g, opts, base);
  const trained = bindParams(injected.graph, injected.weights!, 5);
  const dir = mkdtempSync(join(tmpdir(), 'peftc-peft-'));
  savePeftAdapter(dir, injected.graph, (n) => trained.get(n)!, opts, 'preset:tiny');
  const config = JSON.parse(readFileSync(join(dir, 'adapter_config.json'), 'utf8'));
  const st = SafetensorsFile.open(join(dir, 'adapter_model.safetensors'));
  return { g, base, injected, trained, dir, config, st };
}

describe('savePeftAdapter writes what PEFT writes', () => {
  it('LoRA on embed_tokens: lora_embedding_A/B and (save_embedding_layers="auto") the base_layer weight', () => {
    // get_peft_model_state_dict saves <m>.lora_embedding_A / _B (Embedding params have no
    // .weight), and, because "embed_tokens" is in target_modules, the wrapped embedding's
    // base_layer.weight too.
    const { g, base, injected, trained, dir, st } = train(2, { target_modules: ['embed_tokens', 'q_proj'] });
    const keys = st.keys();
    expect(keys).toContain('base_model.model.model.embed_tokens.lora_embedding_A');
    expect(keys).toContain('base_model.model.model.embed_tokens.lora_embedding_B');
    expect(keys).toContain('base_model.model.model.embed_tokens.base_layer.weight');
    expect(st.info('base_model.model.model.embed_tokens.lora_embedding_A').shape).toEqual([4, 259]);
    expect(st.info('base_model.model.model.embed_tokens.lora_embedding_B').shape).toEqual([64, 4]);
    expect(keys.filter((k) => k.includes('lm_head'))).toEqual([]);
    // Non-vacuous: the embedding adapter changes the output, and attaching reproduces it.
    const want = runGraph(injected.graph, feeds, trained).logits;
    const attached = attachPeftAdapter(g, base, dir);
    expect(Array.from(runGraph(attached.graph, feeds, attached.weights).logits.data)).toEqual(
      Array.from(want.data),
    );
  });

  it('no embedding base weight when embeddings are not targeted', () => {
    const { st } = train(2, { target_modules: ['q_proj', 'v_proj'] });
    expect(st.keys().some((k) => k.includes('base_layer'))).toBe(false);
  });

  it('"all-linear" is saved expanded to the full names it selected (under 20: as they are)', () => {
    // inject_adapter mutates peft_config.target_modules via _maybe_include_all_linear_layers,
    // and save_pretrained writes that config: the module names, lm_head excluded.
    const { config } = train(2, { target_modules: 'all-linear' });
    const want = [0, 1].flatMap((i) =>
      ['q_proj', 'k_proj', 'v_proj', 'o_proj']
        .map((p) => `model.layers.${i}.self_attn.${p}`)
        .concat(['gate_proj', 'up_proj', 'down_proj'].map((p) => `model.layers.${i}.mlp.${p}`)),
    );
    expect([...config.target_modules].sort()).toEqual(want.sort());
  });

  it('"all-linear" with 20 or more linears is condensed to the minimal suffixes', () => {
    // 3 layers x 7 = 21 >= MIN_TARGET_MODULES_FOR_OPTIMIZATION: _find_minimal_target_modules.
    const { g, base, injected, trained, dir, config } = train(3, { target_modules: 'all-linear' });
    expect([...config.target_modules].sort()).toEqual(
      ['down_proj', 'gate_proj', 'k_proj', 'o_proj', 'q_proj', 'up_proj', 'v_proj'].sort(),
    );
    // The saved form selects the same modules when read back.
    const attached = attachPeftAdapter(g, base, dir);
    expect(Array.from(runGraph(attached.graph, feeds, attached.weights).logits.data)).toEqual(
      Array.from(runGraph(injected.graph, feeds, trained).logits.data),
    );
  });

  it('a short list and a regex are saved as given; task_type defaults to CAUSAL_LM', () => {
    const a = train(2, { target_modules: ['q_proj', 'v_proj'] }).config;
    expect(a.target_modules).toEqual(['q_proj', 'v_proj']);
    expect(a.task_type).toBe('CAUSAL_LM');
    expect(a.inference_mode).toBe(true);
    const b = train(2, { target_modules: '.*\\.(q|v)_proj', task_type: 'FEATURE_EXTRACTION' }).config;
    expect(b.target_modules).toBe('.*\\.(q|v)_proj');
    expect(b.task_type).toBe('FEATURE_EXTRACTION');
  });
});

describe('modules_to_save on a tied embedding (Llama 3.2 style)', () => {
  it('lm_head keeps the frozen original; only embed_tokens reads the trainable copy', () => {
    // PEFT's ModulesToSaveWrapper deep-copies embed_tokens; lm_head still holds the tied
    // original Parameter (utils/other.py; tuners_utils.py _check_tied_modules only warns
    // unless ensure_weight_tying=True).
    const c = { ...presetConfig('tiny'), tieWordEmbeddings: true };
    const base = randomLlamaWeights(c, 1);
    const g = buildLlama(c, { batch: 1, seq: ids.length });
    const opts = loraOptions.parse({ target_modules: ['q_proj'], modules_to_save: ['embed_tokens'] });
    const { graph } = injectLora(g, opts, base);
    const weightOf = (op: string, scope: string) => {
      const n = graph.nodes.find((x) => x.op === op && x.scope === scope)!;
      const w = graph.node(n.inputs[op === 'linear' ? 1 : 0]);
      return { name: w.attrs.name, role: w.attrs.role };
    };
    expect(weightOf('embedding', 'model.embed_tokens')).toEqual({
      name: 'model.embed_tokens.modules_to_save.default.weight',
      role: 'trainable',
    });
    expect(weightOf('linear', 'lm_head')).toEqual({ name: 'model.embed_tokens.weight', role: 'frozen' });
  });
});
