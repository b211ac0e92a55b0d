// QLoRA as a registered method (bitsandbytes 4-bit base, ../../../shared/METHODS.md):
// the `qlora` pass quantizes the targeted frozen linears (recipe entry
// {"method": "qlora", "quant_type", "blocksize", "double_quant", "target_modules"?}),
// `qlora-merge` folds LoRA adapters into the 4-bit (or an f32) base, and
// `fuse-dequant` (run at lowering, after autodiff) fuses dequantization into the
// products. Importing this module registers the ops, their CPU and WGSL kernels and VJPs.
import '../../backends/webgpu/kernels/quant4.ts';
import './cpu.ts';
import { hasPass, registerPass } from '../../passes/pass.ts';
import { hasMethod, type MethodDef, registerMethod } from '../registry.ts';
import { fuseDequantPass } from './fuse.ts';
import { mergeQlora } from './merge.ts';
import { type QloraOptions, qloraOptions } from './options.ts';
import { quantizeLinears } from './quantize.ts';

export { decode4bit } from './cpu.ts';
export { fuseDequant, fuseDequantPass, fuseDequantRules } from './fuse.ts';
export {
  describeQuantizedBase,
  type QuantizedBaseReport,
  type QuantizedWeightMemory,
  quantizedBaseReport,
} from './memory.ts';
export { dequantizeAll, type MergeReport, mergeQlora, quantizedWeights, stateFromGraph } from './merge.ts';
export * from './ops.ts';
export { type QloraOptions, type QloraOptionsInput, qloraOptions } from './options.ts';
export {
  emitDequant,
  QloraError,
  type QuantizeResult,
  qloraParamNames,
  quantizeLinears,
  settingsOf,
} from './quantize.ts';
export * from './quantize-op.ts';

export const qlora: MethodDef<QloraOptions> = {
  name: 'qlora',
  description:
    'QLoRA base: targeted frozen linears stored as bitsandbytes NF4/FP4 (+ double quant), dequantized in the matmul',
  options: qloraOptions,
  apply: (g, o, ctx) => quantizeLinears(g, o, ctx.weights),
  merge: (g, o, ctx) => mergeQlora(g, o, ctx.weights, ctx.log),
  properties: {
    identityAtInit: false,
    mergeEqualsForward: false,
    mergeUnmergeIdentity: false,
    addsTrainableParams: false,
  },
  fixtures: {
    options: () => ({ quant_type: 'nf4', blocksize: 64, double_quant: true }),
  },
};

if (!hasMethod('qlora')) {
  registerMethod(qlora);
  if (!hasPass('fuse-dequant')) registerPass(fuseDequantPass);
}
