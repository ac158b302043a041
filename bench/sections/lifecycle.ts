/**
 * A tunnel's life: time to open one (request to first byte), supervisor start to first tunnel up,
 * time to notice a frozen sshd, and time to carry traffic again after sshd comes back.
 */
import { spawn } from 'node:child_process';
import { SupervisorClient } from '../../core/control/client.js';
import { CLI, ROOT } from '../../test/helpers/cli.js';
import { freePort, type SshdHandle } from '../../test/helpers/sshd.js';
import { answers, until } from '../lib/http.js';
import { openSshL, stopProcess, type SshTarget } from '../lib/openssh.js';
import { startedAtMs } from '../lib/proc.js';
import { fmt, type Report } from '../lib/report.js';
import { median } from '../lib/stats.js';
import type { Vai } from '../lib/vai.js';

/** How long a link must stay up before the next outage starts the reconnect schedule afresh (core/tunnel.ts). */
const STABLE_LINK_S = 10;

/** Spawns the CLI without waiting for it (the clock runs from the spawn). */
function spawnCli(vai: Vai, args: string[]): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: vai.sb.env, cwd: ROOT, stdio: 'ignore' });
    child.on('exit', (code) => resolve(code ?? -1));
    child.on('error', () => resolve(-1));
  });
}

export async function measureOpen(report: Report, vai: Vai, instanceId: string, target: SshTarget, rounds: number): Promise<void> {
  const cliOpen: number[] = [];
  const apiOpen: number[] = [];
  const sshOpen: number[] = [];
  const client = await SupervisorClient.connect({ env: vai.sb.env, start: false });
  try {
    for (let r = 0; r < rounds; r++) {
      // Ours through the CLI: spawn `vai-mcp-cli tunnel <id>` -> first byte (a process start, like ssh).
      await client.stopTunnel({ instance_id: instanceId });
      let t0 = performance.now();
      const exited = spawnCli(vai, ['tunnel', instanceId]);
      const port = await until('tunnel listed', async () => (await client.listTunnels({})).some((t) => t.instance_id === instanceId), 10_000, 2)
        .then(async () => (await client.listTunnels({})).find((t) => t.instance_id === instanceId)!.local_port);
      await until('first byte', () => answers(port, 2000), 10_000, 2);
      cliOpen.push(performance.now() - t0);
      await exited;

      // Ours through the API: the request itself -> first byte.
      await client.stopTunnel({ instance_id: instanceId });
      t0 = performance.now();
      const t = await client.openTunnel({ instance_id: instanceId });
      await until('first byte', () => answers(t.local_port, 2000), 10_000, 2);
      apiOpen.push(performance.now() - t0);

      // OpenSSH: spawn `ssh -N -L` -> first byte.
      const sshPort = await freePort();
      t0 = performance.now();
      const ssh = await openSshL(target, sshPort);
      sshOpen.push(performance.now() - t0);
      await stopProcess(ssh);
    }
  } finally {
    client.close();
  }
  report.table({
    title: 'Opening a tunnel: request to first byte through it (ms)',
    note: `${rounds} interleaved rounds, medians (max). The CLI and ssh rows both include starting a process.`,
    columns: ['how', 'median', 'max', 'vs OpenSSH'],
    rows: [
      ['vai-mcp-cli tunnel <id> (spawn -> first byte)', fmt.ms(median(cliOpen)), fmt.ms(Math.max(...cliOpen)), fmt.x(median(cliOpen) / median(sshOpen))],
      ['openTunnel request on the control socket -> first byte', fmt.ms(median(apiOpen)), fmt.ms(Math.max(...apiOpen)), fmt.x(median(apiOpen) / median(sshOpen))],
      ['OpenSSH: spawn ssh -N -L -> first byte', fmt.ms(median(sshOpen)), fmt.ms(Math.max(...sshOpen)), '1.00x'],
    ],
  });
  report.figures.open_ms = { cli: cliOpen, api: apiOpen, openssh: sshOpen };
}

/** `daemon stop`, then a CLI command starts a fresh supervisor, which restores the tunnel. */
export async function measureStartToUp(report: Report, vai: Vai, port: number, rounds: number): Promise<void> {
  const fromSpawn: number[] = [];
  const fromStart: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const stopped = await vai.sb.cli(['daemon', 'stop']);
    if (stopped.code !== 0) throw new Error(`daemon stop: ${stopped.stderr}`);
    await until('old supervisor gone', () => vai.sb.supervisorPids().length === 0, 10_000, 5);
    const t0 = Date.now();
    const exited = spawnCli(vai, ['tunnel', '--list']);
    await until('tunnel back after supervisor start', () => answers(port, 500), 10_000, 2);
    const t1 = Date.now();
    fromSpawn.push(t1 - t0);
    fromStart.push(t1 - startedAtMs(vai.supervisorPid()));
    await exited;
  }
  report.table({
    title: 'Supervisor start to first tunnel up (ms)',
    note: `${rounds} rounds: \`daemon stop\`, then \`vai-mcp-cli tunnel --list\` starts a fresh supervisor, which restores the recorded tunnel on its port. "Process start" is the supervisor's start time in /proc (10 ms resolution).`,
    columns: ['from', 'median', 'max'],
    rows: [
      ['supervisor process start -> first byte through the tunnel', fmt.ms(median(fromStart)), fmt.ms(Math.max(...fromStart))],
      ['CLI spawn (which starts the supervisor) -> first byte', fmt.ms(median(fromSpawn)), fmt.ms(Math.max(...fromSpawn))],
    ],
  });
  report.target('supervisor start to first tunnel up', `${fmt.ms(median(fromStart))} ms median, ${fmt.ms(Math.max(...fromStart))} max`, '<= 1000 ms', Math.max(...fromStart) <= 1000);
  report.figures.start_to_up_ms = { from_supervisor_start: fromStart, from_cli_spawn: fromSpawn };
}

export async function measureFaults(report: Report, vai: Vai, sshd: SshdHandle, instanceId: string, port: number, frozenRounds: number, outagesS: number[]): Promise<void> {
  const client = await SupervisorClient.connect({ env: vai.sb.env, start: false });
  const state = async () => (await client.listTunnels({})).find((t) => t.instance_id === instanceId)?.state;
  const frozen: number[] = [];
  const recovery: number[] = [];
  try {
    for (let r = 0; r < frozenRounds; r++) {
      await until('tunnel up', async () => (await state()) === 'up', 30_000, 50);
      await sshd.freeze();
      frozen.push(await until('frozen link noticed', async () => (await state()) !== 'up', 30_000, 50));
      sshd.thaw();
      await sshd.restart(); // a frozen server's connections are gone for good; start clean
      await until('tunnel up again', () => answers(port, 1000), 30_000, 20);
      process.stderr.write(`faults: frozen round ${r + 1}/${frozenRounds} done\n`);
    }
    for (const outage of outagesS) {
      await until('tunnel up', async () => (await state()) === 'up', 30_000, 50);
      // Each outage on its own: a link that flaps (down again within 10 s) keeps backing off, by design.
      await new Promise((res) => setTimeout(res, STABLE_LINK_S * 1000 + 1000));
      await sshd.kill();
      await new Promise((res) => setTimeout(res, outage * 1000 + Math.random() * 500)); // a random phase of the retry loop
      await sshd.restart(); // resolves once the port accepts connections
      recovery.push(await until('traffic again', () => answers(port, 500), 60_000, 10));
      process.stderr.write(`faults: outage of ${outage} s done\n`);
    }
  } finally {
    client.close();
  }
  report.table({
    title: 'Faults: frozen sshd and sshd outages',
    note: 'Frozen: SIGSTOP of sshd and its per-connection processes; time until the tunnel leaves `up` (keepalive 3 s x 3). Outage (each after the link was up 11 s): sshd SIGKILLed, restarted after the given time plus a random 0-0.5 s; time from sshd listening again to the first response through the tunnel.',
    columns: ['fault', 'n', 'median', 'max'],
    rows: [
      ['frozen sshd -> tunnel leaves up', String(frozen.length), `${(median(frozen) / 1000).toFixed(1)} s`, `${(Math.max(...frozen) / 1000).toFixed(1)} s`],
      ...outagesS.map((o, i) => [`outage of ${o} s -> traffic after sshd is back`, '1', `${fmt.ms(recovery[i]!)} ms`, `${fmt.ms(recovery[i]!)} ms`]),
    ],
  });
  report.target('frozen-link detection', `${(Math.max(...frozen) / 1000).toFixed(1)} s max`, '<= 15 s', Math.max(...frozen) <= 15_000);
  const underMinute = recovery.filter((_, i) => outagesS[i]! < 60);
  report.target('traffic again after sshd is back (outages under a minute)', `${fmt.ms(Math.max(...underMinute))} ms max`, '<= 2000 ms', Math.max(...underMinute) <= 2000);
  report.figures.faults = { frozen_detect_ms: frozen, outages_s: outagesS, recovery_ms: recovery };
}
