export {
  buildLlama,
  causalLmLoss,
  isKvParam,
  kvParamName,
  type LlamaBuildOptions,
  type LlamaShape,
} from './build.ts';
export {
  ConfigError,
  type LlamaConfig,
  parseLlamaConfig,
  readLlamaConfig,
  storageDtype,
  toHfConfig,
} from './config.ts';
export {
  ComputeF32View,
  checkModelWeights,
  type LoadedModel,
  loadModel,
  modelGraph,
  randomLlamaWeights,
} from './load.ts';
export { PRESETS, presetConfig } from './presets.ts';
export { saveModelDir } from './save.ts';
