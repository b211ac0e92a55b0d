// GoRA (arXiv 2502.12171): gradient-driven rank allocation and init for the LoRA entry that
// follows it in a recipe. Before training the trainer runs the calibration (gradients of
// the frozen target weights over n_steps batches, train/calibrate.ts); the entry's apply
// leaves the graph as it is, and what is trained and saved is plain LoRA with
// rank_pattern / alpha_pattern.
import { hasMethod, type MethodDef, registerMethod } from '../registry.ts';
import { goraCalibrate } from './calibrate.ts';
import { type GoraOptions, goraOptions } from './options.ts';

export { type Allocation, type AllocationTarget, allocateRanks, normalizeImportances } from './allocate.ts';
export { goraCalibrate } from './calibrate.ts';
export { IMPORTANCE_TYPES, type ImportanceType, importanceOf } from './importance.ts';
export { type CompressInit, compressB, compressInit, goraGamma, kaimingA } from './init.ts';
export { type GoraOptions, goraOptions, rankBounds } from './options.ts';

export const gora: MethodDef<GoraOptions> = {
  name: 'gora',
  description:
    'GoRA: ranks and init of the next lora entry from the gradients of the frozen weights (calibrated by the trainer)',
  options: goraOptions,
  apply: (g) => ({ graph: g }),
  train: { calibrate: goraCalibrate },
  properties: {
    identityAtInit: true,
    mergeEqualsForward: false,
    mergeUnmergeIdentity: false,
    addsTrainableParams: false,
    changesGraph: false,
  },
  fixtures: { options: () => ({}) },
};

if (!hasMethod('gora')) registerMethod(gora);
