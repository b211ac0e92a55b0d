// Multi-LoRA serving: the sgmv op (CPU + WGSL, inference-only) and the rewrite that gives
// an inference graph slotted adapter branches. Importing this module registers the op and
// its kernels.
export * from './ops.ts';
export * from './slots.ts';
export { SGMV_MAX_RANK, sgmvTokensPerGroup } from './wgsl.ts';
