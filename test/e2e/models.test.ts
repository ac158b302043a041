/**
 * Models and node packs put on `local` boxes, end to end through the built bins: a template-style
 * UI workflow (its checkpoint named with a URL in `properties.models`, as ComfyUI's templates do)
 * runs with one `exec` on a fresh box, the model downloaded first from a local HTTP server (resumed
 * after a cut); a model with no URL is refused before anything is queued; a token goes only to its
 * host and into no log; a node pack from a (stand-in) Comfy registry is installed and loaded by a
 * restart; `create` with `models` is ready only once the box has them; prepare_instance over MCP.
 * And an `ssh` box (a real sshd; the box's own curl fetches): the token, a checksum refused.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InstanceView, JobView, ModelsView } from '../../core/api/api.js';
import { makeSandbox, ROOT, waitUntil, type Sandbox } from '../helpers/cli.js';
import { makeNodePackRepo, startModelServer, type ModelServer } from '../helpers/model-server.js';
import { freePort, startSshd, type SshdHandle } from '../helpers/sshd.js';

const MiB = 1024 * 1024;
const EXAMPLES = path.join(ROOT, 'examples');
const SERVER = path.join(ROOT, 'dist', 'server', 'index.js');

function sha256File(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

/** The example template workflow with its model URL pointing at `url` and the checkpoint named `name`. */
function templateWith(name: string, url: string): unknown {
  const wf = JSON.parse(readFileSync(path.join(EXAMPLES, 'template_ui.json'), 'utf8')) as { nodes: { type: string; widgets_values: unknown[]; properties: Record<string, unknown> }[] };
  const loader = wf.nodes.find((n) => n.type === 'CheckpointLoaderSimple')!;
  loader.widgets_values = [name];
  loader.properties.models = [{ name, url, directory: 'checkpoints' }];
  return wf;
}

describe('models and node packs on local boxes', () => {
  let sb: Sandbox;
  let server: ModelServer;
  let id: string;
  const packs: { cleanup(): void }[] = [];

  const boxTree = (boxId: string) => path.join(sb.home, 'local', boxId, 'ComfyUI');

  beforeAll(async () => {
    server = await startModelServer();
    sb = makeSandbox({ VAI_COMFY_REGISTRY_URL: `http://127.0.0.1:${server.port}` });
    const [box] = await sb.json<InstanceView[]>(['create', sb.writeFile('local.json', { provider: 'local' }), '--json']);
    id = box!.instance_id;
  });
  afterAll(async () => {
    await sb?.cleanup();
    await server?.close();
    for (const p of packs) p.cleanup();
  });

  it('runs a template-style workflow on a fresh box with one exec: the missing model is downloaded first (resumed after a cut), then the job runs', async () => {
    const name = 'vai-template-model.safetensors';
    server.files.set(name, { size: 24 * MiB, cutOnceAt: 10 * MiB });
    const before = await sb.json<ModelsView>(['models', id, '--json']);
    expect(before.folders.checkpoints).toEqual(['v1-5-pruned-emaonly-fp16.safetensors']);

    const wf = sb.writeFile('template.json', templateWith(name, server.url(name)));
    const job = sb.writeFile('template-job.json', { workflow: { file: wf, parameters: { '6.text': 'a lighthouse', '3.seed': 7 }, output_dir: path.join(path.dirname(wf), 'out-template') } });
    const t0 = Date.now();
    const r = await sb.cli(['exec', id, job], { timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(0);
    console.log(`exec with a 24 MiB model to fetch (cut once at 10 MiB): done in ${Date.now() - t0} ms`);
    expect(r.stderr).toContain(`${id} needs 1 model file (checkpoints/${name}) that the box lacks`);
    expect(r.stderr).toMatch(/succeeded: 1 file\(s\)/);
    expect(r.stdout.trim().split('\n')).toHaveLength(1);
    expect(existsSync(r.stdout.trim())).toBe(true);

    // The file is on the box, whole, fetched as one cut transfer plus one resumed from the cut.
    expect(sha256File(path.join(boxTree(id), 'models', 'checkpoints', name))).toBe(server.sha256(name));
    const ranges = server.fileRequests(name).map((q) => q.range);
    expect(ranges).toHaveLength(2);
    expect(ranges[0]).toBeUndefined();
    // Resumed from what had arrived when the cut came (bytes in flight are lost with the socket).
    const resumedAt = Number(/^bytes=(\d+)-$/.exec(ranges[1] ?? '')?.[1]);
    expect(resumedAt).toBeGreaterThan(9 * MiB);
    expect(resumedAt).toBeLessThanOrEqual(10 * MiB);
    const after = await sb.json<ModelsView>(['models', id, '--json']);
    expect(after.folders.checkpoints).toEqual(['v1-5-pruned-emaonly-fp16.safetensors', name]);
    const table = await sb.cli(['models', id]);
    expect(table.stdout).toMatch(new RegExp(`checkpoints\\s+${name.replace(/\./g, '\\.')}`));

    // A second run finds the model there: nothing is fetched again.
    const again = await sb.cli(['exec', id, job], { timeoutMs: 60_000 });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).not.toContain('needs 1 model file');
    expect(server.fileRequests(name)).toHaveLength(2);
  });

  it('refuses a workflow whose model is on no box and has no URL, before anything is queued', async () => {
    const api = JSON.parse(readFileSync(path.join(EXAMPLES, 'default_workflow_api.json'), 'utf8')) as Record<string, { inputs: Record<string, unknown> }>;
    api['4']!.inputs.ckpt_name = 'nowhere-to-be-found.safetensors';
    const job = sb.writeFile('no-url-job.json', { workflow: { file: sb.writeFile('no-url.json', api) } });
    const jobsBefore = (await sb.json<JobView[]>(['jobs', '--json'])).length;
    const [tunnel] = await sb.json<{ local_port: number }[]>(['tunnel', '--list', '--json']);
    const promptsOnBox = async () => Object.keys((await (await fetch(`http://127.0.0.1:${tunnel!.local_port}/history`)).json()) as object).length;
    const before = await promptsOnBox();
    expect(before).toBeGreaterThan(0);
    const r = await sb.cli(['exec', id, job]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('nowhere-to-be-found.safetensors (named by node 4 (CheckpointLoaderSimple)) is not on the box and has no URL');
    expect(r.stderr).toContain('instance_config.models');
    expect(await sb.json<JobView[]>(['jobs', '--json'])).toHaveLength(jobsBefore);
    expect(await promptsOnBox(), 'nothing was queued on the box').toBe(before);
  });

  it('sends HF_TOKEN only to its host, not to the host a redirect names, and writes it to no log or box file', async () => {
    const name = 'gated-lora.safetensors';
    const secret = 'hf_e2eSecretToken987654321';
    server.files.set(name, { size: 3 * MiB });
    const cfg = sb.writeFile('gated.json', { instance_config: { models: [{ url: server.redirectUrl(name, 'localhost'), dir: 'loras', name, sha256: server.sha256(name) }] } });
    const env = { HF_TOKEN: secret, VAI_TOKEN_HOSTS_FOR_TESTS: `HF_TOKEN=127.0.0.1:${server.port}` };
    const r = await sb.cli(['prepare', id, cfg], { env, timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`has every model and node pack asked for`);
    expect(server.seen.find((q) => q.path.startsWith('/redirect/') && q.path.endsWith(name))?.authorization).toBe(`Bearer ${secret}`);
    expect(server.fileRequests(name).at(-1)).toMatchObject({ host: `localhost:${server.port}`, authorization: undefined });
    expect(sha256File(path.join(boxTree(id), 'models', 'loras', name))).toBe(server.sha256(name));
    expect(readFileSync(path.join(sb.home, 'supervisor.log'), 'utf8')).not.toContain(secret);
    for (const f of readdirSync(boxTree(id), { recursive: true, withFileTypes: true }).filter((e) => e.isFile())) {
      expect(readFileSync(path.join(f.parentPath, f.name)).includes(secret), f.name).toBe(false);
    }
  });

  it('installs a node pack a UI workflow names by cnr_id (through the registry), restarts ComfyUI, and runs the node', async () => {
    const pack = makeNodePackRepo('vai-test-pack', ['VaiTestSharpen']);
    packs.push(pack);
    server.registry.set('vai-test-pack', pack.url);
    const wf = JSON.parse(readFileSync(path.join(EXAMPLES, 'default_workflow_ui.json'), 'utf8')) as { nodes: Record<string, unknown>[]; links: unknown[][]; last_node_id: number; last_link_id: number };
    // VAEDecode (8) -> VaiTestSharpen (20) -> SaveImage (9): the decode's link is re-pointed.
    const link = wf.links.find((l) => l[3] === 9)!;
    link[3] = 20;
    link[4] = 0;
    wf.links.push([99, 20, 0, 9, 0, 'IMAGE']);
    wf.nodes.push({ id: 20, type: 'VaiTestSharpen', pos: [0, 0], size: [200, 60], flags: {}, order: 7, mode: 0, inputs: [{ name: 'image', type: 'IMAGE', link: link[0] }], outputs: [{ name: 'IMAGE', type: 'IMAGE', links: [99] }], properties: { cnr_id: 'vai-test-pack', ver: '1.0.0' }, widgets_values: [] });
    const save = wf.nodes.find((n) => n.id === 9) as { inputs: { link: number }[] };
    save.inputs[0]!.link = 99;
    const job = sb.writeFile('pack-job.json', { workflow: { file: sb.writeFile('pack.json', wf), output_dir: path.join(path.dirname(sb.writeFile('x', '')), 'out-pack') } });
    const r = await sb.cli(['exec', id, job], { timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('1 node pack (registry:vai-test-pack@1.0.0)');
    expect(r.stderr).toMatch(/succeeded: 1 file\(s\)/);
    expect(existsSync(path.join(boxTree(id), 'custom_nodes', 'vai-test-pack', '__init__.py'))).toBe(true);
    expect(server.seen.some((q) => q.path === '/nodes/vai-test-pack')).toBe(true);
    const logs = await sb.cli(['logs', id]);
    expect(logs.stdout).toContain('ComfyUI restarted');
  });

  it('a create with instance_config.models is ready only once the box has them', async () => {
    const name = 'create-time.safetensors';
    server.files.set(name, { size: 6 * MiB });
    const cfg = sb.writeFile('with-models.json', { provider: 'local', instance_config: { models: [{ url: server.url(name), dir: 'vae' }] } });
    const r = await sb.cli(['create', cfg, '--json'], { timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(0);
    const [box] = JSON.parse(r.stdout) as InstanceView[];
    expect(box!.status).toBe('ready');
    expect(r.stderr).toContain(`needs 1 model file (vae/${name})`);
    expect(sha256File(path.join(boxTree(box!.instance_id), 'models', 'vae', name))).toBe(server.sha256(name));
    expect((await sb.json<ModelsView>(['models', box!.instance_id, '--json'])).folders.vae).toEqual([name]);
  });

  it('the ready deadline waits while a download moves: a box whose model takes longer than ready_timeout_s still becomes ready', async () => {
    const slow = await startModelServer({ rateBytesPerS: 400_000 });
    try {
      const name = 'slow.safetensors';
      slow.files.set(name, { size: 3 * MiB }); // about 8 s at 400 KB/s, past ready_timeout_s = 5
      const cfg = sb.writeFile('slow.json', { provider: 'local', instance_config: { ready_timeout_s: 5, models: [{ url: slow.url(name), dir: 'checkpoints' }] } });
      const t0 = Date.now();
      const r = await sb.cli(['create', cfg, '--json'], { timeoutMs: 60_000 });
      const took = Date.now() - t0;
      expect(r.code, r.stderr).toBe(0);
      const [box] = JSON.parse(r.stdout) as InstanceView[];
      expect(box!.status).toBe('ready');
      expect(took).toBeGreaterThan(6_000);
      expect(r.stderr).toMatch(/downloading checkpoints\/slow\.safetensors: [\d.]+ of 3\.1 MB, [\d.]+ MB\/s/);
      expect(r.stderr).toContain('ready_timeout_s waits while this moves');
      console.log(`a 3 MiB model at 400 KB/s with ready_timeout_s = 5: ready after ${took} ms`);
    } finally {
      await slow.close();
    }
  });

  it('a box destroyed while its model downloads stops the download and leaves nothing of the box behind', async () => {
    const slow = await startModelServer({ rateBytesPerS: 300_000 });
    try {
      const name = 'abandoned.safetensors';
      slow.files.set(name, { size: 6 * MiB }); // ~20 s at 300 KB/s
      const cfg = sb.writeFile('abandoned.json', { provider: 'local', instance_config: { models: [{ url: slow.url(name), dir: 'checkpoints' }] } });
      const [box] = JSON.parse((await sb.cli(['create', cfg, '--json', '--no-wait'])).stdout) as InstanceView[];
      const boxId = box!.instance_id;
      await waitUntil('the download moves', () => slow.bytesSent > 300_000, 15_000, 100);
      expect((await sb.cli(['destroy', boxId, '--yes'])).code).toBe(0);
      const sentAtDestroy = slow.bytesSent;
      await new Promise((r) => setTimeout(r, 3000));
      expect(slow.bytesSent - sentAtDestroy, 'bytes sent after the destroy').toBeLessThan(1.5 * 300_000);
      expect(existsSync(path.join(sb.home, 'local', boxId)), 'the box folder is gone').toBe(false);
    } finally {
      await slow.close();
    }
  });

  it('two preparations of one box at once share its 2 download slots', async () => {
    const slow = await startModelServer({ rateBytesPerS: 1_000_000 });
    try {
      const lists = [0, 1].map((k) => [0, 1].map((j) => {
        const name = `slot-${k}-${j}.safetensors`;
        slow.files.set(name, { size: 1 * MiB });
        return { url: slow.url(name), dir: 'loras' };
      }));
      const runs = lists.map((models, k) => sb.cli(['prepare', id, sb.writeFile(`slots-${k}.json`, { instance_config: { models } })], { timeoutMs: 60_000 }));
      for (const r of await Promise.all(runs)) expect(r.code, r.stderr).toBe(0);
      expect(slow.fileRequests('slot-0-0.safetensors').length + slow.fileRequests('slot-1-1.safetensors').length).toBe(2);
      expect(slow.maxActive, 'downloads at once on the box').toBe(2);
      expect((await sb.json<ModelsView>(['models', id, '--json'])).folders.loras).toEqual(expect.arrayContaining(['slot-0-0.safetensors', 'slot-0-1.safetensors', 'slot-1-0.safetensors', 'slot-1-1.safetensors']));
    } finally {
      await slow.close();
    }
  });

  it('prepare_instance over MCP answers at once with a job that get_job follows to the end', async () => {
    const name = 'mcp-upscaler.pth';
    server.files.set(name, { size: 2 * MiB });
    const transport = new StdioClientTransport({ command: process.execPath, args: [SERVER], env: sb.env as Record<string, string>, stderr: 'ignore', cwd: ROOT });
    const client = new Client({ name: 'models-test', version: '0' });
    await client.connect(transport);
    try {
      const first = (await client.callTool({ name: 'prepare_instance', arguments: { instance_id: id, models: [{ url: server.url(name), dir: 'upscale_models' }], wait_s: 0 } })) as CallToolResult;
      expect(first.isError, JSON.stringify(first.content)).toBeFalsy();
      const job = (first.structuredContent as { job: JobView }).job;
      expect(job).toMatchObject({ kind: 'prepare', instance_id: id, workflow_file: null, output_dir: null });
      const done = (await client.callTool({ name: 'get_job', arguments: { job_id: job.job_id, wait_s: 30 } })) as CallToolResult;
      const view = (done.structuredContent as { job: JobView; summary: string });
      expect(view.job.status).toBe('succeeded');
      expect(view.summary).toContain('has every model and node pack asked for');
      expect(existsSync(path.join(boxTree(id), 'models', 'upscale_models', name))).toBe(true);
    } finally {
      await transport.close();
    }
  });
});

/** A ComfyUI stand-in on the `ssh` box: its model lists are what its comfy_dir holds on disk. */
async function fakeComfy(comfyDir: string): Promise<{ port: number; close(): Promise<void> }> {
  const port = await freePort();
  const server = http.createServer((req, res) => {
    const p = (req.url ?? '/').replace(/^\/api(?=\/)/, '').split('?')[0]!;
    const json = (v: unknown, status = 200) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(v));
    if (p === '/system_stats') return json({ system: { comfyui_version: 'fake' } });
    if (p === '/object_info') return json({});
    if (p === '/models') return json(['checkpoints', 'loras']);
    const m = /^\/models\/([a-z_]+)$/.exec(p);
    if (m && ['checkpoints', 'loras'].includes(m[1]!)) {
      const dir = path.join(comfyDir, 'models', m[1]!);
      return json(existsSync(dir) ? readdirSync(dir).filter((f) => !f.startsWith('.')) : []);
    }
    json({ error: 'not found' }, 404);
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', () => r()));
  return { port, close: () => new Promise<void>((r) => server.close(() => r())) };
}

describe('models on an ssh box (real sshd; the box\'s own curl fetches them)', () => {
  let sb: Sandbox;
  let sshd: SshdHandle;
  let server: ModelServer;
  let comfy: { port: number; close(): Promise<void> };
  let comfyDir: string;
  let id: string;

  beforeAll(async () => {
    sb = makeSandbox();
    sshd = await startSshd();
    server = await startModelServer();
    comfyDir = mkdtempSync(path.join(os.tmpdir(), 'vai-ssh-comfy-'));
    comfy = await fakeComfy(comfyDir);
    const cfg = sb.writeFile('ssh-box.json', { provider: 'ssh', instance_config: { ssh_host: sshd.host, ssh_port: sshd.port, ssh_user: sshd.user, ssh_key_path: sshd.userKeyPath, remote_port: comfy.port, comfy_dir: comfyDir } });
    const [box] = await sb.json<InstanceView[]>(['create', cfg, '--json']);
    expect(box!.status).toBe('ready');
    id = box!.instance_id;
  });
  afterAll(async () => {
    await sb?.cleanup();
    await comfy?.close();
    await server?.close();
    await sshd?.stop();
    rmSync(comfyDir, { recursive: true, force: true });
  });

  it('downloads on the box with a token that goes to its host only and is in no log or file', async () => {
    const name = 'ssh-gated.safetensors';
    const secret = 'hf_sshBoxSecret4242424242';
    server.files.set(name, { size: 5 * MiB });
    const cfg = sb.writeFile('ssh-gated.json', { instance_config: { models: [{ url: server.redirectUrl(name, 'localhost'), dir: 'checkpoints', name, sha256: server.sha256(name) }] } });
    const r = await sb.cli(['prepare', id, cfg], { env: { HF_TOKEN: secret, VAI_TOKEN_HOSTS_FOR_TESTS: `HF_TOKEN=127.0.0.1:${server.port}` }, timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`${id} needs 1 model file (checkpoints/${name})`);
    expect(sha256File(path.join(comfyDir, 'models', 'checkpoints', name))).toBe(server.sha256(name));
    expect(server.seen.find((q) => q.path.startsWith('/redirect/'))?.authorization).toBe(`Bearer ${secret}`);
    expect(server.fileRequests(name).at(-1)).toMatchObject({ host: `localhost:${server.port}`, authorization: undefined });
    expect((await sb.json<ModelsView>(['models', id, '--json'])).folders.checkpoints).toEqual([name]);
    expect(readFileSync(path.join(sb.home, 'supervisor.log'), 'utf8')).not.toContain(secret);
    for (const f of readdirSync(comfyDir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile())) {
      expect(readFileSync(path.join(f.parentPath, f.name)).includes(secret), f.name).toBe(false);
    }
  });

  it('refuses a file whose sha256 does not match and leaves no partial file', async () => {
    const name = 'ssh-wrong.safetensors';
    server.files.set(name, { size: 1 * MiB });
    const cfg = sb.writeFile('ssh-wrong.json', { instance_config: { models: [{ url: server.url(name), dir: 'loras', sha256: '0'.repeat(64) }] } });
    const r = await sb.cli(['prepare', id, cfg], { timeoutMs: 60_000 });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/sha256 mismatch: expected 0{64}, got [0-9a-f]{64}; the partial file was removed/);
    expect(readdirSync(path.join(comfyDir, 'models', 'loras'))).toEqual([]);
  });
});
