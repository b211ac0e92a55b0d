import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../src/ir/builder.ts';
import type { Graph } from '../../src/ir/graph.ts';
import { diffGraphs, isEmptyDiff, printDiff } from '../../src/passes/index.ts';

/** x -> exp -> [branch] -> scale -> neg -> tanh; `branch` adds a second path before scale. */
function chain(opts: { branch?: boolean; pad?: number } = {}): Graph {
  const b = new GraphBuilder();
  // Unused leading inputs shift every id: the diff must not care.
  for (let i = 0; i < (opts.pad ?? 0); i++) b.input(`pad${i}`, 'f32', [1]);
  const x = b.input('x', 'f32', [2, 3]);
  let h = b.exp(x);
  if (opts.branch)
    h = b.add(
      h,
      b.withScope('side', () => b.scale(x, 2)),
    );
  const y = b.neg(b.scale(h, 3));
  return b.build({ y: b.unary('tanh', y) });
}

describe('diffGraphs', () => {
  it('finds no change between the same graph with renumbered ids', () => {
    const d = diffGraphs(chain(), chain({ pad: 3 }));
    expect(d.added.map((n) => n.op)).toEqual(['input', 'input', 'input']);
    expect(d.removed).toEqual([]);
    expect(d.changed).toEqual([]);
    expect(isEmptyDiff(diffGraphs(chain(), chain()))).toBe(true);
  });

  it('reports an inserted branch as added nodes plus the one rewired reader, not everything downstream', () => {
    const before = chain();
    const after = chain({ branch: true });
    const d = diffGraphs(before, after);
    expect(d.added.map((n) => n.op)).toEqual(['scale', 'add']);
    expect(d.removed).toEqual([]);
    // Only `scale(h, 3)` reads something new; neg and tanh downstream match exactly.
    expect(d.changed.map((c) => `${c.after.op}:${c.after.attrs.factor}`)).toEqual(['scale:3']);
    expect(d.outputs).toEqual({ added: [], removed: [], changed: [] });
    const text = printDiff(d);
    expect(text).toMatch(/^\/\/ 2 added, 0 removed, 1 changed/);
    expect(text).toMatch(/^\+ %\d+ = add\(/m);
    expect(text).toMatch(/^~ %\d+ = scale\(.*\n {4}was %\d+ reading \(%\d+\)/m);
    expect(text).not.toMatch(/tanh|neg/);
  });

  it('reports the reverse as removed nodes', () => {
    const d = diffGraphs(chain({ branch: true }), chain());
    expect(d.removed.map((n) => n.op)).toEqual(['scale', 'add']);
    expect(d.added).toEqual([]);
    expect(d.changed).toHaveLength(1);
  });

  it('reports outputs added, removed and pointed elsewhere', () => {
    const b1 = new GraphBuilder();
    const x1 = b1.input('x', 'f32', [2]);
    const g1 = b1.build({ a: b1.exp(x1), gone: b1.neg(x1) });
    const b2 = new GraphBuilder();
    const x2 = b2.input('x', 'f32', [2]);
    const g2 = b2.build({ a: b2.neg(x2), extra: b2.exp(x2) });
    expect(diffGraphs(g1, g2).outputs).toEqual({ added: ['extra'], removed: ['gone'], changed: ['a'] });
  });
});
