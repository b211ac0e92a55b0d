// Golden pass tests: each test/golden/<pass>/<case>.ir holds a pipeline (JSON list of
// pass names or {name, options}), an input graph and the expected graph, in sections:
//   --- pipeline / --- input / --- expected
// The expected text is compared with the printed result. UPDATE_GOLDEN=1 rewrites the
// expected sections (review the diff before committing).
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseGraph } from '../../src/ir/parser.ts';
import { printGraph } from '../../src/ir/printer.ts';
import '../../src/methods/index.ts';
import { runPipeline } from '../../src/passes/index.ts';

const root = import.meta.dirname;

function sections(text: string, file: string): Record<string, string> {
  const out: Record<string, string> = {};
  let name: string | undefined;
  for (const line of text.split('\n')) {
    const m = /^--- (\w+)\s*$/.exec(line);
    if (m) {
      name = m[1];
      out[name] = '';
    } else if (name) out[name] += `${line}\n`;
  }
  for (const s of ['pipeline', 'input']) if (!(s in out)) throw new Error(`${file}: no '--- ${s}' section`);
  return out;
}

const dirs = readdirSync(root).filter((d) => statSync(join(root, d)).isDirectory());

describe.each(dirs)('golden %s', (dir) => {
  const files = readdirSync(join(root, dir)).filter((f) => f.endsWith('.ir'));
  it('has cases', () => expect(files.length).toBeGreaterThan(0));
  it.each(files)('%s', (f) => {
    const path = join(root, dir, f);
    const text = readFileSync(path, 'utf8');
    const s = sections(text, path);
    const input = parseGraph(s.input, { file: `${path}#input` });
    const { graph } = runPipeline(input, JSON.parse(s.pipeline), { verify: true });
    const got = printGraph(graph);
    if (process.env.UPDATE_GOLDEN) {
      const head = text.slice(
        0,
        text.indexOf('--- expected') >= 0 ? text.indexOf('--- expected') : text.length,
      );
      writeFileSync(path, `${head.trimEnd()}\n--- expected\n${got}`);
      return;
    }
    expect(s.expected, `${path} has no '--- expected' section`).toBeDefined();
    expect(got).toBe(s.expected.trimEnd() + '\n');
  });
});
