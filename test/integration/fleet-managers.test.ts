/**
 * The fleet's managers in process, on a fake clock and a scripted paid provider whose running
 * boxes are real SSH servers: a box watched from rented to ready, the failsafe and lifetime
 * deadlines, a supervisor restart, a destroy racing the watch, the census of ready boxes, an idle
 * stop that fails and is retried, and a job's cost.
 * Time moves only when a test moves it, so a 30-minute deadline takes milliseconds.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { InstanceView } from '../../core/api/api.js';
import { parseConfig } from '../../core/config/config.js';
import { silentLogger } from '../../core/lib/log.js';
import { Supervisor } from '../../core/supervisor/supervisor.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { canBind, httpGet } from '../helpers/net.js';
import { randomBasePort } from '../helpers/ports.js';
import { ScriptedProvider } from '../helpers/scripted-provider.js';
import { ROOT } from '../helpers/cli.js';

const env = { PATH: process.env.PATH, HOME: os.tmpdir() };

/** Waits (real time, bounded) until `cond` holds, moving the fake clock by `stepMs` each round. */
async function until(cond: () => boolean | Promise<boolean>, what: string, o: { clock?: FakeClock; stepMs?: number; timeoutMs?: number } = {}): Promise<void> {
  const end = Date.now() + (o.timeoutMs ?? 4_000);
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    if (o.clock && o.stepMs) o.clock.advance(o.stepMs);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Lets the managers act on what just happened (a few event-loop turns of real time). */
const settle = () => new Promise((r) => setTimeout(r, 100));

describe('fleet managers on a fake clock', () => {
  let dir: string;
  let home: string;
  let clock: FakeClock;
  let provider: ScriptedProvider;
  let sup: Supervisor | undefined;
  const basePort = randomBasePort();

  const start = async () => {
    sup = await Supervisor.start({ home, basePort, socketPath: path.join(dir, 'unused.sock'), log: silentLogger, env, clock, providers: () => ({ vast: provider }) });
    return sup;
  };
  const create = async (s: Supervisor, ic: Record<string, unknown> = {}) => {
    // Idle stops are off unless a test turns them on (a vast box's default is 30 min).
    const config = parseConfig({ provider: 'vast', instance_config: { ready_timeout_s: 600, idle_timeout_s: 0, ...ic } });
    const { instances } = await s.createInstances({ config }, { env });
    return instances[0]!.instance_id;
  };
  const view = (s: Supervisor, id: string): InstanceView => s.fleet.viewOf(id);

  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'vai-fleet-'));
    home = path.join(dir, 'home');
    clock = new FakeClock();
    provider = new ScriptedProvider(dir);
  });
  afterEach(async () => {
    await sup?.close();
    sup = undefined;
    await provider.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('watches a box from rented to ready: status polls on the clock, then the tunnel, then ComfyUI answering', async () => {
    const s = await start();
    const id = await create(s);
    await until(() => provider.statusCalls >= 1, 'the first status poll');
    // Loading: one poll per poll interval of the clock, not of real time.
    const before = provider.statusCalls;
    await settle();
    expect(provider.statusCalls).toBe(before);
    clock.advance(1_000);
    await until(() => provider.statusCalls === before + 1, 'the next poll after 1 s of clock');
    expect(view(s, id).status).toBe('loading');
    expect(view(s, id).tunnel).toBeNull();

    provider.state.set(id, 'running');
    await until(() => view(s, id).status === 'ready', 'ready', { clock, stepMs: 1_000 });
    const v = view(s, id);
    expect(v.tunnel?.url).toBe(`http://localhost:${v.tunnel!.local_port}`);
    const page = await httpGet(v.tunnel!.local_port, '/api/system_stats');
    expect(page.status).toBe(200);
  });

  it('destroys a box not ready by ready_timeout_s (the failsafe), and not a second earlier', async () => {
    const s = await start();
    const id = await create(s, { ready_timeout_s: 600 });
    await until(() => provider.statusCalls >= 1, 'the first status poll');
    clock.advance(599_000);
    await settle();
    expect(provider.destroyed).toEqual([]);
    expect(view(s, id).status).toBe('loading');

    clock.advance(2_000);
    await until(() => provider.destroyed.includes(id), 'the failsafe destroy');
    const v = view(s, id);
    expect(v.status).toBe('failed');
    expect(v.status_message).toContain('not ready within ready_timeout_s = 600 s');
    expect(v.status_message).toContain('destroyed by the failsafe');
    expect((await s.listInstances({}, { env })).map((x) => x.instance_id)).not.toContain(id);
  });

  it('destroys a ready box at max_lifetime_s, closing its tunnel and freeing its port', async () => {
    const s = await start();
    const id = await create(s, { max_lifetime_s: 3_600 });
    provider.state.set(id, 'running');
    await until(() => view(s, id).status === 'ready', 'ready', { clock, stepMs: 1_000 });
    const port = view(s, id).tunnel!.local_port;
    const readyAt = clock.now();
    // Created a few clock seconds before it was ready: move to one second short of the limit.
    clock.advance(3_600_000 - (readyAt - Date.parse(view(s, id).created_at)) - 1_000);
    await settle();
    expect(provider.destroyed).toEqual([]);
    expect(view(s, id).status).toBe('ready');

    clock.advance(2_000);
    await until(() => provider.destroyed.includes(id), 'the lifetime destroy');
    expect(view(s, id).status_message).toBe('max_lifetime_s = 3600 s reached; the box was destroyed');
    expect(await s.listTunnels({})).toEqual([]);
    await until(() => canBind(port), `port ${port} to be free`);
  });

  it('after a restart, follows a box that was coming up to ready, on the same deadline', async () => {
    let s = await start();
    const id = await create(s);
    await until(() => provider.statusCalls >= 1, 'the first status poll');
    const deadline = s.boxes.record(id).ready_deadline;
    await s.close();
    sup = undefined;

    provider.state.set(id, 'running'); // it kept coming up while no supervisor ran
    s = await start();
    expect(s.boxes.record(id).ready_deadline).toBe(deadline);
    await until(() => view(s, id).status === 'ready', 'ready after the restart', { clock, stepMs: 1_000 });
    expect((await httpGet(view(s, id).tunnel!.local_port, '/api/system_stats')).status).toBe(200);
  });

  it('after a restart past a box\'s ready deadline, the failsafe acts at once', async () => {
    let s = await start();
    const id = await create(s, { ready_timeout_s: 600 });
    await s.close();
    sup = undefined;

    clock.advance(601_000); // the supervisor was down while the deadline passed
    s = await start();
    await until(() => provider.destroyed.includes(id), 'the failsafe destroy at start');
    expect(view(s, id).status).toBe('failed');
  });

  it('a destroy while the watch waits on the provider leaves no tunnel and no port behind', async () => {
    const s = await start();
    let release!: () => void;
    provider.hold = new Promise((r) => (release = r));
    const id = await create(s);
    await until(() => provider.statusCalls >= 1, 'the watch to ask for the status');

    const destroyed = await s.destroyInstance({ instance_id: id }, { env });
    expect(destroyed.destroyed).toBe(true);
    // The provider answers late, and says the box is up: the watch must not bring it back.
    provider.state.set(id, 'running');
    provider.hold = undefined;
    release();
    for (let i = 0; i < 5; i++) {
      clock.advance(1_000);
      await settle();
    }
    expect(await s.listTunnels({})).toEqual([]);
    expect(s.boxes.store.tunnels.values()).toEqual([]);
    expect(s.boxes.store.instances.has(id)).toBe(false);
    expect(view(s, id).status).toBe('destroyed');
  });

  it('the census notices a ready box that is gone or stopped outside vai-mcp, and closes its tunnel', async () => {
    const s = await start();
    const gone = await create(s);
    const paused = await create(s);
    provider.state.set(gone, 'running');
    provider.state.set(paused, 'running');
    await until(() => view(s, gone).status === 'ready' && view(s, paused).status === 'ready', 'both ready', { clock, stepMs: 1_000 });
    const port = view(s, gone).tunnel!.local_port;
    clock.advance(31_000); // a census now finds both well; the next is due 30 s of clock later
    await settle();

    provider.state.set(gone, 'gone');
    await provider.kill(gone);
    provider.state.set(paused, 'stopped');
    clock.advance(29_000);
    await settle();
    expect(view(s, gone).status).toBe('ready'); // the census is every 30 s of clock

    clock.advance(2_000);
    await until(() => view(s, gone).status === 'failed' && view(s, paused).status === 'stopped', 'the census');
    expect(view(s, gone).status_message).toBe('the instance no longer exists on the account');
    expect(view(s, paused).status_message).toContain('stopped outside vai-mcp');
    for (const id of [gone, paused]) expect(view(s, id).tunnel?.state).not.toBe('up');
    await until(() => canBind(port), `port ${port} to be free of the gone box's listener`);
  });

  it('an idle stop that fails is retried every minute and shown in the list and in every result, until it succeeds', async () => {
    const s = await start();
    const id = await create(s, { idle_timeout_s: 600 });
    provider.state.set(id, 'running');
    await until(() => view(s, id).status === 'ready', 'ready', { clock, stepMs: 1_000 });
    await until(() => view(s, id).idle_action_at !== null, 'the idle watch', { clock, stepMs: 1_000 });
    provider.failStops = 'the provider refused the key';
    clock.advance(601_000);
    await until(() => provider.stopCalls === 1 && (view(s, id).status_message ?? '').includes('failed'), 'the first attempt');
    expect(view(s, id).status).toBe('ready');
    expect(view(s, id).status_message).toBe(`the idle stop of ${id} failed (the provider refused the key); it is tried again every minute`);
    expect(await s.moneyWarnings({})).toEqual([view(s, id).status_message]);

    clock.advance(30_000);
    await settle();
    expect(provider.stopCalls).toBe(1); // not before a minute
    clock.advance(31_000);
    await until(() => provider.stopCalls === 2, 'the retry');

    provider.failStops = undefined;
    clock.advance(61_000);
    await until(() => view(s, id).status === 'stopped', 'the stop that succeeds');
    expect(view(s, id).status_message).toMatch(/^stopped after \d+ min \d+ s idle \(idle_timeout_s = 600\), saving \$0\.500\/h/);
    expect(await s.moneyWarnings({})).toEqual([]);
  });

  it("a job's cost is its running time at its box's price", async () => {
    const s = await start();
    const id = await create(s);
    provider.state.set(id, 'running');
    await until(() => view(s, id).status === 'ready', 'ready', { clock, stepMs: 1_000 });
    const workflow = { file: path.join(ROOT, 'examples', 'default_workflow_api.json'), parameters: { '3.steps': 100 }, output_dir: path.join(dir, 'out') };
    const job = await s.runWorkflow({ instance_id: id, workflow, wait_s: 30 }, { env });
    expect(job.status).toBe('succeeded');
    const hours = (Date.parse(job.finished_at!) - Date.parse(job.created_at)) / 3_600_000;
    expect(job.cost_usd).toBeGreaterThan(0);
    expect(job.cost_usd).toBeCloseTo(0.5 * hours, 5); // to a millionth of a dollar
  });
});
