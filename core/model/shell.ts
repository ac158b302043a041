/** A command run on a box over its SSH link, for long work (downloads, installs). */
export interface ShellResult {
  /** The exit code; null when the channel closed without one. */
  code: number | null;
  /** The last few KB of stderr, for the error message. */
  stderr: string;
}

/** Runs a command on the box: stdout line by line, optional stdin, ended by the signal. */
export type Shell = (command: string, o: { stdin?: string; onLine?: (line: string) => void; signal?: AbortSignal }) => Promise<ShellResult>;
