// Audit (issue 3, generic passes): constant folding keeps every output on random
// graphs. The goldens in test/golden/fold show two fixed cases; here every f32/i32
// input and param of a random graph becomes a `const` holding the value it would be
// fed, so whole subgraphs fold, and the folded graph must give the same outputs as
// the original run with feeds (the CPU interpreter in its default f32 precision).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { runGraph } from '../../src/backends/cpu/index.ts';
import type { Graph, Node } from '../../src/ir/graph.ts';
import { verify } from '../../src/ir/verify.ts';
import type { MapWeightStore } from '../../src/ir/weights.ts';
import { fold } from '../../src/passes/generic/fold.ts';
import { arbGraph, randomFeeds, randomWeights } from '../arbitrary/graphs.ts';
import { expectClose } from '../ops/cases.ts';

const SOURCES = new Set(['input', 'param', 'const']);

/** The graph with each f32/i32 input and param replaced by a const of its value. */
function constify(
  g: Graph,
  seed: number,
): { g: Graph; feeds: ReturnType<typeof randomFeeds>; weights: MapWeightStore } {
  const feeds = randomFeeds(g, seed);
  const weights = randomWeights(g, seed);
  const nodes: Node[] = g.nodes.map((n) => {
    if ((n.op !== 'input' && n.op !== 'param') || (n.type.dtype !== 'f32' && n.type.dtype !== 'i32'))
      return n;
    const name = String(n.attrs.name);
    const t = n.op === 'input' ? feeds[name] : weights.get(name);
    if (!t) throw new Error(`no value for ${n.op} '${name}'`);
    return {
      ...n,
      op: 'const',
      attrs: { value: Array.from(t.data, Number), dtype: n.type.dtype, shape: [...n.type.shape] },
    };
  });
  return { g: g.with(nodes), feeds, weights };
}

describe('fold on random graphs', () => {
  it('keeps every output, and leaves no foldable node behind', () => {
    let fired = 0;
    let runs = 0;
    fc.assert(
      fc.property(arbGraph(), fc.nat(1000), (g, seed) => {
        runs++;
        const expected = runGraph(g, randomFeeds(g, seed), randomWeights(g, seed));
        const c = constify(g, seed);
        verify(c.g, 'constified graph');
        const folded = fold(c.g);
        verify(folded, 'after fold');
        const computeBefore = c.g.nodes.filter((n) => !SOURCES.has(n.op)).length;
        const computeAfter = folded.nodes.filter((n) => !SOURCES.has(n.op)).length;
        if (computeAfter < computeBefore) fired++;
        // Fixed point: nothing left whose inputs are all consts (dropout and u4 are never folded).
        for (const n of folded.nodes) {
          if (SOURCES.has(n.op) || n.op === 'dropout' || n.type.dtype === 'u4' || n.inputs.length === 0)
            continue;
          expect(
            n.inputs.every((i) => folded.node(i).op === 'const'),
            `%${n.id} ${n.op} has only const inputs after fold`,
          ).toBe(false);
        }
        const got = runGraph(folded, c.feeds, c.weights);
        for (const o of g.outputs) expectClose(got[o.name], expected[o.name], 1e-6, `output ${o.name}`);
      }),
      { numRuns: 60 },
    );
    // Most random graphs have a foldable node once their leaves are consts; if fold never fired, the test proved nothing.
    expect(fired).toBeGreaterThan(runs / 2);
  });
});
