/**
 * Tunnels as a user asks for them: open (or reopen) one and wait for it to settle, close one or
 * all, and the URL a job reaches a box's ComfyUI at. The tunnel manager does the work; this is
 * where a box's status and its watch follow.
 */
import type { OpenTunnelParams, StopTunnelResult, TunnelView } from '../api/api.js';
import type { RequestEnv } from '../config/settings.js';
import { badInput, failure } from '../lib/errors.js';
import { MAIN_APP } from '../model/apps.js';
import { isSettled } from '../model/instance.js';
import type { TunnelManager } from '../tunnels/manager.js';
import type { Boxes } from './boxes.js';
import { byId } from './fleet.js';
import type { Provisioning } from './provisioning.js';

/** How long opening a tunnel waits for it to settle before answering with its current state. */
const OPEN_WAIT_MS = 20_000;

export class TunnelApi {
  constructor(
    private readonly boxes: Boxes,
    private readonly tunnels: TunnelManager,
    private readonly provisioning: Provisioning,
  ) {}

  async open(p: OpenTunnelParams, env: RequestEnv): Promise<TunnelView> {
    const rec = this.boxes.record(p.instance_id);
    const id = rec.instance_id;
    if (!rec.ssh || rec.status === 'stopped' || rec.status === 'provisioning' || rec.status === 'loading') {
      throw failure(`${id} is not running yet (status ${rec.status}), so it has no tunnel to open.`, {
        cli: 'Wait for it: `vai-mcp-cli list` shows its status.',
        agent: `Wait for it: list_instances with instance_ids ["${id}"] and wait_s.`,
      }, 'not_running');
    }
    const main = await this.tunnels.ensure(rec, env, { app: p.app, port: p.port, resetHostKey: p.reset_host_key });
    const forward = (p.app && this.boxes.box(id).tunnel.apps.get(p.app)) || main;
    const settled = (f: typeof main) => f.waitFor(['up', 'remote_down', 'failed', 'port_conflict', 'stopped'], OPEN_WAIT_MS).catch(() => f.state);
    const [state] = await Promise.all([settled(forward), ...(p.app ? [] : [...this.boxes.box(id).tunnel.apps.values()].map(settled))]);
    // A registered box that failed (say, a refused key) gets another chance once its tunnel works.
    if (rec.status === 'failed' && state !== 'failed') await this.boxes.update(id, { status: 'running', status_message: 'tunnel re-opened' });
    if (!isSettled(this.boxes.record(id).status)) {
      this.boxes.box(id).env = env;
      this.provisioning.start(id);
    }
    if (state === 'failed' || state === 'port_conflict') {
      const what = p.app ? `The tunnel of ${id} (app ${p.app})` : `The tunnel of ${id}`;
      throw failure(`${what} could not be opened: ${forward.stats().last_error}`, state === 'port_conflict'
        ? { cli: `Free the port, or choose another: \`vai-mcp-cli tunnel ${id}${p.app ? ` ${p.app}` : ''} --port P\`.`, agent: 'Free the port, or call open_tunnel again with another local_port.' }
        : undefined, `tunnel_${state}`);
    }
    return this.tunnels.view(id)!;
  }

  async close(id: string, app?: string): Promise<StopTunnelResult> {
    this.boxes.record(id);
    const trec = this.boxes.store.tunnels.get(id);
    if (!trec) {
      throw badInput(`${id} has no open tunnel.`, { cli: '`vai-mcp-cli tunnel --list` shows the open tunnels.', agent: 'list_tunnels shows the open tunnels.' }, 'no_tunnel');
    }
    if (app !== undefined && app !== MAIN_APP && !trec.apps?.[app]) {
      const open = [MAIN_APP, ...Object.keys(trec.apps ?? {})].join(', ');
      throw badInput(`${id} has no open app "${app}" (open: ${open}).`, { cli: `Name one of them, or leave it out to close them all: \`vai-mcp-cli tunnel --stop ${id}\`.`, agent: 'Pass one of them as app, or leave app out to close them all.' }, 'no_tunnel');
    }
    const freed = await this.tunnels.close(id, app);
    return { instance_id: id, local_port: freed[0] ?? trec.local_port, ports_freed: freed };
  }

  async closeAll(): Promise<StopTunnelResult[]> {
    const out: StopTunnelResult[] = [];
    for (const t of this.boxes.store.tunnels.values()) {
      const freed = await this.tunnels.close(t.instance_id);
      out.push({ instance_id: t.instance_id, local_port: freed[0] ?? t.local_port, ports_freed: freed });
    }
    return out.sort(byId);
  }

  /** The box's ComfyUI through its tunnel (127.0.0.1: the tunnel listens there in any case). */
  async comfyUrl(id: string, timeoutMs: number): Promise<string> {
    const rec = this.boxes.record(id);
    if (rec.status !== 'ready') {
      throw failure(`${id} is not ready (${rec.status}${rec.status_message ? `: ${rec.status_message}` : ''}).`, rec.status === 'stopped'
        ? { cli: `Start it: vai-mcp-cli start ${id}`, agent: `It is stopped; ask the user to start it (\`vai-mcp-cli start ${id}\`).` }
        : { cli: 'Wait until `vai-mcp-cli list` shows it ready.', agent: `Wait until it is ready: list_instances with instance_ids ["${id}"] and wait_s.` }, 'not_ready');
    }
    const forward = this.tunnels.forwardOf(id);
    if (!forward) throw failure(`${id} has no open tunnel.`, { cli: `Open it: vai-mcp-cli tunnel ${id}`, agent: `Open it: open_tunnel with instance_id "${id}".` }, 'no_tunnel');
    try {
      await forward.waitFor(['up'], timeoutMs);
    } catch {
      const why = forward.stats().last_error;
      throw failure(`The tunnel of ${id} is not up (${forward.state}${why ? `: ${why}` : ''}).`, {
        cli: `\`vai-mcp-cli tunnel --list\` shows it; \`vai-mcp-cli tunnel ${id}\` reopens it.`,
        agent: `list_tunnels shows it; open_tunnel with instance_id "${id}" reopens it.`,
      }, 'tunnel_down');
    }
    return `http://127.0.0.1:${forward.localPort}`;
  }
}
