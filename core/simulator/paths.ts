/**
 * Relative paths inside the simulator's in-memory folders (input/output/temp and user data).
 * A real box refuses names that climb out of its folders; so does the simulator, and it keys every
 * file by one normal form so `a//b/./c.png` and `a/b/c.png` are the same file.
 */

/** `a/b/c` from a relative path, or undefined when it is absolute, climbs (`..`) or holds NUL/backslash. */
export function normalRelPath(p: string): string | undefined {
  if (p.startsWith('/') || p.includes('\0') || p.includes('\\') || /^[A-Za-z]:/.test(p)) return undefined;
  const parts = p.split('/').filter((s) => s !== '' && s !== '.');
  if (parts.some((s) => s === '..')) return undefined;
  return parts.join('/');
}

/** A plain file name: non-empty, no slash, not `.` or `..`. */
export function isPlainName(name: string): boolean {
  return name !== '' && name !== '.' && name !== '..' && !/[/\\\0]/.test(name);
}

/** `subfolder/name`, or `name` when the subfolder is empty. */
export function joinRel(subfolder: string, name: string): string {
  return subfolder ? `${subfolder}/${name}` : name;
}
