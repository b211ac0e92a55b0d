// QLoRA options: what a recipe's {"method": "qlora", ...} holds. Defaults are the
// QLoRA paper's recipe (NF4, blocksize 64, double quantization), targets every linear
// but the output head, as bitsandbytes' load_in_4bit leaves lm_head in full precision.
import { z } from 'zod';
import { BLOCKSIZES_4BIT } from '../../quant/blockwise4.ts';

const names = z.union([z.string().min(1), z.array(z.string().min(1))]);

export const qloraOptions = z.strictObject({
  quant_type: z.enum(['nf4', 'fp4']).default('nf4'),
  blocksize: z
    .number()
    .int()
    .refine((b) => BLOCKSIZES_4BIT.includes(b), { error: `expected one of ${BLOCKSIZES_4BIT.join(', ')}` })
    .default(64),
  double_quant: z.boolean().default(true),
  /** PEFT-style target list / regex / "all-linear" (every linear except the output head). */
  target_modules: names.default('all-linear'),
  exclude_modules: names.nullable().default(null),
  /** What `qlora-merge` produces: requantized 4-bit weights (as PEFT's merge on a 4-bit model) or f32 ones. */
  merge_into: z.enum(['4bit', 'float']).default('4bit'),
});

export type QloraOptions = z.output<typeof qloraOptions>;
export type QloraOptionsInput = z.input<typeof qloraOptions>;
