/**
 * Download tokens and the hosts each may go to: one table. A token is sent only to a URL whose
 * host is in its row, and never follows a redirect to another host (the CDNs both sites redirect
 * to take signed URLs instead). The tokens come with each request, from the caller's environment.
 */
import type { RequestEnv } from '../../config/settings.js';

export type TokenName = 'HF_TOKEN' | 'CIVITAI_TOKEN';

/** Hugging Face and Civitai accept `Authorization: Bearer <token>`. */
export const TOKEN_HOSTS: Record<TokenName, readonly string[]> = {
  HF_TOKEN: ['huggingface.co', 'hf.co'],
  CIVITAI_TOKEN: ['civitai.com'],
};

/**
 * For tests only: `HF_TOKEN=127.0.0.1:8001,CIVITAI_TOKEN=127.0.0.1:8002` adds hosts (with their
 * port) to the table, so a test can stand in for the real sites.
 */
export const TEST_HOSTS_VAR = 'VAI_TOKEN_HOSTS_FOR_TESTS';

export interface DownloadToken {
  name: TokenName;
  value: string;
  /** The host (with its port, when the URL has one) the token may go to. */
  host: string;
}

function hostsOf(name: TokenName, env: RequestEnv): string[] {
  const extra = (env[TEST_HOSTS_VAR] ?? '').split(',').map((s) => s.trim()).filter((s) => s.startsWith(`${name}=`)).map((s) => s.slice(name.length + 1).toLowerCase());
  return [...TOKEN_HOSTS[name], ...extra];
}

/** The token for a URL, if its host is one the caller's token may go to. */
export function tokenFor(url: string, env: RequestEnv): DownloadToken | undefined {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return undefined;
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') return undefined;
  const hostname = u.hostname.toLowerCase();
  const host = u.host.toLowerCase();
  for (const name of Object.keys(TOKEN_HOSTS) as TokenName[]) {
    const value = env[name];
    if (!value) continue;
    if (hostsOf(name, env).some((h) => h === host || h === hostname)) return { name, value, host };
  }
  return undefined;
}

/** A URL as messages show it: no query (Civitai and signed CDN URLs carry secrets there). */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.origin}${u.pathname}${u.search ? '?…' : ''}`;
  } catch {
    return '(a URL)';
  }
}
