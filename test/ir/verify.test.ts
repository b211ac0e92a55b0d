import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../src/ir/builder.ts';
import { Graph, type Node } from '../../src/ir/graph.ts';
import { printNode, printScope, SOURCE_OPS } from '../../src/ir/printer.ts';
import { contextAround, findProblems, VerifyError, verify } from '../../src/ir/verify.ts';
import { arbGraph } from '../arbitrary/graphs.ts';

type Corruption = 'shape' | 'dangling' | 'cycle' | 'arity' | 'attrs' | 'duplicate';

/** Corrupts the node at position `at` of `g`; returns the bad graph and the pattern its message must match. */
function corrupt(g: Graph, at: number, kind: Corruption): { bad: Graph; pattern: RegExp } {
  const nodes = [...g.nodes];
  const n = nodes[at];
  const replace = (m: Partial<Node>): Graph => {
    nodes[at] = { ...n, ...m };
    return g.with(nodes);
  };
  switch (kind) {
    case 'shape':
      return {
        bad: replace({ type: { ...n.type, shape: [...n.type.shape, 7] } }),
        pattern: /result should be .* but the node says/,
      };
    case 'dangling': {
      const missing = g.maxId() + 100;
      return {
        bad: replace({ inputs: [missing, ...n.inputs.slice(1)] }),
        pattern: new RegExp(`uses %${missing}, which is not defined anywhere \\(dangling input\\)`),
      };
    }
    case 'cycle': {
      // Read itself, or a node defined later: either way a use before definition.
      const later = nodes[(at + 1) % nodes.length].id;
      const target = at + 1 < nodes.length ? later : n.id;
      return {
        bad: replace({ inputs: [target, ...n.inputs.slice(1)] }),
        pattern: new RegExp(`uses %${target} before its definition`),
      };
    }
    case 'arity':
      return { bad: replace({ inputs: [] }), pattern: new RegExp(`${n.op} takes .* inputs, got 0`) };
    case 'attrs':
      return { bad: replace({ attrs: { ...n.attrs, bogus_attr: 1 } }), pattern: /attrs: .*bogus_attr/ };
    case 'duplicate':
      return { bad: replace({ id: nodes[0].id }), pattern: new RegExp(`%${nodes[0].id} is defined twice`) };
  }
}

describe('verify', () => {
  it('accepts random valid graphs', () => {
    fc.assert(
      fc.property(arbGraph(), (g) => {
        expect(findProblems(g)).toEqual([]);
      }),
      { numRuns: 50 },
    );
  });

  it('rejects random corruptions with a message naming the node, its scope and its neighbours', () => {
    const kinds: Corruption[] = ['shape', 'dangling', 'cycle', 'arity', 'attrs', 'duplicate'];
    fc.assert(
      fc.property(arbGraph(), fc.constantFrom(...kinds), fc.nat(), (g, kind, k) => {
        // Inputs-based corruptions need a node with inputs; a duplicate needs a node after the first.
        const candidates = g.nodes
          .map((n, i) => ({ n, i }))
          .filter(({ n, i }) =>
            kind === 'duplicate'
              ? i > 0
              : ['dangling', 'cycle', 'arity'].includes(kind)
                ? !SOURCE_OPS.has(n.op)
                : true,
          );
        fc.pre(candidates.length > 0);
        const { n, i: at } = candidates[k % candidates.length];
        const { bad, pattern } = corrupt(g, at, kind);
        const problems = findProblems(bad);
        expect(problems.length).toBeGreaterThan(0);
        expect(problems[0].at).toBe(at);
        const label = `%${bad.nodes[at].id} (${n.op}${printScope(n.scope)}):`;
        expect(problems[0].message.startsWith(label)).toBe(true);
        expect(problems[0].message).toMatch(pattern);
        let err: unknown;
        try {
          verify(bad, 'after pass test');
        } catch (e) {
          err = e;
        }
        expect(err).toBeInstanceOf(VerifyError);
        const msg = (err as VerifyError).message;
        expect(msg.startsWith(`after pass test: IR verification failed: ${label}`)).toBe(true);
        // The bad node is marked, and its neighbours are printed with their scopes.
        expect(msg).toContain(`> ${printNode(bad.nodes[at])}`);
        if (at > 0) expect(msg).toContain(`  ${printNode(bad.nodes[at - 1])}`);
        if (at + 1 < bad.nodes.length) expect(msg).toContain(`  ${printNode(bad.nodes[at + 1])}`);
      }),
      { numRuns: 150 },
    );
  });

  it('prints a bad node with its scope, neighbours, and inputs defined far away', () => {
    const b = new GraphBuilder();
    const x = b.input('x', 'f32', [2, 8]);
    let h = x;
    for (let i = 0; i < 5; i++) h = b.withScope(`model.layers.${i}`, () => b.unary('tanh', h));
    const w = b.param('model.lm_head.weight', 'f32', [3, 8]);
    const y = b.withScope('lm_head', () => b.linear(x, w));
    const g = b.build({ y });
    const nodes = g.nodes.map((n) => (n.id === y.id ? { ...n, type: { ...n.type, shape: [2, 4] } } : n));
    expect(() => verify(g.with(nodes))).toThrow(VerifyError);
    try {
      verify(g.with(nodes));
    } catch (e) {
      expect((e as Error).message).toBe(
        [
          'IR verification failed: %7 (linear @lm_head): linear result should be f32[2,3] but the node says f32[2,4]',
          '  %5 = tanh(%4) {} : f32[2,8] @model.layers.4',
          '  %6 = param() {name="model.lm_head.weight", role="frozen", init={kind="given"}} : f32[3,8]',
          '> %7 = linear(%0, %6) {} : f32[2,4] @lm_head',
          '  its inputs:',
          '    %0 = input() {name="x"} : f32[2,8]',
        ].join('\n'),
      );
    }
  });

  it('reports graph-level problems: bad outputs and duplicate param names', () => {
    const b = new GraphBuilder();
    const x = b.input('x', 'f32', [2]);
    const p = b.param('w', 'f32', [2]);
    const q = b.withScope('model.q', () => b.param('w', 'f32', [2]));
    const g = b.build({ y: b.add(b.add(x, p), q) }, { verify: false });
    expect(findProblems(g)[0].message).toBe("%2 (param @model.q): param name 'w' is already used by %1");
    const bad = new Graph(g.nodes.slice(0, 2), [
      { name: 'y', id: 9 },
      { name: 'y', id: 0 },
    ]);
    const msgs = findProblems(bad).map((pr) => pr.message);
    expect(msgs).toEqual(["output 'y' refers to %9, which is not defined", "output name 'y' is used twice"]);
    expect(() => verify(bad)).toThrow(/outputs: y=%9, y=%0/);
    expect(contextAround(bad, -1)).toBe('  outputs: y=%9, y=%0');
  });

  it('checks a node again when an input changes type, though its own attrs and type were checked', () => {
    const b = new GraphBuilder();
    const g = b.build({ y: b.emit('relu', [b.input('x', 'f32', [2])]) });
    expect(findProblems(g)).toEqual([]); // relu checked clean with x: f32[2]
    const [x, relu] = g.nodes;
    const wider = g.with([
      { ...x, attrs: { ...x.attrs, shape: [3] }, type: { dtype: 'f32', shape: [3] } },
      relu,
    ]);
    expect(findProblems(wider).map((p) => p.message)).toEqual([
      '%1 (relu): relu result should be f32[3] but the node says f32[2]',
    ]);
  });

  it('names an unknown op', () => {
    const g = new GraphBuilder().build({}, { verify: false });
    const bad = g.with([
      { id: 0, op: 'frobnicate', inputs: [], attrs: {}, type: { dtype: 'f32', shape: [] }, scope: 'm' },
    ]);
    expect(() => verify(bad)).toThrow(/%0 \(frobnicate @m\): unknown op 'frobnicate'/);
  });
});
