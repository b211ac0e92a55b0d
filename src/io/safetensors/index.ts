export { ST_DTYPES, type StDType } from './dtypes.ts';
export { SafetensorsFile, type SafetensorsStore } from './file.ts';
export { MAX_HEADER_SIZE, type SafetensorsHeader, type SafetensorsTensorInfo } from './header.ts';
export { INDEX_FILE, openCheckpoint, ShardedSafetensors, SINGLE_FILE } from './sharded.ts';
export { headerBytes, type TensorEntries, type WriteSafetensorsOptions, writeSafetensors } from './write.ts';
