/**
 * Money, end to end: the built CLI and MCP server against the fake Vast.ai API. A create or start
 * that the budget or the account's credit cannot carry for an hour rents nothing; the budget is
 * kept by the supervisor (VAI_BUDGET_USD only fills an empty one); the ledger keeps counting
 * across a `kill -9` of the supervisor; the budget stops the live boxes when spent, warns from 80%,
 * and destroys the stopped ones at 110%. And each box's dead man's switch: its `onstart` watchdog
 * (run in the fake box's namespace) stops the box with the box's own key once the supervisor has
 * been gone for `deadman_s`, and never while the supervisor is alive, tunnel open or not.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { BudgetView, InstanceView } from '../../core/api/api.js';
import { makeSandbox, ROOT, waitUntil, type Sandbox } from '../helpers/cli.js';
import { fakeBoxesSupported } from '../helpers/fake-box.js';
import { FakeVast } from '../helpers/fake-vast.js';

const KEY = 'vast-money-key-5b2c8d';
const SCALE = 0.02;
const boxes = fakeBoxesSupported();
if (!boxes.ok) console.log(`skipping the money tests that need fake boxes: ${boxes.reason}`);

describe('money against a fake Vast.ai API', () => {
  let fake: FakeVast;
  let sb: Sandbox;
  let keyPath: string;

  const config = (name: string, ic: Record<string, unknown> = {}) =>
    sb.writeFile(name, { provider: 'vast', instance_config: { gpu_name: 'RTX 4090', max_price_per_hour: 4000, disk_size: 40, ssh_key_path: keyPath, ...ic } });
  const rents = () => fake.requests.filter((r) => r.method === 'PUT' && r.path.startsWith('/api/v0/asks/'));
  const budget = (env: NodeJS.ProcessEnv = {}) => sb.json<BudgetView>(['budget', '--json'], { env });
  const list = () => sb.json<InstanceView[]>(['list', '--json']);
  const killSupervisor = () => {
    for (const pid of sb.supervisorPids()) process.kill(pid, 'SIGKILL');
  };

  beforeAll(async () => {
    fake = await new FakeVast([KEY], { paceScale: SCALE }).start();
  });
  afterAll(async () => {
    await fake?.close();
  });
  beforeEach(() => {
    sb = makeSandbox({ VAST_URL: fake.url, VAST_API_KEY: KEY, VAI_VAST_PACE_SCALE: String(SCALE), VAI_DEADMAN_SCALE: String(SCALE) });
    keyPath = path.join(path.dirname(sb.home), 'id_ed25519');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', keyPath]);
    for (const o of fake.offers.values()) o.rented = true; // each test brings its own offers
    fake.user.credit = 1000;
  });
  afterEach(async () => {
    await sb.cleanup();
    expect(fake.paceViolations, 'no call came sooner than its documented interval').toEqual([]);
    expect(fake.errors).toEqual([]);
  });

  it('refuses a create that the budget or the credit cannot carry for an hour, renting nothing', async () => {
    fake.addOffer({ gpu_name: 'RTX 4090', dph_base: 0.6 - (0.1 * 40) / 720, storage_cost: 0.1 });
    fake.addOffer({ gpu_name: 'RTX 4090', dph_base: 0.6 - (0.1 * 40) / 720, storage_cost: 0.1 });
    expect((await sb.cli(['budget', '--set', '1'])).code).toBe(0);
    const two = await sb.cli(['create', config('two.json'), '--count', '2', '--json']);
    expect(two.code).toBe(1);
    expect(two.stdout).toBe('');
    expect(two.stderr).toContain('The budget cannot carry 2 boxes for an hour: that needs $1.20, and $1.00 of the $1.00 budget remains. Nothing was rented.');
    expect(two.stderr).toContain('vai-mcp-cli budget --set USD');

    expect((await sb.cli(['budget', '--set', '100'])).code).toBe(0);
    fake.user.credit = 0.5;
    const poor = await sb.cli(['create', config('one.json')]);
    expect(poor.code).toBe(1);
    expect(poor.stderr).toContain('Your Vast.ai credit ($0.500) cannot carry one box for an hour ($0.600). Nothing was rented.');
    expect(rents()).toEqual([]);
    const b = await budget();
    expect(b).toMatchObject({ limit_usd: 100, spent_usd: 0, credit_usd: 0.5, paid_boxes: [] });
  });

  it('VAI_BUDGET_USD fills an empty budget; a different one later is a warning, never a change', async () => {
    const first = await sb.cli(['budget', '--json'], { env: { VAI_BUDGET_USD: '5', VAI_BUDGET_ACTION: 'destroy' } });
    expect(JSON.parse(first.stdout)).toMatchObject({ limit_usd: 5, action: 'destroy' });
    const other = await sb.cli(['budget', '--json'], { env: { VAI_BUDGET_USD: '7' } });
    expect(JSON.parse(other.stdout)).toMatchObject({ limit_usd: 5, action: 'destroy' });
    expect(other.stderr).toContain('your VAI_BUDGET_USD=7 is not applied');
    const bad = await sb.cli(['budget', '--set', '0']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--set needs a positive number of dollars');
  });

  it.skipIf(!boxes.ok)('keeps the ledger across kill -9, stops live boxes when the budget is spent, warns from 80% (CLI and MCP), refuses a start, and destroys stopped boxes at 110%', async () => {
    // $360/h: ten cents a second, so the budget moves while the test watches.
    fake.user.credit = 100_000;
    fake.addOffer({ gpu_name: 'RTX 4090', dph_base: 360 - (0.1 * 40) / 720, storage_cost: 0.1 });
    const [made] = await sb.json<InstanceView[]>(['create', config('dear.json'), '--json']);
    expect(made!.status).toBe('ready');
    const id = made!.instance_id;

    // The idle watch counts it from its first look (each second).
    await waitUntil('the idle watch', async () => (await list())[0]?.idle_s !== null, 5_000, 250);
    const [seen] = await list();
    expect(seen!.dph_total).toBeCloseTo(360, 1);
    expect(seen!.cost_so_far!).toBeGreaterThan(0);
    expect(seen!.idle_s).toBeLessThan(10); // vast boxes stop after 30 idle minutes by default
    expect(Date.parse(seen!.idle_action_at!) - Date.now()).toBeGreaterThan(1700_000);

    const before = await budget();
    expect(before.spent_usd).toBeGreaterThan(0);
    expect(before.burn_usd_per_hour).toBeCloseTo(360, 0);
    killSupervisor();
    await new Promise((r) => setTimeout(r, 3_000));
    const after = await budget(); // a new supervisor
    // Nothing was reset, and the seconds nobody watched were counted.
    expect(after.spent_usd - before.spent_usd).toBeGreaterThan(0.3);
    expect(after.counted_from).toBe(before.counted_from);

    // A budget 2-3 dollars above the spend: the box is stopped within half a minute (a second or
    // so after the spend reaches it: a few percent over at this price).
    await sb.cli(['budget', '--set', String(Math.ceil(after.spent_usd + 2))]);
    await waitUntil('the budget stop', async () => (await list())[0]?.status === 'stopped', 45_000, 250);
    const [stopped] = await list();
    expect(stopped!.status_message).toMatch(/^stopped: the budget is spent/);
    const atStop = await budget();
    console.log(`budget ${atStop.limit_usd}: the box was stopped with ${atStop.spent_usd} spent (${atStop.percent_spent}%; $0.10 a second)`);
    expect(fake.instance(Number(id))?.intended_status).toBe('stopped');
    const listed = await sb.cli(['list']);
    expect(listed.stderr).toContain('The budget is spent');

    // Spent: starting it again is refused before Vast is asked.
    const starts = () => fake.requests.filter((r) => r.method === 'PUT' && r.path === `/api/v0/instances/${id}/` && (r.body as { state?: string })?.state === 'running');
    const start = await sb.cli(['start', id]);
    expect(start.code).toBe(1);
    expect(start.stderr).toContain('The budget cannot carry starting it for an hour');
    expect(starts()).toEqual([]);

    // 85% spent (the box only bills storage now): every list and MCP result warns.
    const spent = (await budget()).spent_usd;
    await sb.cli(['budget', '--set', (spent / 0.85).toFixed(2)]);
    const warnedJson = await sb.cli(['list', '--json']);
    expect(warnedJson.stderr).toMatch(/warning: 8[45]% of the budget is spent/);
    JSON.parse(warnedJson.stdout); // stdout stays one JSON document
    const transport = new StdioClientTransport({ command: process.execPath, args: [path.join(ROOT, 'dist', 'server', 'index.js')], env: sb.env as Record<string, string>, stderr: 'ignore' });
    const client = new Client({ name: 'money-e2e', version: '0' });
    await client.connect(transport);
    try {
      const got = (await client.callTool({ name: 'get_budget', arguments: {} })) as CallToolResult;
      const view = got.structuredContent as BudgetView;
      expect(view.limit_usd).toBeCloseTo(spent / 0.85, 1);
      expect(view.paid_boxes).toEqual([expect.objectContaining({ instance_id: id, billing: 'stopped' })]);
      const listedMcp = (await client.callTool({ name: 'list_instances', arguments: {} })) as CallToolResult;
      const out = listedMcp.structuredContent as { instances: InstanceView[]; warnings?: string[] };
      expect(out.warnings?.join('\n')).toMatch(/of the budget is spent/);
      expect(out.instances[0]).toMatchObject({ instance_id: id, status: 'stopped' });
    } finally {
      await client.close();
    }

    // 110%: the stopped box is destroyed too.
    await sb.cli(['budget', '--set', (spent / 1.2).toFixed(2)]);
    await waitUntil('the destroy at 110%', async () => (await list()).length === 0, 20_000, 250);
    expect(fake.instance(Number(id))).toBeUndefined();
    expect((await budget()).warnings.join('\n')).toContain('The budget is overspent');
  }, 120_000);

  it.skipIf(!boxes.ok)("the dead man's switch: never while the supervisor lives (tunnel closed or not); after kill -9 the box stops itself with its own key", async () => {
    fake.addOffer({ gpu_name: 'RTX 4090', dph_base: 0.5, storage_cost: 0.1 });
    // deadman_s 300 at scale 0.02: the box acts after 6 s without a heartbeat.
    const [made] = await sb.json<InstanceView[]>(['create', config('switch.json', { deadman_s: 300, ready_timeout_s: 300 }), '--json']);
    expect(made!.status).toBe('ready');
    const id = made!.instance_id;
    const body = fake.createBody(Number(id)) as { onstart: string; env: Record<string, string> };
    expect(body.onstart.length).toBeLessThanOrEqual(4096);
    expect(body.onstart.trimEnd().endsWith('entrypoint.sh')).toBe(true);
    for (const v of Object.values(body.env)) expect(v.length).toBeLessThanOrEqual(256);
    expect(body.env).toMatchObject({ VAI_VAST_URL: fake.url, VAI_DEADMAN_S: '6', VAI_DEADMAN_ACTION: 'stop' });

    const ownKeyCalls = () => fake.requests.filter((r) => r.path === `/api/v0/instances/${id}/` && r.authorization !== `Bearer ${KEY}`);
    expect((await sb.cli(['tunnel', '--stop', id])).code).toBe(0);
    await new Promise((r) => setTimeout(r, 10_000)); // well past 6 s: the heartbeat kept it
    expect(fake.instance(Number(id))?.intended_status).toBe('running');
    expect(ownKeyCalls()).toEqual([]);

    killSupervisor();
    const killedAt = Date.now();
    await waitUntil('the box to stop itself', () => fake.instance(Number(id))?.intended_status === 'stopped', 30_000, 100);
    const [call] = ownKeyCalls();
    console.log(`deadman_s 300 at scale 0.02 (6 s): the box stopped itself ${call!.at! - killedAt} ms after the supervisor was killed`);
    expect(call).toMatchObject({ method: 'PUT', body: { state: 'stopped' }, status: 200 });
    // deadman_s is 6 s here, less up to one heartbeat interval (0.6 s) and the script's whole-second clock.
    expect(call!.at! - killedAt).toBeGreaterThanOrEqual(4_000);

    // The next command's supervisor finds it stopped, and says why; `start` brings it back.
    await waitUntil('the census', async () => (await list())[0]?.status === 'stopped', 20_000, 250);
    const [shown] = await list();
    expect(shown!.status_message).toContain("stopped itself (dead man's switch: no word from the supervisor for deadman_s = 300 s)");
    expect(shown!.tunnel === null || shown!.tunnel.state === 'closed').toBe(true);
    expect((await sb.cli(['start', id])).code).toBe(0);
    await waitUntil('ready again', async () => (await list())[0]?.status === 'ready', 30_000, 250);
  }, 120_000);
});
