/**
 * The fleet: what a user does to boxes. Create (planned as a whole, under the caps, idempotent
 * by request id), destroy (always closing the tunnel and freeing the port), stop and start,
 * waits, listings (with orphans on provider accounts), and the failsafe that ends a box that will
 * not become ready.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { CallOptions, CreateParams, CreateResult, DestroyResult, InstanceView, SearchResult, WaitParams } from '../api/api.js';
import { parseConfig, resolveConfigPaths, type Config } from '../config/config.js';
import type { RequestEnv } from '../config/settings.js';
import { badInput, failure, toVaiError, unknownInstance, VaiError } from '../lib/errors.js';
import { isoAt } from '../lib/clock.js';
import { addSecret } from '../lib/log.js';
import { nowIso } from '../lib/timers.js';
import { isSettled } from '../model/instance.js';
import { MAX_BOXES_PER_CREATE } from '../model/limits.js';
import type { Provider, ProviderContext } from '../providers/provider.js';
import type { InstanceRecord } from '../store/store.js';
import type { TunnelManager } from '../tunnels/manager.js';
import type { Boxes } from './boxes.js';
import type { Provisioning } from './provisioning.js';
import { destroyedView, instanceView, offerView, orphanView } from './views.js';
import { waitForBoxes } from './wait.js';

/** What the fleet asks of the money rules (which live apart, and watch the fleet). */
export interface FleetMoney {
  /** Refuses (throws) a create or start that money cannot carry: `hourly` is the price of each box asked for. */
  beforeSpend(hourly: number[], provider: Provider, ctx: ProviderContext, what: 'create' | 'start'): Promise<void>;
  /** What a paid box has cost so far, from the ledger. */
  costOf(id: string, nowMs: number): number | undefined;
}

const NO_MONEY_RULES: FleetMoney = { beforeSpend: async () => undefined, costOf: () => undefined };

/** How long a failsafe destroy waits for the box's log before going ahead without it. */
const LOG_TAIL_TIMEOUT_MS = 10_000;
/** Destroyed boxes remembered for late waiters; older ones read as plainly "destroyed". */
const MAX_OUTCOMES = 1_000;

export class Fleet {
  /** Last views of destroyed boxes, so waiters and repeated requests learn what happened. */
  private readonly outcomes = new Map<string, InstanceView>();

  constructor(
    private readonly boxes: Boxes,
    private readonly tunnels: TunnelManager,
    private readonly provisioning: Provisioning,
    /** A box is gone: its unfinished jobs end. */
    private readonly onGone: (id: string, why: string) => Promise<void>,
    private readonly money: FleetMoney = NO_MONEY_RULES,
  ) {}

  view(rec: InstanceRecord): InstanceView {
    const now = this.boxes.clock.now();
    const idle = this.boxes.box(rec.instance_id).idle;
    const money = { cost_so_far: this.money.costOf(rec.instance_id, now), idle_since: idle.idleSince, idle_action_at: idle.actionAt };
    return instanceView(rec, this.tunnels.view(rec.instance_id), now, money);
  }

  viewOf(id: string): InstanceView {
    const rec = this.boxes.store.instances.get(id);
    if (rec) return this.view(rec);
    const gone = this.outcomes.get(id);
    if (gone) return gone;
    throw unknownInstance(id);
  }

  // ---------------------------------------------------------------- create

  async create(p: CreateParams, env: RequestEnv): Promise<CreateResult> {
    const config = resolveConfigPaths(parseConfig(p.config, 'config'), env.cwd ?? process.cwd());
    const count = p.count ?? 1;
    if (!Number.isInteger(count) || count < 1 || count > MAX_BOXES_PER_CREATE) {
      throw badInput(`count must be a whole number from 1 to ${MAX_BOXES_PER_CREATE} (got ${count}).`);
    }
    const provider = this.boxes.provider(config.provider);
    const ctx = this.boxes.ctx(env);
    for (const value of Object.values(config.instance_config.env)) addSecret(value); // stored, never shown
    const store = this.boxes.store;
    const fingerprint = createHash('sha256').update(JSON.stringify({ config, count })).digest('hex');
    const prior = p.request_id ? store.requests.get(p.request_id) : undefined;
    if (prior) {
      if (prior.fingerprint !== fingerprint) {
        throw badInput(`request_id "${p.request_id}" was already used with a different config or count.`, 'Use a new request_id for a new request, or repeat the original one exactly.', 'request_id_reused');
      }
      const instances = prior.instance_ids.map((id) => (store.instances.get(id) ? this.viewOf(id) : (this.outcomes.get(id) ?? destroyedView(id, prior))));
      return { instances, notes: [`request_id "${p.request_id}" was made before: these are its boxes; nothing new was created`] };
    }
    provider.validate(config, ctx);
    if (provider.countsTowardCap) {
      const paid = new Set(this.boxes.providers().filter((x) => x.countsTowardCap).map((x) => x.name));
      const live = this.boxes.records().filter((r) => paid.has(r.provider)).length;
      if (live + count > ctx.settings.maxInstances) {
        throw failure(`Creating ${count} more would make ${live + count} paid boxes, over the cap of ${ctx.settings.maxInstances} (VAI_MAX_INSTANCES).`, 'Destroy boxes you no longer need, or raise VAI_MAX_INSTANCES.', 'instance_cap');
      }
    }
    if (p.label !== undefined && !/^[a-z0-9-]{1,32}$/.test(p.label)) throw badInput(`label "${p.label}" must be 1-32 lowercase letters, digits or dashes.`);
    const request = p.label ? `${p.label}-${randomBytes(3).toString('hex')}` : (p.request_id ?? randomBytes(4).toString('hex'));
    // The whole request is planned (offers chosen under the price cap) before anything is rented.
    const plan = provider.plan ? await provider.plan(config, count, ctx) : undefined;
    if (plan) await this.money.beforeSpend(plan.hourly_usd, provider, ctx, 'create');
    const created: string[] = [];
    const notes: string[] = [];
    try {
      for (let n = 1; n <= count; n++) {
        const label = `vai-mcp:${request}:${n}`;
        const box = await provider.create({ config, label, n, plan }, ctx);
        const now = this.boxes.clock.now();
        const ic = config.instance_config;
        const rec: InstanceRecord = {
          instance_id: box.instance_id,
          provider: config.provider,
          label,
          status: box.status,
          status_message: box.message,
          ssh: box.ssh,
          remote_port: ic.remote_port,
          config,
          dph_total: box.dph_total,
          storage_dph: box.storage_dph,
          created_at: isoAt(now),
          ready_deadline: isoAt(now + ic.ready_timeout_s * 1000),
          lifetime_deadline: ic.max_lifetime_s ? isoAt(now + ic.max_lifetime_s * 1000) : undefined,
          request_id: p.request_id,
        };
        await store.instances.set(rec.instance_id, rec);
        created.push(rec.instance_id);
        if (box.note) notes.push(`${rec.instance_id}: ${box.note}`);
        this.boxes.box(rec.instance_id).env = env;
        this.boxes.progress(rec.instance_id, `created (${config.provider}), ${box.message ?? box.status}`);
        this.provisioning.start(rec.instance_id);
      }
    } catch (err) {
      const e = toVaiError(err);
      if (created.length === 0) throw e;
      throw new VaiError(`${e.message} (${created.length} of ${count} boxes were created before this: ${created.join(', ')}; they keep coming up)`, { hint: e.hint, agentHint: e.agentHint, exitCode: 1, code: e.code });
    } finally {
      if (p.request_id && created.length > 0) {
        await store.requests.set(p.request_id, { request_id: p.request_id, provider: config.provider, fingerprint, instance_ids: created, created_at: nowIso() });
      }
    }
    return { instances: created.map((id) => this.viewOf(id)), notes };
  }

  // ---------------------------------------------------------------- reading

  wait(p: WaitParams, o: CallOptions = {}): Promise<InstanceView[]> {
    const ids = [...new Set(p.instance_ids)];
    for (const id of ids) this.viewOf(id); // unknown ids are bad input
    return waitForBoxes(this.boxes, ids, (id) => this.viewOf(id), p.timeout_s, o);
  }

  /** The boxes known here, then those on provider accounts with a vai-mcp label that are not (orphans). */
  /** The boxes this supervisor knows, as listed (without asking providers for orphans). */
  views(): InstanceView[] {
    return this.boxes.records().map((r) => this.view(r)).sort(byId);
  }

  async list(env: RequestEnv, o: CallOptions = {}): Promise<InstanceView[]> {
    const views = this.views();
    const known = new Set(this.boxes.records().map((r) => r.instance_id));
    for (const provider of this.boxes.providers()) {
      if (!provider.orphans) continue;
      try {
        for (const orphan of await provider.orphans(known, this.boxes.ctx(env))) views.push(orphanView(orphan, provider.name, this.boxes.clock.now()));
      } catch (err) {
        o.onProgress?.({ message: `warning: could not check ${provider.name} for orphaned vai-mcp boxes: ${toVaiError(err).message}` });
      }
    }
    return views;
  }

  async logs(id: string, env: RequestEnv): Promise<{ instance_id: string; log: string }> {
    const rec = this.boxes.record(id);
    const provider = this.boxes.provider(rec.provider);
    if (!provider.logs) throw badInput(`${rec.provider} boxes have no provider log.`, rec.provider === 'ssh' ? 'Read the machine\'s own logs over SSH.' : undefined, 'not_supported');
    return { instance_id: id, log: await provider.logs(rec, this.boxes.ctx(env)) };
  }

  async search(p: { config: Config; limit?: number }, env: RequestEnv): Promise<SearchResult> {
    const config = parseConfig(p.config, 'config');
    const provider = this.boxes.provider(config.provider);
    if (!provider.search) throw badInput(`The ${config.provider} provider has no offers to search.`, 'Search applies to "vast".', 'not_supported');
    const { offers, maxPrice } = await provider.search(config, this.boxes.ctx(env));
    return { offers: offers.slice(0, p.limit ?? 20).map(offerView), max_price_per_hour: maxPrice };
  }

  // ---------------------------------------------------------------- ending

  /** Closes the tunnel, frees the port, drops the pins and ends the box, even when the provider says it is already gone. */
  async destroy(id: string, env: RequestEnv, message: string, finalStatus: 'destroyed' | 'failed' = 'destroyed'): Promise<DestroyResult> {
    const rec = this.boxes.record(id);
    const box = this.boxes.box(id);
    box.destroying = true;
    try {
      await this.tunnels.close(id);
      await this.tunnels.pins.drop(id);
      try {
        await this.boxes.provider(rec.provider).destroy(rec, this.boxes.ctx(env));
      } catch (err) {
        const e = toVaiError(err);
        await this.boxes.update(id, { status_message: `destroy failed: ${e.message}` });
        throw failure(`Could not destroy ${id}: ${e.message}. Its tunnel was closed and its port released.`, {
          cli: `Retry with \`vai-mcp-cli destroy ${id}\`, and check your provider's console.`,
          agent: `Call destroy_instance for ${id} again (confirm: true), and tell the user to check the provider's console.`,
        });
      }
      const last = { ...this.view(rec), status: finalStatus === 'failed' ? ('failed' as const) : ('destroyed' as const), status_message: message, tunnel: null };
      this.outcomes.set(id, last);
      if (this.outcomes.size > MAX_OUTCOMES) this.outcomes.delete(this.outcomes.keys().next().value!);
      await this.boxes.store.instances.delete(id);
      // Belt and braces: nothing may hold this box's port once it is gone.
      if (this.boxes.store.tunnels.has(id)) await this.tunnels.close(id);
      await this.tunnels.forget(id);
      await this.onGone(id, `its box ${id} was destroyed`);
      this.boxes.forget(id);
      this.boxes.progress(id, message);
      this.boxes.changed(id);
      this.boxes.log.info(`${id}: ${message}`);
      return { instance_id: id, destroyed: true, message };
    } finally {
      box.destroying = false;
    }
  }

  /** A box known here, else an orphan on a provider account (left by a crash). */
  async destroyInstance(id: string, env: RequestEnv): Promise<DestroyResult> {
    if (this.boxes.store.instances.has(id)) return this.destroy(id, env, 'destroyed');
    for (const provider of this.boxes.providers()) {
      const r = await provider.destroyOrphan?.(id, this.boxes.ctx(env));
      if (r?.destroyed) {
        this.boxes.log.info(`${id}: destroyed an orphan (label ${r.label})`);
        return { instance_id: id, destroyed: true, message: `destroyed (an orphan on the ${provider.name === 'vast' ? 'Vast.ai ' : ''}account, label ${r.label})` };
      }
    }
    throw unknownInstance(id);
  }

  async destroyAll(env: RequestEnv): Promise<DestroyResult[]> {
    const results: DestroyResult[] = [];
    for (const rec of this.boxes.records().sort(byId)) {
      try {
        results.push(await this.destroy(rec.instance_id, env, 'destroyed'));
      } catch (err) {
        results.push({ instance_id: rec.instance_id, destroyed: false, message: toVaiError(err).message });
      }
    }
    return results;
  }

  /** A box that will not become ready: destroyed when it costs (or stands for) money, else marked failed. */
  async fail(id: string, reason: string): Promise<void> {
    const rec = this.boxes.store.instances.get(id);
    if (!rec) return;
    const provider = this.boxes.provider(rec.provider);
    if (!provider.failsafeDestroy) {
      await this.boxes.update(id, { status: 'failed', status_message: reason });
      return;
    }
    this.boxes.log.warn(`${id}: ${reason}; destroying it (failsafe)`);
    const env = this.boxes.envOf(id);
    const tail = await this.logTail(rec, provider, env);
    await this.destroy(id, env, `${reason}. It was destroyed by the failsafe, so it does not keep billing.${tail ? ` Its log ended with: ${tail}` : ''}`, 'failed');
  }

  /** The last lines of a box's provider log, for the message of a failsafe destroy ('' if none). */
  private async logTail(rec: InstanceRecord, provider: Provider, env: RequestEnv): Promise<string> {
    if (!provider.logs) return '';
    const timeout = new Promise<string>((r) => setTimeout(() => r(''), LOG_TAIL_TIMEOUT_MS).unref());
    const log = await Promise.race([provider.logs(rec, this.boxes.ctx(env)).catch(() => ''), timeout]);
    return log.split('\n').map((l) => l.trim()).filter(Boolean).slice(-5).join(' | ').slice(0, 800);
  }

  // ---------------------------------------------------------------- pause

  /** Pauses a box; `message` (why it was stopped) replaces the usual note in its record. */
  async stop(id: string, env: RequestEnv, message?: string): Promise<InstanceView> {
    const rec = this.boxes.record(id);
    const provider = this.boxes.provider(rec.provider);
    if (!provider.stop) throw badInput(`${rec.provider} boxes cannot be stopped by vai-mcp.`, rec.provider === 'ssh' ? 'The machine is not vai-mcp\'s to pause; `tunnel --stop` closes its tunnel.' : undefined, 'not_supported');
    if (rec.status !== 'stopped') {
      await provider.stop(rec, this.boxes.ctx(env));
      await this.tunnels.close(id);
      const note = message ?? (provider.countsTowardCap ? 'stopped: its storage still bills; `destroy` ends all charges' : 'stopped');
      await this.boxes.update(id, { status: 'stopped', ready_deadline: undefined, status_message: note });
    }
    return this.viewOf(id);
  }

  async start(id: string, env: RequestEnv): Promise<InstanceView> {
    const rec = this.boxes.record(id);
    const provider = this.boxes.provider(rec.provider);
    if (!provider.start) throw badInput(`${rec.provider} boxes cannot be started by vai-mcp.`, undefined, 'not_supported');
    if (rec.status === 'failed') {
      throw failure(`${id} failed${rec.status_message ? ` (${rec.status_message})` : ''}, so it cannot be started.`, `Destroy it: \`vai-mcp-cli destroy ${id}\`.`, 'failed_box');
    }
    // Already started (or coming up): done, like a stop of a stopped box.
    if (rec.status !== 'stopped') return this.viewOf(id);
    const ctx = this.boxes.ctx(env);
    if (rec.dph_total !== undefined) await this.money.beforeSpend([rec.dph_total], provider, ctx, 'start');
    await provider.start(rec, ctx);
    // Coming back is like coming up: the same readiness and the same failsafe deadline.
    const deadline = isoAt(this.boxes.clock.now() + rec.config.instance_config.ready_timeout_s * 1000);
    await this.boxes.update(id, { status: 'loading', ready_at: undefined, ready_deadline: deadline, status_message: 'starting' });
    this.boxes.box(id).env = env;
    this.provisioning.start(id);
    return this.viewOf(id);
  }

  // ---------------------------------------------------------------- restart

  /** After a supervisor start: boxes the supervisor runs itself (the simulator's) come back, then their tunnels, then the watches. */
  async restore(): Promise<void> {
    const env = this.boxes.ownEnv;
    for (const rec of this.boxes.records()) {
      const provider = this.boxes.providers().find((p) => p.name === rec.provider);
      if (!provider?.restore || rec.status === 'failed' || rec.status === 'stopped') continue;
      try {
        const st = await provider.restore(rec, this.boxes.ctx(env));
        if (st.ssh) await this.boxes.update(rec.instance_id, { ssh: st.ssh });
      } catch (err) {
        this.boxes.log.error(`${rec.instance_id}: could not restore the box: ${toVaiError(err).message}`);
      }
    }
    await this.tunnels.restore(env);
    for (const rec of this.boxes.records()) if (!isSettled(rec.status)) this.provisioning.start(rec.instance_id);
  }
}

export function byId(a: { instance_id: string }, b: { instance_id: string }): number {
  return a.instance_id.localeCompare(b.instance_id, 'en', { numeric: true });
}
