export {
  type Batch,
  Batcher,
  type BatcherOptions,
  type DataCursor,
  evalBatches,
  seededPermutation,
} from './batches.ts';
export { type Dataset, type DatasetOptions, datasetFingerprint, loadDataset, splitRows } from './dataset.ts';
export { type DataFiles, DEFAULT_BATCH, DEFAULT_SEQ, datasetFor, modelTokenizer } from './for-model.ts';
export {
  type DataFormat,
  type Document,
  detectFormat,
  loadDocuments,
  loadTokenFile,
  parseJsonl,
  splitText,
} from './load.ts';
export { type PackOptions, type PackStats, packDocuments, type Row } from './pack.ts';
export { IGNORE_INDEX, type TokenizedDoc, type TokenizerLike, tokenizeDocuments } from './tokenize.ts';
