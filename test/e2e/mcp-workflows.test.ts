/**
 * run_workflow, get_job and cancel_job through the built `vai-mcp` bin over stdio, on a `local`
 * box: what an agent sees (job ids at once, progress, local output paths, small images inline).
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type JobView } from '../../core/api/api.js';
import { readPngInfo } from '../../core/simulator/png.js';
import { makeSandbox, ROOT, waitUntil, type Sandbox } from '../helpers/cli.js';
import { isJobDone } from '../../core/model/job.js';

const SERVER = path.join(ROOT, 'dist', 'server', 'index.js');
const EXAMPLES = path.join(ROOT, 'examples');

describe('workflow tools over stdio', () => {
  let sb: Sandbox;
  let client: Client;
  let transport: StdioClientTransport;
  let instanceId: string;
  let dir: string;

  async function call(name: string, args: Record<string, unknown>, onprogress?: (m: string) => void): Promise<CallToolResult> {
    return (await client.callTool({ name, arguments: args }, undefined, { onprogress: (p) => onprogress?.(p.message ?? ''), timeout: 55_000 })) as CallToolResult;
  }
  const jobOf = (r: CallToolResult) => (r.structuredContent as { job: JobView }).job;

  beforeAll(async () => {
    sb = makeSandbox();
    dir = path.dirname(sb.writeFile('prompt.txt', 'a lighthouse at night'));
    transport = new StdioClientTransport({ command: process.execPath, args: [SERVER], env: sb.env as Record<string, string>, stderr: 'pipe', cwd: dir });
    client = new Client({ name: 'e2e', version: '0' });
    await client.connect(transport);
    const created = await call('create_instance', { provider: 'local', request_id: 'wf-1', wait_s: 40 });
    expect(created.isError, JSON.stringify(created.content)).toBeFalsy();
    instanceId = (created.structuredContent as { instances: { instance_id: string }[] }).instances[0]!.instance_id;
  }, 60_000);
  afterAll(async () => {
    await client?.close().catch(() => undefined);
    await sb.cleanup();
  });

  it('lists the workflow tools', async () => {
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name)).toEqual(expect.arrayContaining(['run_workflow', 'get_job', 'cancel_job']));
  });

  it('run_workflow with relative paths runs the job with progress; get_job gives local paths and the image inline', async () => {
    const cfg = sb.writeFile('job.json', {
      workflow: { file: path.join(EXAMPLES, 'default_workflow_api.json'), parameters: { '6.text': 'prompt.txt', '3.steps': 60, '5.width': 128, '5.height': 96 }, output_dir: './mcp-out' },
    });
    const progress: string[] = [];
    const r = await call('run_workflow', { instance_id: instanceId, config_path: path.basename(cfg), wait_s: 40 }, (m) => progress.push(m));
    expect(r.isError, JSON.stringify(r.content)).toBeFalsy();
    const job = jobOf(r);
    expect(job.job_id).toMatch(/^job-\d+$/);
    expect(job.status).toBe('succeeded');
    expect(job.outputs).toHaveLength(1);
    expect(path.dirname(job.outputs[0]!)).toBe(path.join(dir, 'mcp-out'));
    const png = readPngInfo(readFileSync(job.outputs[0]!));
    expect([png.width, png.height]).toEqual([128, 96]);
    expect(JSON.parse(png.text.prompt!)['6'].inputs.text).toBe('a lighthouse at night');
    expect(progress.some((m) => /node \d+ of \d+: KSampler \(node 3\) \d+%/.test(m)), progress.join('\n')).toBe(true);
    for (let k = 1; k < progress.length; k++) expect(progress[k], `notification ${k}`).not.toBe(progress[k - 1]);

    const again = await call('get_job', { job_id: job.job_id });
    expect(jobOf(again)).toMatchObject({ job_id: job.job_id, status: 'succeeded', outputs: job.outputs });
    const image = again.content.find((c) => c.type === 'image') as { data: string; mimeType: string } | undefined;
    expect(image?.mimeType).toBe('image/png');
    expect(Buffer.from(image!.data, 'base64').equals(readFileSync(job.outputs[0]!))).toBe(true);
  }, 60_000);

  it('run_workflow with wait_s 0 answers at once; cancel_job stops it; get_job then says cancelled', async () => {
    const r = await call('run_workflow', {
      instance_id: instanceId,
      workflow_file: path.join(EXAMPLES, 'default_workflow_api.json'),
      parameters: { '3.steps': 3000, '5.width': 64, '5.height': 64 },
      output_dir: path.join(dir, 'never'),
      wait_s: 0,
    });
    expect(r.isError, JSON.stringify(r.content)).toBeFalsy();
    const job = jobOf(r);
    expect(['queued', 'running']).toContain(job.status);
    expect((r.structuredContent as { summary: string }).summary).toMatch(/get_job/);
    await waitUntil('the job runs', async () => jobOf(await call('get_job', { job_id: job.job_id })).status === 'running', 20_000, 100);
    const c = await call('cancel_job', { instance_id: instanceId, job_id: job.job_id });
    expect(c.isError, JSON.stringify(c.content)).toBeFalsy();
    expect((c.structuredContent as { cancelled: { job_id: string; was: string }[] }).cancelled).toEqual([expect.objectContaining({ job_id: job.job_id, was: 'running' })]);
    const end = jobOf(await call('get_job', { job_id: job.job_id, wait_s: 20 }));
    expect(end.status).toBe('cancelled');
    expect(existsSync(path.join(dir, 'never'))).toBe(false);
  }, 60_000);

  it('get_job follows a job that a CLI started and left (exec --no-wait): the record lives in the supervisor', async () => {
    const cfg = sb.writeFile('cli-job.json', {
      workflow: { file: path.join(EXAMPLES, 'default_workflow_api.json'), parameters: { '3.steps': 80, '5.width': 64, '5.height': 64 }, output_dir: './cli-out' },
    });
    const started = await sb.cli(['exec', instanceId, cfg, '--no-wait', '--json']);
    expect(started.code, started.stderr).toBe(0);
    const cliJob = JSON.parse(started.stdout) as JobView;
    expect(isJobDone(cliJob.status)).toBe(false); // the CLI has exited; the job has not ended
    const end = jobOf(await call('get_job', { job_id: cliJob.job_id, wait_s: 30 }));
    expect(end.status).toBe('succeeded');
    expect(end.outputs).toHaveLength(1);
    expect(path.dirname(end.outputs[0]!)).toBe(path.join(dir, 'cli-out'));
    expect(readPngInfo(readFileSync(end.outputs[0]!)).width).toBe(64);
  }, 60_000);

  it('bad input is an error result that names the problem; an unknown job id too', async () => {
    const r = await call('run_workflow', { instance_id: instanceId, workflow_file: path.join(EXAMPLES, 'img2img_api.json'), parameters: { '10.image': 'missing.png' }, wait_s: 0 });
    expect(r.isError).toBe(true);
    expect(JSON.stringify(r.content)).toMatch(/missing\.png/);
    const g = await call('get_job', { job_id: 'job-4242' });
    expect(g.isError).toBe(true);
    expect(JSON.stringify(g.content)).toMatch(/job-4242/);
  }, 60_000);
});
