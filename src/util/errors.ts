// Errors meant for users: the message says what was wrong, where, and what to do.
// They live at the bottom of the layering so that every layer can throw them; the
// CLI (src/cli/errors.ts) turns them into what the user reads and an exit code.

export class UserError extends Error {
  override name = 'UserError';
}

/** A bad flag or flag value (exit code 2, as commander's own parse errors). */
export class UsageError extends UserError {
  override name = 'UsageError';
}
