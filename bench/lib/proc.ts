/** What the benchmark reads about a process from /proc (Linux). */
import { readFileSync } from 'node:fs';

/** Clock ticks per second of /proc/<pid>/stat times (USER_HZ, 100 on every Linux we run on). */
const TICKS = 100;

function statFields(pid: number): string[] {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Field 2 (the command name) may hold spaces: split after the last ')'. Index 0 is field 3.
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** User + system CPU seconds the process has used so far. */
export function cpuSeconds(pid: number): number {
  const f = statFields(pid);
  return (Number(f[11]) + Number(f[12])) / TICKS;
}

/** Minor page faults the process has taken so far (pages it touched for the first time). */
export function minorFaults(pid: number): number {
  return Number(statFields(pid)[7]);
}

/**
 * When the process started, in ms since the epoch (10 ms resolution). From its age against
 * /proc/uptime, not /proc/stat's btime, which is rounded to whole seconds.
 */
export function startedAtMs(pid: number): number {
  const startTicks = Number(statFields(pid)[19]);
  const uptimeS = Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
  return Date.now() - (uptimeS * 1000 - (startTicks / TICKS) * 1000);
}

export interface Memory {
  /** Resident set, KiB. */
  rss: number;
  /** Pages only this process maps (USS), KiB. */
  private: number;
  /** Resident pages it shares with other processes (libraries, the binary), KiB. */
  shared: number;
}

export function memoryOf(pid: number): Memory {
  const t = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const kib = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(t)?.[1] ?? 0);
  return { rss: kib('Rss'), private: kib('Private_Clean') + kib('Private_Dirty'), shared: kib('Shared_Clean') + kib('Shared_Dirty') };
}

export function machine(): { cpu: string; cores: number; memory_gib: number; kernel: string } {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const cpu = /model name\s*:\s*(.+)/.exec(cpuinfo)?.[1]?.trim() ?? 'unknown';
  const cores = (cpuinfo.match(/^processor\s*:/gm) ?? []).length;
  const memKiB = Number(/MemTotal:\s+(\d+)/.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1] ?? 0);
  const kernel = readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim();
  return { cpu, cores, memory_gib: Math.round((memKiB / 1024 / 1024) * 10) / 10, kernel };
}
