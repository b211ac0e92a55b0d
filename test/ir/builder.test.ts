import { describe, expect, it } from 'vitest';
import { BuildError, GraphBuilder, printGraph } from '../../src/ir/index.ts';

describe('GraphBuilder', () => {
  it('builds a verified graph with scopes and named outputs', () => {
    const b = new GraphBuilder();
    const x = b.input('x', 'f32', [2, 8]);
    const y = b.withScope('model.layers.0.mlp', () =>
      b.withScope('up_proj', () => b.linear(x, b.param('model.layers.0.mlp.up_proj.weight', 'f32', [16, 8]))),
    );
    const g = b.build({ y: b.silu(y) });
    expect(g.output('y').type.shape).toEqual([2, 16]);
    expect(g.node(y.id).scope).toBe('model.layers.0.mlp.up_proj');
    expect(printGraph(g)).toContain('linear(%0, %1) {} : f32[2,16] @model.layers.0.mlp.up_proj');
  });

  it('names the op and scope on a shape error', () => {
    const b = new GraphBuilder();
    const x = b.input('x', 'f32', [2, 8]);
    const w = b.param('w', 'f32', [16, 7]);
    expect(() => b.withScope('model.q_proj', () => b.linear(x, w))).toThrow(BuildError);
    expect(() => b.withScope('model.q_proj', () => b.linear(x, w))).toThrow(
      /linear in model\.q_proj: .*in_features=7/,
    );
  });
});
