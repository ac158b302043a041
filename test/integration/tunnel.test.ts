/**
 * `Tunnel` (core/tunnel.ts) against a real OpenSSH sshd on loopback and a real HTTP origin
 * (DESIGN.md sections 3 and 4): data integrity both ways, loopback-only listeners, healing after
 * sshd is killed, frozen-link detection, host-key pinning, a remote app that is not listening,
 * refused authentication, a local port already taken, and local clients that reset mid-transfer.
 *
 * Every sshd is per test (its own folder, host key and connection log); every wait is bounded.
 * Prints the tunnel open time, the frozen-link detection time and the restart recovery time.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import type { Readable } from 'node:stream';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { hasIpv6Loopback } from '../../core/tunnels/ports.js';
import { loadPrivateKey } from '../../core/tunnels/ssh-auth.js';
import { Tunnel, type HostKeyCheck } from '../../core/tunnels/tunnel.js';
import { deterministicBytes, expectedSha256, startOrigin, type Origin } from '../helpers/origin.js';
import { freePort, startSshd, type SshdHandle } from '../helpers/sshd.js';
import type { TunnelState } from '../../core/model/tunnel.js';

const MiB = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Helpers

/** The in-memory pin store: the first key seen per host:port is pinned, another one refused. */
function pinStore(): HostKeyCheck & { pins: Map<string, string> } {
  const pins = new Map<string, string>();
  const check: HostKeyCheck = async (hostPort, sha) => {
    const pinned = pins.get(hostPort);
    if (pinned === undefined) {
      pins.set(hostPort, sha);
      return { ok: true };
    }
    return pinned === sha ? { ok: true } : { ok: false, expected: pinned };
  };
  return Object.assign(check, { pins });
}

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  bytes: number;
  sha256: string;
  text: string;
}

/** One HTTP request on a fresh connection (no pooling); rejects on error or after `timeoutMs`. */
function request(
  port: number,
  path: string,
  opts: { method?: string; body?: Readable; host?: string; timeoutMs?: number; readDelayMs?: number } = {},
): Promise<Reply> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  return new Promise((resolve, reject) => {
    const req = http.request({ host: opts.host ?? '127.0.0.1', port, path, method: opts.method ?? 'GET', agent: false }, (res) => {
      const hash = createHash('sha256');
      let bytes = 0;
      const head: Buffer[] = [];
      res.on('data', (c: Buffer) => {
        hash.update(c);
        if (bytes < 4096) head.push(c);
        bytes += c.length;
        if (opts.readDelayMs) {
          // A slow client: the tunnel must hold back, not drop or reorder.
          res.pause();
          setTimeout(() => res.resume(), opts.readDelayMs);
        }
      });
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, bytes, sha256: hash.digest('hex'), text: Buffer.concat(head).toString('utf8') });
      });
      res.on('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
    });
    const timer = setTimeout(() => req.destroy(new Error(`${opts.method ?? 'GET'} ${path} on port ${port}: no answer within ${timeoutMs} ms`)), timeoutMs);
    req.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    if (opts.body) opts.body.pipe(req);
    else req.end();
  });
}

/** Connects and reports the outcome: 'connected' or the error code. Bounded. */
function tcpConnect(host: string, port: number, timeoutMs = 3000): Promise<string> {
  return new Promise((resolve) => {
    const sock = net.connect({ host, port });
    const timer = setTimeout(() => {
      sock.destroy();
      resolve('ETIMEDOUT');
    }, timeoutMs);
    sock.once('connect', () => {
      clearTimeout(timer);
      sock.destroy();
      resolve('connected');
    });
    sock.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(err.code ?? err.message);
    });
  });
}

/** Whether another program could bind the port on `host` right now. */
function canBind(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen({ port, host, exclusive: true }, () => s.close(() => resolve(true)));
  });
}

function listen(server: net.Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port, host, exclusive: true }, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Resolves with the first state matching `pred` (now or later); rejects after `timeoutMs`. */
function waitForState(t: Tunnel, pred: (s: TunnelState) => boolean, what: string, timeoutMs: number): Promise<TunnelState> {
  if (pred(t.state)) return Promise.resolve(t.state);
  return new Promise((resolve, reject) => {
    const onState = (s: TunnelState) => {
      if (!pred(s)) return;
      clearTimeout(timer);
      t.off('state', onState);
      resolve(s);
    };
    const timer = setTimeout(() => {
      t.off('state', onState);
      reject(new Error(`tunnel ${t.instanceId}: not ${what} within ${timeoutMs} ms (state ${t.state}, last_error ${t.stats().last_error})`));
    }, timeoutMs);
    t.on('state', onState);
  });
}

async function eventually(what: string, check: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`not ${what} within ${timeoutMs} ms`);
    await sleep(50);
  }
}

/** Addresses of this machine that are not loopback (and not link-local, which need a scope). */
function externalAddresses(): string[] {
  return Object.values(os.networkInterfaces())
    .flat()
    .filter((a): a is os.NetworkInterfaceInfo => !!a && !a.internal && !a.address.toLowerCase().startsWith('fe80:'))
    .map((a) => a.address);
}

const sortNum = (a: number[]) => [...a].sort((x, y) => x - y);
const ms = (from: number) => Math.round(performance.now() - from);

// ---------------------------------------------------------------------------------------------

describe('Tunnel against a real OpenSSH sshd', () => {
  let sshd: SshdHandle;
  let origin: Origin;
  let ipv6 = false;
  let seq = 0;
  const tunnels: Tunnel[] = [];
  const cleanups: (() => unknown)[] = [];
  const figures: Record<string, string> = {};

  async function openTunnel(opts: { keyPath?: string; passphrase?: string; remotePort?: number; localPort?: number; checkHostKey?: HostKeyCheck; start?: boolean } = {}): Promise<Tunnel> {
    const keyPath = opts.keyPath ?? sshd.userKeyPath;
    const t = new Tunnel({
      instanceId: `ssh-it-${++seq}`,
      localPort: opts.localPort ?? (await freePort()),
      ssh: { host: sshd.host, port: sshd.port, user: sshd.user },
      auth: { kind: 'key', keyPath, key: loadPrivateKey(keyPath, opts.passphrase) },
      remotePort: opts.remotePort ?? origin.port,
      checkHostKey: opts.checkHostKey ?? pinStore(),
    });
    tunnels.push(t);
    if (opts.start !== false) await t.start();
    return t;
  }

  beforeAll(async () => {
    origin = await startOrigin({ name: 'box-a' });
    ipv6 = await hasIpv6Loopback();
  });

  beforeEach(async () => {
    sshd = await startSshd();
  });

  afterEach(async () => {
    await Promise.all(tunnels.splice(0).map((t) => t.stop()));
    for (const c of cleanups.splice(0).reverse()) await c();
    await sshd.stop(); // also wakes a frozen server
  });

  afterAll(async () => {
    await origin.close();
    if (Object.keys(figures).length) console.log(`tunnel figures against OpenSSH sshd:\n${Object.entries(figures).map(([k, v]) => `  ${k}: ${v}`).join('\n')}`);
  });

  it('comes up and carries 64 MiB down and 16 MiB up intact, counting the bytes', async () => {
    const t0 = performance.now();
    const t = await openTunnel();
    expect(t.state).toBe('connecting');
    await t.waitFor(['up'], 10_000);
    figures['open (start() to up), first tunnel'] = `${ms(t0)} ms`;
    expect(t.stats().last_error).toBeNull();
    expect((await request(t.localPort, '/id')).text).toBe('box-a');

    const down = 64 * MiB;
    const got = await request(t.localPort, `/bytes?n=${down}&seed=down`, { timeoutMs: 60_000 });
    expect(got.status).toBe(200);
    expect(got.bytes).toBe(down);
    expect(got.headers['x-sha256']).toBe(expectedSha256(down, 'down'));
    expect(got.sha256).toBe(expectedSha256(down, 'down'));

    const up = 16 * MiB;
    const sent = await request(t.localPort, '/sha256', { method: 'POST', body: deterministicBytes(up, 'up'), timeoutMs: 60_000 });
    expect(sent.status).toBe(200);
    expect(sent.headers['x-bytes']).toBe(String(up));
    expect(sent.text).toBe(expectedSha256(up, 'up'));

    await eventually('all local connections closed', () => t.stats().connections === 0, 5000);
    const s = t.stats();
    expect(s.state).toBe('up');
    expect(s.connections_total).toBe(3);
    // The bodies plus HTTP headers, and not much more.
    expect(s.bytes_in).toBeGreaterThanOrEqual(down);
    expect(s.bytes_in).toBeLessThan(down + 64 * 1024);
    expect(s.bytes_out).toBeGreaterThanOrEqual(up);
    expect(s.bytes_out).toBeLessThan(up + 64 * 1024);
  });

  it('carries several transfers at once intact, a slow reader among them', async () => {
    // One SSH read can hold packets for several local connections; each must get exactly its own.
    const t = await openTunnel();
    await t.waitFor(['up'], 10_000);
    const downs = [24, 24, 24].map((m, i) => ({ n: m * MiB, seed: `many-${i}` }));
    const slow = { n: 4 * MiB, seed: 'slow' };
    const ups = [8, 8].map((m, i) => ({ n: m * MiB, seed: `up-${i}` }));
    const [slowGot, ...rest] = await Promise.all([
      request(t.localPort, `/bytes?n=${slow.n}&seed=${slow.seed}`, { timeoutMs: 60_000, readDelayMs: 2 }),
      ...downs.map((d) => request(t.localPort, `/bytes?n=${d.n}&seed=${d.seed}`, { timeoutMs: 60_000 })),
      ...ups.map((u) => request(t.localPort, '/sha256', { method: 'POST', body: deterministicBytes(u.n, u.seed), timeoutMs: 60_000 })),
    ]);
    expect(slowGot!.sha256).toBe(expectedSha256(slow.n, slow.seed));
    downs.forEach((d, i) => {
      expect(rest[i]!.bytes).toBe(d.n);
      expect(rest[i]!.sha256).toBe(expectedSha256(d.n, d.seed));
    });
    ups.forEach((u, i) => expect(rest[downs.length + i]!.text).toBe(expectedSha256(u.n, u.seed)));
    expect(t.state).toBe('up');
    await t.stop();
  });

  it('opens in well under a second on loopback (5 tunnels, start() to up)', async () => {
    const times: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      const t = await openTunnel();
      await t.waitFor(['up'], 10_000);
      times.push(ms(t0));
      await t.stop();
    }
    const sorted = sortNum(times);
    figures['open (start() to up), 5 tunnels'] = `${times.join(', ')} ms (median ${sorted[2]} ms)`;
    expect(sorted[2]).toBeLessThan(5000);
  });

  it('listens on loopback only: stats().listen, and no answer on the machine\'s other addresses', async () => {
    const t = await openTunnel();
    await t.waitFor(['up'], 10_000);
    const bound = t.stats().listen;
    expect(bound).toContain(`127.0.0.1:${t.localPort}`);
    if (ipv6) expect(bound).toContain(`[::1]:${t.localPort}`);
    for (const a of bound) expect(a).toMatch(new RegExp(`^(127\\.0\\.0\\.1|\\[::1\\]):${t.localPort}$`));
    expect((await request(t.localPort, '/id')).text).toBe('box-a');
    if (ipv6) expect((await request(t.localPort, '/id', { host: '::1' })).text).toBe('box-a');

    const addresses = externalAddresses();
    if (addresses.length === 0) {
      console.log('loopback-only check: this machine has no non-loopback address; only stats().listen was checked');
      return;
    }
    // A wildcard listener shows which addresses are reachable at all, so a refusal means something.
    const control = net.createServer((s) => s.on('error', () => {}).destroy());
    await listen(control, await freePort(), ipv6 ? '::' : '0.0.0.0');
    cleanups.push(() => new Promise<void>((r) => control.close(() => r())));
    const controlPort = (control.address() as net.AddressInfo).port;
    let checked = 0;
    for (const addr of addresses) {
      if ((await tcpConnect(addr, controlPort)) !== 'connected') {
        console.log(`loopback-only check: ${addr} is not reachable even for a wildcard listener; skipped`);
        continue;
      }
      expect(await tcpConnect(addr, t.localPort), `connecting to ${addr}:${t.localPort}`).toBe('ECONNREFUSED');
      checked++;
    }
    expect(checked).toBeGreaterThan(0);
    expect(t.state).toBe('up');
  });

  it('heals by itself after sshd is SIGKILLed and restarted, holding its local port throughout', async () => {
    const t = await openTunnel();
    await t.waitFor(['up'], 10_000);
    const port = t.localPort;
    const hosts = ['127.0.0.1', '0.0.0.0', ...(ipv6 ? ['::1'] : [])];

    // Another program tries to take the port all through the outage.
    let probing = true;
    let probes = 0;
    const stolen: string[] = [];
    const prober = (async () => {
      while (probing) {
        for (const h of hosts) {
          if (await canBind(port, h)) stolen.push(h);
          probes++;
        }
        await sleep(50);
      }
    })();

    const killedAt = performance.now();
    await sshd.kill();
    await t.waitFor(['reconnecting'], 5000);
    const detectMs = ms(killedAt);
    // A request made during the outage is held, and answered once the link is back.
    const held = request(port, '/id', { timeoutMs: 20_000 });
    await sleep(2000);
    expect(t.state).toBe('reconnecting');
    expect(t.stats().last_error).toMatch(/retrying in/);

    await sshd.restart();
    const restartedAt = performance.now();
    await t.waitFor(['up'], 15_000);
    const upMs = ms(restartedAt);
    expect((await held).text).toBe('box-a');
    const heldMs = ms(restartedAt);
    expect((await request(port, '/id')).text).toBe('box-a');
    const trafficMs = ms(restartedAt);
    probing = false;
    await prober;

    figures['sshd killed -> reconnecting'] = `${detectMs} ms`;
    figures['sshd restarted -> up / held request answered / new request answered'] = `${upMs} / ${heldMs} / ${trafficMs} ms`;
    expect(stolen).toEqual([]);
    expect(probes).toBeGreaterThan(20);
    expect(t.stats().last_error).toBeNull();
  }, 45_000);

  it('leaves `up` within 15 s when sshd freezes (SIGSTOP), and recovers when it thaws', async () => {
    const t = await openTunnel();
    await t.waitFor(['up'], 10_000);
    await sshd.freeze();
    const frozenAt = performance.now();
    const state = await waitForState(t, (s) => s !== 'up', 'out of up', 15_000);
    const detectMs = ms(frozenAt);
    expect(state).toBe('reconnecting');
    expect(t.stats().last_error).toMatch(/keepalive|timed out/i);

    await sleep(1000);
    sshd.thaw();
    const thawedAt = performance.now();
    await t.waitFor(['up'], 25_000);
    const upMs = ms(thawedAt);
    expect((await request(t.localPort, '/id')).text).toBe('box-a');
    figures['sshd frozen -> left up'] = `${(detectMs / 1000).toFixed(1)} s (state ${state})`;
    figures['sshd thawed -> up'] = `${upMs} ms`;
  }, 60_000);

  it('refuses a changed host key with a message naming --reset-host-key, and does not retry', async () => {
    const pins = pinStore();
    const t = await openTunnel({ checkHostKey: pins });
    await t.waitFor(['up'], 10_000);
    expect([...pins.pins.values()]).toEqual([sshd.hostKeySha256()]);
    const pinned = sshd.hostKeySha256();

    sshd.regenerateHostKey();
    expect(sshd.hostKeySha256()).not.toBe(pinned);
    await sshd.restart();
    await t.waitFor(['failed'], 15_000);
    const err = t.stats().last_error ?? '';
    expect(err).toContain(`${sshd.host}:${sshd.port}`);
    expect(err).toMatch(/host key .* changed/i);
    expect(err).toContain(`tunnel ${t.instanceId} --reset-host-key`);
    expect([...pins.pins.values()]).toEqual([pinned]); // the pin was not overwritten

    // No retry loop: nothing changes, and sshd sees no further connection attempts.
    const since = t.stats().since;
    const attempts = sshd.connectionCount();
    await sleep(4000);
    expect(t.state).toBe('failed');
    expect(t.stats().since).toBe(since);
    expect(sshd.connectionCount()).toBe(attempts);
    // A local request is refused cleanly rather than hanging.
    await expect(request(t.localPort, '/id', { timeoutMs: 5000 })).rejects.toThrow(/socket hang up|ECONNRESET/);
  }, 45_000);

  it('reports remote_down when nothing listens on the remote port, keeps the SSH link, and turns up when the app starts', async () => {
    const appPort = await freePort();
    const t = await openTunnel({ remotePort: appPort });
    await t.waitFor(['remote_down'], 10_000);
    expect(t.stats().last_error).toMatch(new RegExp(`127\\.0\\.0\\.1:${appPort} .*refused`));
    // The link's one-off `true` session (it makes sshd turn TCP_NODELAY on) comes and goes: let it.
    let linkPids: number[] = [];
    for (let settled = false, tries = 0; !settled && tries < 20; tries++) {
      const before = sortNum(sshd.childPids());
      await sleep(500);
      linkPids = sortNum(sshd.childPids());
      settled = JSON.stringify(before) === JSON.stringify(linkPids);
    }
    expect(linkPids.length).toBeGreaterThan(0);
    expect(sshd.connectionCount()).toBe(1);

    // A local request fails cleanly (closed, not hung), and does not cost the SSH link.
    await expect(request(t.localPort, '/id', { timeoutMs: 5000 })).rejects.toThrow(/socket hang up|ECONNRESET/);
    await sleep(2000);
    expect(t.state).toBe('remote_down');
    expect(sortNum(sshd.childPids())).toEqual(linkPids);

    const late = await startOrigin({ name: 'late-app', port: appPort });
    cleanups.push(() => late.close());
    const startedAt = performance.now();
    await t.waitFor(['up'], 10_000);
    figures['remote app started -> up'] = `${ms(startedAt)} ms`;
    expect(t.stats().last_error).toBeNull();
    expect((await request(t.localPort, '/id')).text).toBe('late-app');
    // The same SSH connection all along: same sshd processes, one TCP connection in all.
    expect(sortNum(sshd.childPids())).toEqual(linkPids);
    expect(sshd.connectionCount()).toBe(1);

    // The app dies while the tunnel is up: the next request finds out, and it comes back by itself.
    await late.close();
    await expect(request(t.localPort, '/id', { timeoutMs: 5000 })).rejects.toThrow(/socket hang up|ECONNRESET/);
    await t.waitFor(['remote_down'], 5000);
    const again = await startOrigin({ name: 'late-app-2', port: appPort });
    cleanups.push(() => again.close());
    await t.waitFor(['up'], 10_000);
    expect((await request(t.localPort, '/id')).text).toBe('late-app-2');
    expect(sortNum(sshd.childPids())).toEqual(linkPids);
    expect(sshd.connectionCount()).toBe(1);
  }, 45_000);

  it('fails on refused authentication with a message about it, and does not retry', async () => {
    const stranger = sshd.addUserKey({ authorize: false });
    const t = await openTunnel({ keyPath: stranger });
    await t.waitFor(['failed'], 10_000);
    const err = t.stats().last_error ?? '';
    expect(err).toMatch(/authentication/i);
    expect(err).toContain(stranger);
    expect(err).toContain(t.instanceId);
    expect(sshd.connectionCount()).toBe(1);
    await sleep(3000);
    expect(t.state).toBe('failed');
    expect(sshd.connectionCount()).toBe(1);
  }, 30_000);

  it('works with an encrypted key decrypted once up front', async () => {
    const key = sshd.addUserKey({ passphrase: 'correct horse' });
    expect(() => loadPrivateKey(key)).toThrow(/encrypted/);
    const t = await openTunnel({ keyPath: key, passphrase: 'correct horse' });
    await t.waitFor(['up'], 10_000);
    expect((await request(t.localPort, '/id')).text).toBe('box-a');
  });

  it('reports port_conflict naming the port when another program holds the local port', async () => {
    const squatHosts = ['127.0.0.1', '0.0.0.0', ...(ipv6 ? ['::1'] : [])];
    for (const host of squatHosts) {
      const port = await freePort();
      const squatter = net.createServer((s) => s.on('error', () => {}).end('squatter\n'));
      await listen(squatter, port, host);
      cleanups.push(() => new Promise<void>((r) => squatter.close(() => r())));

      const t = await openTunnel({ localPort: port });
      expect(t.state, `squatter on ${host}`).toBe('port_conflict');
      const err = t.stats().last_error ?? '';
      expect(err).toContain(String(port));
      expect(err).toContain(`tunnel ${t.instanceId} --port`);
      expect(t.stats().listen).toEqual([]);
      // It never connected, and the squatter keeps its port.
      await sleep(300);
      expect(t.state).toBe('port_conflict');
      expect(sshd.connectionCount()).toBe(0);
      expect(await tcpConnect(host === '0.0.0.0' ? '127.0.0.1' : host, port)).toBe('connected');
      // The half it could bind (127.0.0.1 when only ::1 was taken) was given back.
      if (host === '::1') expect(await canBind(port, '127.0.0.1')).toBe(true);
    }
  });

  it('stop() frees the port and ends the link: when up, while reconnecting, and right after start()', async () => {
    const hosts = ['127.0.0.1', '0.0.0.0', ...(ipv6 ? ['::1'] : [])];
    // One at a time: probes of 127.0.0.1 and 0.0.0.0 running together would collide with each other.
    const freeEverywhere = async (port: number) => {
      for (const h of hosts) if (!(await canBind(port, h))) return false;
      return true;
    };

    // Up: the sshd side of the link goes away too.
    const a = await openTunnel();
    await a.waitFor(['up'], 10_000);
    expect(sshd.childPids().length).toBeGreaterThan(0);
    await a.stop();
    expect(a.state).toBe('stopped');
    expect(await freeEverywhere(a.localPort)).toBe(true);
    await eventually('sshd per-connection processes gone', () => sshd.childPids().length === 0, 5000);

    // Reconnecting: no attempt after stop(), even once sshd is back.
    const b = await openTunnel();
    await b.waitFor(['up'], 10_000);
    await sshd.kill();
    await b.waitFor(['reconnecting'], 5000);
    await b.stop();
    expect(await freeEverywhere(b.localPort)).toBe(true);
    const attempts = sshd.connectionCount();
    await sshd.restart();
    await sleep(2500);
    expect(sshd.connectionCount()).toBe(attempts);
    expect(b.state).toBe('stopped');

    // Stopped while start() is still binding: nothing stays bound, nothing connects.
    const c = await openTunnel({ start: false });
    const starting = c.start();
    const stopping = c.stop();
    await Promise.all([starting, stopping]);
    expect(c.state).toBe('stopped');
    await sleep(500);
    expect(await freeEverywhere(c.localPort)).toBe(true);
    expect(sshd.connectionCount()).toBe(attempts);
  }, 30_000);

  it('survives local clients that reset mid-transfer; the next request works', async () => {
    const t = await openTunnel();
    await t.waitFor(['up'], 10_000);
    const resets = await Promise.all(
      [1, 2, 3].map(
        (i) =>
          new Promise<number>((resolve, reject) => {
            const sock = net.connect(t.localPort, '127.0.0.1', () => {
              sock.write(`GET /bytes?n=${256 * MiB}&seed=r${i}&sha=0 HTTP/1.1\r\nHost: 127.0.0.1:${t.localPort}\r\n\r\n`);
            });
            const timer = setTimeout(() => reject(new Error('no data within 10 s')), 10_000);
            let got = 0;
            sock.on('data', (c: Buffer) => {
              got += c.length;
              if (got > i * MiB) {
                clearTimeout(timer);
                sock.resetAndDestroy();
                resolve(got);
              }
            });
            sock.on('error', (e) => {
              clearTimeout(timer);
              reject(e);
            });
          }),
      ),
    );
    for (const got of resets) expect(got).toBeGreaterThan(MiB);

    // Nothing lingers: the local sockets and the origin's connections (the channels) are closed.
    await eventually('local connections closed', () => t.stats().connections === 0, 5000);
    await eventually('origin connections closed', () => origin.openConnections === 0, 5000);
    expect(t.state).toBe('up');
    const n = 4 * MiB;
    const after = await request(t.localPort, `/bytes?n=${n}&seed=after`);
    expect(after.sha256).toBe(expectedSha256(n, 'after'));
    expect(t.state).toBe('up');
  });
});
