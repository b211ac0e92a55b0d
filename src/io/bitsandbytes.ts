// bitsandbytes' 4-bit state-dict layout (Linear4bit._save_to_state_dict with
// QuantState.as_dict(packed=True)). For a weight key `<m>.weight`:
//   <m>.weight                                uint8 [ceil(n/2), 1], packed codes (high nibble first)
//   <m>.weight.absmax                         f32 [blocks]; uint8 [blocks] when nested
//   <m>.weight.quant_map                      f32 [16]
//   <m>.weight.nested_absmax                  f32 [ceil(blocks/256)]     (nested only)
//   <m>.weight.nested_quant_map               f32 [256]                  (nested only)
//   <m>.weight.quant_state.bitsandbytes__nf4  uint8 bytes of JSON (`__fp4` for FP4):
//     {"quant_type", "blocksize", "dtype", "shape"[, "nested_blocksize", "nested_dtype", "nested_offset"]}
// written with Python's json.dumps defaults (", " and ": " separators, Python float repr).

import { z } from 'zod';
import { isFloat } from '../ir/dtype.ts';
import { type Tensor, tensor } from '../ir/tensor.ts';
import { table4bit } from '../quant/blockwise4.ts';
import { QuantError } from '../quant/errors.ts';
import { checkQuantState, numelOf, type QuantState, WEIGHT_DTYPES } from '../quant/quant-state.ts';
import { FormatError } from './errors.ts';

const QUANT_STATE_KEY = 'quant_state.bitsandbytes__';

/** Python's repr() of a float, which json.dumps uses: shortest round-trip digits, scientific
 * notation when the decimal exponent is < -4 or >= 16 (`1e-05`, `1.5e+16`), else fixed with a
 * `.0` for integral values. */
export function pythonFloatRepr(x: number): string {
  if (Number.isNaN(x)) return 'NaN';
  if (!Number.isFinite(x)) return x > 0 ? 'Infinity' : '-Infinity';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const [mant, expStr] = x.toExponential().split('e');
  const exp = Number(expStr);
  const neg = mant.startsWith('-');
  const digits = mant.replace('-', '').replace('.', '');
  const sign = neg ? '-' : '';
  if (exp < -4 || exp >= 16) {
    const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    const e = Math.abs(exp).toString().padStart(2, '0');
    return `${sign}${m}e${exp < 0 ? '-' : '+'}${e}`;
  }
  if (exp < 0) return `${sign}0.${'0'.repeat(-exp - 1)}${digits}`;
  const intLen = exp + 1;
  if (digits.length <= intLen) return `${sign}${digits}${'0'.repeat(intLen - digits.length)}.0`;
  return `${sign}${digits.slice(0, intLen)}.${digits.slice(intLen)}`;
}

/** The JSON text bitsandbytes writes into the quant_state tensor, byte for byte. */
export function quantStateJson(state: QuantState): string {
  const parts = [
    `"quant_type": "${state.quantType}"`,
    `"blocksize": ${state.blocksize}`,
    `"dtype": "${state.dtype}"`,
    `"shape": [${state.shape.join(', ')}]`,
  ];
  const s = state.stats;
  if (s.kind === 'nested') {
    parts.push(
      `"nested_blocksize": ${s.nestedBlocksize}`,
      `"nested_dtype": "float32"`,
      `"nested_offset": ${pythonFloatRepr(s.offset)}`,
    );
  }
  return `{${parts.join(', ')}}`;
}

/** Tensors of one 4-bit weight under `prefix` (the weight's own key, e.g.
 * `model.layers.0.self_attn.q_proj.weight`), in bitsandbytes' order. */
export function quantStateToTensors(prefix: string, state: QuantState): Map<string, Tensor> {
  checkQuantState(state);
  const out = new Map<string, Tensor>();
  out.set(prefix, tensor('u8', [state.packed.length, 1], state.packed));
  const s = state.stats;
  if (s.kind === 'plain') out.set(`${prefix}.absmax`, tensor('f32', [s.absmax.length], s.absmax));
  else out.set(`${prefix}.absmax`, tensor('u8', [s.qabsmax.length], s.qabsmax));
  out.set(`${prefix}.quant_map`, tensor('f32', [16], state.quantMap));
  if (s.kind === 'nested') {
    out.set(`${prefix}.nested_absmax`, tensor('f32', [s.nestedAbsmax.length], s.nestedAbsmax));
    out.set(`${prefix}.nested_quant_map`, tensor('f32', [256], s.nestedQuantMap));
  }
  const json = new TextEncoder().encode(quantStateJson(state));
  out.set(`${prefix}.${QUANT_STATE_KEY}${state.quantType}`, tensor('u8', [json.length], json));
  return out;
}

/** Whether `prefix` names a bitsandbytes 4-bit weight (its quant_state tensor is present). */
export function isBnb4bitWeight(prefix: string, get: (key: string) => Tensor | undefined): boolean {
  return ['nf4', 'fp4'].some((t) => get(`${prefix}.${QUANT_STATE_KEY}${t}`) !== undefined);
}

const intField = z.number().int().positive();
const stateJsonSchema = z
  .object({
    quant_type: z.enum(['nf4', 'fp4']),
    blocksize: intField,
    dtype: z.enum(WEIGHT_DTYPES as [string, ...string[]]),
    shape: z.array(z.number().int().nonnegative()),
    nested_blocksize: intField.optional(),
    nested_dtype: z.literal('float32').optional(),
    nested_offset: z.number().optional(),
  })
  .loose();

type StateJson = z.infer<typeof stateJsonSchema>;

function parseStateJson(bytes: Tensor, key: string, file: string): StateJson {
  if (bytes.dtype !== 'u8')
    throw new FormatError(file, `expected a uint8 tensor of JSON bytes, got ${bytes.dtype}`, key);
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.data as Uint8Array));
  } catch (e) {
    throw new FormatError(file, `does not hold valid UTF-8 JSON (${(e as Error).message})`, key);
  }
  const r = stateJsonSchema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0];
    const path = issue.path.length ? issue.path.join('.') : '(root)';
    throw new FormatError(file, `quant state JSON field '${path}': ${issue.message}`, key);
  }
  return r.data;
}

function floatData(t: Tensor, key: string, file: string, len: number): Float32Array {
  if (!isFloat(t.dtype)) throw new FormatError(file, `expected a float tensor, got ${t.dtype}`, key);
  if (t.data.length !== len) throw new FormatError(file, `has ${t.data.length} values, expected ${len}`, key);
  return Float32Array.from(t.data);
}

/** Reads one 4-bit weight written by bitsandbytes (or by quantStateToTensors). `get` looks a key
 * up in the checkpoint; `file` names it in errors. Throws FormatError naming the key. */
export function quantStateFromTensors(
  prefix: string,
  get: (key: string) => Tensor | undefined,
  file = '<state dict>',
): QuantState {
  const stateKeys = ['nf4', 'fp4']
    .map((t) => `${prefix}.${QUANT_STATE_KEY}${t}`)
    .filter((k) => get(k) !== undefined);
  if (stateKeys.length === 0) {
    throw new FormatError(
      file,
      `not a bitsandbytes 4-bit weight: missing '${prefix}.${QUANT_STATE_KEY}nf4' (or __fp4)`,
      prefix,
    );
  }
  if (stateKeys.length > 1)
    throw new FormatError(file, `has both ${stateKeys.join(' and ')}; keep one`, prefix);
  const stateKey = stateKeys[0];
  const js = parseStateJson(get(stateKey)!, stateKey, file);
  if (!stateKey.endsWith(`__${js.quant_type}`)) {
    throw new FormatError(
      file,
      `JSON says quant_type '${js.quant_type}' but the key ends in another type`,
      stateKey,
    );
  }
  const need = (suffix: string): Tensor => {
    const key = suffix ? `${prefix}.${suffix}` : prefix;
    const t = get(key);
    if (t === undefined) throw new FormatError(file, `missing (needed by ${stateKey})`, key);
    return t;
  };

  const n = numelOf(js.shape);
  const blocks = Math.ceil(n / js.blocksize);
  const weight = need('');
  if (weight.dtype !== 'u8')
    throw new FormatError(file, `packed 4-bit weight must be uint8, got ${weight.dtype}`, prefix);
  if (weight.data.length !== Math.ceil(n / 2)) {
    throw new FormatError(
      file,
      `packed weight [${weight.shape.join(', ')}] has ${weight.data.length} bytes but shape [${js.shape.join(', ')}] in ${stateKey} needs ${Math.ceil(n / 2)}`,
      prefix,
    );
  }
  const quantMap = floatData(need('quant_map'), `${prefix}.quant_map`, file, 16);
  // Like bitsandbytes' kernels we dequantize with the built-in table, so a stored map that
  // differs (beyond QuantState.__eq__'s 1e-6) would be silently ignored: refuse it instead.
  const table = table4bit(js.quant_type);
  const bad = quantMap.findIndex((v, i) => !(Math.abs(v - table[i]) <= 1e-6));
  if (bad >= 0) {
    throw new FormatError(
      file,
      `entry ${bad} is ${quantMap[bad]} but the ${js.quant_type} table has ${table[bad]}; only the standard ${js.quant_type} map is supported`,
      `${prefix}.quant_map`,
    );
  }
  const absmaxT = need('absmax');
  const nestedKeys = ['nested_absmax', 'nested_quant_map'].filter((k) => get(`${prefix}.${k}`) !== undefined);
  const jsonNested = js.nested_offset !== undefined || js.nested_blocksize !== undefined;
  const nested = absmaxT.dtype === 'u8';
  if (nested !== jsonNested || (nested && nestedKeys.length < 2)) {
    throw new FormatError(
      file,
      `inconsistent double quantization: absmax is ${absmaxT.dtype}, nested tensors present: [${nestedKeys.join(', ')}], ` +
        `nested fields in ${stateKey}: ${jsonNested ? 'yes' : 'no'} (all or none are expected)`,
      `${prefix}.absmax`,
    );
  }
  if (absmaxT.data.length !== blocks) {
    throw new FormatError(
      file,
      `has ${absmaxT.data.length} values but shape [${js.shape.join(', ')}] in blocks of ${js.blocksize} needs ${blocks}`,
      `${prefix}.absmax`,
    );
  }
  let stats: QuantState['stats'];
  if (nested) {
    if (js.nested_offset === undefined || js.nested_blocksize === undefined) {
      throw new FormatError(file, 'nested quant state needs nested_offset and nested_blocksize', stateKey);
    }
    const nb = Math.ceil(blocks / js.nested_blocksize);
    stats = {
      kind: 'nested',
      qabsmax: Uint8Array.from(absmaxT.data),
      nestedAbsmax: floatData(need('nested_absmax'), `${prefix}.nested_absmax`, file, nb),
      nestedQuantMap: floatData(need('nested_quant_map'), `${prefix}.nested_quant_map`, file, 256),
      nestedBlocksize: js.nested_blocksize,
      // bitsandbytes reads it back as torch.tensor(float(offset)): an f32.
      offset: Math.fround(js.nested_offset),
    };
  } else {
    stats = { kind: 'plain', absmax: floatData(absmaxT, `${prefix}.absmax`, file, blocks) };
  }
  const state: QuantState = {
    quantType: js.quant_type,
    blocksize: js.blocksize,
    shape: [...js.shape],
    dtype: js.dtype as QuantState['dtype'],
    packed: Uint8Array.from(weight.data),
    quantMap,
    stats,
  };
  try {
    checkQuantState(state);
  } catch (e) {
    if (e instanceof QuantError) throw new FormatError(file, e.message, stateKey);
    throw e;
  }
  return state;
}
