// Imports run downward only (README "Layout"): cli -> serve -> generate -> models; cli -> export
// -> generate | train; train -> models -> methods -> passes -> backends | io -> quant -> ir -> util. A lower layer that imports a higher one fails
// here, naming the file, the line and the import.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const SRC = resolve(import.meta.dirname, '../../src');

/** What each top-level folder of src/ may import (besides itself). */
const MAY_IMPORT: Record<string, readonly string[]> = {
  cli: [
    'serve',
    'generate',
    'export',
    'train',
    'models',
    'methods',
    'passes',
    'backends',
    'io',
    'quant',
    'ir',
    'util',
  ],
  serve: ['generate', 'models', 'methods', 'passes', 'backends', 'io', 'quant', 'ir', 'util'],
  generate: ['models', 'methods', 'passes', 'backends', 'io', 'quant', 'ir', 'util'],
  export: ['generate', 'train', 'models', 'methods', 'passes', 'backends', 'io', 'quant', 'ir', 'util'],
  train: ['models', 'methods', 'passes', 'backends', 'io', 'quant', 'ir', 'util'],
  models: ['methods', 'passes', 'backends', 'io', 'quant', 'ir', 'util'],
  methods: ['passes', 'backends', 'io', 'quant', 'ir', 'util'],
  passes: ['backends', 'io', 'quant', 'ir', 'util'],
  backends: ['quant', 'ir', 'util'],
  io: ['quant', 'ir', 'util'],
  quant: ['ir', 'util'],
  ir: ['util'],
  util: [],
};

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sourceFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

const layerOf = (file: string) => relative(SRC, file).split('/')[0];

/** Relative specifiers of static imports, re-exports and dynamic imports, with their line. */
function importsOf(text: string): { spec: string; line: number }[] {
  const out: { spec: string; line: number }[] = [];
  const re = /(?:\bfrom\s*|\bimport\s*\(?\s*)'(\.[^']+)'/g;
  for (const m of text.matchAll(re)) {
    out.push({ spec: m[1], line: text.slice(0, m.index).split('\n').length });
  }
  return out;
}

describe('layering', () => {
  it('every src/ folder is a known layer', () => {
    const layers = new Set(sourceFiles(SRC).map(layerOf));
    const unknown = [...layers].filter((l) => !(l in MAY_IMPORT) && !l.endsWith('.ts'));
    expect(unknown, 'add the new folder to MAY_IMPORT and to the README layout').toEqual([]);
  });

  it('no file imports a layer above its own', () => {
    const bad: string[] = [];
    for (const file of sourceFiles(SRC)) {
      const from = layerOf(file);
      for (const { spec, line } of importsOf(readFileSync(file, 'utf8'))) {
        const to = layerOf(resolve(dirname(file), spec));
        if (to !== from && !MAY_IMPORT[from]?.includes(to))
          bad.push(`src/${relative(SRC, file)}:${line} imports '${spec}' (${from} -> ${to})`);
      }
    }
    expect(bad).toEqual([]);
  });

  it('the check sees static, re-export and dynamic imports', () => {
    const text =
      "import { a } from '../x.ts';\nexport { b } from './y.ts';\nawait import('../../z.ts');\nimport './w.ts';";
    expect(importsOf(text).map((i) => [i.spec, i.line])).toEqual([
      ['../x.ts', 1],
      ['./y.ts', 2],
      ['../../z.ts', 3],
      ['./w.ts', 4],
    ]);
  });
});
