export {
  type AdaLoraAdapterConfig,
  adaloraConfigSchema,
  adaloraMask,
  adaloraRankFor,
  parseAdaLoraConfig,
} from './adalora.ts';
export {
  alphaFor,
  formatLoraConfig,
  type LoraAdapterConfig,
  loraConfig,
  loraConfigSchema,
  matchPatternKey,
  parseLoraConfig,
  rankFor,
  scalingFor,
} from './config.ts';
export {
  type AdapterKey,
  fileKey,
  graphName,
  type LoraPart,
  MOE_PARTS,
  type MoePart,
  PEFT_PREFIX,
  parseFileKey,
  parseGraphName,
  type SvdPart,
} from './keys.ts';
export {
  checkMoeShapes,
  type MaloraMoeAdapterConfig,
  maloraMoeConfigSchema,
  parseMaloraMoeConfig,
} from './malora-moe.ts';
export { isAdaLoraConfig, isMaloraMoeConfig, type PeftAdapterConfig, parsePeftConfig } from './parse.ts';
export {
  ADAPTER_CONFIG,
  ADAPTER_WEIGHTS,
  adapterFolder,
  type PeftAdapter,
  readPeftAdapter,
  readPeftConfig,
} from './read.ts';
export {
  checkImplemented,
  REFUSED_FIELDS,
  type RefusedField,
  refusedField,
  residualInit,
} from './refused.ts';
export { type WritePeftAdapterArgs, writePeftAdapter } from './write.ts';
