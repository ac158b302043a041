/**
 * What a new user met when trying the built CLI and MCP server from a fresh clone: help that
 * reads right, one exit-code rule, honest progress, and the commands they reached for (`job`,
 * `jobs`, an `extract` that fetches only what is new, a `demo` that reuses its boxes).
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VERSION } from '../../core/lib/version.js';
import { CLI, makeSandbox, ROOT, run, type Sandbox } from '../helpers/cli.js';
import { httpGet, instanceIdOfPage } from '../helpers/net.js';
import { bindReadOnly, mountSupport } from '../helpers/mounts.js';

const SERVER = path.join(ROOT, 'dist', 'server', 'index.js');

interface InstanceJson {
  instance_id: string;
  status: string;
  label: string;
  tunnel: { local_port: number; url: string } | null;
}
interface JobJson {
  job_id: string;
  instance_id: string;
  status: string;
  outputs: string[];
}

/** Runs the CLI and timestamps each stderr line as it arrives. */
function timedLines(sb: Sandbox, args: string[], timeoutMs = 60_000): Promise<{ code: number; stdout: string; lines: { at: number; text: string }[]; started: number }> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const child = spawn(process.execPath, [CLI, ...args], { env: sb.env, cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let partial = '';
    const lines: { at: number; text: string }[] = [];
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => {
      partial += d.toString();
      const parts = partial.split('\n');
      partial = parts.pop()!;
      for (const text of parts) lines.push({ at: Date.now(), text });
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`vai-mcp-cli ${args.join(' ')} did not finish within ${timeoutMs} ms`));
    }, timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, lines, started });
    });
  });
}

/** The longest silence on stderr from the start to the end of a run. */
function longestGap(r: { lines: { at: number }[]; started: number }): number {
  const times = [r.started, ...r.lines.map((l) => l.at)];
  return Math.max(...times.slice(1).map((t, k) => t - times[k]!));
}

describe('help, versions and exit codes', () => {
  let sb: Sandbox;
  beforeAll(() => {
    sb = makeSandbox();
  });
  afterAll(async () => {
    await sb.cleanup();
  });

  it('vai-mcp --help and --version print and exit; they never start the server', async () => {
    const help = await run(process.execPath, [SERVER, '--help'], { env: sb.env, timeoutMs: 10_000 });
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^vai-mcp \d+\.\d+\.\d+: the MCP server of vai-mcp/);
    expect(help.stdout).toContain('vai-mcp --version');
    expect(help.stderr).not.toContain('running on stdio');
    const version = await run(process.execPath, [SERVER, '--version'], { env: sb.env, timeoutMs: 10_000 });
    expect(version.code).toBe(0);
    expect(version.stdout.trim()).toBe(VERSION);
    expect(sb.supervisorPids()).toEqual([]);
  });

  it('a command\'s --help starts with what it does; --no-wait is not "(default: true)"; a usage error names the command', async () => {
    const help = await sb.cli(['create', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout.split('\n')[0]).toBe('vai-mcp-cli create: Create boxes from a config file, open their tunnels and print their URLs');
    expect(help.stdout).toMatch(/--no-wait\s+Return as soon as the boxes are asked for, without waiting until they are ready\n/);
    expect(help.stdout).not.toMatch(/--no-wait.*default: true/);
    expect(help.stdout.split('\n').every((l) => l === l.trimEnd())).toBe(true);
    const usage = await sb.cli(['create', '--bogus', 'x']);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain('Run `vai-mcp-cli create --help`.');
    expect(usage.stderr).not.toContain('<command>');
    expect((await sb.cli(['job', '--help'])).stdout.split('\n')[0]).toMatch(/^vai-mcp-cli job: Follow a job to its end/);
  });

  it('ssh-key: a missing --key is bad input (2); no usable key is 1 with or without --json', async () => {
    const missing = await sb.cli(['ssh-key', '--key', '/nonexistent/id_ed25519']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('Key file /nonexistent/id_ed25519 does not exist.');
    const plain = await sb.cli(['ssh-key']);
    expect(plain.code).toBe(1);
    const json = await sb.cli(['ssh-key', '--json']);
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout)).toMatchObject({ used: null });
  });
});

const mounts = mountSupport();

describe.skipIf(!mounts.ok)('a read-only VAI_HOME with a supervisor running', () => {
  it('list, tunnel --list, ssh-key and daemon status still answer', async () => {
    const sb = makeSandbox();
    let undo: (() => void) | undefined;
    try {
      const [made] = await sb.json<InstanceJson[]>(['create', sb.writeFile('local.json', { provider: 'local' }), '--json']);
      undo = bindReadOnly(sb.home);
      expect(() => writeFileSync(path.join(sb.home, 'probe'), 'x')).toThrow(/read-only/);
      const list = await sb.json<InstanceJson[]>(['list', '--json']);
      expect(list.map((i) => [i.instance_id, i.status])).toEqual([[made!.instance_id, 'ready']]);
      expect((await sb.json<unknown[]>(['tunnel', '--list', '--json'])).length).toBe(1);
      const key = await sb.cli(['ssh-key']);
      expect(key.code).toBe(1); // it answers: this sandbox has no key
      expect(key.stdout).toContain('No usable key');
      expect((await sb.cli(['daemon', 'status'])).code).toBe(0);
    } finally {
      undo?.();
      await sb.cleanup();
    }
  });
});

describe('progress, jobs, extract and demo', () => {
  let sb: Sandbox;
  beforeAll(() => {
    sb = makeSandbox();
  });
  afterAll(async () => {
    await sb.cleanup();
  });

  it('demo prints each line once, "ready at" for every box; run again it reuses its boxes on the same URLs and makes the missing one', async () => {
    const first = await sb.cli(['demo']);
    expect(first.code, first.stderr).toBe(0);
    const lines = first.stderr.trim().split('\n');
    expect(lines.length).toBe(new Set(lines).size);
    for (const id of ['local-1', 'local-2', 'local-3']) {
      expect(lines.filter((l) => l.startsWith(`${id}: ssh server on`))).toHaveLength(1);
      expect(lines.filter((l) => l.startsWith(`${id}: ready at`))).toHaveLength(1);
    }
    const urls = (out: string) => Object.fromEntries([...out.matchAll(/^(local-\d+)\s+(http:\/\/localhost:\d+)$/gm)].map((m) => [m[1]!, m[2]!]));
    const before = urls(first.stdout);
    expect(Object.keys(before)).toEqual(['local-1', 'local-2', 'local-3']);

    await sb.json(['tunnel', '--stop', 'local-2', '--json']);
    expect((await sb.cli(['destroy', 'local-3', '--yes'])).code).toBe(0);
    const again = await sb.cli(['demo']);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toContain('Reused local-1, local-2 (still there from an earlier demo).');
    const after = urls(again.stdout);
    expect(Object.keys(after)).toEqual(['local-1', 'local-2', 'local-4']);
    expect(after['local-1']).toBe(before['local-1']);
    expect(after['local-2']).toBe(before['local-2']);
    for (const [id, url] of Object.entries(after)) expect(instanceIdOfPage((await httpGet(Number(new URL(url).port))).body)).toBe(id);
    expect((await sb.json<InstanceJson[]>(['list', '--json'])).length).toBe(3);
  });

  it('a job names its nodes in progress, prints each line once; `job` follows it from another command and `jobs` lists it', async () => {
    const jobFile = sb.writeFile('slow-job.json', {
      workflow: { file: path.join(ROOT, 'examples', 'default_workflow_api.json'), parameters: { '3.steps': 120 }, output_dir: path.join(path.dirname(sb.home), 'out-slow') },
    });
    const queued = await sb.cli(['exec', 'local-1', jobFile, '--no-wait']);
    expect(queued.code, queued.stderr).toBe(0);
    const jobId = queued.stdout.trim();
    expect(jobId).toMatch(/^job-\d+$/);
    const followed = await sb.cli(['job', jobId]);
    expect(followed.code, followed.stderr).toBe(0);
    const lines = followed.stderr.trim().split('\n');
    expect(lines.join('\n')).toMatch(new RegExp(`^${jobId}: node \\d+ of \\d+: KSampler \\(node 3\\) \\d+%$`, 'm'));
    for (let k = 1; k < lines.length; k++) expect(lines[k], `line ${k}`).not.toBe(lines[k - 1]);
    const outputs = followed.stdout.trim().split('\n');
    expect(outputs).toHaveLength(1);
    expect(existsSync(outputs[0]!)).toBe(true);
    const view = await sb.json<JobJson>(['job', jobId, '--json']);
    expect(view).toMatchObject({ job_id: jobId, instance_id: 'local-1', status: 'succeeded', outputs });
    const jobs = await sb.json<JobJson[]>(['jobs', '--instance', 'local-1', '--json']);
    expect(jobs.map((j) => j.job_id)).toContain(jobId);
    const table = await sb.cli(['jobs']);
    expect(table.stdout).toMatch(new RegExp(`^${jobId}\\s+local-1\\s+succeeded`, 'm'));
    expect((await sb.cli(['jobs', '--instance', 'local-999'])).code).toBe(2);
    expect((await sb.cli(['job', 'job-999'])).code).toBe(2);
  });

  it('oneshot prints "queued as" once; a long wait prints an elapsed-time line at least every 10 s', async () => {
    const jobFile = sb.writeFile('oneshot.json', {
      provider: 'local',
      instance_config: { simulate: { start_delay_s: 21 } },
      workflow: { file: path.join(ROOT, 'examples', 'default_workflow_api.json'), parameters: {}, output_dir: path.join(path.dirname(sb.home), 'out-oneshot') },
    });
    const r = await timedLines(sb, ['oneshot', jobFile, '--destroy']);
    expect(r.code, r.lines.map((l) => l.text).join('\n')).toBe(0);
    const text = r.lines.map((l) => l.text);
    expect(text.filter((l) => / queued as /.test(l))).toHaveLength(1);
    expect(text.join('\n')).toMatch(/still coming up: local-\d+ \(loading, \d+ s\)|job-\d+: waiting for \d+ s/);
    console.log(`oneshot on a 21 s box: ${r.lines.length} stderr lines, longest silence ${longestGap(r)} ms`);
    expect(longestGap(r)).toBeLessThan(10_500);
  });

  it('extract fetches only what is new in that folder, never a file deleted after an earlier extract; --force fetches all', async () => {
    const out = path.join(path.dirname(sb.home), 'extracted');
    const first = await sb.cli(['extract', 'local-1', '--out', out]);
    expect(first.code, first.stderr).toBe(0);
    const got = first.stdout.trim().split('\n');
    expect(got.length).toBeGreaterThanOrEqual(2); // the job's image and the saved default workflow
    const second = await sb.cli(['extract', 'local-1', '--out', out]);
    expect(second.code).toBe(0);
    expect(second.stdout).toBe('');
    expect(second.stderr).toContain(`0 file(s) from local-1 in ${out}; ${got.length} downloaded here before were left out (--force fetches them again)`);
    rmSync(got[0]!);
    const third = await sb.cli(['extract', 'local-1', '--out', out]);
    expect(third.stdout).toBe('');
    expect(readdirSync(out).filter((f) => !f.startsWith('.'))).toHaveLength(got.length - 1);
    const manifest = JSON.parse(readFileSync(path.join(out, '.vai-extract.json'), 'utf8')) as { boxes: Record<string, Record<string, string>> };
    expect(Object.keys(manifest.boxes['local-1']!)).toHaveLength(got.length);
    const forced = await sb.cli(['extract', 'local-1', '--out', out, '--force']);
    expect(forced.stdout.trim().split('\n')).toHaveLength(got.length);
  });
});
