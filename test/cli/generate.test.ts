// `peftc generate` end to end (in-process, cpu backend) on the bundled tiny model: the
// stream equals the --json text, stop strings and config.json EOS lists end a row,
// seeded sampling repeats, ids without a tokenizer, and bad flags name the flag.
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { presetConfig, randomLlamaWeights, saveModelDir } from '../../src/models/llama/index.ts';
import { cli } from './run-cli.ts';

const TINY = join(import.meta.dirname, '..', '..', 'examples', 'models', 'tiny-llama');
const dir = mkdtempSync(join(tmpdir(), 'peftc-generate-'));

interface Row {
  index: number;
  output_ids: number[];
  text?: string;
  finish_reason: 'stop' | 'length';
}

async function gen(args: string[]): Promise<string> {
  const r = await cli(['generate', '--backend', 'cpu', ...args]);
  if (r.code !== 0) throw new Error(`peftc generate ${args.join(' ')} failed (${r.code}):\n${r.stderr}`);
  return r.stdout;
}

async function rows(args: string[]): Promise<Row[]> {
  return (await gen([...args, '--json']))
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Row);
}

describe('peftc generate', () => {
  it('streams the text that --json reports; rows of a batch are independent', async () => {
    const streamed = await gen(['--model', TINY, '--prompt', 'Once upon a time', '--max-new-tokens', '12']);
    const [one] = await rows(['--model', TINY, '--prompt', 'Once upon a time', '--max-new-tokens', '12']);
    expect(streamed).toBe(`${one.text}\n`);
    expect(one.output_ids).toHaveLength(12);
    expect(one.finish_reason).toBe('length');
    const both = await rows([
      '--model',
      TINY,
      '--prompt',
      'The cat',
      '--prompt',
      'Once upon a time',
      '--max-new-tokens',
      '12',
    ]);
    expect(both.map((r) => r.index)).toEqual([0, 1]);
    expect(both[1]).toEqual({ ...one, index: 1 });
  });

  it('a stop string ends the row before it; an EOS id from a config.json list ends it after', async () => {
    const [free] = await rows(['--model', TINY, '--prompt', 'Once upon a time', '--max-new-tokens', '10']);
    const stop = (free.text as string).slice(3, 5);
    const [stopped] = await rows([
      '--model',
      TINY,
      '--prompt',
      'Once upon a time',
      '--max-new-tokens',
      '10',
      '--stop',
      stop,
    ]);
    expect(stopped.finish_reason).toBe('stop');
    expect(stopped.text).toBe((free.text as string).slice(0, (free.text as string).indexOf(stop)));
    // The third generated token is an EOS of this copy of the model.
    const eosModel = join(dir, 'eos');
    mkdirSync(eosModel);
    copyFileSync(join(TINY, 'model.safetensors'), join(eosModel, 'model.safetensors'));
    const config = JSON.parse(readFileSync(join(TINY, 'config.json'), 'utf8'));
    writeFileSync(
      join(eosModel, 'config.json'),
      JSON.stringify({ ...config, eos_token_id: [257, free.output_ids[2]] }),
    );
    const [eos] = await rows(['--model', eosModel, '--prompt', 'Once upon a time', '--max-new-tokens', '10']);
    expect(eos).toMatchObject({ output_ids: free.output_ids.slice(0, 3), finish_reason: 'stop' });
  });

  it('seeded sampling repeats exactly; another seed differs', async () => {
    const args = ['--model', TINY, '--tokens', '[[256, 84, 104, 101]]', '--max-new-tokens', '16'];
    const sample = (seed: string) =>
      rows([...args, '--temperature', '1.3', '--top-k', '40', '--top-p', '0.95', '--seed', seed]);
    const a = await sample('4');
    expect(await sample('4')).toEqual(a);
    expect((await sample('5'))[0].output_ids).not.toEqual(a[0].output_ids);
  });

  it('without a tokenizer: --tokens gives ids (streamed), --prompt and --stop are refused', async () => {
    const c = { ...presetConfig('tiny'), vocabSize: 300 };
    const model = join(dir, 'no-tokenizer');
    saveModelDir(model, c, randomLlamaWeights(c, 1));
    const out = await gen(['--model', model, '--tokens', '[1, 2, 3]', '--max-new-tokens', '4']);
    expect(out.trim().split(' ').map(Number)).toHaveLength(4);
    const [row] = await rows(['--model', model, '--tokens', '[1, 2, 3]', '--max-new-tokens', '4']);
    expect(row.text).toBeUndefined();
    expect(out.trim()).toBe(row.output_ids.join(' '));
    const r = await cli(['generate', '--backend', 'cpu', '--model', model, '--prompt', 'hi']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--prompt needs the model's tokenizer.*--tokens/);
  });

  it.each([
    [['--prompt', 'a', '--tokens', '[1]'], /--prompt <text> or as --tokens <json>/],
    [[], /--prompt <text> or as --tokens <json>/],
    [['--prompt', 'a', '--top-p', '1.5'], /--top-p must be a number in \(0, 1\], got '1.5'/],
    [['--prompt', 'a', '--temperature', '-1'], /--temperature must be a number >= 0/],
    [['--prompt', 'a', '--top-k', '2.5'], /--top-k must be a non-negative integer/],
    [['--prompt', 'a', '--max-new-tokens', '0'], /--max-new-tokens must be a positive integer/],
    [['--prompt', 'a', '--repetition-penalty', '0'], /--repetition-penalty must be a positive number/],
    [['--prompt', 'a', '--merge'], /--merge needs at least one --adapter/],
    [['--tokens', '[1, 2'], /--tokens: not valid JSON/],
    [['--tokens', '[[1], [999]]'], /--tokens: \[1\]\[0\] = 999 is not a token id in \[0, 259\)/],
    [['--tokens', '[[]]'], /--tokens: row 0 must be a non-empty array/],
  ])('usage error for %j', async (args, message) => {
    const r = await cli(['generate', '--backend', 'cpu', '--model', TINY, ...args]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stdout).toBe('');
  });
});
