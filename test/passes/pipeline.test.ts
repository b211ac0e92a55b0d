import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../src/ir/builder.ts';
import type { Graph } from '../../src/ir/graph.ts';
import { getPass, PipelineError, passNames, registerPass, runPipeline } from '../../src/passes/index.ts';

function small(): Graph {
  const b = new GraphBuilder();
  const x = b.input('x', 'f32', [2, 3]);
  const y = b.withScope('model.m', () => b.scale(b.exp(x), 1));
  return b.build({ y });
}

// A deliberately broken pass: its result reads a node that does not exist.
registerPass({
  name: 'test-break-ir',
  description: 'test only: produces invalid IR',
  run: (g) => {
    const last = g.nodes[g.nodes.length - 1];
    return g.with([...g.nodes.slice(0, -1), { ...last, inputs: [999] }]);
  },
});
registerPass({
  name: 'test-throw',
  description: 'test only: throws',
  run: () => {
    throw new Error('boom');
  },
});

describe('pass registry', () => {
  it('lists the generic passes by kebab-case name', () => {
    expect(passNames()).toEqual(expect.arrayContaining(['canonicalize', 'cse', 'dce', 'fold']));
  });
  it('rejects names that are not kebab-case, and duplicates', () => {
    expect(() => registerPass({ name: 'BadName', description: '', run: (g) => g })).toThrow(/kebab-case/);
    expect(() => registerPass({ name: 'dce', description: '', run: (g) => g })).toThrow(/already registered/);
  });
  it('names the known passes for an unknown one', () => {
    expect(() => getPass('dec')).toThrow(/unknown pass 'dec' \(known: .*dce/);
  });
});

describe('runPipeline', () => {
  it('runs passes in order and returns the graph', () => {
    const { graph, timings } = runPipeline(small(), ['canonicalize', 'dce']);
    expect(graph.nodes.map((n) => n.op)).toEqual(['input', 'exp']);
    expect(timings.map((t) => t.pass)).toEqual(['canonicalize', 'dce']);
  });

  it('names the pass, the passes before it, and shows the bad node when a pass breaks the IR', () => {
    let err: Error | undefined;
    try {
      runPipeline(small(), ['dce', 'cse', 'test-break-ir', 'fold']);
    } catch (e) {
      err = e as Error;
    }
    expect(err).toBeInstanceOf(PipelineError);
    expect(err!.message).toMatch(/pass 'test-break-ir' \(step 3, after dce -> cse\) produced invalid IR/);
    expect(err!.message).toMatch(/%999, which is not defined/);
    expect(err!.message).toMatch(/> %2 = scale\(%999\).*@model\.m/);
  });

  it('wraps a throwing pass with its name and position', () => {
    expect(() => runPipeline(small(), ['test-throw'])).toThrow(
      /pass 'test-throw' \(step 1, as the first pass\) failed: boom/,
    );
  });

  it('rejects an unknown pass before running anything, and bad options with their path', () => {
    expect(() => runPipeline(small(), ['dce', 'nope'])).toThrow(/step 2: unknown pass 'nope'/);
    expect(() => runPipeline(small(), [{ name: 'fold', options: { maxElements: -1 } }])).toThrow(
      /pass 'fold' \(step 1.*bad options: maxElements/,
    );
    expect(() => runPipeline(small(), [{ name: 'fold', options: { maxElemnts: 3 } }])).toThrow(/bad options/);
  });

  it('prints the IR after all, changed, or named passes', () => {
    const lines: string[] = [];
    const log = (s: string) => lines.push(s);
    runPipeline(small(), ['cse', 'canonicalize'], { printAfter: 'all', log });
    expect(lines.map((l) => l.split('\n')[0])).toEqual([
      '// IR after cse (unchanged)',
      '// IR after canonicalize',
    ]);
    lines.length = 0;
    runPipeline(small(), ['cse', 'canonicalize'], { printAfter: 'change', log });
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^\/\/ IR after canonicalize\ngraph \{/);
    expect(lines[0]).not.toContain('scale');
    lines.length = 0;
    runPipeline(small(), ['cse', 'canonicalize'], { printAfter: ['cse'], timings: true, log });
    expect(lines[0]).toMatch(/^\/\/ cse: [0-9.]+ ms$/);
    expect(lines[1]).toMatch(/^\/\/ IR after cse/);
  });

  it('logs each rewrite step by rule name when tracing', () => {
    const lines: string[] = [];
    runPipeline(small(), ['canonicalize'], { trace: true, log: (s) => lines.push(s) });
    expect(lines).toEqual(['canonicalize: scale-by-one at %2 scale']);
  });
});
