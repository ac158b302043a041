/** Processes, read from /proc (Linux): what the test harnesses use to find and stop their trees. */
import { readdirSync, readFileSync } from 'node:fs';

/** The fields of /proc/<pid>/stat after the command name (state first, then ppid), or undefined. */
export function statFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** Every process's children, one /proc scan. */
function childrenMap(): Map<number, number[]> {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const f = statFields(Number(entry));
    if (!f) continue;
    const ppid = Number(f[1]);
    let list = children.get(ppid);
    if (!list) children.set(ppid, (list = []));
    list.push(Number(entry));
  }
  return children;
}

/** All descendants of `pid` (children, grandchildren, ...). */
export function descendantsOf(pid: number): number[] {
  const children = childrenMap();
  const out: number[] = [];
  const queue = [...(children.get(pid) ?? [])];
  while (queue.length) {
    const p = queue.shift()!;
    if (out.includes(p)) continue;
    out.push(p);
    queue.push(...(children.get(p) ?? []));
  }
  return out;
}

/** Gone, or a zombie nobody reaped yet (it holds no sockets and runs no code). */
export function isDead(pid: number): boolean {
  const f = statFields(pid);
  return !f || f[0] === 'Z' || f[0] === 'X';
}

/** Stopped by a signal (or dead). */
export function isStopped(pid: number): boolean {
  const f = statFields(pid);
  return !f || f[0] === 'T' || f[0] === 't' || f[0] === 'Z' || f[0] === 'X';
}

export function signalAll(pids: Iterable<number>, sig: NodeJS.Signals): void {
  for (const p of pids) {
    try {
      process.kill(p, sig);
    } catch {
      // already gone
    }
  }
}

/** Polls `check` until it holds; throws naming `what` after `timeoutMs`. */
export async function pollUntil(what: string, check: () => boolean, timeoutMs: number, stepMs = 20): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}
