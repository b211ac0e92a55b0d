// Errors about quantization arguments (bad blocksize, mismatched arrays): the
// message says which value was wrong and what is allowed.

export class QuantError extends Error {
  override name = 'QuantError';
}
