// `peftc export --format gguf`: the model (adapters merged with --merge) as one GGUF file that
// llama.cpp loads: llama.cpp's tensor names and dims order, q/k rows permuted for its RoPE,
// the llama.* hyperparameters and tokenizer metadata; weights in f32, f16 or Q8_0 (1-D
// tensors stay f32, as convert_hf_to_gguf.py keeps them; a Q8_0 tensor whose rows are not a
// multiple of 32 is written f16, as it does). A bitsandbytes 4-bit base is dequantized to f32
// first (GGUF's 4-bit types are other formats than NF4/FP4), and said so.

import cliProgress from 'cli-progress';
import { asOutput } from '../../io/fs-errors.ts';
import {
  type GgmlType,
  type GgufTensor,
  type GgufValue,
  LLAMA_FTYPE,
  writeGguf,
} from '../../io/gguf/index.ts';
import { type Tensor, tensor } from '../../ir/tensor.ts';
import { savedCopyTarget } from '../../methods/index.ts';
import { ropeScalingOf } from '../../methods/longlora/index.ts';
import { quantizedWeights, stateFromGraph } from '../../methods/qlora/index.ts';
import { openModel } from '../../models/open.ts';
import { mergeAttached, withAdapters } from '../../models/prepare.ts';
import { dequantizeWeight } from '../../quant/quant-state.ts';
import { UsageError, UserError } from '../../util/errors.ts';
import type { ExportOptions } from '../format.ts';
import { llamaMetadata, llamaTensorNames, permuteRopeRows, ropeHeads } from './llama.ts';
import { tokenizerMetadata } from './tokenizer.ts';

const TYPES: readonly GgmlType[] = ['f32', 'f16', 'q8_0'];

export function tensorType(type: string | undefined): GgmlType {
  const t = (type ?? 'f32') as GgmlType;
  if (!TYPES.includes(t)) throw new UsageError(`--type ${type}: choose one of ${TYPES.join(', ')}`);
  return t;
}

/** The GGUF tensor of an HF weight: row-major [out, in] written as dims [in, out]. */
function ggufTensor(
  ggufName: string,
  shape: readonly number[],
  data: () => ArrayLike<number>,
  type: GgmlType,
  heads: number,
): GgufTensor {
  // Rows are the outermost dim (a bias is rows of one value): what the RoPE permutation moves.
  const cols = shape.slice(1).reduce((a, b) => a * b, 1);
  return {
    name: ggufName,
    dims: [...shape].reverse(),
    type,
    data: heads ? () => permuteRopeRows(data(), shape[0], cols, heads) : data,
  };
}

export async function exportGguf(o: ExportOptions): Promise<string[]> {
  const type = tensorType(o.type);
  const adapters = o.adapter ?? [];
  if (adapters.length && !o.merge)
    throw new UsageError(
      '--format gguf writes one set of weights: add --merge to fold the adapters in, ' +
        'or write each adapter as its own file with --format gguf-lora (llama.cpp: --lora <file>)',
    );
  const model = openModel(o.model);
  const tok = tokenizerMetadata(model.dir, model.config); // a tokenizer it cannot write fails before any work
  let { graph, weights } = withAdapters(model, { batch: 1, seq: 2 }, adapters);
  if (o.merge) ({ graph, weights } = mergeAttached(graph, weights));
  // Weights are read (and 4-bit ones dequantized to f32) when written, one at a time, so a
  // large model never sits in memory whole; shapes come from the graph's params.
  const quantized = quantizedWeights(graph);
  const shapes = new Map(graph.params().map((p) => [String(p.attrs.name), p.type.shape] as const));
  for (const [name, dq] of quantized) shapes.set(name, dq.type.shape); // the param is the packed bytes
  const used = new Map<string, string>();
  for (const name of shapes.keys()) {
    const target = savedCopyTarget(name);
    if (target) used.set(target, name);
  }
  const read = (key: string): Tensor => {
    const dq = quantized.get(key);
    if (dq) {
      const state = stateFromGraph(graph, dq, weights);
      return tensor('f32', [...state.shape], dequantizeWeight(state));
    }
    const t = weights.get(key);
    if (!t) throw new UserError(`--model ${o.model}: the checkpoint has no tensor ${key}`);
    return t;
  };
  const c = model.config;
  const tensors: GgufTensor[] = [];
  const counts = new Map<GgmlType, number>();
  const fellBack: string[] = [];
  for (const [hf, name] of llamaTensorNames(c)) {
    const key = used.get(hf) ?? hf;
    const shape = shapes.get(key);
    if (!shape) throw new UserError(`--model ${o.model}: the model graph has no weight ${hf}`);
    let want: GgmlType = shape.length === 1 ? 'f32' : type;
    if (want === 'q8_0' && shape[shape.length - 1] % 32 !== 0) {
      want = 'f16';
      fellBack.push(name);
    }
    counts.set(want, (counts.get(want) ?? 0) + 1);
    tensors.push(
      ggufTensor(name, shape, () => read(key).data as ArrayLike<number>, want, ropeHeads(name, c)),
    );
  }
  const name = model.dir ? (model.dir.replace(/\/+$/, '').split('/').pop() ?? 'model') : o.model;
  const metadata = new Map<string, GgufValue>([
    ...llamaMetadata(c, { name, fileType: LLAMA_FTYPE[type], ropeLinearFactor: ropeScalingOf(graph) }),
    ['general.quantization_version', { type: 'u32', value: 2 }],
    ...tok.kv,
  ]);
  // A bar on a terminal (a 7B model is minutes of encoding); nothing in pipes and tests.
  const bar = process.stderr.isTTY
    ? new cliProgress.SingleBar(
        {
          stream: process.stderr,
          format: 'writing GGUF [{bar}] {value}/{total} tensors {name}',
          hideCursor: true,
        },
        cliProgress.Presets.shades_classic,
      )
    : undefined;
  bar?.start(tensors.length, 0, { name: '' });
  let bytes: number;
  try {
    bytes = asOutput('--out', o.out, () =>
      writeGguf(o.out, { metadata, tensors }, { onTensor: (done, name) => bar?.update(done, { name }) }),
    );
  } finally {
    bar?.stop();
  }
  const byType = [...counts].map(([t, n]) => `${n} ${t}`).join(', ');
  const lines = [`wrote ${o.out}: GGUF v3, llama, ${tensors.length} tensors (${byType}), ${bytes} bytes`];
  if (o.merge) lines.push(`merged ${adapters.length} adapter(s): ${adapters.join(', ')}`);
  if (model.quantization)
    lines.push(`the 4-bit base (${model.quantization}) was dequantized to f32 before writing ${type}`);
  if (fellBack.length) lines.push(`written f16 (rows not a multiple of 32 for q8_0): ${fellBack.join(', ')}`);
  lines.push(`tokenizer: ${tok.note}`);
  return lines;
}
