/**
 * The one error type of vai-mcp. Every failure a user can see is a VaiError: a message that says
 * what went wrong, a hint that says what to do next, and the exit code the CLI ends with
 * (2 for bad usage or bad input, 1 for everything else). It crosses the control socket as plain
 * JSON, so the supervisor's errors reach the CLI and the MCP server unchanged.
 */
export type ExitCode = 1 | 2;

/**
 * What to do next. One string when it reads right for both faces; otherwise in the words of each:
 * CLI commands and flags for people, tool names and arguments for agents.
 */
export type Hint = string | { cli: string; agent: string };

export interface ErrorPayload {
  message: string;
  hint?: string;
  agentHint?: string;
  exitCode: ExitCode;
  code: string;
}

export class VaiError extends Error {
  /** For people: CLI commands and flags. */
  readonly hint?: string;
  /** For agents: tool names and arguments (MCP results use it; `hint` when there is none). */
  readonly agentHint?: string;
  readonly exitCode: ExitCode;
  /** A short stable identifier (e.g. `bad_input`, `unknown_instance`) for callers that branch on it. */
  readonly code: string;

  constructor(message: string, opts: { hint?: Hint; agentHint?: string; exitCode?: ExitCode; code?: string } = {}) {
    super(message);
    this.name = 'VaiError';
    const h = opts.hint;
    this.hint = typeof h === 'object' ? h.cli : h;
    this.agentHint = typeof h === 'object' ? h.agent : opts.agentHint;
    this.exitCode = opts.exitCode ?? 1;
    this.code = opts.code ?? (this.exitCode === 2 ? 'bad_input' : 'failure');
  }

  toJSON(): ErrorPayload {
    return { message: this.message, hint: this.hint, agentHint: this.agentHint, exitCode: this.exitCode, code: this.code };
  }

  static fromJSON(p: ErrorPayload): VaiError {
    return new VaiError(p.message, p);
  }
}

/** Bad usage or bad input: exit code 2, and nothing was changed. */
export function badInput(message: string, hint?: Hint, code = 'bad_input'): VaiError {
  return new VaiError(message, { hint, exitCode: 2, code });
}

/** Something failed while doing the work: exit code 1. */
export function failure(message: string, hint?: Hint, code = 'failure'): VaiError {
  return new VaiError(message, { hint, exitCode: 1, code });
}

export function unknownInstance(id: string): VaiError {
  return badInput(
    `Unknown instance id "${id}".`,
    { cli: 'Run `vai-mcp-cli list` to see the instances known here.', agent: 'Call list_instances to see the boxes known here.' },
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

/**
 * A failed write under VAI_HOME (a full disk, a read-only mount, wrong permissions) as a message
 * that names the folder and the cause, instead of a bare "ENOSPC ... write". `what` says what
 * was being written ("the state file", "the supervisor log").
 */
export function homeWriteError(err: unknown, home: string, what: string, place = 'VAI_HOME'): VaiError {
  if (err instanceof VaiError) return err;
  const e = err as NodeJS.ErrnoException;
  const text = `${e?.code ?? ''} ${e?.message ?? String(err)}`;
  if (/ENOSPC|SQLITE_FULL|EDQUOT/.test(text)) {
    return failure(`Cannot write ${what}: no space left on the disk of ${place} (${home}).`,
      'Free some space there (or set VAI_HOME to a folder on another disk), then run the command again.', 'home_full');
  }
  if (/EROFS|SQLITE_READONLY/.test(text)) {
    return failure(`Cannot write ${what}: ${place} (${home}) is on a read-only file system.`,
      'Make it writable, or set VAI_HOME to a writable folder, then run the command again.', 'home_read_only');
  }
  if (/EACCES|EPERM|SQLITE_CANTOPEN/.test(text)) {
    return failure(`Cannot write ${what} in ${place} (${home}): permission denied (${e?.message ?? String(err)}).`,
      'VAI_HOME must be a folder you own; fix its owner or set VAI_HOME to another folder.', 'home_permission');
  }
  return failure(`Cannot write ${what} in ${place} (${home}): ${e?.message ?? String(err)}`);
}
