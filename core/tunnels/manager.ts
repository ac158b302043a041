/**
 * The tunnel manager: every box's SSH link and forward, their port leases and their host-key pins.
 * A box has one link (kept while the box is known, connected while something uses it) and, while
 * its tunnel is open, one forward on it. Ports are sticky: a box gets its last port back when it
 * is free, and new tunnels leave other boxes' last ports alone.
 */
import type { TunnelView } from '../api/views.js';
import type { RequestEnv } from '../config/settings.js';
import { badInput, failure, toVaiError, unknownInstance } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import type { Mutex } from '../lib/mutex.js';
import { nowIso, waitForEvent } from '../lib/timers.js';
import type { SshEndpoint } from '../model/instance.js';
import type { Shell } from '../model/shell.js';
import type { TunnelState } from '../model/tunnel.js';
import type { InstanceRecord, StateStore } from '../store/store.js';
import { appsOf, MAIN_APP, type AppSpec } from '../model/apps.js';
import { allowOf, BoxTunnel, readPortalConfig, type BoxUsage, stickyPortsBut, tunnelView } from './box-tunnel.js';
import { Forward } from './forward.js';
import type { GuardAllowances } from './guard.js';
import { HostKeyPins } from './host-keys.js';
import { SshLink } from './link.js';
import { leaseKey, PortAllocator } from './ports.js';
import { describeAuth, type SshAuth } from './ssh-auth.js';

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
  /** The box's PORTAL_CONFIG where its provider knows it without asking the box (the simulator). */
  portalConfig(rec: InstanceRecord): string | undefined;
  /** A progress line for whoever waits on the box. */
  progress(id: string, message: string): void;
  /** The box or its tunnel changed (waiters look again). */
  changed(id: string): void;
  updateRecord(id: string, patch: Partial<InstanceRecord>): Promise<unknown>;
}

export interface EnsureOptions {
  /** One app (its main one stays or opens too); without it, every app of the box. */
  app?: string;
  /** Exactly this local port (for `app`, else the main one), or an error. */
  port?: number;
  resetHostKey?: boolean;
  /** Keep the port leased now (a restore, a retry), instead of choosing again. */
  keepLease?: boolean;
  /** Without `app`: only these apps besides the main one (a restore opens what was open). */
  onlyApps?: string[];
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

  /** For the idle watch: the main app's forward, with client use of any app of the box. */
  usage(id: string): BoxUsage | undefined {
    return this.host.box(id).tunnel.usage();
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
      if (t.link && (t.link.state === 'failed' || t.link.ssh.host !== rec.ssh.host || t.link.ssh.port !== rec.ssh.port) && !t.forwards().length) {
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

  /** The apps of a box, `comfyui` first (with `ports: "portal"`, as far as its PORTAL_CONFIG is known). */
  appsOf(rec: InstanceRecord): AppSpec[] {
    return appsOf(rec.config.instance_config, this.portalText(rec));
  }

  /** The box's PORTAL_CONFIG as far as it is known: set in its config, read from it before, or known to its provider. */
  private portalText(rec: InstanceRecord): string | undefined {
    return rec.config.instance_config.env.PORTAL_CONFIG ?? rec.portal_config ?? this.host.portalConfig(rec);
  }

  /**
   * Opens (or re-opens) a box's tunnel: its main app and every other app, or with `app` the main
   * one and that one. With `port`, exactly that port or an error. A forward that works and needs
   * no change is kept as it is. Returns the main app's forward.
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
      const specs = this.appsOf(current);
      const named = opts.app === undefined ? undefined : specs.find((a) => a.name === opts.app);
      if (opts.app !== undefined && !named) throw noSuchApp(id, opts.app, specs);
      const t = box.tunnel;
      const auth = this.host.auth(current, env); // a bad key is bad input, before anything changes
      // The box keeps its link, unless it cannot serve: another endpoint, another key, a failure
      // (a failed link never retries), or a host key to be pinned anew. Its forwards go with it.
      const sameEndpoint = t.link && t.link.ssh.host === current.ssh.host && t.link.ssh.port === current.ssh.port;
      const wasOpen = new Set(t.apps.keys());
      if (t.link && (!sameEndpoint || t.link.state === 'failed' || opts.resetHostKey || !sameAuth(t.link.auth, auth))) {
        await Promise.all(t.forwards().map((f) => f.stop()));
        t.forward = undefined;
        t.apps.clear();
        t.link.stop();
        t.link = undefined;
      }
      if (opts.resetHostKey) await this.pins.drop(id);
      const link = (t.link ??= this.newLink(current, current.ssh, auth));
      // Named: the main app and that one, and those open before on a link that was replaced.
      const wanted = named ? specs.filter((a) => a.name === MAIN_APP || a === named || (wasOpen.has(a.name) && !t.apps.has(a.name)))
        : opts.onlyApps ? specs.filter((a) => a.name === MAIN_APP || opts.onlyApps!.includes(a.name)) : specs;
      const prev = this.host.store.tunnels.get(id);
      const apps: Record<string, { local_port: number; remote_port: number }> = {};
      for (const [name, a] of Object.entries(prev?.apps ?? {})) if (t.apps.has(name) && specs.some((s) => s.name === name)) apps[name] = a;
      const toStart: Forward[] = [];
      for (const spec of wanted) {
        const isMain = spec.name === MAIN_APP;
        const existing = isMain ? t.forward : t.apps.get(spec.name);
        const port = spec === named || (isMain && !named) ? opts.port : undefined;
        const healthy = existing && !['failed', 'port_conflict', 'stopped'].includes(existing.state) && existing.remotePort === spec.remote_port;
        if (existing && healthy && (port === undefined || port === existing.localPort)) {
          if (!isMain) apps[spec.name] = { local_port: existing.localPort, remote_port: spec.remote_port };
          continue;
        }
        const key = leaseKey(id, spec.name);
        const last = isMain ? current.local_port : current.app_ports?.[spec.name];
        const leased = this.ports.leaseOf(key);
        const local = opts.keepLease && leased !== undefined ? leased : await this.ports.allocate(key, port, { port: last, keep: stickyPortsBut(this.host.store.instances.values(), id, spec.name) });
        if (last !== local) await this.host.updateRecord(id, isMain ? { local_port: local } : { app_ports: { ...this.host.store.instances.get(id)?.app_ports, [spec.name]: local } });
        await existing?.stop();
        const forward = new Forward({ instanceId: id, link, localPort: local, remotePort: spec.remote_port, guard: { mode: spec.guard, allow: allowOf(current, this.host.allowances) }, log: this.host.log.child('tunnel') });
        forward.on('state', (state: TunnelState, prevState: TunnelState) => this.onState(id, spec.name, forward, state, prevState));
        if (isMain) t.forward = forward;
        else {
          t.apps.set(spec.name, forward);
          apps[spec.name] = { local_port: local, remote_port: spec.remote_port };
        }
        toStart.push(forward);
        this.host.log.info(`${id}: tunnel${isMain ? '' : ` (${spec.name})`} localhost:${local} -> ${current.ssh.user}@${current.ssh.host}:${current.ssh.port} -> 127.0.0.1:${spec.remote_port} (${describeAuth(auth)})`);
      }
      const main = t.forward!;
      await this.host.store.tunnels.set(id, {
        instance_id: id,
        local_port: main.localPort,
        remote_port: main.remotePort,
        ssh: current.ssh,
        key_path: auth.kind === 'key' ? auth.keyPath : undefined,
        created_at: prev && prev.local_port === main.localPort ? prev.created_at : nowIso(),
        ...(Object.keys(apps).length ? { apps } : {}),
      });
      t.notRunning = undefined;
      await Promise.all(toStart.map((f) => f.start()));
      if (current.config.instance_config.ports === 'portal' && this.portalText(current) === undefined) void this.readPortal(id, link, env);
      return main;
    });
  }

  /** Reads a box's PORTAL_CONFIG over its link once it is up, and opens the apps it lists. */
  private async readPortal(id: string, link: SshLink, env: RequestEnv): Promise<void> {
    try {
      const text = await readPortalConfig(link);
      if (text === undefined || !this.host.store.instances.has(id) || this.host.box(id).tunnel.link !== link) return;
      await this.host.updateRecord(id, { portal_config: text });
      if (!text) this.host.log.warn(`${id}: instance_config.ports is "portal" but the box has no PORTAL_CONFIG: ComfyUI only`);
      else await this.ensure(this.host.store.instances.get(id)!, env);
    } catch (err) {
      this.host.log.warn(`${id}: could not read PORTAL_CONFIG on the box: ${toVaiError(err).message}`);
    }
  }

  private onState(id: string, app: string, forward: Forward, state: TunnelState, prev: TunnelState): void {
    const error = forward.stats().last_error;
    if (app !== MAIN_APP) {
      if (state === 'up' || state === 'failed' || state === 'port_conflict') this.host.log.info(`${id}: ${app} ${state === 'up' ? `up at ${forward.url}` : `${state}${error ? `: ${error}` : ''}`}`);
    }
    // While another program holds the port, the box says so too: nothing presents it as working.
    else if (state === 'port_conflict') void this.host.updateRecord(id, { status_message: error ?? `local port ${forward.localPort} is taken by another program` }).catch(() => undefined);
    else if (state === 'up' && prev === 'port_conflict') void this.host.updateRecord(id, { status_message: `tunnel up again at ${forward.url}` }).catch(() => undefined);
    else this.host.progress(id, state === 'up' ? `tunnel up at ${forward.url}` : `tunnel ${state}${error ? `: ${error}` : ''}`);
    this.host.changed(id);
  }

  /** Stops the box's forwards; its link, with nothing holding it, disconnects (and stays for later use). */
  private async stopForwards(t: BoxTunnel): Promise<void> {
    const all = t.forwards();
    t.forward = undefined;
    t.apps.clear();
    await Promise.all(all.map((f) => f.stop()));
  }

  /** Gives back every port a box's apps hold; returns them, the main one first. */
  private async releaseAll(id: string): Promise<number[]> {
    const freed: number[] = [];
    const keys = [id, ...this.host.store.ports.entries().map(([k]) => k).filter((k) => k.startsWith(`${id}:`))];
    for (const key of keys) {
      const port = this.ports.leaseOf(key);
      if (port !== undefined) freed.push(port);
      await this.ports.release(key);
    }
    return freed;
  }

  /** Ends a box's forwards and its link. */
  private async end(t: BoxTunnel): Promise<void> {
    await this.stopForwards(t);
    t.link?.stop();
    t.link = undefined;
  }

  /** The box is gone: its forwards and its link end. */
  forget(id: string): Promise<void> {
    const box = this.host.box(id);
    return box.lock.run(async () => {
      await this.end(box.tunnel);
      box.tunnel.notRunning = undefined;
    });
  }

  /**
   * Stops a box's tunnel (every app), forgets its record and gives its ports back (the box keeps
   * them as its sticky ports). With `app` (not the main one), only that app. Returns the ports freed.
   */
  close(id: string, app?: string): Promise<number[]> {
    const box = this.host.box(id);
    return box.lock.run(async () => {
      const t = box.tunnel;
      const trec = this.host.store.tunnels.get(id);
      if (app !== undefined && app !== MAIN_APP) {
        const f = t.apps.get(app);
        t.apps.delete(app);
        await f?.stop();
        const port = this.ports.leaseOf(leaseKey(id, app)) ?? trec?.apps?.[app]?.local_port;
        await this.ports.release(leaseKey(id, app));
        if (trec?.apps?.[app]) {
          const { [app]: _gone, ...rest } = trec.apps;
          await this.host.store.tunnels.set(id, { ...trec, apps: rest });
        }
        this.host.changed(id);
        return port === undefined ? [] : [port];
      }
      await this.stopForwards(t);
      t.notRunning = undefined;
      if (trec) await this.host.store.tunnels.delete(id);
      const freed = await this.releaseAll(id);
      if (!freed.length && trec) freed.push(trec.local_port);
      this.host.changed(id);
      return freed;
    });
  }

  /** Closes the tunnel of a box that went away or stopped, keeping it listed with the reason (its ports are freed). */
  closeListed(id: string, reason: string): Promise<void> {
    const box = this.host.box(id);
    return box.lock.run(async () => {
      await this.stopForwards(box.tunnel);
      await this.releaseAll(id);
      if (this.host.store.tunnels.has(id)) box.tunnel.notRunning = { state: 'closed', reason };
      this.host.log.info(`${id}: tunnel closed: ${reason}`);
      this.host.changed(id);
    });
  }

  view(id: string): TunnelView | null {
    const rec = this.host.store.tunnels.get(id);
    const inst = this.host.store.instances.get(id);
    return rec && inst ? tunnelView(rec, inst, this.host.box(id).tunnel) : null;
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
        await this.releaseAll(trec.instance_id);
        continue;
      }
      try {
        await this.ports.adopt(rec.instance_id, trec.local_port);
        for (const [name, a] of Object.entries(trec.apps ?? {})) await this.ports.adopt(leaseKey(rec.instance_id, name), a.local_port);
        await this.ensure(rec, env, { keepLease: true, onlyApps: Object.keys(trec.apps ?? {}) });
      } catch (err) {
        const msg = toVaiError(err).message;
        this.host.box(rec.instance_id).tunnel.notRunning = { state: 'failed', reason: `${msg} Run \`vai-mcp-cli tunnel ${rec.instance_id}\` to reopen it.` };
        this.host.log.error(`${rec.instance_id}: could not restore the tunnel: ${msg}`);
      }
    }
  }

  /** Stops every live forward and link (records stay: the next start restores them). */
  async shutdown(boxes: Iterable<{ tunnel: BoxTunnel }>): Promise<void> {
    await Promise.all([...boxes].map((b) => this.end(b.tunnel)));
  }
}

function noSuchApp(id: string, app: string, specs: AppSpec[]) {
  const names = specs.map((s) => s.name).join(', ');
  return badInput(`${id} has no app "${app}" (its apps: ${names}).`, { cli: `Name one of them, e.g. \`vai-mcp-cli tunnel ${id} ${specs[0]!.name}\`, or add it to instance_config.ports.`, agent: `Pass one of them as app, or leave app out for all.` }, 'unknown_app');
}

/** The same credentials: the same key file (or agent socket). */
function sameAuth(a: SshAuth, b: SshAuth): boolean {
  if (a.kind === 'key' && b.kind === 'key') return a.keyPath === b.keyPath;
  return a.kind === b.kind && JSON.stringify(a) === JSON.stringify(b);
}
