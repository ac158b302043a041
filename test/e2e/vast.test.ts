/**
 * The `vast` provider end to end: the built CLI and MCP server against a fake Vast.ai API on
 * loopback (test/helpers/fake-vast.ts) whose boxes are real OpenSSH sshd processes, each in its
 * own network namespace with its own ComfyUI-like app. The client is paced at 2% of the
 * documented intervals, and the fake fails any call that comes sooner than that.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { makeSandbox, ROOT, waitUntil, type Sandbox } from '../helpers/cli.js';
import { fakeBoxesSupported } from '../helpers/fake-box.js';
import { FakeVast } from '../helpers/fake-vast.js';
import { canBind, httpGet, instanceIdOfPage } from '../helpers/net.js';

const KEY = 'vast-test-key-7f3e9a1c';
const SCALE = 0.02;
const boxes = fakeBoxesSupported();
if (!boxes.ok) console.log(`skipping the Vast tests that need fake boxes: ${boxes.reason}`);

interface Tunnel {
  instance_id: string;
  local_port: number;
  url: string;
  state: string;
  last_error: string | null;
}
interface Instance {
  instance_id: string;
  provider: string;
  status: string;
  status_message: string | null;
  label: string;
  dph_total: number | null;
  cost_so_far: number | null;
  orphan?: boolean;
  tunnel: Tunnel | null;
}

describe('the vast provider against a fake Vast.ai API', () => {
  let fake: FakeVast;
  let sb: Sandbox;
  let keyPath: string;

  const config = (name: string, ic: Record<string, unknown> = {}) =>
    sb.writeFile(name, { provider: 'vast', instance_config: { gpu_name: 'RTX 4090', max_price_per_hour: 0.8, disk_size: 40, ssh_key_path: keyPath, ...ic } });
  const puts = () => fake.requests.filter((r) => r.method === 'PUT' && r.path.startsWith('/api/v0/asks/'));
  const allOutput = (r: { stdout: string; stderr: string }) => r.stdout + r.stderr;

  beforeAll(async () => {
    fake = await new FakeVast([KEY], { paceScale: SCALE }).start();
  });
  afterAll(async () => {
    await fake?.close();
  });
  beforeEach(() => {
    sb = makeSandbox({ VAST_URL: fake.url, VAST_API_KEY: KEY, VAI_VAST_PACE_SCALE: String(SCALE) });
    keyPath = path.join(path.dirname(sb.home), 'id_ed25519');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', keyPath]);
    for (const o of fake.offers.values()) o.rented = true; // each test brings its own offers
  });
  afterEach(async () => {
    await sb.cleanup();
    expect(fake.paceViolations, 'no call came sooner than its documented interval').toEqual([]);
    expect(fake.errors).toEqual([]);
  });

  it('refuses an offer over the price cap with the cheapest price seen, having sent no create', async () => {
    fake.addOffer({ gpu_name: 'RTX 4090', dph_base: 1.1, storage_cost: 0.1 });
    const r = await sb.cli(['create', config('dear.json'), '--json']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/Not enough 1x RTX 4090 offers at or under \$0\.80\/h: 0 found, 1 needed\. Nothing was rented\. The cheapest RTX 4090 offer seen costs \$1\.10\d\/h/);
    expect(r.stdout).toBe('');
    expect(puts()).toEqual([]);
    // The search asked with allocated_storage, so the price compared is the billed one.
    expect(fake.searchQueries.at(-1)).toMatchObject({ allocated_storage: 40, gpu_name: { in: ['RTX 4090'] } });
  });

  it('checks the instance cap before any API call', async () => {
    const before = fake.requests.length;
    const r = await sb.cli(['create', config('capped.json'), '--count', '3'], { env: { VAI_MAX_INSTANCES: '2' } });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/over the cap of 2 \(VAI_MAX_INSTANCES\)/);
    expect(fake.requests.length).toBe(before);
  });

  it('says a refused key clearly, and never shows it', async () => {
    const bad = 'bad-key-never-shown-1234';
    const r = await sb.cli(['create', config('badkey.json'), '--json'], { env: { VAST_API_KEY: bad } });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/The Vast.ai API key was refused/);
    const search = await sb.cli(['search', config('badkey2.json')], { env: { VAST_API_KEY: bad } });
    expect(search.code).toBe(2);
    const list = await sb.cli(['list'], { env: { VAST_API_KEY: bad } });
    for (const out of [r, search, list]) expect(allOutput(out)).not.toContain(bad);
    expect(readFileSync(path.join(sb.home, 'supervisor.log'), 'utf8')).not.toContain(bad);
    // A key that needs 2FA is told apart, with the way out.
    fake.twoFactorKeys.add('tfa-key-5555');
    fake.keys.add('tfa-key-5555');
    const tfa = await sb.cli(['search', config('tfa.json')], { env: { VAST_API_KEY: 'tfa-key-5555' } });
    expect(tfa.code).toBe(2);
    expect(tfa.stderr).toMatch(/two-factor authentication/);
    expect(tfa.stderr).toMatch(/vast_tfa_key/);
  });

  it('search lists the offers under the cap, cheapest (with the download) first', async () => {
    fake.addOffer({ id: 7_300_001, dph_base: 0.5, storage_cost: 0.1, inet_down_cost: 0.0 });
    fake.addOffer({ id: 7_300_002, dph_base: 0.3, storage_cost: 0.1, inet_down_cost: 0.05 });
    fake.addOffer({ id: 7_300_003, dph_base: 0.9, storage_cost: 0.1 });
    fake.addOffer({ id: 7_300_004, dph_base: 0.2, storage_cost: 0.1, geolocation: 'Japan, JP', reliability2: 0.9 });
    const r = await sb.json<{ offers: { offer_id: number; dph_total: number }[]; max_price_per_hour: number }>(['search', config('search.json', { regions: ['SE'], min_reliability: 0.95 }), '--json']);
    expect(r.max_price_per_hour).toBe(0.8);
    expect(r.offers.map((o) => o.offer_id)).toEqual([7_300_001, 7_300_002]);
    expect(r.offers[0]!.dph_total).toBeCloseTo(0.5 + (0.1 * 40) / 720, 5);
    expect(fake.searchQueries.at(-1)).toMatchObject({ geolocation: { in: ['SE'] }, reliability2: { gte: 0.95 } });
    // Without the filters the cheap Japanese offer comes first.
    const any = await sb.json<{ offers: { offer_id: number }[] }>(['search', config('search2.json'), '--json']);
    expect(any.offers[0]!.offer_id).toBe(7_300_004);
  });

  it('runs ComfyUI with its own origin check: COMFYUI_ARGS without --enable-cors-header, unless the config says otherwise', async () => {
    for (let i = 0; i < 3; i++) fake.addOffer({ dph_base: 0.3, storage_cost: 0.1 });
    const made = async (name: string, ic: Record<string, unknown>) => {
      const [inst] = await sb.json<Instance[]>(['create', config(name, ic), '--no-wait', '--json']);
      return fake.createBody(Number(inst!.instance_id))!.env as Record<string, string>;
    };
    const plain = await made('plain.json', {});
    expect(plain.COMFYUI_ARGS).toBe('--disable-auto-launch --port 18188');
    expect(plain.COMFYUI_ARGS).not.toContain('--enable-cors-header');
    // An explicit COMFYUI_ARGS wins; a box that allows other origins keeps the image's default.
    expect((await made('own.json', { env: { COMFYUI_ARGS: '--port 18188 --lowvram' } })).COMFYUI_ARGS).toBe('--port 18188 --lowvram');
    expect((await made('cors.json', { allowed_origins: ['http://localhost:3000'] })).COMFYUI_ARGS).toBeUndefined();
    fake.accountKeys.splice(0); // the account had no key before this test's first create added one
  });

  describe.skipIf(!boxes.ok)('with real boxes', () => {
    it('three boxes through the CLI: each URL reaches its own box; list shows prices; destroy ends them', async () => {
      for (let i = 0; i < 3; i++) fake.addOffer({ dph_base: 0.3 + i * 0.05, storage_cost: 0.1 });
      const r = await sb.cli(['create', config('three.json', { provisioning_script: 'https://example.org/provision.sh', env: { HF_TOKEN: 'hf_secret_value_123' } }), '--count', '3', '--json'], { timeoutMs: 90_000 });
      expect(r.code, r.stderr).toBe(0);
      const made = JSON.parse(r.stdout) as Instance[];
      expect(made.map((m) => m.status)).toEqual(['ready', 'ready', 'ready']);
      expect(new Set(made.map((m) => m.tunnel!.local_port)).size).toBe(3);
      for (const m of made) {
        expect(m.instance_id).toMatch(/^\d+$/);
        expect(m.label).toMatch(/^vai-mcp:[0-9a-f]+:[123]$/);
        expect(instanceIdOfPage((await httpGet(m.tunnel!.local_port)).body)).toBe(m.instance_id);
        const body = fake.createBody(Number(m.instance_id))!;
        expect(body.onstart).toContain('entrypoint.sh'); // an SSH runtype replaces the entrypoint
        expect(body.image).toBe('vastai/comfy:@vastai-automatic-tag');
        expect(body.label).toBe(m.label);
        expect(body.env).toMatchObject({ PROVISIONING_SCRIPT: 'https://example.org/provision.sh', HF_TOKEN: 'hf_secret_value_123' });
        expect(body.runtype).toBe('ssh_direc ssh_proxy');
        expect(body.cancel_unavail).toBe(true);
        // The user's key was attached to the box (the account had no key: added there too).
        const pub = readFileSync(`${keyPath}.pub`, 'utf8').trim().split(' ').slice(0, 2).join(' ');
        expect(fake.instanceKeys(Number(m.instance_id)).join('\n')).toContain(pub);
      }
      expect(fake.accountKeys.length).toBe(1);
      expect(r.stderr).toMatch(/added your public SSH key to your Vast.ai account/);
      expect(allOutput(r)).not.toContain('hf_secret_value_123');
      expect(fake.searchQueries.every((q) => q.allocated_storage === 40)).toBe(true);

      const list = await sb.json<Instance[]>(['list', '--json']);
      expect(list.map((i) => i.provider)).toEqual(['vast', 'vast', 'vast']);
      for (const i of list) {
        expect(i.dph_total).toBeGreaterThan(0.3);
        expect(i.cost_so_far).toBeGreaterThanOrEqual(0);
      }
      const table = await sb.cli(['list']);
      expect(table.stdout).toMatch(/\$0\.3\d\d\/h/);
      expect(allOutput(table)).not.toContain('hf_secret_value_123');

      const d = await sb.cli(['destroy', '--all', '--yes']);
      expect(d.code, d.stderr).toBe(0);
      for (const m of made) {
        expect(fake.destroyed.has(Number(m.instance_id))).toBe(true);
        expect(await canBind(m.tunnel!.local_port)).toBe(true);
      }
      expect(readFileSync(path.join(sb.home, 'supervisor.log'), 'utf8')).not.toContain('hf_secret_value_123');
    });

    it('three boxes through MCP, and the same request_id after a supervisor restart rents nothing new', async () => {
      for (let i = 0; i < 3; i++) fake.addOffer({ dph_base: 0.3, storage_cost: 0.1 });
      const connect = async () => {
        const transport = new StdioClientTransport({ command: process.execPath, args: [path.join(ROOT, 'dist', 'server', 'index.js')], env: sb.env as Record<string, string>, stderr: 'ignore' });
        const client = new Client({ name: 'vast-e2e', version: '0' });
        await client.connect(transport);
        return { client, transport };
      };
      const args = { config: { provider: 'vast', instance_config: { gpu_name: 'RTX 4090', max_price_per_hour: 0.8, ssh_key_path: keyPath } }, count: 3, request_id: 'mcp-vast-1', wait_s: 45 };
      const first = await connect();
      const progress: string[] = [];
      const r = (await first.client.callTool({ name: 'create_instance', arguments: args }, undefined, { onprogress: (p) => progress.push(p.message ?? ''), timeout: 60_000 })) as CallToolResult;
      expect(r.isError, JSON.stringify(r.content)).toBeFalsy();
      const made = (r.structuredContent as { instances: Instance[] }).instances;
      expect(made.map((m) => m.status)).toEqual(['ready', 'ready', 'ready']);
      for (const m of made) expect(instanceIdOfPage((await httpGet(m.tunnel!.local_port)).body)).toBe(m.instance_id);
      expect(progress.join('\n')).toMatch(/box \d\/3 \(\d+\): (loading|tunnel up)/);
      await first.transport.close();

      const creates = puts().length;
      const stop = await sb.cli(['daemon', 'stop']);
      expect(stop.code, stop.stderr).toBe(0);
      const second = await connect();
      const again = (await second.client.callTool({ name: 'create_instance', arguments: args }, undefined, { timeout: 60_000 })) as CallToolResult;
      expect(again.isError, JSON.stringify(again.content)).toBeFalsy();
      expect((again.structuredContent as { instances: Instance[] }).instances.map((i) => i.instance_id)).toEqual(made.map((m) => m.instance_id));
      expect(puts().length).toBe(creates);
      await second.transport.close();
    });

    it('a box that is never ready (ComfyUI never answers) is destroyed at its deadline, with the reason and its log', async () => {
      fake.addOffer({ dph_base: 0.3 });
      fake.nextBoxBehaviour({ noComfy: true });
      const t0 = Date.now();
      const r = await sb.cli(['create', config('stuck.json', { ready_timeout_s: 5 }), '--json']);
      expect(r.code).toBe(1);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(4500);
      const [inst] = JSON.parse(r.stdout) as Instance[];
      expect(inst!.status).toBe('failed');
      expect(inst!.status_message).toMatch(/not ready within ready_timeout_s = 5 s.*destroyed by the failsafe/);
      expect(inst!.status_message).toMatch(/Its log ended with: .*Provisioning/); // the instance log, via request_logs
      expect(fake.destroyed.has(Number(inst!.instance_id))).toBe(true);
      expect(await sb.json<Instance[]>(['list', '--json'])).toEqual([]);
    });

    it('a box that exits while loading fails at once and is destroyed', async () => {
      fake.addOffer({ dph_base: 0.3 });
      fake.nextBoxBehaviour({ failWith: 'exited' });
      const t0 = Date.now();
      const r = await sb.cli(['create', config('exits.json'), '--json']);
      expect(r.code).toBe(1);
      expect(Date.now() - t0).toBeLessThan(20_000);
      const [inst] = JSON.parse(r.stdout) as Instance[];
      expect(inst!.status_message).toMatch(/exited/);
      expect(fake.destroyed.has(Number(inst!.instance_id))).toBe(true);
    });

    it('survives 429 bursts while polling, and shows provisioning progress', async () => {
      fake.addOffer({ dph_base: 0.3 });
      fake.nextBoxBehaviour({ runningMs: 1500, comfyMs: 1500 });
      const pending = sb.cli(['create', config('throttled.json')]);
      await new Promise((r) => setTimeout(r, 700));
      fake.rateLimitNext(4);
      const r = await pending;
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toMatch(/loading/);
      expect(r.stderr).toMatch(/provisioning: /);
    });

    it('a create whose answer was lost is found by its label, not rented twice', async () => {
      fake.addOffer({ dph_base: 0.3 });
      fake.addOffer({ dph_base: 0.35 });
      fake.loseNextCreateResponse();
      const before = puts().length;
      const r = await sb.cli(['create', config('lost.json'), '--json']);
      expect(r.code, r.stderr).toBe(0);
      const [inst] = JSON.parse(r.stdout) as Instance[];
      expect(inst!.status).toBe('ready');
      expect(puts().length - before).toBe(1);
      expect([...fake.instances.values()].filter((i) => i.label === inst!.label)).toHaveLength(1);
    });

    it('kill -9 while a box loads, back after its deadline: the box is destroyed at once', async () => {
      fake.addOffer({ dph_base: 0.3 });
      fake.nextBoxBehaviour({ neverRunning: true });
      const [inst] = await sb.json<Instance[]>(['create', config('killed.json', { ready_timeout_s: 5 }), '--no-wait', '--json']);
      const [pid] = sb.supervisorPids();
      process.kill(pid!, 'SIGKILL');
      await waitUntil('the supervisor is gone', () => sb.supervisorPids().length === 0, 5000);
      await new Promise((r) => setTimeout(r, 6000)); // past the deadline while nobody watches
      expect(fake.destroyed.has(Number(inst!.instance_id))).toBe(false);
      const t0 = Date.now();
      await sb.cli(['tunnel', '--list']); // any command brings the supervisor back
      await waitUntil('the failsafe destroyed it', () => fake.destroyed.has(Number(inst!.instance_id)), 10_000);
      console.log(`failsafe after restart: box destroyed ${Date.now() - t0} ms after the next command`);
      expect(await sb.json<Instance[]>(['list', '--json'])).toEqual([]);
    });

    it('stop closes the tunnel and warns that storage bills; start brings the box back; logs prints the instance log', async () => {
      fake.addOffer({ dph_base: 0.3 });
      const [made] = await sb.json<Instance[]>(['create', config('pause.json'), '--json']);
      const id = made!.instance_id;
      const stop = await sb.cli(['stop', id]);
      expect(stop.code, stop.stderr).toBe(0);
      expect(stop.stderr).toMatch(/still bills storage/);
      expect(fake.instance(Number(id))!.intended_status).toBe('stopped');
      expect(await canBind(made!.tunnel!.local_port)).toBe(true);
      const start = await sb.cli(['start', id, '--json']);
      expect(start.code, start.stderr).toBe(0);
      const [back] = JSON.parse(start.stdout) as Instance[];
      expect(back!.status).toBe('ready');
      expect(instanceIdOfPage((await httpGet(back!.tunnel!.local_port)).body)).toBe(id);
      const logs = await sb.cli(['logs', id]);
      expect(logs.code, logs.stderr).toBe(0);
      expect(logs.stdout).toMatch(/Provisioning/);
    });

    it('destroy works when Vast says the box is already gone; a box gone or stopped elsewhere gets its tunnel closed with the reason', async () => {
      fake.addOffer({ dph_base: 0.3 });
      fake.addOffer({ dph_base: 0.3 });
      fake.addOffer({ dph_base: 0.3 });
      const made = await sb.json<Instance[]>(['create', config('gone.json'), '--count', '3', '--json']);
      const [a, b, c] = made;
      // c vanishes from the account: the census closes its tunnel and says so.
      await fake.vanish(Number(c!.instance_id));
      let tc: Tunnel | undefined;
      await waitUntil('c closed', async () => {
        tc = (await sb.json<Tunnel[]>(['tunnel', '--list', '--json'])).find((t) => t.instance_id === c!.instance_id);
        return tc?.state === 'closed';
      }, 15_000, 200);
      expect(tc!.last_error).toMatch(/no longer exists on Vast.ai/);
      expect(await canBind(c!.tunnel!.local_port)).toBe(true);
      await sb.cli(['destroy', c!.instance_id, '--yes']);
      // b is stopped in the Vast console: the census closes its tunnel and says why.
      await fake.setStatus(Number(b!.instance_id), 'exited', { intended_status: 'stopped', sshd: 'stop', ports: 'clear' });
      let tb: Tunnel | undefined;
      await waitUntil('b closed', async () => {
        tb = (await sb.json<Tunnel[]>(['tunnel', '--list', '--json'])).find((t) => t.instance_id === b!.instance_id);
        return tb?.state === 'closed';
      }, 15_000, 200);
      expect(tb!.last_error).toMatch(/stopped/);
      expect(await canBind(b!.tunnel!.local_port)).toBe(true);
      // a vanishes behind our back; destroy still closes the tunnel and frees the port.
      await fake.vanish(Number(a!.instance_id));
      const d = await sb.cli(['destroy', a!.instance_id, '--yes']);
      expect(d.code, d.stderr).toBe(0);
      expect(await canBind(a!.tunnel!.local_port)).toBe(true);
      expect((await sb.json<Instance[]>(['list', '--json'])).map((i) => i.instance_id)).toEqual([b!.instance_id]);
    });
  });

  it('shows an orphan with how to end it, and destroys it by id', async () => {
    const orphan = fake.addInstance({ label: 'vai-mcp:from-elsewhere:1', dph_total: 0.44 });
    fake.addInstance({ label: 'not ours' });
    const list = await sb.json<Instance[]>(['list', '--json']);
    const o = list.find((i) => i.instance_id === String(orphan.id))!;
    expect(o.orphan).toBe(true);
    expect(o.status_message).toContain(`vai-mcp-cli destroy ${orphan.id}`);
    expect(list.some((i) => i.label === 'not ours')).toBe(false);
    const all = await sb.cli(['destroy', '--all', '--yes']);
    expect(all.code).toBe(0);
    expect(fake.destroyed.has(orphan.id)).toBe(false); // --all never touches what is not ours here
    const d = await sb.cli(['destroy', String(orphan.id), '--yes']);
    expect(d.code, d.stderr).toBe(0);
    expect(fake.destroyed.has(orphan.id)).toBe(true);
  });
});
