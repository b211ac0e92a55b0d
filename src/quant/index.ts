// 4-bit (NF4/FP4) and 8-bit blockwise quantization, bit-exact to bitsandbytes.
export * from './block.ts';
export * from './blockwise4.ts';
export * from './double-quant.ts';
export * from './dynamic-map.ts';
export * from './errors.ts';
export * from './fp4.ts';
export * from './nf4.ts';
export * from './quant-state.ts';
