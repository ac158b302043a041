/**
 * Where things live on disk: VAI_HOME and the files in it, and the supervisor's control socket.
 * The socket does not live under VAI_HOME, whose path may be long: unix socket paths are cut at
 * ~107 bytes. It lives in a private 0700 folder with a short path, named by a hash of VAI_HOME.
 */
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, lstatSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { failure, homeWriteError } from './errors.js';

export function expandHome(p: string): string {
  if (p === '~') return os.homedir();
  if (p.startsWith('~/')) return path.join(os.homedir(), p.slice(2));
  return p;
}

/** VAI_HOME from an environment, absolute; default `~/.vai`. */
export function resolveVaiHome(env: NodeJS.ProcessEnv = process.env): string {
  return path.resolve(expandHome(env.VAI_HOME?.trim() || '~/.vai'));
}

export function homeFiles(home: string) {
  return {
    home,
    settings: path.join(home, 'settings.json'),
    state: path.join(home, 'state.sqlite'),
    lock: path.join(home, 'supervisor.lock'),
    log: path.join(home, 'supervisor.log'),
    localDir: path.join(home, 'local'),
  };
}

/**
 * The real reason a recursive mkdir failed: Node reports ENOENT where the first folder that
 * could not be made says EROFS, EACCES or ENOSPC. Retries that one folder alone.
 */
function mkdirCause(dir: string, err: unknown): unknown {
  if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return err;
  let first = dir;
  while (!existsSync(path.dirname(first)) && path.dirname(first) !== first) first = path.dirname(first);
  try {
    mkdirSync(first, { mode: 0o700 });
    return err;
  } catch (cause) {
    return cause;
  }
}

/** Creates a folder (and parents) private to this user: 0700. `place` names it in errors. */
export function ensurePrivateDir(dir: string, place = 'VAI_HOME'): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw homeWriteError(mkdirCause(dir, err), dir, `the folder ${dir}`, place);
  }
  const st = lstatSync(dir);
  if (!st.isDirectory()) throw failure(`${dir} exists but is not a folder.`, 'Move it away and try again.');
  if (typeof process.getuid === 'function' && st.uid !== process.getuid()) {
    throw failure(`${dir} belongs to another user.`, 'Set VAI_HOME to a folder you own.');
  }
  if ((st.mode & 0o777) !== 0o700) chmodSync(dir, 0o700);
}

/** The control socket path for a VAI_HOME: short, private, the same for every client of that home. */
export function socketPathFor(home: string): string {
  const hash = createHash('sha256').update(home).digest('hex').slice(0, 16);
  if (process.platform === 'win32') return `\\\\.\\pipe\\vai-mcp-${os.userInfo().username}-${hash}`;
  const uid = typeof process.getuid === 'function' ? process.getuid() : 0;
  // A fixed short base, not TMPDIR/XDG_RUNTIME_DIR: every client of one home must find the
  // same socket whatever its environment; the folder is created 0700 and checked to be ours.
  return path.join('/tmp', `vai-mcp-${uid}`, `${hash}.sock`);
}
