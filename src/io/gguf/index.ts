// GGUF (llama.cpp's file format): the writer and its encodings.
export { decode, encode, encodedBytes } from './quant.ts';
export * from './types.ts';
export { type GgufFile, type GgufTensor, writeGguf } from './write.ts';
