/**
 * The `local` simulator's ComfyUI app, over real HTTP and a real websocket: it must behave like
 * ComfyUI's API closely enough for a real ComfyUI client. Each test gets its own box (an app
 * behind a TCP listener on 127.0.0.1, fed sockets exactly as the SSH server feeds it channels).
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import ssh2 from 'ssh2';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { encodePng, readPngInfo } from '../../core/simulator/png.js';
import { DEFAULT_WORKFLOW_UI } from '../../core/simulator/default-workflow.js';
import { renderPixels } from '../../core/simulator/render.js';
import { createComfyApp, type ComfyAppOptions } from '../../core/simulator/app.js';
import type { ApiGraph, ComfyFileRef, HistoryEntry, ObjectInfo } from '../../core/comfy/types.js';
import { generateKeyPair } from '../../core/simulator/box.js';

const DEFAULT_API: ApiGraph = JSON.parse(readFileSync(new URL('../../examples/default_workflow_api.json', import.meta.url), 'utf8'));
const DEFAULT_UI = JSON.parse(readFileSync(new URL('../../examples/default_workflow_ui.json', import.meta.url), 'utf8'));

// ---- harness --------------------------------------------------------------------------------

interface Box {
  base: string;
  port: number;
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function startBox(options: ComfyAppOptions = {}): Promise<Box> {
  const app = createComfyApp('local-test', options);
  const server = net.createServer((socket) => app.handle(socket));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  cleanups.push(() => {
    app.close();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { base: `http://127.0.0.1:${port}`, port };
}

function clone<T>(v: T): T {
  return structuredClone(v);
}

async function getJson<T = any>(box: Box, path: string): Promise<T> {
  const res = await fetch(box.base + path, { signal: AbortSignal.timeout(10_000) });
  expect(res.status, `GET ${path}`).toBe(200);
  return (await res.json()) as T;
}

async function postJson(box: Box, path: string, body: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(box.base + path, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' }, signal: AbortSignal.timeout(10_000) });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

async function queuePrompt(box: Box, prompt: ApiGraph, extra: Record<string, unknown> = {}): Promise<string> {
  const r = await postJson(box, '/prompt', { prompt, ...extra });
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  expect(r.body).toEqual({ prompt_id: expect.stringMatching(/^[0-9a-f-]{36}$/), number: expect.any(Number), node_errors: {} });
  return r.body.prompt_id;
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function historyOf(box: Box, id: string, timeoutMs = 15_000): Promise<HistoryEntry> {
  return waitFor(`history of ${id}`, async () => (await getJson<Record<string, HistoryEntry>>(box, `/history/${id}`))[id], timeoutMs);
}

async function view(box: Box, ref: ComfyFileRef): Promise<Response> {
  const q = new URLSearchParams({ filename: ref.filename, subfolder: ref.subfolder, type: ref.type });
  return fetch(`${box.base}/view?${q}`, { signal: AbortSignal.timeout(10_000) });
}

async function viewPng(box: Box, ref: ComfyFileRef): Promise<Buffer> {
  const res = await view(box, ref);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toBe('image/png');
  return Buffer.from(await res.arrayBuffer());
}

/** A websocket client that keeps every message and waits (bounded) for the one it needs. */
async function openWs(box: Box, clientId?: string) {
  const ws = new WebSocket(`ws://127.0.0.1:${box.port}/ws${clientId ? `?clientId=${clientId}` : ''}`);
  const messages: { type: string; data: any }[] = [];
  const listeners = new Set<() => void>();
  ws.on('message', (raw) => {
    messages.push(JSON.parse(String(raw)));
    for (const l of listeners) l();
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  cleanups.push(() => ws.terminate());
  return {
    messages,
    next(pred: (m: { type: string; data: any }) => boolean, timeoutMs = 15_000): Promise<{ type: string; data: any }> {
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = messages.find(pred);
          if (!m) return;
          listeners.delete(check);
          clearTimeout(timer);
          resolve(m);
        };
        const timer = setTimeout(() => {
          listeners.delete(check);
          reject(new Error(`no matching websocket message in ${timeoutMs} ms; got ${messages.map((m) => m.type).join(', ')}`));
        }, timeoutMs);
        listeners.add(check);
        check();
      });
    },
  };
}

async function upload(box: Box, name: string, data: Buffer, fields: Record<string, string> = {}): Promise<{ status: number; body: any }> {
  const form = new FormData();
  form.append('image', new Blob([data], { type: 'image/png' }), name);
  for (const [k, v] of Object.entries(fields)) form.append(k, v);
  const res = await fetch(`${box.base}/upload/image`, { method: 'POST', body: form, signal: AbortSignal.timeout(10_000) });
  return { status: res.status, body: await res.json() };
}

/** A minimal JPEG header: SOI, APP0, SOF0 with the size (enough for a size sniffer), EOI. */
function jpegHeader(width: number, height: number): Buffer {
  const app0 = Buffer.from([0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00, 0x01, 0x01, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00]);
  const sof = Buffer.from([0xff, 0xc0, 0x00, 0x11, 0x08, height >> 8, height & 0xff, width >> 8, width & 0xff, 0x03, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
  return Buffer.concat([Buffer.from([0xff, 0xd8]), app0, sof, Buffer.from([0xff, 0xd9])]);
}

/** The default graph with other settings (seed, steps, batch, prompt text, prefix). */
function defaultWith(opts: { seed?: number; steps?: number; batch?: number; text?: string; prefix?: string; width?: number; height?: number }): ApiGraph {
  const g = clone(DEFAULT_API);
  if (opts.seed !== undefined) g['3']!.inputs.seed = opts.seed;
  if (opts.steps !== undefined) g['3']!.inputs.steps = opts.steps;
  if (opts.batch !== undefined) g['5']!.inputs.batch_size = opts.batch;
  if (opts.width !== undefined) g['5']!.inputs.width = opts.width;
  if (opts.height !== undefined) g['5']!.inputs.height = opts.height;
  if (opts.text !== undefined) g['6']!.inputs.text = opts.text;
  if (opts.prefix !== undefined) g['9']!.inputs.filename_prefix = opts.prefix;
  return g;
}

// ---- running jobs ---------------------------------------------------------------------------

describe('running the default graph', () => {
  it('gives one 512x512 PNG whose prompt chunk is the submitted graph (and workflow chunk the UI graph)', async () => {
    const box = await startBox();
    const t0 = Date.now();
    const id = await queuePrompt(box, DEFAULT_API, { extra_data: { extra_pnginfo: { workflow: DEFAULT_UI } } });
    const h = await historyOf(box, id);
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(h.status).toMatchObject({ status_str: 'success', completed: true });
    expect(h.status!.messages.map((m) => m[0])).toEqual(['execution_start', 'execution_cached', 'execution_success']);
    expect(h.prompt).toEqual([expect.any(Number), id, DEFAULT_API, expect.objectContaining({ extra_pnginfo: { workflow: DEFAULT_UI } }), ['9']]);
    expect(h.outputs).toEqual({ '9': { images: [{ filename: 'ComfyUI_00001_.png', subfolder: '', type: 'output' }] } });
    const png = await viewPng(box, h.outputs['9']!.images![0]!);
    const info = readPngInfo(png);
    expect(info).toMatchObject({ width: 512, height: 512 });
    expect(JSON.parse(info.text.prompt!)).toEqual(DEFAULT_API);
    expect(JSON.parse(info.text.workflow!)).toEqual(DEFAULT_UI);
    // Python's json.dumps layout, as ComfyUI writes it
    expect(info.text.prompt!.startsWith('{"3": {"inputs": {"seed": 156680208700286, "steps": 20')).toBe(true);
  });

  it('also answers under /api, and the next job counts on from the last file name', async () => {
    const box = await startBox();
    const r = await postJson(box, '/api/prompt', { prompt: DEFAULT_API });
    expect(r.status).toBe(200);
    await historyOf(box, r.body.prompt_id);
    const id2 = await queuePrompt(box, defaultWith({ seed: 7 }));
    const h2 = await historyOf(box, id2);
    expect(h2.outputs['9']!.images![0]!.filename).toBe('ComfyUI_00002_.png');
    expect(Object.keys(await getJson(box, '/api/history'))).toEqual([r.body.prompt_id, id2]);
  });

  it('batch_size 3 gives 3 files, a prefix with a folder saves into that subfolder', async () => {
    const box = await startBox();
    const id = await queuePrompt(box, defaultWith({ batch: 3, prefix: 'shots/cat', width: 256, height: 200 }));
    const images = (await historyOf(box, id)).outputs['9']!.images!;
    expect(images).toEqual([1, 2, 3].map((n) => ({ filename: `cat_0000${n}_.png`, subfolder: 'shots', type: 'output' })));
    const pngs = await Promise.all(images.map((ref) => viewPng(box, ref)));
    for (const png of pngs) expect(readPngInfo(png)).toMatchObject({ width: 256, height: 200 });
    expect(pngs[0]!.equals(pngs[1]!)).toBe(false); // each image of a batch differs
  });

  it('different seeds or prompts give different pixels; the same inputs the same bytes', async () => {
    const box = await startBox({ stepMs: 1 });
    const run = async (g: ApiGraph) => viewPng(box, (await historyOf(box, await queuePrompt(box, g))).outputs['9']!.images![0]!);
    const a = await run(defaultWith({ seed: 1 }));
    const b = await run(defaultWith({ seed: 2 }));
    const c = await run(defaultWith({ seed: 1, text: 'a red fox in the snow' }));
    const a2 = await run(defaultWith({ seed: 1 }));
    expect(a.equals(b)).toBe(false);
    expect(a.equals(c)).toBe(false);
    expect(a.equals(a2)).toBe(true);
  });

  it('PreviewImage writes temp files; a node failing at run time ends the job with execution_error', async () => {
    const box = await startBox({ stepMs: 1 });
    const preview = clone(DEFAULT_API);
    preview['9'] = { class_type: 'PreviewImage', inputs: { images: ['8', 0] } };
    const h = await historyOf(box, await queuePrompt(box, preview));
    const ref = h.outputs['9']!.images![0]!;
    expect(ref).toEqual({ filename: expect.stringMatching(/^ComfyUI_temp_[a-z]{5}_00001_\.png$/), subfolder: '', type: 'temp' });
    expect(readPngInfo(await viewPng(box, ref)).width).toBe(512);

    const huge = defaultWith({ width: 8192, height: 8192 }); // valid for ComfyUI, too big for the simulator
    const failed = await historyOf(box, await queuePrompt(box, huge));
    expect(failed.status).toMatchObject({ status_str: 'error', completed: false });
    const last = failed.status!.messages.at(-1)!;
    expect(last[0]).toBe('execution_error');
    expect(last[1]).toMatchObject({ node_id: '9', node_type: 'SaveImage', exception_message: expect.stringMatching(/at most/) });
  });
});

describe('the websocket', () => {
  it('sends status on connect, then the job\'s messages in ComfyUI\'s order, history written before "executing null"', async () => {
    const box = await startBox();
    const ws = await openWs(box, 'client-a');
    const other = await openWs(box); // no clientId: the box gives one
    const hello = await other.next((m) => m.type === 'status');
    expect(hello.data).toEqual({ status: { exec_info: { queue_remaining: 0 } }, sid: expect.stringMatching(/^[0-9a-f]{32}$/) });
    expect((await ws.next((m) => m.type === 'status')).data.sid).toBe('client-a');

    const id = await queuePrompt(box, DEFAULT_API, { client_id: 'client-a' });
    await ws.next((m) => m.type === 'executing' && m.data.node === null && m.data.prompt_id === id);
    expect((await getJson(box, `/history/${id}`))[id]).toBeDefined(); // already there

    const job = ws.messages.filter((m) => m.data?.prompt_id === id);
    const kinds = job.map((m) => m.type);
    expect(kinds.slice(0, 2)).toEqual(['execution_start', 'execution_cached']);
    expect(kinds.slice(-3)).toEqual(['executed', 'execution_success', 'executing']);
    expect(job[1]!.data).toEqual({ nodes: [], prompt_id: id, timestamp: expect.any(Number) });
    // every node runs once, after the nodes it reads from
    const ran = job.filter((m) => m.type === 'executing' && m.data.node !== null).map((m) => m.data.node as string);
    expect([...ran].sort()).toEqual(['3', '4', '5', '6', '7', '8', '9']);
    for (const [id2, node] of Object.entries(DEFAULT_API)) {
      for (const v of Object.values(node.inputs)) if (Array.isArray(v)) expect(ran.indexOf(String(v[0]))).toBeLessThan(ran.indexOf(id2));
    }
    expect(job.find((m) => m.type === 'executing')!.data).toEqual({ node: ran[0], display_node: ran[0], prompt_id: id });
    const progress = job.filter((m) => m.type === 'progress').map((m) => m.data);
    expect(progress).toEqual(Array.from({ length: 20 }, (_, i) => ({ value: i + 1, max: 20, prompt_id: id, node: '3' })));
    // progress comes while KSampler runs: after "executing 3", before "executing 8"
    expect(kinds.indexOf('progress')).toBeGreaterThan(job.findIndex((m) => m.type === 'executing' && m.data.node === '3'));
    expect(kinds.lastIndexOf('progress')).toBeLessThan(job.findIndex((m) => m.type === 'executing' && m.data.node === '8'));
    const executed = job.find((m) => m.type === 'executed')!.data;
    expect(executed).toEqual({ node: '9', display_node: '9', output: { images: [{ filename: 'ComfyUI_00001_.png', subfolder: '', type: 'output' }] }, prompt_id: id });

    // the job's messages went to its client only; the queue length went to everyone
    expect(other.messages.some((m) => m.data?.prompt_id === id)).toBe(false);
    const seen = other.messages.filter((m) => m.type === 'status').map((m) => m.data.status.exec_info.queue_remaining);
    expect(seen).toContain(1);
    expect(seen.at(-1)).toBe(0);
  });
});

// ---- validation -----------------------------------------------------------------------------

describe('POST /prompt validation', () => {
  async function rejected(box: Box, prompt: unknown) {
    const r = await postJson(box, '/prompt', { prompt });
    expect(r.status, JSON.stringify(r.body)).toBe(400);
    return r.body;
  }
  function nodeError(body: any, id: string) {
    expect(body.error).toMatchObject({ type: 'prompt_outputs_failed_validation', message: 'Prompt outputs failed validation', extra_info: {} });
    return body.node_errors[id];
  }

  it('refuses bad graphs like ComfyUI, naming the problem, and queues nothing', async () => {
    const box = await startBox();

    const unknown = clone(DEFAULT_API) as any;
    unknown['8'].class_type = 'VAEDecodeQuantum';
    expect(await rejected(box, unknown)).toEqual({
      error: { type: 'invalid_prompt', message: 'Cannot execute because node VAEDecodeQuantum does not exist.', details: "Node ID '#8'", extra_info: {} },
      node_errors: {},
    });

    const noOutput = clone(DEFAULT_API);
    delete noOutput['9'];
    expect((await rejected(box, noOutput)).error).toMatchObject({ type: 'prompt_no_outputs', message: 'Prompt has no outputs' });

    const missingNode = clone(DEFAULT_API);
    missingNode['8']!.inputs.vae = ['42', 2];
    const e1 = nodeError(await rejected(box, missingNode), '8');
    expect(e1).toEqual({ errors: [expect.objectContaining({ type: 'bad_linked_input', details: expect.stringContaining("'42'") })], dependent_outputs: ['9'], class_type: 'VAEDecode' });

    const badSlot = clone(DEFAULT_API);
    badSlot['8']!.inputs.vae = ['4', 5];
    const e2 = nodeError(await rejected(box, badSlot), '8');
    expect(e2.errors[0]).toMatchObject({ type: 'bad_linked_input', details: expect.stringMatching(/CheckpointLoaderSimple '#4' has 3 output\(s\), there is no slot 5/) });

    const missingInput = clone(DEFAULT_API);
    delete missingInput['3']!.inputs.steps;
    const body = await rejected(box, missingInput);
    expect(nodeError(body, '3').errors).toEqual([{ type: 'required_input_missing', message: 'Required input is missing', details: 'steps', extra_info: { input_name: 'steps' } }]);
    expect(body.error.details).toContain('KSampler #3: Required input is missing: steps');

    const mismatch = clone(DEFAULT_API);
    mismatch['8']!.inputs.vae = ['4', 1]; // CLIP into a VAE input
    expect(nodeError(await rejected(box, mismatch), '8').errors[0]).toMatchObject({ type: 'return_type_mismatch', details: 'vae, received_type(CLIP) mismatch input_type(VAE)' });

    const cases: [string, unknown, string][] = [
      ['steps', 0, 'value_smaller_than_min'],
      ['cfg', 101, 'value_bigger_than_max'],
      ['steps', 'many', 'invalid_input_type'],
      ['sampler_name', 'warp_drive', 'value_not_in_list'],
    ];
    for (const [input, value, type] of cases) {
      const g = clone(DEFAULT_API);
      g['3']!.inputs[input] = value;
      expect(nodeError(await rejected(box, g), '3').errors[0], `${input}=${String(value)}`).toMatchObject({ type, extra_info: expect.objectContaining({ input_name: input }) });
    }

    const loadMissing: ApiGraph = {
      '1': { class_type: 'LoadImage', inputs: { image: 'nowhere.png' } },
      '2': { class_type: 'SaveImage', inputs: { images: ['1', 0], filename_prefix: 'x' } },
    };
    expect(nodeError(await rejected(box, loadMissing), '1').errors[0]).toMatchObject({ type: 'custom_validation_failed', details: 'image - Invalid image file: nowhere.png' });

    // not JSON, no prompt
    const notJson = await fetch(`${box.base}/prompt`, { method: 'POST', body: '{"prompt": ', signal: AbortSignal.timeout(10_000) });
    expect(notJson.status).toBe(400);
    expect(((await notJson.json()) as { error: unknown }).error).toMatchObject({ type: 'invalid_json', details: expect.stringMatching(/not valid JSON/) });
    expect((await postJson(box, '/prompt', { client_id: 'x' })).body).toMatchObject({ error: { type: 'no_prompt', message: 'No prompt provided' } });

    expect(await getJson(box, '/queue')).toEqual({ queue_running: [], queue_pending: [] });
    expect(await getJson(box, '/history')).toEqual({});
    expect(await getJson(box, '/prompt')).toEqual({ exec_info: { queue_remaining: 0 } });
  });

  it('refuses a checkpoint the box does not have, as ComfyUI does; takes numbers as strings, and runs the outputs that validate', async () => {
    const box = await startBox({ stepMs: 1 });
    const missing = clone(DEFAULT_API);
    missing['4']!.inputs.ckpt_name = 'my-own-finetune.safetensors';
    const refused = await postJson(box, '/prompt', { prompt: missing });
    expect(refused.status).toBe(400);
    expect(refused.body.node_errors['4'].errors[0]).toMatchObject({ type: 'value_not_in_list', details: "ckpt_name: 'my-own-finetune.safetensors' not in [\"v1-5-pruned-emaonly-fp16.safetensors\"]" });
    expect(await getJson(box, '/models/checkpoints')).toEqual(['v1-5-pruned-emaonly-fp16.safetensors']);

    const g = clone(DEFAULT_API);
    g['3']!.inputs.steps = '3'; // ComfyUI converts with int()
    g['10'] = { class_type: 'SaveImage', inputs: { images: ['99', 0], filename_prefix: 'broken' } };
    const r = await postJson(box, '/prompt', { prompt: g });
    expect(r.status).toBe(200);
    expect(r.body.node_errors['10']).toMatchObject({ class_type: 'SaveImage', dependent_outputs: ['10'] });
    const h = await historyOf(box, r.body.prompt_id);
    expect(Object.keys(h.outputs)).toEqual(['9']);
    expect(h.prompt[4]).toEqual(['9']);
    expect((h.prompt[2] as ApiGraph)['3']!.inputs.steps).toBe(3);
  });
});

// ---- uploads and LoadImage ------------------------------------------------------------------

describe('uploads', () => {
  it('an uploaded image carries its size through LoadImage -> VAEEncode -> KSampler -> VAEDecode -> SaveImage', async () => {
    const box = await startBox({ stepMs: 1 });
    const input = encodePng(320, 240, renderPixels('upload', 320, 240));
    expect((await upload(box, 'photo.png', input)).body).toEqual({ name: 'photo.png', subfolder: '', type: 'input' });
    const info = await getJson<ObjectInfo>(box, '/object_info/LoadImage');
    expect(info.LoadImage!.input.required!.image).toEqual([['photo.png'], { image_upload: true }]);
    const viewed = await view(box, { filename: 'photo.png', subfolder: '', type: 'input' });
    expect(Buffer.from(await viewed.arrayBuffer()).equals(input)).toBe(true);

    const g: ApiGraph = {
      '4': { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'v1-5-pruned-emaonly-fp16.safetensors' } },
      '6': { class_type: 'CLIPTextEncode', inputs: { text: 'oil painting', clip: ['4', 1] } },
      '7': { class_type: 'CLIPTextEncode', inputs: { text: '', clip: ['4', 1] } },
      '10': { class_type: 'LoadImage', inputs: { image: 'photo.png' } },
      '11': { class_type: 'VAEEncode', inputs: { pixels: ['10', 0], vae: ['4', 2] } },
      '3': { class_type: 'KSampler', inputs: { seed: 5, steps: 4, cfg: 7, sampler_name: 'dpmpp_2m', scheduler: 'karras', denoise: 0.6, model: ['4', 0], positive: ['6', 0], negative: ['7', 0], latent_image: ['11', 0] } },
      '8': { class_type: 'VAEDecode', inputs: { samples: ['3', 0], vae: ['4', 2] } },
      '9': { class_type: 'SaveImage', inputs: { images: ['8', 0], filename_prefix: 'img2img' } },
    };
    const h = await historyOf(box, await queuePrompt(box, g));
    expect(readPngInfo(await viewPng(box, h.outputs['9']!.images![0]!))).toMatchObject({ width: 320, height: 240 });
  });

  it('reads a JPEG\'s size, and ImageScale resizes (0 keeps the aspect ratio)', async () => {
    const box = await startBox();
    expect((await upload(box, 'shot.jpg', jpegHeader(200, 136))).status).toBe(200);
    const g: ApiGraph = {
      '1': { class_type: 'LoadImage', inputs: { image: 'shot.jpg' } },
      '2': { class_type: 'SaveImage', inputs: { images: ['1', 0], filename_prefix: 'same' } },
      '3': { class_type: 'ImageScale', inputs: { image: ['1', 0], upscale_method: 'lanczos', width: 100, height: 0, crop: 'disabled' } },
      '4': { class_type: 'SaveImage', inputs: { images: ['3', 0], filename_prefix: 'half' } },
    };
    const h = await historyOf(box, await queuePrompt(box, g));
    expect(readPngInfo(await viewPng(box, h.outputs['2']!.images![0]!))).toMatchObject({ width: 200, height: 136 });
    expect(readPngInfo(await viewPng(box, h.outputs['4']!.images![0]!))).toMatchObject({ width: 100, height: 68 });
  });

  it('a clashing name becomes "name (1).png"; the same bytes again or overwrite keep the name', async () => {
    const box = await startBox();
    const a = encodePng(8, 8, renderPixels('a', 8, 8));
    const b = encodePng(8, 8, renderPixels('b', 8, 8));
    expect((await upload(box, 'in.png', a)).body.name).toBe('in.png');
    expect((await upload(box, 'in.png', b)).body.name).toBe('in (1).png');
    expect((await upload(box, 'in.png', a)).body.name).toBe('in.png'); // a duplicate, as ComfyUI spots by hash
    expect((await upload(box, 'in.png', b, { overwrite: 'true' })).body.name).toBe('in.png');
    expect((await upload(box, 'in.png', a, { subfolder: 'refs' })).body).toEqual({ name: 'in.png', subfolder: 'refs', type: 'input' });
    expect((await upload(box, 'x.png', a, { subfolder: '../up' })).status).toBe(400);
    expect((await upload(box, 'x.png', a, { type: 'elsewhere' })).status).toBe(400);
    const list = (await getJson<ObjectInfo>(box, '/object_info')).LoadImage!.input.required!.image![0];
    expect(list).toEqual(['in (1).png', 'in.png']); // top-level files only, like ComfyUI
  });

  it('refuses an upload over the size cap with 413 without reading it', async () => {
    const box = await startBox();
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request(`${box.base}/upload/image`, {
        method: 'POST',
        headers: { 'content-type': 'multipart/form-data; boundary=x', 'content-length': String(60 * 1024 * 1024) },
        timeout: 10_000,
      });
      req.on('response', (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('timeout', () => req.destroy(new Error('no answer to an oversized upload')));
      req.on('error', reject);
      req.flushHeaders();
    });
    expect(status).toBe(413);
  });
});

// ---- the queue --------------------------------------------------------------------------------

describe('the queue', () => {
  it('runs one job at a time in order; pending jobs can be deleted; interrupt stops the running one', async () => {
    const box = await startBox();
    const ws = await openWs(box, 'q');
    const long = await queuePrompt(box, defaultWith({ steps: 400, seed: 1 }), { client_id: 'q' });
    const second = await queuePrompt(box, defaultWith({ steps: 20, seed: 2 }), { client_id: 'q' });
    const third = await queuePrompt(box, defaultWith({ steps: 20, seed: 3 }), { client_id: 'q' });
    await ws.next((m) => m.type === 'progress' && m.data.prompt_id === long);

    const q = await getJson(box, '/queue');
    expect(q.queue_running.map((t: unknown[]) => t[1])).toEqual([long]);
    expect(q.queue_pending.map((t: unknown[]) => t[1])).toEqual([second, third]);
    expect(q.queue_running[0]).toEqual([expect.any(Number), long, expect.any(Object), expect.objectContaining({ client_id: 'q' }), ['9']]);
    expect(q.queue_pending[0][0]).toBeLessThan(q.queue_pending[1][0]);
    expect(await getJson(box, '/prompt')).toEqual({ exec_info: { queue_remaining: 3 } });

    expect((await postJson(box, '/queue', { delete: [third] })).status).toBe(200);
    expect((await getJson(box, '/queue')).queue_pending.map((t: unknown[]) => t[1])).toEqual([second]);

    await postJson(box, '/interrupt', { prompt_id: second }); // not running: nothing happens
    await new Promise((r) => setTimeout(r, 100));
    expect((await getJson(box, '/queue')).queue_running.map((t: unknown[]) => t[1])).toEqual([long]);

    const t0 = Date.now();
    expect((await postJson(box, '/interrupt', { prompt_id: long })).status).toBe(200);
    const interrupted = await ws.next((m) => m.type === 'execution_interrupted');
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(interrupted.data).toMatchObject({ prompt_id: long, node_id: '3', node_type: 'KSampler', executed: expect.arrayContaining(['4', '5', '6', '7']) });
    const h = await historyOf(box, long);
    expect(h.status).toMatchObject({ status_str: 'error', completed: false });
    expect(h.status!.messages.at(-1)![0]).toBe('execution_interrupted');
    expect(h.outputs).toEqual({});
    const lastProgress = ws.messages.filter((m) => m.type === 'progress' && m.data.prompt_id === long).at(-1)!.data;
    expect(lastProgress.value).toBeLessThan(400);

    expect((await historyOf(box, second)).status!.status_str).toBe('success');
    expect(await getJson(box, `/history/${third}`)).toEqual({});
    expect(await getJson(box, '/queue')).toEqual({ queue_running: [], queue_pending: [] });
  });

  it('clears pending jobs; interrupt without a prompt id stops whatever runs; an idle interrupt is harmless', async () => {
    const box = await startBox();
    await postJson(box, '/interrupt', {}); // nothing runs
    const a = await queuePrompt(box, defaultWith({ steps: 400 }));
    const b = await queuePrompt(box, defaultWith({ steps: 400, seed: 9 }));
    await waitFor('a running', async () => ((await getJson(box, '/queue')).queue_running.length === 1 ? true : undefined));
    await postJson(box, '/queue', { clear: true });
    expect((await getJson(box, '/queue')).queue_pending).toEqual([]);
    const res = await fetch(`${box.base}/interrupt`, { method: 'POST', signal: AbortSignal.timeout(10_000) }); // no body at all
    expect(res.status).toBe(200);
    expect((await historyOf(box, a)).status!.status_str).toBe('error');
    expect(await getJson(box, `/history/${b}`)).toEqual({});
    const c = await queuePrompt(box, defaultWith({ steps: 2 }));
    expect((await historyOf(box, c)).status!.status_str).toBe('success');
  });

  it('front: true jumps the queue', async () => {
    const box = await startBox();
    const first = await queuePrompt(box, defaultWith({ steps: 400 }));
    const later = await queuePrompt(box, defaultWith({ steps: 1, seed: 5 }));
    const urgent = await queuePrompt(box, defaultWith({ steps: 1, seed: 6 }), { front: true });
    await waitFor('first running', async () => ((await getJson(box, '/queue')).queue_running.length === 1 ? true : undefined));
    const pending = (await getJson(box, '/queue')).queue_pending.map((t: unknown[]) => t[1]);
    expect(pending.indexOf(urgent)).toBeLessThan(pending.indexOf(later));
    await postJson(box, '/interrupt', {});
    await historyOf(box, later);
    expect(Object.keys(await getJson(box, '/history'))).toEqual([first, urgent, later]);
  });
});

describe('history', () => {
  it('max_items gives the latest entries; POST /history deletes and clears', async () => {
    const box = await startBox({ stepMs: 0 });
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      ids.push(await queuePrompt(box, defaultWith({ seed: i, steps: 1 })));
      await historyOf(box, ids[i]!);
    }
    expect(Object.keys(await getJson(box, '/history?max_items=2'))).toEqual([ids[1], ids[2]]);
    expect(await getJson(box, '/history/not-a-prompt')).toEqual({});
    await postJson(box, '/history', { delete: [ids[0]] });
    expect(Object.keys(await getJson(box, '/history'))).toEqual([ids[1], ids[2]]);
    await postJson(box, '/history', { clear: true });
    expect(await getJson(box, '/history')).toEqual({});
  });
});

// ---- files ----------------------------------------------------------------------------------

describe('/view', () => {
  it('answers 404 for an unknown file and 400 for names that climb out or are absolute', async () => {
    const box = await startBox();
    expect((await view(box, { filename: 'nope.png', subfolder: '', type: 'output' })).status).toBe(404);
    expect((await view(box, { filename: '../secret.png', subfolder: '', type: 'output' })).status).toBe(400);
    expect((await view(box, { filename: 'a.png', subfolder: '../..', type: 'output' })).status).toBe(400);
    expect((await view(box, { filename: '/etc/passwd', subfolder: '', type: 'input' })).status).toBe(400);
    expect((await view(box, { filename: 'a.png', subfolder: '', type: 'system' })).status).toBe(400);
    expect((await fetch(`${box.base}/view`, { signal: AbortSignal.timeout(10_000) })).status).toBe(400);
  });

  it('drops the oldest outputs past the cap, keeping the newest', async () => {
    const box = await startBox({ stepMs: 0, maxOutputBytes: 60_000 });
    const h = await historyOf(box, await queuePrompt(box, defaultWith({ batch: 8, steps: 1 })));
    const refs = h.outputs['9']!.images!;
    expect(refs).toHaveLength(8);
    expect((await view(box, refs[0]!)).status).toBe(404);
    expect((await view(box, refs[7]!)).status).toBe(200);
  });
});

describe('saved workflows (/api/userdata)', () => {
  it('lists, reads and saves workflows; refuses paths that climb out', async () => {
    const box = await startBox();
    expect(await getJson(box, '/api/userdata?dir=workflows&recurse=true')).toEqual(['default.json']);
    const stored = await getJson(box, '/api/userdata/workflows%2Fdefault.json');
    expect(stored).toEqual(DEFAULT_WORKFLOW_UI);
    expect(stored).toEqual(DEFAULT_UI);

    const saved = await fetch(`${box.base}/api/userdata/workflows%2Fmine%2Ffox.json?overwrite=false`, { method: 'POST', body: '{"nodes": []}', signal: AbortSignal.timeout(10_000) });
    expect(saved.status).toBe(200);
    expect(await saved.json()).toBe('workflows/mine/fox.json');
    expect(await getJson(box, '/api/userdata?dir=workflows&recurse=true')).toEqual(['default.json', 'mine/fox.json']);
    expect(await getJson(box, '/api/userdata?dir=workflows')).toEqual(['default.json']);
    expect(await getJson(box, '/api/userdata/workflows%2Fmine%2Ffox.json')).toEqual({ nodes: [] });
    const again = await fetch(`${box.base}/api/userdata/workflows%2Fmine%2Ffox.json?overwrite=false`, { method: 'POST', body: '{}', signal: AbortSignal.timeout(10_000) });
    expect(again.status).toBe(409);
    expect((await fetch(`${box.base}/api/userdata/..%2F..%2Fetc%2Fpasswd`, { signal: AbortSignal.timeout(10_000) })).status).toBe(403);
    expect((await fetch(`${box.base}/api/userdata?dir=nothing`, { signal: AbortSignal.timeout(10_000) })).status).toBe(404);
  });
});

// ---- /object_info and the example graphs ----------------------------------------------------

/** UI format -> API format the way ComfyUI's frontend exports it, driven by /object_info. */
function uiToApi(ui: typeof DEFAULT_UI, info: ObjectInfo): ApiGraph {
  const graph: ApiGraph = {};
  for (const node of ui.nodes as any[]) {
    const def = info[node.type]!;
    const inputs: Record<string, unknown> = {};
    const values = [...(node.widgets_values ?? [])];
    for (const name of def.input_order!.required!) {
      const spec = def.input.required![name]!;
      const isWidget = Array.isArray(spec[0]) || ['INT', 'FLOAT', 'STRING', 'BOOLEAN'].includes(spec[0] as string);
      if (!isWidget) continue;
      inputs[name] = values.shift();
      if (spec[1]?.control_after_generate) values.shift(); // "randomize"/"fixed" is UI-only
    }
    for (const input of node.inputs ?? []) {
      if (input.link === null) continue;
      const link = (ui.links as any[]).find((l) => l[0] === input.link);
      inputs[input.name] = [String(link[1]), link[2]];
    }
    graph[String(node.id)] = { inputs, class_type: node.type, _meta: { title: def.display_name } };
  }
  return graph;
}

describe('/object_info and the example graphs', () => {
  it('describes nodes in ComfyUI\'s format', async () => {
    const box = await startBox();
    const all = await getJson<ObjectInfo>(box, '/object_info');
    for (const name of ['CheckpointLoaderSimple', 'CLIPTextEncode', 'EmptyLatentImage', 'KSampler', 'KSamplerAdvanced', 'VAEDecode', 'VAEEncode', 'SaveImage', 'PreviewImage', 'LoadImage', 'ImageScale']) {
      expect(all[name], name).toMatchObject({ name, python_module: 'nodes', output_node: expect.any(Boolean), output: expect.any(Array), output_name: expect.any(Array), output_is_list: expect.any(Array) });
    }
    const k = all.KSampler!;
    expect(k.input_order).toEqual({ required: ['model', 'seed', 'steps', 'cfg', 'sampler_name', 'scheduler', 'positive', 'negative', 'latent_image', 'denoise'] });
    expect(k.input.required!.seed).toEqual(['INT', expect.objectContaining({ default: 0, min: 0, max: 0xffffffffffffffff, control_after_generate: true })]);
    expect(k.input.required!.steps).toEqual(['INT', expect.objectContaining({ default: 20, min: 1, max: 10000 })]);
    expect(k.input.required!.cfg).toEqual(['FLOAT', expect.objectContaining({ default: 8, min: 0, max: 100 })]);
    expect(k.input.required!.sampler_name![0]).toEqual(expect.arrayContaining(['euler', 'euler_ancestral', 'dpmpp_2m']));
    expect(k.input.required!.scheduler![0]).toEqual(expect.arrayContaining(['normal', 'karras']));
    expect(k).toMatchObject({ output: ['LATENT'], output_name: ['LATENT'], output_is_list: [false], output_node: false, display_name: 'KSampler', category: 'sampling' });
    expect(all.SaveImage).toMatchObject({ output: [], output_node: true, input: { hidden: { prompt: 'PROMPT', extra_pnginfo: 'EXTRA_PNGINFO' } } });
    expect(all.CheckpointLoaderSimple!.output).toEqual(['MODEL', 'CLIP', 'VAE']);
    expect(await getJson(box, '/api/object_info/KSampler')).toEqual({ KSampler: k });
    expect(await getJson(box, '/object_info/NoSuchNode')).toEqual({});
  });

  it('the UI example is the default graph the box holds, and exports to the API example', async () => {
    const box = await startBox();
    expect(DEFAULT_UI).toEqual(DEFAULT_WORKFLOW_UI);
    const info = await getJson<ObjectInfo>(box, '/object_info');
    expect(uiToApi(DEFAULT_UI, info)).toEqual(DEFAULT_API);
    expect(DEFAULT_API['3']!.inputs).toMatchObject({ seed: 156680208700286, steps: 20, cfg: 8, sampler_name: 'euler', scheduler: 'normal', denoise: 1 });
  });
});

// ---- through SSH, as the local provider serves it --------------------------------------------

describe('over forwarded SSH channels', () => {
  it('serves HTTP and the websocket on channels the SSH server hands it', async () => {
    const app = createComfyApp('local-ssh', { stepMs: 1 });
    const server = new ssh2.Server({ hostKeys: [generateKeyPair('test host').private] }, (conn) => {
      conn.on('error', () => {});
      conn.on('authentication', (ctx) => ctx.accept());
      conn.on('ready', () => conn.on('tcpip', (accept) => app.handle(accept())));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const client = new ssh2.Client();
    cleanups.push(() => {
      client.end();
      app.close();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    });
    await new Promise<void>((resolve, reject) => {
      client.once('ready', () => resolve()).once('error', reject);
      client.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port, username: 'root', readyTimeout: 15_000 });
    });
    const channel = () =>
      new Promise<Duplex>((resolve, reject) => client.forwardOut('127.0.0.1', 0, '127.0.0.1', 18188, (err, ch) => (err ? reject(err) : resolve(ch))));
    const request = async (method: string, path: string, body?: string) => {
      const ch = await channel();
      return new Promise<{ status: number; body: Buffer }>((resolve, reject) => {
        const req = http.request({ method, path, host: '127.0.0.1', port: 18188, createConnection: () => ch as net.Socket, timeout: 10_000 }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
        });
        req.on('timeout', () => req.destroy(new Error(`${method} ${path} timed out`)));
        req.on('error', reject);
        req.end(body);
      });
    };

    const wsChannel = await channel();
    const ws = new WebSocket('ws://127.0.0.1:18188/ws?clientId=over-ssh', { createConnection: () => wsChannel as net.Socket });
    cleanups.push(() => ws.terminate());
    const types: string[] = [];
    const done = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no "executing null" in 15 s; got ${types.join(', ')}`)), 15_000);
      ws.on('message', (raw) => {
        const m = JSON.parse(String(raw));
        types.push(m.type);
        if (m.type === 'executing' && m.data.node === null) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    await new Promise<void>((resolve, reject) => ws.once('open', () => resolve()).once('error', reject));

    const posted = await request('POST', '/api/prompt', JSON.stringify({ prompt: DEFAULT_API, client_id: 'over-ssh' }));
    expect(posted.status).toBe(200);
    const id = JSON.parse(String(posted.body)).prompt_id as string;
    await done;
    expect(types[0]).toBe('status');
    expect(types).toContain('progress');
    const h = JSON.parse(String((await request('GET', `/history/${id}`)).body))[id] as HistoryEntry;
    const ref = h.outputs['9']!.images![0]!;
    const png = await request('GET', `/view?${new URLSearchParams({ filename: ref.filename, subfolder: ref.subfolder, type: ref.type })}`);
    expect(readPngInfo(png.body)).toMatchObject({ width: 512, height: 512 });
  });
});
