// Target selection, checked against what PEFT's check_target_module_exists /
// get_pattern_key give on LLaMA module names (expected lists written out by hand
// from PEFT's rules, not computed by the code under test).
import { describe, expect, it } from 'vitest';
import {
  expandTargets,
  isTargeted,
  layerIndex,
  patternValue,
  selectTargets,
  type TargetConfig,
  TargetError,
} from '../../src/methods/index.ts';
import { buildLlama, presetConfig } from '../../src/models/llama/index.ts';

const g = buildLlama(presetConfig('tiny'), { batch: 1, seq: 4 });
const pick = (cfg: TargetConfig) => selectTargets(g, cfg).map((n) => n.scope);
const L = (i: number, m: string) => `model.layers.${i}.${m}`;

describe('target_modules (PEFT rules on LLaMA names)', () => {
  it('a list entry matches names ending in "." + entry', () => {
    expect(pick({ target_modules: ['q_proj', 'v_proj'] })).toEqual([
      L(0, 'self_attn.q_proj'),
      L(0, 'self_attn.v_proj'),
      L(1, 'self_attn.q_proj'),
      L(1, 'self_attn.v_proj'),
    ]);
    // "proj" is not a dotted suffix of anything, "_proj" neither.
    expect(() => pick({ target_modules: ['proj'] })).toThrow(TargetError);
    expect(isTargeted({ target_modules: ['self_attn.q_proj'] }, L(0, 'self_attn.q_proj'))).toBe(true);
    expect(isTargeted({ target_modules: ['attn.q_proj'] }, L(0, 'self_attn.q_proj'))).toBe(false);
    expect(isTargeted({ target_modules: ['lm_head'] }, 'lm_head')).toBe(true);
  });

  it('one string is a regex that must match the whole name', () => {
    expect(pick({ target_modules: '.*\\.1\\.self_attn\\.(q|k)_proj' })).toEqual([
      L(1, 'self_attn.q_proj'),
      L(1, 'self_attn.k_proj'),
    ]);
    // A partial match is not enough (re.fullmatch).
    expect(isTargeted({ target_modules: 'q_proj' }, L(0, 'self_attn.q_proj'))).toBe(false);
    expect(isTargeted({ target_modules: '.*q_proj' }, L(0, 'self_attn.q_proj'))).toBe(true);
    expect(isTargeted({ target_modules: '.*q_pro' }, L(0, 'self_attn.q_proj'))).toBe(false);
  });

  it('all-linear is every linear except the output head', () => {
    const expected = [0, 1].flatMap((i) => [
      L(i, 'self_attn.q_proj'),
      L(i, 'self_attn.k_proj'),
      L(i, 'self_attn.v_proj'),
      L(i, 'self_attn.o_proj'),
      L(i, 'mlp.gate_proj'),
      L(i, 'mlp.up_proj'),
      L(i, 'mlp.down_proj'),
    ]);
    expect(pick({ target_modules: 'all-linear' }).sort()).toEqual(expected.sort());
    expect(pick({ target_modules: 'ALL-LINEAR' })).not.toContain('lm_head');
    expect(expandTargets(g, { target_modules: 'all-linear' }).target_modules).not.toContain('lm_head');
  });

  it('exclude_modules wins (list by suffix, string as a full-match regex)', () => {
    expect(
      pick({
        target_modules: 'all-linear',
        exclude_modules: ['mlp.down_proj', 'k_proj', 'gate_proj', 'up_proj'],
      }),
    ).toEqual(
      [0, 1].flatMap((i) => [L(i, 'self_attn.q_proj'), L(i, 'self_attn.v_proj'), L(i, 'self_attn.o_proj')]),
    );
    expect(pick({ target_modules: ['q_proj', 'v_proj'], exclude_modules: '.*\\.0\\..*' })).toEqual([
      L(1, 'self_attn.q_proj'),
      L(1, 'self_attn.v_proj'),
    ]);
  });

  it('layers_to_transform selects by the index after .layers. (int or list), with or without layers_pattern', () => {
    expect(pick({ target_modules: ['q_proj', 'v_proj'], layers_to_transform: 1 })).toEqual([
      L(1, 'self_attn.q_proj'),
      L(1, 'self_attn.v_proj'),
    ]);
    expect(
      pick({ target_modules: ['q_proj'], layers_to_transform: [0, 1], layers_pattern: 'layers' }),
    ).toEqual([L(0, 'self_attn.q_proj'), L(1, 'self_attn.q_proj')]);
    expect(() => pick({ target_modules: ['q_proj'], layers_to_transform: [5] })).toThrow(
      /not found.*layers_to_transform \[5\]/,
    );
    // A pattern that is not in the name: no index, no match.
    expect(
      isTargeted(
        { target_modules: ['q_proj'], layers_to_transform: 0, layers_pattern: 'h' },
        L(0, 'self_attn.q_proj'),
      ),
    ).toBe(false);
    // PEFT skips the layer filter when a list entry equals the whole name.
    expect(
      isTargeted(
        { target_modules: [L(1, 'self_attn.q_proj')], layers_to_transform: 0 },
        L(1, 'self_attn.q_proj'),
      ),
    ).toBe(true);
    // The first numbered segment is the layer (lazy .*?), not a nested expert index.
    expect(layerIndex('model.layers.3.mlp.experts.7.w1')).toBe(3);
    expect(layerIndex('model.layers.3.mlp.experts.7.w1', ['experts'])).toBe(7);
    expect(layerIndex('lm_head')).toBeUndefined();
  });

  it('modules_to_save are never adapter targets', () => {
    expect(
      isTargeted({ target_modules: ['q_proj'], modules_to_save: ['q_proj'] }, L(0, 'self_attn.q_proj')),
    ).toBe(false);
    expect(
      isTargeted({ target_modules: ['q_proj'], modules_to_save: ['lm_head'] }, L(0, 'self_attn.q_proj')),
    ).toBe(true);
  });

  it('says which names exist when nothing matches', () => {
    expect(() => pick({ target_modules: ['query'] })).toThrow(
      /target modules \["query"\] not found in the model; module names look like: model\.layers\.0\.self_attn\.q_proj/,
    );
  });
});

describe('rank_pattern / alpha_pattern (get_pattern_key)', () => {
  const rp = { q_proj: 4, 'layers\\.1\\.self_attn\\.v_proj': 16, '.*mlp.*': 2 };
  it('matches a key when (.*\\.)?(key)$ matches the whole name; first key wins; else the default', () => {
    expect(patternValue(rp, L(0, 'self_attn.q_proj'), 8)).toBe(4);
    expect(patternValue(rp, L(1, 'self_attn.v_proj'), 8)).toBe(16);
    expect(patternValue(rp, L(0, 'self_attn.v_proj'), 8)).toBe(8);
    expect(patternValue(rp, L(0, 'mlp.down_proj'), 8)).toBe(2);
    // "proj" alone does not match "q_proj" (needs a dot before the key).
    expect(patternValue({ proj: 1 }, L(0, 'self_attn.q_proj'), 8)).toBe(8);
    expect(patternValue({ k_proj: 1, 'self_attn.k_proj': 2 }, L(0, 'self_attn.k_proj'), 8)).toBe(1);
    expect(patternValue(undefined, 'x', 8)).toBe(8);
  });
});
