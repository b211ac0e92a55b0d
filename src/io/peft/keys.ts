// Tensor names: our in-graph names (PEFT's in-memory names without `base_model.model.`)
// and the keys PEFT writes to adapter_model.safetensors (prefix added, adapter name
// removed, DoRA magnitude without `.weight`, modules_to_save under the module's own
// name, base-layer params of a LoRA-wrapped module under `.base_layer.`).
//
//   graph                                         file (PEFT save_pretrained)
//   <m>.lora_A.<a>.weight                     <->  base_model.model.<m>.lora_A.weight
//   <m>.lora_B.<a>.weight|bias                <->  base_model.model.<m>.lora_B.weight|bias
//   <m>.lora_magnitude_vector.<a>.weight      <->  base_model.model.<m>.lora_magnitude_vector
//   <m>.lora_embedding_A.<a>                  <->  base_model.model.<m>.lora_embedding_A
//   <m>.lora_A|lora_B|lora_E.<a> (AdaLoRA)    <->  base_model.model.<m>.lora_A|lora_B|lora_E
//   <m>.modules_to_save.<a>.<param>           <->  base_model.model.<m>.<param>
//   <m>.<param> (bias / saved embedding)      <->  base_model.model.<m>[.base_layer].<param>

export const PEFT_PREFIX = 'base_model.model.';

export type LoraPart =
  | 'lora_A'
  | 'lora_B'
  | 'lora_magnitude_vector'
  | 'lora_embedding_A'
  | 'lora_embedding_B';

/**
 * AdaLoRA's parameters (nn.ParameterDict entries, so no `.weight`: tuners/adalora/layer.py).
 * PEFT 0.21 never saves `ranknum` (always init_r); an older file's copy is read and ignored.
 */
export type SvdPart = 'lora_A' | 'lora_B' | 'lora_E' | 'ranknum';

/** What one tensor of an adapter is. */
/** A MALoRA mixture's parts (malora-moe.ts), each with `.weight`. */
export const MOE_PARTS = ['lora_S', 'lora_P', 'lora_up', 'lora_router'] as const;
export type MoePart = (typeof MOE_PARTS)[number];

export type AdapterKey =
  | { kind: 'lora'; module: string; part: LoraPart; param: 'weight' | 'bias' }
  | { kind: 'svd'; module: string; part: SvdPart }
  | { kind: 'moe'; module: string; part: MoePart }
  | { kind: 'modules_to_save'; module: string; param: string }
  | { kind: 'base'; module: string; param: string };

const MOE = MOE_PARTS.join('|');

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Graph name for a key of adapter `adapter`. */
export function graphName(k: AdapterKey, adapter: string): string {
  if (k.kind === 'modules_to_save') return `${k.module}.modules_to_save.${adapter}.${k.param}`;
  if (k.kind === 'base') return `${k.module}.${k.param}`;
  if (k.kind === 'svd') return `${k.module}.${k.part}.${adapter}`;
  if (k.kind === 'moe') return `${k.module}.${k.part}.${adapter}.weight`;
  if (k.part === 'lora_embedding_A' || k.part === 'lora_embedding_B')
    return `${k.module}.${k.part}.${adapter}`;
  return `${k.module}.${k.part}.${adapter}.${k.param}`;
}

/** Parses a graph name of adapter `adapter`; undefined for a name that is not LoRA/modules_to_save (a base param). */
export function parseGraphName(name: string, adapter: string): AdapterKey | undefined {
  const a = esc(adapter);
  let m = new RegExp(`^(.+)\\.(lora_A|lora_B)\\.${a}\\.(weight|bias)$`).exec(name);
  if (m) return { kind: 'lora', module: m[1], part: m[2] as LoraPart, param: m[3] as 'weight' | 'bias' };
  m = new RegExp(`^(.+)\\.lora_magnitude_vector\\.${a}\\.weight$`).exec(name);
  if (m) return { kind: 'lora', module: m[1], part: 'lora_magnitude_vector', param: 'weight' };
  m = new RegExp(`^(.+)\\.(lora_embedding_A|lora_embedding_B)\\.${a}$`).exec(name);
  if (m) return { kind: 'lora', module: m[1], part: m[2] as LoraPart, param: 'weight' };
  m = new RegExp(`^(.+)\\.modules_to_save\\.${a}\\.(.+)$`).exec(name);
  if (m) return { kind: 'modules_to_save', module: m[1], param: m[2] };
  m = new RegExp(`^(.+)\\.(lora_A|lora_B|lora_E|ranknum)\\.${a}$`).exec(name);
  if (m) return { kind: 'svd', module: m[1], part: m[2] as SvdPart };
  m = new RegExp(`^(.+)\\.(${MOE})\\.${a}\\.weight$`).exec(name);
  if (m) return { kind: 'moe', module: m[1], part: m[2] as MoePart };
  return undefined;
}

/** File key PEFT writes; `wrapped`: the module carries LoRA in this adapter (its own params live under base_layer). */
export function fileKey(k: AdapterKey, wrapped: boolean): string {
  if (k.kind === 'modules_to_save') return `${PEFT_PREFIX}${k.module}.${k.param}`;
  if (k.kind === 'base') return `${PEFT_PREFIX}${k.module}${wrapped ? '.base_layer' : ''}.${k.param}`;
  if (k.kind === 'svd') return `${PEFT_PREFIX}${k.module}.${k.part}`;
  if (k.kind === 'moe') return `${PEFT_PREFIX}${k.module}.${k.part}.weight`;
  if (k.part === 'lora_magnitude_vector' || k.part === 'lora_embedding_A' || k.part === 'lora_embedding_B') {
    return `${PEFT_PREFIX}${k.module}.${k.part}`;
  }
  return `${PEFT_PREFIX}${k.module}.${k.part}.${k.param}`;
}

/**
 * Parses a file key. `modulesToSave` is the config's list (PEFT matches a module whose
 * name ends with an entry). Returns a problem string for keys that are not adapter-shaped.
 */
export function parseFileKey(
  key: string,
  adapter: string,
  modulesToSave: readonly string[] | null,
): AdapterKey | { problem: string } {
  if (!key.startsWith(PEFT_PREFIX)) return { problem: `key does not start with '${PEFT_PREFIX}'` };
  const rest = key.slice(PEFT_PREFIX.length);
  let m = /^(.+)\.(lora_A|lora_B)\.(weight|bias)$/.exec(rest);
  if (m) return { kind: 'lora', module: m[1], part: m[2] as LoraPart, param: m[3] as 'weight' | 'bias' };
  // PEFT writes the magnitude without `.weight`; accept the in-memory form too.
  m = /^(.+)\.lora_magnitude_vector(?:\.weight)?$/.exec(rest);
  if (m) return { kind: 'lora', module: m[1], part: 'lora_magnitude_vector', param: 'weight' };
  m = /^(.+)\.(lora_embedding_A|lora_embedding_B)$/.exec(rest);
  if (m) return { kind: 'lora', module: m[1], part: m[2] as LoraPart, param: 'weight' };
  // AdaLoRA's parameters: no `.weight` (checkAdapterShapes refuses them in a LoRA config).
  m = /^(.+)\.(lora_A|lora_B|lora_E|ranknum)$/.exec(rest);
  if (m) return { kind: 'svd', module: m[1], part: m[2] as SvdPart };
  m = new RegExp(`^(.+)\\.(${MOE})\\.weight$`).exec(rest);
  if (m) return { kind: 'moe', module: m[1], part: m[2] as MoePart };
  // The in-memory form `<m>.modules_to_save.<adapter>.<param>` (some tools write it).
  m = new RegExp(`^(.+)\\.modules_to_save\\.${esc(adapter)}\\.(.+)$`).exec(rest);
  if (m) return { kind: 'modules_to_save', module: m[1], param: m[2] };
  const parts = rest.split('.');
  if (parts.some((p) => p.startsWith('lora_') || p === 'modules_to_save')) {
    return {
      problem:
        'not a LoRA key PEFT writes (expected <module>.lora_A.weight, .lora_B.weight, .lora_magnitude_vector, ' +
        ".lora_embedding_A or .lora_embedding_B, AdaLoRA's .lora_A, .lora_B, .lora_E, or a MALoRA mixture's " +
        '.lora_S / .lora_P / .lora_up / .lora_router .weight, with the adapter name removed)',
    };
  }
  // Shortest module prefix that PEFT's modules_to_save matching (name.endswith(entry)) selects.
  for (let i = 1; i < parts.length; i++) {
    const module = parts.slice(0, i).join('.');
    if ((modulesToSave ?? []).some((e) => module.endsWith(e))) {
      return { kind: 'modules_to_save', module, param: parts.slice(i).join('.') };
    }
  }
  const last = parts[parts.length - 1];
  if (parts.length >= 2 && (last === 'weight' || last === 'bias')) {
    const module = parts
      .slice(0, -1)
      .join('.')
      .replace(/\.base_layer$/, '');
    return { kind: 'base', module, param: last };
  }
  return { problem: 'neither a LoRA tensor, a modules_to_save entry, nor a base weight/bias' };
}
