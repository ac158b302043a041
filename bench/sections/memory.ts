/**
 * Memory: our supervisor with 1, 50 and 200 tunnels, each its own SSH connection to its own host
 * (127.0.1.N), against as many `ssh -N -L` processes. For OpenSSH: the RSS sum (what `ps` adds
 * up), the private sum, and the real total (private pages summed, shared pages counted once).
 */
import type { ChildProcess } from 'node:child_process';
import { freePort } from '../../test/helpers/sshd.js';
import { answers } from '../lib/http.js';
import { openSshL, stopProcess, type SshTarget } from '../lib/openssh.js';
import { memoryOf, type Memory } from '../lib/proc.js';
import { fmt, type Report } from '../lib/report.js';
import { median } from '../lib/stats.js';
import type { Vai } from '../lib/vai.js';

const settle = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs `fn` over `items` with at most `limit` at a time. */
async function pool<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  }));
  return out;
}

export interface MemoryStep {
  tunnels: number;
  supervisor: Memory;
  ssh: { rss_sum: number; private_sum: number; shared_once: number; real_total: number; private_median: number };
}

export async function measureMemory(report: Report, vai: Vai, hosts: SshTarget[], steps: number[]): Promise<{ instanceIds: string[]; sshPrivateKiB: number }> {
  const results: MemoryStep[] = [];
  const instanceIds: string[] = [];
  const ports: number[] = [];
  // Ours first, in a fresh supervisor (bulk transfers elsewhere would have grown its heap).
  const oursAt = new Map<number, Memory>();
  for (const n of steps) {
    const todo = hosts.slice(instanceIds.length, n);
    const made = await pool(todo, 6, (h) => vai.createSshBox(h));
    for (const t of made) {
      instanceIds.push(t.instance_id);
      ports.push(t.local_port);
    }
    for (const p of ports) await answers(p, 5000); // one request through each tunnel
    await settle(3000);
    oursAt.set(n, memoryOf(vai.supervisorPid()));
    process.stderr.write(`memory: supervisor with ${n} tunnels measured\n`);
  }
  const procs: ChildProcess[] = [];
  try {
    for (const n of steps) {
      const todo = hosts.slice(procs.length, n);
      const started = await pool(todo, 10, async (h) => openSshL(h, await freePort()));
      procs.push(...started);
      await settle(3000);
      const mems = procs.map((p) => memoryOf(p.pid!));
      const sharedOnce = Math.max(...mems.map((m) => m.shared));
      const privateSum = mems.reduce((a, m) => a + m.private, 0);
      results.push({
        tunnels: n,
        supervisor: oursAt.get(n)!,
        ssh: { rss_sum: mems.reduce((a, m) => a + m.rss, 0), private_sum: privateSum, shared_once: sharedOnce, real_total: privateSum + sharedOnce, private_median: median(mems.map((m) => m.private)) },
      });
      process.stderr.write(`memory: ${n} ssh -N -L processes measured\n`);
    }
  } finally {
    await Promise.all(procs.map(stopProcess));
  }

  const first = results[0]!;
  const last = results.at(-1)!;
  const perTunnel = (last.supervisor.rss - first.supervisor.rss) / (last.tunnels - first.tunnels);
  // With many ssh processes their common pages count as shared; one alone shows them as private.
  const sshPrivate = last.ssh.private_median;
  report.table({
    title: 'Memory: supervisor vs one `ssh -N -L` process per tunnel (MiB)',
    note: 'Each tunnel is its own SSH connection to its own host (127.0.1.N), measured 3 s after one request through each. OpenSSH "real total" = private pages summed + shared pages once.',
    columns: ['tunnels', 'supervisor RSS', 'ssh RSS sum', 'ssh private sum', 'ssh real total', 'supervisor / real total', 'supervisor / RSS sum'],
    rows: results.map((s) => [
      String(s.tunnels), fmt.mib(s.supervisor.rss), fmt.mib(s.ssh.rss_sum), fmt.mib(s.ssh.private_sum), fmt.mib(s.ssh.real_total),
      fmt.x(s.supervisor.rss / s.ssh.real_total), fmt.x(s.supervisor.rss / s.ssh.rss_sum),
    ]),
  });
  report.table({
    title: 'Memory per added tunnel',
    columns: ['what', 'KiB'],
    rows: [
      [`supervisor RSS growth per tunnel (${first.tunnels} -> ${last.tunnels})`, perTunnel.toFixed(0)],
      [`private memory of one ssh -N -L (median of ${last.tunnels})`, sshPrivate.toFixed(0)],
      ['RSS of one ssh -N -L', first.ssh.rss_sum.toFixed(0)],
    ],
  });
  report.target('memory per added tunnel vs private memory of one ssh -N -L', `${fmt.x(perTunnel / sshPrivate)} (${perTunnel.toFixed(0)} vs ${sshPrivate.toFixed(0)} KiB)`, '<= 0.2x', perTunnel / sshPrivate <= 0.2);
  for (const [n, limit] of [[50, 1.0], [200, 0.35]] as const) {
    const s = results.find((x) => x.tunnels === n);
    if (!s) continue;
    const r = s.supervisor.rss / s.ssh.real_total;
    report.target(`supervisor RSS at ${n} tunnels vs real total of ${n} ssh`, `${fmt.x(r)} (${fmt.mib(s.supervisor.rss)} vs ${fmt.mib(s.ssh.real_total)} MiB; RSS-sum ratio ${fmt.x(s.supervisor.rss / s.ssh.rss_sum)})`, `<= ${limit.toFixed(2)}x`, r <= limit);
  }
  report.figures.memory_kib = { steps: results, per_added_tunnel: perTunnel };
  return { instanceIds, sshPrivateKiB: sshPrivate };
}

/** The private memory of one `ssh -N -L` (a run without the memory section), as that section measures it with 10 at once. */
export async function sshPrivateOf(host: SshTarget): Promise<number> {
  const procs = await Promise.all(Array.from({ length: 10 }, async () => openSshL(host, await freePort())));
  try {
    await settle(3000);
    return median(procs.map((p) => memoryOf(p.pid!).private));
  } finally {
    await Promise.all(procs.map(stopProcess));
  }
}
