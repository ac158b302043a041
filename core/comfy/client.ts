/**
 * ComfyUI's HTTP and websocket API, as far as vai-mcp needs it, for one server at a base URL
 * (a box's tunnel: http://localhost:<port>). Readiness: `GET /api/system_stats` answers 200.
 *
 * Every call has a bounded time; every error names the endpoint, the HTTP status and ComfyUI's
 * own message. The paths without the `/api` prefix are used where both exist: older ComfyUI
 * versions serve only those.
 */
import { open, rm } from 'node:fs/promises';
import { openAsBlob } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { Readable } from 'node:stream';
import type WebSocket from 'ws';
import { badInput, failure, VaiError } from '../lib/errors.js';
import type { ApiGraph, ComfyEvent, ComfyFileRef, HistoryEntry, ObjectInfo, QueueItem } from './types.js';
import { isObject } from '../lib/json.js';
import { INTERNAL_REQUEST_HEADER } from '../model/tunnel.js';

export interface SystemStats {
  system?: { comfyui_version?: string };
  devices?: { name: string }[];
}

/**
 * ComfyUI's health check through a tunnel's URL: ok when `GET /api/system_stats` answers 200 with
 * JSON in time, else what answered instead ("404 (Not Found)", "200 with a body that is not
 * JSON (<html>...)", "no answer within 5000 ms"), quoting at most 200 characters of the body.
 */
export function checkComfy(baseUrl: string, timeoutMs = 5000): Promise<{ ok: true } | { ok: false; answer: string }> {
  return new Promise((resolve) => {
    // No connection pooling: a health check must not leave a socket open in the tunnel.
    const req = http.get(new URL('/api/system_stats', baseUrl), { agent: false, timeout: timeoutMs, headers: { [INTERNAL_REQUEST_HEADER]: '1' } }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        if (size < 64 * 1024) chunks.push(c);
        size += c.length;
      });
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        const quoted = text.trim() ? ` (${clip(text, 200)})` : '';
        if (res.statusCode !== 200) return resolve({ ok: false, answer: `${res.statusCode}${quoted}` });
        try {
          JSON.parse(text);
          resolve({ ok: true });
        } catch {
          resolve({ ok: false, answer: `200 with a body that is not JSON${quoted}` });
        }
      });
      res.on('error', (err) => resolve({ ok: false, answer: `an answer cut short (${err.message})` }));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (err) => resolve({ ok: false, answer: /^no answer/.test(err.message) ? err.message : `no answer (${err.message})` }));
  });
}

/** A live `/ws` subscription. */
export interface ComfyWatch {
  /** true once the socket is open; false (never a rejection) when /ws is unavailable. */
  readonly connected: Promise<boolean>;
  /** Resolves when the socket has closed, for any reason (also after a failed connect). */
  readonly closed: Promise<void>;
  close(): void;
}

/** The `/ws` message types passed on to watchers (see ComfyEvent). */
const EVENT_TYPES = new Set<string>([
  'status', 'execution_start', 'execution_cached', 'executing', 'progress', 'executed',
  'execution_success', 'execution_error', 'execution_interrupted',
]);

const DEFAULT_TIMEOUT_MS = 20_000;
/** /object_info and the whole /history can be several MB on a box with many custom nodes. */
const BIG_ANSWER_TIMEOUT_MS = 45_000;
/** Uploads (multipart, one request) get this long in all. */
const DEFAULT_TRANSFER_TIMEOUT_MS = 10 * 60_000;
/** Long ComfyUI messages (a "Value not in list" lists every model on the box) are cut here. */
const MAX_DETAIL = 200;

function clip(s: string, max = MAX_DETAIL): string {
  const t = s.trim().replace(/\s+/g, ' ');
  return t.length > max ? `${t.slice(0, max)}...` : t;
}


/** What went wrong under a failed fetch: "connection refused" rather than "fetch failed". */
function networkCause(err: unknown): string {
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (e?.name === 'TimeoutError') return 'timed out';
  const code = e?.cause?.code;
  if (code === 'ECONNREFUSED') return 'connection refused';
  if (code === 'ECONNRESET' || code === 'UND_ERR_SOCKET') return 'connection reset';
  return e?.cause?.message ?? e?.message ?? String(err);
}

/** ComfyUI's own words in an error body: `{"error": "..."}`, `{"error": {"message", "details"}}` or text. */
function comfyMessage(text: string): string {
  try {
    const body = JSON.parse(text) as unknown;
    if (isObject(body)) {
      const e = body.error;
      if (typeof e === 'string') return clip(e);
      if (isObject(e)) return clip([e.message, e.details].filter((x) => typeof x === 'string' && x).join(': '));
      if (typeof body.message === 'string') return clip(body.message);
    }
  } catch {
    // not JSON: the text itself
  }
  return clip(text);
}

/**
 * `POST /prompt`'s refusal as one readable message: ComfyUI's error, then each node_errors entry
 * as `node <id> (<class_type>): <message>: <details>`.
 */
export function describePromptError(body: unknown): string {
  const lines: string[] = [];
  const b = isObject(body) ? body : {};
  const head = typeof b.error === 'string' ? b.error
    : isObject(b.error) ? [b.error.message, b.error.details].filter((x) => typeof x === 'string' && x).join(': ')
      : 'the workflow is not valid';
  lines.push(clip(head || 'the workflow is not valid'));
  const nodeErrors = isObject(b.node_errors) ? b.node_errors : {};
  for (const [id, ne] of Object.entries(nodeErrors)) {
    const n = isObject(ne) ? ne : {};
    const type = typeof n.class_type === 'string' ? n.class_type : '?';
    const errors = Array.isArray(n.errors) ? n.errors : [];
    for (const e of errors.length ? errors : [{}]) {
      const er = isObject(e) ? e : {};
      const parts = [er.message, er.details].filter((x) => typeof x === 'string' && x) as string[];
      lines.push(`node ${id} (${type}): ${clip(parts.join(': ') || 'invalid')}`);
    }
  }
  return lines.join('\n  ');
}

/** `/queue` rows are `[number, prompt_id, prompt, extra_data, outputs]`; objects are accepted too. */
function queueItem(row: unknown): QueueItem | undefined {
  if (Array.isArray(row) && typeof row[1] === 'string') return { number: Number(row[0]), prompt_id: row[1] };
  if (isObject(row) && typeof row.prompt_id === 'string') return { number: Number(row.number ?? 0), prompt_id: row.prompt_id };
  return undefined;
}

interface RequestOptions {
  query?: Record<string, string>;
  json?: unknown;
  body?: FormData;
  /** The whole request's deadline; 0: none of its own (the caller's `signal` bounds it). */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** A 404 answers undefined (an endpoint or folder the box does not have). */
  missingIsUndefined?: boolean;
}

/** One ComfyUI server at `baseUrl` (e.g. http://localhost:8188). */
export class ComfyClient {
  readonly baseUrl: string;
  private readonly timeoutMs: number;
  private readonly transferTimeoutMs: number;

  constructor(baseUrl: string, opts: { timeoutMs?: number; transferTimeoutMs?: number } = {}) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.transferTimeoutMs = opts.transferTimeoutMs ?? DEFAULT_TRANSFER_TIMEOUT_MS;
  }

  // ---------------------------------------------------------------- plumbing

  private url(p: string, query?: Record<string, string>): string {
    const u = new URL(this.baseUrl + p);
    for (const [k, v] of Object.entries(query ?? {})) u.searchParams.set(k, v);
    return u.toString();
  }

  /** The request, or a failure naming the endpoint and the cause. GETs are tried twice (a pooled socket may have died with a tunnel). */
  private async request(method: 'GET' | 'POST', p: string, o: RequestOptions = {}): Promise<Response> {
    const timeoutMs = o.timeoutMs ?? this.timeoutMs;
    const what = `${method} ${p}`;
    for (let attempt = 1; ; attempt++) {
      const signals = [...(timeoutMs > 0 ? [AbortSignal.timeout(timeoutMs)] : []), ...(o.signal ? [o.signal] : [])];
      try {
        return await fetch(this.url(p, o.query), {
          method,
          signal: AbortSignal.any(signals),
          headers: { [INTERNAL_REQUEST_HEADER]: '1', ...(o.json !== undefined ? { 'content-type': 'application/json' } : {}) },
          body: o.json !== undefined ? JSON.stringify(o.json) : o.body,
        });
      } catch (err) {
        if (o.signal?.aborted) throw o.signal.reason;
        const cause = networkCause(err);
        if (method === 'GET' && attempt === 1 && cause !== 'timed out') continue;
        throw failure(`ComfyUI at ${this.baseUrl} did not answer ${what}: ${cause === 'timed out' ? `no answer within ${Math.round(timeoutMs / 1000)} s` : cause}.`,
          { cli: 'Check that the box is ready and its tunnel is up (`vai-mcp-cli tunnel --list`), then try again.', agent: 'Check with list_tunnels that its tunnel is up, then try again.' }, 'comfy_unreachable');
      }
    }
  }

  /** A failure for a non-2xx answer: the endpoint, the status and ComfyUI's message. */
  private async httpError(res: Response, what: string): Promise<VaiError> {
    const text = await res.text().catch(() => '');
    const msg = comfyMessage(text);
    return failure(`ComfyUI answered ${res.status} to ${what}${msg ? `: ${msg}` : ''}.`, undefined, 'comfy_http');
  }

  private async getJson<T>(p: string, o: RequestOptions = {}): Promise<T> {
    const res = await this.request('GET', p, o);
    if (res.status === 404 && o.missingIsUndefined) return (await res.arrayBuffer().catch(() => undefined), undefined as T);
    if (!res.ok) throw await this.httpError(res, `GET ${p}`);
    const text = await res.text();
    try {
      return JSON.parse(text) as T;
    } catch {
      throw failure(`ComfyUI answered GET ${p} with a body that is not JSON: ${clip(text, 120)}`, undefined, 'comfy_http');
    }
  }

  private async post(p: string, json: unknown): Promise<void> {
    const res = await this.request('POST', p, { json });
    if (!res.ok) throw await this.httpError(res, `POST ${p}`);
    await res.arrayBuffer().catch(() => undefined);
  }

  /**
   * Streams a GET's body into a new file (opened 'wx': an existing file is never overwritten);
   * a partial file is removed on error. The headers must come within the timeout and then the
   * body must never stall that long, however big the file is.
   */
  private async fetchToFile(p: string, query: Record<string, string> | undefined, destPath: string, what: string): Promise<number> {
    const idle = new AbortController();
    let timer = setTimeout(() => idle.abort(), this.timeoutMs);
    const kick = () => {
      clearTimeout(timer);
      timer = setTimeout(() => idle.abort(), this.timeoutMs);
    };
    try {
      const res = await this.request('GET', p, { query, timeoutMs: 0, signal: idle.signal }).catch((err) => {
        throw idle.signal.aborted ? failure(`ComfyUI at ${this.baseUrl} did not answer ${what} within ${Math.round(this.timeoutMs / 1000)} s.`, undefined, 'comfy_unreachable') : err;
      });
      if (!res.ok || !res.body) throw await this.httpError(res, what);
      let fh;
      try {
        fh = await open(destPath, 'wx');
      } catch (err) {
        await res.body.cancel().catch(() => undefined);
        const e = err as NodeJS.ErrnoException;
        if (e.code === 'EEXIST') throw failure(`${destPath} already exists; it is not overwritten.`, undefined, 'file_exists');
        throw failure(`Cannot write ${destPath}: ${e.message}`, 'Check that the output folder is writable.', 'output_dir');
      }
      let bytes = 0;
      try {
        for await (const chunk of Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>)) {
          kick();
          await fh.write(chunk as Uint8Array);
          bytes += (chunk as Uint8Array).byteLength;
        }
        await fh.close();
        return bytes;
      } catch (err) {
        await fh.close().catch(() => undefined);
        await rm(destPath, { force: true }).catch(() => undefined);
        if (err instanceof VaiError) throw err;
        const why = idle.signal.aborted ? `nothing arrived for ${Math.round(this.timeoutMs / 1000)} s` : networkCause(err);
        throw failure(`Downloading ${what} into ${destPath} failed after ${bytes} bytes: ${why}.`,
          'Check that the box and its tunnel are up, then try again.', 'download_failed');
      }
    } finally {
      clearTimeout(timer);
    }
  }

  // ---------------------------------------------------------------- endpoints

  systemStats(): Promise<SystemStats> {
    return this.getJson<SystemStats>('/api/system_stats');
  }

  /** Every node type the box knows (a few MB with many custom nodes: a longer timeout). */
  objectInfo(): Promise<ObjectInfo> {
    return this.getJson<ObjectInfo>('/object_info', { timeoutMs: Math.max(this.timeoutMs, BIG_ANSWER_TIMEOUT_MS) });
  }

  /** The box's model folders (`GET /models`), or undefined where its ComfyUI has no such endpoint. */
  async modelFolders(): Promise<string[] | undefined> {
    return this.getJson<string[] | undefined>('/models', { missingIsUndefined: true });
  }

  /** The files in one model folder (`GET /models/<folder>`), or undefined when the box has no such folder. */
  async modelsIn(folder: string): Promise<string[] | undefined> {
    return this.getJson<string[] | undefined>(`/models/${encodeURIComponent(folder)}`, { missingIsUndefined: true });
  }

  /**
   * Uploads a local image to the box's input folder (`overwrite=false`: ComfyUI keeps an identical
   * file and renames a different one with the same name). Returns the file as ComfyUI stored it.
   */
  async uploadImage(localPath: string): Promise<ComfyFileRef> {
    let blob: Blob;
    try {
      blob = await openAsBlob(localPath);
    } catch (err) {
      throw badInput(`Cannot read the input file ${localPath}: ${(err as Error).message}`, 'Check the path in the workflow parameters.');
    }
    const form = new FormData();
    form.append('image', blob, path.basename(localPath));
    form.append('type', 'input');
    form.append('overwrite', 'false');
    const res = await this.request('POST', '/upload/image', { body: form, timeoutMs: this.transferTimeoutMs });
    if (!res.ok) throw await this.httpError(res, `POST /upload/image (${path.basename(localPath)})`);
    const body = (await res.json().catch(() => undefined)) as { name?: unknown; subfolder?: unknown; type?: unknown } | undefined;
    if (!body || typeof body.name !== 'string') throw failure(`ComfyUI answered POST /upload/image without the stored file's name.`, undefined, 'comfy_http');
    return { filename: body.name, subfolder: typeof body.subfolder === 'string' ? body.subfolder : '', type: typeof body.type === 'string' ? body.type : 'input' };
  }

  /**
   * Queues a graph. `extraPngInfo` goes into the saved images' metadata (`{workflow}` for the UI
   * workflow). A refusal (400) is bad input whose message lists ComfyUI's error and every node
   * error. `node_errors` on a 200 name output nodes ComfyUI will skip.
   */
  async queuePrompt(graph: ApiGraph, clientId: string, extraPngInfo?: Record<string, unknown>): Promise<{ prompt_id: string; number: number; node_errors?: Record<string, unknown> }> {
    const payload = { prompt: graph, client_id: clientId, extra_data: extraPngInfo ? { extra_pnginfo: extraPngInfo } : {} };
    const res = await this.request('POST', '/prompt', { json: payload });
    const text = await res.text().catch(() => '');
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    if (res.status === 400) {
      throw badInput(`ComfyUI refused the workflow: ${describePromptError(body ?? { error: text })}`,
        'Fix the workflow or its parameters (model and file names must exist on the box), then run it again.');
    }
    if (!res.ok) throw failure(`ComfyUI answered ${res.status} to POST /prompt: ${comfyMessage(text)}.`, undefined, 'comfy_http');
    const b = isObject(body) ? body : {};
    if (typeof b.prompt_id !== 'string') throw failure(`ComfyUI answered POST /prompt without a prompt_id: ${clip(text, 120)}`, undefined, 'comfy_http');
    const nodeErrors = isObject(b.node_errors) && Object.keys(b.node_errors).length > 0 ? b.node_errors : undefined;
    return { prompt_id: b.prompt_id, number: Number(b.number ?? 0), ...(nodeErrors ? { node_errors: nodeErrors } : {}) };
  }

  /** `GET /history/{id}` (that prompt, or {} when the box has no record of it) or `GET /history` (everything). */
  history(promptId?: string): Promise<Record<string, HistoryEntry>> {
    return promptId
      ? this.getJson(`/history/${encodeURIComponent(promptId)}`)
      : this.getJson('/history', { timeoutMs: Math.max(this.timeoutMs, BIG_ANSWER_TIMEOUT_MS) });
  }

  async queue(): Promise<{ running: QueueItem[]; pending: QueueItem[] }> {
    const q = await this.getJson<{ queue_running?: unknown[]; queue_pending?: unknown[] }>('/queue');
    const rows = (r: unknown) => (Array.isArray(r) ? r.map(queueItem).filter((x): x is QueueItem => !!x) : []);
    return { running: rows(q.queue_running), pending: rows(q.queue_pending).sort((a, b) => a.number - b.number) };
  }

  /** Removes pending prompts from the queue (a running one needs interrupt). */
  deleteQueued(promptIds: string[]): Promise<void> {
    return this.post('/queue', { delete: promptIds });
  }

  clearQueue(): Promise<void> {
    return this.post('/queue', { clear: true });
  }

  /** Stops the running prompt; with an id, newer ComfyUI versions stop it only if that one is running. */
  interrupt(promptId?: string): Promise<void> {
    return this.post('/interrupt', promptId ? { prompt_id: promptId } : {});
  }

  /** Downloads a file ComfyUI made (`GET /view`) into a new file; returns its size in bytes. */
  download(file: ComfyFileRef, destPath: string): Promise<number> {
    const query = { filename: file.filename, subfolder: file.subfolder ?? '', type: file.type || 'output' };
    const shown = file.subfolder ? `${file.subfolder}/${file.filename}` : file.filename;
    return this.fetchToFile('/view', query, destPath, `GET /view (${file.type} ${shown})`);
  }

  /**
   * The files under a folder of the box's user data (e.g. `workflows`), as paths relative to that
   * folder; [] when the folder does not exist.
   */
  async listUserData(dir: string): Promise<string[]> {
    const res = await this.request('GET', '/api/userdata', { query: { dir, recurse: 'true' } });
    if (res.status === 404) {
      await res.arrayBuffer().catch(() => undefined);
      return [];
    }
    if (!res.ok) throw await this.httpError(res, `GET /api/userdata?dir=${dir}`);
    const list = (await res.json().catch(() => [])) as unknown;
    if (!Array.isArray(list)) return [];
    return list
      .map((x) => (typeof x === 'string' ? x : isObject(x) && typeof x.path === 'string' ? x.path : Array.isArray(x) && typeof x[0] === 'string' ? x[0] : undefined))
      .filter((x): x is string => !!x);
  }

  /** Downloads one user-data file (`relPath` from the user folder, e.g. `workflows/a.json`) into a new file. */
  downloadUserData(relPath: string, destPath: string): Promise<number> {
    return this.fetchToFile(`/api/userdata/${encodeURIComponent(relPath)}`, undefined, destPath, `GET /api/userdata/${relPath}`);
  }

  /**
   * Subscribes to `/ws?clientId=`: ComfyUI sends a prompt's progress only to the client id it was
   * queued with. Binary messages (previews) and unknown types are ignored.
   */
  watch(clientId: string, onEvent: (e: ComfyEvent) => void): ComfyWatch {
    let settle: (ok: boolean) => void = () => {};
    let done: () => void = () => {};
    const connected = new Promise<boolean>((r) => (settle = r));
    const closed = new Promise<void>((r) => (done = r));
    let ws: WebSocket | undefined;
    let closing = false;
    const giveUp = () => {
      settle(false);
      done();
    };
    // `ws` loads on the first watch: a supervisor that runs no job never pays for it.
    import('ws').then(({ default: WS }) => {
      if (closing) return giveUp();
      try {
        ws = new WS(`${this.baseUrl.replace(/^http/i, 'ws')}/ws?clientId=${encodeURIComponent(clientId)}`, {
          handshakeTimeout: this.timeoutMs,
          perMessageDeflate: false,
          headers: { [INTERNAL_REQUEST_HEADER]: '1' },
        });
      } catch {
        return giveUp();
      }
      ws.on('open', () => settle(true));
      ws.on('message', (data, isBinary) => {
        if (isBinary) return;
        let msg: unknown;
        try {
          msg = JSON.parse(data.toString());
        } catch {
          return;
        }
        if (isObject(msg) && typeof msg.type === 'string' && EVENT_TYPES.has(msg.type) && isObject(msg.data)) {
          try {
            onEvent(msg as ComfyEvent);
          } catch {
            // a watcher's bug must not kill the socket
          }
        }
      });
      // A 404 (no /ws), a refused connection, a reset: all end as `connected` false or `closed`.
      ws.on('error', () => settle(false));
      ws.on('close', giveUp);
    }, giveUp);
    return {
      connected,
      closed,
      close() {
        closing = true;
        if (ws) ws.terminate();
      },
    };
  }
}
