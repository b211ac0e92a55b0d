// The numerics of the PiSSA and OLoRA inits (the LoRA method applies them: lora/residual-init.ts).
export { oloraInit, pissaInit, type ResidualInitResult } from './init.ts';
export { matmul, qr, type Svd, svd, svdLowrank } from './linalg.ts';
