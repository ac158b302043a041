/**
 * `Tunnel` against a real OpenSSH sshd on loopback (DESIGN.md section 4): data integrity, healing
 * after sshd is killed, frozen-link detection, host-key pinning, a remote app that is not
 * listening, refused authentication, and a local port already taken.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadPrivateKey } from '../../core/ssh-auth.js';
import { Tunnel, type HostKeyCheck, type TunnelState } from '../../core/tunnel.js';
import { expectedSha256, HttpOrigin } from '../helpers/http-origin.js';
import { canBind } from '../helpers/net.js';
import { freePort, startSshd, type Sshd } from '../helpers/openssh.js';

/** An in-memory pin store: first key per host:port is pinned, a different one refused. */
function pinStore(): HostKeyCheck {
  const pins = new Map<string, string>();
  return async (hostPort, sha) => {
    const pinned = pins.get(hostPort);
    if (!pinned) {
      pins.set(hostPort, sha);
      return { ok: true };
    }
    return pinned === sha ? { ok: true } : { ok: false, expected: pinned };
  };
}

function download(port: number, n: number): Promise<{ sha256: string; bytes: number }> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: `/bytes?n=${n}&seed=t`, agent: false }, (res) => {
      const hash = createHash('sha256');
      let bytes = 0;
      res.on('data', (c: Buffer) => {
        hash.update(c);
        bytes += c.length;
      });
      res.on('end', () => resolve({ sha256: hash.digest('hex'), bytes }));
      res.on('error', reject);
    }).on('error', reject);
  });
}

function upload(port: number, n: number): Promise<{ sent: string; got: { sha256: string; bytes: number } }> {
  return new Promise((resolve, reject) => {
    const body = Buffer.alloc(n);
    for (let i = 0; i < n; i += 4) body.writeUInt32LE((i * 2654435761) >>> 0, i);
    const sent = createHash('sha256').update(body).digest('hex');
    const req = http.request({ host: '127.0.0.1', port, path: '/sha256', method: 'POST', agent: false, headers: { 'content-length': n } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve({ sent, got: JSON.parse(text) }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

function getSmall(port: number, timeoutMs = 5000): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/small', agent: false, timeout: timeoutMs }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

describe('Tunnel against a real sshd', () => {
  let sshd: Sshd;
  let origin: HttpOrigin;
  const tunnels: Tunnel[] = [];
  const extra: { close(): unknown }[] = [];

  async function open(opts: { keyPath?: string; remotePort?: number; checkHostKey?: HostKeyCheck; localPort?: number } = {}): Promise<Tunnel> {
    const t = new Tunnel({
      instanceId: 'ssh-test',
      localPort: opts.localPort ?? (await freePort()),
      ssh: { host: sshd.host, port: sshd.port, user: sshd.user },
      auth: { kind: 'key', keyPath: opts.keyPath ?? sshd.userKeyPath, key: loadPrivateKey(opts.keyPath ?? sshd.userKeyPath) },
      remotePort: opts.remotePort ?? origin.port,
      checkHostKey: opts.checkHostKey ?? pinStore(),
    });
    tunnels.push(t);
    await t.start();
    return t;
  }

  beforeAll(async () => {
    sshd = await startSshd();
    origin = await new HttpOrigin('origin').start();
  });
  afterEach(async () => {
    await Promise.all(tunnels.splice(0).map((t) => t.stop()));
    for (const e of extra.splice(0)) e.close();
    sshd.thaw();
    if (!sshd.pid) await sshd.start();
  });
  afterAll(async () => {
    await origin.close();
    await sshd.stop();
  });

  it('comes up, binds loopback only, and moves 64 MiB down and 16 MiB up intact', async () => {
    const t0 = performance.now();
    const t = await open();
    await t.waitFor(['up'], 10_000);
    console.log(`tunnel open (start() to up) against sshd: ${(performance.now() - t0).toFixed(0)} ms`);
    expect(t.stats().listen.every((a) => a.startsWith('127.0.0.1:') || a.startsWith('[::1]:'))).toBe(true);
    expect(t.stats().listen).toContain(`127.0.0.1:${t.localPort}`);

    const n = 64 * 1024 * 1024;
    const down = await download(t.localPort, n);
    expect(down.bytes).toBe(n);
    expect(down.sha256).toBe(expectedSha256(n, 't'));
    const up = await upload(t.localPort, 16 * 1024 * 1024);
    expect(up.got.bytes).toBe(16 * 1024 * 1024);
    expect(up.got.sha256).toBe(up.sent);
    const s = t.stats();
    expect(s.bytes_in).toBeGreaterThanOrEqual(n);
    expect(s.bytes_out).toBeGreaterThanOrEqual(16 * 1024 * 1024);
    expect(s.connections_total).toBe(2);
  });

  it('heals after sshd is killed and restarted, without any call, and keeps its port meanwhile', async () => {
    const t = await open();
    await t.waitFor(['up'], 10_000);
    await sshd.kill();
    await t.waitFor(['reconnecting'], 5000);
    expect(await canBind(t.localPort)).toBe(false); // still ours during the outage
    await new Promise((r) => setTimeout(r, 2000));
    const back = performance.now();
    await sshd.start();
    await t.waitFor(['up'], 15_000);
    // Traffic, not only state: the first request that gets through.
    for (;;) {
      try {
        if ((await getSmall(t.localPort, 2000)) === 200) break;
      } catch {
        // not yet
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    console.log(`recovery after sshd restart: traffic flows ${(performance.now() - back).toFixed(0)} ms after sshd was started again`);
    expect(t.state).toBe('up');
  });

  it('leaves `up` within 15 s when sshd freezes (SIGSTOP), and recovers when it thaws', async () => {
    const t = await open();
    await t.waitFor(['up'], 10_000);
    const frozenAt = performance.now();
    sshd.freeze();
    const state = await t.waitFor(['reconnecting', 'connecting'], 15_000);
    console.log(`frozen sshd detected after ${((performance.now() - frozenAt) / 1000).toFixed(1)} s (state ${state})`);
    expect(['reconnecting', 'connecting']).toContain(state);
    sshd.thaw();
    await t.waitFor(['up'], 20_000);
    expect(await getSmall(t.localPort)).toBe(200);
  });

  it('refuses a changed host key, names --reset-host-key, and does not retry', async () => {
    const pins = pinStore();
    const first = await open({ checkHostKey: pins });
    await first.waitFor(['up'], 10_000);
    await first.stop();
    sshd.regenerateHostKey();
    await sshd.restart();
    const t = await open({ checkHostKey: pins });
    await t.waitFor(['failed'], 10_000);
    const err = t.stats().last_error ?? '';
    expect(err).toMatch(/host key of 127\.0\.0\.1:\d+ changed/);
    expect(err).toContain('tunnel ssh-test --reset-host-key');
    await new Promise((r) => setTimeout(r, 3000));
    expect(t.state).toBe('failed'); // no retry loop
    await expect(getSmall(t.localPort, 2000)).rejects.toThrow();
  });

  it('reports a remote port that refuses as remote_down, keeps the SSH link, and turns up when the app starts', async () => {
    const appPort = await freePort();
    const t = await open({ remotePort: appPort });
    await t.waitFor(['remote_down'], 10_000);
    expect(t.stats().last_error).toMatch(new RegExp(`127\\.0\\.0\\.1:${appPort} on the box refused`));
    const linkPids = sshd.childPids();
    expect(linkPids.length).toBeGreaterThan(0);
    // A request now fails cleanly, and the SSH link is not torn down by it.
    await expect(getSmall(t.localPort, 2000)).rejects.toThrow();
    await new Promise((r) => setTimeout(r, 1500));
    expect(t.state).toBe('remote_down');
    expect(sshd.childPids()).toEqual(linkPids);
    const app = await new HttpOrigin('late', appPort).start();
    extra.push(app);
    await t.waitFor(['up'], 10_000);
    expect(await getSmall(t.localPort)).toBe(200);
    expect(sshd.childPids()).toEqual(linkPids); // the same SSH connection all along
  });

  it('stops on refused authentication instead of retrying', async () => {
    const stranger = sshd.addUserKey({ authorize: false });
    const t = await open({ keyPath: stranger });
    await t.waitFor(['failed'], 10_000);
    expect(t.stats().last_error).toMatch(/authentication .* was refused/i);
    await new Promise((r) => setTimeout(r, 2000));
    expect(t.state).toBe('failed');
  });

  it('reports port_conflict when another program holds the local port', async () => {
    const port = await freePort();
    const squatter = net.createServer();
    await new Promise<void>((r) => squatter.listen(port, '127.0.0.1', () => r()));
    extra.push(squatter);
    const t = await open({ localPort: port });
    expect(t.state).toBe('port_conflict' as TunnelState);
    expect(t.stats().last_error).toContain(String(port));
  });

  it('survives a local client that resets mid-transfer', async () => {
    const t = await open();
    await t.waitFor(['up'], 10_000);
    await new Promise<void>((resolve) => {
      const sock = net.connect(t.localPort, '127.0.0.1', () => {
        sock.write('GET /bytes?n=67108864&seed=x HTTP/1.1\r\nHost: x\r\n\r\n');
      });
      let got = 0;
      sock.on('data', (c) => {
        got += c.length;
        if (got > 1_000_000) {
          sock.resetAndDestroy();
          resolve();
        }
      });
      sock.on('error', () => resolve());
    });
    expect(await getSmall(t.localPort)).toBe(200);
    expect(t.state).toBe('up');
  });
});
