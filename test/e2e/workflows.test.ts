/**
 * Running ComfyUI workflows end to end: the built `vai-mcp-cli` (exec, oneshot, cancel, extract)
 * against `local` boxes, through their real tunnels. Outputs are checked as a user would: real
 * PNG files of the asked size and count, named <time>_<instance>_<file>, in output_dir.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InstanceView, JobView, QueueView } from '../../core/api/api.js';
import { encodePng, readPngInfo } from '../../core/simulator/png.js';
import { makeSandbox, ROOT, waitUntil, type Sandbox } from '../helpers/cli.js';

const EXAMPLES = path.join(ROOT, 'examples');
const OUTPUT_NAME = /^\d{8}_\d{6}_(local-\d+)_(.+)$/;

/** A solid-colour RGB PNG of the given size, as a user's input image. */
function inputPng(width: number, height: number): Buffer {
  const rgb = Buffer.alloc(width * height * 3, 0x80);
  return encodePng(width, height, rgb, {});
}

interface JobConfig {
  file: string;
  parameters?: Record<string, unknown>;
  output_dir: string;
}

describe('ComfyUI workflows on local boxes (CLI)', () => {
  let sb: Sandbox;
  let dir: string;
  let boxes: InstanceView[];

  /** Writes a job config in the sandbox and returns its path. */
  function job(name: string, wf: JobConfig, extra: Record<string, unknown> = {}): string {
    return sb.writeFile(name, { ...extra, workflow: wf });
  }
  function outDir(name: string): string {
    return path.join(dir, name);
  }
  async function history(port: number): Promise<Record<string, unknown>> {
    return (await fetch(`http://127.0.0.1:${port}/history`)).json() as Promise<Record<string, unknown>>;
  }

  beforeAll(async () => {
    sb = makeSandbox();
    dir = path.dirname(sb.writeFile('prompt.txt', 'a red fox in the snow, photograph\n'));
    writeFileSync(path.join(dir, 'input.png'), inputPng(200, 120));
    boxes = await sb.json<InstanceView[]>(['create', path.join(EXAMPLES, 'local.json'), '--count', '3', '--json']);
    expect(boxes.map((b) => b.status)).toEqual(['ready', 'ready', 'ready']);
  }, 60_000);
  afterAll(async () => {
    await sb.cleanup();
  });

  it('exec fills parameters (a .txt prompt, seed, size, batch) and downloads that many PNGs of that size', async () => {
    const id = boxes[0]!.instance_id;
    const cfg = job('t2i.json', {
      file: path.join(EXAMPLES, 'default_workflow_api.json'),
      parameters: { '6.text': 'prompt.txt', '3.seed': 5, '3.steps': 60, '5.batch_size': 2, '5.width': 320, '5.height': 256 },
      output_dir: './t2i-out',
    });
    const r = await sb.cli(['exec', id, cfg]);
    expect(r.code, r.stderr).toBe(0);
    const files = r.stdout.trim().split('\n');
    expect(files).toHaveLength(2);
    expect(readdirSync(outDir('t2i-out')).sort()).toEqual(files.map((f) => path.basename(f)).sort());
    for (const f of files) {
      expect(path.dirname(f)).toBe(outDir('t2i-out'));
      const m = OUTPUT_NAME.exec(path.basename(f));
      expect(m?.[1]).toBe(id);
      const png = readPngInfo(readFileSync(f));
      expect([png.width, png.height]).toEqual([320, 256]);
      const prompt = JSON.parse(png.text.prompt!) as Record<string, { inputs: Record<string, unknown> }>;
      expect(prompt['6']!.inputs.text).toBe('a red fox in the snow, photograph');
      expect(prompt['3']!.inputs.seed).toBe(5);
    }
    // Progress was shown while it ran.
    expect(r.stderr).toMatch(/job-\d+/);
    expect(r.stderr).toMatch(/node \d+ of \d+/);
  }, 60_000);

  it('exec uploads an input image: img2img output has the input\'s size, and a second run never overwrites', async () => {
    const id = boxes[0]!.instance_id;
    const cfg = job('i2i.json', {
      file: path.join(EXAMPLES, 'img2img_api.json'),
      parameters: { '10.image': 'input.png', '3.steps': 3 },
      output_dir: './i2i-out',
    });
    const first = await sb.cli(['exec', id, cfg, '--json']);
    expect(first.code, first.stderr).toBe(0);
    const view = JSON.parse(first.stdout) as JobView;
    expect(view.status).toBe('succeeded');
    expect(view.outputs).toHaveLength(1);
    const png = readPngInfo(readFileSync(view.outputs[0]!));
    expect([png.width, png.height]).toEqual([200, 120]);
    const second = await sb.cli(['exec', id, cfg]);
    expect(second.code, second.stderr).toBe(0);
    expect(readdirSync(outDir('i2i-out'))).toHaveLength(2);
  }, 60_000);

  it('runs ComfyUI\'s default graph saved in UI format, with parameters in the original toolkit\'s form', async () => {
    const id = boxes[1]!.instance_id;
    const cfg = job('ui.json', {
      file: path.join(EXAMPLES, 'default_workflow_ui.json'),
      parameters: { '3_KSampler': { node_id: 3, values: [99, 'fixed', 3, 8, 'euler', 'normal', 1] } },
      output_dir: './ui-out',
    });
    const r = await sb.cli(['exec', id, cfg, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const view = JSON.parse(r.stdout) as JobView;
    expect(view.outputs).toHaveLength(1);
    const png = readPngInfo(readFileSync(view.outputs[0]!));
    expect([png.width, png.height]).toEqual([512, 512]);
    const prompt = JSON.parse(png.text.prompt!) as Record<string, { class_type: string; inputs: Record<string, unknown> }>;
    expect(prompt['3']).toMatchObject({ class_type: 'KSampler', inputs: { seed: 99, steps: 3, cfg: 8, sampler_name: 'euler' } });
    // The UI graph travels along, as ComfyUI's own frontend sends it.
    expect(png.text.workflow).toBeDefined();
  }, 60_000);

  it('extract downloads everything the box produced (outputs and saved workflows), named <time>_<instance>_<file>', async () => {
    const id = boxes[0]!.instance_id;
    const r = await sb.cli(['extract', id, '--out', outDir('extract'), '--json']);
    expect(r.code, r.stderr).toBe(0);
    const res = JSON.parse(r.stdout) as { files: string[] };
    const names = readdirSync(outDir('extract')).filter((n) => n !== '.vai-extract.json'); // what extract keeps of what it fetched
    expect(names.sort()).toEqual(res.files.map((f) => path.basename(f)).sort());
    for (const n of names) expect(OUTPUT_NAME.exec(n)?.[1]).toBe(id);
    // 2 from text-to-image, 2 from img2img (two runs), and the box's saved workflow.
    expect(names.filter((n) => n.endsWith('.png'))).toHaveLength(4);
    const saved = names.filter((n) => n.endsWith('.json'));
    expect(saved.length).toBeGreaterThanOrEqual(1);
    expect(JSON.parse(readFileSync(path.join(outDir('extract'), saved[0]!), 'utf8'))).toHaveProperty('nodes');
  }, 60_000);

  it('three boxes run three jobs at the same time, each with its own outputs', async () => {
    const runs = boxes.map((b, i) => {
      const cfg = job(`par-${i}.json`, {
        file: path.join(EXAMPLES, 'default_workflow_api.json'),
        parameters: { '3.seed': 1000 + i, '3.steps': 40, '5.width': 64, '5.height': 64 },
        output_dir: `./par-${i}`,
      });
      return sb.cli(['exec', b.instance_id, cfg, '--json']);
    });
    const results = await Promise.all(runs);
    const views = results.map((r) => {
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as JobView;
    });
    expect(views.map((v) => v.instance_id)).toEqual(boxes.map((b) => b.instance_id));
    const bytes = views.map((v) => {
      expect(v.outputs).toHaveLength(1);
      expect(OUTPUT_NAME.exec(path.basename(v.outputs[0]!))?.[1]).toBe(v.instance_id);
      return readFileSync(v.outputs[0]!).toString('base64');
    });
    expect(new Set(bytes).size).toBe(3); // different seeds, different pictures
    // They overlapped: each job started before the others had finished.
    const spans = views.map((v) => [Date.parse(v.created_at), Date.parse(v.finished_at!)] as const);
    for (const [start] of spans) for (const [, end] of spans) expect(start).toBeLessThan(end);
  }, 60_000);

  it('cancel: --list shows the queue; a queued and a running job are cancelled, and their exec reports it', async () => {
    const id = boxes[2]!.instance_id;
    const long = job('long.json', {
      file: path.join(EXAMPLES, 'default_workflow_api.json'),
      parameters: { '3.steps': 3000, '5.width': 64, '5.height': 64 },
      output_dir: './long-out',
    });
    const running = sb.cli(['exec', id, long], { timeoutMs: 50_000 });
    let queue: QueueView | undefined;
    await waitUntil('the first job runs', async () => {
      queue = await sb.json<QueueView>(['cancel', id, '--list', '--json']);
      return queue.running.length === 1;
    }, 20_000, 200);
    const pending = sb.cli(['exec', id, long], { timeoutMs: 50_000 });
    await waitUntil('the second job is pending', async () => {
      queue = await sb.json<QueueView>(['cancel', id, '--list', '--json']);
      return queue.pending.length === 1;
    }, 20_000, 200);
    const runningJob = queue!.running[0]!.job_id!;
    const pendingJob = queue!.pending[0]!.job_id!;
    expect(runningJob).toMatch(/^job-\d+$/);
    expect(pendingJob).toMatch(/^job-\d+$/);
    const list = await sb.cli(['cancel', id, '--list']);
    expect(list.stdout).toContain(runningJob);
    expect(list.stdout).toContain(pendingJob);

    const c1 = await sb.cli(['cancel', id, pendingJob]);
    expect(c1.code, c1.stderr).toBe(0);
    expect(c1.stdout).toContain(`${pendingJob}  cancelled (was pending)`);
    const c2 = await sb.cli(['cancel', id, runningJob]);
    expect(c2.code, c2.stderr).toBe(0);
    expect(c2.stdout).toContain(`${runningJob}  cancelled (was running)`);
    for (const r of await Promise.all([running, pending])) {
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/cancelled/);
    }
    expect(existsSync(outDir('long-out'))).toBe(false);
    const after = await sb.json<QueueView>(['cancel', id, '--list', '--json']);
    expect(after.running).toHaveLength(0);
    expect(after.pending).toHaveLength(0);
  }, 60_000);

  it('bad input (malformed workflow, missing input file, unknown node id, unknown node type): clear error, exit 2, nothing queued', async () => {
    const box = boxes[1]!;
    const before = Object.keys(await history(box.tunnel!.local_port)).length;
    const broken = sb.writeFile('broken_api.json', '{ "3": { "class_type": "KSampler", ');
    const unknownType = sb.writeFile('unknown_type.json', {
      ...JSON.parse(readFileSync(path.join(EXAMPLES, 'default_workflow_api.json'), 'utf8')),
      '12': { class_type: 'SuperUpscaler9000', inputs: {} },
    });
    const cases: { name: string; wf: JobConfig; expect: RegExp }[] = [
      { name: 'malformed', wf: { file: broken, output_dir: './bad' }, expect: /broken_api\.json/ },
      { name: 'missing-file', wf: { file: path.join(EXAMPLES, 'img2img_api.json'), parameters: { '10.image': 'nope.png' }, output_dir: './bad' }, expect: /nope\.png/ },
      { name: 'unknown-node-id', wf: { file: path.join(EXAMPLES, 'default_workflow_api.json'), parameters: { '99.text': 'x' }, output_dir: './bad' }, expect: /99/ },
      { name: 'unknown-type', wf: { file: unknownType, output_dir: './bad' }, expect: /SuperUpscaler9000/ },
    ];
    for (const c of cases) {
      const r = await sb.cli(['exec', box.instance_id, job(`${c.name}.json`, c.wf)]);
      expect(r.code, `${c.name}: ${r.stderr}`).toBe(2);
      expect(r.stderr, c.name).toMatch(c.expect);
      expect(r.stdout, c.name).toBe('');
    }
    expect(Object.keys(await history(box.tunnel!.local_port)).length).toBe(before);
    const q = await sb.json<QueueView>(['cancel', box.instance_id, '--list', '--json']);
    expect(q.running.length + q.pending.length).toBe(0);
    expect(existsSync(outDir('bad'))).toBe(false);
    // A config without a workflow section, and an unknown box.
    const noWf = await sb.cli(['exec', box.instance_id, sb.writeFile('nowf.json', { provider: 'local' })]);
    expect(noWf.code).toBe(2);
    expect(noWf.stderr).toMatch(/no "workflow" section/);
    const unknownBox = await sb.cli(['exec', 'local-999', job('ok.json', { file: path.join(EXAMPLES, 'default_workflow_api.json'), output_dir: './bad' })]);
    expect(unknownBox.code).toBe(2);
  }, 60_000);

  it('oneshot --destroy runs the job on a new box and destroys the box, after success and after failure', async () => {
    mkdirSync(outDir('oneshot'), { recursive: true });
    const ok = job('oneshot-ok.json', {
      file: path.join(EXAMPLES, 'default_workflow_api.json'),
      parameters: { '3.steps': 3, '5.width': 96, '5.height': 64 },
      output_dir: './oneshot',
    }, { provider: 'local' });
    const r = await sb.cli(['oneshot', ok, '--destroy', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const view = JSON.parse(r.stdout) as JobView;
    expect(view.status).toBe('succeeded');
    expect(view.box_destroyed).toBe(true);
    expect(readPngInfo(readFileSync(view.outputs[0]!)).width).toBe(96);
    const listed = await sb.json<InstanceView[]>(['list', '--json']);
    expect(listed.map((v) => v.instance_id)).not.toContain(view.instance_id);

    const failing = job('oneshot-bad.json', {
      file: sb.writeFile('bad-type.json', { '1': { class_type: 'NoSuchNode', inputs: {} } }),
      output_dir: './oneshot',
    }, { provider: 'local' });
    const bad = await sb.cli(['oneshot', failing, '--destroy', '--json']);
    expect(bad.code).toBe(1);
    const badView = JSON.parse(bad.stdout) as JobView;
    expect(badView.status).toBe('failed');
    expect(badView.error).toMatch(/NoSuchNode/);
    expect(badView.box_destroyed).toBe(true);
    const after = await sb.json<InstanceView[]>(['list', '--json']);
    expect(after.map((v) => v.instance_id)).not.toContain(badView.instance_id);
    // The three boxes of this file are untouched.
    expect(after.map((v) => v.instance_id).sort()).toEqual(boxes.map((b) => b.instance_id).sort());
  }, 90_000);
});
