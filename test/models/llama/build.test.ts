import { describe, expect, it } from 'vitest';
import { buildLlama, PRESETS, parseLlamaConfig, presetConfig } from '../../../src/models/llama/index.ts';

describe('buildLlama', () => {
  it('names params and scopes exactly as HF does', () => {
    const g = buildLlama(presetConfig('tiny'), { batch: 1, seq: 8 });
    const names = g.params().map((p) => String(p.attrs.name));
    expect(names).toContain('model.embed_tokens.weight');
    expect(names).toContain('model.layers.0.self_attn.q_proj.weight');
    expect(names).toContain('model.layers.1.mlp.down_proj.weight');
    expect(names).toContain('model.layers.1.post_attention_layernorm.weight');
    expect(names).toContain('model.norm.weight');
    expect(names).toContain('lm_head.weight');
    const linearScopes = g.ofOp('linear').map((n) => n.scope);
    expect(linearScopes).toEqual([
      ...[0, 1].flatMap((i) =>
        [
          'self_attn.q_proj',
          'self_attn.k_proj',
          'self_attn.v_proj',
          'self_attn.o_proj',
          'mlp.gate_proj',
          'mlp.up_proj',
          'mlp.down_proj',
        ].map((m) => `model.layers.${i}.${m}`),
      ),
      'lm_head',
    ]);
    expect(g.output('logits').type.shape).toEqual([1, 8, 259]);
    // GQA: k_proj is [kv_heads * head_dim, hidden]
    const k = g.params().find((p) => p.attrs.name === 'model.layers.0.self_attn.k_proj.weight')!;
    expect(k.type.shape).toEqual([32, 64]);
  });

  it('ties lm_head to the embedding when configured', () => {
    const g = buildLlama({ ...presetConfig('tiny'), tieWordEmbeddings: true }, { batch: 1, seq: 4 });
    expect(g.params().some((p) => p.attrs.name === 'lm_head.weight')).toBe(false);
    const head = g.ofOp('linear').find((n) => n.scope === 'lm_head')!;
    expect(g.node(head.inputs[1]).attrs.name).toBe('model.embed_tokens.weight');
  });

  it('adds the causal-LM loss with labels', () => {
    const g = buildLlama(presetConfig('tiny'), { batch: 2, seq: 5 }, { loss: true });
    expect(g.output('loss').type.shape).toEqual([]);
    expect(g.inputs().map((n) => n.attrs.name)).toEqual(['input_ids', 'labels', 'step']);
  });

  it('builds an 8B graph from shapes only, quickly', () => {
    const t0 = performance.now();
    const g = buildLlama(PRESETS['llama-3-8b'], { batch: 1, seq: 4096 }, { loss: true });
    const ms = performance.now() - t0;
    expect(g.params().length).toBe(32 * 9 + 3);
    expect(ms).toBeLessThan(2000);
  });
});

describe('parseLlamaConfig', () => {
  const v4 = {
    model_type: 'llama',
    vocab_size: 100,
    hidden_size: 64,
    intermediate_size: 128,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    rms_norm_eps: 1e-5,
    rope_theta: 500000,
    rope_scaling: { type: 'linear', factor: 4 },
    torch_dtype: 'bfloat16',
    tie_word_embeddings: true,
    some_unknown_key: 1,
  };
  it('reads the transformers 4 dialect', () => {
    const c = parseLlamaConfig(v4);
    expect(c).toMatchObject({
      headDim: 16,
      numKvHeads: 2,
      ropeTheta: 500000,
      ropeLinearFactor: 4,
      torchDtype: 'bfloat16',
    });
  });
  it('reads the transformers 5 dialect', () => {
    const { rope_theta: _t, rope_scaling: _s, torch_dtype: _d, ...rest } = v4;
    const c = parseLlamaConfig({
      ...rest,
      rope_parameters: { rope_theta: 1e6, rope_type: 'linear', factor: 2 },
      dtype: 'float16',
    });
    expect(c).toMatchObject({ ropeTheta: 1e6, ropeLinearFactor: 2, torchDtype: 'float16' });
  });
  it('defaults kv heads and head_dim', () => {
    const { num_key_value_heads: _k, ...rest } = v4;
    expect(parseLlamaConfig(rest)).toMatchObject({ numKvHeads: 4, headDim: 16 });
  });
  it('names the file and key on bad input', () => {
    expect(() => parseLlamaConfig({ ...v4, hidden_size: 'big' }, 'm/config.json')).toThrow(
      /m\/config\.json: hidden_size/,
    );
    expect(() => parseLlamaConfig({ ...v4, rope_scaling: { rope_type: 'yarn', factor: 4 } })).toThrow(
      /rope type 'yarn'/,
    );
    expect(() => parseLlamaConfig({ ...v4, model_type: 'gpt2' })).toThrow(/not a LLaMA-family/);
    expect(() => parseLlamaConfig({ ...v4, num_key_value_heads: 3 })).toThrow(
      /multiple of num_key_value_heads/,
    );
  });
});
