/**
 * The `local` provider's ComfyUI-like app. One app per simulated box; it
 * never listens on a port of its own: the box's SSH server hands it each forwarded channel, so
 * "localhost:18188" on box A is a different app than on box B, as on real separate machines.
 *
 * It speaks ComfyUI's HTTP and websocket API closely enough for a real ComfyUI client: prompts are
 * validated like ComfyUI does, queued, "run" (samplers take a fixed time per step) and produce
 * real PNGs; uploads, `/view`, history, the queue, `/object_info` and saved workflows work too.
 * Every path also answers under `/api`, as on ComfyUI. Files live in memory.
 *
 * Like `vastai/comfy` (ComfyUI with `--enable-cors-header`) it allows every origin: each answer
 * carries `Access-Control-Allow-Origin: *` and every preflight gets 200. So what keeps a foreign
 * page out is the tunnel's guard, never the box; `GET /vai-sim/requests` lists what the box
 * received (requests, and connections its HTTP parser refused) for tests to check that.
 */
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import os from 'node:os';
import type { Duplex } from 'node:stream';
import { nodeInfo, objectInfo } from './nodes.js';
import type { PromptAccepted, PromptErrorBody } from './api-types.js';
import { DEFAULT_WORKFLOW_UI } from './default-workflow.js';
import { FOLDER_TYPES, FileStore, StoreFullError, type FolderType } from './files.js';
import { HttpError, contentTypeOf, isObject, readBody, readJson, sendBytes, sendJson, sendOk } from './http.js';
import { isPlainName, joinRel, normalRelPath } from './paths.js';
import { PromptQueue } from './queue.js';
import { ModelShelf } from './shelf.js';
import { UserData } from './userdata.js';
import { validatePrompt } from './validate.js';
import { WsHub } from './ws-hub.js';
import type { ApiGraph } from '../comfy/types.js';

export interface ComfyApp {
  /** Serves one connection (a forwarded SSH channel). */
  handle(stream: Duplex): void;
  /** Its files, kept across a restart. */
  readonly files: FileStore;
  close(): void;
}

export interface ComfyAppOptions {
  /** How long one sampler step takes (ms); 20 steps ~ 0.3 s by default. */
  stepMs?: number;
  /** Output + temp bytes kept before the oldest are dropped. */
  maxOutputBytes?: number;
  /** The box's files from before a restart (ComfyUI's folders outlive it); new ones otherwise. */
  files?: FileStore;
  /** The box's ComfyUI folder on disk (models, custom_nodes), for a new FileStore. */
  comfyDir?: string;
}

const MiB = 1024 * 1024;
const DEFAULT_STEP_MS = 15;
const MAX_UPLOAD_BYTES = 50 * MiB;
const MAX_JSON_BYTES = 50 * MiB;
const MAX_INPUT_BYTES = 256 * MiB;
const MAX_USERDATA_BYTES = 64 * MiB;
/** Received requests kept for `GET /vai-sim/requests`. */
const MAX_RECORDED = 1000;
/** What ComfyUI's CORS middleware sends with `--enable-cors-header` (allow every origin). */
const CORS_HEADERS = {
  'access-control-allow-origin': '*',
  'access-control-allow-methods': 'POST, GET, DELETE, PUT, OPTIONS, PATCH',
  'access-control-allow-headers': 'Content-Type, Authorization',
  'access-control-allow-credentials': 'true',
};

/** One request as the box received it. */
export interface ReceivedRequest {
  at: string;
  method: string;
  url: string;
  host: string | null;
  origin: string | null;
  sec_fetch_site: string | null;
  upgrade: string | null;
  cookie: string | null;
}

/**
 * The box's page. Like ComfyUI's frontend it talks to its own box from the page: a fetch, a
 * POST and the websocket, all same-origin, and shows how each went (`#self-check`).
 */
function page(instanceId: string): string {
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>ComfyUI (simulated) - ${instanceId}</title></head>
<body style="font-family: sans-serif">
<h1>ComfyUI (simulated)</h1>
<p>instance_id: <code id="instance-id">${instanceId}</code></p>
<p>This is vai-mcp's built-in <code>local</code> simulator: a stand-in for a ComfyUI box, reached
through its own SSH tunnel. <a href="/api/system_stats">/api/system_stats</a></p>
<p>Talking to this box from the page: <span id="self-check">checking</span></p>
<script>
(async () => {
  const out = document.getElementById('self-check');
  try {
    const stats = await (await fetch('/api/system_stats')).json();
    const posted = await fetch('/api/queue', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    if (!posted.ok) throw new Error('POST /api/queue: ' + posted.status);
    const greeting = await new Promise((resolve, reject) => {
      const ws = new WebSocket('ws://' + location.host + '/ws?clientId=page-check');
      ws.onmessage = (e) => { resolve(JSON.parse(e.data).type); ws.close(); };
      ws.onerror = () => reject(new Error('the websocket failed'));
    });
    out.textContent = 'ok: ' + stats.instance_id + ', POST 200, websocket ' + greeting;
  } catch (err) {
    out.textContent = 'failed: ' + err.message;
  }
})();
</script>
</body></html>
`;
}

/** Python's os.path.splitext: `a.b.png` -> [`a.b`, `.png`], `.hidden` -> [`.hidden`, ``]. */
function splitExt(name: string): [string, string] {
  const dot = name.lastIndexOf('.');
  return dot > 0 ? [name.slice(0, dot), name.slice(dot)] : [name, ''];
}

function folderType(value: unknown, fallback: FolderType): FolderType {
  if (value === null || value === undefined || value === '') return fallback;
  if (typeof value === 'string' && (FOLDER_TYPES as readonly string[]).includes(value)) return value as FolderType;
  throw new HttpError(400, `type must be one of ${FOLDER_TYPES.join(', ')}, got ${JSON.stringify(value)}`);
}

/** The path after `/api/userdata/`, decoded (the frontend sends `workflows%2Fdefault.json`). */
function userPath(encoded: string): string {
  let decoded: string;
  try {
    decoded = decodeURIComponent(encoded);
  } catch {
    throw new HttpError(400, `bad percent-encoding in ${encoded}`);
  }
  const p = normalRelPath(decoded);
  if (!p) throw new HttpError(403, `refusing user data path ${JSON.stringify(decoded)}: it must be relative and stay inside the user directory`);
  return p;
}

export function createComfyApp(instanceId: string, options: ComfyAppOptions = {}): ComfyApp {
  const startedAt = Date.now();
  const files = options.files ?? new FileStore({ maxOutputBytes: options.maxOutputBytes ?? 512 * MiB, maxInputBytes: MAX_INPUT_BYTES }, new ModelShelf(options.comfyDir));
  const userdata = new UserData(MAX_USERDATA_BYTES, { 'workflows/default.json': JSON.stringify(DEFAULT_WORKFLOW_UI, null, 2) });
  const hub = new WsHub((sid) => {
    const greeting: [string, Record<string, unknown>][] = [['status', { status: { exec_info: { queue_remaining: queue.remaining() } }, sid }]];
    // A client reconnecting mid-job hears which node runs, as ComfyUI tells it.
    const cur = queue.current();
    if (cur && cur.clientId === sid && cur.node !== null) greeting.push(['executing', { node: cur.node, display_node: cur.node, prompt_id: cur.promptId }]);
    return greeting;
  });
  const queue = new PromptQueue(files, (type, data, sid) => hub.send(type, data, sid), options.stepMs ?? DEFAULT_STEP_MS);
  const received: ReceivedRequest[] = [];
  /** Connections whose bytes the HTTP parser refused (what a smuggled request would become). */
  const refused: { at: string; error: string }[] = [];
  const keep = <T>(list: T[], item: T) => {
    list.push(item);
    if (list.length > MAX_RECORDED) list.shift();
  };
  const record = (req: http.IncomingMessage) => {
    const one = (v: string | string[] | undefined) => (v === undefined ? null : String(v));
    keep(received, {
      at: new Date().toISOString(),
      method: req.method ?? '',
      url: req.url ?? '',
      host: one(req.headers.host),
      origin: one(req.headers.origin),
      sec_fetch_site: one(req.headers['sec-fetch-site']),
      upgrade: one(req.headers.upgrade),
      cookie: one(req.headers.cookie),
    });
  };

  async function postPrompt(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    let body: unknown;
    try {
      body = await readJson(req, MAX_JSON_BYTES);
    } catch (err) {
      if (err instanceof HttpError && err.status === 400) {
        const answer: PromptErrorBody = { error: { type: 'invalid_json', message: 'The request body is not valid JSON', details: err.message, extra_info: {} }, node_errors: {} };
        throw new HttpError(400, err.message, answer);
      }
      throw err;
    }
    if (!isObject(body) || !('prompt' in body)) {
      const answer: PromptErrorBody = { error: { type: 'no_prompt', message: 'No prompt provided', details: 'No prompt provided', extra_info: {} }, node_errors: {} };
      return sendJson(res, 400, answer);
    }
    const v = validatePrompt(body.prompt, files);
    if (!v.ok) return sendJson(res, 400, { error: v.error, node_errors: v.nodeErrors } satisfies PromptErrorBody);
    const extraData: Record<string, unknown> = isObject(body.extra_data) ? { ...body.extra_data } : {};
    if (typeof body.client_id === 'string') extraData.client_id = body.client_id;
    extraData.create_time = Date.now();
    const promptId = typeof body.prompt_id === 'string' && body.prompt_id !== '' ? body.prompt_id : randomUUID();
    const number = queue.number(body.number, body.front);
    queue.enqueue({ number, promptId, prompt: body.prompt as ApiGraph, extraData, outputs: v.outputs });
    sendJson(res, 200, { prompt_id: promptId, number, node_errors: v.nodeErrors } satisfies PromptAccepted);
  }

  function view(url: URL, res: http.ServerResponse): void {
    const filename = url.searchParams.get('filename');
    if (!filename) throw new HttpError(400, 'filename is required');
    // As ComfyUI: a "name.png [temp]" annotation names the folder, else the type parameter does.
    const annotation = / \[(input|output|temp)\]$/.exec(filename);
    const type = annotation ? (annotation[1] as FolderType) : folderType(url.searchParams.get('type'), 'output');
    const name = annotation ? filename.slice(0, -annotation[0].length) : filename;
    if (name.startsWith('/') || name.includes('..')) throw new HttpError(400, `refusing filename ${JSON.stringify(filename)}: it must not be absolute or contain ".."`);
    const subfolder = normalRelPath(url.searchParams.get('subfolder') ?? '');
    if (subfolder === undefined) throw new HttpError(400, `refusing subfolder ${JSON.stringify(url.searchParams.get('subfolder'))}: it must not be absolute or contain ".."`);
    const rel = normalRelPath(joinRel(subfolder, name));
    const file = rel ? files.get(type, rel) : undefined;
    if (!file) throw new HttpError(404, `no ${type} file ${JSON.stringify(joinRel(subfolder, name))} on this box`);
    const base = name.slice(name.lastIndexOf('/') + 1);
    sendBytes(res, 200, contentTypeOf(base), file.data, { 'content-disposition': `filename="${base.replace(/["\\\r\n]/g, '_')}"` });
  }

  async function uploadImage(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const contentType = req.headers['content-type'] ?? '';
    if (!/^multipart\/form-data/i.test(contentType)) throw new HttpError(400, 'POST /upload/image takes multipart/form-data with an "image" file field');
    const body = await readBody(req, MAX_UPLOAD_BYTES);
    let form: FormData;
    try {
      // Node's fetch Response parses multipart bodies: no extra dependency needed.
      form = await new Response(body, { headers: { 'content-type': contentType } }).formData();
    } catch (err) {
      throw new HttpError(400, `the multipart body does not parse: ${(err as Error).message}`);
    }
    const image = form.get('image');
    if (image === null || typeof image === 'string') throw new HttpError(400, 'the form has no "image" file field');
    const overwrite = form.get('overwrite') === 'true' || form.get('overwrite') === '1';
    const type = folderType(form.get('type'), 'input');
    const subfolder = normalRelPath(String(form.get('subfolder') ?? ''));
    if (subfolder === undefined) throw new HttpError(400, 'refusing the subfolder: it must not be absolute or contain ".."');
    let name = image.name;
    if (!isPlainName(name)) throw new HttpError(400, `refusing the file name ${JSON.stringify(name)}: it must be a plain name without "/" or ".."`);
    const data = Buffer.from(await image.arrayBuffer());
    let duplicate = false;
    if (!overwrite) {
      // ComfyUI: a clashing name becomes "name (1).ext", unless the same bytes are already there.
      const [stem, ext] = splitExt(name);
      for (let i = 1; files.has(type, joinRel(subfolder, name)); i++) {
        if (files.get(type, joinRel(subfolder, name))!.data.equals(data)) {
          duplicate = true;
          break;
        }
        name = `${stem} (${i})${ext}`;
      }
    }
    if (!duplicate) {
      try {
        files.put(type, joinRel(subfolder, name), data);
      } catch (err) {
        if (err instanceof StoreFullError) throw new HttpError(413, err.message);
        throw err;
      }
    }
    sendJson(res, 200, { name, subfolder, type });
  }

  function listUserdata(url: URL, res: http.ServerResponse): void {
    const dir = url.searchParams.get('dir');
    if (!dir) throw new HttpError(400, 'Directory not provided');
    const p = normalRelPath(dir);
    if (p === undefined) throw new HttpError(403, 'Invalid directory');
    const list = userdata.list(p, url.searchParams.get('recurse')?.toLowerCase() === 'true');
    if (!list) throw new HttpError(404, 'Directory not found');
    if (url.searchParams.get('full_info')?.toLowerCase() === 'true') return sendJson(res, 200, list);
    if (url.searchParams.get('split')?.toLowerCase() === 'true') return sendJson(res, 200, list.map((f) => [f.path, ...f.path.split('/')]));
    sendJson(res, 200, list.map((f) => f.path));
  }

  async function userdataFile(req: http.IncomingMessage, res: http.ServerResponse, url: URL, encoded: string): Promise<void> {
    const p = userPath(encoded);
    if (req.method === 'GET') {
      const f = userdata.get(p);
      if (!f) throw new HttpError(404, `no user data file ${p}`);
      return sendBytes(res, 200, contentTypeOf(p), f.data);
    }
    if (req.method === 'DELETE') {
      if (!userdata.delete(p)) throw new HttpError(404, `no user data file ${p}`);
      res.writeHead(204).end();
      return;
    }
    const overwrite = url.searchParams.get('overwrite') !== 'false';
    if (!overwrite && userdata.get(p)) throw new HttpError(409, 'File already exists');
    const body = await readBody(req, MAX_UPLOAD_BYTES);
    try {
      userdata.put(p, body);
    } catch (err) {
      if (err instanceof StoreFullError) throw new HttpError(413, err.message);
      throw err;
    }
    if (url.searchParams.get('full_info')?.toLowerCase() === 'true') return sendJson(res, 200, { path: p, size: body.length, modified: Date.now() / 1000 });
    sendJson(res, 200, p);
  }

  function systemStats(res: http.ServerResponse): void {
    sendJson(res, 200, {
      system: {
        os: 'posix',
        python_version: '3.12.0 (simulated)',
        embedded_python: false,
        comfyui_version: '0.3.0-vai-sim',
        argv: ['main.py', '--port', '18188'],
        ram_total: os.totalmem(),
        ram_free: os.freemem(),
        uptime_s: Math.round((Date.now() - startedAt) / 1000),
      },
      devices: [{ name: 'cuda:0 simulated GPU', type: 'cuda', index: 0, vram_total: 25769803776, vram_free: 25000000000 }],
      instance_id: instanceId,
    });
  }

  async function route(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (req.method === 'GET' && url.pathname === '/vai-sim/requests') return sendJson(res, 200, { requests: received, refused });
    record(req);
    for (const [k, v] of Object.entries(CORS_HEADERS)) res.setHeader(k, v);
    if (req.method === 'OPTIONS') return sendOk(res);
    // ComfyUI serves every route both at /x and /api/x.
    const path = url.pathname === '/api' || url.pathname.startsWith('/api/') ? url.pathname.slice(4) || '/' : url.pathname;
    const m = req.method ?? 'GET';
    const at = (method: string, p: string) => m === method && path === p;

    if (at('GET', '/')) {
      const body = page(instanceId);
      return sendBytes(res, 200, 'text/html; charset=utf-8', body, { 'x-instance-id': instanceId });
    }
    if (at('GET', '/system_stats')) return systemStats(res);
    if (at('GET', '/prompt')) return sendJson(res, 200, { exec_info: { queue_remaining: queue.remaining() } });
    if (at('POST', '/prompt')) return postPrompt(req, res);
    if (at('GET', '/queue')) return sendJson(res, 200, queue.view());
    if (at('POST', '/queue')) {
      const body = await readJson(req, MAX_JSON_BYTES);
      if (isObject(body) && body.clear === true) queue.clearPending();
      if (isObject(body) && Array.isArray(body.delete)) queue.deletePending(body.delete);
      return sendOk(res);
    }
    if (at('POST', '/interrupt')) {
      let body: unknown;
      try {
        body = await readJson(req, MAX_JSON_BYTES);
      } catch (err) {
        if (!(err instanceof HttpError && err.status === 400)) throw err; // ComfyUI: a bad body means "interrupt whatever runs"
      }
      const promptId = isObject(body) && typeof body.prompt_id === 'string' && body.prompt_id !== '' ? body.prompt_id : undefined;
      queue.interrupt(promptId);
      return sendOk(res);
    }
    if (at('GET', '/history')) {
      const num = (name: string) => {
        const raw = url.searchParams.get(name);
        if (raw === null) return undefined;
        const n = Number(raw);
        if (!Number.isInteger(n)) throw new HttpError(400, `${name} must be an integer, got ${JSON.stringify(raw)}`);
        return n;
      };
      return sendJson(res, 200, queue.historyView(num('max_items'), num('offset')));
    }
    if (m === 'GET' && path.startsWith('/history/')) return sendJson(res, 200, queue.historyOf(decodeURIComponent(path.slice('/history/'.length))));
    if (at('POST', '/history')) {
      const body = await readJson(req, MAX_JSON_BYTES);
      if (isObject(body) && body.clear === true) queue.clearHistory();
      if (isObject(body) && Array.isArray(body.delete)) queue.deleteHistory(body.delete);
      return sendOk(res);
    }
    if (at('GET', '/object_info')) return sendJson(res, 200, objectInfo(files));
    if (m === 'GET' && path.startsWith('/object_info/')) {
      const name = decodeURIComponent(path.slice('/object_info/'.length));
      const info = nodeInfo(name, files);
      return sendJson(res, 200, info ? { [name]: info } : {});
    }
    if (at('GET', '/view')) return view(url, res);
    if (at('POST', '/upload/image')) return uploadImage(req, res);
    if (at('GET', '/userdata')) return listUserdata(url, res);
    if (path.startsWith('/userdata/') && (m === 'GET' || m === 'POST' || m === 'DELETE')) return userdataFile(req, res, url, path.slice('/userdata/'.length));
    if (at('GET', '/models')) return sendJson(res, 200, files.shelf.folders());
    if (m === 'GET' && /^\/models\/[^/]+$/.test(path)) {
      const list = files.shelf.list(decodeURIComponent(path.slice('/models/'.length)));
      if (!list) throw new HttpError(404, `no model folder ${path.slice('/models/'.length)}`);
      return sendJson(res, 200, list);
    }
    if (at('GET', '/embeddings') || at('GET', '/extensions')) return sendJson(res, 200, []);
    if (at('GET', '/features')) return sendJson(res, 200, { supports_preview_metadata: true, max_upload_size: MAX_UPLOAD_BYTES });
    throw new HttpError(404, `not found: ${m} ${url.pathname}`);
  }

  const server = http.createServer((req, res) => {
    route(req, res).catch((err: unknown) => {
      const status = err instanceof HttpError ? err.status : 500;
      const message = err instanceof Error ? err.message : String(err);
      if (res.headersSent) return void res.destroy();
      // A refused upload still streams in: close the connection rather than read it all.
      if (status === 413) res.setHeader('connection', 'close');
      sendJson(res, status, err instanceof HttpError && err.body !== undefined ? err.body : { error: message, instance_id: instanceId });
    });
  });
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    record(req);
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (path === '/ws' || path === '/api/ws') hub.upgrade(req, socket, head);
    else socket.destroy();
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    if (err.code?.startsWith('HPE_')) keep(refused, { at: new Date().toISOString(), error: err.code });
    socket.destroy();
  });
  // The server never listens, so Node does not track its connections (closeAllConnections would
  // miss them): the app keeps its own set, websockets included, to end them all on close.
  const streams = new Set<Duplex>();
  return {
    files,
    handle(stream) {
      streams.add(stream);
      stream.once('close', () => streams.delete(stream));
      server.emit('connection', stream);
    },
    close() {
      queue.close();
      hub.close();
      for (const s of streams) s.destroy();
      streams.clear();
      server.close();
    },
  };
}
