/**
 * Security checks through the built CLI and MCP server (DESIGN.md invariants 1, 4 and 6, and
 * "State"): listeners on loopback only, private files and control socket, host-key pins that
 * survive a restart, and secrets (Vast API key, key passphrase, instance_config.env values) that
 * never reach a log, an output or a file they do not belong in.
 *
 * A host key that changes while the supervisor runs: see test/e2e/cli-ssh.test.ts ("a changed host
 * key fails the tunnel with a way out"); here it changes while the supervisor is down.
 */
import { execFileSync } from 'node:child_process';
import { lstatSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { hasIpv6Loopback } from '../../core/tunnels/ports.js';
import { CLI, makeSandbox, ROOT, run, waitUntil, type RunResult, type Sandbox } from '../helpers/cli.js';
import { fakeBoxesSupported } from '../helpers/fake-box.js';
import { FakeVast } from '../helpers/fake-vast.js';
import { httpGet, instanceIdOfPage } from '../helpers/net.js';
import { startOrigin, type Origin } from '../helpers/origin.js';
import { isLoopback, listeningAddresses } from '../helpers/sockets.js';
import { startSshd, type SshdHandle } from '../helpers/sshd.js';

const SERVER = path.join(ROOT, 'dist', 'server', 'index.js');

interface TunnelJson {
  instance_id: string;
  local_port: number;
  state: string;
  last_error: string | null;
}
interface InstanceJson {
  instance_id: string;
  provider: string;
  status: string;
  tunnel: TunnelJson | null;
}

/** Every file under a folder (recursively), with its stat. */
function walk(dir: string): { file: string; mode: number; dir: boolean }[] {
  const out: { file: string; mode: number; dir: boolean }[] = [];
  for (const name of readdirSync(dir)) {
    const file = path.join(dir, name);
    const st = lstatSync(file);
    out.push({ file, mode: st.mode & 0o777, dir: st.isDirectory() });
    if (st.isDirectory()) out.push(...walk(file));
  }
  return out;
}

const octal = (mode: number) => `0${mode.toString(8)}`;

async function mcpServer(env: NodeJS.ProcessEnv) {
  const transport = new StdioClientTransport({ command: process.execPath, args: [SERVER], env: env as Record<string, string>, stderr: 'pipe', cwd: ROOT });
  let stderr = '';
  transport.stderr?.on('data', (d) => (stderr += d));
  const client = new Client({ name: 'security', version: '0' });
  await client.connect(transport);
  return { client, transport, stderr: () => stderr, pid: transport.pid! };
}

describe('security', () => {
  let sb: Sandbox;
  let sshd: SshdHandle;
  let origin: Origin;
  const cleanups: (() => Promise<unknown>)[] = [];

  const sshConfig = (name: string, ic: Record<string, unknown> = {}, host: SshdHandle = sshd) =>
    sb.writeFile(name, { provider: 'ssh', instance_config: { ssh_host: host.host, ssh_port: host.port, ssh_user: host.user, ssh_key_path: host.userKeyPath, remote_port: origin.port, check_comfy: false, ...ic } });

  beforeAll(async () => {
    sb = makeSandbox();
    sshd = await startSshd();
    origin = await startOrigin({ name: 'secure-box' });
  });
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
  });
  afterAll(async () => {
    await sb.cleanup();
    await origin.close();
    await sshd.stop();
  });

  it('every socket the supervisor listens on is on loopback, for local and ssh tunnels; the MCP server listens on nothing', async () => {
    const local = await sb.json<InstanceJson[]>(['create', sb.writeFile('local.json', { provider: 'local' }), '--count', '2', '--json']);
    const ssh = await sb.json<InstanceJson[]>(['create', sshConfig('ssh.json'), '--json']);
    const tunnels = [...local, ...ssh].map((i) => i.tunnel!);
    expect(tunnels.map((t) => t.state)).toEqual(['up', 'up', 'up']);

    const [pid] = sb.supervisorPids();
    const listening = listeningAddresses(pid!);
    // 3 tunnels (and the simulated boxes' own SSH servers): never a vacuous pass.
    expect(listening.length).toBeGreaterThanOrEqual(3);
    expect(listening.filter((a) => !isLoopback(a)), `all listeners: ${listening.join(', ')}`).toEqual([]);
    const v6 = await hasIpv6Loopback();
    for (const t of tunnels) {
      expect(listening).toContain(`127.0.0.1:${t.local_port}`);
      if (v6) expect(listening).toContain(`[::1]:${t.local_port}`);
    }

    const mcp = await mcpServer(sb.env);
    cleanups.push(() => mcp.transport.close());
    const listed = (await mcp.client.callTool({ name: 'list_tunnels', arguments: {} })) as CallToolResult;
    expect((listed.structuredContent as { tunnels: unknown[] }).tunnels).toHaveLength(3);
    expect(listeningAddresses(mcp.pid)).toEqual([]);
    await sb.cli(['destroy', '--all', '--yes']);
  });

  it('VAI_HOME (0700), every file in it, the control socket and its folder are private, even with umask 000', async () => {
    const home = path.join(path.dirname(sb.home), 'private-home');
    mkdirSync(home, { mode: 0o755 }); // a too-open folder the user made: it is tightened
    execFileSync('chmod', ['0755', home]);
    const env = { ...sb.env, VAI_HOME: home };
    // umask 000: every bit the product does not clear itself would show.
    const cli = (args: string[]): Promise<RunResult> => run('sh', ['-c', 'umask 000; exec "$0" "$@"', process.execPath, CLI, ...args], { env });
    const made = await cli(['create', sb.writeFile('private.json', { provider: 'local' }), '--json']);
    expect(made.code, made.stderr).toBe(0);
    const status = await cli(['daemon', 'status', '--json']);
    expect(status.code, status.stderr).toBe(0);
    const socket = (JSON.parse(status.stdout) as { socket: string }).socket;
    cleanups.push(async () => {
      await cli(['destroy', '--all', '--yes']);
      await cli(['daemon', 'stop']);
    });

    expect(octal(statSync(home).mode & 0o777), 'VAI_HOME').toBe('0700');
    const files = walk(home);
    const names = files.map((f) => path.relative(home, f.file));
    expect(names).toEqual(expect.arrayContaining(['state.sqlite', 'supervisor.log']));
    for (const f of files) expect(octal(f.mode & 0o077), `${path.relative(home, f.file)} is ${octal(f.mode)}`).toBe('00');

    const sock = lstatSync(socket);
    expect(sock.isSocket()).toBe(true);
    expect(octal(sock.mode & 0o077), `control socket ${socket} is ${octal(sock.mode & 0o777)}`).toBe('00');
    const sockDir = lstatSync(path.dirname(socket));
    expect(octal(sockDir.mode & 0o777), `socket folder ${path.dirname(socket)}`).toBe('0700');
    expect(sockDir.uid).toBe(process.getuid!());
  });

  it('a host key that changed while the supervisor was down is refused after the restart, with the way out', async () => {
    const box = await startSshd();
    cleanups.push(() => box.stop());
    const [inst] = await sb.json<InstanceJson[]>(['create', sshConfig('pinned.json', {}, box), '--json']);
    const id = inst!.instance_id;
    const port = inst!.tunnel!.local_port;
    const [pid] = sb.supervisorPids();
    process.kill(pid!, 'SIGKILL');
    await waitUntil('the supervisor is gone', () => sb.supervisorPids().length === 0, 5000);
    // Someone else answers on the same host:port while nobody watches.
    box.regenerateHostKey();
    await box.restart();

    let t: TunnelJson | undefined;
    await waitUntil('the restored tunnel refuses the new key', async () => {
      t = (await sb.json<TunnelJson[]>(['tunnel', '--list', '--json'])).find((x) => x.instance_id === id);
      return t?.state === 'failed';
    }, 15_000, 200);
    expect(t!.last_error).toMatch(/host key .* changed/i);
    expect(t!.last_error).toContain(`tunnel ${id} --reset-host-key`);
    const before = origin.requests;
    await expect(httpGet(port, '/id', 3000)).rejects.toThrow();
    expect(origin.requests, 'nothing reached the box through the impostor').toBe(before);
    await sb.cli(['destroy', id, '--yes']);
  });

  it('the Vast API key and the SSH passphrase appear in no file under VAI_HOME and in no output; instance_config.env secrets only in the state file', async () => {
    const API_KEY = 'vastkey-S3CRET-9f4e2a7c1b';
    const PASSPHRASE = 'passphrase-S3CRET-6d2b8e1f';
    const WRONG = 'wrongpass-S3CRET-3a9c5e7d';
    const ENV_SECRET = 'hf_ENV-S3CRET-4c1d8b2e';
    const boxes = fakeBoxesSupported();
    const fake = boxes.ok ? await new FakeVast([API_KEY], { paceScale: 0.02 }).start() : undefined;
    if (fake) cleanups.push(() => fake.close());
    else console.log(`secrets check without the Vast flow: ${boxes.reason}`);

    const s = makeSandbox({ VAST_API_KEY: API_KEY, VAI_SSH_PASSPHRASE: PASSPHRASE, ...(fake ? { VAST_URL: fake.url, VAI_VAST_PACE_SCALE: '0.02' } : {}) });
    cleanups.push(() => s.cleanup());
    const outputs: string[] = [];
    const cli = async (args: string[], env?: NodeJS.ProcessEnv) => {
      const r = await s.cli(args, { env, timeoutMs: 25_000 });
      outputs.push(`$ ${args.join(' ')}\n${r.stdout}\n${r.stderr}`);
      return r;
    };
    const encrypted = sshd.addUserKey({ passphrase: PASSPHRASE });
    const sshCfg = s.writeFile('enc.json', { provider: 'ssh', instance_config: { ssh_host: sshd.host, ssh_port: sshd.port, ssh_user: sshd.user, ssh_key_path: encrypted, remote_port: origin.port, check_comfy: false, env: { HF_TOKEN: ENV_SECRET } } });

    // The ssh provider with an encrypted key: the passphrase travels with the request.
    const made = await cli(['create', sshCfg, '--json']);
    expect(made.code, made.stderr).toBe(0);
    const [sshBox] = JSON.parse(made.stdout) as InstanceJson[];
    expect(sshBox!.tunnel!.state).toBe('up');
    expect((await httpGet(sshBox!.tunnel!.local_port, '/id')).body).toBe('secure-box');
    // A wrong passphrase is refused without echoing it.
    const wrong = await cli(['create', sshCfg, '--json'], { VAI_SSH_PASSPHRASE: WRONG });
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toMatch(/passphrase .* is wrong/);
    for (const args of [['list'], ['list', '--json'], ['tunnel', '--list'], ['tunnel', '--list', '--json'], ['daemon', 'status', '--json'], ['ssh-key', '--key', encrypted, '--json'], ['tunnel', sshBox!.instance_id, '--json']]) {
      const r = await cli(args);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
    }
    // A restart restores the tunnel with the supervisor's own environment (and logs about it).
    expect((await cli(['daemon', 'stop'])).code).toBe(0);
    await waitUntil('the restored tunnel is up', async () => {
      const r = await cli(['tunnel', '--list', '--json']);
      return r.code === 0 && (JSON.parse(r.stdout) as TunnelJson[])[0]?.state === 'up';
    }, 10_000, 200);

    // The same through the MCP server.
    const mcp = await mcpServer(s.env);
    cleanups.push(() => mcp.transport.close());
    const results: unknown[] = [];
    const call = async (name: string, args: Record<string, unknown>) => {
      const r = (await mcp.client.callTool({ name, arguments: args }, undefined, { timeout: 40_000 })) as CallToolResult;
      results.push(r);
      return r;
    };
    const viaMcp = await call('create_instance', { config_path: sshCfg, request_id: 'secrets-1', wait_s: 30 });
    expect(viaMcp.isError, JSON.stringify(viaMcp.content)).toBeFalsy();
    await call('list_instances', {});
    await call('list_tunnels', {});

    // The vast provider against the fake API: the API key, the passphrase and an env secret.
    if (fake) {
      fake.addOffer({ dph_base: 0.3, storage_cost: 0.1 });
      const vastCfg = s.writeFile('vast.json', { provider: 'vast', instance_config: { gpu_name: 'RTX 4090', max_price_per_hour: 0.8, disk_size: 40, ssh_key_path: encrypted, env: { HF_TOKEN: ENV_SECRET } } });
      const v = await cli(['create', vastCfg, '--json']);
      expect(v.code, v.stderr).toBe(0);
      const [vastBox] = JSON.parse(v.stdout) as InstanceJson[];
      expect(vastBox!.status).toBe('ready');
      expect(instanceIdOfPage((await httpGet(vastBox!.tunnel!.local_port)).body)).toBe(vastBox!.instance_id);
      expect(fake.createBody(Number(vastBox!.instance_id))!.env).toMatchObject({ HF_TOKEN: ENV_SECRET }); // it did flow to the box
      expect((await cli(['list', '--json'])).code).toBe(0);
      expect((await cli(['search', vastCfg])).code).toBe(0);
      expect((await cli(['logs', vastBox!.instance_id])).code).toBe(0);
    }
    expect((await cli(['destroy', '--all', '--yes'])).code).toBe(0);
    await mcp.transport.close();

    // Outputs: CLI stdout and stderr, MCP results and the MCP server's stderr.
    const shown = [...outputs, JSON.stringify(results), mcp.stderr()].join('\n');
    for (const secret of [API_KEY, PASSPHRASE, WRONG, ENV_SECRET]) expect(shown.includes(secret), `${secret} shown in an output`).toBe(false);

    // Files: every byte of every file under VAI_HOME (log, SQLite state, keys, anything else).
    const files = walk(s.home).filter((f) => !f.dir);
    expect(files.map((f) => path.basename(f.file))).toEqual(expect.arrayContaining(['state.sqlite', 'supervisor.log']));
    for (const { file } of files) {
      const bytes = readFileSync(file).toString('latin1');
      const name = path.relative(s.home, file);
      for (const secret of [API_KEY, PASSPHRASE, WRONG]) expect(bytes.includes(secret), `${secret} in ${name}`).toBe(false);
      // Stored, never shown: the state file may hold the config's env; nothing else may.
      if (!name.startsWith('state.sqlite')) expect(bytes.includes(ENV_SECRET), `${ENV_SECRET} in ${name}`).toBe(false);
    }
  });
});
