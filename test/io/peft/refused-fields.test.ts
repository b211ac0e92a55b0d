// The table of LoraConfig fields peftc does not implement: which values are refused,
// which stay accepted (PEFT's "off" values, implemented values, unknown keys).
import { describe, expect, it } from 'vitest';
import { FormatError } from '../../../src/io/errors.ts';
import { checkImplemented, loraConfig, refusedField } from '../../../src/io/peft/index.ts';

/** Every value the issue names, and the other LoraConfig fields that change the math. */
const REFUSED: ReadonlyArray<readonly [string, unknown]> = [
  ['init_lora_weights', 'corda'],
  ['init_lora_weights', 'eva'],
  ['init_lora_weights', 'loftq'],
  ['init_lora_weights', 'lora_ga'],
  ['init_lora_weights', 'no_such_init'],
  ['fan_in_fan_out', true],
  ['lora_bias', true],
  ['layer_replication', [[0, 1]]],
  ['use_qalora', true],
  ['trainable_token_indices', [1, 2]],
  ['trainable_token_indices', { embed_tokens: [1] }],
  ['target_parameters', ['mlp.experts.down_proj']],
  ['alora_invocation_tokens', [5, 6]],
  ['use_bdlora', { target_modules_bd_a: ['q_proj'] }],
  ['kasa_config', { beta: 1 }],
  ['arrow_config', { top_k: 2 }],
  ['monteclora_config', { num_samples: 2 }],
  ['velora_config', { num_groups: 2 }],
];

const ACCEPTED: ReadonlyArray<readonly [string, unknown]> = [
  // Implemented: the residual is recomputed on load (methods/lora/residual-init.ts).
  ['init_lora_weights', 'pissa'],
  ['init_lora_weights', 'pissa_niter_4'],
  ['init_lora_weights', 'olora'],
  ['init_lora_weights', true],
  ['init_lora_weights', false],
  ['init_lora_weights', 'gaussian'],
  ['init_lora_weights', 'orthogonal'],
  ['init_lora_weights', 'mica'],
  ['use_dora', false],
  ['fan_in_fan_out', false],
  ['lora_bias', false],
  ['layer_replication', null],
  ['use_qalora', false],
  ['qalora_group_size', 32],
  ['trainable_token_indices', null],
  ['trainable_token_indices', []],
  ['target_parameters', null],
  ['target_parameters', []],
  ['alora_invocation_tokens', null],
  ['use_bdlora', null],
  ['arrow_config', null],
  ['velora_config', null],
  ['loftq_config', {}],
  ['eva_config', null],
  ['megatron_config', null],
  ['megatron_core', 'megatron.core'],
  ['runtime_config', { ephemeral_gpu_offload: false }],
  ['ensure_weight_tying', false],
  ['use_rslora', true],
  ['a_key_from_a_newer_peft', { anything: 1 }],
];

describe('LoraConfig fields peftc does not implement', () => {
  it.each(REFUSED)('refuses %s = %j, naming the file, field and value', (field, value) => {
    const r = refusedField(loraConfig({ [field]: value }));
    expect(r?.field).toBe(field);
    let err: unknown;
    try {
      checkImplemented(loraConfig({ [field]: value }), 'a/adapter_config.json');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(FormatError);
    const msg = (err as Error).message;
    expect(msg).toContain(`a/adapter_config.json: '${field}': ${JSON.stringify(value)} means `);
    expect(msg).toMatch(/is not supported yet; \S/);
    expect(msg).not.toContain('\n');
  });

  it.each(ACCEPTED)('accepts %s = %j', (field, value) => {
    expect(refusedField(loraConfig({ [field]: value }))).toBeUndefined();
  });

  it('PEFT defaults are accepted', () => {
    expect(refusedField(loraConfig())).toBeUndefined();
  });
});
