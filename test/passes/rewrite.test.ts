import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { runGraph } from '../../src/backends/cpu/index.ts';
import { GraphBuilder } from '../../src/ir/builder.ts';
import { printGraph } from '../../src/ir/printer.ts';
import { canonicalize, cse, dce, RewriteError, type Rule, rewrite } from '../../src/passes/index.ts';
import { arbGraph, randomFeeds, randomWeights } from '../arbitrary/graphs.ts';

describe('rewrite engine', () => {
  it('a rule that matches nothing leaves any graph unchanged (the same object)', () => {
    const never: Rule[] = [
      [{ op: 'no_such_op' }, (m) => m.inputs[0], 'never'],
      [{ op: 'add', scope: /^nowhere$/ }, (m) => m.inputs[0], 'never-scope'],
      [{ op: 'linear' }, () => undefined, 'declines'],
    ];
    fc.assert(
      fc.property(arbGraph(), (g) => {
        const r = rewrite(g, never);
        expect(r.graph).toBe(g);
        expect(r.steps).toEqual([]);
        expect(printGraph(r.graph)).toBe(printGraph(g));
      }),
      { numRuns: 60 },
    );
  });

  it('matches op, partial attrs, scope and input sub-patterns, with captures', () => {
    const b = new GraphBuilder();
    const x = b.input('x', 'f32', [4]);
    const a = b.withScope('m.q_proj', () => b.scale(b.exp(x), 2));
    const c = b.withScope('m.k_proj', () => b.scale(b.exp(x), 2));
    const g = b.build({ a, c });
    const seen: string[] = [];
    const rules: Rule[] = [
      [
        {
          op: 'scale',
          attrs: { factor: 2 },
          scope: /q_proj$/,
          inputs: [{ op: 'exp', capture: 'e', inputs: [{ capture: 'x' }] }],
        },
        (m, bb) => {
          seen.push(`${m.get('e').op}:${m.node.scope}`);
          return bb.scale(m.value('x'), 7);
        },
        'q-only',
      ],
    ];
    const { graph, steps } = rewrite(g, rules);
    expect(seen).toEqual(['exp:m.q_proj']);
    expect(steps.map((s) => [s.rule, s.scope])).toEqual([['q-only', 'm.q_proj']]);
    expect(graph.output('a').op).toBe('scale');
    expect(graph.output('a').attrs.factor).toBe(7);
    expect(graph.output('a').scope).toBe('m.q_proj');
    expect(graph.output('c').attrs.factor).toBe(2);
  });

  it('a capture name used twice must bind the same node', () => {
    const b = new GraphBuilder();
    const x = b.input('x', 'f32', [4]);
    const y = b.input('y', 'f32', [4]);
    const g = b.build({ s: b.sub(x, x), t: b.sub(x, y) });
    const { graph } = rewrite(g, [
      [
        { op: 'sub', inputs: [{ capture: 'a' }, { capture: 'a' }] },
        (_m, bb) => bb.const(0, [4]),
        'x-minus-x',
      ],
    ]);
    expect(graph.output('s').op).toBe('const');
    expect(graph.output('t').op).toBe('sub');
  });

  it('reports non-convergence naming the rule still firing', () => {
    const b = new GraphBuilder();
    const g = b.build({ y: b.neg(b.input('x', 'f32', [2])) });
    const flip: Rule[] = [
      [{ op: 'neg', inputs: [{ capture: 'x' }] }, (m, bb) => bb.neg(m.value('x')), 'rebuilds-itself'],
    ];
    expect(() => rewrite(g, flip, { maxIterations: 5 })).toThrow(RewriteError);
    expect(() => rewrite(g, flip, { maxIterations: 5 })).toThrow(
      /did not converge after 5 iterations; still firing: rebuilds-itself \(1x, e\.g\. at %1 neg\)/,
    );
    expect(rewrite(g, flip, { once: true }).steps).toHaveLength(1);
  });
});

describe('generic passes keep values on random graphs', () => {
  it('dce, cse and canonicalize leave every output unchanged (f64, exact up to 1e-12)', () => {
    fc.assert(
      fc.property(arbGraph(), fc.nat(1000), (g, seed) => {
        const feeds = randomFeeds(g, seed);
        const weights = randomWeights(g, seed);
        const ref = runGraph(g, feeds, weights, { precision: 'f64' });
        for (const pass of [dce, cse, canonicalize]) {
          const out = pass(g);
          expect(out.outputs.map((o) => o.name)).toEqual(g.outputs.map((o) => o.name));
          const got = runGraph(out, feeds, weights, { precision: 'f64' });
          for (const name of Object.keys(ref)) {
            const a = Array.from(ref[name].data);
            const b = Array.from(got[name].data);
            expect(b.length).toBe(a.length);
            a.forEach((v, i) => {
              if (Number.isNaN(v)) expect(Number.isNaN(b[i])).toBe(true);
              else expect(Math.abs(b[i] - v)).toBeLessThanOrEqual(1e-12 * (1 + Math.abs(v)));
            });
          }
        }
      }),
      { numRuns: 40 },
    );
  });
});
