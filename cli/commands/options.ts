/** Option values checked the same way in every command (bad values: exit 2, nothing changed). */
import { badInput } from '../../core/lib/errors.js';
import { isUsablePort, MAX_BOXES_PER_CREATE, MAX_PORT, MIN_PORT } from '../../core/model/limits.js';

function asInteger(raw: unknown, name: string): number {
  const n = typeof raw === 'number' ? raw : Number(String(raw).trim());
  if (raw === true || raw === '' || !Number.isInteger(n)) throw badInput(`${name} must be a whole number (got "${String(raw)}").`);
  return n;
}

export function parseCount(raw: unknown): number {
  const n = asInteger(raw, '--count');
  if (n < 1 || n > MAX_BOXES_PER_CREATE) throw badInput(`--count must be from 1 to ${MAX_BOXES_PER_CREATE} (got ${n}).`);
  return n;
}

export function parsePort(raw: unknown): number | undefined {
  if (raw === undefined) return undefined;
  const n = asInteger(raw, '--port');
  if (!isUsablePort(n)) throw badInput(`Port ${n} is out of range.`, `Choose a port from ${MIN_PORT} to ${MAX_PORT}.`, 'bad_port');
  return n;
}
