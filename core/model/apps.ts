/**
 * The apps of a box: each a remote port that gets a local port of its own, all forwarded over
 * the box's one SSH link. `comfyui` is always one of them and is the box's main URL.
 */
import type { GuardMode } from './tunnel.js';

export const MAIN_APP = 'comfyui';
export const APP_NAME = /^[a-z][a-z0-9_-]*$/;

/** `instance_config.ports`: app name -> remote port (or with its own guard), or `"portal"`. */
export type PortsSetting = Record<string, number | { port: number; guard?: GuardMode }> | 'portal';

export interface AppSpec {
  name: string;
  remote_port: number;
  guard: GuardMode;
}

interface AppsConfig {
  remote_port: number;
  guard?: GuardMode;
  ports?: PortsSetting;
}

/**
 * The apps a box's config asks for, `comfyui` first. With `"portal"`, `portalConfig` is the box's
 * PORTAL_CONFIG (none yet: ComfyUI alone, until it is read from the box).
 */
export function appsOf(ic: AppsConfig, portalConfig?: string): AppSpec[] {
  const guard = ic.guard ?? 'http';
  const given = ic.ports === 'portal' ? portalApps(portalConfig ?? '', ic.remote_port) : (ic.ports ?? {});
  const main = given[MAIN_APP];
  const apps: AppSpec[] = [{ name: MAIN_APP, remote_port: main === undefined ? ic.remote_port : portOf(main), guard: guardOf(main, guard) }];
  for (const [name, v] of Object.entries(given)) if (name !== MAIN_APP) apps.push({ name, remote_port: portOf(v), guard: guardOf(v, guard) });
  return apps;
}

function portOf(v: number | { port: number }): number {
  return typeof v === 'number' ? v : v.port;
}

function guardOf(v: number | { guard?: GuardMode } | undefined, fallback: GuardMode): GuardMode {
  return (typeof v === 'object' ? v.guard : undefined) ?? fallback;
}

/**
 * PORTAL_CONFIG (`host:outer:inner:path:name` entries joined by `|`, as vastai/comfy sets it) as
 * apps by their inner ports: names lowercased to `[a-z0-9_]`, the first name of a port wins, and
 * the entry on ComfyUI's port is `comfyui`.
 */
export function portalApps(text: string, comfyPort: number): Record<string, number> {
  const out: Record<string, number> = {};
  const seen = new Set<number>();
  for (const entry of text.split('|')) {
    const parts = entry.trim().split(':');
    if (parts.length < 5) continue;
    const inner = Number(parts[2]);
    if (!Number.isInteger(inner) || inner < 1 || inner > 65535 || seen.has(inner)) continue;
    seen.add(inner);
    const raw = parts.slice(4).join(':').toLowerCase().replace(/[^a-z0-9]+/g, '_').replace(/^_+|_+$/g, '');
    const name = inner === comfyPort ? MAIN_APP : /^[a-z]/.test(raw) ? raw : `app_${inner}`;
    if (!(name in out)) out[name] = inner;
  }
  return out;
}

/** Reads PORTAL_CONFIG on a box: the login environment, else the file Vast writes it to. */
export const READ_PORTAL_CONFIG = `sh -c 'v="$PORTAL_CONFIG"; [ -n "$v" ] || v=$(sed -n "s/^PORTAL_CONFIG=//p" /etc/environment 2>/dev/null | tr -d "\\042"); printf %s "$v"'`;
