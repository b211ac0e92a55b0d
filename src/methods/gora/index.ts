// GoRA (arXiv 2502.12171): gradient-driven rank allocation and init for LoRA. The numerics
// live here; the calibration (gradients of the frozen weights) runs in the trainer.
export { type Allocation, type AllocationTarget, allocateRanks, normalizeImportances } from './allocate.ts';
export { IMPORTANCE_TYPES, type ImportanceType, importanceOf } from './importance.ts';
export { type CompressInit, compressB, compressInit, goraGamma, kaimingA } from './init.ts';
