/**
 * Tests of the test infrastructure itself: the fake Vast.ai API (test/helpers/fake-vast.ts) and
 * its fake boxes (test/helpers/fake-box.ts, one sshd per network namespace). Kept short: they only
 * show that the fake behaves like reference/vast-api.md says the real API does.
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Client } from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fakeBoxesSupported, type FakeBox } from '../helpers/fake-box.js';
import { endpointTemplate, FakeVast, type FakeInstance } from '../helpers/fake-vast.js';

const execFileP = promisify(execFile);
const KEY = 'fake-vast-test-key-0001';
const TFA_KEY = 'fake-vast-test-key-2fa';
const PACE = 0.02;
const support = fakeBoxesSupported();
if (!support.ok) console.warn(`fake-vast.test: box tests skipped: ${support.reason}`);

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitFor<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 15_000, everyMs = 50): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

interface Answer {
  status: number;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  text: string;
  headers: Headers;
}

describe('fake Vast API', () => {
  let vast: FakeVast;
  let dir: string;
  let keyPath: string;
  let pubKey: string;
  /** A well-behaved client: waits out each endpoint's scaled interval (plus a margin). */
  const lastCall = new Map<string, number>();
  async function call(method: string, pathAndQuery: string, body?: unknown, key = KEY): Promise<Answer> {
    const endpoint = endpointTemplate(method, pathAndQuery.split('?')[0]!);
    const wait = (lastCall.get(endpoint) ?? 0) + vast.minIntervalMs(endpoint) + 15 - Date.now();
    if (wait > 0) await sleep(wait);
    lastCall.set(endpoint, Date.now());
    const res = await fetch(`${vast.url}${pathAndQuery}`, {
      method,
      headers: { authorization: `Bearer ${key}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      body: body !== undefined ? JSON.stringify(body) : undefined,
      signal: AbortSignal.timeout(10_000),
    });
    const text = await res.text();
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    return { status: res.status, body: parsed, text, headers: res.headers };
  }
  const show = async (id: number): Promise<FakeInstance | null> => (await call('GET', `/api/v0/instances/${id}/?owner=me`)).body.instances;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'vai-fakevast-test-'));
    keyPath = path.join(dir, 'id_ed25519');
    await execFileP('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'fake-vast-test', '-f', keyPath], { timeout: 10_000 });
    pubKey = readFileSync(`${keyPath}.pub`, 'utf8').trim();
    vast = await new FakeVast([KEY, TFA_KEY], { paceScale: PACE, twoFactorKeys: [TFA_KEY], behaviour: { loadingMs: 100, runningMs: 400, comfyMs: 300 } }).start();
  });
  afterAll(async () => {
    await vast?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('auth, account and retired endpoints answer like the real API', async () => {
    const bad = await call('GET', '/api/v0/users/current/', undefined, 'not-a-key');
    expect(bad.status).toBe(404);
    expect(bad.body).toMatchObject({ success: false, error: 'auth_error' });
    const tfa = await call('GET', '/api/v0/users/current/', undefined, TFA_KEY);
    expect(tfa.status).toBe(401);
    expect(tfa.body.msg).toContain('Two Factor Authentication');
    const me = await call('GET', '/api/v0/users/current/');
    expect(me.body).toMatchObject({ can_pay: true });
    expect(typeof me.body.credit).toBe('number');
    expect((await call('GET', '/api/v0/instances/?owner=me')).status).toBe(410);
    expect((await call('POST', '/api/v0/ssh/', { ssh_key: '' })).status).toBe(400);
    expect((await call('POST', '/api/v0/ssh/', { ssh_key: pubKey })).body).toMatchObject({ success: true, key: { public_key: pubKey } });
    const keys = await call('GET', '/api/v0/ssh/');
    expect(Array.isArray(keys.body)).toBe(true);
    expect(keys.body[0]).toMatchObject({ public_key: pubKey, deleted_at: null, private_key: null });
  });

  it('offers: filters with every op, order, limit, dph_total from allocated_storage; a rented offer drops out', async () => {
    const a = vast.addOffer({ gpu_name: 'RTX 4090', dph_base: 0.3, storage_cost: 0.2, geolocation: 'Sweden, SE', reliability2: 0.99 });
    const b = vast.addOffer({ gpu_name: 'RTX 4090', dph_base: 0.5, storage_cost: 0.1, geolocation: 'United States, US', reliability2: 0.995 });
    vast.addOffer({ gpu_name: 'RTX 3090', dph_base: 0.2, geolocation: 'Canada, CA' });
    vast.addOffer({ gpu_name: 'RTX 4090', dph_base: 0.25, verified: false });
    vast.addOffer({ gpu_name: 'RTX 4090', dph_base: 0.9, geolocation: 'Sweden, SE' });
    const q = {
      gpu_name: { in: ['RTX 4090'] },
      num_gpus: { eq: 1 },
      verified: { eq: true },
      rentable: { eq: true },
      external: { eq: false },
      reliability2: { gt: '0.98' }, // the CLI sends numbers as strings
      dph_total: { lte: 0.6 },
      inet_down: { gte: 100 },
      geolocation: { notin: ['CA'] },
      gpu_ram: { lt: 100_000 },
      cuda_max_good: { neq: 11.0 },
      order: [['dph_total', 'asc']],
      allocated_storage: 40,
      type: 'on-demand',
    };
    const r = await call('POST', '/api/v0/bundles/', { ...q, limit: 10 });
    expect(r.status).toBe(200);
    expect(r.body.offers.map((o: { id: number }) => o.id)).toEqual([a.id, b.id]);
    expect(r.body.offers[0].dph_total).toBeCloseTo(0.3 + (0.2 * 40) / 720, 10);
    expect(vast.searchQueries.at(-1)).toMatchObject({ allocated_storage: 40 });
    // Default allocated_storage is 5; PUT /search/asks/ with {"q": ...}; limit honoured.
    const r2 = await call('PUT', '/api/v0/search/asks/', { select_cols: ['*'], q: { ...q, allocated_storage: undefined, order: [['dph_total', 'desc']], limit: 1 } });
    expect(r2.body.offers.map((o: { id: number }) => o.id)).toEqual([b.id]);
    expect(r2.body.offers[0].dph_total).toBeCloseTo(0.5 + (0.1 * 5) / 720, 10);
    // {"id":{"eq":N}} finds nothing (live finding); ask_contract_id does.
    expect((await call('POST', '/api/v0/bundles/', { id: { eq: a.id } })).body.offers).toEqual([]);
    expect((await call('POST', '/api/v0/bundles/', { ask_contract_id: { eq: a.id } })).body.offers.map((o: { id: number }) => o.id)).toEqual([a.id]);
    expect((await call('POST', '/api/v0/bundles/', { dph_total: { about: 1 } })).status).toBe(400);

    // Rent a (no box needed here), then it is gone from search; an unknown offer is a 404 no_such_ask.
    vast.nextBoxBehaviour({ neverRunning: true });
    const made = await call('PUT', `/api/v0/asks/${a.id}/`, { client_id: 'me', image: 'vastai/comfy:@vastai-automatic-tag', env: {}, disk: 20, label: 'vai-mcp:offers', runtype: 'ssh', price: null, cancel_unavail: true });
    expect(made.body).toMatchObject({ success: true });
    expect((await call('POST', '/api/v0/bundles/', { ask_contract_id: { eq: a.id } })).body.offers).toEqual([]);
    const again = await call('PUT', `/api/v0/asks/${a.id}/`, { image: 'x', disk: 20 });
    expect(again.status).toBe(404);
    expect(again.body).toEqual({ success: false, error: 'invalid_args', msg: `error 404/3603: no_such_ask Instance type by id ${a.id} is not available.`, ask_id: a.id });
    expect((await call('DELETE', `/api/v0/instances/${made.body.new_contract}/`, {})).body).toEqual({ success: true });
    expect((await call('POST', '/api/v0/bundles/', { ask_contract_id: { eq: a.id } })).body.offers).toHaveLength(1); // free again
  });

  it('v1 list: label filters, pages of at most 25 with next_token; show is {"instances": null} when unknown', async () => {
    for (let i = 0; i < 30; i++) vast.addInstance({ id: 880_000 + i, label: i % 2 ? 'odd' : 'even' });
    const p1 = await call('GET', `/api/v1/instances/?limit=100&select_filters=${encodeURIComponent(JSON.stringify({ label: { in: ['odd', 'even'] } }))}`);
    expect(p1.body).toMatchObject({ success: true, total_instances: expect.any(Number) });
    expect(p1.body.instances).toHaveLength(25);
    expect(p1.body.label_counts).toMatchObject({ odd: 15, even: 15 });
    const p2 = await call('GET', `/api/v1/instances/?limit=25&after_token=${encodeURIComponent(p1.body.next_token)}&select_filters=${encodeURIComponent(JSON.stringify({ label: { in: ['odd', 'even'] } }))}`);
    expect(p2.body.instances).toHaveLength(5);
    expect(p2.body.next_token).toBeNull();
    const odd = await call('GET', `/api/v1/instances/?select_filters=${encodeURIComponent(JSON.stringify({ label: { eq: 'odd' } }))}`);
    expect(odd.body.instances).toHaveLength(15);
    expect((await call('GET', `/api/v1/instances/?select_filters=${encodeURIComponent(JSON.stringify({ dph_total: { lt: 1 } }))}`)).status).toBe(400);
    const missing = await call('GET', '/api/v0/instances/123/?owner=me');
    expect(missing.status).toBe(200);
    expect(missing.body).toEqual({ instances: null });
  });

  it('pacing: a call sooner than its interval is a 429 without Retry-After, recorded in paceViolations', async () => {
    expect(vast.paceViolations).toEqual([]); // the well-behaved helper never tripped it
    await sleep(vast.minIntervalMs('GET /api/v0/instances/{id}/') + 20);
    const first = await fetch(`${vast.url}/api/v0/instances/1/`, { headers: { authorization: `Bearer ${KEY}` } });
    const second = await fetch(`${vast.url}/api/v0/instances/1/`, { headers: { authorization: `Bearer ${KEY}` } });
    expect(first.status).toBe(200);
    expect(second.status).toBe(429);
    expect(second.headers.get('retry-after')).toBeNull();
    expect(await second.text()).toMatch(/^API requests too frequent endpoint threshold=2\.0/);
    expect(vast.paceViolations).toEqual([expect.objectContaining({ endpoint: 'GET /api/v0/instances/{id}/', minIntervalMs: 2000 * PACE })]);
    vast.paceViolations.length = 0;
    lastCall.set('GET /api/v0/instances/{id}/', Date.now());

    vast.rateLimitNext(2);
    const burst = [await call('GET', '/api/v0/ssh/'), await call('GET', '/api/v0/ssh/'), await call('GET', '/api/v0/ssh/')];
    expect(burst.map((r) => r.status)).toEqual([429, 429, 200]);
    expect(burst[0]!.headers.get('retry-after')).toBeNull();
    expect(vast.paceViolations).toEqual([]);
  });

  it('a lost create answer (502 or a dropped connection) still rents the box: it is found by label', async () => {
    const o1 = vast.addOffer({});
    const o2 = vast.addOffer({});
    vast.nextBoxBehaviour({ neverRunning: true });
    vast.nextBoxBehaviour({ neverRunning: true });
    vast.loseNextCreateResponse('502');
    vast.loseNextCreateResponse('drop');
    const lost = await call('PUT', `/api/v0/asks/${o1.id}/`, { image: 'vastai/comfy:@vastai-automatic-tag', disk: 20, label: 'vai-mcp:lost-502' });
    expect(lost.status).toBe(502);
    await expect(call('PUT', `/api/v0/asks/${o2.id}/`, { image: 'vastai/comfy:@vastai-automatic-tag', disk: 20, label: 'vai-mcp:lost-drop' })).rejects.toThrow();
    const found = await call('GET', `/api/v1/instances/?select_filters=${encodeURIComponent(JSON.stringify({ label: { in: ['vai-mcp:lost-502', 'vai-mcp:lost-drop'] } }))}`);
    expect(found.body.instances.map((i: FakeInstance) => i.label).sort()).toEqual(['vai-mcp:lost-502', 'vai-mcp:lost-drop']);
    expect(vast.creates.slice(-2).map((c) => c.body.label)).toEqual(['vai-mcp:lost-502', 'vai-mcp:lost-drop']);
    for (const i of found.body.instances as FakeInstance[]) expect((await call('DELETE', `/api/v0/instances/${i.id}/`, {})).status).toBe(200);
  });

  it('fault knobs: failures instead of running, an unschedulable offer, setStatus, vanish', async () => {
    const create = async (label: string, extra: Record<string, unknown> = {}): Promise<Answer> =>
      call('PUT', `/api/v0/asks/${vast.addOffer({}).id}/`, { image: 'vastai/comfy:@vastai-automatic-tag', disk: 20, label, onstart: 'entrypoint.sh', ...extra });
    vast.nextBoxBehaviour({ loadingMs: 0, runningMs: 50, failWith: 'error_msg' });
    vast.nextBoxBehaviour({ loadingMs: 0, runningMs: 50, failWith: 'offline' });
    const e = (await create('vai-mcp:err')).body.new_contract as number;
    const off = (await create('vai-mcp:offline')).body.new_contract as number;
    expect((await vast.waitForStatus(e, 'created')).status_msg).toMatch(/Error response from daemon/);
    await vast.waitForStatus(off, 'offline');
    vast.nextBoxBehaviour({ unavailable: true });
    expect((await create('vai-mcp:unavail')).status).toBe(410);
    vast.nextBoxBehaviour({ unavailable: true });
    const stopped = (await create('vai-mcp:unavail2', { cancel_unavail: false })).body.new_contract as number;
    expect(await show(stopped)).toMatchObject({ actual_status: 'exited', intended_status: 'stopped' });
    vast.nextBoxBehaviour({ neverRunning: true });
    const stuck = (await create('vai-mcp:stuck')).body.new_contract as number;
    await vast.setStatus(stuck, 'unknown', { status_msg: 'No heartbeat' });
    expect(await show(stuck)).toMatchObject({ actual_status: 'unknown', status_msg: 'No heartbeat' });
    await vast.vanish(stuck);
    expect(await show(stuck)).toBeNull();
    for (const id of [e, off, stopped]) expect((await call('DELETE', `/api/v0/instances/${id}/`, {})).status).toBe(200);
  });

  describe.skipIf(!support.ok)('boxes', () => {
    const ids: Record<'a' | 'b' | 'c', number> = { a: 0, b: 0, c: 0 };
    const conns: Client[] = [];
    afterAll(() => {
      for (const c of conns) c.end();
    });

    function connect(box: FakeBox): Promise<Client> {
      return new Promise((resolve, reject) => {
        const c = new Client();
        conns.push(c);
        c.once('ready', () => resolve(c));
        c.once('error', reject);
        c.connect({ host: box.host, port: box.sshPort, username: box.user, privateKey: readFileSync(keyPath), hostHash: 'sha256', hostVerifier: (h: string) => h === box.hostKeySha256(), readyTimeout: 8000 });
      });
    }

    /** GET through a direct-tcpip channel to the box's 127.0.0.1:18188. */
    function getVia(c: Client, urlPath: string): Promise<{ status: number; body: string }> {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no answer within 5 s')), 5000);
        c.forwardOut('127.0.0.1', 0, '127.0.0.1', 18188, (err, stream) => {
          if (err) return clearTimeout(timer), reject(err);
          let raw = '';
          stream.on('data', (d: Buffer) => (raw += d.toString()));
          stream.on('close', () => {
            clearTimeout(timer);
            resolve({ status: Number(/^HTTP\/1\.1 (\d+)/.exec(raw)?.[1] ?? 0), body: raw.slice(raw.indexOf('\r\n\r\n') + 4) });
          });
          stream.end(`GET ${urlPath} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
        });
      });
    }

    it('create -> loading -> running; each box answers with its own id, only when onstart runs entrypoint.sh', async () => {
      const env = { '-p 8188:8188': '1', OPEN_BUTTON_TOKEN: '1', PROVISIONING_SCRIPT: 'https://example.org/provision.sh' };
      const base = { client_id: 'me', image: 'vastai/comfy:@vastai-automatic-tag', env, disk: 40, runtype: 'ssh', price: null, cancel_unavail: true };
      const t0 = Date.now();
      for (const [name, onstart] of [['a', 'entrypoint.sh'], ['b', 'entrypoint.sh'], ['c', 'echo hello']] as const) {
        const offer = vast.addOffer({ gpu_name: 'RTX 4090' });
        const r = await call('PUT', `/api/v0/asks/${offer.id}/`, { ...base, label: `vai-mcp:box-${name}`, onstart });
        expect(r.body).toMatchObject({ success: true, new_contract: expect.any(Number) });
        ids[name] = r.body.new_contract;
      }
      expect(vast.createBody(ids.a)).toMatchObject({ ...base, onstart: 'entrypoint.sh' });
      // Attached before it runs (a, b) and after (c).
      for (const id of [ids.a, ids.b]) expect((await call('POST', `/api/v0/instances/${id}/ssh/`, { ssh_key: pubKey })).body).toEqual({ success: true, msg: 'SSH key attached successfully' });

      const seen = new Set<string | null>();
      const running = await waitFor('a to run', async () => {
        const i = await show(ids.a);
        seen.add(i!.actual_status);
        return i!.actual_status === 'running' ? i! : undefined;
      });
      const upMs = Date.now() - t0;
      expect([...seen]).toEqual(expect.arrayContaining(['loading', 'running']));
      expect(running).toMatchObject({ intended_status: 'running', ssh_port: 22, ports: { '22/tcp': [{ HostIp: '0.0.0.0', HostPort: '22' }], '8188/tcp': [{ HostIp: '0.0.0.0', HostPort: '8188' }] } });
      expect(running.ssh_host).toBe(running.public_ipaddr);
      expect(typeof running.start_date).toBe('number');
      await vast.waitForStatus(ids.b, 'running');
      await vast.waitForStatus(ids.c, 'running');
      expect((await call('POST', `/api/v0/instances/${ids.c}/ssh/`, { ssh_key: pubKey })).status).toBe(200);

      const boxA = vast.box(ids.a)!;
      const boxB = vast.box(ids.b)!;
      const boxC = vast.box(ids.c)!;
      expect(new Set([boxA.host, boxB.host, boxC.host]).size).toBe(3);
      const [ca, cb, cc] = [await connect(boxA), await connect(boxB), await connect(boxC)];
      const pageA = await waitFor('ComfyUI on a', async () => getVia(ca, '/').then((r) => (r.status === 200 ? r : undefined)).catch(() => undefined));
      const comfyMs = Date.now() - t0;
      const pageB = await waitFor('ComfyUI on b', async () => getVia(cb, '/').then((r) => (r.status === 200 ? r : undefined)).catch(() => undefined));
      expect(pageA.body).toContain(`id="instance-id">${ids.a}<`);
      expect(pageB.body).toContain(`id="instance-id">${ids.b}<`);
      expect(JSON.parse((await getVia(ca, '/api/system_stats')).body)).toMatchObject({ instance_id: String(ids.a) });
      // c's onstart did not run the entrypoint: its SSH works, its 18188 refuses.
      await sleep(500);
      await expect(getVia(cc, '/')).rejects.toThrow();
      console.log(`fake-vast.test: create -> running ${upMs} ms, -> ComfyUI answering ${comfyMs} ms (3 boxes)`);

      // Any command on a box prints that box's own onstart log (OpenSSH client this time).
      writeFileSync(path.join(dir, 'known_hosts'), `${boxA.host} ${boxA.hostKeyLine()}\n`);
      const out = execFileSync('ssh', ['-i', keyPath, '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes', '-o', `UserKnownHostsFile=${path.join(dir, 'known_hosts')}`, '-o', 'StrictHostKeyChecking=yes', '-o', 'ConnectTimeout=5', `${boxA.user}@${boxA.host}`, 'tail -n 50 /var/log/onstart.log'], { timeout: 10_000 }).toString();
      expect(out).toMatch(/Downloading 2 models to/);
      expect(out).toMatch(/To see the GUI go to:/);
      expect(boxA.execLog()).toEqual(['tail -n 50 /var/log/onstart.log']);
      expect(vast.box(ids.c)!.onstartLog()).not.toMatch(/To see the GUI/);
    });

    it('logs: result_url answers 404 at first, then the log', async () => {
      const r = await call('PUT', `/api/v0/instances/request_logs/${ids.a}/`, { tail: '1000' });
      expect(r.body).toMatchObject({ success: true, result_url: expect.stringMatching(/\/logs\/\w+\.log$/) });
      const statuses: number[] = [];
      const text = await waitFor('the log', async () => {
        const res = await fetch(r.body.result_url);
        statuses.push(res.status);
        const t = await res.text();
        return res.ok ? t : undefined;
      });
      expect(statuses).toEqual([404, 404, 200]);
      expect(text).toMatch(/Provisioning\.\.\./);
      expect((await call('PUT', '/api/v0/instances/request_logs/1/', {})).body).toMatchObject({ error: 'invalid_id' });
    });

    it('stop and start: exited with ssh_port 0 and no ports, sshd down; running again with ComfyUI back', async () => {
      expect((await call('PUT', `/api/v0/instances/${ids.a}/`, { state: 'stopped' })).body).toEqual({ success: true });
      const stopped = await waitFor('a to stop', async () => {
        const i = await show(ids.a);
        return i!.actual_status === 'exited' ? i! : undefined;
      });
      expect(stopped).toMatchObject({ intended_status: 'stopped', cur_state: 'stopped', ssh_port: 0 });
      expect(stopped.ports).toBeUndefined();
      const box = vast.box(ids.a)!;
      await waitFor('sshd of a to stop', () => (box.sshRunning ? undefined : true), 5000);
      await expect(connect(box)).rejects.toThrow();

      expect((await call('PUT', `/api/v0/instances/${ids.a}/`, { state: 'running' })).status).toBe(200);
      await vast.waitForStatus(ids.a, 'running');
      const c = await connect(box);
      const page = await waitFor('ComfyUI on a again', async () => getVia(c, '/').then((r) => (r.status === 200 ? r : undefined)).catch(() => undefined));
      expect(page.body).toContain(`id="instance-id">${ids.a}<`);
      expect((await call('PUT', `/api/v0/instances/${ids.a}/`, { label: 'renamed' })).body).toEqual({ success: true, msg: `label for ${ids.a} set to 'renamed'.` });
    });

    it('destroy: {"instances": null} afterwards, the box and its namespace gone, a second destroy is 404', async () => {
      const box = vast.box(ids.b)!;
      expect((await call('DELETE', `/api/v0/instances/${ids.b}/`, {})).body).toEqual({ success: true });
      expect(await show(ids.b)).toBeNull();
      const again = await call('DELETE', `/api/v0/instances/${ids.b}/`, {});
      expect(again.status).toBe(404);
      expect(again.body).toEqual({ success: false, error: 'not_found', msg: 'Instance not found' });
      await waitFor('b to be torn down', () => (box.destroyed && !execFileSync('ip', ['netns', 'list']).toString().includes(box.ns) ? true : undefined), 10_000);
      expect(vast.paceViolations).toEqual([]);
      expect(vast.errors).toEqual([]);
    });
  });
});
