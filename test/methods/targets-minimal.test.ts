// minimalTargetModules against the cases of PEFT's own test
// (tests/test_tuners_utils.py TestFindMinimalTargetModules, for
// tuners_utils.py _find_minimal_target_modules). Python's "{i}" there is a literal
// (no f-string), kept as is.
import { describe, expect, it } from 'vitest';
import { minimalTargetModules } from '../../src/methods/targets.ts';

const rep = (s: string, n: number) => Array.from({ length: n }, () => s);

const cases: [string[], string[], string[]][] = [
  [['bar'], [], ['bar']],
  [['foo'], ['bar'], ['foo']],
  [
    ['1.foo', '2.foo'],
    ['3.foo', '4.foo'],
    ['1.foo', '2.foo'],
  ],
  [['bar.baz'], ['foo.bar'], ['baz']],
  [
    ['1.foo', '2.foo', 'bar.baz'],
    ['3.foo', 'bar.bla'],
    ['1.foo', '2.foo', 'baz'],
  ],
  [
    ['a.b.c', 'd.e.f', 'g.h.i'],
    ['j.k.l', 'm.n.o'],
    ['c', 'f', 'i'],
  ],
  [
    ['a.b.c', 'd.e.f', 'g.h.i'],
    ['a.b.x', 'd.x.f', 'x.h.i'],
    ['c', 'e.f', 'g.h.i'],
  ],
  [['foo.bar.baz', 'qux.bar.baz'], ['baz.bar.foo'], ['baz']],
  [
    rep('model.decoder.layers.{i}.self_attn.k_proj', 12),
    [
      ...rep('model.decoder.layers.{i}.self_attn', 12),
      ...rep('model.decoder.layers.{i}.self_attn.v_proj', 12),
      ...rep('model.decoder.layers.{i}.self_attn.q_proj', 12),
    ],
    ['k_proj'],
  ],
  [
    rep('model.decoder.layers.{i}.self_attn.k_proj', 11),
    [
      'model.decoder.layers.5.self_attn.k_proj',
      ...rep('model.decoder.layers.{i}.self_attn', 12),
      ...rep('model.decoder.layers.{i}.self_attn.v_proj', 12),
    ],
    ['{i}.self_attn.k_proj'],
  ],
];

describe('minimalTargetModules (PEFT _find_minimal_target_modules)', () => {
  it.each(cases)('%j apart from %j -> %j', (targets, others, want) => {
    expect(minimalTargetModules(targets, others)).toEqual([...want].sort());
  });

  it('real layer indices: all but one layer cannot be condensed to a bare suffix', () => {
    const t = [0, 1, 2, 3].map((i) => `model.layers.${i}.self_attn.q_proj`);
    const got = minimalTargetModules(t.slice(1), [t[0], 'model.layers.0.self_attn']);
    expect(got).toEqual(['1.self_attn.q_proj', '2.self_attn.q_proj', '3.self_attn.q_proj']);
  });
});
