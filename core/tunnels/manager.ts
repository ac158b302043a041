/**
 * The tunnel manager: every box's SSH link and forward, their port leases and their host-key pins.
 * A box has one link (kept while the box is known, connected while something uses it) and, while
 * its tunnel is open, one forward on it. Ports are sticky: a box gets its last port back when it
 * is free, and new tunnels leave other boxes' last ports alone.
 */
import type { TunnelView } from '../api/views.js';
import type { RequestEnv } from '../config/settings.js';
import { failure, toVaiError, unknownInstance } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import type { Mutex } from '../lib/mutex.js';
import { nowIso, waitForEvent } from '../lib/timers.js';
import type { SshEndpoint } from '../model/instance.js';
import type { Shell } from '../model/shell.js';
import { parseAllowList } from '../model/origins.js';
import type { TunnelState } from '../model/tunnel.js';
import type { InstanceRecord, StateStore, TunnelRecord } from '../store/store.js';
import { Forward } from './forward.js';
import type { GuardAllowances } from './guard.js';
import { HostKeyPins } from './host-keys.js';
import { SshLink } from './link.js';
import { PortAllocator } from './ports.js';
import { describeAuth, type SshAuth } from './ssh-auth.js';

/** What the manager keeps of one box; the box's own state object holds it. */
export class BoxTunnel {
  link: SshLink | undefined;
  forward: Forward | undefined;
  /** A recorded tunnel without a live forward, and why: `failed` (at a restore) or `closed` (its box stopped or went away). */
  notRunning: { state: 'failed' | 'closed'; reason: string } | undefined;
}

export interface TunnelHost {
  readonly store: Pick<StateStore, 'instances' | 'tunnels' | 'ports' | 'hostKeys'>;
  readonly log: Logger;
  readonly basePort: number;
  /** What every tunnel's guard lets through (VAI_ALLOWED_ORIGINS / _HOSTS at the supervisor's start). */
  readonly allowances: GuardAllowances;
  /** The box's lock, its tunnel state, and whether a destroy is under way. */
  box(id: string): { lock: Mutex; tunnel: BoxTunnel; destroying: boolean };
  /** The SSH credentials for a box (its provider's), for a caller's environment. */
  auth(rec: InstanceRecord, env: RequestEnv): SshAuth;
  /** A progress line for whoever waits on the box. */
  progress(id: string, message: string): void;
  /** The box or its tunnel changed (waiters look again). */
  changed(id: string): void;
  updateRecord(id: string, patch: Partial<InstanceRecord>): Promise<unknown>;
}

export interface EnsureOptions {
  /** Exactly this local port, or an error. */
  port?: number;
  resetHostKey?: boolean;
  /** Keep the port leased now (a restore, a retry), instead of choosing again. */
  keepLease?: boolean;
}

export class TunnelManager {
  readonly ports: PortAllocator;
  readonly pins: HostKeyPins;

  constructor(private readonly host: TunnelHost) {
    this.ports = new PortAllocator(host.store.ports, host.basePort);
    this.pins = new HostKeyPins(host.store.hostKeys, host.log);
  }

  /** The box's open forward, if any. */
  forwardOf(id: string): Forward | undefined {
    return this.host.box(id).tunnel.forward;
  }

  /** Runs a command on the box over its link (while its tunnel keeps the link up). */
  exec(id: string, command: string, timeoutMs?: number): Promise<string> {
    const link = this.host.box(id).tunnel.link;
    return link ? link.exec(command, timeoutMs) : Promise.reject(new Error('the box has no SSH link'));
  }

  /**
   * Runs a command on a box over its SSH link, whether or not its tunnel is open: the link is made
   * when the box has none, held for the command, and let go after (it disconnects when nothing
   * else holds it).
   */
  async run(id: string, env: RequestEnv, command: string, timeoutMs = 10_000): Promise<string> {
    return this.holding(id, env, timeoutMs, (link) => link.exec(command, timeoutMs));
  }

  /** A shell on the box for long work (downloads, installs), on its SSH link held meanwhile. */
  shell(id: string, env: RequestEnv): Shell {
    return (command, o) => this.holding(id, env, 30_000, (link) => link.spawn(command, o));
  }

  private async holding<T>(id: string, env: RequestEnv, timeoutMs: number, work: (link: SshLink) => Promise<T>): Promise<T> {
    const box = this.host.box(id);
    const link = await box.lock.run(async () => {
      const rec = this.host.store.instances.get(id);
      if (!rec?.ssh || box.destroying) throw new Error(`${id} has no SSH endpoint now`);
      const t = box.tunnel;
      if (t.link && (t.link.state === 'failed' || t.link.ssh.host !== rec.ssh.host || t.link.ssh.port !== rec.ssh.port) && !t.forward) {
        t.link.stop();
        t.link = undefined;
      }
      return (t.link ??= this.newLink(rec, rec.ssh, this.host.auth(rec, env)));
    });
    const release = link.hold();
    try {
      if (!(await waitForEvent(link, 'state', () => link.isReady || link.state === 'failed', { timeoutMs }))) throw new Error(`the SSH link did not come up within ${timeoutMs} ms`);
      return await work(link);
    } finally {
      release();
    }
  }

  private newLink(rec: InstanceRecord, ssh: SshEndpoint, auth: SshAuth): SshLink {
    const id = rec.instance_id;
    return new SshLink({ instanceId: id, ssh, auth, checkHostKey: (hp, sha) => this.pins.check(id, hp, sha), log: this.host.log.child('tunnel') });
  }

  /** A box's guard: the supervisor's allowances plus the box's own. */
  private guardOf(rec: InstanceRecord): { mode: 'http' | 'off'; allow: GuardAllowances } {
    const ic = rec.config.instance_config;
    const all = this.host.allowances;
    return {
      mode: ic.guard ?? 'http',
      allow: {
        origins: [...new Set([...all.origins, ...parseAllowList(ic.allowed_origins, 'origin')])],
        hosts: [...new Set([...all.hosts, ...parseAllowList(ic.allowed_hosts, 'host')])],
      },
    };
  }

  /** The ports other boxes had last: a new tunnel does not take them while it has a choice. */
  private stickyPortsBut(id: string): Set<number> {
    const ports = new Set<number>();
    for (const r of this.host.store.instances.values()) if (r.instance_id !== id && r.local_port !== undefined) ports.add(r.local_port);
    return ports;
  }

  /**
   * Opens (or re-opens) a box's tunnel. With `port`, exactly that port or an error. A forward that
   * works and needs no change is returned as it is.
   */
  ensure(rec: InstanceRecord, env: RequestEnv, opts: EnsureOptions = {}): Promise<Forward> {
    const box = this.host.box(rec.instance_id);
    return box.lock.run(async () => {
      const id = rec.instance_id;
      // Re-read under the lock: the box may have been destroyed while this call waited.
      const current = this.host.store.instances.get(id);
      if (!current) throw unknownInstance(id);
      // A watch woken by destroy's own tunnel close must not reopen what destroy is ending.
      if (box.destroying) throw failure(`${id} is being destroyed.`, { cli: 'Run `vai-mcp-cli list` to see what is left.', agent: 'Call list_instances to see what is left.' });
      if (!current.ssh) throw failure(`${id} has no SSH endpoint yet (status ${current.status}).`, { cli: 'Wait until it is running: `vai-mcp-cli list`.', agent: `Wait until it is running: list_instances with instance_ids ["${id}"] and wait_s.` });
      const t = box.tunnel;
      const existing = t.forward;
      const sameEndpoint = t.link && t.link.ssh.host === current.ssh.host && t.link.ssh.port === current.ssh.port;
      const healthy = existing && !['failed', 'port_conflict', 'stopped'].includes(existing.state);
      if (existing && sameEndpoint && healthy && !opts.resetHostKey && (opts.port === undefined || opts.port === existing.localPort)) return existing;

      const auth = this.host.auth(current, env); // a bad key is bad input, before anything changes
      const leased = this.ports.leaseOf(id);
      const port = opts.keepLease && leased !== undefined ? leased : await this.ports.allocate(id, opts.port, { port: current.local_port, keep: this.stickyPortsBut(id) });
      if (current.local_port !== port) await this.host.updateRecord(id, { local_port: port });
      await t.forward?.stop();
      t.forward = undefined;
      // The box keeps its link, unless it cannot serve: another endpoint, another key, a failure
      // (a failed link never retries), or a host key to be pinned anew.
      if (t.link && (!sameEndpoint || t.link.state === 'failed' || opts.resetHostKey || !sameAuth(t.link.auth, auth))) {
        t.link.stop();
        t.link = undefined;
      }
      if (opts.resetHostKey) await this.pins.drop(id);
      const prev = this.host.store.tunnels.get(id);
      const trec: TunnelRecord = {
        instance_id: id,
        local_port: port,
        remote_port: current.remote_port,
        ssh: current.ssh,
        key_path: auth.kind === 'key' ? auth.keyPath : undefined,
        created_at: prev && prev.local_port === port ? prev.created_at : nowIso(),
      };
      await this.host.store.tunnels.set(id, trec);
      t.notRunning = undefined;
      const link = (t.link ??= this.newLink(current, current.ssh, auth));
      const forward = new Forward({ instanceId: id, link, localPort: port, remotePort: current.remote_port, guard: this.guardOf(current), log: this.host.log.child('tunnel') });
      forward.on('state', (state: TunnelState, prevState: TunnelState) => this.onState(id, forward, state, prevState));
      t.forward = forward;
      this.host.log.info(`${id}: tunnel localhost:${port} -> ${current.ssh.user}@${current.ssh.host}:${current.ssh.port} -> 127.0.0.1:${current.remote_port} (${describeAuth(auth)})`);
      await forward.start();
      return forward;
    });
  }

  private onState(id: string, forward: Forward, state: TunnelState, prev: TunnelState): void {
    const error = forward.stats().last_error;
    // While another program holds the port, the box says so too: nothing presents it as working.
    if (state === 'port_conflict') void this.host.updateRecord(id, { status_message: error ?? `local port ${forward.localPort} is taken by another program` }).catch(() => undefined);
    else if (state === 'up' && prev === 'port_conflict') void this.host.updateRecord(id, { status_message: `tunnel up again at ${forward.url}` }).catch(() => undefined);
    else this.host.progress(id, state === 'up' ? `tunnel up at ${forward.url}` : `tunnel ${state}${error ? `: ${error}` : ''}`);
    this.host.changed(id);
  }

  /** Stops the box's forward; its link, with nothing holding it, disconnects (and stays for later use). */
  private async stopForward(t: BoxTunnel): Promise<void> {
    const forward = t.forward;
    t.forward = undefined;
    await forward?.stop();
  }

  /** The box is gone: its forward and its link end. */
  forget(id: string): Promise<void> {
    const box = this.host.box(id);
    return box.lock.run(async () => {
      await this.stopForward(box.tunnel);
      box.tunnel.link?.stop();
      box.tunnel.link = undefined;
      box.tunnel.notRunning = undefined;
    });
  }

  /** Stops a box's tunnel, forgets its record and gives its port back (the box keeps it as its sticky port). */
  close(id: string): Promise<number | null> {
    const box = this.host.box(id);
    return box.lock.run(async () => {
      await this.stopForward(box.tunnel);
      box.tunnel.notRunning = undefined;
      const trec = this.host.store.tunnels.get(id);
      if (trec) await this.host.store.tunnels.delete(id);
      const port = this.ports.leaseOf(id) ?? trec?.local_port ?? null;
      await this.ports.release(id);
      this.host.changed(id);
      return port;
    });
  }

  /** Closes the tunnel of a box that went away or stopped, keeping it listed with the reason (its port is freed). */
  closeListed(id: string, reason: string): Promise<void> {
    const box = this.host.box(id);
    return box.lock.run(async () => {
      await this.stopForward(box.tunnel);
      await this.ports.release(id);
      if (this.host.store.tunnels.has(id)) box.tunnel.notRunning = { state: 'closed', reason };
      this.host.log.info(`${id}: tunnel closed: ${reason}`);
      this.host.changed(id);
    });
  }

  view(id: string): TunnelView | null {
    const rec = this.host.store.tunnels.get(id);
    const inst = this.host.store.instances.get(id);
    if (!rec || !inst) return null;
    const t = this.host.box(id).tunnel;
    const stats = t.forward?.stats();
    return {
      instance_id: id,
      provider: inst.provider,
      local_port: rec.local_port,
      url: `http://localhost:${rec.local_port}`,
      remote_port: rec.remote_port,
      ssh_host: rec.ssh.host,
      ssh_port: rec.ssh.port,
      ssh_user: rec.ssh.user,
      state: stats?.state ?? t.notRunning?.state ?? 'failed',
      last_error: stats ? stats.last_error : (t.notRunning?.reason ?? 'not running'),
      created_at: rec.created_at,
      since: stats?.since ?? rec.created_at,
      bytes_in: stats?.bytes_in ?? 0,
      bytes_out: stats?.bytes_out ?? 0,
      connections: stats?.connections ?? 0,
      guard: inst.config.instance_config.guard ?? 'http',
      requests_refused: stats?.requests_refused ?? 0,
    };
  }

  list(): TunnelView[] {
    return this.host.store.tunnels.values().map((t) => this.view(t.instance_id)).filter((t): t is TunnelView => t !== null);
  }

  /** After a start: recorded tunnels reopen on their ports (a box that went away loses its record). */
  async restore(env: RequestEnv): Promise<void> {
    for (const trec of this.host.store.tunnels.values()) {
      const rec = this.host.store.instances.get(trec.instance_id);
      if (!rec) {
        await this.host.store.tunnels.delete(trec.instance_id);
        await this.ports.release(trec.instance_id);
        continue;
      }
      try {
        await this.ports.adopt(rec.instance_id, trec.local_port);
        await this.ensure(rec, env, { keepLease: true });
      } catch (err) {
        const msg = toVaiError(err).message;
        this.host.box(rec.instance_id).tunnel.notRunning = { state: 'failed', reason: `${msg} Run \`vai-mcp-cli tunnel ${rec.instance_id}\` to reopen it.` };
        this.host.log.error(`${rec.instance_id}: could not restore the tunnel: ${msg}`);
      }
    }
  }

  /** Stops every live forward and link (records stay: the next start restores them). */
  async shutdown(boxes: Iterable<{ tunnel: BoxTunnel }>): Promise<void> {
    await Promise.all([...boxes].map(async (b) => {
      await this.stopForward(b.tunnel);
      b.tunnel.link?.stop();
      b.tunnel.link = undefined;
    }));
  }
}

/** The same credentials: the same key file (or agent socket). */
function sameAuth(a: SshAuth, b: SshAuth): boolean {
  if (a.kind === 'key' && b.kind === 'key') return a.keyPath === b.keyPath;
  return a.kind === b.kind && JSON.stringify(a) === JSON.stringify(b);
}
