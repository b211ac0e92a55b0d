// A method that fails while the trainer applies the recipe names its recipe entry.
import { expect, it } from 'vitest';
import { parseRecipe } from '../../src/methods/index.ts';
import { loadModel } from '../../src/models/llama/index.ts';
import { prepareRun } from '../../src/train/setup.ts';
import { UserError } from '../../src/util/errors.ts';

it("a method's failure names methods[i] and the method, then its own message", () => {
  const recipe = parseRecipe({
    methods: [{ method: 'qlora' }, { method: 'malora', granularity: 'head', budget: 10 }],
  });
  const run = () =>
    prepareRun(loadModel('examples/models/tiny-llama'), recipe, { batch: 1, seq: 8 }, { seed: 0 });
  expect(run).toThrow(UserError);
  expect(run).toThrow(/^recipe methods\[1\] \('malora'\): malora adapter 'default': "budget" 10 is below/);
});
