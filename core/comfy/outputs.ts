/**
 * Where downloaded files land: `<YYYYMMDD_HHMMSS>_<instance>_<file>` in the output folder, as the
 * original toolkit's `extract` named them, and never over a file that is already there.
 */
import { lstatSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { failure } from '../lib/errors.js';

/** Longest name we make: well under the 255 bytes most file systems allow. */
const MAX_NAME = 180;

/** Letters and digits of any script, `.`, `_` and `-`; everything else (separators, spaces, `:`) becomes `_`. */
function safePart(s: string): string {
  return s.normalize('NFC').replace(/[^\p{L}\p{N}._-]/gu, '_');
}

function pad(n: number, width = 2): string {
  return String(n).padStart(width, '0');
}

/** Keeps the extension when a name must be shortened. */
function shorten(name: string): string {
  if (Buffer.byteLength(name) <= MAX_NAME) return name;
  const ext = path.extname(name).slice(0, 16);
  let stem = name.slice(0, name.length - ext.length);
  while (Buffer.byteLength(stem + ext) > MAX_NAME) stem = stem.slice(0, -1);
  return stem + ext;
}

/**
 * `<YYYYMMDD_HHMMSS>_<instance>_<file>` (UTC). A file in a subfolder keeps the subfolder in its
 * name (`sub/x.png` -> `sub_x.png`); characters that are unsafe in file names become `_`.
 */
export function outputName(timestamp: Date, instanceId: string, file: string): string {
  const t = timestamp;
  const stamp = `${t.getUTCFullYear()}${pad(t.getUTCMonth() + 1)}${pad(t.getUTCDate())}_${pad(t.getUTCHours())}${pad(t.getUTCMinutes())}${pad(t.getUTCSeconds())}`;
  const flat = file.split(/[\\/]+/).filter((p) => p !== '').join('_');
  return shorten(`${stamp}_${safePart(instanceId) || 'box'}_${safePart(flat) || 'file'}`);
}

function exists(p: string): boolean {
  // lstat: a dangling symlink counts as taken (opening it with 'wx' would fail).
  return lstatSync(p, { throwIfNoEntry: false }) !== undefined;
}

/**
 * Creates `dir` (with its parents) and returns a path in it that does not exist yet: `name`, else
 * `<stem>-1.<ext>`, `<stem>-2.<ext>`, ... Files are then opened with 'wx', so a race with another
 * writer fails instead of overwriting.
 */
export function reserveOutputPath(dir: string, name: string): string {
  if (name === '' || name === '.' || name === '..' || /[\\/]/.test(name)) {
    throw new Error(`reserveOutputPath: "${name}" is not a plain file name`);
  }
  try {
    mkdirSync(dir, { recursive: true });
  } catch (err) {
    throw failure(`Cannot create the output folder ${dir}: ${(err as Error).message}`,
      'Set output_dir to a folder you can write to, then run it again.', 'output_dir');
  }
  const first = path.resolve(dir, name);
  if (!exists(first)) return first;
  const ext = path.extname(name);
  const stem = name.slice(0, name.length - ext.length);
  for (let i = 1; ; i++) {
    const candidate = path.resolve(dir, `${stem}-${i}${ext}`);
    if (!exists(candidate)) return candidate;
  }
}
