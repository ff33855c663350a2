/**
 * Errors a user can act on: what went wrong, with the input it concerns, and the fix.
 * The CLI prints `message` and `hint` and exits with `exitCode`; anything else is a bug
 * and is printed with its stack.
 */
export class UserError extends Error {
  constructor(
    message: string,
    readonly hint?: string,
    readonly exitCode = 2,
  ) {
    super(message);
    this.name = "UserError";
  }
}

/** An external command failed or ran past its deadline. */
export class CommandError extends UserError {
  constructor(
    message: string,
    readonly argv: string[],
    readonly code: number | null,
    readonly timedOut: boolean,
    readonly output: string,
    hint?: string,
  ) {
    super(message, hint, 3);
    this.name = "CommandError";
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
