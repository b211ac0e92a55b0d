// Element types. Compute happens in f32 (or f64 on the CPU oracle); the narrower
// types are storage. `u4` is packed 4-bit storage: two codes per byte, first
// element in the high nibble (bitsandbytes order, see METHODS.md).

export const DTYPES = ['f32', 'f16', 'bf16', 'i32', 'u32', 'u8', 'u4'] as const;
export type DType = (typeof DTYPES)[number];

export function isDType(s: string): s is DType {
  return (DTYPES as readonly string[]).includes(s);
}

export function isFloat(d: DType): boolean {
  return d === 'f32' || d === 'f16' || d === 'bf16';
}

export function isInteger(d: DType): boolean {
  return !isFloat(d);
}

/** Bytes needed to store `numel` elements of `d` (packed for u4). */
export function byteSize(d: DType, numel: number): number {
  switch (d) {
    case 'f32':
    case 'i32':
    case 'u32':
      return numel * 4;
    case 'f16':
    case 'bf16':
      return numel * 2;
    case 'u8':
      return numel;
    case 'u4':
      return Math.ceil(numel / 2);
  }
}

/** Bits per element as stored. */
export function bitsPerElement(d: DType): number {
  return d === 'u4' ? 4 : (byteSize(d, 1) * 8) | 0;
}
