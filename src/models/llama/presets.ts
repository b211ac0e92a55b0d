// Built-in configurations: a tiny LLaMA for tests and the bundled demo, and the
// shapes of real models for shapes-only compilation (`peftc plan`).
import type { LlamaConfig } from './config.ts';

const base = {
  rmsNormEps: 1e-6,
  ropeTheta: 10000,
  ropeLinearFactor: 1,
  tieWordEmbeddings: false,
  attentionBias: false,
  mlpBias: false,
  torchDtype: 'float32',
} as const;

export const PRESETS: Readonly<Record<string, LlamaConfig>> = {
  /** 2 layers, GQA 4:2, byte-level vocabulary (256 bytes + bos/eos/pad). */
  tiny: {
    ...base,
    vocabSize: 259,
    hiddenSize: 64,
    intermediateSize: 128,
    numLayers: 2,
    numHeads: 4,
    numKvHeads: 2,
    headDim: 16,
    maxPositionEmbeddings: 512,
    bosTokenId: 256,
    eosTokenId: 257,
    padTokenId: 258,
  },
  /**
   * The small shape of the side-by-side bench (bench/side-by-side.ts, issue 21):
   * random weights, vocabulary 4096, 4 layers of width 512 (8 heads of 64).
   */
  'bench-small': {
    ...base,
    vocabSize: 4096,
    hiddenSize: 512,
    intermediateSize: 1376,
    numLayers: 4,
    numHeads: 8,
    numKvHeads: 8,
    headDim: 64,
    maxPositionEmbeddings: 2048,
  },
  'llama-2-7b': {
    ...base,
    rmsNormEps: 1e-5,
    vocabSize: 32000,
    hiddenSize: 4096,
    intermediateSize: 11008,
    numLayers: 32,
    numHeads: 32,
    numKvHeads: 32,
    headDim: 128,
    maxPositionEmbeddings: 4096,
    torchDtype: 'float16',
  },
  'llama-2-13b': {
    ...base,
    rmsNormEps: 1e-5,
    vocabSize: 32000,
    hiddenSize: 5120,
    intermediateSize: 13824,
    numLayers: 40,
    numHeads: 40,
    numKvHeads: 40,
    headDim: 128,
    maxPositionEmbeddings: 4096,
    torchDtype: 'float16',
  },
  'llama-2-70b': {
    ...base,
    rmsNormEps: 1e-5,
    vocabSize: 32000,
    hiddenSize: 8192,
    intermediateSize: 28672,
    numLayers: 80,
    numHeads: 64,
    numKvHeads: 8,
    headDim: 128,
    maxPositionEmbeddings: 4096,
    torchDtype: 'float16',
  },
  'llama-3-8b': {
    ...base,
    rmsNormEps: 1e-5,
    ropeTheta: 500000,
    vocabSize: 128256,
    hiddenSize: 4096,
    intermediateSize: 14336,
    numLayers: 32,
    numHeads: 32,
    numKvHeads: 8,
    headDim: 128,
    maxPositionEmbeddings: 8192,
    torchDtype: 'bfloat16',
  },
  'llama-3-70b': {
    ...base,
    rmsNormEps: 1e-5,
    ropeTheta: 500000,
    vocabSize: 128256,
    hiddenSize: 8192,
    intermediateSize: 28672,
    numLayers: 80,
    numHeads: 64,
    numKvHeads: 8,
    headDim: 128,
    maxPositionEmbeddings: 8192,
    torchDtype: 'bfloat16',
  },
};

export function presetConfig(name: string): LlamaConfig {
  const c = PRESETS[name];
  if (!c) throw new Error(`unknown model preset '${name}' (known: ${Object.keys(PRESETS).join(', ')})`);
  return c;
}
