/**
 * A fake Vast.ai API on loopback that behaves like reference/vast-api.md describes, awkward parts
 * included: a bad key is a 404 `auth_error`, 429 comes without Retry-After, a missing instance is
 * `{"instances": null}` with 200, the v0 list is retired with 410, the v1 list pages by 25.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeInstance {
  id: number;
  label: string | null;
  actual_status: string | null;
  intended_status: string;
  cur_state: string;
  status_msg: string | null;
  ssh_host: string | null;
  ssh_port: number | null;
  public_ipaddr: string | null;
  dph_total: number;
  gpu_name: string;
  num_gpus: number;
  start_date: number;
  ports?: Record<string, { HostIp: string; HostPort: string }[]>;
}

export interface RecordedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  authorization: string | undefined;
}

export class FakeVast {
  readonly instances = new Map<number, FakeInstance>();
  readonly requests: RecordedRequest[] = [];
  /** Keys that authenticate; any other Bearer gets a 404 auth_error like the real API. */
  readonly keys = new Set<string>();
  private server: http.Server | undefined;
  private throttleNext = 0;
  private nextId = 900000;
  url = '';

  constructor(keys: string[]) {
    for (const k of keys) this.keys.add(k);
  }

  /** The next `n` requests get a 429 without Retry-After. */
  rateLimitNext(n: number): void {
    this.throttleNext = n;
  }

  addInstance(partial: Partial<FakeInstance> = {}): FakeInstance {
    const id = partial.id ?? this.nextId++;
    const inst: FakeInstance = {
      id,
      label: null,
      actual_status: 'running',
      intended_status: 'running',
      cur_state: 'running',
      status_msg: 'success, running vastai/comfy',
      ssh_host: 'ssh5.vast.ai',
      ssh_port: 20000 + (id % 1000),
      public_ipaddr: '203.0.113.7',
      dph_total: 0.42,
      gpu_name: 'RTX 4090',
      num_gpus: 1,
      start_date: Date.now() / 1000,
      ...partial,
    };
    this.instances.set(id, inst);
    return inst;
  }

  private json(res: http.ServerResponse, status: number, body: unknown): void {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(text);
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://fake');
    this.requests.push({ method: req.method ?? '', path: url.pathname, query: Object.fromEntries(url.searchParams), authorization: req.headers.authorization });
    if (this.throttleNext > 0) {
      this.throttleNext--;
      res.writeHead(429, { 'content-type': 'text/plain' });
      res.end('API requests too frequent endpoint threshold=1.0');
      return;
    }
    const key = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    if (!key || !this.keys.has(key)) return this.json(res, 404, { success: false, error: 'auth_error', msg: 'Invalid user key' });

    if (req.method === 'GET' && url.pathname === '/api/v0/instances/') {
      return this.json(res, 410, { success: false, error: 'deprecated_endpoint', msg: '/api/v0/instances/ is deprecated. Use /api/v1/instances/ instead.' });
    }
    if (req.method === 'GET' && url.pathname === '/api/v1/instances/') {
      const limit = Math.min(25, Math.max(1, Number(url.searchParams.get('limit') ?? 25) || 5));
      const all = [...this.instances.values()].sort((a, b) => a.id - b.id);
      const after = Number(url.searchParams.get('after_token') ?? 0);
      const rest = all.filter((i) => i.id > after);
      const page = rest.slice(0, limit);
      const next = rest.length > limit ? String(page[page.length - 1]!.id) : null;
      return this.json(res, 200, { success: true, instances_found: page.length, total_instances: all.length, label_counts: {}, next_token: next, instances: page });
    }
    const one = /^\/api\/v0\/instances\/(\d+)\/$/.exec(url.pathname);
    if (req.method === 'GET' && one) {
      return this.json(res, 200, { instances: this.instances.get(Number(one[1])) ?? null });
    }
    return this.json(res, 404, { success: false, error: 'not_found', msg: `fake Vast API: no route ${req.method} ${url.pathname}` });
  }

  async start(): Promise<this> {
    this.server = http.createServer((req, res) => this.handle(req, res));
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', () => r()));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async close(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}
