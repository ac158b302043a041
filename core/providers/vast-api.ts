/**
 * The Vast.ai REST API as it really behaves (reference/vast-api.md): Bearer auth, a bad key
 * answered with 404 `auth_error` (the docs say 401), 429 without Retry-After, `{"instances":
 * null}` for a box that is gone, 410 on the retired v0 list. The key never appears in output,
 * logs or errors.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { badInput, failure, VaiError } from '../errors.js';
import { addSecret, redact } from '../log.js';
import type { RequestEnv } from '../settings.js';

/** Where the key comes from, in the official CLI's order (DESIGN.md section 2). */
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

/** One instance as `GET /api/v1/instances/` returns it (the fields vai-mcp reads). */
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
  ports?: Record<string, { HostIp: string; HostPort: string }[]> | null;
  dph_total?: number | null;
  gpu_name?: string | null;
  num_gpus?: number | null;
  start_date?: number | null;
}

interface VastErrorBody {
  success?: boolean;
  error?: string;
  msg?: string;
  message?: string;
  detail?: string;
}

const RETRY_429_MS = [500, 1000, 2000, 4000];

export class VastApi {
  constructor(
    private readonly baseUrl: string,
    private readonly apiKey: string,
    private readonly fetchImpl: typeof fetch = fetch,
  ) {
    addSecret(apiKey);
  }

  /** A GET, retried on 429 (Vast sends no Retry-After) with a short backoff. */
  async get<T>(pathAndQuery: string): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const res = await this.send('GET', pathAndQuery);
      if (res.status === 429 && attempt < RETRY_429_MS.length) {
        await new Promise((r) => setTimeout(r, RETRY_429_MS[attempt]));
        continue;
      }
      return this.parse<T>(res, `GET ${pathAndQuery.split('?')[0]}`);
    }
  }

  private async send(method: string, pathAndQuery: string, body?: unknown): Promise<Response> {
    const url = `${this.baseUrl}${pathAndQuery}`;
    try {
      return await this.fetchImpl(url, {
        method,
        headers: { authorization: `Bearer ${this.apiKey}`, accept: 'application/json', ...(body ? { 'content-type': 'application/json' } : {}) },
        body: body ? JSON.stringify(body) : undefined,
        signal: AbortSignal.timeout(30_000),
      });
    } catch (err) {
      throw failure(`Cannot reach the Vast.ai API at ${this.baseUrl}: ${redact((err as Error).message)}`, 'Check your network, or VAST_URL if you set it.', 'vast_unreachable');
    }
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
    if (status === 429) return failure(`The Vast.ai API rate limit was hit (${what}); retried without success.`, 'Wait a few seconds and try again.', 'vast_rate_limited');
    return failure(`The Vast.ai API answered ${what} with ${status}${body.error ? ` ${body.error}` : ''}: ${msg}`, undefined, 'vast_error');
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
}
