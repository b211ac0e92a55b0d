// A user's bad inputs across `peftc`: every case must end in one `peftc: error: ...`
// naming the file/flag/key and what to do, exit 1 (runtime) or 2 (usage), no stack
// trace, no half-written --out, and no existing output destroyed. The cases run
// in-process (runCli, what bin/peftc.js calls); a few also run as the real command,
// which must exit with the same code and write the same error.
import {
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { type CliResult, cli, peftc } from './run-cli.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const M = join(ROOT, 'examples/models/tiny-llama');
const R = join(ROOT, 'examples/recipes/lora-tiny.json');
const D = join(ROOT, 'examples/data/tiny-instruct.jsonl');
const STORIES = join(ROOT, 'examples/data/tiny-stories.txt');
const T = ['--steps', '1', '--batch', '1', '--seq', '16', '--backend', 'cpu', '--no-plot'];

const dir = mkdtempSync(join(tmpdir(), 'peftc-bad-input-'));
const p = (name: string) => join(dir, name);
/** The --out of a case: unique, and must not exist after a failed run. */
const out = (name: string) => p(`out-${name}`);
const run = p('run'); // a trained adapter + checkpoint-1 (resume, init-adapter, adapter fixtures)

/** `model.safetensors` repacked without one tensor (a consistent file, just incomplete). */
function withoutTensor(src: string, dst: string, drop: string): void {
  const buf = readFileSync(src);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<
    string,
    { data_offsets: [number, number] }
  >;
  const data = buf.subarray(8 + n);
  const parts: Buffer[] = [];
  let at = 0;
  const kept: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(header)) {
    if (k === drop) continue;
    if (k === '__metadata__') {
      kept[k] = v;
      continue;
    }
    const bytes = data.subarray(v.data_offsets[0], v.data_offsets[1]);
    kept[k] = { ...v, data_offsets: [at, at + bytes.length] };
    parts.push(bytes);
    at += bytes.length;
  }
  let h = JSON.stringify(kept);
  h += ' '.repeat((8 - (h.length % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  writeFileSync(dst, Buffer.concat([len, Buffer.from(h), ...parts]));
}

function modelDir(name: string, config: string | undefined, weights: (file: string) => void): void {
  mkdirSync(p(name));
  if (config !== undefined) writeFileSync(p(`${name}/config.json`), config);
  weights(p(`${name}/model.safetensors`));
}

function adapterDir(name: string, config: (c: Record<string, unknown>) => string, weights?: Buffer): void {
  mkdirSync(p(name));
  const cfg = JSON.parse(readFileSync(join(run, 'adapter_config.json'), 'utf8'));
  writeFileSync(p(`${name}/adapter_config.json`), config(cfg));
  const st = join(run, 'adapter_model.safetensors');
  if (weights) writeFileSync(p(`${name}/adapter_model.safetensors`), weights);
  else copyFileSync(st, p(`${name}/adapter_model.safetensors`));
}

const recipe = JSON.parse(readFileSync(R, 'utf8'));
function recipeFile(name: string, edit: (r: typeof recipe) => void): void {
  const r = structuredClone(recipe);
  edit(r);
  writeFileSync(p(name), JSON.stringify(r));
}

beforeAll(async () => {
  // One training run: an adapter and a checkpoint to resume.
  const t = await cli(['train', '--model', M, '--recipe', R, '--data', D, '--out', run, ...T]);
  expect(t.stderr, t.stdout).not.toMatch(/error/);
  expect(t.code).toBe(0);

  const cfg = readFileSync(join(M, 'config.json'), 'utf8');
  const st = join(M, 'model.safetensors');
  const stBytes = readFileSync(st);
  modelDir('m-nocfg', undefined, (f) => copyFileSync(st, f));
  modelDir('m-badjson', '{"model_type": "llama",', (f) => copyFileSync(st, f));
  modelDir('m-gpt2', cfg.replace('"llama"', '"gpt2"').replace('LlamaForCausalLM', 'GPT2LMHeadModel'), (f) =>
    copyFileSync(st, f),
  );
  modelDir('m-missing', cfg, (f) => withoutTensor(st, f, 'model.layers.1.mlp.up_proj.weight'));
  modelDir('m-null', 'null', (f) => copyFileSync(st, f));
  modelDir('m-trunc', cfg, (f) => writeFileSync(f, stBytes.subarray(0, 50_000)));
  const garbled = Buffer.from(stBytes);
  garbled.write('{garbage', 8);
  modelDir('m-badheader', cfg, (f) => writeFileSync(f, garbled));

  mkdirSync(p('a-notpeft'));
  writeFileSync(p('a-notpeft/README.md'), 'not an adapter\n');
  adapterDir('a-badtargets', (c) => JSON.stringify({ ...c, target_modules: ['foo_proj', 'bar_proj'] }));
  adapterDir('a-rank', (c) => JSON.stringify({ ...c, r: 4 }));
  adapterDir('a-prompt', (c) => JSON.stringify({ ...c, peft_type: 'PROMPT_TUNING' }));
  adapterDir('a-badjson', () => '{"r": 8,');
  adapterDir(
    'a-trunc',
    (c) => JSON.stringify(c),
    readFileSync(join(run, 'adapter_model.safetensors')).subarray(0, 3000),
  );

  writeFileSync(p('tok-notjson.json'), '{bad');
  writeFileSync(p('tok-empty.json'), '');
  writeFileSync(p('tok-neg.json'), '[[1, 2, -3]]');
  writeFileSync(p('tok-oov.json'), '[[1, 2, 300]]');
  writeFileSync(p('tok-ok.json'), '[[1, 2, 3, 4]]');
  writeFileSync(p('empty.txt'), '');
  writeFileSync(p('empty.jsonl'), '');
  const lines = readFileSync(D, 'utf8').split('\n');
  writeFileSync(p('badline.jsonl'), [lines[0], lines[1], '{"prompt": "x", ', lines[2]].join('\n'));
  writeFileSync(p('short.txt'), 'Once.\n');

  recipeFile('r-typo.json', (r) => {
    r.methods[0].rnak = r.methods[0].r;
    delete r.methods[0].r;
  });
  recipeFile('r-type.json', (r) => {
    r.methods[0].r = 'eight';
  });
  recipeFile('r-method.json', (r) => {
    r.methods[0].method = 'lorax';
  });
  recipeFile('r-qlora-after.json', (r) => {
    r.methods.push({ method: 'qlora', quant_type: 'nf4', blocksize: 64 });
  });
  recipeFile('r-optimizer.json', (r) => {
    r.optimizer.type = 'adamx';
  });
  recipeFile('r-rank4.json', (r) => {
    r.methods[0].r = 4;
  });
  recipeFile('r-qv.json', (r) => {
    r.methods[0].target_modules = ['q_proj', 'v_proj'];
  });
  writeFileSync(p('r-notjson.json'), '{"methods": [');

  writeFileSync(p('a-file'), 'keep me\n');
  mkdirSync(p('existing'));
  writeFileSync(p('existing/marker'), 'keep me\n');
  cpSync(run, p('run-copy'), { recursive: true });
});

interface Case {
  readonly name: string;
  readonly args: () => string[];
  readonly code: 1 | 2;
  /** What stderr must say (after "peftc: error: "). */
  readonly says: RegExp;
}

const train =
  (name: string, over: Record<string, string>, extra: string[] = []) =>
  () => {
    const flags: Record<string, string> = {
      '--model': M,
      '--recipe': R,
      '--data': D,
      '--out': out(name),
      ...over,
    };
    return ['train', ...Object.entries(flags).flatMap(([k, v]) => (v === '' ? [] : [k, v])), ...T, ...extra];
  };
const logits =
  (name: string, over: Record<string, string>, extra: string[] = []) =>
  () => {
    const flags: Record<string, string> = {
      '--model': M,
      '--tokens': p('tok-ok.json'),
      '--out': out(`${name}.safetensors`),
      ...over,
    };
    return [
      'logits',
      ...Object.entries(flags).flatMap(([k, v]) => (v === '' ? [] : [k, v])),
      '--backend',
      'cpu',
      ...extra,
    ];
  };
const merge = (name: string, over: Record<string, string>) => () => {
  const flags: Record<string, string> = { '--model': M, '--adapter': run, '--out': out(name), ...over };
  return ['merge', ...Object.entries(flags).flat()];
};
const quantize = (name: string, over: Record<string, string>) => () => {
  const flags: Record<string, string> = { '--model': M, '--out': out(name), ...over };
  return ['quantize', ...Object.entries(flags).flat()];
};
const cases: Case[] = [
  // Paths that do not exist, for every path flag.
  {
    name: 'train --model missing',
    args: train('t1', { '--model': p('nope') }),
    code: 1,
    says: /nope: not a model directory and not a preset/,
  },
  {
    name: 'train --recipe missing',
    args: train('t2', { '--recipe': p('nope.json') }),
    code: 1,
    says: /nope\.json: cannot read the recipe/,
  },
  {
    name: 'train --data missing',
    args: train('t3', { '--data': p('nope.jsonl') }),
    code: 1,
    says: /nope\.jsonl: cannot read data file/,
  },
  {
    name: 'train --tokens missing',
    args: train('t4', { '--data': '', '--tokens': p('nope.json') }),
    code: 1,
    says: /nope\.json: cannot read/,
  },
  {
    name: 'train --init-adapter missing',
    args: train('t5', { '--init-adapter': p('nope') }),
    code: 1,
    says: /nope\/adapter_config\.json: missing: a PEFT adapter folder/,
  },
  {
    name: 'logits --model missing',
    args: logits('l1', { '--model': p('nope') }),
    code: 1,
    says: /nope: not a model directory/,
  },
  {
    name: 'logits --tokens missing',
    args: logits('l2', { '--tokens': p('nope.json') }),
    code: 1,
    says: /nope\.json: cannot read a JSON array of token-id arrays/,
  },
  {
    name: 'logits --adapter missing',
    args: logits('l3', { '--adapter': p('nope') }),
    code: 1,
    says: /nope\/adapter_config\.json: missing/,
  },
  {
    name: 'merge --model missing',
    args: merge('g1', { '--model': p('nope') }),
    code: 1,
    says: /nope: not a model directory/,
  },
  {
    name: 'merge --adapter missing',
    args: merge('g2', { '--adapter': p('nope') }),
    code: 1,
    says: /nope\/adapter_config\.json: missing/,
  },
  {
    name: 'quantize --model missing',
    args: quantize('q1', { '--model': p('nope') }),
    code: 1,
    says: /--model .*nope: not a directory/,
  },
  {
    name: 'ir --model missing',
    args: () => ['ir', '--model', p('nope')],
    code: 1,
    says: /nope' is neither a preset .* nor a model directory/,
  },
  {
    name: 'ir --recipe missing',
    args: () => ['ir', '--model', 'tiny', '--recipe', p('nope.json')],
    code: 1,
    says: /nope\.json: cannot read the recipe/,
  },

  // Broken model directories.
  {
    name: 'model without config.json',
    args: logits('l4', { '--model': p('m-nocfg') }),
    code: 1,
    says: /m-nocfg\/config\.json: cannot read the model config .*Hugging Face model directory/,
  },
  {
    name: 'config.json not JSON (logits)',
    args: logits('l5', { '--model': p('m-badjson') }),
    code: 1,
    says: /m-badjson\/config\.json: not valid JSON/,
  },
  {
    name: 'config.json not JSON (quantize)',
    args: quantize('q2', { '--model': p('m-badjson') }),
    code: 1,
    says: /m-badjson\/config\.json: not valid JSON/,
  },
  {
    name: 'config.json not an object',
    args: logits('l16', { '--model': p('m-null') }),
    code: 1,
    says: /m-null\/config\.json: expected a JSON object/,
  },
  {
    name: 'unsupported architecture',
    args: train('t6', { '--model': p('m-gpt2') }),
    code: 1,
    says: /m-gpt2\/config\.json: model_type 'gpt2' is not a LLaMA-family decoder \(supported: llama/,
  },
  {
    name: 'missing tensor',
    args: logits('l6', { '--model': p('m-missing') }),
    code: 1,
    says: /m-missing: missing 1 tensor\(s\) the config needs: model\.layers\.1\.mlp\.up_proj\.weight/,
  },
  {
    name: 'truncated model.safetensors',
    args: merge('g3', { '--model': p('m-trunc') }),
    code: 1,
    says: /m-trunc\/model\.safetensors: 'model\.embed_tokens\.weight': .*truncated/,
  },
  {
    name: 'corrupted safetensors header',
    args: quantize('q3', { '--model': p('m-badheader') }),
    code: 1,
    says: /m-badheader\/model\.safetensors: header is not valid JSON/,
  },

  // Broken adapters.
  {
    name: 'adapter dir that is not a PEFT adapter',
    args: logits('l7', { '--adapter': p('a-notpeft') }),
    code: 1,
    says: /a-notpeft\/adapter_config\.json: missing: a PEFT adapter folder holds adapter_config\.json and adapter_model\.safetensors/,
  },
  {
    name: 'adapter target modules not in the model',
    args: merge('g4', { '--adapter': p('a-badtargets') }),
    code: 1,
    says: /a-badtargets\/adapter_config\.json: target modules \["foo_proj","bar_proj"\] not found in the model; module names look like: .*q_proj/,
  },
  {
    name: 'adapter ranks differ from its config',
    args: logits('l8', { '--adapter': p('a-rank') }),
    code: 1,
    says: /a-rank\/adapter_model\.safetensors: '.*lora_A\.weight': lora_A has rank 8 .* but the config gives r = 4/,
  },
  {
    name: 'adapter safetensors truncated',
    args: merge('g5', { '--adapter': p('a-trunc') }),
    code: 1,
    says: /a-trunc\/adapter_model\.safetensors: header length \d+ exceeds the file size .*truncated/,
  },
  {
    name: 'adapter of another PEFT type',
    args: logits('l9', { '--adapter': p('a-prompt') }),
    code: 1,
    says: /a-prompt\/adapter_config\.json: 'peft_type': .*PROMPT_TUNING' is not supported/,
  },
  {
    name: 'adapter_config.json not JSON',
    args: logits('l10', { '--adapter': p('a-badjson') }),
    code: 1,
    says: /a-badjson\/adapter_config\.json: not valid JSON/,
  },

  // Token and data files.
  {
    name: 'tokens not JSON',
    args: logits('l11', { '--tokens': p('tok-notjson.json') }),
    code: 1,
    says: /tok-notjson\.json: cannot read a JSON array of token-id arrays/,
  },
  {
    name: 'tokens file empty',
    args: train('t7', { '--data': '', '--tokens': p('tok-empty.json') }),
    code: 1,
    says: /tok-empty\.json: data file is empty/,
  },
  {
    name: 'negative token id',
    args: logits('l12', { '--tokens': p('tok-neg.json') }),
    code: 1,
    says: /tok-neg\.json: \[0\]\[2\] = -3 is not a token id in \[0, 259\)/,
  },
  {
    name: 'out-of-vocabulary token id',
    args: train('t8', { '--data': '', '--tokens': p('tok-oov.json') }),
    code: 1,
    says: /tok-oov\.json\[0\]: token id 300 at position 2 is out of range for a vocabulary of 259/,
  },
  {
    name: 'empty text data',
    args: train('t9', { '--data': p('empty.txt') }),
    code: 1,
    says: /empty\.txt: data file is empty/,
  },
  {
    name: 'empty JSONL data',
    args: train('t10', { '--data': p('empty.jsonl') }),
    code: 1,
    says: /empty\.jsonl: data file is empty/,
  },
  {
    name: 'JSONL with a bad line',
    args: train('t11', { '--data': p('badline.jsonl') }),
    code: 1,
    says: /badline\.jsonl:3: not valid JSON/,
  },
  {
    name: 'text shorter than one sequence',
    args: train('t12', { '--data': p('short.txt') }),
    code: 1,
    says: /short\.txt: has \d+ tokens after tokenization; one row of seq 16 needs 16\. Lower --seq or add data/,
  },
  {
    name: '--seq beyond max_position_embeddings',
    args: train('t13', {}, ['--seq', '1024']),
    code: 1,
    says: /--seq 1024 is longer than the model's max_position_embeddings 512/,
  },

  // Recipes.
  {
    name: 'recipe key typo',
    args: train('t14', { '--recipe': p('r-typo.json') }),
    code: 1,
    says: /r-typo\.json: methods\[0\]\.rnak: unknown key; did you mean r\?/,
  },
  {
    name: 'recipe wrong type',
    args: train('t15', { '--recipe': p('r-type.json') }),
    code: 1,
    says: /r-type\.json: methods\[0\]\.r: expected a positive integer, got "eight"/,
  },
  {
    name: 'recipe unknown method',
    args: train('t16', { '--recipe': p('r-method.json') }),
    code: 1,
    says: /r-method\.json: methods\[0\]\.method: unknown method 'lorax'; did you mean lora\?/,
  },
  {
    name: 'recipe qlora after lora',
    args: train('t17', { '--recipe': p('r-qlora-after.json') }),
    code: 1,
    says: /r-qlora-after\.json: methods\[1\]: 'qlora' conflicts with methods\[0\] 'lora'.*move the qlora entry first/,
  },
  {
    name: 'recipe unknown optimizer',
    args: train('t18', { '--recipe': p('r-optimizer.json') }),
    code: 1,
    says: /r-optimizer\.json: optimizer\.type: expected one of "adamw".* got "adamx"/,
  },
  {
    name: 'recipe not JSON',
    args: () => ['ir', '--model', 'tiny', '--recipe', p('r-notjson.json')],
    code: 1,
    says: /r-notjson\.json: not valid JSON/,
  },

  // Outputs, resume, init.
  {
    name: 'train --out is a file',
    args: train('t19', { '--out': p('a-file') }),
    code: 1,
    says: /--out .*a-file is a file, not a directory/,
  },
  {
    name: 'train --resume with nothing to resume',
    args: train('t20', {}, ['--resume']),
    code: 1,
    says: /--resume: nothing to resume in .*out-t20.*drop --resume to start a fresh run/,
  },
  {
    name: 'resume with another rank',
    args: train('t21', { '--out': p('run-copy'), '--recipe': p('r-rank4.json') }, [
      '--steps',
      '2',
      '--resume',
    ]),
    code: 1,
    says: /--resume: the checkpoint: '.*lora_A\.default\.weight' has shape \[8,64\] but the recipe makes \[4,64\]; resume with the recipe it was saved with/,
  },
  {
    name: 'resume with other target modules',
    args: train('t22', { '--out': p('run-copy'), '--recipe': p('r-qv.json') }, ['--steps', '2', '--resume']),
    code: 1,
    says: /--resume: the checkpoint comes from a different recipe \(it holds .*k_proj.* that this recipe does not make\)/,
  },
  {
    name: 'resume with other data',
    args: train('t23', { '--out': p('run-copy'), '--data': STORIES }, ['--steps', '2', '--resume']),
    code: 1,
    says: /cannot resume exactly at step 1: the data .* changed since the checkpoint\. Use the same data and settings, or start a fresh run/,
  },
  {
    name: '--init-adapter of another rank',
    args: train('t24', { '--recipe': p('r-rank4.json'), '--init-adapter': run }),
    code: 1,
    says: /--init-adapter .*run: '.*lora_A\.default\.weight' has shape \[8,64\] but the recipe makes \[4,64\]; use a recipe with the adapter's r/,
  },
  {
    name: 'merge --out exists',
    args: merge('g6', { '--out': p('existing') }),
    code: 1,
    says: /--out .*existing already exists; choose a new directory/,
  },
  {
    name: 'merge --out is a file',
    args: merge('g7', { '--out': p('a-file') }),
    code: 1,
    says: /--out .*a-file already exists/,
  },
  {
    name: 'quantize --out exists',
    args: quantize('q4', { '--out': p('existing') }),
    code: 1,
    says: /--out .*existing already exists/,
  },
  {
    name: 'logits --out is a directory',
    args: logits('l13', { '--out': p('existing') }),
    code: 1,
    says: /--out .*existing is a directory; give a file name/,
  },

  // Usage errors (exit 2).
  {
    name: 'unknown --backend',
    args: logits('l14', {}, ['--backend', 'cuda']),
    code: 2,
    says: /option '--backend <name>' argument 'cuda' is invalid\. Allowed choices are webgpu, cpu/,
  },
  {
    name: 'logits --merge without --adapter',
    args: logits('l17', {}, ['--merge']),
    code: 2,
    says: /--merge needs at least one --adapter/,
  },
  {
    name: 'quantize bad --blocksize',
    args: quantize('q5', { '--blocksize': '100' }),
    code: 2,
    says: /--blocksize must be one of 32, 64, .* got '100'/,
  },
  {
    name: 'quantize bad --quant-type',
    args: quantize('q6', { '--quant-type': 'int4' }),
    code: 2,
    says: /--quant-type must be nf4 or fp4, got 'int4'/,
  },
  {
    name: '--steps 0',
    args: train('t25', {}, ['--steps', '0']),
    code: 2,
    says: /--steps must be a positive integer, got '0'/,
  },
  {
    name: '--seed -1',
    args: train('t26', {}, ['--seed', '-1']),
    code: 2,
    says: /--seed must be a non-negative integer, got '-1'/,
  },
  {
    name: 'both --data and --tokens',
    args: train('t27', { '--tokens': p('tok-ok.json') }),
    code: 2,
    says: /give exactly one of --data <file> and --tokens <file>/,
  },
  {
    name: 'unknown option',
    args: train('t28', {}, ['--stepz', '3']),
    code: 2,
    says: /unknown option '--stepz'\n\(Did you mean --steps\?\)/,
  },
  {
    name: 'missing required option',
    args: () => ['logits', '--model', M, '--out', out('l15')],
    code: 2,
    says: /required option '--tokens <file>' not specified/,
  },
  { name: 'unknown command', args: () => ['frobnicate'], code: 2, says: /unknown command 'frobnicate'/ },
  {
    name: 'ir --print-after an unknown pass',
    args: () => ['ir', '--model', 'tiny', '--recipe', R, '--print-after', 'nosuch'],
    code: 2,
    says: /--print-after: no pass named nosuch in the pipeline \(passes: lora/,
  },
];

/** A folder's files and sizes: what "untouched" is checked against. */
const snapshot = (d: string) =>
  readdirSync(d, { recursive: true })
    .map(String)
    .sort()
    .map((f) => `${f}:${statSync(join(d, f)).size}`);

/** Runs a case and checks everything a bad input must give. */
async function check(c: Case, run: (args: string[]) => Promise<CliResult>): Promise<CliResult> {
  const before = { run: snapshot(p('run-copy')), existing: snapshot(p('existing')) };
  const args = c.args();
  // A failed command leaves no --out it did not find.
  const outArg = args.includes('--out') ? args[args.indexOf('--out') + 1] : undefined;
  const outExisted = outArg !== undefined && existsSync(outArg);
  const r = await run(args);
  expect(r.code, r.stderr).toBe(c.code);
  expect(r.stderr).toMatch(/^peftc: error: /);
  expect(r.stderr.match(/peftc: error:/g)).toHaveLength(1);
  expect(r.stderr).toMatch(c.says);
  // Our own error classes, not a bug (a TypeError would ask for PEFTC_DEBUG) or a trace.
  expect(r.stderr).not.toMatch(/^ {4}at /m);
  expect(r.stderr).not.toMatch(/PEFTC_DEBUG/);
  if (outArg && !outExisted) expect(existsSync(outArg), `${outArg} was left behind`).toBe(false);
  // Existing outputs are untouched.
  expect(readFileSync(p('a-file'), 'utf8')).toBe('keep me\n');
  expect(readFileSync(p('existing/marker'), 'utf8')).toBe('keep me\n');
  expect(snapshot(p('existing'))).toEqual(before.existing);
  expect(snapshot(p('run-copy'))).toEqual(before.run);
  return r;
}

describe('peftc on bad input', () => {
  it.each(cases)('$name', async (c) => {
    await check(c, cli);
  });
});

// What only a process shows: the status the shell sees for a runtime error (1), a
// commander parse error (2) and our own usage error (2), and the same stderr as in-process.
describe('the real command on bad input', () => {
  const names = ['train --model missing', 'unknown option', 'quantize bad --blocksize'];
  const real = cases.filter((c) => names.includes(c.name));
  if (real.length !== names.length) throw new Error(`spawned cases: some of ${names} were renamed`);
  it.each(real)('$name', async (c) => {
    const spawned = await check(c, async (args) => peftc(args));
    const inProcess = await cli(c.args());
    expect(spawned).toEqual(inProcess);
  });
});

describe('peftc logits --out', () => {
  it('creates the folders of a new --out file', async () => {
    const f = join(dir, 'new', 'sub', 'logits.safetensors');
    const r = await cli(logits('ok', { '--out': f })());
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(existsSync(f)).toBe(true);
  });
});
