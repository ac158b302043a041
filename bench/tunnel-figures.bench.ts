/**
 * Tunnel figures of the real supervisor (started by the built CLI, `ssh` provider) against a real
 * OpenSSH sshd on loopback, with OpenSSH `ssh -N -L` measured in the same run as the reference:
 * - tunnel open time: openTunnel request to the first byte through the tunnel;
 * - frozen sshd (SIGSTOP): time until the tunnel leaves `up`;
 * - sshd killed and restarted: time from sshd listening again to traffic flowing;
 * - memory: supervisor RSS with 1 and 50 tunnels, against one `ssh -N -L` process.
 * Prints a Markdown report; `BENCH_JSON=<file>` also writes the figures as JSON.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { SupervisorClient } from '../core/control.js';
import { makeSandbox, type Sandbox } from '../test/helpers/cli.js';
import { startOrigin, type Origin } from '../test/helpers/origin.js';
import { freePort, startSshd, type SshdHandle } from '../test/helpers/sshd.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0);
}

/** Private (USS) KiB of a process, from smaps_rollup. */
function privateKiB(pid: number): number {
  const t = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const get = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(t)?.[1] ?? 0);
  return get('Private_Clean') + get('Private_Dirty');
}

function firstByte(port: number, timeoutMs = 2000): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/small', agent: false, timeout: timeoutMs }, (res) => {
      res.once('data', () => {
        res.destroy();
        resolve(true);
      });
      res.on('error', () => resolve(false));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
  });
}

async function until(check: () => Promise<boolean> | boolean, timeoutMs: number, everyMs = 10): Promise<number> {
  const t0 = performance.now();
  while (!(await check())) {
    if (performance.now() - t0 > timeoutMs) throw new Error(`not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
  return performance.now() - t0;
}

let sb: Sandbox;
let sshd: SshdHandle;
let origin: Origin;
let client: SupervisorClient;
const report: Record<string, unknown> = {};
const lines: string[] = [];

beforeAll(async () => {
  sb = makeSandbox();
  sshd = await startSshd();
  origin = await startOrigin({ name: 'bench' });
  client = await SupervisorClient.connect({ env: sb.env });
});
afterAll(async () => {
  client?.close();
  await sb?.cleanup();
  await origin?.close();
  await sshd?.stop();
});

const sshConfig = () => ({
  provider: 'ssh',
  instance_config: { ssh_host: sshd.host, ssh_port: sshd.port, ssh_user: sshd.user, ssh_key_path: sshd.userKeyPath, remote_port: origin.port },
});

it('measures tunnel open, frozen-link detection, restart recovery and memory', async () => {
  const [pid] = sb.supervisorPids();
  expect(pid).toBeDefined();
  const cpu = /model name\s*:\s*(.+)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown';
  const sshVersion = spawnSync('ssh', ['-V'], { encoding: 'utf8' }).stderr.trim();
  lines.push(`Machine: ${cpu}, ${os.cpus().length} cores, Node ${process.version}, ${sshVersion}; ${ROUNDS} rounds, medians`);
  const rssIdle = rssKiB(pid!);

  // --- tunnel open: ours (openTunnel -> first byte) vs `ssh -N -L` (spawn -> first byte), interleaved
  const [box] = (await client.createInstances({ config: sshConfig() as never })).instances;
  await client.waitForInstances({ instance_ids: [box!.instance_id], timeout_s: 30 });
  const ours: number[] = [];
  const openssh: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    await client.stopTunnel({ instance_id: box!.instance_id });
    let t0 = performance.now();
    const t = await client.openTunnel({ instance_id: box!.instance_id });
    await until(() => firstByte(t.local_port), 10_000, 5);
    ours.push(performance.now() - t0);

    const port = await freePort();
    t0 = performance.now();
    const ssh = spawnSshL(port);
    await until(() => firstByte(port), 10_000, 5);
    openssh.push(performance.now() - t0);
    await stopProcess(ssh);
  }
  report.open_ms = { ours_median: median(ours), openssh_median: median(openssh), ratio: median(ours) / median(openssh), rounds: ROUNDS };
  lines.push(`| tunnel open (request -> first byte) | ${median(ours).toFixed(0)} ms | ${median(openssh).toFixed(0)} ms (spawn \`ssh -N -L\` -> first byte) | ${(median(ours) / median(openssh)).toFixed(2)} |`);

  // --- frozen sshd: time to leave `up`
  const frozen: number[] = [];
  const recovery: number[] = [];
  for (let i = 0; i < Math.min(ROUNDS, 3); i++) {
    const t = (await client.listTunnels({}))[0]!;
    await until(async () => (await client.listTunnels({}))[0]!.state === 'up', 20_000, 50);
    await sshd.freeze();
    frozen.push(await until(async () => (await client.listTunnels({}))[0]!.state !== 'up', 20_000, 50));
    sshd.thaw();
    await until(async () => (await client.listTunnels({}))[0]!.state === 'up', 30_000, 50);

    // --- sshd killed, back after 2-2.5 s: time from listening again to traffic through the tunnel
    await sshd.kill();
    await new Promise((r) => setTimeout(r, 2000 + Math.random() * 500));
    await sshd.restart(); // resolves when the port accepts connections
    recovery.push(await until(() => firstByte(t.local_port, 500), 20_000, 10));
  }
  report.frozen_detect_s = { median: median(frozen) / 1000, max: Math.max(...frozen) / 1000, n: frozen.length };
  report.restart_recovery_ms = { median: median(recovery), max: Math.max(...recovery), n: recovery.length };
  lines.push(`| frozen sshd -> state leaves up | ${(median(frozen) / 1000).toFixed(1)} s (max ${(Math.max(...frozen) / 1000).toFixed(1)} s) | | target <= 15 s |`);
  lines.push(`| sshd back -> traffic flows | ${median(recovery).toFixed(0)} ms (max ${Math.max(...recovery).toFixed(0)} ms) | | target <= 2000 ms |`);

  // --- memory: 1 tunnel, then 50 tunnels (each its own SSH connection)
  const rss1 = rssKiB(pid!);
  const more = [];
  for (let i = 0; i < 5; i++) more.push(...(await client.createInstances({ config: sshConfig() as never, count: 10 })).instances);
  const all = await client.waitForInstances({ instance_ids: more.map((m) => m.instance_id), timeout_s: 60 });
  expect(all.filter((a) => a.status !== 'ready')).toEqual([]);
  for (const m of more) await firstByte(m.tunnel?.local_port ?? (await client.listTunnels({})).find((t) => t.instance_id === m.instance_id)!.local_port);
  await new Promise((r) => setTimeout(r, 3000));
  const tunnels = (await client.listTunnels({})).length;
  const rss51 = rssKiB(pid!);
  const port = await freePort();
  const ssh = spawnSshL(port);
  await until(() => firstByte(port), 10_000);
  const sshRss = rssKiB(ssh.pid!);
  const sshPriv = privateKiB(ssh.pid!);
  await stopProcess(ssh);
  report.memory_kib = { supervisor_idle: rssIdle, supervisor_1_tunnel: rss1, supervisor_tunnels: rss51, tunnels, ssh_L_rss: sshRss, ssh_L_private: sshPriv };
  lines.push(`| supervisor RSS, ${tunnels} tunnels | ${(rss51 / 1024).toFixed(1)} MiB (1 tunnel: ${(rss1 / 1024).toFixed(1)} MiB) | one \`ssh -N -L\`: ${(sshRss / 1024).toFixed(1)} MiB RSS, ${(sshPriv / 1024).toFixed(2)} MiB private; x${tunnels}: ${((sshRss * tunnels) / 1024).toFixed(0)} MiB RSS sum | ${(rss51 / (sshRss * tunnels)).toFixed(2)} of the RSS sum |`);
  lines.push(`| per added tunnel | ${((rss51 - rss1) / (tunnels - 1)).toFixed(0)} KiB | ${sshPriv} KiB private per ssh process | |`);

  const out = [
    '## vai-mcp tunnel figures (loopback)',
    '',
    lines[0]!,
    '',
    '| figure | vai-mcp | OpenSSH reference | note |',
    '|---|---|---|---|',
    ...lines.slice(1),
    '',
  ].join('\n');
  process.stdout.write(`\n${out}\n`);
  if (process.env.BENCH_JSON) writeFileSync(process.env.BENCH_JSON, JSON.stringify(report, null, 2));
});

function spawnSshL(localPort: number): ChildProcess {
  return spawn('ssh', [
    '-N', '-L', `${localPort}:127.0.0.1:${origin.port}`, '-p', String(sshd.port), '-i', sshd.userKeyPath,
    '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes',
    '-o', 'ExitOnForwardFailure=yes', '-o', 'LogLevel=ERROR', `${sshd.user}@${sshd.host}`,
  ], { stdio: 'ignore' });
}

async function stopProcess(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null) return;
  await new Promise<void>((r) => {
    p.once('exit', () => r());
    p.kill('SIGTERM');
  });
}


