/**
 * Idle stops on `local` boxes with a 10 s window, on the real clock: a box with requests through
 * its tunnel stays (also through another app of the box), so does one running a job; one with only an open, silent websocket is warned
 * at half the window, then stopped once, 10 s after it was last used; one with idle_action
 * "destroy" is destroyed and its port freed; a job that reports no progress (its tunnel was
 * closed under it) does not keep its box up; work queued on its ComfyUI by someone else does.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { InstanceView } from '../../core/api/api.js';
import { parseConfig } from '../../core/config/config.js';
import type { Logger } from '../../core/lib/log.js';
import { Supervisor } from '../../core/supervisor/supervisor.js';
import { ROOT } from '../helpers/cli.js';
import { canBind, httpGet } from '../helpers/net.js';
import { randomBasePort } from '../helpers/ports.js';

const env = { PATH: process.env.PATH, HOME: os.tmpdir() };
const WORKFLOW = path.join(ROOT, 'examples', 'default_workflow_api.json');

/** The supervisor's log lines, to count what it did. */
function recordingLogger(lines: string[]): Logger {
  const log: Logger = {
    debug: () => undefined,
    info: (m) => void lines.push(`info ${m}`),
    warn: (m) => void lines.push(`warn ${m}`),
    error: (m) => void lines.push(`error ${m}`),
    child: () => log,
  };
  return log;
}

async function until(cond: () => boolean | Promise<boolean>, what: string, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('idle stops (local boxes, idle_timeout_s = 10)', () => {
  let dir: string;
  let sup: Supervisor;
  let lines: string[];
  const timers: NodeJS.Timeout[] = [];
  const sockets: WebSocket[] = [];

  beforeEach(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'vai-idle-'));
    lines = [];
    sup = await Supervisor.start({ home: path.join(dir, 'home'), basePort: randomBasePort(), socketPath: path.join(dir, 'unused.sock'), log: recordingLogger(lines), env });
  });
  afterEach(async () => {
    for (const t of timers.splice(0)) clearInterval(t);
    for (const s of sockets.splice(0)) s.terminate();
    await sup.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const create = async (count: number, ic: Record<string, unknown>): Promise<InstanceView[]> => {
    const config = parseConfig({ provider: 'local', instance_config: { idle_timeout_s: 10, ...ic } });
    const { instances } = await sup.createInstances({ config, count }, { env });
    return sup.waitForInstances({ instance_ids: instances.map((v) => v.instance_id), timeout_s: 30 });
  };
  const view = (id: string) => sup.fleet.viewOf(id);
  const job = (id: string, steps: number) =>
    sup.runWorkflow({ instance_id: id, workflow: { file: WORKFLOW, parameters: { '3.steps': steps }, output_dir: path.join(dir, 'out') }, wait_s: 0 }, { env });

  it('keeps boxes with traffic or a running job, stops a silent one once at 10 s, destroys one that asks for it and frees its port', async () => {
    const [used, busy, silent] = await create(3, {});
    const [doomed] = await create(1, { idle_action: 'destroy' });
    const [viaPortal] = await create(1, { ports: { portal: 11111 } });
    const t0 = Date.now();
    const port = (v: InstanceView | undefined) => v!.tunnel!.local_port;

    // A request every 2 s through the first box's tunnel; a 1000-step job (15 s) on the second;
    // only an open websocket that sends nothing on the third.
    timers.push(setInterval(() => void httpGet(port(used), '/').catch(() => undefined), 2_000));
    // Requests to another app of a box are use of the box too.
    timers.push(setInterval(() => void httpGet(viaPortal!.tunnel!.apps.portal!.local_port, '/').catch(() => undefined), 2_000));
    await job(busy!.instance_id, 1000);
    const ws = new WebSocket(`ws://127.0.0.1:${port(silent)}/ws?clientId=idle-test`);
    sockets.push(ws);
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));

    // Halfway: the silent box is counted idle and warned, with the time its stop is due.
    await until(() => (view(silent!.instance_id).status_message ?? '').includes('will be stopped'), 'the warning at half the window', 10_000);
    const warned = view(silent!.instance_id);
    expect(warned.idle_s).toBeGreaterThanOrEqual(4);
    const dueAt = Date.parse(warned.idle_action_at!);
    expect(dueAt - t0).toBeGreaterThan(8_000);
    expect(dueAt - t0).toBeLessThan(12_000);
    expect(view(busy!.instance_id).idle_s).toBeNull();
    expect(view(busy!.instance_id).idle_action_at).toBeNull();
    expect(view(used!.instance_id).idle_s ?? 0).toBeLessThan(4);

    await until(() => view(silent!.instance_id).status === 'stopped' && !sup.boxes.store.instances.has(doomed!.instance_id), 'the idle stop and the idle destroy', 15_000);
    const stoppedAfter = Date.now() - t0;
    console.log(`idle_timeout_s 10: the silent box was stopped and the idle one destroyed ${stoppedAfter} ms after the last use`);
    expect(stoppedAfter).toBeGreaterThanOrEqual(9_500);
    expect(stoppedAfter).toBeLessThan(14_000);
    expect(view(silent!.instance_id).status_message).toMatch(/^stopped after \d+ s idle \(idle_timeout_s = 10\)/);
    expect(await canBind(port(doomed))).toBe(true);
    expect(view(used!.instance_id).status).toBe('ready');
    expect(view(viaPortal!.instance_id).status).toBe('ready');
    expect(view(busy!.instance_id).status).toBe('ready');
    expect(sup.jobs.list(busy!.instance_id)[0]!.status).toBe('running');

    // Once: a few more sweeps change nothing for it, and the log names each action one time.
    await new Promise((r) => setTimeout(r, 3_000));
    expect(lines.filter((l) => l.includes(`${silent!.instance_id}: idle for`) && l.includes('stopped it'))).toHaveLength(1);
    expect(lines.filter((l) => l.includes(`${doomed!.instance_id}: idle for`) && l.includes('destroyed it'))).toHaveLength(1);
    expect(view(used!.instance_id).status).toBe('ready');
  }, 60_000);

  it('a job that reports no progress for the whole window does not keep its box up', async () => {
    const [box] = await create(1, {});
    const id = box!.instance_id;
    // 10,000 steps (150 s): it runs on the box, but with its tunnel closed no progress reaches us.
    const started = await job(id, 10_000);
    await until(() => sup.jobs.view(started.job_id).status === 'running', 'the job running', 10_000);
    await sup.stopTunnel({ instance_id: id });
    const closedAt = Date.now();
    expect(sup.jobs.activeOn(id)).toHaveLength(1);
    await until(() => view(id).status === 'stopped', 'the idle stop of the hung box', 20_000);
    console.log(`a job with no progress: its box was stopped ${Date.now() - closedAt} ms after its last progress`);
    expect(Date.now() - closedAt).toBeGreaterThanOrEqual(8_000);
    expect(view(id).status_message).toContain('idle');
  }, 60_000);

  it('work on its ComfyUI queue that is not ours (queued from elsewhere) keeps it up', async () => {
    const [box] = await create(1, {});
    const port = box!.tunnel!.local_port;
    // One request queues a 1000-step prompt (15 s); nothing else reaches the box after it.
    const prompt = JSON.parse(readFileSync(WORKFLOW, 'utf8')) as Record<string, { inputs: Record<string, unknown> }>;
    prompt['3']!.inputs.steps = 1000;
    const queued = await fetch(`http://127.0.0.1:${port}/prompt`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ prompt, client_id: 'someone-else' }) });
    expect(queued.status).toBe(200);
    const t0 = Date.now();
    await new Promise((r) => setTimeout(r, 12_000));
    expect(view(box!.instance_id).status).toBe('ready');
    expect(view(box!.instance_id).idle_s).toBeNull();
    // Once the queue is empty, the window starts again: stopped 10 s after the prompt's end.
    await until(() => view(box!.instance_id).status === 'stopped', 'the idle stop after the queue emptied', 30_000);
    expect(Date.now() - t0).toBeGreaterThan(20_000);
    console.log(`a 15 s prompt queued from elsewhere: its box was stopped ${Date.now() - t0} ms after it was queued`);
  }, 60_000);
});
