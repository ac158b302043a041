/**
 * The supervisor: the one long-lived process per VAI_HOME that owns every tunnel, port lease,
 * provisioning watch and simulated box, so that tunnels outlive the CLI or MCP process that asked
 * for them. This class is the in-process implementation of `VaiApi`; core/control.ts serves it
 * on the control socket and core/supervisor-main.ts is the process around it.
 */
import { createHash, randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { CallOptions, CancelParams, CancelResult, CreateParams, CreateResult, DaemonStatus, DestroyResult, ExtractResult, HelloParams, HelloResult, InstanceView, JobView, OfferView, OneshotParams, OpenTunnelParams, QueueView, RunWorkflowParams, SearchResult, SshKeyReport, StopTunnelResult, TunnelView, VaiApi, WaitParams } from '../api/api.js';
import { checkComfy } from '../comfy/client.js';
import { NO_ALLOWANCES, type GuardAllowances } from '../tunnels/guard.js';
import { parseAllowList } from '../model/origins.js';
import { parseConfig, resolveConfigPaths, type Config } from '../config/config.js';
import { badInput, failure, toVaiError, unknownInstance, VaiError } from '../lib/errors.js';
import { addSecret, type Logger } from '../lib/log.js';
import { Mutex } from '../lib/mutex.js';
import { elapsed, ProgressRelay } from '../lib/progress.js';
import { ensurePrivateDir } from '../lib/paths.js';
import { PortAllocator } from '../tunnels/ports.js';
import { LocalProvider } from '../providers/local.js';
import type { Provider, ProviderContext } from '../providers/provider.js';
import { SshProvider } from '../providers/ssh.js';
import { JobRunner } from '../jobs/runner.js';
import { findVastApiKey, VastApi, type VastOffer } from '../providers/vast/api.js';
import { VastProvider } from '../providers/vast/provider.js';
import { loadSettings, requestEnvFrom, type RequestEnv, type Settings } from '../config/settings.js';
import { defaultKeyCandidates, describeAuth, loadPrivateKey, resolveAuth } from '../tunnels/ssh-auth.js';
import { StateStore, type InstanceRecord, type RequestRecord, type TunnelRecord } from '../store/store.js';
import { Tunnel, type HostKeyVerdict } from '../tunnels/tunnel.js';
import { compareVersions, VERSION } from '../lib/version.js';
import { isJobDone } from '../model/job.js';
import { isSettled } from '../model/instance.js';
import type { ProviderName } from '../model/provider.js';
import type { TunnelState } from '../model/tunnel.js';

export interface SupervisorOptions {
  home: string;
  basePort: number;
  socketPath: string;
  log: Logger;
  /** The supervisor's own environment: used for work no caller is waiting on (restores). */
  env?: NodeJS.ProcessEnv;
  /** What every tunnel's guard lets through (VAI_ALLOWED_ORIGINS / VAI_ALLOWED_HOSTS at its start). */
  guard?: GuardAllowances;
  /** Called after `shutdown` has answered. */
  onShutdown?: () => void;
}

const MAX_COUNT = 10;
/** How long `openTunnel` waits for a tunnel to settle before answering with its current state. */
const OPEN_WAIT_MS = 20_000;
const DEADLINE_SWEEP_MS = 1_000;
/** A failsafe or lifetime destroy that failed is tried again this much later. */
const DEADLINE_RETRY_MS = 10_000;
/** How often the provisioning log of a box that is not ready yet is read for progress. */
const PROVISIONING_LOG_MS = 3_000;
/** How long a failsafe destroy waits for the box's log before going ahead without it. */
const LOG_TAIL_TIMEOUT_MS = 10_000;
/** Destroyed boxes remembered for late waiters; older ones read as plainly "destroyed". */
const MAX_OUTCOMES = 1_000;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}

function nowIso(): string {
  return new Date().toISOString();
}

export class Supervisor implements VaiApi {
  private readonly providers: Partial<Record<ProviderName, Provider>>;
  private readonly ports: PortAllocator;
  private readonly tunnels = new Map<string, Tunnel>();
  /** Boxes whose destroy() is under way: nothing may reopen their tunnel meanwhile. */
  private readonly destroying = new Set<string>();
  /**
   * Recorded tunnels without a live Tunnel, and why: `failed` (say, its key could not be loaded
   * at a restore) or `closed` (its box stopped or vanished). They show in `tunnel --list`.
   */
  private readonly parked = new Map<string, { state: 'failed' | 'closed'; reason: string }>();
  /** When each ready box that the provider watches is next checked (ms). */
  private readonly censusAt = new Map<string, number>();
  private readonly watches = new Set<string>();
  /** The environment of the request that created a box, for its provisioning watch. */
  private readonly watchEnv = new Map<string, RequestEnv>();
  /** Last views of destroyed boxes, so waiters and repeated requests learn what happened. */
  private readonly outcomes = new Map<string, InstanceView>();
  private readonly locks = new Map<string, Mutex>();
  private readonly events = new EventEmitter();
  private readonly startedAt = new Date();
  private readonly ownEnv: RequestEnv;
  private readonly jobs: JobRunner;
  private sweeper: NodeJS.Timeout | undefined;
  private sweeping = false;
  private closing = false;

  private constructor(
    private readonly opts: SupervisorOptions,
    private readonly store: StateStore,
    private readonly warnings: string[],
  ) {
    this.events.setMaxListeners(0);
    this.ownEnv = requestEnvFrom(opts.env ?? process.env);
    this.ports = new PortAllocator(store.ports, opts.basePort);
    this.providers = {
      local: new LocalProvider(opts.home, () => store.nextId('local'), opts.log.child('local')),
      ssh: new SshProvider(() => store.nextId('ssh')),
      vast: new VastProvider(),
    };
    this.jobs = new JobRunner(store.jobs, {
      comfyUrl: (id, timeoutMs) => this.comfyUrl(id, timeoutMs),
      hasInstance: (id) => store.instances.has(id),
      nextJobId: () => store.nextId('job'),
      log: opts.log.child('jobs'),
    });
  }

  /** Opens the state, restores boxes and tunnels, and starts the deadline sweeper. */
  static async start(opts: SupervisorOptions, nativeCryptoWarning?: string): Promise<Supervisor> {
    ensurePrivateDir(opts.home);
    const { store, warning } = await StateStore.open(opts.home);
    const warnings = [warning, nativeCryptoWarning].filter((w): w is string => !!w);
    for (const w of warnings) opts.log.warn(w);
    const sup = new Supervisor(opts, store, warnings);
    addSecret(opts.env?.VAST_API_KEY);
    addSecret(opts.env?.VAI_SSH_PASSPHRASE);
    await sup.restore();
    sup.sweeper = setInterval(() => void sup.sweepDeadlines(), DEADLINE_SWEEP_MS);
    return sup;
  }

  // ---------------------------------------------------------------- helpers

  private log(): Logger {
    return this.opts.log;
  }

  private settings(env: RequestEnv): Settings {
    const s = loadSettings({ ...env, VAI_HOME: this.opts.home, VAI_BASE_PORT: String(this.opts.basePort) }, this.opts.home);
    return { ...s, allowedOrigins: [...this.allowances().origins], allowedHosts: [...this.allowances().hosts] };
  }

  private allowances(): GuardAllowances {
    return this.opts.guard ?? NO_ALLOWANCES;
  }

  /** A box's guard: the supervisor's allowances plus the box's own. */
  private guardOf(rec: InstanceRecord): { mode: 'http' | 'off'; allow: GuardAllowances } {
    const ic = rec.config.instance_config;
    const all = this.allowances();
    return {
      mode: ic.guard ?? 'http',
      allow: {
        origins: [...new Set([...all.origins, ...parseAllowList(ic.allowed_origins, 'origin')])],
        hosts: [...new Set([...all.hosts, ...parseAllowList(ic.allowed_hosts, 'host')])],
      },
    };
  }

  private ctx(env: RequestEnv): ProviderContext {
    addSecret(env.VAST_API_KEY);
    addSecret(env.VAI_SSH_PASSPHRASE);
    return { env, settings: this.settings(env), log: this.opts.log };
  }

  private provider(name: ProviderName): Provider {
    const p = this.providers[name];
    if (!p) throw badInput(`The provider "${name}" is not available in this version of vai-mcp.`, 'Use "local" (the simulator) or "ssh" (a box you already have).', 'unknown_provider');
    return p;
  }

  private lock(id: string): Mutex {
    let m = this.locks.get(id);
    if (!m) this.locks.set(id, (m = new Mutex()));
    return m;
  }

  private record(id: string): InstanceRecord {
    const rec = this.store.instances.get(id);
    if (!rec) throw unknownInstance(id);
    return rec;
  }

  private async update(id: string, patch: Partial<InstanceRecord>): Promise<InstanceRecord | undefined> {
    const rec = this.store.instances.get(id);
    if (!rec) return undefined;
    const next = { ...rec, ...patch };
    await this.store.instances.set(id, next);
    if (patch.status_message && patch.status_message !== rec.status_message) this.progress(id, patch.status_message);
    this.events.emit('change', id);
    return next;
  }

  private progress(id: string, message: string): void {
    this.events.emit('progress', { instance_id: id, message });
  }

  private tunnelView(id: string): TunnelView | null {
    const rec = this.store.tunnels.get(id);
    const inst = this.store.instances.get(id);
    if (!rec || !inst) return null;
    const live = this.tunnels.get(id);
    const stats = live?.stats();
    return {
      instance_id: id,
      provider: inst.provider,
      local_port: rec.local_port,
      url: `http://localhost:${rec.local_port}`,
      remote_port: rec.remote_port,
      ssh_host: rec.ssh.host,
      ssh_port: rec.ssh.port,
      ssh_user: rec.ssh.user,
      state: stats?.state ?? this.parked.get(id)?.state ?? 'failed',
      last_error: stats ? stats.last_error : (this.parked.get(id)?.reason ?? 'not running'),
      created_at: rec.created_at,
      since: stats?.since ?? rec.created_at,
      bytes_in: stats?.bytes_in ?? 0,
      bytes_out: stats?.bytes_out ?? 0,
      connections: stats?.connections ?? 0,
      guard: inst.config.instance_config.guard ?? 'http',
      requests_refused: stats?.requests_refused ?? 0,
    };
  }

  private view(rec: InstanceRecord): InstanceView {
    return {
      instance_id: rec.instance_id,
      provider: rec.provider,
      status: rec.status,
      label: rec.label,
      dph_total: rec.dph_total ?? null,
      cost_so_far: rec.dph_total === undefined ? null : Math.round(rec.dph_total * ((Date.now() - Date.parse(rec.created_at)) / 3_600_000) * 1000) / 1000,
      created_at: rec.created_at,
      ready_at: rec.ready_at ?? null,
      status_message: rec.status_message ?? null,
      ssh_host: rec.ssh?.host ?? null,
      ssh_port: rec.ssh?.port ?? null,
      remote_port: rec.remote_port,
      request_id: rec.request_id ?? null,
      tunnel: this.tunnelView(rec.instance_id),
    };
  }

  private viewOf(id: string): InstanceView {
    const rec = this.store.instances.get(id);
    if (rec) return this.view(rec);
    const gone = this.outcomes.get(id);
    if (gone) return gone;
    throw unknownInstance(id);
  }

  // ---------------------------------------------------------------- host keys

  private pinKey(id: string, hostPort: string): string {
    return `${id}|${hostPort}`;
  }

  private async checkHostKey(id: string, hostPort: string, sha256: string): Promise<HostKeyVerdict> {
    const key = this.pinKey(id, hostPort);
    const pin = this.store.hostKeys.get(key);
    if (!pin) {
      await this.store.hostKeys.set(key, { instance_id: id, host_port: hostPort, sha256, pinned_at: nowIso() });
      this.log().info(`${id}: pinned host key of ${hostPort}`);
      return { ok: true };
    }
    return pin.sha256 === sha256 ? { ok: true } : { ok: false, expected: pin.sha256 };
  }

  private async dropHostKeys(id: string): Promise<void> {
    for (const [key, pin] of this.store.hostKeys.entries()) {
      if (pin.instance_id === id) await this.store.hostKeys.delete(key);
    }
  }

  // ---------------------------------------------------------------- tunnels

  /**
   * Opens (or re-opens) the tunnel of an instance. With `port`, exactly that port or an error.
   * An open tunnel that works and needs no change is returned as it is.
   */
  private ensureTunnel(rec: InstanceRecord, env: RequestEnv, opts: { port?: number; resetHostKey?: boolean; restore?: boolean } = {}): Promise<Tunnel> {
    return this.lock(rec.instance_id).run(async () => {
      const id = rec.instance_id;
      // Re-read under the lock: the box may have been destroyed while this call waited.
      const current = this.store.instances.get(id);
      if (!current) throw unknownInstance(id);
      // A watch woken by destroy()'s own tunnel close must not reopen what destroy is ending.
      if (this.destroying.has(id)) throw failure(`${id} is being destroyed.`, { cli: 'Run `vai-mcp-cli list` to see what is left.', agent: 'Call list_instances to see what is left.' });
      if (!current.ssh) throw failure(`${id} has no SSH endpoint yet (status ${current.status}).`, { cli: 'Wait until it is running: `vai-mcp-cli list`.', agent: `Wait until it is running: list_instances with instance_ids ["${id}"] and wait_s.` });
      const existing = this.tunnels.get(id);
      const sameEndpoint = existing && existing.ssh.host === current.ssh.host && existing.ssh.port === current.ssh.port;
      const healthy = existing && !['failed', 'port_conflict', 'stopped'].includes(existing.state);
      if (existing && sameEndpoint && healthy && !opts.resetHostKey && (opts.port === undefined || opts.port === existing.localPort)) {
        return existing;
      }
      const provider = this.provider(current.provider);
      const auth = provider.auth(current, this.ctx(env)); // bad key -> bad input, before anything changes
      const leased = this.ports.leaseOf(id);
      let port: number;
      if (opts.restore && leased !== undefined) port = leased;
      else port = await this.ports.allocate(id, opts.port, { port: current.local_port, keep: this.stickyPortsBut(id) });
      if (current.local_port !== port) await this.update(id, { local_port: port });
      if (existing) {
        this.tunnels.delete(id);
        await existing.stop();
      }
      if (opts.resetHostKey) await this.dropHostKeys(id);
      const prev = this.store.tunnels.get(id);
      const trec: TunnelRecord = {
        instance_id: id,
        local_port: port,
        remote_port: current.remote_port,
        ssh: current.ssh,
        key_path: auth.kind === 'key' ? auth.keyPath : undefined,
        created_at: prev && prev.local_port === port ? prev.created_at : nowIso(),
      };
      await this.store.tunnels.set(id, trec);
      this.parked.delete(id);
      const tunnel = new Tunnel({
        instanceId: id,
        localPort: port,
        ssh: current.ssh,
        auth,
        remotePort: current.remote_port,
        checkHostKey: (hp, sha) => this.checkHostKey(id, hp, sha),
        guard: this.guardOf(current),
        log: this.log().child('tunnel'),
      });
      tunnel.on('state', (state: TunnelState, prev: TunnelState) => {
        const s = tunnel.stats();
        // While another program holds the port, the box says so too: nothing presents it as working.
        if (state === 'port_conflict') void this.update(id, { status_message: s.last_error ?? `local port ${port} is taken by another program` }).catch(() => undefined);
        else if (state === 'up' && prev === 'port_conflict') void this.update(id, { status_message: `tunnel up again at ${tunnel.url}` }).catch(() => undefined);
        else this.progress(id, state === 'up' ? `tunnel up at ${tunnel.url}` : `tunnel ${state}${s.last_error ? `: ${s.last_error}` : ''}`);
        this.events.emit('change', id);
      });
      this.tunnels.set(id, tunnel);
      this.log().info(`${id}: tunnel localhost:${port} -> ${current.ssh.user}@${current.ssh.host}:${current.ssh.port} -> 127.0.0.1:${current.remote_port} (${describeAuth(auth)})`);
      await tunnel.start();
      return tunnel;
    });
  }

  /** The ports other boxes had last: a new tunnel does not take them while it has a choice. */
  private stickyPortsBut(id: string): Set<number> {
    const ports = new Set<number>();
    for (const r of this.store.instances.values()) if (r.instance_id !== id && r.local_port !== undefined) ports.add(r.local_port);
    return ports;
  }

  /** Stops an instance's tunnel, forgets its record and gives its port back (the box keeps it as its sticky port). */
  private closeTunnel(id: string): Promise<number | null> {
    return this.lock(id).run(async () => {
      const tunnel = this.tunnels.get(id);
      this.tunnels.delete(id);
      this.parked.delete(id);
      await tunnel?.stop();
      const trec = this.store.tunnels.get(id);
      if (trec) await this.store.tunnels.delete(id);
      const port = this.ports.leaseOf(id) ?? trec?.local_port ?? null;
      await this.ports.release(id);
      this.events.emit('change', id);
      return port;
    });
  }

  /**
   * Closes a tunnel whose box went away or stopped, keeping it listed with the reason (the port
   * is released: nothing could answer on it).
   */
  private parkTunnel(id: string, reason: string): Promise<void> {
    return this.lock(id).run(async () => {
      const tunnel = this.tunnels.get(id);
      this.tunnels.delete(id);
      await tunnel?.stop();
      await this.ports.release(id);
      if (this.store.tunnels.has(id)) this.parked.set(id, { state: 'closed', reason });
      this.log().info(`${id}: tunnel closed: ${reason}`);
      this.events.emit('change', id);
    });
  }

  // ---------------------------------------------------------------- provisioning

  private startWatch(id: string): void {
    if (this.watches.has(id) || this.closing) return;
    this.watches.add(id);
    this.watch(id).finally(() => this.watches.delete(id));
  }

  /** Waits for the next change of an instance (or its tunnel), at most `ms`. */
  private nextChange(id: string, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const onChange = (changed: string) => {
        if (changed === id) done();
      };
      const timer = setTimeout(() => done(), ms);
      const done = () => {
        clearTimeout(timer);
        this.events.off('change', onChange);
        resolve();
      };
      this.events.on('change', onChange);
    });
  }

  /**
   * Takes one box from asked-for to ready: provider status until running with an SSH endpoint,
   * then the tunnel, then (for ComfyUI boxes) `GET /api/system_stats` through the tunnel.
   * The ready deadline is enforced by the sweeper, not here, so it also holds while this waits.
   */
  private async watch(id: string): Promise<void> {
    const state = { authRetryAt: 0, progressAt: 0 };
    while (!this.closing) {
      const rec = this.store.instances.get(id);
      if (!rec || isSettled(rec.status) || this.destroying.has(id)) return;
      const provider = this.provider(rec.provider);
      try {
        if (await this.watchStep(rec, provider, state)) return;
      } catch (err) {
        // Never give up on a box that may be billing: report, wait, try again. The ready
        // deadline still ends it.
        const msg = toVaiError(err).message;
        this.log().warn(`${id}: provisioning step failed, retrying: ${msg}`);
        await this.update(id, { status_message: `retrying after: ${msg}` }).catch(() => undefined);
        await sleep(Math.max(provider.pollIntervalMs, 2000));
        continue;
      }
      await this.nextChange(id, provider.pollIntervalMs);
    }
  }

  /** One round of a watch. True when the watch is over (ready, failed or gone). */
  private async watchStep(rec: InstanceRecord, provider: Provider, state: { authRetryAt: number; progressAt: number }): Promise<boolean> {
    const id = rec.instance_id;
    const env = this.watchEnv.get(id) ?? this.ownEnv;
    const st = await provider.status(rec, this.ctx(env));
    if (!this.store.instances.has(id)) return true;
    if (st.status === 'failed') {
      await this.failInstance(id, st.message ?? 'the provider reports the box failed');
      return true;
    }
    await this.update(id, {
      status: st.status === 'ready' ? 'running' : st.status,
      ...(st.ssh ? { ssh: st.ssh } : {}),
      ...(st.message ? { status_message: st.message } : {}),
    });
    if (st.status === 'running' || st.status === 'ready') {
      const tunnel = this.tunnels.get(id);
      if (tunnel?.state === 'failed') {
        // A fresh box's sshd may refuse the key for a moment while it installs it: for boxes
        // vai-mcp made, retry auth every few seconds until the deadline. Anything else
        // (a host key, a machine that is not ours) will not heal by waiting.
        const reason = tunnel.stats().last_error ?? 'the tunnel failed';
        if (!provider.failsafeDestroy || !/authentication/i.test(reason)) {
          await this.failInstance(id, reason);
          return true;
        }
        if (Date.now() >= state.authRetryAt) {
          state.authRetryAt = Date.now() + 3000;
          await this.ensureTunnel(rec, env, { restore: true });
        }
      }
      if (await this.checkReady(id, env)) {
        await this.update(id, { status: 'ready', ready_at: nowIso(), ready_deadline: undefined, status_message: `ready at ${this.tunnels.get(id)?.url}` });
        return true;
      }
      await this.showProvisioning(id, provider, state);
    }
    return false;
  }

  /**
   * Between "running" and ComfyUI answering, a provisioning script may download models for many
   * minutes: show the tail of the box's own log, so a waiting agent sees work happening.
   */
  private async showProvisioning(id: string, provider: Provider, state: { progressAt: number }): Promise<void> {
    const tunnel = this.tunnels.get(id);
    // `remote_down` too: the SSH link works while ComfyUI does not answer yet.
    if (!provider.progressCommand || !tunnel || !['up', 'remote_down'].includes(tunnel.state) || Date.now() < state.progressAt) return;
    state.progressAt = Date.now() + PROVISIONING_LOG_MS;
    const out = await tunnel.exec(provider.progressCommand).catch(() => '');
    const last = out.split('\n').map((l) => l.trim()).filter(Boolean).pop();
    if (last) await this.update(id, { status_message: `provisioning: ${last.slice(0, 200)}` });
  }

  /** One readiness check of a running box. Opens the tunnel when needed. */
  private async checkReady(id: string, env: RequestEnv): Promise<boolean> {
    const rec = this.store.instances.get(id);
    if (!rec?.ssh) return false;
    let tunnel = this.tunnels.get(id);
    const stale = tunnel && (tunnel.ssh.host !== rec.ssh.host || tunnel.ssh.port !== rec.ssh.port);
    if (!tunnel || stale) tunnel = await this.ensureTunnel(rec, env, { restore: true });
    if (tunnel.state !== 'up') return false;
    // `check_comfy: false`: the main port is not ComfyUI (an app of the user's own).
    if (!this.provider(rec.provider).checksComfy || rec.config.instance_config.check_comfy === false) return true;
    const comfy = await checkComfy(`http://127.0.0.1:${tunnel.localPort}`, 5000);
    if (comfy.ok) return true;
    await this.update(id, { status_message: `GET /api/system_stats: ${comfy.answer} from port ${rec.remote_port}; is ComfyUI running there?` });
    return false;
  }

  /** A box that will not become ready: destroyed when it costs (or stands for) money, else marked failed. */
  private async failInstance(id: string, reason: string): Promise<void> {
    const rec = this.store.instances.get(id);
    if (!rec) return;
    const provider = this.provider(rec.provider);
    if (provider.failsafeDestroy) {
      this.log().warn(`${id}: ${reason}; destroying it (failsafe)`);
      const env = this.watchEnv.get(id) ?? this.ownEnv;
      const tail = await this.logTail(rec, provider, env);
      await this.destroy(id, env, `${reason}. It was destroyed by the failsafe, so it does not keep billing.${tail ? ` Its log ended with: ${tail}` : ''}`, 'failed');
    } else {
      await this.update(id, { status: 'failed', status_message: reason });
    }
  }

  /** The last lines of a box's provider log, for the message of a failsafe destroy ('' if none). */
  private async logTail(rec: InstanceRecord, provider: Provider, env: RequestEnv): Promise<string> {
    if (!provider.logs) return '';
    const timeout = new Promise<string>((r) => setTimeout(() => r(''), LOG_TAIL_TIMEOUT_MS).unref());
    const log = await Promise.race([provider.logs(rec, this.ctx(env)).catch(() => ''), timeout]);
    return log.split('\n').map((l) => l.trim()).filter(Boolean).slice(-5).join(' | ').slice(0, 800);
  }

  /** Acts on passed deadlines: ready (failsafe) and max lifetime. Absolute times, so restarts act at once. */
  private async sweepDeadlines(): Promise<void> {
    if (this.sweeping) return; // a slow destroy must not be started twice by the next tick
    this.sweeping = true;
    try {
      await this.sweepOnce();
    } finally {
      this.sweeping = false;
    }
  }

  private async sweepOnce(): Promise<void> {
    const now = Date.now();
    for (const rec of this.store.instances.values()) {
      const id = rec.instance_id;
      const provider = this.providers[rec.provider];
      const env = this.watchEnv.get(id) ?? this.ownEnv;
      if (rec.ready_deadline && rec.status !== 'ready' && rec.status !== 'failed' && Date.parse(rec.ready_deadline) <= now) {
        const timeout = rec.config.instance_config.ready_timeout_s;
        const detail = this.tunnels.get(id)?.stats().last_error ?? rec.status_message ?? rec.status;
        await this.failInstance(id, `not ready within ready_timeout_s = ${timeout} s (last: ${detail})`).then(
          () => this.update(id, { ready_deadline: undefined }),
          // The box may still bill: keep the deadline, try again shortly.
          (err) => this.retryDeadline(id, 'ready_deadline', `failsafe destroy failed, retrying: ${toVaiError(err).message}`),
        );
      } else if (rec.lifetime_deadline && Date.parse(rec.lifetime_deadline) <= now) {
        const limit = rec.config.instance_config.max_lifetime_s;
        await this.destroy(id, env, `max_lifetime_s = ${limit} s reached; the box was destroyed`).catch((err) =>
          this.retryDeadline(id, 'lifetime_deadline', `lifetime destroy failed, retrying: ${toVaiError(err).message}`));
      } else if (rec.status === 'ready' && provider?.censusIntervalMs && now >= (this.censusAt.get(id) ?? 0)) {
        this.censusAt.set(id, now + provider.censusIntervalMs);
        await this.census(rec, provider, env).catch((err) => this.log().warn(`${id}: check failed: ${toVaiError(err).message}`));
      }
    }
  }

  private async retryDeadline(id: string, which: 'ready_deadline' | 'lifetime_deadline', message: string): Promise<void> {
    this.log().error(`${id}: ${message}`);
    await this.update(id, { [which]: new Date(Date.now() + DEADLINE_RETRY_MS).toISOString(), status_message: message });
  }

  /** A ready box that stopped or vanished elsewhere: its tunnel is closed, with the reason shown. */
  private async census(rec: InstanceRecord, provider: Provider, env: RequestEnv): Promise<void> {
    const st = await provider.status(rec, this.ctx(env));
    const id = rec.instance_id;
    if (!this.store.instances.has(id) || this.store.instances.get(id)!.status !== 'ready') return;
    if (st.status === 'stopped') {
      await this.parkTunnel(id, `the box was stopped (outside vai-mcp); \`vai-mcp-cli start ${id}\` resumes it`);
      await this.update(id, { status: 'stopped', status_message: 'stopped outside vai-mcp (storage still bills)' });
    } else if (st.status === 'failed') {
      await this.parkTunnel(id, `${st.message ?? 'the box failed'}; \`vai-mcp-cli destroy ${id}\` forgets it`);
      await this.update(id, { status: 'failed', status_message: st.message ?? 'the box failed' });
    }
  }

  /** Closes the tunnel, releases the port, drops pins and ends the box (DESIGN.md invariant 8). */
  private async destroy(id: string, env: RequestEnv, message: string, finalStatus: 'destroyed' | 'failed' = 'destroyed'): Promise<DestroyResult> {
    const rec = this.record(id);
    this.destroying.add(id);
    try {
      await this.closeTunnel(id);
      await this.dropHostKeys(id);
      try {
        await this.provider(rec.provider).destroy(rec, this.ctx(env));
      } catch (err) {
        const e = toVaiError(err);
        await this.update(id, { status_message: `destroy failed: ${e.message}` });
        throw failure(`Could not destroy ${id}: ${e.message}. Its tunnel was closed and its port released.`, {
          cli: `Retry with \`vai-mcp-cli destroy ${id}\`, and check your provider's console.`,
          agent: `Call destroy_instance for ${id} again (confirm: true), and tell the user to check the provider's console.`,
        });
      }
      const last = { ...this.view(rec), status: finalStatus === 'failed' ? ('failed' as const) : ('destroyed' as const), status_message: message, tunnel: null };
      this.outcomes.set(id, last);
      if (this.outcomes.size > MAX_OUTCOMES) this.outcomes.delete(this.outcomes.keys().next().value!);
      await this.store.instances.delete(id);
      // Belt and braces: nothing may hold this box's port once it is gone.
      if (this.tunnels.has(id)) await this.closeTunnel(id);
      this.watchEnv.delete(id);
      this.locks.delete(id);
      await this.jobs.instanceGone(id, `its box ${id} was destroyed`);
      this.progress(id, message);
      this.events.emit('change', id);
      this.log().info(`${id}: ${message}`);
      return { instance_id: id, destroyed: true, message };
    } finally {
      this.destroying.delete(id);
    }
  }

  // ---------------------------------------------------------------- restore

  /** After a start: local boxes come back, recorded tunnels reopen on their ports, watches resume. */
  private async restore(): Promise<void> {
    const env = this.ownEnv;
    for (const rec of this.store.instances.values()) {
      const provider = this.providers[rec.provider];
      if (!provider?.restore || rec.status === 'failed' || rec.status === 'stopped') continue;
      try {
        const st = await provider.restore(rec, this.ctx(env));
        if (st.ssh) await this.update(rec.instance_id, { ssh: st.ssh });
      } catch (err) {
        this.log().error(`${rec.instance_id}: could not restore the box: ${toVaiError(err).message}`);
      }
    }
    for (const trec of this.store.tunnels.values()) {
      const rec = this.store.instances.get(trec.instance_id);
      if (!rec) {
        await this.store.tunnels.delete(trec.instance_id);
        await this.ports.release(trec.instance_id);
        continue;
      }
      try {
        await this.ports.adopt(rec.instance_id, trec.local_port);
        await this.ensureTunnel(rec, env, { restore: true });
      } catch (err) {
        const msg = toVaiError(err).message;
        this.parked.set(rec.instance_id, { state: 'failed', reason: `${msg} Run \`vai-mcp-cli tunnel ${rec.instance_id}\` to reopen it.` });
        this.log().error(`${rec.instance_id}: could not restore the tunnel: ${msg}`);
      }
    }
    for (const rec of this.store.instances.values()) {
      if (!isSettled(rec.status)) this.startWatch(rec.instance_id);
    }
    await this.jobs.restore((job) => void this.carryOutOneshot(job.job_id));
  }

  // ---------------------------------------------------------------- workflows

  /** The box's ComfyUI through its tunnel (127.0.0.1: the tunnel listens there in any case). */
  private async comfyUrl(id: string, timeoutMs: number): Promise<string> {
    const rec = this.record(id);
    if (rec.status !== 'ready') {
      throw failure(`${id} is not ready (${rec.status}${rec.status_message ? `: ${rec.status_message}` : ''}).`, rec.status === 'stopped'
        ? { cli: `Start it: vai-mcp-cli start ${id}`, agent: `It is stopped; ask the user to start it (\`vai-mcp-cli start ${id}\`).` }
        : { cli: 'Wait until `vai-mcp-cli list` shows it ready.', agent: `Wait until it is ready: list_instances with instance_ids ["${id}"] and wait_s.` }, 'not_ready');
    }
    const tunnel = this.tunnels.get(id);
    if (!tunnel) throw failure(`${id} has no open tunnel.`, { cli: `Open it: vai-mcp-cli tunnel ${id}`, agent: `Open it: open_tunnel with instance_id "${id}".` }, 'no_tunnel');
    try {
      await tunnel.waitFor(['up'], timeoutMs);
    } catch {
      const why = tunnel.stats().last_error;
      throw failure(`The tunnel of ${id} is not up (${tunnel.state}${why ? `: ${why}` : ''}).`, {
        cli: `\`vai-mcp-cli tunnel --list\` shows it; \`vai-mcp-cli tunnel ${id}\` reopens it.`,
        agent: `list_tunnels shows it; open_tunnel with instance_id "${id}" reopens it.`,
      }, 'tunnel_down');
    }
    return `http://127.0.0.1:${tunnel.localPort}`;
  }

  /**
   * A oneshot's job from box to end: wait for the box, run, download, and destroy the box when
   * asked, however the job ended. Runs here, not in the caller, so a closed terminal still ends
   * in a destroyed box (DESIGN.md invariant 9).
   */
  private async carryOutOneshot(jobId: string): Promise<void> {
    const job = () => this.store.jobs.get(jobId);
    const first = job();
    if (!first) return;
    const id = first.instance_id;
    try {
      if (!isJobDone(first.status) && this.store.instances.has(id)) {
        const [box] = await this.waitForInstances({ instance_ids: [id] });
        if (!isJobDone(job()?.status ?? 'failed')) {
          if (box?.status !== 'ready') {
            await this.jobs.abandon(jobId, 'failed', `its box ${id} did not become ready (${box?.status ?? 'gone'}${box?.status_message ? `: ${box.status_message}` : ''})`);
          } else {
            await this.jobs.submit(jobId).then(() => this.jobs.follow(jobId), () => undefined);
          }
        }
      }
    } catch (err) {
      await this.jobs.abandon(jobId, 'failed', toVaiError(err).message).catch(() => undefined);
    } finally {
      if (first.destroy_box) {
        if (!this.store.instances.has(id)) await this.jobs.setBoxDestroyed(jobId, true);
        else {
          try {
            await this.destroy(id, this.watchEnv.get(id) ?? this.ownEnv, `destroyed after ${jobId} (oneshot --destroy)`);
            await this.jobs.setBoxDestroyed(jobId, true);
          } catch (err) {
            await this.jobs.setBoxDestroyed(jobId, false, `the box could not be destroyed: ${toVaiError(err).message}`);
          }
        }
      }
    }
  }

  // ---------------------------------------------------------------- the API

  async hello(p: HelloParams): Promise<HelloResult> {
    const warnings = [...this.warnings];
    if (p.base_port !== this.opts.basePort) {
      warnings.push(`The supervisor runs with VAI_BASE_PORT=${this.opts.basePort}; your ${p.base_port} applies after \`vai-mcp-cli daemon stop\` (tunnels come back on their ports).`);
    }
    for (const [name, ours, theirs] of [
      ['VAI_ALLOWED_ORIGINS', this.allowances().origins, p.allowed_origins],
      ['VAI_ALLOWED_HOSTS', this.allowances().hosts, p.allowed_hosts],
    ] as const) {
      if (theirs !== undefined && [...theirs].sort().join(',') !== [...ours].sort().join(',')) {
        warnings.push(`The supervisor runs with ${name}=${ours.join(',') || '(none)'}; your ${theirs.join(',') || '(none)'} applies after \`vai-mcp-cli daemon stop\` (tunnels come back on their ports).`);
      }
    }
    if (compareVersions(VERSION, p.version) > 0) {
      warnings.push(`The supervisor (vai-mcp ${VERSION}) is newer than this client (${p.version}).`);
    }
    return { version: VERSION, pid: process.pid, home: this.opts.home, base_port: this.opts.basePort, warnings };
  }

  async createInstances(p: CreateParams, o: CallOptions = {}): Promise<CreateResult> {
    const env = o.env ?? requestEnvFrom();
    const config = resolveConfigPaths(parseConfig(p.config, 'config'), env.cwd ?? process.cwd());
    const count = p.count ?? 1;
    if (!Number.isInteger(count) || count < 1 || count > MAX_COUNT) {
      throw badInput(`count must be a whole number from 1 to ${MAX_COUNT} (got ${count}).`);
    }
    const provider = this.provider(config.provider);
    const ctx = this.ctx(env);
    for (const value of Object.values(config.instance_config.env)) addSecret(value); // stored, never shown
    const fingerprint = createHash('sha256').update(JSON.stringify({ config, count })).digest('hex');
    if (p.request_id) {
      const prior = this.store.requests.get(p.request_id);
      if (prior) {
        if (prior.fingerprint !== fingerprint) {
          throw badInput(`request_id "${p.request_id}" was already used with a different config or count.`, 'Use a new request_id for a new request, or repeat the original one exactly.', 'request_id_reused');
        }
        const instances = prior.instance_ids.map((id) => (this.store.instances.get(id) ? this.viewOf(id) : this.destroyedView(id, prior)));
        return { instances, notes: [`request_id "${p.request_id}" was made before: these are its boxes; nothing new was created`] };
      }
    }
    provider.validate(config, ctx);
    if (provider.countsTowardCap) {
      const live = this.store.instances.values().filter((r) => this.providers[r.provider]?.countsTowardCap).length;
      if (live + count > ctx.settings.maxInstances) {
        throw failure(`Creating ${count} more would make ${live + count} paid boxes, over the cap of ${ctx.settings.maxInstances} (VAI_MAX_INSTANCES).`, 'Destroy boxes you no longer need, or raise VAI_MAX_INSTANCES.', 'instance_cap');
      }
    }
    if (p.label !== undefined && !/^[a-z0-9-]{1,32}$/.test(p.label)) throw badInput(`label "${p.label}" must be 1-32 lowercase letters, digits or dashes.`);
    const request = p.label ? `${p.label}-${randomBytes(3).toString('hex')}` : (p.request_id ?? randomBytes(4).toString('hex'));
    // The whole request is planned (offers chosen under the price cap) before anything is rented.
    const plan = provider.plan ? await provider.plan(config, count, ctx) : undefined;
    const created: string[] = [];
    const notes: string[] = [];
    try {
      for (let n = 1; n <= count; n++) {
        const box = await provider.create({ config, label: `vai-mcp:${request}:${n}`, n, plan }, ctx);
        const now = Date.now();
        const ic = config.instance_config;
        const rec: InstanceRecord = {
          instance_id: box.instance_id,
          provider: config.provider,
          label: `vai-mcp:${request}:${n}`,
          status: box.status,
          status_message: box.message,
          ssh: box.ssh,
          remote_port: ic.remote_port,
          config,
          dph_total: box.dph_total,
          created_at: new Date(now).toISOString(),
          ready_deadline: new Date(now + ic.ready_timeout_s * 1000).toISOString(),
          lifetime_deadline: ic.max_lifetime_s ? new Date(now + ic.max_lifetime_s * 1000).toISOString() : undefined,
          request_id: p.request_id,
        };
        await this.store.instances.set(rec.instance_id, rec);
        created.push(rec.instance_id);
        if (box.note) notes.push(`${rec.instance_id}: ${box.note}`);
        this.watchEnv.set(rec.instance_id, env);
        this.progress(rec.instance_id, `created (${config.provider}), ${box.message ?? box.status}`);
        this.startWatch(rec.instance_id);
      }
    } catch (err) {
      const e = toVaiError(err);
      if (created.length === 0) throw e;
      throw new VaiError(`${e.message} (${created.length} of ${count} boxes were created before this: ${created.join(', ')}; they keep coming up)`, { hint: e.hint, agentHint: e.agentHint, exitCode: 1, code: e.code });
    } finally {
      if (p.request_id && created.length > 0) {
        await this.store.requests.set(p.request_id, { request_id: p.request_id, provider: config.provider, fingerprint, instance_ids: created, created_at: nowIso() });
      }
    }
    return { instances: created.map((id) => this.viewOf(id)), notes };
  }

  private destroyedView(id: string, request: RequestRecord): InstanceView {
    return this.outcomes.get(id) ?? {
      instance_id: id, provider: request.provider, status: 'destroyed', label: '', dph_total: null, cost_so_far: null, created_at: request.created_at, ready_at: null,
      status_message: 'destroyed', ssh_host: null, ssh_port: null, remote_port: 0, request_id: request.request_id, tunnel: null,
    };
  }

  async waitForInstances(p: WaitParams, o: CallOptions = {}): Promise<InstanceView[]> {
    const ids = [...new Set(p.instance_ids)];
    for (const id of ids) this.viewOf(id); // unknown ids are bad input
    const all = () => ids.map((id) => this.viewOf(id));
    const done = () => all().every((v) => isSettled(v.status));
    const relay = new ProgressRelay(o.onProgress, () => {
      const waiting = all().filter((v) => !isSettled(v.status));
      if (waiting.length === 0) return undefined;
      const each = waiting.map((v) => `${v.instance_id} (${v.status}, ${elapsed(Date.now() - Date.parse(v.created_at))})`);
      return { message: `still coming up: ${each.join(', ')}` };
    });
    // Where each box stands, settled or not, when the wait begins and when it ends: what happened
    // between a create and its wait is not lost, and neither is a last line (say "ready at") whose
    // event comes after the change that ended the wait (the record changes before it is stored).
    const standing = () => {
      for (const v of all()) if (v.status_message) relay.push({ instance_id: v.instance_id, message: v.status_message });
    };
    standing();
    if (done()) {
      relay.close();
      return all();
    }
    return new Promise((resolve) => {
      const onProgress = (prog: { instance_id: string; message: string }) => {
        if (ids.includes(prog.instance_id)) relay.push(prog);
      };
      const onChange = (id: string) => {
        if (ids.includes(id) && done()) finish();
      };
      const timer = p.timeout_s !== undefined ? setTimeout(() => finish(), p.timeout_s * 1000) : undefined;
      const onAbort = () => finish();
      const finish = () => {
        if (timer) clearTimeout(timer);
        standing();
        relay.close();
        this.events.off('progress', onProgress);
        this.events.off('change', onChange);
        o.signal?.removeEventListener('abort', onAbort);
        resolve(all());
      };
      this.events.on('progress', onProgress);
      this.events.on('change', onChange);
      o.signal?.addEventListener('abort', onAbort);
    });
  }

  async listInstances(_p: Record<string, never>, o: CallOptions = {}): Promise<InstanceView[]> {
    const views = this.store.instances.values().map((r) => this.view(r)).sort(byId);
    return [...views, ...(await this.orphans(o))];
  }

  /**
   * Boxes on the Vast.ai account with a vai-mcp label that this machine does not know (left
   * behind by a crash, or made from another machine). Checked only when a Vast key is at hand.
   */
  private async orphans(o: CallOptions): Promise<InstanceView[]> {
    const env = o.env ?? requestEnvFrom();
    const settings = this.settings(env);
    const found = findVastApiKey(env, settings.vastApiKey);
    if (!found) return [];
    try {
      const remote = await new VastApi(settings.vastUrl, found.key).listInstances('vai-mcp');
      return remote
        .filter((r) => !this.store.instances.has(String(r.id)))
        .map((r) => ({
          instance_id: String(r.id),
          provider: 'vast' as const,
          status: 'running' as const,
          label: r.label ?? '',
          dph_total: r.dph_total ?? null,
          cost_so_far: r.dph_total && r.start_date ? Math.round(r.dph_total * ((Date.now() / 1000 - r.start_date) / 3600) * 1000) / 1000 : null,
          created_at: r.start_date ? new Date(r.start_date * 1000).toISOString() : '',
          ready_at: null,
          status_message: `orphan: a vai-mcp box on the Vast.ai account that this machine does not know (actual_status ${r.actual_status ?? 'null'}); if nobody needs it: \`vai-mcp-cli destroy ${r.id}\``,
          ssh_host: r.ssh_host ?? null,
          ssh_port: r.ssh_port ?? null,
          remote_port: 0,
          request_id: null,
          tunnel: null,
          orphan: true,
        }));
    } catch (err) {
      o.onProgress?.({ message: `warning: could not check Vast.ai for orphaned vai-mcp boxes: ${toVaiError(err).message}` });
      return [];
    }
  }

  async openTunnel(p: OpenTunnelParams, o: CallOptions = {}): Promise<TunnelView> {
    const env = o.env ?? requestEnvFrom();
    const rec = this.record(p.instance_id);
    if (!rec.ssh || rec.status === 'stopped' || rec.status === 'provisioning' || rec.status === 'loading') {
      throw failure(`${rec.instance_id} is not running yet (status ${rec.status}), so it has no tunnel to open.`, {
        cli: 'Wait for it: `vai-mcp-cli list` shows its status.',
        agent: `Wait for it: list_instances with instance_ids ["${rec.instance_id}"] and wait_s.`,
      }, 'not_running');
    }
    const tunnel = await this.ensureTunnel(rec, env, { port: p.port, resetHostKey: p.reset_host_key });
    const state = await tunnel.waitFor(['up', 'remote_down', 'failed', 'port_conflict', 'stopped'], OPEN_WAIT_MS).catch(() => tunnel.state);
    // A registered box that failed (say, a refused key) gets another chance once its tunnel works.
    if (rec.status === 'failed' && state !== 'failed') await this.update(rec.instance_id, { status: 'running', status_message: 'tunnel re-opened' });
    if (!isSettled(this.record(rec.instance_id).status)) {
      this.watchEnv.set(rec.instance_id, env);
      this.startWatch(rec.instance_id);
    }
    if (state === 'failed' || state === 'port_conflict') {
      throw failure(`The tunnel of ${rec.instance_id} could not be opened: ${tunnel.stats().last_error}`, state === 'port_conflict'
        ? { cli: `Free the port, or choose another: \`vai-mcp-cli tunnel ${rec.instance_id} --port P\`.`, agent: `Free the port, or call open_tunnel again with another local_port.` }
        : undefined, `tunnel_${state}`);
    }
    return this.tunnelView(rec.instance_id)!;
  }

  async listTunnels(): Promise<TunnelView[]> {
    return this.store.tunnels.values().map((t) => this.tunnelView(t.instance_id)).filter((t): t is TunnelView => t !== null).sort(byId);
  }

  async stopTunnel(p: { instance_id: string }): Promise<StopTunnelResult> {
    this.record(p.instance_id);
    if (!this.store.tunnels.has(p.instance_id)) {
      throw badInput(`${p.instance_id} has no open tunnel.`, { cli: '`vai-mcp-cli tunnel --list` shows the open tunnels.', agent: 'list_tunnels shows the open tunnels.' }, 'no_tunnel');
    }
    const port = await this.closeTunnel(p.instance_id);
    return { instance_id: p.instance_id, local_port: port ?? 0 };
  }

  async stopAllTunnels(): Promise<StopTunnelResult[]> {
    const out: StopTunnelResult[] = [];
    for (const t of this.store.tunnels.values()) {
      const port = await this.closeTunnel(t.instance_id);
      out.push({ instance_id: t.instance_id, local_port: port ?? t.local_port });
    }
    return out.sort(byId);
  }

  async destroyInstance(p: { instance_id: string }, o: CallOptions = {}): Promise<DestroyResult> {
    const env = o.env ?? requestEnvFrom();
    if (!this.store.instances.has(p.instance_id)) return this.destroyOrphan(p.instance_id, env);
    return this.destroy(p.instance_id, env, 'destroyed');
  }

  /** A vai-mcp box on the Vast.ai account that this machine does not know (left by a crash). */
  private async destroyOrphan(id: string, env: RequestEnv): Promise<DestroyResult> {
    const settings = this.settings(env);
    const found = findVastApiKey(env, settings.vastApiKey);
    if (!/^\d+$/.test(id) || !found) throw unknownInstance(id);
    const vast = new VastApi(settings.vastUrl, found.key);
    const inst = await vast.showInstance(id);
    if (!inst || !(inst.label ?? '').startsWith('vai-mcp')) throw unknownInstance(id);
    await vast.destroyInstance(id);
    this.log().info(`${id}: destroyed an orphan (label ${inst.label})`);
    return { instance_id: id, destroyed: true, message: `destroyed (an orphan on the Vast.ai account, label ${inst.label})` };
  }

  async destroyAll(_p: Record<string, never>, o: CallOptions = {}): Promise<DestroyResult[]> {
    const env = o.env ?? requestEnvFrom();
    const results: DestroyResult[] = [];
    for (const rec of this.store.instances.values().sort(byId)) {
      try {
        results.push(await this.destroy(rec.instance_id, env, 'destroyed'));
      } catch (err) {
        results.push({ instance_id: rec.instance_id, destroyed: false, message: toVaiError(err).message });
      }
    }
    return results;
  }

  async sshKey(p: { key_path?: string }, o: CallOptions = {}): Promise<SshKeyReport> {
    const env = o.env ?? requestEnvFrom();
    const paths = p.key_path ? [path.resolve(env.cwd ?? process.cwd(), p.key_path)] : defaultKeyCandidates(env.HOME);
    // A key file named on purpose that is not there is bad input, like a config naming one.
    if (p.key_path && !existsSync(paths[0]!)) throw badInput(`Key file ${paths[0]} does not exist.`, 'Pass the path of a private key file, e.g. ~/.ssh/id_ed25519.', 'missing_key');
    const candidates = paths.map((kp) => {
      try {
        loadPrivateKey(kp, env.VAI_SSH_PASSPHRASE);
        return { path: kp, exists: true, loads: true, error: null };
      } catch (err) {
        const e = toVaiError(err);
        return { path: kp, exists: !/does not exist/.test(e.message), loads: false, error: e.message };
      }
    });
    let used: string | null = null;
    let error: string | null = null;
    try {
      const auth = resolveAuth({ keyPath: p.key_path ? paths[0] : undefined, passphrase: env.VAI_SSH_PASSPHRASE, agentSocket: env.SSH_AUTH_SOCK, homeDir: env.HOME });
      used = describeAuth(auth);
    } catch (err) {
      error = toVaiError(err).message;
    }
    return { used, candidates, agent: { socket: env.SSH_AUTH_SOCK ?? null }, error };
  }

  async stopInstance(p: { instance_id: string }, o: CallOptions = {}): Promise<InstanceView> {
    const rec = this.record(p.instance_id);
    const provider = this.provider(rec.provider);
    if (!provider.stop) throw badInput(`${rec.provider} boxes cannot be stopped by vai-mcp.`, rec.provider === 'ssh' ? 'The machine is not vai-mcp\'s to pause; `tunnel --stop` closes its tunnel.' : undefined, 'not_supported');
    if (rec.status !== 'stopped') {
      await provider.stop(rec, this.ctx(o.env ?? requestEnvFrom()));
      await this.closeTunnel(rec.instance_id);
      const note = provider.countsTowardCap ? 'stopped: its storage still bills; `destroy` ends all charges' : 'stopped';
      await this.update(rec.instance_id, { status: 'stopped', ready_deadline: undefined, status_message: note });
    }
    return this.viewOf(rec.instance_id);
  }

  async startInstance(p: { instance_id: string }, o: CallOptions = {}): Promise<InstanceView> {
    const rec = this.record(p.instance_id);
    const provider = this.provider(rec.provider);
    if (!provider.start) throw badInput(`${rec.provider} boxes cannot be started by vai-mcp.`, undefined, 'not_supported');
    if (rec.status === 'failed') {
      throw failure(`${rec.instance_id} failed${rec.status_message ? ` (${rec.status_message})` : ''}, so it cannot be started.`, `Destroy it: \`vai-mcp-cli destroy ${rec.instance_id}\`.`, 'failed_box');
    }
    // Already started (or coming up): done, like a stop of a stopped box.
    if (rec.status !== 'stopped') return this.viewOf(rec.instance_id);
    const env = o.env ?? requestEnvFrom();
    await provider.start(rec, this.ctx(env));
    // Coming back is like coming up: the same readiness and the same failsafe deadline.
    const deadline = new Date(Date.now() + rec.config.instance_config.ready_timeout_s * 1000).toISOString();
    await this.update(rec.instance_id, { status: 'loading', ready_at: undefined, ready_deadline: deadline, status_message: 'starting' });
    this.watchEnv.set(rec.instance_id, env);
    this.startWatch(rec.instance_id);
    return this.viewOf(rec.instance_id);
  }

  async instanceLogs(p: { instance_id: string }, o: CallOptions = {}): Promise<{ instance_id: string; log: string }> {
    const rec = this.record(p.instance_id);
    const provider = this.provider(rec.provider);
    if (!provider.logs) throw badInput(`${rec.provider} boxes have no provider log.`, rec.provider === 'ssh' ? 'Read the machine\'s own logs over SSH.' : undefined, 'not_supported');
    return { instance_id: rec.instance_id, log: await provider.logs(rec, this.ctx(o.env ?? requestEnvFrom())) };
  }

  async searchOffers(p: { config: Config; limit?: number }, o: CallOptions = {}): Promise<SearchResult> {
    const env = o.env ?? requestEnvFrom();
    const config = parseConfig(p.config, 'config');
    const provider = this.provider(config.provider);
    if (!provider.search) throw badInput(`The ${config.provider} provider has no offers to search.`, 'Search applies to "vast".', 'not_supported');
    const { offers, maxPrice } = await provider.search(config, this.ctx(env));
    return { offers: offers.slice(0, p.limit ?? 20).map(offerView), max_price_per_hour: maxPrice };
  }

  async runWorkflow(p: RunWorkflowParams, o: CallOptions = {}): Promise<JobView> {
    this.record(p.instance_id);
    return this.jobs.run(p.instance_id, p.workflow, p.wait_s ?? 0, o);
  }

  async getJob(p: { job_id: string; wait_s?: number }, o: CallOptions = {}): Promise<JobView> {
    return this.jobs.wait(p.job_id, p.wait_s ?? 0, o);
  }

  async listJobs(p: { instance_id?: string }): Promise<JobView[]> {
    const jobs = this.jobs.list(p.instance_id);
    // A destroyed box's jobs are still listed; an id that never had a box or a job is bad input.
    if (p.instance_id && jobs.length === 0) this.record(p.instance_id);
    return jobs;
  }

  async listQueue(p: { instance_id: string }): Promise<QueueView> {
    this.record(p.instance_id);
    return this.jobs.queue(p.instance_id);
  }

  async cancelJobs(p: CancelParams): Promise<CancelResult> {
    this.record(p.instance_id);
    return this.jobs.cancel(p);
  }

  async extractOutputs(p: { instance_id: string; out_dir: string; force?: boolean }, o: CallOptions = {}): Promise<ExtractResult> {
    this.record(p.instance_id);
    return this.jobs.extract(p.instance_id, p.out_dir, o, !!p.force);
  }

  async oneshot(p: OneshotParams, o: CallOptions = {}): Promise<{ instance: InstanceView; job: JobView }> {
    const workflow = p.config.workflow;
    if (!workflow) throw badInput('The config has no "workflow" section: oneshot needs one.', 'Add "workflow": {"file": "workflow_api.json", "parameters": {}, "output_dir": "./outputs"}.');
    const { instances } = await this.createInstances({ config: p.config, count: 1, request_id: p.request_id }, o);
    const box = instances[0]!;
    // A repeated request_id: its job, not a second one.
    const prior = this.jobs.list(box.instance_id)[0];
    if (p.request_id && prior) return { instance: box, job: prior };
    const job = await this.jobs.create(box.instance_id, workflow, { destroyBox: p.destroy, waiting: true });
    void this.carryOutOneshot(job.job_id);
    return { instance: this.viewOf(box.instance_id), job: this.jobs.view(job.job_id) };
  }

  async status(): Promise<DaemonStatus> {
    return {
      pid: process.pid,
      version: VERSION,
      home: this.opts.home,
      base_port: this.opts.basePort,
      socket: this.opts.socketPath,
      started_at: this.startedAt.toISOString(),
      uptime_s: Math.round((Date.now() - this.startedAt.getTime()) / 1000),
      tunnels: this.store.tunnels.values().length,
      instances: this.store.instances.values().length,
      rss_bytes: process.memoryUsage.rss(),
      native_crypto: !this.warnings.some((w) => w.includes('native crypto')),
      warnings: this.warnings,
    };
  }

  async shutdown(p: { reason?: string }): Promise<{ ok: true }> {
    this.log().info(`shutdown requested${p.reason ? `: ${p.reason}` : ''}`);
    setImmediate(() => this.opts.onShutdown?.());
    return { ok: true };
  }

  /** Stops everything this process runs; records stay, so the next start restores them. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    if (this.sweeper) clearInterval(this.sweeper);
    await Promise.all([...this.tunnels.values()].map((t) => t.stop()));
    this.tunnels.clear();
    for (const p of Object.values(this.providers)) await p?.shutdown?.();
    await this.store.close();
  }
}

function offerView(o: VastOffer): OfferView {
  return {
    offer_id: o.id,
    gpu_name: o.gpu_name,
    num_gpus: o.num_gpus,
    gpu_ram_gb: o.gpu_ram ? Math.round(o.gpu_ram / 1000) : null,
    dph_total: o.dph_total,
    inet_down_cost: o.inet_down_cost ?? null,
    inet_down_mbps: o.inet_down ?? null,
    inet_up_mbps: o.inet_up ?? null,
    reliability: o.reliability2 ?? o.reliability ?? null,
    geolocation: o.geolocation ?? null,
    disk_space_gb: o.disk_space ?? null,
    direct_ssh: (o.direct_port_count ?? 0) > 0,
  };
}

function byId(a: { instance_id: string }, b: { instance_id: string }): number {
  return a.instance_id.localeCompare(b.instance_id, 'en', { numeric: true });
}

