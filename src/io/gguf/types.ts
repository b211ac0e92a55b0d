// GGUF's value and tensor types, as ggml numbers them (ggml/include/gguf.h, ggml.h; the
// same tables as gguf-py/gguf/constants.py GGUFValueType and GGMLQuantizationType).

/** Metadata value types (`enum gguf_type`). */
export const GGUF_VALUE = {
  u8: 0,
  i8: 1,
  u16: 2,
  i16: 3,
  u32: 4,
  i32: 5,
  f32: 6,
  bool: 7,
  string: 8,
  array: 9,
  u64: 10,
  i64: 11,
  f64: 12,
} as const;

export type GgufScalarType = Exclude<keyof typeof GGUF_VALUE, 'array'>;

/** One metadata value: a scalar of a type, or an array of scalars of one type. */
export type GgufValue =
  | { readonly type: Exclude<GgufScalarType, 'string' | 'bool'>; readonly value: number | bigint }
  | { readonly type: 'string'; readonly value: string }
  | { readonly type: 'bool'; readonly value: boolean }
  | {
      readonly type: 'array';
      readonly itemType: GgufScalarType;
      readonly values: readonly (number | bigint | string | boolean)[];
    };

/** Tensor types peftc writes (`enum ggml_type`): F32 = 0, F16 = 1, Q8_0 = 8. */
export const GGML_TYPE = { f32: 0, f16: 1, q8_0: 8 } as const;
export type GgmlType = keyof typeof GGML_TYPE;

/** `general.file_type` (`enum llama_ftype`): ALL_F32 = 0, MOSTLY_F16 = 1, MOSTLY_Q8_0 = 7. */
export const LLAMA_FTYPE: Record<GgmlType, number> = { f32: 0, f16: 1, q8_0: 7 };

/** Q8_0: blocks of 32 values, each an f16 scale then 32 int8 (ggml-common.h block_q8_0). */
export const Q8_0_BLOCK = 32;
export const Q8_0_BLOCK_BYTES = 2 + Q8_0_BLOCK;

/** The default (and peftc's) alignment of tensor data: `general.alignment` when written. */
export const GGUF_ALIGNMENT = 32;
