/**
 * The dashboard: a page served by the supervisor on 127.0.0.1, showing every box, its apps and
 * money, and the jobs, live (server-sent events), with buttons that call the same API the CLI and
 * the MCP server use. Protected like the tunnels and more: Host and Origin checks, and a token
 * from VAI_HOME (given once in the URL, then held in an HttpOnly SameSite=Strict cookie) that
 * every request needs. Every action is a POST.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import path from 'node:path';
import type { InstanceView, JobView } from '../api/views.js';
import type { VaiApi } from '../api/api.js';
import type { RequestEnv } from '../config/settings.js';
import { badInput, toVaiError } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import { DASHBOARD_COOKIE } from '../model/tunnel.js';
import { PAGE_CSS, PAGE_HTML, PAGE_JS } from './page.js';

/** How often the page gets a fresh picture while nothing else changed (costs and idle times move). */
const TICK_MS = 1_000;
/** The most recent jobs the page lists (all running ones besides). */
const RECENT_JOBS = 20;
const MAX_BODY = 16 * 1024;
const IMAGE_TYPES: Record<string, string> = { '.png': 'image/png', '.jpg': 'image/jpeg', '.jpeg': 'image/jpeg', '.webp': 'image/webp', '.gif': 'image/gif' };

export interface DashboardHost {
  /** The same API the CLI and MCP server call; actions go through it. */
  readonly api: VaiApi;
  /** The boxes this supervisor knows, as `list` shows them. */
  instances(): InstanceView[];
  /** The environment the supervisor holds for a box (its API key): actions on it use that. */
  envOf(id: string): RequestEnv;
  /** Calls `listener` whenever a box or job changed; returns the unsubscribe. */
  onChange(listener: () => void): () => void;
  readonly home: string;
  /** VAI_UI_PORT (default 8187): the first port tried, then each one below. */
  readonly port: number;
  /** The tunnels' range starts here: the dashboard stays below it. */
  readonly basePort: number;
  readonly log: Logger;
}

export interface Snapshot {
  at: string;
  instances: InstanceView[];
  jobs: JobView[];
}

/** The dashboard's token: made once, kept in VAI_HOME (0600). */
function tokenIn(home: string): string {
  const file = path.join(home, 'ui-token');
  if (existsSync(file)) {
    const t = readFileSync(file, 'utf8').trim();
    if (/^[0-9a-f]{64}$/.test(t)) return t;
  }
  const t = randomBytes(32).toString('hex');
  writeFileSync(file, t + '\n', { mode: 0o600 });
  return t;
}

function sameSecret(a: string | undefined, b: string): boolean {
  if (a === undefined || a.length !== b.length) return false;
  return timingSafeEqual(Buffer.from(a), Buffer.from(b));
}

function cookieOf(req: http.IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === name) return v.join('=');
  }
  return undefined;
}

function send(res: http.ServerResponse, status: number, type: string, body: string | Buffer, extra: http.OutgoingHttpHeaders = {}): void {
  res.writeHead(status, {
    'content-type': type,
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ...extra,
  });
  res.end(body);
}

function sendJson(res: http.ServerResponse, status: number, value: unknown): void {
  send(res, status, 'application/json; charset=utf-8', JSON.stringify(value));
}

export class Dashboard {
  private server: http.Server | undefined;
  private readonly token: string;
  private readonly streams = new Set<http.ServerResponse>();
  private readonly sockets = new Set<net.Socket>();
  private tick: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;
  private lastSent = '';
  private pushQueued = false;
  port = 0;

  constructor(private readonly host: DashboardHost) {
    this.token = tokenIn(host.home);
  }

  /** The URL to open: it carries the token once; the page then lives on the cookie. */
  get url(): string {
    return `http://127.0.0.1:${this.port}/?token=${this.token}`;
  }

  /** Listens on 127.0.0.1 at the first free port from VAI_UI_PORT down, below the tunnels' range. */
  async start(): Promise<void> {
    const server = http.createServer((req, res) => void this.route(req, res).catch((err) => {
      if (!res.headersSent) sendJson(res, 500, { ok: false, error: toVaiError(err).message });
    }));
    server.on('connection', (s) => {
      this.sockets.add(s);
      s.once('close', () => this.sockets.delete(s));
    });
    for (let port = Math.min(this.host.port, this.host.basePort - 1); port >= 1024; port--) {
      if (await listenOn(server, port)) {
        this.server = server;
        this.port = port;
        this.host.log.info(`dashboard on http://127.0.0.1:${port}`);
        this.unsubscribe = this.host.onChange(() => this.queuePush());
        return;
      }
    }
    throw badInput(`No free port for the dashboard from ${this.host.port} down.`, 'Set VAI_UI_PORT to a free port below VAI_BASE_PORT.', 'no_free_port');
  }

  async stop(): Promise<void> {
    clearInterval(this.tick);
    this.unsubscribe?.();
    for (const s of this.streams) s.end();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  snapshot(): Promise<Snapshot> {
    return this.host.api.listJobs({}).then((all) => {
      const active = all.filter((j) => !j.finished_at);
      const recent = all.filter((j) => j.finished_at).slice(-RECENT_JOBS);
      const jobs = [...active, ...recent].sort((a, b) => b.created_at.localeCompare(a.created_at));
      return { at: new Date().toISOString(), instances: this.host.instances(), jobs };
    });
  }

  // ---------------------------------------------------------------- requests

  /** Host and Origin as the guard checks them: this page's own names only (DNS rebinding, other pages). */
  private refusal(req: http.IncomingMessage): string | undefined {
    const hostOk = [`127.0.0.1:${this.port}`, `localhost:${this.port}`].includes((req.headers.host ?? '').toLowerCase());
    if (!hostOk) return `Host ${JSON.stringify(req.headers.host ?? '')} is not this dashboard`;
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== `http://127.0.0.1:${this.port}`) return `requests from ${origin} are refused`;
    const site = req.headers['sec-fetch-site'];
    if (site !== undefined && site !== 'same-origin' && site !== 'none') return `a ${site} request is refused`;
    if (req.method === 'POST' && origin === undefined) return 'an action needs the Origin header of this page';
    return undefined;
  }

  private async route(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const refused = this.refusal(req);
    if (refused) return send(res, 403, 'text/plain; charset=utf-8', `vai-mcp dashboard: ${refused}.\n`);
    const url = new URL(req.url ?? '/', `http://127.0.0.1:${this.port}`);
    if (req.method === 'GET' && url.pathname === '/' && url.searchParams.has('token')) {
      if (!sameSecret(url.searchParams.get('token') ?? undefined, this.token)) return this.unauthorized(res);
      // The cookie belongs to 127.0.0.1, never to localhost, where the tunnels' pages live.
      return send(res, 303, 'text/plain; charset=utf-8', 'See /\n', {
        location: `http://127.0.0.1:${this.port}/`,
        'set-cookie': `${DASHBOARD_COOKIE}=${this.token}; HttpOnly; SameSite=Strict; Path=/`,
      });
    }
    if (!sameSecret(cookieOf(req, DASHBOARD_COOKIE), this.token)) return this.unauthorized(res);
    if (req.method === 'GET') {
      if (url.pathname === '/') return send(res, 200, 'text/html; charset=utf-8', PAGE_HTML);
      if (url.pathname === '/app.js') return send(res, 200, 'text/javascript; charset=utf-8', PAGE_JS);
      if (url.pathname === '/app.css') return send(res, 200, 'text/css; charset=utf-8', PAGE_CSS);
      if (url.pathname === '/api/state') return sendJson(res, 200, await this.snapshot());
      if (url.pathname === '/api/events') return this.openStream(res);
      if (url.pathname === '/api/output') return this.output(res, url.searchParams.get('job') ?? '', Number(url.searchParams.get('n')));
    }
    if (req.method === 'POST' && url.pathname === '/api/action') return this.action(req, res);
    send(res, req.method === 'GET' || req.method === 'POST' ? 404 : 405, 'text/plain; charset=utf-8', 'Not here.\n');
  }

  private unauthorized(res: http.ServerResponse): void {
    send(res, 401, 'text/plain; charset=utf-8', 'vai-mcp dashboard: open the URL that `vai-mcp-cli ui` prints (it carries the token).\n');
  }

  /** One output image of a job: only files the job downloaded. */
  private async output(res: http.ServerResponse, jobId: string, n: number): Promise<void> {
    const job = (await this.host.api.listJobs({})).find((j) => j.job_id === jobId);
    const file = job && Number.isInteger(n) ? job.outputs[n] : undefined;
    const type = file && IMAGE_TYPES[path.extname(file).toLowerCase()];
    if (!file || !type || !existsSync(file)) return send(res, 404, 'text/plain; charset=utf-8', 'No such output.\n');
    send(res, 200, type, readFileSync(file));
  }

  // ---------------------------------------------------------------- live updates

  private openStream(res: http.ServerResponse): void {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive', 'x-content-type-options': 'nosniff' });
    this.streams.add(res);
    res.once('close', () => {
      this.streams.delete(res);
      if (this.streams.size === 0) {
        clearInterval(this.tick);
        this.tick = undefined;
      }
    });
    this.tick ??= setInterval(() => this.queuePush(), TICK_MS);
    this.lastSent = '';
    this.queuePush();
  }

  /** Sends a fresh picture to every open page, once per turn, and only when something in it changed. */
  private queuePush(): void {
    if (this.pushQueued || this.streams.size === 0) return;
    this.pushQueued = true;
    setTimeout(() => {
      this.pushQueued = false;
      void this.snapshot().then((snap) => {
        const body = JSON.stringify({ instances: snap.instances, jobs: snap.jobs });
        if (body === this.lastSent) return;
        this.lastSent = body;
        for (const s of this.streams) s.write(`data: ${JSON.stringify(snap)}\n\n`);
      }).catch((err) => this.host.log.warn(`dashboard update failed: ${toVaiError(err).message}`));
    }, 50);
  }

  // ---------------------------------------------------------------- actions

  private async action(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    let body: { action?: unknown; instance_id?: unknown; app?: unknown; job_id?: unknown; confirm?: unknown };
    try {
      body = JSON.parse(await readBody(req));
    } catch {
      return sendJson(res, 400, { ok: false, error: 'The body must be JSON: {"action": ..., "instance_id": ...}.' });
    }
    const id = typeof body.instance_id === 'string' ? body.instance_id : '';
    const app = typeof body.app === 'string' && body.app ? body.app : undefined;
    const api = this.host.api;
    try {
      const o = { env: id ? this.host.envOf(id) : undefined };
      let result: unknown;
      switch (body.action) {
        case 'open_tunnel': result = await api.openTunnel({ instance_id: id, app }, o); break;
        case 'close_tunnel': result = await api.stopTunnel({ instance_id: id, app }, o); break;
        case 'stop': result = await api.stopInstance({ instance_id: id }, o); break;
        case 'start': result = await api.startInstance({ instance_id: id }, o); break;
        case 'destroy':
          if (body.confirm !== true) return sendJson(res, 400, { ok: false, error: 'Destroying a box needs "confirm": true.' });
          result = await api.destroyInstance({ instance_id: id }, o);
          break;
        case 'cancel_job': {
          const job = (await api.listJobs({})).find((j) => j.job_id === body.job_id);
          if (!job) return sendJson(res, 400, { ok: false, error: `No job ${String(body.job_id)}.` });
          result = await api.cancelJobs({ instance_id: job.instance_id, job_id: job.job_id }, { env: this.host.envOf(job.instance_id) });
          break;
        }
        default:
          return sendJson(res, 400, { ok: false, error: `Unknown action ${JSON.stringify(body.action)}.` });
      }
      this.host.log.info(`dashboard: ${String(body.action)} ${id || String(body.job_id)}${app ? ` (${app})` : ''}`);
      this.queuePush();
      sendJson(res, 200, { ok: true, result });
    } catch (err) {
      sendJson(res, 200, { ok: false, error: toVaiError(err).message });
    }
  }
}

function listenOn(server: http.Server, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const onError = () => resolve(false);
    server.once('error', onError);
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => {
      server.off('error', onError);
      resolve(true);
    });
  });
}

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new Error('too large'));
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}
