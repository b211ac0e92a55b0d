// CLI conventions (issue 17 item 7): --version, bare `peftc` prints the help, no stray
// `demo` command, recipe param_groups patterns checked at load, PEFTC_WEBGPU_* env values
// validated like their flags, plain config.json messages, a wrong adapter name lists
// the adapters. One real-CLI spawn per item; the variants run in-process.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { addBackendOptions } from '../../src/cli/options.ts';
import { parseRecipe, RecipeError } from '../../src/methods/index.ts';
import { parseLlamaConfig, presetConfig, toHfConfig } from '../../src/models/llama/index.ts';
import { cli, peftc } from './run-cli.ts';

const root = join(import.meta.dirname, '..', '..');
const dir = mkdtempSync(join(tmpdir(), 'peftc-conv-'));
const tokens = join(dir, 'tokens.json');
writeFileSync(tokens, '[[1, 2, 3]]');
const logits = ['logits', '--model', 'examples/models/tiny-llama', '--tokens', tokens, '--out'];

/** `peftc` with extra environment variables (run-cli.ts passes the test's own env). */
function peftcEnv(args: string[], env: Record<string, string>) {
  const r = spawnSync(process.execPath, [join(root, 'bin', 'peftc.js'), ...args], {
    encoding: 'utf8',
    cwd: root,
    timeout: 120_000,
    env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp', ...env },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('version and help', () => {
  it('--version prints the package version', () => {
    const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
    const r = peftc(['--version']);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(version);
  });

  it('bare peftc prints the help on stdout and exits 0; demo is gone', () => {
    const r = peftc([]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Usage: peftc \[options\] \[command\]/);
    expect(r.stdout).toMatch(/--version/);
    expect(r.stdout).toMatch(/\btrain\b/);
    expect(r.stdout).not.toMatch(/\bdemo\b/);
    expect(r.stderr).toBe('');
  });
});

describe('recipe param_groups', () => {
  const recipe = (params: unknown) => ({
    methods: [{ method: 'lora' }],
    param_groups: [{ params, lr: 1e-2 }],
  });

  it('a bad pattern is a recipe error at its JSON path, naming the file', async () => {
    const file = join(dir, 'bad-groups.json');
    writeFileSync(file, JSON.stringify(recipe('*lora_B*')));
    const r = await cli(['ir', '--model', 'tiny', '--recipe', file]);
    expect(r.code).toBe(1);
    expect(r.stderr.split('\n')[0]).toBe(
      `peftc: error: ${file}: param_groups[0].params: not a valid regular expression: nothing to repeat ` +
        '(the pattern is anchored; use .* not *), got "*lora_B*"',
    );
  });

  it('in-process: path, reason, and the glob hint only for a *', () => {
    const err = (() => {
      try {
        parseRecipe(recipe('(lora_A'), { file: 'r.json' });
      } catch (e) {
        return e as RecipeError;
      }
    })();
    expect(err).toBeInstanceOf(RecipeError);
    expect(err?.path).toBe('param_groups[0].params');
    expect(err?.message).toBe(
      'r.json: param_groups[0].params: not a valid regular expression: unterminated group, got "(lora_A"',
    );
    expect(parseRecipe(recipe('.*lora_B.*')).param_groups[0].params).toBe('.*lora_B.*');
    expect(parseRecipe(recipe(['a.weight'])).param_groups[0].params).toEqual(['a.weight']);
  });
});

/** The usage error commander gives for these backend flags and env, in-process. */
function backendOptionError(args: string[], env: Record<string, string>): string {
  const saved = { ...process.env };
  Object.assign(process.env, env);
  try {
    const cmd = addBackendOptions(new Command('logits'))
      .exitOverride()
      .configureOutput({ writeErr: () => {} });
    cmd.parse(args, { from: 'user' });
    return '';
  } catch (e) {
    return (e as Error).message;
  } finally {
    for (const k of Object.keys(env)) delete process.env[k];
    Object.assign(process.env, saved);
  }
}

describe('PEFTC_WEBGPU_* env values', () => {
  it('a bad env value is a usage error naming the variable and the choices (CLI)', () => {
    const r = peftcEnv([...logits, join(dir, 'o.safetensors')], { PEFTC_WEBGPU_BACKEND: 'vulkn' });
    expect(r.code).toBe(2);
    expect(r.stderr.split('\n')[0]).toBe(
      "peftc: error: option '--webgpu-backend <name>' value 'vulkn' from env 'PEFTC_WEBGPU_BACKEND' is invalid. " +
        'Allowed choices are vulkan, opengles, metal, d3d12.',
    );
  });

  it('each env value is checked like its flag (in-process)', () => {
    const cases: Array<[string, string, string]> = [
      ['--webgpu-backend', 'PEFTC_WEBGPU_BACKEND', 'vulkn'],
      ['--webgpu-feature-level', 'PEFTC_WEBGPU_FEATURE_LEVEL', 'turbo'],
    ];
    for (const [flag, name, bad] of cases) {
      const fromFlag = backendOptionError([flag, bad], {});
      const fromEnv = backendOptionError([], { [name]: bad });
      expect(fromFlag).toMatch(/Allowed choices are/);
      expect(fromEnv.replace(` value '${bad}' from env '${name}'`, ` argument '${bad}'`)).toBe(fromFlag);
    }
    expect(backendOptionError(['--lavapipe-threads', '-1'], {})).toBe(
      "error: option '--lavapipe-threads <n>' argument '-1' is invalid. Expected a non-negative integer (0 = inline).",
    );
    expect(backendOptionError([], { LP_NUM_THREADS: 'all' })).toBe(
      "error: option '--lavapipe-threads <n>' value 'all' from env 'LP_NUM_THREADS' is invalid. Expected a non-negative integer (0 = inline).",
    );
    expect(backendOptionError(['--lavapipe-threads', '0'], { LP_NUM_THREADS: 'all' })).toBe('');
    // A flag on the command line wins over the env.
    expect(backendOptionError(['--webgpu-backend', 'vulkan'], { PEFTC_WEBGPU_BACKEND: 'vulkn' })).toBe('');
  });
});

describe('config.json messages', () => {
  const good = toHfConfig(presetConfig('tiny'));

  it('a missing key says so in plain words (CLI)', async () => {
    const model = join(dir, 'no-heads');
    mkdirSync(model, { recursive: true });
    const { num_attention_heads: _, ...rest } = good;
    writeFileSync(join(model, 'config.json'), JSON.stringify(rest));
    const r = await cli([
      'logits',
      '--model',
      model,
      '--tokens',
      tokens,
      '--out',
      join(dir, 'o.safetensors'),
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr.split('\n')[0]).toBe(
      `peftc: error: ${join(model, 'config.json')}: num_attention_heads is missing`,
    );
  });

  it('wrong types and values are plain sentences (in-process)', () => {
    const msg = (patch: Record<string, unknown>) => {
      try {
        parseLlamaConfig({ ...good, ...patch }, 'm/config.json');
      } catch (e) {
        return (e as Error).message;
      }
    };
    expect(msg({ num_attention_heads: '4' })).toBe(
      'm/config.json: num_attention_heads must be a number, got "4"',
    );
    expect(msg({ hidden_size: 2.5 })).toBe('m/config.json: hidden_size must be a whole number, got 2.5');
    expect(msg({ vocab_size: 0 })).toBe('m/config.json: vocab_size must be greater than 0, got 0');
    expect(msg({ tie_word_embeddings: 'yes' })).toBe(
      'm/config.json: tie_word_embeddings must be true or false, got "yes"',
    );
    expect(() => parseLlamaConfig([], 'm/config.json')).toThrow(
      'm/config.json: expected a JSON object of model settings, got a list',
    );
  });
});

describe('--webgpu-adapter', () => {
  it('a wrong name leads with the available adapters', () => {
    const r = peftc([...logits, join(dir, 'o.safetensors'), '--webgpu-adapter', 'nosuch']);
    expect(r.code).toBe(1);
    const first = r.stderr.split('\n')[0];
    // No adapter at all (no Vulkan driver) is the install help instead, tested in runtime.test.ts.
    if (/no WebGPU adapter found/.test(first)) return;
    expect(first).toMatch(/^peftc: error: no WebGPU adapter named 'nosuch'.*; available: '[^']+' \(\w+\)/);
    expect(r.stderr).toMatch(/--webgpu-adapter or PEFTC_WEBGPU_ADAPTER/);
  });
});
