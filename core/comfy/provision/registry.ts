/**
 * Where a node pack comes from: a git URL and the ref to check out. A Comfy registry id is looked
 * up in the registry (`VAI_COMFY_REGISTRY_URL`, default its public API: `GET /nodes/<id>` names the
 * pack's repository); a GitHub `owner/repo` (a workflow's `aux_id`) is its GitHub URL.
 */
import type { RequestEnv } from '../../config/settings.js';
import { failure } from '../../lib/errors.js';
import { isObject } from '../../lib/json.js';
import { describePack, packDirName, type PackSource } from './needs.js';

export const DEFAULT_REGISTRY_URL = 'https://api.comfy.org';

export interface ResolvedPack {
  /** What the user named, for messages. */
  label: string;
  gitUrl: string;
  ref?: string;
  /** A ref that may not exist (a registry version, a workflow's `ver`): its absence is a note, not an error. */
  refOptional: boolean;
  /** The folder under `custom_nodes/`. */
  dir: string;
}

export async function resolvePack(source: PackSource, env: RequestEnv, signal?: AbortSignal): Promise<ResolvedPack> {
  const label = describePack(source);
  if (source.kind === 'git') return { label, gitUrl: source.url, ...(source.ref ? { ref: source.ref } : {}), refOptional: false, dir: packDirName(source.url) };
  if (source.kind === 'github') {
    const gitUrl = `https://github.com/${source.repo}`;
    return { label, gitUrl, ...(source.ref ? { ref: source.ref } : {}), refOptional: true, dir: packDirName(gitUrl) };
  }
  const base = (env.VAI_COMFY_REGISTRY_URL || DEFAULT_REGISTRY_URL).replace(/\/+$/, '');
  const url = `${base}/nodes/${encodeURIComponent(source.id)}`;
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.any([AbortSignal.timeout(20_000), ...(signal ? [signal] : [])]) });
  } catch (err) {
    throw failure(`The Comfy registry at ${base} did not answer for node pack "${source.id}": ${(err as Error).message}.`, 'Check the network (or VAI_COMFY_REGISTRY_URL), or list the pack\'s git URL in instance_config.custom_nodes instead.', 'registry');
  }
  const body: unknown = await res.json().catch(() => undefined);
  if (res.status === 404) throw failure(`The Comfy registry has no node pack "${source.id}".`, 'Check the id, or list the pack\'s git URL in instance_config.custom_nodes.', 'registry');
  const repo = isObject(body) && typeof body.repository === 'string' ? body.repository : undefined;
  if (!res.ok || !repo) throw failure(`The Comfy registry answered ${res.status} for node pack "${source.id}" without a repository.`, 'List the pack\'s git URL in instance_config.custom_nodes instead.', 'registry');
  return { label, gitUrl: repo, ...(source.version ? { ref: source.version } : {}), refOptional: true, dir: packDirName(repo) };
}
