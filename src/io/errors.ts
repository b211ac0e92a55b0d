// Errors about files users bring or we write: they name the file, and the tensor or
// key inside it, so the user knows exactly what to look at.

export class FormatError extends Error {
  override name = 'FormatError';
  constructor(
    readonly file: string,
    problem: string,
    readonly key?: string,
  ) {
    super(key === undefined ? `${file}: ${problem}` : `${file}: '${key}': ${problem}`);
  }
}
