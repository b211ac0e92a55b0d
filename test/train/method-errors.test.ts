// A method that fails while the trainer applies the recipe names its recipe entry (and,
// through peftc train, the recipe file).
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { parseRecipe } from '../../src/methods/index.ts';
import { loadModel } from '../../src/models/llama/index.ts';
import { prepareRun } from '../../src/train/setup.ts';
import { UserError } from '../../src/util/errors.ts';
import { cli } from '../cli/run-cli.ts';

it("a method's failure names methods[i] and the method, then its own message", () => {
  const recipe = parseRecipe({
    methods: [{ method: 'qlora' }, { method: 'malora', granularity: 'head', budget: 10 }],
  });
  const run = () =>
    prepareRun(loadModel('examples/models/tiny-llama'), recipe, { batch: 1, seq: 8 }, { seed: 0 });
  expect(run).toThrow(UserError);
  expect(run).toThrow(/^recipe methods\[1\] \('malora'\): malora adapter 'default': "budget" 10 is below/);
});

it('peftc train names the recipe file, the entry and the method', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'peftc-method-error-'));
  const file = join(dir, 'bad.json');
  writeFileSync(file, JSON.stringify({ methods: [{ method: 'malora', granularity: 'head', budget: 10 }] }));
  const tokens = join(dir, 't.json');
  writeFileSync(tokens, JSON.stringify([[256, 97, 98, 99, 100, 101, 102, 103, 104]]));
  const r = await cli([
    'train',
    '--model',
    'examples/models/tiny-llama',
    '--recipe',
    file,
    '--tokens',
    tokens,
    '--out',
    join(dir, 'out'),
    '--steps',
    '1',
    '--seq',
    '8',
    '--batch',
    '1',
    '--backend',
    'cpu',
  ]);
  expect(r.code).toBe(1);
  expect(r.stderr).toContain(
    `${file}: methods[0] ('malora'): malora adapter 'default': "budget" 10 is below`,
  );
});
