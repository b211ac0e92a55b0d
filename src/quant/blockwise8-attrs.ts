// Attributes of the 8-bit optimizer-state ops (registered in src/passes/optimizer/ops8bit.ts)
// and the named dynamic maps they use. They live here, below both the pass that registers
// the ops and the WGSL kernels that lower them, so neither layer imports the other.
import { z } from 'zod';
import { BLOCKSIZES_8BIT, createDynamicMap } from './dynamic-map.ts';

const blocksize = z
  .number()
  .int()
  .refine((b) => BLOCKSIZES_8BIT.includes(b), {
    error: `blocksize must be one of ${BLOCKSIZES_8BIT.join(', ')}`,
  });
const map = z.enum(['signed', 'unsigned']);

export const blockAbsmaxAttrs = z.strictObject({ blocksize });
export const quantize8Attrs = z.strictObject({ map, blocksize, keep_sign: z.boolean().default(false) });
export const dequantize8Attrs = z.strictObject({ map, blocksize });
export type BlockAbsmaxAttrs = z.output<typeof blockAbsmaxAttrs>;
export type Quantize8Attrs = z.output<typeof quantize8Attrs>;
export type Dequantize8Attrs = z.output<typeof dequantize8Attrs>;
export type DynamicMapName = z.output<typeof map>;

const MAPS = { signed: createDynamicMap(true), unsigned: createDynamicMap(false) };

/** The 256 f32 values of a named dynamic map (a fresh copy). */
export function dynamicMap(name: DynamicMapName): Float32Array {
  return MAPS[name].slice();
}
