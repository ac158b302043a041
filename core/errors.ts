/**
 * The one error type of vai-mcp. Every failure a user can see is a VaiError: a message that says
 * what went wrong, a hint that says what to do next, and the exit code the CLI ends with
 * (2 for bad usage or bad input, 1 for everything else). It crosses the control socket as plain
 * JSON, so the supervisor's errors reach the CLI and the MCP server unchanged.
 */
export type ExitCode = 1 | 2;

export interface ErrorPayload {
  message: string;
  hint?: string;
  exitCode: ExitCode;
  code: string;
}

export class VaiError extends Error {
  readonly hint?: string;
  readonly exitCode: ExitCode;
  /** A short stable identifier (e.g. `bad_input`, `unknown_instance`) for callers that branch on it. */
  readonly code: string;

  constructor(message: string, opts: { hint?: string; exitCode?: ExitCode; code?: string } = {}) {
    super(message);
    this.name = 'VaiError';
    this.hint = opts.hint;
    this.exitCode = opts.exitCode ?? 1;
    this.code = opts.code ?? (this.exitCode === 2 ? 'bad_input' : 'failure');
  }

  toJSON(): ErrorPayload {
    return { message: this.message, hint: this.hint, exitCode: this.exitCode, code: this.code };
  }

  static fromJSON(p: ErrorPayload): VaiError {
    return new VaiError(p.message, p);
  }
}

/** Bad usage or bad input: exit code 2, and nothing was changed. */
export function badInput(message: string, hint?: string, code = 'bad_input'): VaiError {
  return new VaiError(message, { hint, exitCode: 2, code });
}

/** Something failed while doing the work: exit code 1. */
export function failure(message: string, hint?: string, code = 'failure'): VaiError {
  return new VaiError(message, { hint, exitCode: 1, code });
}

export function unknownInstance(id: string): VaiError {
  return badInput(
    `Unknown instance id "${id}".`,
    'Run `vai-mcp-cli list` to see the instances known here.',
    'unknown_instance',
  );
}

/** Turns anything thrown into a VaiError, keeping VaiErrors as they are. */
export function toVaiError(err: unknown): VaiError {
  if (err instanceof VaiError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return failure(message);
}

/** The message plus its hint, as a person reads it. */
export function describeError(err: unknown): string {
  const e = toVaiError(err);
  return e.hint ? `${e.message}\n  ${e.hint}` : e.message;
}
