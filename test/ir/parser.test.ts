import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import type { Attrs } from '../../src/ir/graph.ts';
import { defineOp, registerOp } from '../../src/ir/ops/index.ts';
import { ParseError, parseGraph } from '../../src/ir/parser.ts';
import { printGraph } from '../../src/ir/printer.ts';
import { arbGraph } from '../arbitrary/graphs.ts';

const GOLDEN = `# a hand-written golden file
graph {
  %0 = input() {name="x"} : f32[1,4,8]
  %1 = param() {name="model.mlp.up_proj.weight", role="frozen", init={kind="given"}} : f32[16,8] @model.mlp.up_proj

  %2 = linear(%0, %1) {} : f32[1,4,16] @model.mlp.up_proj   # y = x W^T
  %3 = matmul(%2, %2) {transpose_b=true} : f32[1,4,4] @"blocks[0] attn"
  return y=%2, "attn.scores"=%3
}
`;

function parseError(text: string): ParseError {
  try {
    parseGraph(text, { file: 'bad.ir' });
  } catch (e) {
    expect(e).toBeInstanceOf(ParseError);
    return e as ParseError;
  }
  throw new Error(`expected a ParseError for:\n${text}`);
}

describe('parseGraph', () => {
  it('round-trips print -> parse -> print on random graphs, and keeps nodes and outputs', () => {
    fc.assert(
      fc.property(arbGraph({ maxNodes: 24 }), (g) => {
        const text = printGraph(g);
        const back = parseGraph(text);
        expect(printGraph(back)).toBe(text);
        expect(back.nodes).toEqual(g.nodes);
        expect(back.outputs).toEqual(g.outputs);
      }),
      { numRuns: 80 },
    );
  });

  it('reads comments, blank lines, quoted scopes and output names, and applies attr defaults', () => {
    const g = parseGraph(GOLDEN);
    expect(g.nodes.map((n) => n.op)).toEqual(['input', 'param', 'linear', 'matmul']);
    expect(g.node(0).attrs).toEqual({ name: 'x', dtype: 'f32', shape: [1, 4, 8] });
    expect(g.node(1).attrs).toMatchObject({ role: 'frozen', init: { kind: 'given' }, shape: [16, 8] });
    // transpose_a is not written; the schema default is filled in, as the builder does.
    expect(g.node(3).attrs).toEqual({ transpose_a: false, transpose_b: true });
    expect(g.node(3).scope).toBe('blocks[0] attn');
    expect(g.outputs).toEqual([
      { name: 'y', id: 2 },
      { name: 'attn.scores', id: 3 },
    ]);
  });

  it('round-trips JSON-like attr values: nesting, quoted keys, escapes, exponents, NaN/Infinity/-0', () => {
    registerOp(
      defineOp({
        name: 'parser_test_any',
        arity: 1,
        attrs: z.record(z.string(), z.any()) as unknown as z.ZodType<Attrs>,
        infer: ([a]) => a,
        doc: 'test op with free-form attrs',
      }),
    );
    const attrs = {
      n: -1.5e-7,
      big: 1e300,
      neg0: -0,
      inf: Number.POSITIVE_INFINITY,
      ninf: Number.NEGATIVE_INFINITY,
      nan: Number.NaN,
      s: 'quote " backslash \\ newline \n tab \t unicode é ∑ #not-a-comment',
      'key with space': [1, [], {}, [true, false, null]],
      nested: { a: { b: [{ c: 'd' }] } },
    };
    const text =
      'graph {\n  %0 = input() {name="x"} : f32[2]\n  %1 = parser_test_any(%0) {} : f32[2]\n  return y=%1\n}\n';
    const g0 = parseGraph(text);
    const g = g0.with([g0.nodes[0], { ...g0.nodes[1], attrs }]);
    const printed = printGraph(g);
    const back = parseGraph(printed);
    expect(back.node(1).attrs).toEqual(attrs);
    expect(Object.is(back.node(1).attrs.neg0, -0)).toBe(true);
    expect(printGraph(back)).toBe(printed);
  });

  // [what is wrong, text, line, col, message pattern]
  const base = GOLDEN;
  const cases: [string, string, number, number, RegExp][] = [
    ['missing =', base.replace('%2 = linear', '%2 linear'), 6, 6, /expected '=' after %2, found 'linear'/],
    [
      'bad dtype',
      base.replace('f32[1,4,8]', 'f64[1,4,8]'),
      3,
      29,
      /expected a dtype \(f32, .*\), found 'f64'/,
    ],
    [
      'unterminated string',
      base.replace('name="x"}', 'name="x}'),
      3,
      38,
      /expected '"' closing the string that starts at column 22, found end of line/,
    ],
    ['unknown op', base.replace('linear(', 'linaer('), 6, 8, /unknown op 'linaer' \(known ops: .*linear/],
    ['undefined %id', base.replace('(%0, %1)', '(%0, %9)'), 6, 19, /%9 is not defined above/],
    ['use before definition', base.replace('(%0, %1)', '(%0, %2)'), 6, 19, /%2 is not defined above/],
    [
      'bad shape rule',
      base.replace('f32[1,4,16]', 'f32[1,4,17]'),
      6,
      3,
      /%2 \(linear @model\.mlp\.up_proj\): linear result should be f32\[1,4,16\] but the node says f32\[1,4,17\]/,
    ],
    [
      'shape error from the op rule',
      base.replace('f32[16,8] @', 'f32[16,7] @'),
      6,
      3,
      /%2 \(linear @model\.mlp\.up_proj\): linear: .*in_features=7/,
    ],
    ['wrong arity', base.replace('(%0, %1)', '(%0)'), 6, 3, /linear takes 2 to 3 inputs, got 1/],
    [
      'bad attrs',
      base.replace('{kind="given"}', '{kind="nope"}'),
      4,
      3,
      /%1 \(param @model\.mlp\.up_proj\): param attrs: init\.kind/,
    ],
    [
      'unknown attr',
      base.replace('{transpose_b=true}', '{transpose_c=true}'),
      7,
      3,
      /matmul attrs: .*transpose_c/,
    ],
    [
      'duplicate id',
      base.replace('%1 = param', '%0 = param'),
      4,
      3,
      /%0 is defined twice \(first on line 3\)/,
    ],
    [
      'duplicate attr',
      base.replace('{name="x"}', '{name="x", name="y"}'),
      3,
      27,
      /attribute 'name' is given twice/,
    ],
    ['trailing garbage', `${base}junk\n`, 10, 1, /expected end of input after the closing '}', found 'junk'/],
    [
      'garbage after a node',
      base.replace('f32[1,4,8]', 'f32[1,4,8] extra'),
      3,
      40,
      /expected end of line after the statement, found 'extra'/,
    ],
    [
      'missing return',
      base.replace(/ {2}return.*\n/, ''),
      8,
      1,
      /expected a node '%<id> = \.\.\.' or 'return <name>=%<id>', found '}'/,
    ],
    [
      'missing }',
      base.replace(/}\n$/, ''),
      9,
      1,
      /expected '}' closing the graph after 'return', found end of input/,
    ],
    ['missing graph header', base.replace('graph {', 'grap {'), 2, 1, /expected 'graph', found 'grap'/],
    [
      'missing type',
      base.replace(' : f32[1,4,8]', ''),
      3,
      26,
      /expected ':' and the result type, found end of line/,
    ],
    [
      'bad shape text',
      base.replace('f32[1,4,8]', 'f32[1,x,8]'),
      3,
      35,
      /expected a dimension \(a non-negative integer\), found 'x'/,
    ],
    [
      'bad value',
      base.replace('transpose_b=true', 'transpose_b=yes'),
      7,
      36,
      /expected a value \(number, "string"/,
    ],
    ['space after %', base.replace('(%0, %1)', '(% 0, %1)'), 6, 16, /expected a number right after '%'/],
    ['missing output name', base.replace('return y=%2', 'return %2'), 8, 10, /expected an output name/],
    ['duplicate output', base.replace('"attn.scores"=%3', 'y=%3'), 8, 16, /output 'y' is named twice/],
    ['undefined output', base.replace('"attn.scores"=%3', 'z=%7'), 8, 18, /%7 is not defined above/],
    [
      'duplicate param name',
      base.replace(
        '%3 = matmul(%2, %2) {transpose_b=true} : f32[1,4,4] @"blocks[0] attn"',
        '%3 = input() {name="x"} : f32[2]',
      ),
      7,
      3,
      /%3 \(input\): input name 'x' is already used by %0/,
    ],
    ['empty text', '', 1, 1, /expected 'graph', found end of input/],
  ];

  for (const [what, text, line, col, pattern] of cases) {
    it(`reports ${what} at line:col with what was expected`, () => {
      const e = parseError(text);
      expect(e.name).toBe('ParseError');
      expect(e.message).toMatch(new RegExp(`^bad\\.ir:${line}:${col}: `));
      expect(e.message).toMatch(pattern);
      expect([e.line, e.col]).toEqual([line, col]);
      // The offending line and a caret under the column.
      const [, src, caret] = e.message.split('\n');
      expect(src).toBe(`  ${text.split('\n')[line - 1] ?? ''}`);
      expect(caret.indexOf('^')).toBe(col + 1);
    });
  }

  it('uses "<ir>" when no file is given, and offsets lines by firstLine', () => {
    expect(() => parseGraph('graph {')).toThrow(/^<ir>:1:8: expected/);
    expect(() => parseGraph('\ngraph {', { file: 'case.ir', firstLine: 5 })).toThrow(
      /^case\.ir:6:8: expected/,
    );
  });

  it('accepts CRLF line ends and keeps the caret under tabs', () => {
    const crlf = GOLDEN.replace(/\n/g, '\r\n');
    expect(printGraph(parseGraph(crlf))).toBe(printGraph(parseGraph(GOLDEN)));
    const e = parseError(crlf.replace('f32[1,4,8]', 'f64[1,4,8]').replace('  %0 =', '\t%0 ='));
    expect(e.message.split('\n').slice(1)).toEqual([
      '  \t%0 = input() {name="x"} : f64[1,4,8]',
      '  \t                          ^',
    ]);
  });

  it('throws only ParseErrors on mutated text (never a TypeError)', () => {
    const mutation = fc.record({
      at: fc.nat(),
      len: fc.nat({ max: 3 }),
      insert: fc.string({ maxLength: 3 }),
    });
    fc.assert(
      fc.property(arbGraph({ maxNodes: 8 }), fc.array(mutation, { minLength: 1, maxLength: 3 }), (g, ms) => {
        let text = printGraph(g);
        for (const m of ms) {
          const at = m.at % (text.length + 1);
          text = text.slice(0, at) + m.insert + text.slice(at + m.len);
        }
        try {
          parseGraph(text);
        } catch (e) {
          if (!(e instanceof ParseError)) throw new Error(`non-ParseError ${String(e)} for:\n${text}`);
          expect(e.message).toMatch(/^<ir>:\d+:\d+: /);
        }
      }),
      { numRuns: 300 },
    );
  });
});
