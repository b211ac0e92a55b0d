// The safetensors dtype table (names and sizes as in huggingface/safetensors
// `Dtype`, in its declaration order, which the writer's sort uses) and the mapping
// to host dtypes.
import type { DType } from '../../ir/dtype.ts';

/** Every dtype the reference implementation knows, in its enum order. */
export const ST_DTYPES = [
  'BOOL',
  'F4',
  'F6_E2M3',
  'F6_E3M2',
  'U8',
  'I8',
  'F8_E5M2',
  'F8_E4M3',
  'F8_E8M0',
  'F8_E4M3FNUZ',
  'F8_E5M2FNUZ',
  'I16',
  'U16',
  'F16',
  'BF16',
  'I32',
  'U32',
  'F32',
  'C64',
  'F64',
  'I64',
  'U64',
] as const;
export type StDType = (typeof ST_DTYPES)[number];

const BITS: Record<StDType, number> = {
  BOOL: 8,
  F4: 4,
  F6_E2M3: 6,
  F6_E3M2: 6,
  U8: 8,
  I8: 8,
  F8_E5M2: 8,
  F8_E4M3: 8,
  F8_E8M0: 8,
  F8_E4M3FNUZ: 8,
  F8_E5M2FNUZ: 8,
  I16: 16,
  U16: 16,
  F16: 16,
  BF16: 16,
  I32: 32,
  U32: 32,
  F32: 32,
  C64: 64,
  F64: 64,
  I64: 64,
  U64: 64,
};

/**
 * Host dtype each file dtype is read as. Wider types are narrowed with a range check
 * (I64 -> i32, U64 -> u32, F64 -> f32); narrower integers are widened. Absent: not readable.
 */
const READ_AS: Partial<Record<StDType, DType>> = {
  BOOL: 'u8',
  U8: 'u8',
  I8: 'i32',
  I16: 'i32',
  U16: 'u32',
  F16: 'f16',
  BF16: 'bf16',
  I32: 'i32',
  U32: 'u32',
  F32: 'f32',
  F64: 'f32',
  I64: 'i32',
  U64: 'u32',
};

const WRITE_AS: Partial<Record<DType, StDType>> = {
  f32: 'F32',
  f16: 'F16',
  bf16: 'BF16',
  i32: 'I32',
  u32: 'U32',
  u8: 'U8',
};

export function isStDType(s: string): s is StDType {
  return (ST_DTYPES as readonly string[]).includes(s);
}

/** Bytes for `numel` elements, or undefined when they do not fill whole bytes (e.g. odd F4 counts). */
export function stByteSize(d: StDType, numel: number): number | undefined {
  const bits = numel * BITS[d];
  return bits % 8 === 0 ? bits / 8 : undefined;
}

export function hostDTypeOf(d: StDType): DType | undefined {
  return READ_AS[d];
}

export function stDTypeFor(d: DType): StDType | undefined {
  return WRITE_AS[d];
}

/** Position in the reference enum: the writer sorts by descending position (alignment), then by name. */
export function stDTypeRank(d: StDType): number {
  return ST_DTYPES.indexOf(d);
}
