/**
 * The Vast.ai REST API as it really behaves: Bearer auth, a bad key
 * answered with 404 `auth_error` (the docs say 401), 429 without Retry-After, `{"instances":
 * null}` for a box that is gone, 410 on the retired v0 list.
 *
 * - Every endpoint is paced at its documented minimum interval (show 2 s, v1 list 1 s, create
 *   4.5 s, ...), shared by every caller in the process for one key, so polls never trip the limit.
 *   VAI_VAST_PACE_SCALE scales the intervals (tests run against a fake at a fraction of them).
 * - A 429 means the request was refused, so it is retried after a backoff, creates included.
 * - A create whose outcome is unknown (network error, 5xx) is never retried: the caller looks the
 *   box up by its label instead (`AmbiguousCreateError`).
 * - The key never appears in output, logs or errors.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { badInput, failure, VaiError } from '../../lib/errors.js';
import { addSecret, redact } from '../../lib/log.js';
import type { RequestEnv } from '../../config/settings.js';

/** Where the key comes from, in the official CLI's order. */
export function findVastApiKey(env: RequestEnv, settingsKey?: string): { key: string; source: string } | undefined {
  if (env.VAST_API_KEY?.trim()) return { key: env.VAST_API_KEY.trim(), source: 'VAST_API_KEY' };
  if (settingsKey) return { key: settingsKey, source: 'settings.json' };
  const home = env.HOME || os.homedir();
  const configDir = path.join(env.XDG_CONFIG_HOME || path.join(home, '.config'), 'vastai');
  for (const file of [path.join(configDir, 'vast_tfa_key'), path.join(configDir, 'vast_api_key'), path.join(home, '.vast_api_key')]) {
    try {
      const key = readFileSync(file, 'utf8').trim();
      if (key) return { key, source: file };
    } catch {
      // not there: try the next place
    }
  }
  return undefined;
}

/** One instance as the API returns it (the fields vai-mcp reads). */
export interface VastInstance {
  id: number;
  label: string | null;
  actual_status: string | null;
  intended_status?: string | null;
  cur_state?: string | null;
  status_msg?: string | null;
  ssh_host?: string | null;
  ssh_port?: number | null;
  public_ipaddr?: string | null;
  image_runtype?: string | null;
  ports?: Record<string, { HostIp: string; HostPort: string }[]> | null;
  dph_total?: number | null;
  gpu_name?: string | null;
  num_gpus?: number | null;
  start_date?: number | null;
}

/** One offer as a search returns it (the fields vai-mcp reads). */
export interface VastOffer {
  id: number;
  ask_contract_id?: number;
  machine_id?: number;
  gpu_name: string;
  num_gpus: number;
  gpu_ram?: number;
  dph_total: number;
  dph_base?: number;
  storage_cost?: number;
  inet_up?: number;
  inet_down?: number;
  inet_up_cost?: number;
  inet_down_cost?: number;
  reliability2?: number;
  reliability?: number;
  geolocation?: string;
  disk_space?: number;
  direct_port_count?: number;
  cuda_max_good?: number;
  verification?: string;
}

export interface VastSshKey {
  id: number;
  public_key: string;
}

interface VastErrorBody {
  success?: boolean;
  error?: string;
  msg?: string;
  message?: string;
  detail?: string;
}

/** A create whose outcome is unknown: the box may exist. Look it up by label; never retry. */
export class AmbiguousCreateError extends Error {}

/** Minimum interval per endpoint (ms), from the API's documented thresholds. */
const INTERVAL_MS: Record<string, number> = {
  'GET /instances/{id}': 2000,
  'GET /v1/instances': 1000,
  'PUT /asks/{id}': 4500,
  'DELETE /instances/{id}': 3000,
  'PUT /instances/{id}': 1000,
  'POST /ssh': 1000,
  'POST /bundles': 6000, // "10 per minute"
};
const DEFAULT_INTERVAL_MS = 1000;
const RETRY_429_MS = [500, 1000, 2000, 4000, 8000];

/**
 * One request at a time per endpoint, the next sent at least its interval after the previous one
 * was answered (the API counts from when a request arrives, which is before its answer), shared
 * per base URL and key.
 */
class Pacer {
  private readonly free = new Map<string, Promise<number>>();
  constructor(private readonly scale: number) {}

  /** Waits for this endpoint's turn; call the returned function when the answer has come. */
  async turn(endpoint: string): Promise<() => void> {
    const interval = (INTERVAL_MS[endpoint] ?? DEFAULT_INTERVAL_MS) * this.scale;
    const prev = this.free.get(endpoint) ?? Promise.resolve(0);
    let release!: (notBefore: number) => void;
    this.free.set(endpoint, new Promise<number>((r) => (release = r)));
    const notBefore = await prev;
    const wait = notBefore - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    let done = false;
    return () => {
      if (done) return;
      done = true;
      release(Date.now() + interval);
    };
  }

  /** The fraction of the documented intervals in use (VAI_VAST_PACE_SCALE). */
  get factor(): number {
    return this.scale;
  }
}

const pacers = new Map<string, Pacer>();
function pacerFor(baseUrl: string, apiKey: string): Pacer {
  const scale = Number(process.env.VAI_VAST_PACE_SCALE ?? 1);
  const key = `${baseUrl}|${createHash('sha256').update(apiKey).digest('hex')}|${scale}`;
  let p = pacers.get(key);
  if (!p) pacers.set(key, (p = new Pacer(Number.isFinite(scale) && scale >= 0 ? scale : 1)));
  return p;
}

/** `/api/v0/instances/123/` -> `GET /instances/{id}`: the endpoint a limit applies to. */
function endpointOf(method: string, pathAndQuery: string): string {
  const p = pathAndQuery.split('?')[0]!.replace(/^\/api\/v0/, '').replace(/^\/api(\/v1)/, '$1').replace(/\/\d+(?=\/|$)/g, '/{id}').replace(/\/$/, '');
  return `${method} ${p}`;
}

export class VastApi {
  private readonly pacer: Pacer;

  constructor(
    private readonly baseUrl: string,
    private readonly apiKey: string,
  ) {
    addSecret(apiKey);
    this.pacer = pacerFor(baseUrl, apiKey);
  }

  private async send(method: string, pathAndQuery: string, body?: unknown): Promise<Response> {
    const answered = await this.pacer.turn(endpointOf(method, pathAndQuery));
    const url = `${this.baseUrl}${pathAndQuery}`;
    try {
      return await fetch(url, {
        method,
        headers: { authorization: `Bearer ${this.apiKey}`, accept: 'application/json', ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        body: body !== undefined ? JSON.stringify(body) : undefined,
        signal: AbortSignal.timeout(30_000),
      });
    } catch (err) {
      const reason = redact((err as Error & { cause?: Error }).cause?.message ?? (err as Error).message);
      throw failure(`Cannot reach the Vast.ai API at ${this.baseUrl}: ${reason}`, 'Check your network, or VAST_URL if you set it.', 'vast_unreachable');
    } finally {
      answered();
    }
  }

  /** A request, retried on 429 (refused, so safe to repeat) with a growing pause. */
  private async request<T>(method: string, pathAndQuery: string, body?: unknown): Promise<T> {
    const what = `${method} ${pathAndQuery.split('?')[0]}`;
    for (let attempt = 0; ; attempt++) {
      const res = await this.send(method, pathAndQuery, body);
      if (res.status === 429 && attempt < RETRY_429_MS.length) {
        await res.body?.cancel();
        await new Promise((r) => setTimeout(r, RETRY_429_MS[attempt]! * Math.max(this.pacer.factor, 0.01)));
        continue;
      }
      return this.parse<T>(res, what);
    }
  }

  async get<T>(pathAndQuery: string): Promise<T> {
    return this.request<T>('GET', pathAndQuery);
  }

  private async parse<T>(res: Response, what: string): Promise<T> {
    const text = await res.text();
    let body: unknown;
    try {
      body = text ? JSON.parse(text) : undefined;
    } catch {
      body = undefined;
    }
    if (res.ok) {
      if (body === undefined) throw failure(`The Vast.ai API answered ${what} with a body that is not JSON.`);
      return body as T;
    }
    throw this.error(res.status, (body ?? {}) as VastErrorBody, text, what);
  }

  private error(status: number, body: VastErrorBody, text: string, what: string): VaiError {
    const msg = redact(body.msg ?? body.message ?? body.detail ?? text.slice(0, 200));
    if (body.error === 'auth_error' || status === 401) {
      if (/two factor/i.test(msg)) {
        return badInput('The Vast.ai API asks for two-factor authentication for this key.', 'Log in with the official CLI (`vastai login`), which writes ~/.config/vastai/vast_tfa_key, or use an API key without 2FA.', 'vast_2fa');
      }
      return badInput('The Vast.ai API key was refused (invalid or revoked).', 'Set VAST_API_KEY to a valid key from https://cloud.vast.ai/manage-keys/ .', 'vast_bad_key');
    }
    if (status === 410 || body.error === 'deprecated_endpoint') {
      return failure(`The Vast.ai API retired ${what}: ${msg}`, 'Update vai-mcp.', 'vast_deprecated');
    }
    if (status === 429) return failure(`The Vast.ai API kept refusing ${what} as too frequent.`, 'Wait a minute and try again.', 'vast_rate_limited');
    if (/no_such_ask/.test(`${body.error ?? ''} ${msg}`)) return failure(`The offer is no longer available: ${msg}`, 'Search again: offers come and go.', 'vast_offer_gone');
    if (/insufficient|credit|balance|missing_billing/i.test(`${body.error ?? ''} ${msg}`)) {
      return failure(`Vast.ai refused for lack of credit: ${msg}`, 'Add credit at https://cloud.vast.ai/billing/ .', 'vast_credit');
    }
    return failure(`The Vast.ai API answered ${what} with ${status}${body.error ? ` ${body.error}` : ''}: ${msg}`, undefined, 'vast_error');
  }

  // ---------------------------------------------------------------- endpoints

  /** `POST /api/v0/bundles/`: the body is the query object. */
  async searchOffers(query: Record<string, unknown>): Promise<VastOffer[]> {
    const body = await this.request<{ offers?: VastOffer[] }>('POST', '/api/v0/bundles/', query);
    return body.offers ?? [];
  }

  /**
   * `PUT /api/v0/asks/{offer}/`: rents an offer. Throws `AmbiguousCreateError` when the outcome
   * is unknown (the box may exist): never retry it, look it up by label.
   */
  async createInstance(offerId: number, body: Record<string, unknown>): Promise<number> {
    let res: Response;
    try {
      // 429 answers are refusals: safe to send again (paced).
      for (let attempt = 0; ; attempt++) {
        res = await this.send('PUT', `/api/v0/asks/${offerId}/`, body);
        if (res.status !== 429 || attempt >= RETRY_429_MS.length) break;
        await res.body?.cancel();
        await new Promise((r) => setTimeout(r, RETRY_429_MS[attempt]! * Math.max(this.pacer.factor, 0.01)));
      }
    } catch (err) {
      throw new AmbiguousCreateError((err as Error).message);
    }
    if (res.status >= 500) throw new AmbiguousCreateError(`the API answered ${res.status}`);
    let out: { success?: boolean; new_contract?: number };
    try {
      out = await this.parse(res, `PUT /api/v0/asks/${offerId}/`);
    } catch (err) {
      if (err instanceof VaiError && err.code !== 'vast_error') throw err;
      if (res.ok) throw new AmbiguousCreateError((err as Error).message);
      throw err;
    }
    if (!out.new_contract) throw new AmbiguousCreateError(`no new_contract in the answer`);
    return out.new_contract;
  }

  /** `GET /api/v0/instances/{id}/?owner=me`; null when the box is gone. */
  async showInstance(id: string): Promise<VastInstance | null> {
    const body = await this.get<{ instances: VastInstance | null }>(`/api/v0/instances/${encodeURIComponent(id)}/?owner=me`);
    return body.instances ?? null;
  }

  /** Every instance on the account whose label starts with `labelPrefix` (v1 list, all pages). */
  async listInstances(labelPrefix?: string): Promise<VastInstance[]> {
    const out: VastInstance[] = [];
    let token: string | null = null;
    for (let page = 0; page < 100; page++) {
      const q = new URLSearchParams({ limit: '25', select_cols: JSON.stringify(['*']) });
      if (token) q.set('after_token', token);
      const body: { instances: VastInstance[] | null; next_token?: string | null } = await this.get(`/api/v1/instances/?${q}`);
      for (const inst of body.instances ?? []) {
        if (!labelPrefix || (inst.label ?? '').startsWith(labelPrefix)) out.push(inst);
      }
      token = body.next_token ?? null;
      if (!token) break;
    }
    return out;
  }

  /** `DELETE /api/v0/instances/{id}/`. False when Vast says it does not exist (already gone). */
  async destroyInstance(id: string): Promise<boolean> {
    try {
      await this.request('DELETE', `/api/v0/instances/${encodeURIComponent(id)}/`, {});
      return true;
    } catch (err) {
      if (err instanceof VaiError && /\b404\b.*(not_found|not found)|no_such_instance/i.test(err.message)) return false;
      throw err;
    }
  }

  /** `PUT /api/v0/instances/{id}/` with `{"state": ...}`: stop (storage still bills) or start. */
  async setState(id: string, state: 'stopped' | 'running'): Promise<void> {
    await this.request('PUT', `/api/v0/instances/${encodeURIComponent(id)}/`, { state });
  }

  /** The instance log: `request_logs`, then the result URL (no API key sent there) until ready. */
  async instanceLogs(id: string, tail = 1000): Promise<string> {
    const r = await this.request<{ result_url?: string }>('PUT', `/api/v0/instances/request_logs/${encodeURIComponent(id)}/`, { tail: String(tail) });
    if (!r.result_url) throw failure('Vast.ai gave no log URL for this instance.');
    for (let attempt = 0; attempt < 30; attempt++) {
      const res = await fetch(r.result_url, { signal: AbortSignal.timeout(15_000) }).catch(() => undefined);
      if (res?.ok) return res.text();
      await res?.body?.cancel();
      await new Promise((done) => setTimeout(done, 1000 * Math.max(this.pacer.factor, 0.05)));
    }
    throw failure('The instance log was not ready in time.', 'Try `vai-mcp-cli logs <id>` again in a minute.');
  }

  /** The account's credit in $ (`GET /api/v0/users/current/`); null when the answer has none. */
  async credit(): Promise<number | null> {
    const body = await this.get<{ credit?: unknown }>('/api/v0/users/current/');
    return typeof body.credit === 'number' && Number.isFinite(body.credit) ? body.credit : null;
  }

  /** The account's SSH keys (`GET /api/v0/ssh/` answers a bare JSON array). */
  async accountKeys(): Promise<VastSshKey[]> {
    const body = await this.get<VastSshKey[] | { keys?: VastSshKey[] }>('/api/v0/ssh/');
    return Array.isArray(body) ? body : (body.keys ?? []);
  }

  async addAccountKey(publicKey: string): Promise<void> {
    await this.request('POST', '/api/v0/ssh/', { ssh_key: publicKey });
  }

  /** Attaches a public key to one instance, so its sshd accepts it. */
  async attachKey(id: string, publicKey: string): Promise<void> {
    await this.request('POST', `/api/v0/instances/${encodeURIComponent(id)}/ssh/`, { ssh_key: publicKey });
  }
}
