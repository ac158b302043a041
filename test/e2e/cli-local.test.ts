/**
 * End to end through the built `vai-mcp-cli` with the `local` simulator: what a user does after
 * `vai-mcp-cli demo`, and what survives when the supervisor is killed.
 */
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SupervisorClient } from '../../core/control/client.js';
import { makeSandbox, waitUntil, type Sandbox } from '../helpers/cli.js';
import { canBind, httpGet, instanceIdOfPage } from '../helpers/net.js';

interface TunnelJson {
  instance_id: string;
  provider: string;
  local_port: number;
  url: string;
  remote_port: number;
  ssh_host: string;
  ssh_port: number;
  state: string;
  last_error: string | null;
  created_at: string;
}
interface InstanceJson {
  instance_id: string;
  provider: string;
  status: string;
  label: string;
  tunnel: TunnelJson | null;
}

describe('vai-mcp-cli with the local simulator', () => {
  let sb: Sandbox;
  beforeEach(() => {
    sb = makeSandbox();
  });
  afterEach(async () => {
    await sb.cleanup();
  });

  it('demo prints three URLs that each reach their own box and keep working after it exits', async () => {
    const r = await sb.cli(['demo']);
    expect(r.code, r.stderr).toBe(0);
    const urls = [...r.stdout.matchAll(/(local-\d+)\s+(http:\/\/localhost:(\d+))/g)].map((m) => ({ id: m[1]!, url: m[2]!, port: Number(m[3]) }));
    expect(urls).toHaveLength(3);
    expect(urls.map((u) => u.port)).toEqual([sb.basePort, sb.basePort + 1, sb.basePort + 2]);
    // The command has exited; each URL still answers, with its own instance.
    const seen = new Set<string>();
    for (const u of urls) {
      const page = await httpGet(u.port);
      expect(page.status).toBe(200);
      expect(instanceIdOfPage(page.body)).toBe(u.id);
      seen.add(instanceIdOfPage(page.body)!);
    }
    expect(seen.size).toBe(3);

    const tunnels = await sb.json<TunnelJson[]>(['tunnel', '--list', '--json']);
    expect(tunnels).toHaveLength(3);
    for (const t of tunnels) {
      expect(typeof t.instance_id).toBe('string');
      expect(t.provider).toBe('local');
      expect(typeof t.local_port).toBe('number');
      expect(t.url).toBe(`http://localhost:${t.local_port}`);
      expect(t.remote_port).toBe(18188);
      expect(t.ssh_host).toBe('127.0.0.1');
      expect(typeof t.ssh_port).toBe('number');
      expect(t.state).toBe('up');
      expect(new Date(t.created_at).toISOString()).toBe(t.created_at);
    }
    const list = await sb.json<InstanceJson[]>(['list', '--json']);
    expect(list.map((i) => [i.instance_id, i.status, i.provider])).toEqual([
      ['local-1', 'ready', 'local'], ['local-2', 'ready', 'local'], ['local-3', 'ready', 'local'],
    ]);
    for (const i of list) expect(i.label).toMatch(/^vai-mcp:/);
  });

  it('tunnel --stop, --stop-all and destroy free their ports; tunnel <id> re-opens', async () => {
    const made = await sb.json<InstanceJson[]>(['create', '--count', '3', '--json', sb.writeFile('config-1.json', { provider: 'local' })]);
    expect(made.map((m) => m.status)).toEqual(['ready', 'ready', 'ready']);
    const [a, b, c] = made.map((m) => m.tunnel!);

    const stop = await sb.cli(['tunnel', '--stop', a!.instance_id]);
    expect(stop.code, stop.stderr).toBe(0);
    expect(await canBind(a!.local_port)).toBe(true);
    await expect(httpGet(a!.local_port, '/', 2000)).rejects.toThrow();
    let tunnels = await sb.json<TunnelJson[]>(['tunnel', '--list', '--json']);
    expect(tunnels.map((t) => t.instance_id)).toEqual([b!.instance_id, c!.instance_id]);
    // The box itself is still there, without a tunnel.
    const listed = await sb.json<InstanceJson[]>(['list', '--json']);
    expect(listed.find((i) => i.instance_id === a!.instance_id)?.tunnel).toBeNull();

    // Re-open: the lowest free port is the one just freed.
    const reopened = await sb.json<TunnelJson>(['tunnel', a!.instance_id, '--json']);
    expect(reopened.state).toBe('up');
    expect(reopened.local_port).toBe(a!.local_port);
    expect(instanceIdOfPage((await httpGet(reopened.local_port)).body)).toBe(a!.instance_id);

    const all = await sb.cli(['tunnel', '--stop-all']);
    expect(all.code, all.stderr).toBe(0);
    for (const t of [a!, b!, c!]) expect(await canBind(t.local_port)).toBe(true);
    tunnels = await sb.json<TunnelJson[]>(['tunnel', '--list', '--json']);
    expect(tunnels).toEqual([]);

    await sb.json(['tunnel', b!.instance_id, '--json']);
    const d = await sb.cli(['destroy', b!.instance_id, '--yes']);
    expect(d.code, d.stderr).toBe(0);
    expect(await canBind(b!.local_port)).toBe(true);
    const after = await sb.json<InstanceJson[]>(['list', '--json']);
    expect(after.map((i) => i.instance_id)).toEqual([a!.instance_id, c!.instance_id]);
  });

  it('a kill -9 of the supervisor: the next command restores every tunnel on its old port within 5 s, and a port taken meanwhile is a port_conflict', async () => {
    await sb.json(['create', '--count', '3', '--json', sb.writeFile('config-2.json', { provider: 'local' })]);
    const far = sb.basePort + 37; // an explicit port far from the base: not re-derivable from it
    const moved = await sb.json<TunnelJson>(['tunnel', 'local-2', '--port', String(far), '--json']);
    expect(moved.local_port).toBe(far);
    const before = await sb.json<TunnelJson[]>(['tunnel', '--list', '--json']);
    const ports = Object.fromEntries(before.map((t) => [t.instance_id, t.local_port]));
    expect(ports).toEqual({ 'local-1': sb.basePort, 'local-2': far, 'local-3': sb.basePort + 2 });

    const [pid] = sb.supervisorPids();
    expect(pid).toBeDefined();
    process.kill(pid!, 'SIGKILL');
    await waitUntil('the supervisor is gone', () => sb.supervisorPids().length === 0, 5000);
    expect((await sb.cli(['daemon', 'status'])).code).toBe(1);

    // Another program takes local-3's port during the outage.
    const squatter = net.createServer();
    await new Promise<void>((r) => squatter.listen(ports['local-3'], '127.0.0.1', () => r()));
    try {
      const t0 = Date.now();
      let now: TunnelJson[] = [];
      await waitUntil('local-1 and local-2 up on their old ports', async () => {
        now = await sb.json<TunnelJson[]>(['tunnel', '--list', '--json']);
        return now.filter((t) => t.state === 'up').length === 2;
      }, 5000, 100);
      const restoreMs = Date.now() - t0;
      console.log(`restore after kill -9: all tunnels up ${restoreMs} ms after the next command started`);
      expect(Object.fromEntries(now.map((t) => [t.instance_id, t.local_port]))).toEqual(ports);
      const conflict = now.find((t) => t.instance_id === 'local-3')!;
      expect(conflict.state).toBe('port_conflict');
      expect(conflict.last_error).toContain(String(ports['local-3']));
      expect(conflict.last_error).toContain('--port');
      expect(sb.supervisorPids()).toHaveLength(1);
      expect(sb.supervisorPids()[0]).not.toBe(pid);
      for (const id of ['local-1', 'local-2']) {
        expect(instanceIdOfPage((await httpGet(ports[id])).body)).toBe(id);
      }
      // Opening it again without a port is still a conflict: never a silent move.
      const again = await sb.cli(['tunnel', 'local-3']);
      expect(again.code).toBe(1);
      expect(again.stderr).toContain(String(ports['local-3']));
      // The user moves it explicitly.
      const fixed = await sb.json<TunnelJson>(['tunnel', 'local-3', '--port', String(sb.basePort + 40), '--json']);
      expect(fixed.state).toBe('up');
      expect(instanceIdOfPage((await httpGet(sb.basePort + 40)).body)).toBe('local-3');
    } finally {
      squatter.close();
    }
  });

  it('a port another program took heals by itself: shown as taken meanwhile, up on the same port within 5 s of it being free', async () => {
    const [made] = await sb.json<InstanceJson[]>(['create', '--json', sb.writeFile('heal.json', { provider: 'local' })]);
    const port = made!.tunnel!.local_port;
    expect((await sb.cli(['daemon', 'stop'])).code).toBe(0);
    const squatter = net.createServer((s) => s.end());
    await new Promise<void>((r) => squatter.listen(port, '127.0.0.1', () => r()));
    let freed = false;
    try {
      let t: TunnelJson | undefined;
      await waitUntil('port_conflict after the restart', async () => {
        t = (await sb.json<TunnelJson[]>(['tunnel', '--list', '--json']))[0];
        return t?.state === 'port_conflict';
      }, 10_000, 200);
      expect(t!.url).toBe(`http://localhost:${port}`);
      expect(t!.last_error).toContain(`${port} is taken by another program`);
      expect(t!.last_error).toContain('keeps trying');
      const table = await sb.cli(['tunnel', '--list']);
      expect(table.stdout).toContain(`http://localhost:${port} (taken by another program)`);
      const box = (await sb.json<(InstanceJson & { status_message: string })[]>(['list', '--json']))[0]!;
      expect(box.status_message).toContain(`${port} is taken by another program`);
      // The other program ends; nobody reopens anything.
      await new Promise<void>((r) => squatter.close(() => r()));
      freed = true;
      const t0 = Date.now();
      await waitUntil('up again on its own port', async () => (await sb.json<TunnelJson[]>(['tunnel', '--list', '--json']))[0]?.state === 'up', 8000, 100);
      const healMs = Date.now() - t0;
      console.log(`port_conflict healed ${healMs} ms after the port was free`);
      expect(healMs).toBeLessThan(5000);
      const back = (await sb.json<TunnelJson[]>(['tunnel', '--list', '--json']))[0]!;
      expect(back.local_port).toBe(port);
      expect(instanceIdOfPage((await httpGet(port)).body)).toBe(made!.instance_id);
      expect((await sb.cli(['tunnel', '--list'])).stdout).not.toContain('taken by another program');
    } finally {
      if (!freed) squatter.close();
    }
  });

  it('a box keeps its port: after tunnel --stop (also across a supervisor restart) it gets it back, a new box takes another; --port still wins', async () => {
    const made = await sb.json<InstanceJson[]>(['create', '--count', '3', '--json', sb.writeFile('sticky.json', { provider: 'local' })]);
    const ports = Object.fromEntries(made.map((m) => [m.instance_id, m.tunnel!.local_port]));
    expect(Object.values(ports)).toEqual([sb.basePort, sb.basePort + 1, sb.basePort + 2]);
    // The README's example: local-3 stops and returns on its port.
    await sb.json(['tunnel', '--stop', 'local-3', '--json']);
    // A box made meanwhile does not take local-3's port, though it is the lowest free one.
    const [fourth] = await sb.json<InstanceJson[]>(['create', '--json', sb.writeFile('sticky-4.json', { provider: 'local' })]);
    expect(fourth!.tunnel!.local_port).toBe(sb.basePort + 3);
    expect((await sb.json<TunnelJson>(['tunnel', 'local-3', '--json'])).local_port).toBe(ports['local-3']);
    // Across a restart too.
    await sb.json(['tunnel', '--stop', 'local-2', '--json']);
    expect((await sb.cli(['daemon', 'stop'])).code).toBe(0);
    const back = await sb.json<TunnelJson>(['tunnel', 'local-2', '--json']);
    expect(back.local_port).toBe(ports['local-2']);
    expect(instanceIdOfPage((await httpGet(back.local_port)).body)).toBe('local-2');
    // An explicit port wins, and is the one kept from then on.
    const far = sb.basePort + 30;
    expect((await sb.json<TunnelJson>(['tunnel', 'local-1', '--port', String(far), '--json'])).local_port).toBe(far);
    await sb.json(['tunnel', '--stop', 'local-1', '--json']);
    expect((await sb.json<TunnelJson>(['tunnel', 'local-1', '--json'])).local_port).toBe(far);
  });

  it('daemon stop is a pause: the next command brings every box and tunnel back on its port', async () => {
    await sb.json(['create', '--count', '2', '--json', sb.writeFile('pause.json', { provider: 'local' })]);
    const before = await sb.json<TunnelJson[]>(['tunnel', '--list', '--json']);
    const stop = await sb.cli(['daemon', 'stop']);
    expect(stop.code, stop.stderr).toBe(0);
    expect(stop.stdout).toMatch(/2 tunnel\(s\) stay recorded/);
    expect(sb.supervisorPids()).toEqual([]);
    await expect(httpGet(before[0]!.local_port, '/', 1000)).rejects.toThrow();
    const status = await sb.cli(['daemon', 'status']);
    expect(status.code).toBe(1); // status never starts one

    let after: TunnelJson[] = [];
    await waitUntil('tunnels up again', async () => {
      after = await sb.json<TunnelJson[]>(['tunnel', '--list', '--json']);
      return after.length === 2 && after.every((t) => t.state === 'up');
    }, 10_000, 100);
    expect(after.map((t) => [t.instance_id, t.local_port])).toEqual(before.map((t) => [t.instance_id, t.local_port]));
    for (const t of after) expect(instanceIdOfPage((await httpGet(t.local_port)).body)).toBe(t.instance_id);
    expect((await sb.cli(['daemon', 'status'])).code).toBe(0);
  });

  it("the supervisor starts with its GC flags and malloc settings, and a user's own GLIBC_TUNABLES still wins after them", async () => {
    const userTunables = 'glibc.malloc.trim_threshold=1048576';
    const r = await sb.cli(['list', '--json'], { env: { GLIBC_TUNABLES: userTunables } });
    expect(r.code, r.stderr).toBe(0);
    const [pid] = sb.supervisorPids();
    // glibc ends each tunable's value in place with a NUL once it has read it, so in
    // /proc/PID/environ the list shows as consecutive entries: glue them back with ':'.
    const environ = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
    const start = environ.findIndex((v) => v.startsWith('GLIBC_TUNABLES='));
    expect(start, 'GLIBC_TUNABLES in the supervisor environment').toBeGreaterThanOrEqual(0);
    const parts = [environ[start]!.slice('GLIBC_TUNABLES='.length)];
    for (let i = start + 1; environ[i]?.startsWith('glibc.'); i++) parts.push(environ[i]!);
    const tunables = parts.join(':');
    // glibc applies them left to right: ours keep freed buffers for reuse, the user's come last.
    expect(tunables).toMatch(/^glibc\.malloc\.mmap_threshold=\d+:glibc\.malloc\.trim_threshold=\d+:/);
    expect(tunables.endsWith(`:${userTunables}`)).toBe(true);
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    for (const flag of ['--single-threaded-gc', '--expose-gc', '--max-semi-space-size=1']) expect(cmdline).toContain(flag);
  });

  it('stop closes the tunnel and frees the port; start brings the box back ready; logs tells the story; both are idempotent', async () => {
    const [made] = await sb.json<InstanceJson[]>(['create', '--json', sb.writeFile('life.json', { provider: 'local' })]);
    const port = made!.tunnel!.local_port;
    const stop = await sb.json<InstanceJson>(['stop', made!.instance_id, '--json']);
    expect(stop.status).toBe('stopped');
    expect(await canBind(port)).toBe(true);
    expect(await sb.json<TunnelJson[]>(['tunnel', '--list', '--json'])).toEqual([]);
    const startAgain = await sb.cli(['start', made!.instance_id, '--json']);
    expect(startAgain.code, startAgain.stderr).toBe(0);
    const [back] = JSON.parse(startAgain.stdout) as InstanceJson[];
    expect(back!.status).toBe('ready');
    expect(instanceIdOfPage((await httpGet(back!.tunnel!.local_port)).body)).toBe(made!.instance_id);
    const logs = await sb.cli(['logs', made!.instance_id]);
    expect(logs.stdout).toMatch(/created[\s\S]*booted[\s\S]*stopped[\s\S]*started[\s\S]*booted/);
    // Both are idempotent: starting a started box and stopping a stopped one are done at once.
    const again = await sb.cli(['start', made!.instance_id]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toContain(`${made!.instance_id} was already started (ready).`);
    expect(again.stdout).toMatch(new RegExp(`^${made!.instance_id}\\s+http://localhost:\\d+$`, 'm'));
    expect((await sb.json<InstanceJson>(['stop', made!.instance_id, '--json'])).status).toBe('stopped');
    const twice = await sb.cli(['stop', made!.instance_id]);
    expect(twice.code, twice.stderr).toBe(0);
    expect(twice.stderr).toContain(`${made!.instance_id} was already stopped.`);
  });

  it('an unreadable state file is moved aside with a clear message, and work goes on', async () => {
    mkdirSync(sb.home, { recursive: true, mode: 0o700 });
    writeFileSync(path.join(sb.home, 'state.sqlite'), 'garbage, not SQLite\n'.repeat(100));
    const r = await sb.cli(['list', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual([]);
    expect(r.stderr).toMatch(/warning: The state file .*state\.sqlite could not be read/);
    const aside = readdirSync(sb.home).filter((f) => f.startsWith('state.sqlite.unreadable-'));
    expect(aside).toHaveLength(1);
    expect(r.stderr).toContain(aside[0]);
    expect(readFileSync(path.join(sb.home, aside[0]!), 'utf8')).toContain('garbage, not SQLite');
    const status = await sb.json<{ warnings: string[] }>(['daemon', 'status', '--json']);
    expect(status.warnings.join('\n')).toMatch(/could not be read/);
    const demo = await sb.cli(['demo', '--json']);
    expect(demo.code, demo.stderr).toBe(0);
  });

  it('ten clients starting the supervisor at the same moment make exactly one, every time', async () => {
    for (let round = 0; round < 3; round++) {
      expect(sb.supervisorPids()).toEqual([]);
      const results = await Promise.all(Array.from({ length: 10 }, () => sb.cli(['tunnel', '--list', '--json'])));
      for (const r of results) expect(r.code, r.stderr).toBe(0);
      // Losers of the lock exit on their own; give them a moment, then count.
      await waitUntil('one supervisor left', () => sb.supervisorPids().length === 1, 10_000);
      await new Promise((r) => setTimeout(r, 500));
      expect(sb.supervisorPids()).toHaveLength(1);
      const stop = await sb.cli(['daemon', 'stop']);
      expect(stop.code, stop.stderr).toBe(0);
      await waitUntil('no supervisor', () => sb.supervisorPids().length === 0, 10_000);
    }
  });

  it('simulated failures end in the failsafe: boot failure fails fast, a box whose app never answers is destroyed at its deadline', async () => {
    const boot = await sb.cli(['create', '--json', sb.writeFile('config-3.json', { provider: 'local', instance_config: { simulate: { fail: 'boot' } } })]);
    expect(boot.code).toBe(1);
    expect(boot.stderr).toMatch(/did not become ready/);
    const bootOut = JSON.parse(boot.stdout) as InstanceJson[];
    expect(bootOut[0]!.status).toBe('failed');

    const t0 = Date.now();
    const comfy = await sb.cli(['create', '--json', sb.writeFile('config-4.json', { provider: 'local', instance_config: { ready_timeout_s: 5, simulate: { fail: 'comfy' } } })]);
    const took = Date.now() - t0;
    expect(comfy.code).toBe(1);
    const out = JSON.parse(comfy.stdout) as (InstanceJson & { status_message: string })[];
    expect(out[0]!.status).toBe('failed');
    expect(out[0]!.status_message).toMatch(/ready_timeout_s = 5/);
    expect(out[0]!.status_message).toMatch(/failsafe/);
    expect(took).toBeGreaterThanOrEqual(4500);
    // Destroyed: gone from the list, its port free again.
    expect(await sb.json<InstanceJson[]>(['list', '--json'])).toEqual([]);
    expect(await sb.json<TunnelJson[]>(['tunnel', '--list', '--json'])).toEqual([]);
  });

  it('a box past its max_lifetime_s is destroyed, its tunnel closed and its port freed', async () => {
    const [made] = await sb.json<InstanceJson[]>(['create', '--json', sb.writeFile('short.json', { provider: 'local', instance_config: { max_lifetime_s: 3 } })]);
    expect(made!.status).toBe('ready');
    const port = made!.tunnel!.local_port;
    await waitUntil('the box is gone', async () => (await sb.json<InstanceJson[]>(['list', '--json'])).length === 0, 10_000, 200);
    expect(await canBind(port)).toBe(true);
    expect(readFileSync(path.join(sb.home, 'supervisor.log'), 'utf8')).toMatch(/max_lifetime_s = 3 s reached/);
  });

  it('a slow box is reported while it boots and is ready after its start delay', async () => {
    const t0 = Date.now();
    const r = await sb.cli(['create', '--json', sb.writeFile('config-5.json', { provider: 'local', instance_config: { simulate: { start_delay_s: 2 } } })]);
    expect(r.code, r.stderr).toBe(0);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1900);
    expect(r.stderr).toMatch(/booting/);
    const [inst] = JSON.parse(r.stdout) as InstanceJson[];
    expect(inst!.status).toBe('ready');
  });

  it('a wait that begins while a box boots shows where the box stands', async () => {
    // The box said "booting" before anyone waited; the wait must still show it.
    const r = await sb.cli(['create', '--no-wait', '--json', sb.writeFile('config-6.json', { provider: 'local', instance_config: { simulate: { start_delay_s: 6 } } })]);
    expect(r.code, r.stderr).toBe(0);
    const [inst] = JSON.parse(r.stdout) as InstanceJson[];
    const client = await SupervisorClient.connect({ env: sb.env });
    try {
      await waitUntil('the box reports booting', async () => (await client.listInstances({})).some((v) => /booting/.test(v.status_message ?? '')), 5000);
      const seen: string[] = [];
      const [view] = await client.waitForInstances({ instance_ids: [inst!.instance_id], timeout_s: 1 }, { onProgress: (p) => seen.push(p.message) });
      expect(view!.status).toBe('loading');
      expect(seen.join('\n')).toMatch(/booting/);
    } finally {
      client.close();
    }
  });
});

