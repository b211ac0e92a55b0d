// Turns an error into what a user reads: the message, never a bare stack trace
// (set PEFTC_DEBUG=1 to see the stack of an unexpected error).

export class UserError extends Error {
  override name = 'UserError';
}

const EXPECTED = new Set([
  'UserError',
  'BuildError',
  'VerifyError',
  'ShapeError',
  'ParseError',
  'RecipeError',
  'FormatError',
]);

export function formatError(e: unknown): string {
  if (!(e instanceof Error)) return `peftc: error: ${String(e)}`;
  const stack = process.env.PEFTC_DEBUG && !EXPECTED.has(e.name) ? `\n${e.stack}` : '';
  return `peftc: error: ${e.message}${stack}`;
}
