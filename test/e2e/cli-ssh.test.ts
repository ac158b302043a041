/**
 * The `ssh` provider through the built CLI against a real OpenSSH sshd: register a box, reach the
 * app behind it, states a user sees, host-key reset, and a passphrase that travels with the request.
 */
import { execFileSync, spawn } from 'node:child_process';
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeSandbox, waitUntil, type Sandbox } from '../helpers/cli.js';
import { httpGet } from '../helpers/net.js';
import { startOrigin, type Origin } from '../helpers/origin.js';
import { freePort, startSshd, type SshdHandle } from '../helpers/sshd.js';

interface TunnelJson {
  instance_id: string;
  local_port: number;
  url: string;
  state: string;
  last_error: string | null;
  ssh_host: string;
  ssh_port: number;
}
interface InstanceJson {
  instance_id: string;
  provider: string;
  status: string;
  tunnel: TunnelJson | null;
}

describe('the ssh provider through the CLI, against a real sshd', () => {
  let sb: Sandbox;
  let sshd: SshdHandle;
  let origin: Origin;

  const config = (name: string, ic: Record<string, unknown>) =>
    sb.writeFile(name, { provider: 'ssh', instance_config: { ssh_host: sshd.host, ssh_port: sshd.port, ssh_user: sshd.user, ssh_key_path: sshd.userKeyPath, remote_port: origin.port, check_comfy: false, ...ic } });

  beforeAll(async () => {
    sb = makeSandbox();
    sshd = await startSshd();
    origin = await startOrigin({ name: 'box-behind-sshd' });
  });
  afterAll(async () => {
    await sb.cleanup();
    await origin.close();
    await sshd.stop();
  });

  it('create registers the box, opens its tunnel and the URL reaches the app behind sshd', async () => {
    const r = await sb.cli(['create', config('box.json', {}), '--json']);
    expect(r.code, r.stderr).toBe(0);
    const [inst] = JSON.parse(r.stdout) as InstanceJson[];
    expect(inst!.instance_id).toMatch(/^ssh-\d+$/);
    expect(inst!.provider).toBe('ssh');
    expect(inst!.status).toBe('ready');
    expect(inst!.tunnel!.state).toBe('up');
    expect(inst!.tunnel!.ssh_port).toBe(sshd.port);
    expect((await httpGet(inst!.tunnel!.local_port, '/id')).body).toBe('box-behind-sshd');
    // Destroy forgets it and closes the tunnel; the machine itself is untouched.
    const d = await sb.cli(['destroy', inst!.instance_id, '--yes']);
    expect(d.code, d.stderr).toBe(0);
    expect(await sb.json<InstanceJson[]>(['list', '--json'])).toEqual([]);
    expect(sshd.pid).toBeGreaterThan(0);
  });

  it('ready means ComfyUI answers: a port that is not ComfyUI stays running with what answered, then fails at ready_timeout_s', async () => {
    // Not ComfyUI: a web app whose 404 page is a long HTML page.
    const page = `<!doctype html><html><body>${'<p>not here</p>'.repeat(400)}</body></html>`;
    const notComfy = http.createServer((_req, res) => res.writeHead(404, { 'content-type': 'text/html' }).end(page));
    const comfyLike = http.createServer((req, res) =>
      req.url === '/api/system_stats' ? res.writeHead(200, { 'content-type': 'application/json' }).end('{"system": {}}') : res.writeHead(404).end());
    const listen = (s: http.Server) => new Promise<number>((r) => s.listen(0, '127.0.0.1', () => r((s.address() as AddressInfo).port)));
    const [wrongPort, comfyPort] = [await listen(notComfy), await listen(comfyLike)];
    try {
      const made = await sb.json<InstanceJson[]>(['create', config('wrong.json', { remote_port: wrongPort, check_comfy: true, ready_timeout_s: 6 }), '--no-wait', '--json']);
      const id = made[0]!.instance_id;
      let inst: (InstanceJson & { status_message: string | null }) | undefined;
      await waitUntil('the box says what answered', async () => {
        inst = (await sb.json<(InstanceJson & { status_message: string | null })[]>(['list', '--json'])).find((i) => i.instance_id === id);
        return /system_stats/.test(inst?.status_message ?? '');
      }, 10_000, 200);
      expect(inst!.status).toBe('running');
      expect(inst!.tunnel!.state).toBe('up');
      const msg = inst!.status_message!;
      expect(msg).toMatch(new RegExp(`^GET /api/system_stats: 404 \\(.*\\) from port ${wrongPort}; is ComfyUI running there\\?$`));
      expect(msg.length).toBeLessThan(320); // the page's first 200 characters at most
      // ready_timeout_s ends the wait: failed, never destroyed (the machine is not ours).
      await waitUntil('failed at its deadline', async () => (await sb.json<InstanceJson[]>(['list', '--json'])).find((i) => i.instance_id === id)?.status === 'failed', 15_000, 250);
      const failed = (await sb.json<(InstanceJson & { status_message: string | null })[]>(['list', '--json'])).find((i) => i.instance_id === id)!;
      expect(failed.status_message).toMatch(/ready_timeout_s = 6 s.*is ComfyUI running there\?/);
      // A ComfyUI on the port: ready, with the check on.
      const ok = await sb.cli(['create', config('comfy.json', { remote_port: comfyPort, check_comfy: true })]);
      expect(ok.code, ok.stderr).toBe(0);
      expect(ok.stdout).toMatch(/^ssh-\d+\s+http:\/\/localhost:\d+$/m);
    } finally {
      notComfy.close();
      comfyLike.close();
    }
  });

  it('shows remote_down while nothing listens on the remote port, and up once the app starts', async () => {
    const appPort = await freePort();
    const r = await sb.cli(['create', config('late.json', { remote_port: appPort }), '--no-wait', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const [inst] = JSON.parse(r.stdout) as InstanceJson[];
    let t: TunnelJson | undefined;
    await waitUntil('remote_down', async () => {
      t = (await sb.json<TunnelJson[]>(['tunnel', '--list', '--json'])).find((x) => x.instance_id === inst!.instance_id);
      return t?.state === 'remote_down';
    }, 15_000, 200);
    expect(t!.last_error).toMatch(/refused/);
    const listed = (await sb.json<InstanceJson[]>(['list', '--json'])).find((i) => i.instance_id === inst!.instance_id)!;
    expect(listed.status).not.toBe('ready');
    const app = await startOrigin({ name: 'late-app', port: appPort });
    try {
      await waitUntil('up and ready', async () => {
        const i = (await sb.json<InstanceJson[]>(['list', '--json'])).find((x) => x.instance_id === inst!.instance_id)!;
        return i.tunnel?.state === 'up' && i.status === 'ready';
      }, 15_000, 200);
      expect((await httpGet(t!.local_port, '/id')).body).toBe('late-app');
    } finally {
      await app.close();
      await sb.cli(['destroy', inst!.instance_id, '--yes']);
    }
  });

  it('a changed host key fails the tunnel with a way out, and --reset-host-key accepts the new key', async () => {
    const r = await sb.cli(['create', config('hk.json', {}), '--json']);
    expect(r.code, r.stderr).toBe(0);
    const [inst] = JSON.parse(r.stdout) as InstanceJson[];
    const id = inst!.instance_id;
    sshd.regenerateHostKey();
    await sshd.restart();
    let t: TunnelJson | undefined;
    await waitUntil('failed on the host key', async () => {
      t = (await sb.json<TunnelJson[]>(['tunnel', '--list', '--json'])).find((x) => x.instance_id === id);
      return t?.state === 'failed';
    }, 20_000, 200);
    expect(t!.last_error).toContain(`vai-mcp-cli tunnel ${id} --reset-host-key`);
    // Re-opening without the reset is refused again (exit 1), never silently accepted.
    const again = await sb.cli(['tunnel', id]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/host key .* changed/);
    const reset = await sb.json<TunnelJson>(['tunnel', id, '--reset-host-key', '--json']);
    expect(reset.state).toBe('up');
    expect(reset.local_port).toBe(t!.local_port);
    expect((await httpGet(reset.local_port, '/id')).body).toBe('box-behind-sshd');
    await sb.cli(['destroy', id, '--yes']);
  });

  it('a refused key fails the create at once with the reason; once authorized, `tunnel <id>` makes it ready', async () => {
    const stranger = sshd.addUserKey({ authorize: false, name: 'stranger' });
    const t0 = Date.now();
    const r = await sb.cli(['create', config('stranger.json', { ssh_key_path: stranger }), '--json']);
    expect(r.code).toBe(1);
    expect(Date.now() - t0).toBeLessThan(15_000); // not the 1800 s ready deadline
    const [inst] = JSON.parse(r.stdout) as (InstanceJson & { status_message: string })[];
    expect(inst!.status).toBe('failed');
    expect(inst!.status_message).toMatch(/authentication .* was refused/i);
    expect(r.stderr).toMatch(/did not become ready/);
    // The user authorizes the key on the machine and re-opens the tunnel.
    appendFileSync(path.join(sshd.dir, 'authorized_keys'), readFileSync(`${stranger}.pub`));
    const t = await sb.json<TunnelJson>(['tunnel', inst!.instance_id, '--json']);
    expect(t.state).toBe('up');
    await waitUntil('ready', async () => (await sb.json<InstanceJson[]>(['list', '--json'])).find((i) => i.instance_id === inst!.instance_id)?.status === 'ready', 10_000, 200);
    await sb.cli(['destroy', inst!.instance_id, '--yes']);
  });

  it('falls back to the ssh agent (SSH_AUTH_SOCK) when there is no key file', async () => {
    const agentKey = sshd.addUserKey({ name: 'agent_key' });
    const sock = path.join(sshd.dir, 'agent.sock');
    const agent = spawn('ssh-agent', ['-D', '-a', sock], { stdio: 'ignore' });
    try {
      await waitUntil('ssh-agent socket', () => existsSync(sock), 5000);
      execFileSync('ssh-add', ['-q', agentKey], { env: { ...process.env, SSH_AUTH_SOCK: sock }, stdio: 'ignore' });
      // No ssh_key_path, and the sandbox HOME has no ~/.ssh keys: only the agent can do it.
      const cfg = sb.writeFile('agent.json', { provider: 'ssh', instance_config: { ssh_host: sshd.host, ssh_port: sshd.port, ssh_user: sshd.user, remote_port: origin.port, check_comfy: false } });
      const keyReport = await sb.json<{ used: string }>(['ssh-key', '--json'], { env: { SSH_AUTH_SOCK: sock } });
      expect(keyReport.used).toBe(`ssh agent at ${sock}`);
      const r = await sb.cli(['create', cfg, '--json'], { env: { SSH_AUTH_SOCK: sock } });
      expect(r.code, r.stderr).toBe(0);
      const [inst] = JSON.parse(r.stdout) as InstanceJson[];
      expect(inst!.tunnel!.state).toBe('up');
      expect((await httpGet(inst!.tunnel!.local_port, '/id')).body).toBe('box-behind-sshd');
      // Without an agent and without keys, the same config is refused as bad input.
      const none = await sb.cli(['create', cfg]);
      expect(none.code).toBe(2);
      expect(none.stderr).toMatch(/No SSH key found/);
      await sb.cli(['destroy', inst!.instance_id, '--yes']);
    } finally {
      agent.kill('SIGTERM');
    }
  });

  it('uses the passphrase of the client that asks, not of the one that started the supervisor', async () => {
    const encrypted = sshd.addUserKey({ passphrase: 'correct horse' });
    // Client A starts the supervisor, with a passphrase that does not fit this key.
    await sb.cli(['daemon', 'stop']);
    expect(sb.supervisorPids()).toEqual([]);
    const a = await sb.cli(['tunnel', '--list'], { env: { VAI_SSH_PASSPHRASE: 'not-this-one' } });
    expect(a.code, a.stderr).toBe(0);
    const [pid] = sb.supervisorPids();
    // Client B brings the right passphrase: the box comes up with the encrypted key.
    const b = await sb.cli(['create', config('enc.json', { ssh_key_path: encrypted }), '--json'], { env: { VAI_SSH_PASSPHRASE: 'correct horse' } });
    expect(b.code, b.stderr).toBe(0);
    const [inst] = JSON.parse(b.stdout) as InstanceJson[];
    expect(inst!.tunnel!.state).toBe('up');
    expect((await httpGet(inst!.tunnel!.local_port, '/id')).body).toBe('box-behind-sshd');
    expect(sb.supervisorPids()).toEqual([pid]);
    // Client C, without a passphrase, is refused for the same key (bad input).
    const c = await sb.cli(['create', config('enc2.json', { ssh_key_path: encrypted })]);
    expect(c.code).toBe(2);
    expect(c.stderr).toMatch(/encrypted and no passphrase/);
    await sb.cli(['destroy', inst!.instance_id, '--yes']);
  });
});
