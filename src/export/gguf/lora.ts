// `peftc export --format gguf-lora`: one PEFT LoRA adapter as a GGUF LoRA adapter that
// llama.cpp loads over the GGUF of its base (llama-adapter.cpp): general.type = adapter,
// adapter.type = lora, adapter.lora.alpha, and per adapted module `<gguf name>.weight.lora_a`
// (A [r, in], dims [in, r]) and `.lora_b` (B [out, r], dims [r, out]; q/k rows permuted as
// the base's). llama.cpp scales each pair by alpha / r with r from lora_b: per-module ranks
// and alphas (rank_pattern, alpha_pattern) and rsLoRA's alpha / sqrt(r) are folded into B,
// so every module gets PEFT's scale exactly. Embedding LoRA on embed_tokens is token_embd's
// pair (lora_a dims [r, vocab], lora_b dims [r, dim]), as llama.cpp applies it. What the
// format has no place for is refused, naming the reason, before anything is written.

import { asOutput } from '../../io/fs-errors.ts';
import { type GgufTensor, type GgufValue, writeGguf } from '../../io/gguf/index.ts';
import type { Tensor } from '../../ir/tensor.ts';
import type { WeightStore } from '../../ir/weights.ts';
import { type AdapterSite, checkAdapters } from '../../methods/index.ts';
import type { LoraData } from '../../methods/lora/index.ts';
import { attachPeftAdapter } from '../../models/adapters.ts';
import type { LlamaConfig } from '../../models/llama/config.ts';
import { modelGraph } from '../../models/llama/load.ts';
import { openModel } from '../../models/open.ts';
import { UsageError, UserError } from '../../util/errors.ts';
import type { ExportOptions } from '../format.ts';
import { ggufModuleName, permuteRopeRows, ropeHeads } from './llama.ts';

/** Why an adapter structure other than LoRA's has no GGUF LoRA form. */
const NOT_LORA: Record<string, string> = {
  dora: "DoRA (use_dora) rescales each output row by a learned magnitude over the row norm of W + s B A; llama.cpp's LoRA adapters are W + s B A only",
  adalora:
    "AdaLoRA's adapters are B (A * E) with a pruned rank mask, not the plain A/B pair this export writes",
  'malora-head': "MaLoRA's per-head rank masks are not the plain A/B pair this export writes",
  'malora-moe':
    "a mixture of LoRA experts routes every token through its own experts; llama.cpp's LoRA adapters are one fixed A/B pair per weight",
};
const MERGE_HINT = 'export the merged model instead: --format gguf --adapter <dir> --merge';

type Attached = ReturnType<typeof attachPeftAdapter>;

/** Why the attached adapter has no GGUF LoRA form, or undefined when it has one. */
function refusal(
  att: Attached,
  base: WeightStore,
  sites: readonly AdapterSite[],
  c: LlamaConfig,
): string | undefined {
  const cfg = att.config as Record<string, unknown>;
  if (cfg.rope_scaling !== undefined && cfg.rope_scaling !== null)
    return `its config sets rope_scaling (${JSON.stringify(cfg.rope_scaling)}: LongLoRA's context extension), which changes the base model, not its weights' deltas`;
  if (typeof cfg.init_lora_weights === 'string' && /pissa|olora/i.test(cfg.init_lora_weights))
    return `it is saved in ${cfg.init_lora_weights}'s residual form (the base weight is replaced by W - s B A); save the converted plain LoRA form (peftc's default) to use it with llama.cpp`;
  for (const s of sites) {
    if (s.structure.name !== 'lora')
      return `${s.module}: ${NOT_LORA[s.structure.name] ?? `adapter structure '${s.structure.name}' is not plain LoRA`}`;
    if (!ggufModuleName(s.module)) return `${s.module} is not a module llama.cpp's llama model has`;
    if (s.module === 'lm_head' && c.tieWordEmbeddings)
      return 'lm_head is tied to the embeddings, so the base GGUF has no output tensor to adapt';
  }
  // Whole trained modules (modules_to_save, LongLoRA's embeddings and norms) and trained biases
  // (bias: all | lora_only) are new base weights, which a GGUF adapter cannot carry. Copies of
  // base weights PEFT saves beside embedding adapters (save_embedding_layers) are fine when
  // they equal the base model's.
  const claimed = new Set(sites.flatMap((s) => s.params));
  const sameAsBase = (n: string) => {
    const a = att.tensors.get(n)!.data as ArrayLike<number>;
    const b = base.get(n)?.data as ArrayLike<number> | undefined;
    return b?.length === a.length && Array.prototype.every.call(a, (x: number, i: number) => x === b[i]);
  };
  const extra = [...att.tensors.keys()].filter((n) => !claimed.has(n) && !sameAsBase(n));
  if (extra.length)
    return `it trains ${extra.length} tensor(s) besides LoRA pairs (modules_to_save or biases), e.g. ${extra[0]}; a GGUF LoRA adapter holds only lora_a/lora_b pairs`;
  if (!sites.length) return 'it adapts no module';
  return undefined;
}

/** lora_a and lora_b of one LoRA site, B scaled by k and (q/k) permuted as the base's rows. */
function pairTensors(
  site: AdapterSite,
  read: (n: string) => Tensor,
  alpha: number,
  c: LlamaConfig,
): GgufTensor[] {
  const target = ggufModuleName(site.module)!;
  const { A: An, B: Bn, scale } = site.data as LoraData;
  const A = read(String(An.attrs.name));
  const B = read(String(Bn.attrs.name));
  const [r, inF] = A.shape;
  const outF = B.shape[0];
  // llama.cpp applies alpha / r (r = lora_b's ne[0]); alpha 0 means scale 1.
  const k = alpha ? (scale * r) / alpha : scale;
  const heads = ropeHeads(target, c);
  const bData = () => {
    const b = Float32Array.from(B.data as ArrayLike<number>, (x) => x * k);
    return heads ? permuteRopeRows(b, outF, r, heads) : b;
  };
  // PEFT's embedding A is [r, vocab]; llama.cpp gathers rows of lora_a by token: dims [r, vocab].
  const aEmbedding = () => {
    const a = A.data as ArrayLike<number>;
    const t = new Float32Array(r * inF);
    for (let j = 0; j < r; j++) for (let v = 0; v < inF; v++) t[v * r + j] = a[j * inF + v];
    return t;
  };
  const name = `${target}.weight`;
  return [
    site.kind === 'embedding'
      ? { name: `${name}.lora_a`, dims: [r, inF], type: 'f32', data: aEmbedding }
      : { name: `${name}.lora_a`, dims: [inF, r], type: 'f32', data: () => A.data as ArrayLike<number> },
    { name: `${name}.lora_b`, dims: [r, outF], type: 'f32', data: bData },
  ];
}

export async function exportGgufLora(o: ExportOptions): Promise<string[]> {
  const dirs = o.adapter ?? [];
  if (dirs.length !== 1)
    throw new UsageError(
      `--format gguf-lora writes one adapter per file; got ${dirs.length} --adapter flags ` +
        '(export each on its own; llama.cpp takes several with repeated --lora)',
    );
  const dir = dirs[0];
  const model = openModel(o.model);
  const c = model.config;
  const base = modelGraph(model, { batch: 1, seq: 2 });
  const att = attachPeftAdapter(base.graph, base.weights, dir);
  const sites = checkAdapters(att.graph, 'gguf-lora export');
  const why = refusal(att, base.weights, sites, c);
  if (why)
    throw new UserError(`--adapter ${dir}: cannot be written as a GGUF LoRA adapter: ${why}; ${MERGE_HINT}`);
  const alpha = Number((att.config as Record<string, unknown>).lora_alpha ?? 8);
  const read = (n: string): Tensor => {
    const t = att.weights.get(n);
    if (!t) throw new UserError(`--adapter ${dir}: no tensor ${n}`);
    return t;
  };
  const tensors = sites.flatMap((s) => pairTensors(s, read, alpha, c));
  const metadata = new Map<string, GgufValue>([
    ['general.architecture', { type: 'string', value: 'llama' }],
    ['general.type', { type: 'string', value: 'adapter' }],
    ['general.name', { type: 'string', value: dir.replace(/\/+$/, '').split('/').pop() ?? 'adapter' }],
    ['adapter.type', { type: 'string', value: 'lora' }],
    ['adapter.lora.alpha', { type: 'f32', value: alpha }],
  ]);
  const bytes = asOutput('--out', o.out, () => writeGguf(o.out, { metadata, tensors }));
  return [
    `wrote ${o.out}: GGUF LoRA adapter, ${sites.length} module(s), alpha ${alpha}, ${bytes} bytes`,
    `load it over the base GGUF (peftc export --format gguf --model ${o.model}): llama-cli -m <base.gguf> --lora ${o.out}`,
  ];
}
