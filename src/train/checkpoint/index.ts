export {
  type CheckpointData,
  checkpointPath,
  type LoadedCheckpoint,
  latestCheckpoint,
  loadCheckpoint,
  OPTIMIZER_FILE,
  PARAMS_FILE,
  STATE_FILE,
  saveCheckpoint,
} from './checkpoint.ts';
