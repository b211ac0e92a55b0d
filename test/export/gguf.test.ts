// `peftc export --format gguf | gguf-lora` checked with llama.cpp itself (node-llama-cpp's
// prebuilt CPU binary, loaded once for the file): its logits on the exported files against
// `peftc logits` on the CPU backend, for the bundled tiny model, the PEFT-made adapters of
// test/fixtures/peft (LoRA on q/v/down + embed_tokens + lm_head; rsLoRA with rank_pattern and
// alpha_pattern), merged and unmerged; headers read back with @huggingface/gguf.
import { cpSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gguf } from '@huggingface/gguf';
import { getLlama, type Llama, LlamaLogLevel, type LlamaModel, type Token } from 'node-llama-cpp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runExport } from '../../src/cli/commands/export.ts';
import { runLogits } from '../../src/cli/commands/logits.ts';
import { SafetensorsFile } from '../../src/io/safetensors/index.ts';
import { bindParams } from '../../src/ir/weights.ts';
import { injectLora, loraOptions } from '../../src/methods/lora/index.ts';
import { savePeftAdapter } from '../../src/models/adapters.ts';
import { quantizeCheckpoint } from '../../src/models/bnb4bit.ts';
import {
  buildLlama,
  loadModel,
  presetConfig,
  randomLlamaWeights,
  saveModelDir,
} from '../../src/models/llama/index.ts';
import { loadTokenizer } from '../../src/models/tokenizer/index.ts';
import { Rng } from '../../src/util/rng.ts';
import { cli } from '../cli/run-cli.ts';

const MODEL = 'examples/models/tiny-llama';
const FIX = 'test/fixtures/peft';
const LORA = join(FIX, 'lora/adapter'); // q/v/down_proj, embed_tokens, lm_head (PEFT 0.21)
const RSLORA = join(FIX, 'lora-rslora-pattern/adapter'); // rsLoRA + rank_pattern + alpha_pattern
const DORA = join(FIX, 'dora/adapter');
const BPE = 'test/fixtures/io/bpe-tokenizer'; // 40 tokens, 9 merges
const IDS = [256, 72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108, 100, 33];
const VOCAB = 259;
const dir = mkdtempSync(join(tmpdir(), 'peftc-gguf-'));
let llama: Llama;
let n = 0;
const tmp = (ext: string) => join(dir, `${n++}.${ext}`);

beforeAll(async () => {
  llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error });
});
afterAll(async () => {
  await llama?.dispose();
});

interface LlamaRun {
  readonly ids?: readonly number[];
  readonly vocab?: number;
  /** Called with the loaded model (tokenizer checks). */
  readonly onModel?: (m: LlamaModel) => void;
}

/** llama.cpp's logits [seq, vocab] for `ids` (IDS): f32 KV cache, no flash attention. */
async function llamaLogits(modelPath: string, lora?: string, o: LlamaRun = {}): Promise<Float32Array> {
  const { ids = IDS, vocab = VOCAB } = o;
  const model = await llama.loadModel({ modelPath });
  try {
    o.onModel?.(model);
    const ctx = await model.createContext({
      contextSize: 32,
      batchSize: 32,
      flashAttention: false,
      experimentalKvCacheKeyType: 'F32',
      experimentalKvCacheValueType: 'F32',
      ...(lora ? { lora: { adapters: [{ filePath: lora }] } } : {}),
    });
    const res = await ctx
      .getSequence()
      .controlledEvaluate(ids.map((t) => [t as Token, { generateNext: { logits: true } }] as const));
    const out = new Float32Array(ids.length * vocab);
    res.forEach((r, i) => {
      const logits = r?.next.logits;
      expect(logits?.size).toBe(vocab);
      for (const [tok, v] of logits!) out[i * vocab + (tok as number)] = v;
    });
    await ctx.dispose();
    return out;
  } finally {
    await model.dispose();
  }
}

async function peftcLogits(
  adapter: string[] = [],
  merge = false,
  model = MODEL,
  ids: readonly number[] = IDS,
): Promise<Float32Array> {
  const out = tmp('safetensors');
  const tokens = tmp('json');
  writeFileSync(tokens, JSON.stringify([ids]));
  await runLogits({ model, adapter, merge, tokens, out, backend: 'cpu' });
  return SafetensorsFile.open(out).read('logits.0').data as Float32Array;
}

async function exportTo(
  format: string,
  extra: Record<string, unknown> = {},
): Promise<{ out: string; lines: string[] }> {
  const out = tmp('gguf');
  const lines = await runExport({ format, model: MODEL, out, ...extra });
  return { out, lines };
}

function argmax(l: Float32Array, row: number): number {
  let best = 0;
  for (let v = 1; v < VOCAB; v++) if (l[row * VOCAB + v] > l[row * VOCAB + best]) best = v;
  return best;
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe('peftc export --format gguf (llama.cpp)', () => {
  it("f32: llama.cpp gives peftc logits within 1e-4; the header is llama.cpp's", async () => {
    const { out, lines } = await exportTo('gguf');
    expect(lines[0]).toMatch(/21 tensors \(21 f32\)/);
    const d = maxDiff(await llamaLogits(out), await peftcLogits());
    expect(d).toBeLessThan(1e-4);
    const h = await gguf(out, { allowLocalFile: true });
    const m = h.metadata as Record<string, unknown>;
    expect(m.version).toBe(3);
    expect(m['general.architecture']).toBe('llama');
    expect(m['general.alignment']).toBe(32);
    expect(m['llama.attention.head_count_kv']).toBe(2);
    expect(m['llama.rope.dimension_count']).toBe(16);
    expect(m['tokenizer.ggml.model']).toBe('gpt2');
    expect((m['tokenizer.ggml.tokens'] as string[]).length).toBe(VOCAB);
    const q = h.tensorInfos.find((t) => t.name === 'blk.0.attn_q.weight')!;
    expect(q.shape.map(Number)).toEqual([64, 64]);
    const k = h.tensorInfos.find((t) => t.name === 'blk.1.attn_k.weight')!;
    expect(k.shape.map(Number)).toEqual([64, 32]); // [in, out]: 2 kv heads of 16
    expect(h.tensorInfos.every((t) => Number(t.offset) % 32 === 0)).toBe(true);
  });

  it('f16 and q8_0: within their rounding of the f32 logits', async () => {
    const ref = await peftcLogits();
    const f16 = await exportTo('gguf', { type: 'f16' });
    const q8 = await exportTo('gguf', { type: 'q8_0' });
    const h = await gguf(q8.out, { allowLocalFile: true });
    expect(h.tensorInfos.find((t) => t.name === 'blk.0.ffn_down.weight')?.dtype).toBe(8);
    expect(h.tensorInfos.find((t) => t.name === 'blk.0.attn_norm.weight')?.dtype).toBe(0);
    const [lf16, lq8] = [await llamaLogits(f16.out), await llamaLogits(q8.out)];
    const df16 = maxDiff(lf16, ref);
    const dq8 = maxDiff(lq8, ref);
    // Measured: f16 3.1e-3, q8_0 0.15 on logits up to |11.6|. Both include llama.cpp's own
    // rounding of activations in its matmuls (to f16, resp. q8_0 blocks): against peftc on
    // weights rounded the same way the gaps are 3.1e-3 and 0.09 (docs/DECISIONS.md).
    expect(df16).toBeLessThan(1e-2);
    expect(dq8).toBeLessThan(0.25);
    expect(df16).toBeGreaterThan(0);
    // f16 keeps the greedy choice at every position (q8_0 does not on this 64-wide toy model).
    for (let i = 0; i < IDS.length; i++) expect(argmax(lf16, i)).toBe(argmax(ref, i));
  });

  const asGgufAdapter = async (adapter: string) => {
    const base = (await exportTo('gguf')).out;
    const { out, lines } = await exportTo('gguf-lora', { adapter: [adapter] });
    expect(lines[0]).toMatch(/GGUF LoRA adapter/);
    const h = await gguf(out, { allowLocalFile: true });
    const m = h.metadata as Record<string, unknown>;
    expect([m['general.type'], m['adapter.type'], m['adapter.lora.alpha']]).toEqual(['adapter', 'lora', 8]);
    return {
      names: h.tensorInfos.map((t) => t.name),
      d: maxDiff(await llamaLogits(base, out), await peftcLogits([adapter])),
    };
  };

  it('a LoRA adapter (q/v/down, embed_tokens, lm_head) as a GGUF adapter: llama.cpp --lora gives peftc logits within 1e-4', async () => {
    const { names, d } = await asGgufAdapter(LORA);
    expect(names).toContain('token_embd.weight.lora_a');
    expect(names).toContain('output.weight.lora_b');
    expect(d).toBeLessThan(1e-4);
  });

  it('rsLoRA with rank_pattern and alpha_pattern: per-module scales folded into B, within 1e-4', async () => {
    expect((await asGgufAdapter(RSLORA)).d).toBeLessThan(1e-4);
  });

  it('--merge folds adapters (two, in order) into the GGUF: llama.cpp gives peftc logits --merge', async () => {
    const { out, lines } = await exportTo('gguf', { adapter: [LORA, RSLORA], merge: true });
    expect(lines.join('\n')).toMatch(/merged 2 adapter/);
    const d = maxDiff(await llamaLogits(out), await peftcLogits([LORA, RSLORA], true));
    expect(d).toBeLessThan(1e-4);
  });

  it('--merge takes what gguf-lora refuses: DoRA folded into the weights, within 1e-4', async () => {
    const { out } = await exportTo('gguf', { adapter: [DORA], merge: true });
    expect(maxDiff(await llamaLogits(out), await peftcLogits([DORA], true))).toBeLessThan(1e-4);
  });
});

/** `peftc export <args> --out <file>` fails, saying `why`, and writes nothing. */
async function refused(args: string[], why: RegExp, model = MODEL): Promise<string> {
  const out = join(dir, 'refused.gguf');
  const r = await cli(['export', '--model', model, ...args, '--out', out]);
  expect(r.code).not.toBe(0);
  expect(r.stderr).toMatch(why);
  expect(existsSync(out)).toBe(false);
  return r.stderr;
}

describe('peftc export --format gguf-lora: what GGUF cannot express is refused, nothing written', () => {
  it('DoRA, AdaLoRA, a PiSSA adapter in residual form, a LongLoRA context extension', async () => {
    const dora = await refused(
      ['--format', 'gguf-lora', '--adapter', DORA],
      /cannot be written as a GGUF LoRA adapter: .*DoRA .*magnitude/,
    );
    expect(dora).toMatch(/--format gguf --adapter <dir> --merge/);
    await refused(
      ['--format', 'gguf-lora', '--adapter', join(FIX, 'adalora/adapter')],
      /AdaLoRA's adapters are B \(A \* E\)/,
    );
    await refused(['--format', 'gguf-lora', '--adapter', join(FIX, 'pissa/adapter')], /residual form/);
    const longlora = join(dir, 'longlora');
    cpSync(LORA, longlora, { recursive: true });
    const cfg = JSON.parse(readFileSync(join(longlora, 'adapter_config.json'), 'utf8'));
    const scaled = { ...cfg, rope_scaling: { type: 'linear', factor: 2 } };
    writeFileSync(join(longlora, 'adapter_config.json'), JSON.stringify(scaled));
    await refused(['--format', 'gguf-lora', '--adapter', longlora], /rope_scaling .*context extension/);
    // Merged, the same adapter is a model with linear RoPE scaling, which llama.cpp applies.
    const { out } = await exportTo('gguf', { adapter: [longlora], merge: true });
    const m = (await gguf(out, { allowLocalFile: true })).metadata as Record<string, unknown>;
    expect([m['llama.rope.scaling.type'], m['llama.rope.scaling.factor']]).toEqual(['linear', 2]);
    expect(maxDiff(await llamaLogits(out), await peftcLogits([longlora], true))).toBeLessThan(1e-4);
  });

  it('modules_to_save (a trained norm and embedding, as LongLoRA trains them): refused; merged, used', async () => {
    const adapter = join(dir, 'saved-modules');
    const m = loadModel(MODEL);
    const options = loraOptions.parse({
      r: 2,
      lora_alpha: 4,
      target_modules: ['q_proj', 'k_proj'],
      modules_to_save: ['embed_tokens', 'norm'],
      init_lora_weights: false,
    });
    const inj = injectLora(buildLlama(m.config, { batch: 1, seq: 4 }), options, m.weights);
    const w = bindParams(inj.graph, inj.weights!, 3);
    for (const n of w.names())
      if (n.includes('modules_to_save') || n.includes('lora_B'))
        w.get(n)!.data.forEach((x, i, a) => void (a[i] = n.includes('lora_B') ? 10 * x : 1.5 * x));
    savePeftAdapter(adapter, inj.graph, (n) => w.get(n)!, options, MODEL);
    await refused(
      ['--format', 'gguf-lora', '--adapter', adapter],
      /besides LoRA pairs \(modules_to_save or biases\)/,
    );
    const { out } = await exportTo('gguf', { adapter: [adapter], merge: true });
    const ref = await peftcLogits([adapter], true);
    expect(maxDiff(ref, await peftcLogits())).toBeGreaterThan(0.1); // the adapter matters
    expect(maxDiff(await llamaLogits(out), ref)).toBeLessThan(1e-4);
    // `peftc merge` writes the copies in place of the weights they replace too (from an f32
    // copy of the model, so that the merged checkpoint is not rounded to bf16).
    const f32 = join(dir, 'tiny-f32');
    cpSync(MODEL, f32, { recursive: true });
    const config = JSON.parse(readFileSync(join(f32, 'config.json'), 'utf8'));
    writeFileSync(join(f32, 'config.json'), JSON.stringify({ ...config, torch_dtype: 'float32' }));
    const merged = join(dir, 'saved-modules-merged');
    const r = await cli(['merge', '--model', f32, '--adapter', adapter, '--out', merged]);
    expect(r.code, r.stderr).toBe(0);
    expect(maxDiff(await peftcLogits([], false, merged), ref)).toBeLessThan(1e-4);
  });

  it('a tokenizer.json it cannot write as GGUF (WordPiece)', async () => {
    const model = join(dir, 'wordpiece');
    cpSync(MODEL, model, { recursive: true });
    writeFileSync(join(model, 'tokenizer.json'), JSON.stringify({ model: { type: 'WordPiece', vocab: {} } }));
    await refused(
      ['--format', 'gguf'],
      /model.type "WordPiece": peftc writes GGUF tokenizers for BPE models only/,
      model,
    );
  });

  it('several adapters in one file; adapters without --merge for gguf; an unknown --type', async () => {
    await refused(
      ['--format', 'gguf-lora', '--adapter', LORA, '--adapter', RSLORA],
      /one adapter per file; got 2/,
    );
    await refused(['--format', 'gguf', '--adapter', LORA], /add --merge/);
    await refused(['--format', 'gguf', '--type', 'q4_0'], /--type q4_0: choose one of f32, f16, q8_0/);
  });
});

describe('peftc export --format gguf: other LLaMA checkpoints', () => {
  it('q/k/v/o and MLP biases (q, k permuted too), tied embeddings, linear RoPE scaling', async () => {
    const c = {
      ...presetConfig('tiny'),
      attentionBias: true,
      mlpBias: true,
      tieWordEmbeddings: true,
      ropeLinearFactor: 2,
      torchDtype: 'float32' as const,
    };
    const w = randomLlamaWeights(c, 5);
    const rng = new Rng(9);
    // Large enough that a wrong permutation of the q/k biases shows in the logits.
    for (const name of w.names()) {
      const std = name.endsWith('.bias') ? 0.5 : name.endsWith('norm.weight') ? 0 : 0.2;
      if (std) w.get(name)!.data.forEach((_, i, a) => void (a[i] = rng.normal(0, std)));
    }
    const model = join(dir, 'biased');
    saveModelDir(model, c, w);
    const { out, lines } = await exportTo('gguf', { model });
    expect(lines[0]).toMatch(/34 tensors/); // no output.weight: llama.cpp reuses token_embd
    const ref = await peftcLogits([], false, model);
    expect(Math.max(...ref.map(Math.abs))).toBeGreaterThan(1);
    expect(maxDiff(await llamaLogits(out), ref)).toBeLessThan(1e-4);
  });

  it('a bitsandbytes 4-bit base is dequantized (and says so); a LoRA adapter over it', async () => {
    const bnb = join(dir, 'bnb');
    quantizeCheckpoint(MODEL, bnb, { quantType: 'nf4', blocksize: 64, doubleQuant: true });
    const { out, lines } = await exportTo('gguf', { model: bnb });
    expect(lines.join('\n')).toMatch(
      /4-bit base \(bitsandbytes nf4, blocksize 64, double quant\) was dequantized to f32/,
    );
    expect(maxDiff(await llamaLogits(out), await peftcLogits([], false, bnb))).toBeLessThan(1e-4);
    const lora = (await exportTo('gguf-lora', { model: bnb, adapter: [LORA] })).out;
    expect(maxDiff(await llamaLogits(out, lora), await peftcLogits([LORA], false, bnb))).toBeLessThan(1e-4);
  });

  it("a tokenizer.json byte-level BPE: llama.cpp tokenizes text as peftc's tokenizer does", async () => {
    const c = { ...presetConfig('tiny'), vocabSize: 40, bosTokenId: 0, eosTokenId: 1, padTokenId: 3 };
    const model = join(dir, 'bpe');
    saveModelDir(model, c, randomLlamaWeights(c, 3));
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) cpSync(join(BPE, f), join(model, f));
    const { out, lines } = await exportTo('gguf', { model });
    expect(lines.join('\n')).toMatch(/byte-level BPE from .*40 tokens, 9 merges/);
    const text = 'hello world cab'; // only characters the 40-token vocabulary has
    const ids = loadTokenizer(model).encode(text);
    let llamaIds: number[] = [];
    const got = await llamaLogits(out, undefined, {
      ids,
      vocab: 40,
      onModel: (m) => {
        llamaIds = m.tokenize(text, false).map(Number);
        expect(m.detokenize(m.tokenize(text, false) as Token[])).toBe(text);
      },
    });
    expect([ids[0], ...llamaIds]).toEqual(ids); // peftc's template adds <s> (id 0)
    expect(ids).toContain(39); // 'Ġworld', made by the merges
    expect(maxDiff(got, await peftcLogits([], false, model, ids))).toBeLessThan(1e-4);
  });

  it('a tokenizer.json byte-fallback BPE (Llama 2 style) as a SentencePiece vocabulary: the same ids', async () => {
    const tj = llama2StyleTokenizer();
    const c = {
      ...presetConfig('tiny'),
      vocabSize: 277,
      bosTokenId: 1,
      eosTokenId: 2,
      padTokenId: undefined,
    };
    const model = join(dir, 'spm');
    saveModelDir(model, c, randomLlamaWeights(c, 4));
    writeFileSync(join(model, 'tokenizer.json'), JSON.stringify(tj));
    writeFileSync(
      join(model, 'tokenizer_config.json'),
      JSON.stringify({ bos_token: '<s>', eos_token: '</s>', add_bos_token: true }),
    );
    const { out, lines } = await exportTo('gguf', { model });
    expect(lines.join('\n')).toMatch(
      /byte-fallback BPE from .* as a SentencePiece vocabulary \(277 tokens\)/,
    );
    const text = 'hello world!é';
    const ids = loadTokenizer(model).encode(text);
    expect(ids).toEqual([1, 271, 276, 36, 198, 172]); // <s> ▁hello ▁world <0x21> <0xC3> <0xA9>
    let llamaIds: number[] = [];
    let back = '';
    const got = await llamaLogits(out, undefined, {
      ids,
      vocab: 277,
      onModel: (m) => {
        llamaIds = m.tokenize(text, false).map(Number);
        back = m.detokenize(m.tokenize(text, false) as Token[]);
      },
    });
    expect([ids[0], ...llamaIds]).toEqual(ids); // node-llama-cpp's tokenize adds no <s>
    expect(back.trimStart()).toBe(text);
    expect(maxDiff(got, await peftcLogits([], false, model, ids))).toBeLessThan(1e-4);
  });
});

/** A small tokenizer.json as Llama 2's is made: ▁ for spaces (prepended), merges, byte fallback. */
function llama2StyleTokenizer() {
  const vocab: Record<string, number> = { '<unk>': 0, '<s>': 1, '</s>': 2 };
  for (let b = 0; b < 256; b++) vocab[`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`] = 3 + b;
  for (const p of [
    '▁',
    'h',
    'e',
    'l',
    'o',
    'w',
    'r',
    'd',
    'he',
    'll',
    'hell',
    'hello',
    '▁hello',
    '▁w',
    'or',
    '▁wor',
    '▁worl',
    '▁world',
  ])
    vocab[p] = Object.keys(vocab).length;
  const merges = ['h e', 'l l', 'he ll', 'hell o', '▁ hello', '▁ w', 'o r', '▁w or', '▁wor l', '▁worl d'];
  const special = (id: number, content: string) => ({
    id,
    content,
    special: true,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
  });
  return {
    version: '1.0',
    added_tokens: [special(0, '<unk>'), special(1, '<s>'), special(2, '</s>')],
    normalizer: {
      type: 'Sequence',
      normalizers: [
        { type: 'Prepend', prepend: '▁' },
        { type: 'Replace', pattern: { String: ' ' }, content: '▁' },
      ],
    },
    pre_tokenizer: null,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
    },
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: '▁' }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        { type: 'Strip', content: ' ', start: 1, stop: 0 },
      ],
    },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: '<unk>',
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab,
      merges,
    },
  };
}
