/**
 * What the tunnel manager keeps of one box: its SSH link and the forwards on it, one per app
 * (`comfyui`, the main one, and those `instance_config.ports` adds); and the small rules the
 * manager applies to a box's apps: its view, its guard's allowances, the sticky ports other apps
 * keep, and reading the box's PORTAL_CONFIG.
 */
import type { TunnelView } from '../api/views.js';
import { waitForEvent } from '../lib/timers.js';
import { MAIN_APP, READ_PORTAL_CONFIG } from '../model/apps.js';
import { parseAllowList } from '../model/origins.js';
import type { TunnelState } from '../model/tunnel.js';
import type { InstanceRecord, TunnelRecord } from '../store/store.js';
import type { Forward } from './forward.js';
import type { GuardAllowances } from './guard.js';
import type { SshLink } from './link.js';

export class BoxTunnel {
  link: SshLink | undefined;
  /** The main app's forward (ComfyUI): there while the box's tunnel is open. */
  forward: Forward | undefined;
  /** Its other apps' forwards, by name. */
  readonly apps = new Map<string, Forward>();
  /** A recorded tunnel without a live forward, and why: `failed` (at a restore) or `closed` (its box stopped or went away). */
  notRunning: { state: 'failed' | 'closed'; reason: string } | undefined;

  /** Every live forward, the main one first. */
  forwards(): Forward[] {
    return [...(this.forward ? [this.forward] : []), ...this.apps.values()];
  }

  /** Whether a local client used any of its apps since the last look (each app's flag is taken). */
  takeClientActivity(): boolean {
    let used = false;
    for (const f of this.forwards()) used = f.takeClientActivity() || used;
    return used;
  }

  /** The main app's state and port, with client use of any app: what the idle watch looks at. */
  usage(): BoxUsage | undefined {
    const main = this.forward;
    return main && { state: main.state, localPort: main.localPort, takeClientActivity: () => this.takeClientActivity() };
  }
}

export interface BoxUsage {
  state: TunnelState;
  localPort: number;
  takeClientActivity(): boolean;
}

/** A box's tunnel as both faces show it: the main app's port and state, totals over every app, and each app. */
export function tunnelView(rec: TunnelRecord, inst: InstanceRecord, t: BoxTunnel): TunnelView {
  const stats = t.forward?.stats();
  const all = t.forwards().map((f) => f.stats());
  const sum = (k: 'bytes_in' | 'bytes_out' | 'connections' | 'requests_refused') => all.reduce((n, s) => n + s[k], 0);
  const mainState = stats?.state ?? t.notRunning?.state ?? 'failed';
  const apps: TunnelView['apps'] = { [MAIN_APP]: { local_port: rec.local_port, url: `http://localhost:${rec.local_port}`, state: mainState, remote_port: rec.remote_port } };
  for (const [name, a] of Object.entries(rec.apps ?? {})) {
    const f = t.apps.get(name);
    apps[name] = { local_port: a.local_port, url: `http://localhost:${a.local_port}`, state: f?.state ?? t.notRunning?.state ?? 'failed', remote_port: a.remote_port };
  }
  return {
    instance_id: rec.instance_id,
    provider: inst.provider,
    local_port: rec.local_port,
    url: `http://localhost:${rec.local_port}`,
    remote_port: rec.remote_port,
    ssh_host: rec.ssh.host,
    ssh_port: rec.ssh.port,
    ssh_user: rec.ssh.user,
    state: mainState,
    last_error: stats ? stats.last_error : (t.notRunning?.reason ?? 'not running'),
    created_at: rec.created_at,
    since: stats?.since ?? rec.created_at,
    bytes_in: sum('bytes_in'),
    bytes_out: sum('bytes_out'),
    connections: sum('connections'),
    guard: inst.config.instance_config.guard ?? 'http',
    requests_refused: sum('requests_refused'),
    apps,
  };
}

/** What an app's guard lets through: the supervisor's allowances plus the box's own. */
export function allowOf(rec: InstanceRecord, all: GuardAllowances): GuardAllowances {
  const ic = rec.config.instance_config;
  return {
    origins: [...new Set([...all.origins, ...parseAllowList(ic.allowed_origins, 'origin')])],
    hosts: [...new Set([...all.hosts, ...parseAllowList(ic.allowed_hosts, 'host')])],
  };
}

/** The ports boxes' apps had last, but this app's: a new forward does not take them while it has a choice. */
export function stickyPortsBut(records: InstanceRecord[], id: string, app: string): Set<number> {
  const ports = new Set<number>();
  for (const r of records) {
    if (r.local_port !== undefined && !(r.instance_id === id && app === MAIN_APP)) ports.add(r.local_port);
    for (const [name, p] of Object.entries(r.app_ports ?? {})) if (!(r.instance_id === id && name === app)) ports.add(p);
  }
  return ports;
}

/** The box's PORTAL_CONFIG, read over its link once the link is up (undefined: it never came up). */
export async function readPortalConfig(link: SshLink): Promise<string | undefined> {
  const release = link.hold();
  try {
    if (!(await waitForEvent(link, 'state', () => link.isReady || link.state === 'failed', { timeoutMs: 120_000 })) || !link.isReady) return undefined;
    return (await link.exec(READ_PORTAL_CONFIG, 10_000)).trim();
  } finally {
    release();
  }
}
