/**
 * The supervisor: the one long-lived process per VAI_HOME that owns every tunnel, port lease,
 * provisioning watch, job and simulated box, so that they outlive the CLI or MCP process that
 * asked for them. This class is the composition root (it builds the managers, with the providers
 * and the clock they are given, and runs their sweeps on that clock) and the in-process `VaiApi`, whose calls it routes to them; the
 * control socket (core/control/server.ts) serves it, and main.ts is the process around it.
 */
import type { CallOptions, HelloParams, HelloResult, VaiApi } from '../api/api.js';
import { DEFAULT_UI_PORT, requestEnvFrom, type RequestEnv } from '../config/settings.js';
import { realClock, type Clock } from '../lib/clock.js';
import { addSecret, type Logger } from '../lib/log.js';
import { ensurePrivateDir } from '../lib/paths.js';
import { Sweeper } from '../lib/sweeper.js';
import { VERSION } from '../lib/version.js';
import { Boxes } from '../fleet/boxes.js';
import { Deadlines, SWEEP_MS } from '../fleet/deadlines.js';
import { byId, Fleet } from '../fleet/fleet.js';
import { Preparing } from '../fleet/preparing.js';
import { Provisioning } from '../fleet/provisioning.js';
import { TunnelApi } from '../fleet/tunnel-api.js';
import { Oneshots } from '../jobs/oneshot.js';
import { JobRunner } from '../jobs/runner.js';
import { Money } from '../money/money.js';
import type { ProviderName } from '../model/provider.js';
import { LocalProvider } from '../providers/local.js';
import type { Provider } from '../providers/provider.js';
import { SshProvider } from '../providers/ssh.js';
import { VastProvider } from '../providers/vast/provider.js';
import { StateStore } from '../store/store.js';
import { NO_ALLOWANCES, type GuardAllowances } from '../tunnels/guard.js';
import { sshKeyReport } from '../tunnels/key-report.js';
import { TunnelManager } from '../tunnels/manager.js';
import type { Dashboard } from '../ui/dashboard.js';
import { startDashboard } from '../ui/start.js';
import { handshakeWarnings } from './handshake.js';
import { daemonStatus } from './status.js';

export interface SupervisorOptions {
  home: string;
  basePort: number;
  /** VAI_UI_PORT: where the dashboard listens once asked for (or the next free port below). */
  uiPort?: number;
  socketPath: string;
  log: Logger;
  /** The supervisor's own environment: used for work no caller is waiting on (restores). */
  env?: NodeJS.ProcessEnv;
  /** What every tunnel's guard lets through (VAI_ALLOWED_ORIGINS / VAI_ALLOWED_HOSTS at its start). */
  guard?: GuardAllowances;
  /** The providers to use (default: local, ssh and vast); tests give their own. */
  providers?: (store: StateStore, log: Logger) => Partial<Record<ProviderName, Provider>>;
  /** Default: the real clock; tests give a fake one. */
  clock?: Clock;
  /** Called after `shutdown` has answered. */
  onShutdown?: () => void;
}

function defaultProviders(home: string): (store: StateStore, log: Logger) => Partial<Record<ProviderName, Provider>> {
  return (store, log) => ({
    local: new LocalProvider(home, () => store.nextId('local'), log.child('local')),
    ssh: new SshProvider(() => store.nextId('ssh')),
    vast: new VastProvider(),
  });
}

export class Supervisor implements VaiApi {
  readonly boxes: Boxes;
  readonly tunnels: TunnelManager;
  readonly fleet: Fleet;
  readonly provisioning: Provisioning;
  readonly deadlines: Deadlines;
  readonly jobs: JobRunner;
  readonly money: Money;
  readonly preparing: Preparing;
  private readonly sweeper: Sweeper;
  private readonly tunnelApi: TunnelApi;
  private readonly oneshots: Oneshots;
  private readonly providers: Partial<Record<ProviderName, Provider>>;
  private readonly startedAt = new Date();
  private readonly allowances: GuardAllowances;
  private closing = false;
  private dashboard: Promise<Dashboard> | undefined;

  private constructor(
    private readonly opts: SupervisorOptions,
    private readonly store: StateStore,
    private readonly warnings: string[],
  ) {
    const log = opts.log;
    this.allowances = opts.guard ?? NO_ALLOWANCES;
    this.providers = (opts.providers ?? defaultProviders(opts.home))(store, log);
    const boxes = new Boxes({
      store, providers: this.providers, clock: opts.clock ?? realClock, log, home: opts.home, basePort: opts.basePort,
      allowances: this.allowances, ownEnv: requestEnvFrom(opts.env ?? process.env),
    });
    this.boxes = boxes;
    this.tunnels = new TunnelManager({
      store, log, basePort: opts.basePort, allowances: this.allowances,
      box: (id) => boxes.box(id),
      auth: (rec, env) => boxes.provider(rec.provider).auth(rec, boxes.ctx(env)),
      portalConfig: (rec) => boxes.provider(rec.provider).portalConfig?.(rec),
      progress: (id, m) => boxes.progress(id, m),
      changed: (id) => boxes.changed(id),
      updateRecord: (id, patch) => boxes.update(id, patch),
    });
    this.jobs = new JobRunner(store.jobs, {
      comfyUrl: (id, timeoutMs) => this.tunnelApi.comfyUrl(id, timeoutMs),
      hasInstance: (id) => store.instances.has(id),
      nextJobId: () => store.nextId('job'),
      priceOf: (id) => store.instances.get(id)?.dph_total,
      plan: (id, spec) => this.preparing.plan(id, spec),
      carryOut: (id, plan, env, progress, signal) => this.preparing.carryOut(id, plan, env, progress, signal),
      used: (id, what) => this.money.idle.touch(id, what),
      log: log.child('jobs'),
    });
    this.preparing = new Preparing(boxes, this.tunnels, (id) => this.money.idle.touch(id, 'use'));
    this.provisioning = new Provisioning(boxes, this.tunnels, (id, reason) => this.fleet.fail(id, reason), this.preparing);
    this.money = new Money(boxes, {
      forwardOf: (id) => this.tunnels.usage(id),
      ourPromptIds: () => new Set(store.jobs.values().map((j) => j.prompt_id ?? '')),
      hasActiveJobs: (id) => this.jobs.activeOn(id).length > 0,
      stop: (id, env, message) => this.fleet.stop(id, env, message),
      destroy: (id, env, m) => this.fleet.destroy(id, env, m),
      run: (id, command, timeoutMs) => this.tunnels.run(id, boxes.envOf(id), command, timeoutMs),
    });
    this.fleet = new Fleet(boxes, this.tunnels, this.provisioning, (id, why) => this.jobs.instanceGone(id, why), this.money.fleetRules());
    this.tunnelApi = new TunnelApi(boxes, this.tunnels, this.provisioning);
    this.deadlines = new Deadlines(boxes, this.tunnels, { fail: (id, r) => this.fleet.fail(id, r), destroy: (id, env, m) => this.fleet.destroy(id, env, m) });
    this.sweeper = new Sweeper(boxes.clock, SWEEP_MS, [{ name: 'deadline sweep', run: () => this.deadlines.sweep() }, ...this.money.steps()], log);
    this.oneshots = new Oneshots(this.jobs, {
      instances: store.instances,
      jobRecords: store.jobs,
      create: (p, o) => this.createInstances(p, o),
      wait: (p) => this.fleet.wait(p),
      viewOf: (id) => this.fleet.viewOf(id),
      destroy: (id, env, m) => this.fleet.destroy(id, env, m),
      envOf: (id) => boxes.envOf(id),
    });
  }

  /** Opens the state, restores boxes, tunnels and jobs, and starts the deadline sweeper. */
  static async start(opts: SupervisorOptions, nativeCryptoWarning?: string): Promise<Supervisor> {
    ensurePrivateDir(opts.home);
    const { store, warning } = await StateStore.open(opts.home);
    const warnings = [warning, nativeCryptoWarning].filter((w): w is string => !!w);
    for (const w of warnings) opts.log.warn(w);
    const sup = new Supervisor(opts, store, warnings);
    addSecret(opts.env?.VAST_API_KEY);
    addSecret(opts.env?.VAI_SSH_PASSPHRASE);
    await sup.fleet.restore();
    await sup.jobs.restore((job) => void sup.oneshots.carryOut(job.job_id));
    await sup.money.start();
    sup.sweeper.start();
    return sup;
  }

  private envOf(o: CallOptions): RequestEnv {
    return o.env ?? requestEnvFrom();
  }

  /** The id of a box this supervisor knows; bad input naming the id otherwise. */
  private known(id: string): string {
    return this.boxes.record(id).instance_id;
  }

  // ---------------------------------------------------------------- the API: boxes

  createInstances: VaiApi['createInstances'] = (p, o = {}) => this.fleet.create(p, this.envOf(o));
  waitForInstances: VaiApi['waitForInstances'] = (p, o = {}) => this.fleet.wait(p, o);
  listInstances: VaiApi['listInstances'] = (_p, o = {}) => this.fleet.list(this.envOf(o), o);
  destroyInstance: VaiApi['destroyInstance'] = (p, o = {}) => this.fleet.destroyInstance(p.instance_id, this.envOf(o));
  destroyAll: VaiApi['destroyAll'] = (_p, o = {}) => this.fleet.destroyAll(this.envOf(o));
  stopInstance: VaiApi['stopInstance'] = (p, o = {}) => this.fleet.stop(p.instance_id, this.envOf(o));
  startInstance: VaiApi['startInstance'] = (p, o = {}) => this.fleet.start(p.instance_id, this.envOf(o));
  instanceLogs: VaiApi['instanceLogs'] = (p, o = {}) => this.fleet.logs(p.instance_id, this.envOf(o));
  searchOffers: VaiApi['searchOffers'] = (p, o = {}) => this.fleet.search(p, this.envOf(o));
  sshKey: VaiApi['sshKey'] = async (p, o = {}) => sshKeyReport(p.key_path, this.envOf(o));

  // ---------------------------------------------------------------- tunnels

  openTunnel: VaiApi['openTunnel'] = (p, o = {}) => this.tunnelApi.open(p, this.envOf(o));
  listTunnels: VaiApi['listTunnels'] = async () => this.tunnels.list().sort(byId);
  stopTunnel: VaiApi['stopTunnel'] = (p) => this.tunnelApi.close(p.instance_id, p.app);
  stopAllTunnels: VaiApi['stopAllTunnels'] = () => this.tunnelApi.closeAll();

  // ---------------------------------------------------------------- workflows

  runWorkflow: VaiApi['runWorkflow'] = async (p, o = {}) =>
    this.jobs.run(this.known(p.instance_id), p.workflow, p.wait_s ?? 0, o, { env: this.envOf(o), models: p.models, custom_nodes: p.custom_nodes });
  prepareInstance: VaiApi['prepareInstance'] = async ({ instance_id, wait_s, ...spec }, o = {}) => this.jobs.prepare(this.known(instance_id), spec, wait_s ?? 0, o, this.envOf(o));
  listModels: VaiApi['listModels'] = async (p) => ({ instance_id: p.instance_id, folders: await this.preparing.models(this.known(p.instance_id)) });
  getJob: VaiApi['getJob'] = async (p, o = {}) => this.jobs.wait(p.job_id, p.wait_s ?? 0, o);
  listJobs: VaiApi['listJobs'] = async (p) => {
    const jobs = this.jobs.list(p.instance_id);
    // A destroyed box's jobs are still listed; an id that never had a box or a job is bad input.
    if (p.instance_id && jobs.length === 0) this.boxes.record(p.instance_id);
    return jobs;
  };
  listQueue: VaiApi['listQueue'] = async (p) => this.jobs.queue(this.known(p.instance_id));
  cancelJobs: VaiApi['cancelJobs'] = async (p) => this.jobs.cancel({ ...p, instance_id: this.known(p.instance_id) });
  extractOutputs: VaiApi['extractOutputs'] = async (p, o = {}) => this.jobs.extract(this.known(p.instance_id), p.out_dir, o, !!p.force);
  oneshot: VaiApi['oneshot'] = (p, o = {}) => this.oneshots.run(p, o);

  // ---------------------------------------------------------------- money

  getBudget: VaiApi['getBudget'] = async (_p, o = {}) => this.money.budget.view(this.boxes.ctx(this.envOf(o)), this.providers.vast);
  setBudget: VaiApi['setBudget'] = async (p, o = {}) => {
    await this.money.budget.change(p);
    return this.getBudget({}, o);
  };
  moneyWarnings: VaiApi['moneyWarnings'] = async () => {
    await this.money.ledger.sync();
    return this.money.budget.warnings();
  };

  // ---------------------------------------------------------------- the daemon

  async hello(p: HelloParams): Promise<HelloResult> {
    const budget = await this.money.budget.adopt({ limit_usd: p.budget_usd, action: p.budget_action });
    const warnings = [...this.warnings, ...handshakeWarnings(this.opts.basePort, this.opts.uiPort ?? DEFAULT_UI_PORT, this.allowances, p), ...budget];
    return { version: VERSION, pid: process.pid, home: this.opts.home, base_port: this.opts.basePort, warnings };
  }

  status: VaiApi['status'] = async () => daemonStatus({ ...this.opts, startedAt: this.startedAt, store: this.store, warnings: this.warnings });
  openDashboard: VaiApi['openDashboard'] = async () => {
    this.dashboard ??= startDashboard(this, { boxes: this.boxes, fleet: this.fleet, home: this.opts.home, uiPort: this.opts.uiPort ?? DEFAULT_UI_PORT, basePort: this.opts.basePort });
    const d = await this.dashboard.catch((err) => { this.dashboard = undefined; throw err; });
    return { url: d.url, port: d.port };
  };

  async shutdown(p: { reason?: string }): Promise<{ ok: true }> {
    this.opts.log.info(`shutdown requested${p.reason ? `: ${p.reason}` : ''}`);
    setImmediate(() => this.opts.onShutdown?.());
    return { ok: true };
  }

  /** Stops everything this process runs; records stay, so the next start restores them. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.sweeper.stop();
    await (await this.dashboard?.catch(() => undefined))?.stop();
    this.provisioning.close();
    await this.tunnels.shutdown(this.boxes.all());
    for (const p of Object.values(this.providers)) await p?.shutdown?.();
    await this.store.close();
  }
}
