// Placeholder: `peftc export --format webgpu-ts` replaces this file with the exported model's
// manifest (generated with ts-morph). It is here so that the runtime type-checks in peftc.
import type { ModelManifest } from './plan-types.ts';

export const MODEL: ModelManifest = {
  model: '',
  vocabSize: 0,
  padId: 0,
  lengths: [],
  kernels: [],
  plans: { gpu: [], software: [] },
  adapters: [],
  merged: false,
  quant: 'none',
  limits: [],
  dispatches: { fused: 0, unfused: 0 },
};
