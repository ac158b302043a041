/** Option values checked the same way in every command (bad values: exit 2, nothing changed). */
import { badInput } from '../../core/lib/errors.js';
import { checkPortRange } from '../../core/tunnels/ports.js';

function asInteger(raw: unknown, name: string): number {
  const n = typeof raw === 'number' ? raw : Number(String(raw).trim());
  if (raw === true || raw === '' || !Number.isInteger(n)) throw badInput(`${name} must be a whole number (got "${String(raw)}").`);
  return n;
}

export function parseCount(raw: unknown): number {
  const n = asInteger(raw, '--count');
  if (n < 1 || n > 10) throw badInput(`--count must be from 1 to 10 (got ${n}).`);
  return n;
}

export function parsePort(raw: unknown): number | undefined {
  if (raw === undefined) return undefined;
  const n = asInteger(raw, '--port');
  checkPortRange(n);
  return n;
}
