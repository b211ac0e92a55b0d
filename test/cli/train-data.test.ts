// `peftc train` data handling (issue 17, items 1 and 2): pre-tokenized data needs no
// tokenizer (ids are checked against the model's vocab_size), and the eval split is the
// user's (--eval-fraction, recipe eval_fraction, --eval-data; too little data trains on
// every row with a notice; the step-0 eval is logged; evals reach the console).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TrainCliOptions } from '../../src/cli/commands/train.ts';
import { presetConfig, randomLlamaWeights, saveModelDir } from '../../src/models/llama/index.ts';
import { trainCaptured, trainLogOf } from './fixtures.ts';
import { cli } from './run-cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'peftc-train-data-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A model directory with config.json and weights only (no tokenizer files), vocab_size 256. */
const bareModel = join(dir, 'bare-256');
const tokens = join(dir, 'tokens.json');
const row = (i: number, n = 16) => Array.from({ length: n }, (_, j) => (i * 37 + j * 11) % 256);

beforeAll(() => {
  const c = {
    ...presetConfig('tiny'),
    vocabSize: 256,
    bosTokenId: undefined,
    eosTokenId: undefined,
    padTokenId: undefined,
  };
  saveModelDir(bareModel, c, randomLlamaWeights(c, 3));
  writeFileSync(tokens, JSON.stringify(Array.from({ length: 8 }, (_, i) => row(i))));
});

const recipe = (extra: Record<string, unknown> = {}) => {
  const f = join(mkdtempSync(join(dir, 'r-')), 'recipe.json');
  writeFileSync(
    f,
    JSON.stringify({
      methods: [{ method: 'lora', r: 2, lora_alpha: 4, target_modules: ['q_proj', 'v_proj'] }],
      optimizer: { type: 'adamw', lr: 1e-3 },
      ...extra,
    }),
  );
  return f;
};
const args = (model: string, data: string, out: string, extra: string[] = []) => [
  'train',
  ...['--model', model, '--recipe', recipe(), '--tokens', data, '--out', out],
  ...['--steps', '2', '--batch', '2', '--seq', '16', '--backend', 'cpu', '--no-plot', ...extra],
];

/** runTrain in-process with its progress output captured (test/cli/fixtures.ts). */
const trainIn = (o: Partial<TrainCliOptions>) =>
  trainCaptured({
    out: mkdtempSync(join(dir, 'out-')),
    steps: 2,
    recipe: recipe(),
    tokens,
    ...o,
  });

const logOf = trainLogOf;

describe('--tokens needs no tokenizer (item 1)', () => {
  it('trains a vocab_size-256 model without tokenizer files from token ids', async () => {
    const r = await cli(args(bareModel, tokens, join(dir, 'bare-run')));
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/trained 2 steps at \d+ tokens\/s; eval loss [\d.]+ -> [\d.]+; adapter in/);
  });

  it('refuses an id at or above vocab_size, naming file, row and position', async () => {
    const bad = join(dir, 'bad-ids.json');
    writeFileSync(bad, JSON.stringify([row(0), [...row(1, 5), 256, ...row(2, 10)]]));
    const r = await cli(args(bareModel, bad, join(dir, 'bad-run')));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      `${bad}[1]: token id 256 at position 5 is out of range for a vocabulary of 256 (the model's vocab_size; ids 0..255)`,
    );
  });
});

describe('text data needs a tokenizer', () => {
  it('a model without tokenizer.json and vocab_size 256 cannot take --data; the error says what to do', async () => {
    const text = join(dir, 'some.txt');
    writeFileSync(text, 'a few words of text\n');
    await expect(trainIn({ model: bareModel, tokens: undefined, data: text })).rejects.toThrow(
      `the byte-level tokenizer (used when ${bareModel} has no tokenizer.json) has 259 ids but the model's vocab_size is 256; add the model's tokenizer.json, or give token ids with --tokens <file> (no tokenizer needed)`,
    );
  });
});

describe("the eval split is the user's (item 2)", () => {
  it('one row of data trains on it with a notice; the summary says there is no eval', async () => {
    const one = join(dir, 'one-row.json');
    writeFileSync(one, JSON.stringify([row(5)]));
    const r = await cli(args('tiny', one, join(dir, 'one-run')));
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(
      `note: ${one} has only 1 row of 16 tokens, too few to hold out eval data: training on it all with no eval (add data, lower --seq, or pass --eval-data <file>)`,
    );
    expect(r.stdout).toMatch(
      /trained 2 steps at \d+ tokens\/s; no eval data, so no eval loss \(pass --eval-data <file> or an --eval-fraction above 0\); adapter in/,
    );
    expect(r.stdout).not.toContain('undefined');
  });

  it('rejects a bad --eval-fraction and --eval-data together with --eval-fraction', async () => {
    const frac = await cli(args('tiny', tokens, join(dir, 'f-run'), ['--eval-fraction', '1.5']));
    expect(frac.code).toBe(2);
    expect(frac.stderr).toContain("--eval-fraction must be a number in [0, 1) (0: no eval split), got '1.5'");
    // The conflict is found before the model loads; in-process is enough.
    await expect(trainIn({ evalFraction: 0.2, evalData: tokens })).rejects.toThrow(
      'give at most one of --eval-data <file> (a separate eval set) and --eval-fraction <x> (held out from the data)',
    );
  });

  it('--eval-fraction and the recipe key eval_fraction set the split; 0 means no eval', async () => {
    // 8 rows: 0.5 holds out 4 (eval batches of 2 rows each), the default 0.1 holds out 1.
    const half = await trainIn({ evalFraction: 0.5 });
    expect(half.text).toContain('eval loss at step 0: ');
    expect(half.text).toMatch(/\(2 batch\(es\)\)/);
    const fromRecipe = await trainIn({ recipe: recipe({ eval_fraction: 0.5 }) });
    expect(fromRecipe.r.evalLosses).toEqual(half.r.evalLosses);
    const none = await trainIn({ evalFraction: 0 });
    expect(none.r.hasEval).toBe(false);
    expect(none.line).toContain('no eval data, so no eval loss');
    expect(none.text).not.toContain('eval loss at step');
  });

  it('--eval-data: evals during training reach the console; the step-0 eval is in log.jsonl', async () => {
    const evalFile = join(dir, 'eval.json');
    writeFileSync(evalFile, JSON.stringify([row(40, 32)]));
    const { r, text, out } = await trainIn({ evalData: evalFile, steps: 4, evalEvery: 2 });
    expect(r.evalLosses.map((e) => e.step)).toEqual([0, 2, 4]);
    expect(text).toMatch(/eval loss at step 0: [\d.]+ \(1 batch\(es\)\)/);
    expect(text).toMatch(/eval loss at step 2: [\d.]+\n/);
    expect(text).toMatch(/eval loss at step 4: [\d.]+\n/);
    const log = logOf(out);
    expect(log[0]).toMatchObject({ step: 0, eval_loss: r.evalLosses[0].loss });
    expect(log[0].loss).toBeUndefined();
    expect(log.map((x) => x.step)).toEqual([0, 1, 2, 3, 4]);
  });
});
