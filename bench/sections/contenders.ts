import { rotate } from '../lib/stats.js';

/**
 * The contenders measured side by side: no tunnel, OpenSSH `ssh -N -L` (two ciphers), vai-mcp
 * (its guard on, as every box has it by default), and vai-mcp with the guard off (the guard's cost).
 */

export interface Contender {
  name: string;
  cipher: string;
  /** Local port a client connects to. */
  port: number;
  /** PID of the process that carries the tunnel (for CPU), none for the direct connection. */
  pid?: number;
  /** Contenders compared with each other (our tunnel, guard on and off): they run back to back, taking turns at going first. */
  group?: string;
}

/** The reference the targets are written against: OpenSSH as users run it (default cipher). */
export const OPENSSH_DEFAULT = 'OpenSSH ssh -N -L (default cipher)';
export const OPENSSH_OUR_CIPHER = 'OpenSSH ssh -N -L (our cipher)';
export const OURS = 'vai-mcp tunnel';
export const OURS_GUARD_OFF = 'vai-mcp tunnel, guard off';
export const DIRECT = 'direct (no tunnel)';

/**
 * The contenders in the order they run in round `r`: rotated round by round, with the ones of a
 * group (our tunnel with the guard on and off) kept together and taking turns at going first, so
 * that what a supervisor pays after an idle spell does not always fall on the same one.
 */
export function roundOrder(contenders: readonly Contender[], r: number): Contender[] {
  return processGroups(contenders, r).flat();
}

/** `roundOrder` grouped: each group's members run back to back. */
export function processGroups(contenders: readonly Contender[], r: number): Contender[][] {
  const groups = new Map<number | string, Contender[]>();
  for (const c of contenders) groups.set(c.group ?? c.pid ?? c.name, [...(groups.get(c.group ?? c.pid ?? c.name) ?? []), c]);
  return rotate([...groups.values()], r).map((g) => rotate(g, r));
}
