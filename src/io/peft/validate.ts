// Shape checks for a LoRA adapter: A and B come in pairs, their ranks agree with the
// config (r, or rank_pattern by PEFT's matching rule), and DoRA magnitudes / LoRA
// biases match B's output size.
import { formatShape } from '../../ir/shape.ts';
import type { Tensor } from '../../ir/tensor.ts';
import { FormatError } from '../errors.ts';
import { adaloraRankFor } from './adalora.ts';
import { matchPatternKey, rankFor } from './config.ts';
import type { AdapterKey, LoraPart, SvdPart } from './keys.ts';
import { checkMoeShapes } from './malora-moe.ts';
import { isAdaLoraConfig, isMaloraMoeConfig, type PeftAdapterConfig } from './parse.ts';

export interface KeyedTensor {
  key: AdapterKey;
  /** The name used in messages (the file key when reading, the graph name when writing). */
  name: string;
  tensor: Tensor;
}

type Slot = LoraPart | 'lora_B.bias';

/** What a tensor of each adapter format is, for the message when it sits in another format's folder. */
const ALIEN = {
  lora: 'a LoRA tensor (lora_A / lora_B with .weight)',
  svd: 'an AdaLoRA tensor (lora_A / lora_B / lora_E without .weight)',
  moe: "a MALoRA mixture's tensor (lora_S / lora_P / lora_up / lora_router)",
} as const;
const PEFT_TYPE_OF = { lora: 'LORA', svd: 'ADALORA', moe: 'MALORA_MOE' } as const;

export function checkAdapterShapes(
  file: string,
  config: PeftAdapterConfig,
  entries: readonly KeyedTensor[],
): void {
  // A key of another format means the config and weights disagree: PEFT would not load it.
  const own = isAdaLoraConfig(config) ? 'svd' : isMaloraMoeConfig(config) ? 'moe' : 'lora';
  const alien = entries.find((e) => e.key.kind !== own && e.key.kind in ALIEN);
  if (alien)
    throw new FormatError(
      file,
      `${ALIEN[alien.key.kind as keyof typeof ALIEN]} in this ${config.peft_type} adapter; is its peft_type '${PEFT_TYPE_OF[alien.key.kind as keyof typeof PEFT_TYPE_OF]}'?`,
      alien.name,
    );
  if (isMaloraMoeConfig(config)) {
    checkMoeShapes(file, config, entries);
    return;
  }
  if (isAdaLoraConfig(config)) {
    checkSvdShapes(file, (m) => adaloraRankFor(config, m), entries);
    return;
  }
  const modules = new Map<string, Map<Slot, KeyedTensor>>();
  for (const e of entries) {
    if (e.key.kind !== 'lora') continue;
    const slot: Slot = e.key.param === 'bias' ? 'lora_B.bias' : e.key.part;
    let m = modules.get(e.key.module);
    if (!m) modules.set(e.key.module, (m = new Map()));
    m.set(slot, e);
  }
  for (const [module, slots] of modules) {
    const r = rankFor(config, module);
    const pk = matchPatternKey(config.rank_pattern, module);
    const why = pk === undefined ? `r = ${r}` : `rank_pattern['${pk}'] = ${r}`;
    const fail = (e: KeyedTensor, problem: string): never => {
      throw new FormatError(file, problem, e.name);
    };
    const pair = (a: LoraPart, b: LoraPart) => {
      const ea = slots.get(a);
      const eb = slots.get(b);
      if (!ea && !eb) return undefined;
      if (!ea || !eb) {
        const have = (ea ?? eb)!;
        return fail(
          have,
          `${have.key.kind === 'lora' ? have.key.part : ''} has no matching ${ea ? b : a} for module '${module}'`,
        );
      }
      const sa = ea.tensor.shape;
      const sb = eb.tensor.shape;
      if (sa.length < 2) fail(ea, `${a} must have at least 2 dims, got ${formatShape(sa)}`);
      if (sb.length < 2) fail(eb, `${b} must have at least 2 dims, got ${formatShape(sb)}`);
      if (sa[0] !== r)
        fail(
          ea,
          `${a} has rank ${sa[0]} (shape ${formatShape(sa)}) but the config gives ${why} for module '${module}'`,
        );
      if (sb[1] !== r)
        fail(
          eb,
          `${b} has rank ${sb[1]} (shape ${formatShape(sb)}) but the config gives ${why} for module '${module}'`,
        );
      return eb;
    };
    // The output size: lora_B's rows, or lora_embedding_B's (the embedding dim, which a DoRA
    // magnitude on an embedding has).
    const b = pair('lora_A', 'lora_B');
    const eb = pair('lora_embedding_A', 'lora_embedding_B');
    const out = (b ?? eb)?.tensor.shape[0];
    for (const slot of ['lora_magnitude_vector', 'lora_B.bias'] as const) {
      const e = slots.get(slot);
      if (!e) continue;
      if (out === undefined)
        fail(e, `${slot} without lora_A/lora_B (or lora_embedding_A/B) for module '${module}'`);
      if (e.tensor.shape.length !== 1 || e.tensor.shape[0] !== out) {
        fail(
          e,
          `${slot} must have shape [${out}] (lora_B's output size), got ${formatShape(e.tensor.shape)}`,
        );
      }
    }
  }
}

/**
 * AdaLoRA's triplets: lora_A [r, in], lora_E [r, 1], lora_B [out, r] on each module, r its
 * rank in the config (the kept entries of its rank_pattern mask, else init_r); all three or
 * none. An old file's `ranknum` must be one number.
 */
function checkSvdShapes(
  file: string,
  rankOf: (module: string) => { r: number; why: string },
  entries: readonly KeyedTensor[],
): void {
  const modules = new Map<string, Map<SvdPart, KeyedTensor>>();
  for (const e of entries) {
    if (e.key.kind !== 'svd') continue;
    let m = modules.get(e.key.module);
    if (!m) modules.set(e.key.module, (m = new Map()));
    m.set(e.key.part, e);
  }
  for (const [module, parts] of modules) {
    const { r, why } = rankOf(module);
    const fail = (e: KeyedTensor, problem: string): never => {
      throw new FormatError(file, problem, e.name);
    };
    const rn = parts.get('ranknum');
    if (rn && rn.tensor.data.length !== 1)
      fail(rn, `ranknum must hold one number, got ${formatShape(rn.tensor.shape)}`);
    const have = (['lora_A', 'lora_E', 'lora_B'] as const).filter((p) => parts.has(p));
    if (have.length === 0) continue;
    if (have.length < 3) {
      const lacking = (['lora_A', 'lora_E', 'lora_B'] as const).filter((p) => !parts.has(p));
      fail(parts.get(have[0])!, `has no matching ${lacking.join(' / ')} for module '${module}'`);
    }
    const [A, E, B] = [parts.get('lora_A')!, parts.get('lora_E')!, parts.get('lora_B')!];
    for (const e of [A, E, B])
      if (e.tensor.shape.length !== 2) fail(e, `must have 2 dims, got ${formatShape(e.tensor.shape)}`);
    const rankIssue = (e: KeyedTensor, got: number) =>
      got !== r &&
      fail(
        e,
        `has rank ${got} (shape ${formatShape(e.tensor.shape)}) but the config gives ${why} for module '${module}'`,
      );
    rankIssue(A, A.tensor.shape[0]);
    rankIssue(E, E.tensor.shape[0]);
    rankIssue(B, B.tensor.shape[1]);
    if (E.tensor.shape[1] !== 1) fail(E, `must have shape [${r}, 1], got ${formatShape(E.tensor.shape)}`);
  }
}
