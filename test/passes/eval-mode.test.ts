import { describe, expect, it } from 'vitest';
import { runGraph } from '../../src/backends/cpu/index.ts';
import { GraphBuilder } from '../../src/ir/builder.ts';
import { tensor } from '../../src/ir/tensor.ts';
import { MapWeightStore } from '../../src/ir/weights.ts';
import { evalMode } from '../../src/passes/generic/index.ts';

describe('eval-mode', () => {
  it('turns every dropout into the identity (model.eval()) and changes nothing else', () => {
    const b = new GraphBuilder();
    const x = b.input('x', 'f32', [64]);
    const step = b.input('step', 'i32', []);
    const y = b.scale(b.dropout(b.dropout(x, 0.5, 1, step), 0.3, 2), 2);
    const g = b.build({ y });
    const e = evalMode(g);
    expect(e.ofOp('dropout')).toEqual([]);
    const feeds = {
      x: tensor(
        'f32',
        [64],
        Array.from({ length: 64 }, (_, i) => i + 1),
      ),
      step: tensor('i32', [], [3]),
    };
    const out = runGraph(e, feeds, new MapWeightStore()).y.data;
    expect(Array.from(out)).toEqual(Array.from({ length: 64 }, (_, i) => 2 * (i + 1)));
    // Training graph: dropout is live (some elements dropped).
    expect(Array.from(runGraph(g, feeds, new MapWeightStore()).y.data).some((v) => v === 0)).toBe(true);
  });
});
