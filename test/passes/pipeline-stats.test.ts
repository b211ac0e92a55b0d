// runPipeline's newer hooks: per-pass stats, printAfter 'diff', options resolved from the graph.
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { GraphBuilder } from '../../src/ir/builder.ts';
import { registerPass, runPipeline } from '../../src/passes/index.ts';

registerPass({
  name: 'test-append-neg',
  description: 'test only: appends neg(output) times `count` (count from options)',
  options: z.strictObject({ count: z.number().int().min(0) }),
  run: (g, { options: { count } }) => {
    const b = GraphBuilder.from(g);
    let y = b.value(g.outputs[0].id);
    for (let i = 0; i < count; i++) y = b.neg(y);
    return b.build({ y });
  },
});

function graph() {
  const b = new GraphBuilder();
  const x = b.input('x', 'f32', [2]);
  return b.build({ y: b.exp(x) });
}

describe('runPipeline stats and diff', () => {
  it('reports per pass its time, node count and op-count delta', () => {
    const r = runPipeline(graph(), [{ name: 'test-append-neg', options: { count: 2 } }, 'dce'], {
      stats: true,
      log: () => {},
    });
    expect(r.stats?.map((s) => [s.pass, s.nodes, s.opDelta])).toEqual([
      ['test-append-neg', 4, { neg: 2 }],
      ['dce', 4, {}],
    ]);
    expect(r.stats?.every((s) => s.ms >= 0)).toBe(true);
    expect(runPipeline(graph(), ['dce']).stats).toBeUndefined();
  });

  it("prints only what each pass changed with printAfter 'diff'", () => {
    const lines: string[] = [];
    runPipeline(graph(), [{ name: 'test-append-neg', options: { count: 1 } }, 'dce'], {
      printAfter: 'diff',
      log: (s) => lines.push(s),
    });
    const text = lines.join('\n');
    expect(text).toMatch(
      /\/\/ diff after test-append-neg\n\/\/ 1 added, 0 removed, 0 changed\n\+ %\d+ = neg\(/,
    );
    expect(text).toMatch(/\/\/ diff after dce \(unchanged\)/);
    // The nodes the pass left alone are not printed.
    expect(text).not.toMatch(/exp\(|input\(/);
  });

  it('computes options from the graph a step receives (resolve)', () => {
    const seen: number[] = [];
    const r = runPipeline(graph(), [
      { name: 'test-append-neg', options: { count: 1 } },
      {
        name: 'test-append-neg',
        resolve: (g) => {
          seen.push(g.nodes.length);
          return { count: g.nodes.length };
        },
      },
    ]);
    expect(seen).toEqual([3]);
    expect(r.graph.nodes.filter((n) => n.op === 'neg')).toHaveLength(4);
  });
});
