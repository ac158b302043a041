/**
 * Fault drills through the built CLI (and MCP server), the way a user meets faults: sshd killed
 * in the middle of a download, the supervisor killed with kill -9, another program grabbing the
 * local port during an outage, a read-only or full VAI_HOME, many clients at once, and a
 * thousand short connections through one tunnel.
 *
 * The ssh-provider drills run against a real OpenSSH sshd (one per test) in front of an HTTP
 * origin. Every wait is bounded, every process is stopped by PID, VAI_HOME is temporary and the
 * ports are high. Frozen sshd: see test/integration/tunnel.test.ts; corrupt state file: see
 * test/e2e/cli-local.test.ts and test/unit/state.test.ts.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { InstanceView, TunnelView } from '../../core/api/api.js';
import { hasIpv6Loopback } from '../../core/tunnels/ports.js';
import { makeSandbox, ROOT, supervisorPidsFor, waitUntil, type RunResult, type Sandbox } from '../helpers/cli.js';
import { mountSupport, mountTmpfs, type Tmpfs } from '../helpers/mounts.js';
import { canBind, httpGet, instanceIdOfPage } from '../helpers/net.js';
import { expectedSha256, startOrigin, type Origin } from '../helpers/origin.js';
import { listeningAddresses } from '../helpers/sockets.js';
import { startSshd, type SshdHandle } from '../helpers/sshd.js';

const MiB = 1024 * 1024;
const SERVER = path.join(ROOT, 'dist', 'server', 'index.js');

// What `--json` prints: the CLI prints core's views as they are.
type TunnelJson = TunnelView;
type InstanceJson = InstanceView;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function killPids(pids: number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

interface Download {
  status: number;
  bytes: number;
  /** The body arrived complete (every byte of its content-length). */
  complete: boolean;
  /** sha256 (hex) of the bytes received. */
  sha256: string;
  error?: string;
}

/**
 * A GET on a fresh connection that pauses reading after `pauseAfter` bytes (so the transfer is
 * surely still in flight when the fault is injected) until `resume()`. `done` settles with what
 * the client saw, or rejects when nothing more happens for `idleMs` (a hang).
 */
function pausedDownload(port: number, pathname: string, pauseAfter: number, idleMs = 10_000) {
  let res: http.IncomingMessage | undefined;
  let markPaused!: () => void;
  const paused = new Promise<void>((r) => (markPaused = r));
  const done = new Promise<Download>((resolve, reject) => {
    let bytes = 0;
    let status = 0;
    let settled = false;
    let idle: NodeJS.Timeout | undefined;
    let pausedOnce = false;
    const hash = createHash('sha256');
    const finish = (d: Omit<Download, 'status' | 'bytes' | 'sha256'>) => {
      if (settled) return;
      settled = true;
      clearTimeout(idle);
      resolve({ status, bytes, sha256: hash.digest('hex'), ...d });
    };
    const arm = () => {
      clearTimeout(idle);
      idle = setTimeout(() => {
        if (settled || res?.isPaused()) return arm(); // a pause of ours is not a hang
        settled = true;
        req.destroy();
        reject(new Error(`GET ${pathname}: no progress for ${idleMs} ms after ${bytes} bytes (the client hangs)`));
      }, idleMs);
    };
    const req = http.get({ host: '127.0.0.1', port, path: pathname, agent: false }, (r) => {
      res = r;
      status = r.statusCode ?? 0;
      r.on('data', (c: Buffer) => {
        bytes += c.length;
        hash.update(c);
        arm();
        if (bytes >= pauseAfter && !r.isPaused() && !pausedOnce) {
          pausedOnce = true;
          r.pause();
          markPaused();
        }
      });
      r.on('end', () => finish({ complete: r.complete }));
      r.on('error', (e) => finish({ complete: false, error: e.message }));
      r.on('close', () => finish({ complete: r.complete, error: r.complete ? undefined : 'closed before the end of the body' }));
    });
    req.on('error', (e) => finish({ complete: false, error: e.message }));
    arm();
  });
  return { paused, done, resume: () => res?.resume() };
}

/** A whole GET on a fresh connection, as `pausedDownload` reports it. */
const download = (port: number, pathname: string) => pausedDownload(port, pathname, Infinity).done;

/** Tries to listen on host:port as another program would; 'ok' or the error code. */
function tryListen(port: number, host: string): Promise<string> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    s.listen({ port, host, exclusive: true }, () => s.close(() => resolve('ok')));
  });
}

/** True when the output carries a JavaScript stack trace. */
const hasStack = (r: RunResult) => /\n\s+at\s+\S+.*[(:]\d+/.test(r.stdout + r.stderr);

/** `waitUntil`, with a message built when it times out (so it shows the last values seen). */
async function eventually(what: () => string, check: () => Promise<boolean>, timeoutMs: number, everyMs = 200): Promise<void> {
  try {
    await waitUntil('', check, timeoutMs, everyMs);
  } catch (err) {
    if (!/^timed out/.test((err as Error).message)) throw err; // the check itself failed
    throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what()}`);
  }
}

function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

// ---------------------------------------------------------------------------------------------

describe('fault drills: the ssh provider through the CLI, against a real sshd', () => {
  let sb: Sandbox;
  let origin: Origin;
  let sshd: SshdHandle;
  let boxes = 0;

  /** A config that registers this test's sshd as an ssh box. */
  const boxConfig = () =>
    sb.writeFile(`box-${++boxes}.json`, {
      provider: 'ssh',
      instance_config: { ssh_host: sshd.host, ssh_port: sshd.port, ssh_user: sshd.user, ssh_key_path: sshd.userKeyPath, remote_port: origin.port, check_comfy: false },
    });

  /** Registers the sshd as an ssh box (`create --json`) and returns its tunnel, up. */
  async function createBox(): Promise<TunnelJson> {
    const r = await sb.cli(['create', boxConfig(), '--json'], { timeoutMs: 20_000 });
    expect(r.code, r.stderr).toBe(0);
    const [inst] = JSON.parse(r.stdout) as InstanceJson[];
    expect(inst!.tunnel?.state).toBe('up');
    return inst!.tunnel!;
  }

  async function tunnelOf(id: string): Promise<TunnelJson | undefined> {
    return (await sb.json<TunnelJson[]>(['tunnel', '--list', '--json'])).find((t) => t.instance_id === id);
  }

  /** Polls `tunnel --list --json` until the tunnel is in one of `states`. */
  async function waitForState(id: string, states: string[], timeoutMs: number): Promise<TunnelJson> {
    let t: TunnelJson | undefined;
    await eventually(() => `${id} in state ${states.join('/')} (last seen ${t?.state}: ${t?.last_error})`, async () => {
      t = await tunnelOf(id);
      return !!t && states.includes(t.state);
    }, timeoutMs, 100);
    return t!;
  }

  beforeAll(async () => {
    sb = makeSandbox();
    origin = await startOrigin({ name: 'drill-box' });
  });
  beforeEach(async () => {
    sshd = await startSshd();
  });
  afterEach(async () => {
    await sb.cli(['destroy', '--all', '--yes'], { timeoutMs: 20_000 }).catch(() => undefined);
    await sshd.stop();
  });
  afterAll(async () => {
    await sb.cleanup();
    await origin.close();
  });

  it('sshd killed mid-download: the download fails visibly (no hang, no silent truncation) and the same URL works once sshd is back', async () => {
    const t = await createBox();
    const n = 256 * MiB;
    const dl = pausedDownload(t.local_port, `/bytes?n=${n}&seed=a&sha=0`, 2 * MiB);
    await dl.paused; // the transfer is in flight
    await sshd.kill();
    dl.resume();
    const got = await dl.done;
    console.log(`sshd SIGKILLed mid-download: the client got ${(got.bytes / MiB).toFixed(1)} of ${n / MiB} MiB, then: ${got.error}`);
    expect(got.status).toBe(200);
    expect(got.complete).toBe(false);
    expect(got.bytes).toBeLessThan(n);
    expect(got.error).toBeTruthy();

    await sshd.restart();
    // New connections through the same local port work again, without any command.
    await waitUntil('a new request through the same port answers', async () => {
      const r = await httpGet(t.local_port, '/id', 2000).catch(() => undefined);
      return r?.body === 'drill-box';
    }, 15_000, 200);
    const whole = 4 * MiB;
    expect(await download(t.local_port, `/bytes?n=${whole}&seed=a2`)).toMatchObject({ status: 200, complete: true, bytes: whole, sha256: expectedSha256(whole, 'a2') });
    const now = await waitForState(t.instance_id, ['up'], 5000);
    expect(now.local_port).toBe(t.local_port);
  });

  it('supervisor kill -9 mid-download: the download fails visibly, and the next command brings the tunnel back on the same port', async () => {
    const t = await createBox();
    const [pid] = sb.supervisorPids();
    expect(pid).toBeDefined();
    const n = 256 * MiB;
    const dl = pausedDownload(t.local_port, `/bytes?n=${n}&seed=b&sha=0`, 2 * MiB);
    await dl.paused;
    process.kill(pid!, 'SIGKILL');
    dl.resume();
    const got = await dl.done;
    console.log(`supervisor SIGKILLed mid-download: the client got ${(got.bytes / MiB).toFixed(1)} of ${n / MiB} MiB, then: ${got.error}`);
    expect(got.complete).toBe(false);
    expect(got.bytes).toBeLessThan(n);
    expect(got.error).toBeTruthy();
    await waitUntil('the supervisor is gone', () => sb.supervisorPids().length === 0, 5000);

    // The next command (any) starts a new supervisor, which restores the tunnel on its port.
    const back = await waitForState(t.instance_id, ['up'], 10_000);
    expect(back.local_port).toBe(t.local_port);
    expect(sb.supervisorPids()).toHaveLength(1);
    expect(sb.supervisorPids()[0]).not.toBe(pid);
    expect((await httpGet(t.local_port, '/id')).body).toBe('drill-box');
    const whole = 4 * MiB;
    expect(await download(t.local_port, `/bytes?n=${whole}&seed=b2`)).toMatchObject({ status: 200, complete: true, bytes: whole, sha256: expectedSha256(whole, 'b2') });
  });

  it('while sshd is down the local port stays held: another program cannot take it, and traffic resumes on the same port', async () => {
    const t = await createBox();
    const port = t.local_port;
    await sshd.kill();
    await waitForState(t.instance_id, ['reconnecting', 'connecting'], 10_000);

    const hosts = ['127.0.0.1', '0.0.0.0', ...((await hasIpv6Loopback()) ? ['::1'] : [])];
    for (let round = 0; round < 5; round++) {
      for (const host of hosts) expect(await tryListen(port, host), `listening on ${host}:${port} during the outage`).toBe('EADDRINUSE');
      expect((await tunnelOf(t.instance_id))!.local_port).toBe(port);
      await sleep(200);
    }
    // A request made during the outage is held, and answered once sshd is back.
    const held = httpGet(port, '/id', 20_000);
    await sleep(300);
    await sshd.restart();
    expect((await held).body).toBe('drill-box');
    const up = await waitForState(t.instance_id, ['up'], 10_000);
    expect(up.local_port).toBe(port);
    expect(up.url).toBe(`http://localhost:${port}`);
    expect((await httpGet(port, '/id')).body).toBe('drill-box');
  });

  it('1,000 short connections through one tunnel leave no file descriptors or connections behind', async () => {
    const t = await createBox();
    const [pid] = sb.supervisorPids();
    expect(pid).toBeDefined();
    // Warm up (first channel, lazy handles), then let the CLI's control connection go away.
    expect((await httpGet(t.local_port, '/small')).status).toBe(200);
    await waitUntil('no open connections', async () => (await tunnelOf(t.instance_id))!.connections === 0, 5000, 100);
    await sleep(300);
    const baseline = fdCount(pid!);

    const total = 1000;
    const concurrency = 8;
    let next = 0;
    let ok = 0;
    const worker = async () => {
      while (next < total) {
        next++;
        const r = await httpGet(t.local_port, '/small', 10_000);
        if (r.status === 200 && r.body.length === 1024) ok++;
      }
    };
    const t0 = Date.now();
    await Promise.all(Array.from({ length: concurrency }, worker));
    console.log(`1000 short connections through one tunnel (concurrency ${concurrency}): ${Date.now() - t0} ms; supervisor fds before ${baseline}, right after ${fdCount(pid!)}`);
    expect(ok).toBe(total);

    let fds = 0;
    let conns = -1;
    await eventually(() => `fds back near ${baseline} (last seen ${fds}), 0 open connections (last seen ${conns}), origin idle (now ${origin.openConnections})`, async () => {
      await sleep(200); // the CLI's own control connection closes first
      fds = fdCount(pid!);
      conns = (await tunnelOf(t.instance_id))!.connections;
      return fds <= baseline + 2 && conns === 0 && origin.openConnections === 0;
    }, 10_000, 200);
    expect(fds).toBeLessThanOrEqual(baseline + 2);
    expect(conns).toBe(0);
    expect((await tunnelOf(t.instance_id))!.state).toBe('up');
  });

  it('destroying a box that is still coming up (its sshd is down) closes its tunnel and frees its port for good', async () => {
    await sshd.kill();
    const r = await sb.cli(['create', boxConfig(), '--no-wait', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const [inst] = JSON.parse(r.stdout) as InstanceJson[];
    const t = await waitForState(inst!.instance_id, ['connecting', 'reconnecting'], 10_000);
    const d = await sb.cli(['destroy', inst!.instance_id, '--yes']);
    expect(d.code, d.stderr).toBe(0);
    await sleep(1500); // a provisioning watch or retry timer that outlived the destroy acts within this
    const [pid] = sb.supervisorPids();
    expect.soft(listeningAddresses(pid!).filter((a) => a.endsWith(`:${t.local_port}`)), 'listeners left on the port').toEqual([]);
    expect.soft(await canBind(t.local_port), `port ${t.local_port} free`).toBe(true);
    const status = await sb.json<{ tunnels: number }>(['daemon', 'status', '--json']);
    const listed = await sb.json<TunnelJson[]>(['tunnel', '--list', '--json']);
    expect.soft(status.tunnels, 'tunnel records nobody can see or stop').toBe(listed.length);
    // Nothing keeps knocking on the box once it is back.
    await sshd.restart();
    const seen = sshd.connectionCount();
    await sleep(2500);
    expect.soft(sshd.connectionCount(), 'connection attempts after the destroy').toBe(seen);
  });
});

// ---------------------------------------------------------------------------------------------

const mounts = mountSupport();
if (!mounts.ok) console.log(`skipping the read-only and full VAI_HOME drills: ${mounts.reason}`);

describe.skipIf(!mounts.ok)('fault drills: a read-only or full VAI_HOME', () => {
  let fs: Tmpfs | undefined;
  let sb: Sandbox | undefined;
  let home = '';
  const cleanups: (() => Promise<unknown>)[] = [];

  /** A sandbox whose VAI_HOME lives on a fresh tmpfs of `size` bytes. */
  function onTmpfs(size: number): Sandbox {
    fs = mountTmpfs(size);
    home = path.join(fs.dir, 'home');
    sb = makeSandbox({ VAI_HOME: home });
    return sb;
  }

  /** Runs a command that must fail; a command still waiting after 12 s is reported as such. */
  async function failing(s: Sandbox, args: string[]): Promise<RunResult & { ms: number }> {
    const t0 = Date.now();
    const r = await s.cli(args, { timeoutMs: 12_000 }).catch((err: Error) => ({ code: -1, stdout: '', stderr: `(still running after 12 s, killed) ${err.message}` }));
    return { ...r, ms: Date.now() - t0 };
  }

  /** The expectations for any command that cannot work on this VAI_HOME. */
  function expectClearFailure(r: RunResult & { ms: number }, what: RegExp): void {
    expect(r.ms, `fails at once instead of waiting: ${r.stderr}`).toBeLessThan(10_000);
    expect(r.code, `exit code; stderr: ${r.stderr}`).toBeGreaterThan(0);
    expect(r.stdout, 'stdout stays empty with --json').toBe('');
    expect(r.stderr, 'the message names VAI_HOME').toContain(home);
    expect(r.stderr, 'the message says what is wrong').toMatch(what);
    expect(hasStack(r), `no stack trace: ${r.stderr}`).toBe(false);
  }

  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
    fs?.unfill();
    try {
      fs?.remount('rw');
    } catch {
      // not mounted
    }
    // Only a running supervisor needs a destroy and a stop (a command would start one).
    if (sb && supervisorPidsFor(home).length > 0) {
      await sb.cli(['destroy', '--all', '--yes'], { timeoutMs: 20_000 }).catch(() => undefined);
      await sb.cli(['daemon', 'stop'], { timeoutMs: 15_000 }).catch(() => undefined);
    }
    killPids(supervisorPidsFor(home));
    fs?.unmount();
    if (sb) rmSync(path.dirname(sb.home), { recursive: true, force: true });
    fs = undefined;
    sb = undefined;
  });

  it('a VAI_HOME that turned read-only: commands fail at once naming it and "read-only", and the state is intact once it is writable again', async () => {
    const s = onTmpfs(16 * MiB);
    const cfg = s.writeFile('local.json', { provider: 'local' });
    const [made] = await s.json<InstanceJson[]>(['create', cfg, '--json']);
    expect(made!.status).toBe('ready');
    expect((await s.cli(['daemon', 'stop'])).code).toBe(0);

    fs!.remount('ro');
    for (const args of [['list', '--json'], ['tunnel', '--list', '--json'], ['create', cfg, '--json']]) {
      expectClearFailure(await failing(s, args), /read-only/i);
    }

    // Writable again: the one box is there, whole, and its tunnel comes back on its port.
    fs!.remount('rw');
    let list: InstanceJson[] = [];
    await waitUntil('the box is ready again', async () => {
      list = await s.json<InstanceJson[]>(['list', '--json']);
      return list[0]?.status === 'ready' && list[0]?.tunnel?.state === 'up';
    }, 10_000, 200);
    expect(list.map((i) => i.instance_id)).toEqual([made!.instance_id]);
    expect(list[0]!.tunnel!.local_port).toBe(made!.tunnel!.local_port);
    expect(instanceIdOfPage((await httpGet(made!.tunnel!.local_port)).body)).toBe(made!.instance_id);
  });

  it('a VAI_HOME that does not exist yet on a read-only filesystem: the error names it and says "read-only"', async () => {
    const s = onTmpfs(1 * MiB);
    fs!.remount('ro');
    expectClearFailure(await failing(s, ['list', '--json']), /read-only/i);
    expect(existsSync(home)).toBe(false);
  });

  it('the disk fills while tunnels run: tunnels keep working, creates fail naming VAI_HOME and "no space", and nothing half-written is left', async () => {
    const s = onTmpfs(1 * MiB);
    // Two kinds of box: a local one (writes its keys into VAI_HOME) and an ssh one (only state).
    const sshd = await startSshd();
    cleanups.push(() => sshd.stop());
    const origin = await startOrigin({ name: 'full-disk-box' });
    cleanups.push(() => origin.close());
    const localCfg = s.writeFile('local.json', { provider: 'local' });
    const sshCfg = s.writeFile('ssh.json', {
      provider: 'ssh',
      instance_config: { ssh_host: sshd.host, ssh_port: sshd.port, ssh_user: sshd.user, ssh_key_path: sshd.userKeyPath, remote_port: origin.port, check_comfy: false },
    });
    const [first] = await s.json<InstanceJson[]>(['create', localCfg, '--json']);
    expect(first!.status).toBe('ready');
    const port = first!.tunnel!.local_port;

    fs!.fill();
    // The running tunnel does not care about the disk.
    expect(instanceIdOfPage((await httpGet(port)).body)).toBe(first!.instance_id);
    const reported: string[] = [];
    for (const cfg of [localCfg, sshCfg]) {
      const r = await failing(s, ['create', cfg, '--json']);
      if (r.code === 0) reported.push(...(JSON.parse(r.stdout) as InstanceJson[]).map((i) => i.instance_id));
      const kind = path.basename(cfg);
      expect.soft(r.code, `${kind}: a create on a full disk must fail with a message, not report success or hang (stdout ${r.stdout.slice(0, 120)}... stderr ${r.stderr.slice(0, 300)})`).toBeGreaterThan(0);
      if (r.code > 0) {
        expect.soft(r.stderr, `${kind}: the message names VAI_HOME`).toContain(home);
        expect.soft(r.stderr, `${kind}: the message says the disk is full`).toMatch(/no space|disk is full|filesystem is full/i);
        expect.soft(hasStack(r), `${kind}: no stack trace: ${r.stderr}`).toBe(false);
      }
    }
    expect(instanceIdOfPage((await httpGet(port)).body)).toBe(first!.instance_id);
    expect(supervisorPidsFor(home), 'the supervisor survives a full disk').toHaveLength(1);

    // Space again, and a restart that reads everything back from disk: each record is either
    // fully there (ready, its tunnel up) or not there; every create that reported success is there.
    fs!.unfill();
    expect((await s.cli(['daemon', 'stop'])).code).toBe(0);
    let list: InstanceJson[] = [];
    await waitUntil('every recorded box ready again', async () => {
      list = await s.json<InstanceJson[]>(['list', '--json']);
      return list.every((i) => i.status === 'ready' && i.tunnel?.state === 'up');
    }, 10_000, 200);
    const ids = list.map((i) => i.instance_id);
    expect(ids).toContain(first!.instance_id);
    for (const id of reported) expect(ids, `${id} was reported created, so it must survive a restart`).toContain(id);
    for (const i of list) {
      const page = await httpGet(i.tunnel!.local_port);
      expect(i.provider === 'ssh' ? page.body : instanceIdOfPage(page.body)).toBe(i.provider === 'ssh' ? 'full-disk-box' : i.instance_id);
    }
    expect(readdirSync(home).filter((f) => f.includes('unreadable'))).toEqual([]);
  });

  it('a full disk with no supervisor running: the next command fails at once naming VAI_HOME and "no space", and the state survives', async () => {
    const s = onTmpfs(1 * MiB);
    const cfg = s.writeFile('local.json', { provider: 'local' });
    const [made] = await s.json<InstanceJson[]>(['create', cfg, '--json']);
    expect((await s.cli(['daemon', 'stop'])).code).toBe(0);

    fs!.fill();
    expectClearFailure(await failing(s, ['tunnel', '--list', '--json']), /no space|disk is full|filesystem is full/i);

    fs!.unfill();
    let list: InstanceJson[] = [];
    await waitUntil('the box is ready again', async () => {
      list = await s.json<InstanceJson[]>(['list', '--json']);
      return list[0]?.tunnel?.state === 'up';
    }, 10_000, 200);
    expect(list.map((i) => i.instance_id)).toEqual([made!.instance_id]);
    expect(readdirSync(home).filter((f) => f.includes('unreadable')), 'a full disk is not an unreadable state file').toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------

describe('fault drills: many clients at once', () => {
  let sb: Sandbox;
  const servers: { client: Client; transport: StdioClientTransport }[] = [];

  beforeAll(() => {
    sb = makeSandbox();
  });
  afterAll(async () => {
    for (const s of servers) await s.transport.close().catch(() => undefined);
    await sb.cleanup();
  });

  it('20 CLI processes and 2 MCP servers creating local boxes at once: no lost record, no shared port, each URL reaches its own box', async () => {
    const cfg = sb.writeFile('local.json', { provider: 'local' });
    const t0 = Date.now();
    // The MCP servers connect first (a server starts no supervisor until its first tool call).
    for (let i = 0; i < 2; i++) {
      const transport = new StdioClientTransport({ command: process.execPath, args: [SERVER], env: sb.env as Record<string, string>, stderr: 'ignore', cwd: ROOT });
      const client = new Client({ name: `drill-${i}`, version: '0' });
      await client.connect(transport);
      servers.push({ client, transport });
    }
    const cli = Array.from({ length: 20 }, () => sb.cli(['create', cfg, '--json'], { timeoutMs: 28_000 }));
    const mcp = servers.flatMap(({ client }, i) =>
      [0, 1].map((k) => client.callTool({ name: 'create_instance', arguments: { provider: 'local', request_id: `drill-${i}-${k}`, wait_s: 25 } }, undefined, { timeout: 28_000 }) as Promise<CallToolResult>));
    const [cliResults, mcpResults] = await Promise.all([Promise.all(cli), Promise.all(mcp)]);
    console.log(`20 CLI creates + 4 MCP creates at once: all answered in ${Date.now() - t0} ms`);

    const made: { id: string; port: number }[] = [];
    for (const r of cliResults) {
      expect(r.code, r.stderr).toBe(0);
      const [inst] = JSON.parse(r.stdout) as InstanceJson[];
      expect(inst!.status).toBe('ready');
      made.push({ id: inst!.instance_id, port: inst!.tunnel!.local_port });
    }
    for (const r of mcpResults) {
      expect(r.isError, JSON.stringify(r.content)).toBeFalsy();
      const [inst] = (r.structuredContent as { instances: InstanceJson[] }).instances;
      expect(inst!.status).toBe('ready');
      made.push({ id: inst!.instance_id, port: inst!.tunnel!.local_port });
    }
    expect(made).toHaveLength(24);
    expect(new Set(made.map((m) => m.id)).size).toBe(24);
    expect(new Set(made.map((m) => m.port)).size).toBe(24);
    // Clients that found no socket each started a supervisor; all but the lock's holder leave.
    await waitUntil('the supervisors that lost the lock have exited', () => sb.supervisorPids().length === 1, 15_000, 100);

    // What the CLI lists is what the callers were told: nothing lost, nothing extra.
    const byId = (a: { id: string }, b: { id: string }) => a.id.localeCompare(b.id);
    const listed = await sb.json<InstanceJson[]>(['list', '--json']);
    expect(listed.map((i) => ({ id: i.instance_id, port: i.tunnel?.local_port })).sort(byId)).toEqual([...made].sort(byId));
    const tunnels = await sb.json<TunnelJson[]>(['tunnel', '--list', '--json']);
    expect(tunnels.map((t) => ({ id: t.instance_id, port: t.local_port })).sort(byId)).toEqual([...made].sort(byId));
    expect(tunnels.every((t) => t.state === 'up')).toBe(true);
    for (const m of made) expect(instanceIdOfPage((await httpGet(m.port)).body), `URL of ${m.id}`).toBe(m.id);
  });
});
