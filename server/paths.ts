/**
 * Paths in tool arguments. The client chooses the server's working directory, so a relative path
 * is read against a folder the agent cannot see; when nothing is there, the error says which
 * absolute path was tried and asks for an absolute one (never the same path again).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { badInput } from '../core/lib/errors.js';

export function argPath(cwd: string, value: string, arg: string): string {
  const abs = path.resolve(cwd, value);
  if (!path.isAbsolute(value) && !existsSync(abs)) {
    throw badInput(
      `${arg} "${value}" is a relative path, read as ${abs}, and no file is there. An MCP server starts in a folder its client chooses (here ${cwd}), so relative paths are not reliable.`,
      `Pass ${arg} as an absolute path.`,
      'relative_path_missing',
    );
  }
  return abs;
}
