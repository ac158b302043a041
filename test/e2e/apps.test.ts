/**
 * Several apps per box, through the built CLI against a real OpenSSH sshd: three HTTP stand-ins
 * on the box get three local ports carried by one SSH connection; each port reaches its own app;
 * an sshd restart heals all three on their ports; one app can be moved or closed alone; `destroy`
 * frees all three ports.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeSandbox, waitUntil, type Sandbox } from '../helpers/cli.js';
import { canBind, httpGet } from '../helpers/net.js';
import { startOrigin, type Origin } from '../helpers/origin.js';
import { connectionsTo } from '../helpers/sockets.js';
import { freePort, startSshd, type SshdHandle } from '../helpers/sshd.js';

interface TunnelJson {
  instance_id: string;
  local_port: number;
  url: string;
  state: string;
  bytes_out: number;
  apps: Record<string, { local_port: number; url: string; state: string; remote_port: number }>;
}
interface InstanceJson {
  instance_id: string;
  status: string;
  tunnel: TunnelJson | null;
}

describe('several apps on one box, one SSH connection', () => {
  let sb: Sandbox;
  let sshd: SshdHandle;
  const apps: Record<string, Origin> = {};

  beforeAll(async () => {
    sb = makeSandbox();
    sshd = await startSshd({ logLevel: 'VERBOSE' });
    for (const name of ['comfyui', 'portal', 'notes']) apps[name] = await startOrigin({ name: `app-${name}` });
  });
  afterAll(async () => {
    await sb.cleanup();
    for (const o of Object.values(apps)) await o.close();
    await sshd.stop();
  });

  it('gives each app its own port on one connection; each reaches its app; an sshd restart heals all; destroy frees all', async () => {
    const config = sb.writeFile('apps.json', {
      provider: 'ssh',
      instance_config: {
        ssh_host: sshd.host, ssh_port: sshd.port, ssh_user: sshd.user, ssh_key_path: sshd.userKeyPath, check_comfy: false,
        ports: { comfyui: apps.comfyui!.port, portal: apps.portal!.port, notes: { port: apps.notes!.port, guard: 'off' } },
      },
    });
    const connectionsBefore = sshd.connectionCount();
    const [inst] = await sb.json<InstanceJson[]>(['create', config, '--json']);
    const id = inst!.instance_id;
    const t = inst!.tunnel!;
    expect(inst!.status).toBe('ready');
    expect(Object.keys(t.apps)).toEqual(['comfyui', 'portal', 'notes']);
    const ports = Object.values(t.apps).map((a) => a.local_port);
    expect(new Set(ports).size).toBe(3);
    expect(t.local_port).toBe(t.apps.comfyui!.local_port);
    expect(t.url).toBe(`http://localhost:${t.local_port}`);

    for (const [name, a] of Object.entries(t.apps)) {
      expect(a.state, name).toBe('up');
      expect((await httpGet(a.local_port, '/id')).body, name).toBe(`app-${name}`);
    }
    // One SSH connection carries them all.
    const [pid] = sb.supervisorPids();
    expect(connectionsTo(pid!, sshd.port)).toBe(1);
    expect(sshd.connectionCount() - connectionsBefore).toBe(1);

    // The table: one row per app.
    const table = (await sb.cli(['tunnel', '--list'])).stdout;
    for (const [name, a] of Object.entries(t.apps)) expect(table).toMatch(new RegExp(`${id}\\s+${name}\\s+\\S+\\s+${a.local_port}\\s+up\\s+http://localhost:${a.local_port}`));
    // The guard is per app: a foreign Origin is refused on portal, and passes on notes (guard off).
    const foreign = { headers: { origin: 'http://evil.example' } };
    expect((await fetch(`http://127.0.0.1:${t.apps.portal!.local_port}/id`, foreign)).status).toBe(403);
    expect((await fetch(`http://127.0.0.1:${t.apps.notes!.local_port}/id`, foreign)).status).toBe(200);
    // Traffic and refusals count every app.
    const counted = (await sb.json<(TunnelJson & { requests_refused: number })[]>(['tunnel', '--list', '--json'])).find((x) => x.instance_id === id)!;
    expect(counted.requests_refused).toBe(1);
    expect(counted.bytes_out).toBeGreaterThan(0);

    // sshd restarts: all three heal on their own ports.
    await sshd.restart();
    await waitUntil('every app up again', async () => {
      const now = (await sb.json<TunnelJson[]>(['tunnel', '--list', '--json'])).find((x) => x.instance_id === id)!;
      return Object.values(now.apps).every((a) => a.state === 'up');
    }, 30_000, 200);
    for (const [name, a] of Object.entries(t.apps)) expect((await httpGet(a.local_port, '/id')).body, name).toBe(`app-${name}`);
    expect(connectionsTo(pid!, sshd.port)).toBe(1);

    // One app moves; another closes alone; the rest keep working.
    const moved = await freePort();
    const m = await sb.json<TunnelJson>(['tunnel', id, 'portal', '--port', String(moved), '--json']);
    expect(m.apps.portal!.local_port).toBe(moved);
    expect(m.apps.comfyui!.local_port).toBe(t.apps.comfyui!.local_port);
    expect((await httpGet(moved, '/id')).body).toBe('app-portal');
    expect(await canBind(t.apps.portal!.local_port)).toBe(true);
    const closed = await sb.json<{ ports_freed: number[] }>(['tunnel', '--stop', id, 'notes', '--json']);
    expect(closed.ports_freed).toEqual([t.apps.notes!.local_port]);
    expect(await canBind(t.apps.notes!.local_port)).toBe(true);
    expect((await httpGet(t.apps.comfyui!.local_port, '/id')).body).toBe('app-comfyui');
    const reopened = await sb.json<TunnelJson>(['tunnel', id, 'notes', '--json']);
    expect(reopened.apps.notes!.local_port).toBe(t.apps.notes!.local_port); // sticky per box and app
    expect((await sb.cli(['tunnel', id, 'nope'])).code).toBe(2);
    // A supervisor restart brings back what was open, where it was: an app closed stays closed.
    await sb.cli(['tunnel', '--stop', id, 'notes']);
    await sb.cli(['daemon', 'stop']);
    let back: TunnelJson | undefined;
    await waitUntil('the tunnel back after the restart', async () => {
      back = (await sb.json<TunnelJson[]>(['tunnel', '--list', '--json'])).find((x) => x.instance_id === id);
      return !!back && Object.values(back.apps).every((a) => a.state === 'up');
    }, 20_000, 200);
    expect(Object.fromEntries(Object.entries(back!.apps).map(([n, a]) => [n, a.local_port]))).toEqual({ comfyui: t.apps.comfyui!.local_port, portal: moved });

    // destroy frees every port.
    const d = await sb.cli(['destroy', id, '--yes']);
    expect(d.code, d.stderr).toBe(0);
    for (const p of [t.apps.comfyui!.local_port, moved, t.apps.notes!.local_port]) expect(await canBind(p), `port ${p}`).toBe(true);
  });

  it('"ports": "portal" takes the apps PORTAL_CONFIG lists, read on the box', async () => {
    const portal = `localhost:1111:${apps.portal!.port}:/:Instance Portal|localhost:8188:${apps.comfyui!.port}:/:ComfyUI|localhost:8080:${apps.notes!.port}:/:Jupyter`;
    const box = await startSshd({ sessionEnv: { PORTAL_CONFIG: portal } });
    try {
      const config = sb.writeFile('portal.json', {
        provider: 'ssh',
        instance_config: { ssh_host: box.host, ssh_port: box.port, ssh_user: box.user, ssh_key_path: box.userKeyPath, check_comfy: false, remote_port: apps.comfyui!.port, ports: 'portal' },
      });
      const [inst] = await sb.json<InstanceJson[]>(['create', config, '--json']);
      const id = inst!.instance_id;
      let t: TunnelJson | undefined;
      await waitUntil('the portal apps open', async () => {
        t = (await sb.json<TunnelJson[]>(['tunnel', '--list', '--json'])).find((x) => x.instance_id === id);
        return !!t && Object.keys(t.apps).length === 3 && Object.values(t.apps).every((a) => a.state === 'up');
      }, 20_000, 200);
      expect(Object.fromEntries(Object.entries(t!.apps).map(([n, a]) => [n, a.remote_port]))).toEqual({ comfyui: apps.comfyui!.port, instance_portal: apps.portal!.port, jupyter: apps.notes!.port });
      expect((await httpGet(t!.apps.jupyter!.local_port, '/id')).body).toBe('app-notes');
      await sb.cli(['destroy', id, '--yes']);
    } finally {
      await box.stop();
    }
  });
});
