// Turns an error into what a user reads: the message, never a bare stack trace.
// Our own error classes carry a full message; a built-in error (TypeError, ...)
// means a bug, so PEFTC_DEBUG=1 shows its stack.

import { UsageError, UserError } from '../util/errors.ts';

export { UsageError, UserError };

function isBug(e: Error): boolean {
  return (
    e.constructor === Error ||
    e instanceof TypeError ||
    e instanceof RangeError ||
    e instanceof ReferenceError
  );
}

export function formatError(e: unknown): string {
  if (!(e instanceof Error)) return `peftc: error: ${String(e)}`;
  const hint = isBug(e)
    ? process.env.PEFTC_DEBUG
      ? `\n${e.stack}`
      : '\n(set PEFTC_DEBUG=1 for the stack trace)'
    : '';
  return `peftc: error: ${e.message}${hint}`;
}
