/**
 * Provisioning: one watch per box that is coming up, from asked-for to ready: the provider's
 * status until it runs with an SSH endpoint, then the tunnel, then (unless `check_comfy: false`)
 * ComfyUI answering `GET /api/system_stats` through it, then (when the config names any) the
 * models and node packs put on the box. The ready deadline is kept by the deadlines manager, not
 * here, so it holds also while this waits.
 */
import { checkComfy } from '../comfy/client.js';
import { describePlan, isEmptyPlan } from '../comfy/provision/plan.js';
import { isoAt } from '../lib/clock.js';
import { toVaiError } from '../lib/errors.js';
import { nowIso } from '../lib/timers.js';
import { isSettled } from '../model/instance.js';
import type { Provider } from '../providers/provider.js';
import type { InstanceRecord } from '../store/store.js';
import type { TunnelManager } from '../tunnels/manager.js';
import type { Boxes } from './boxes.js';
import { wantsPreparation, type Preparing } from './preparing.js';

/** How often the provisioning log of a box that is not ready yet is read for progress. */
const PROVISIONING_LOG_MS = 3_000;
/** A freshly made box's sshd may refuse the key for a moment: authentication is tried again this often. */
const AUTH_RETRY_MS = 3_000;

interface WatchState {
  authRetryAt: number;
  progressAt: number;
}

export class Provisioning {
  private closing = false;

  constructor(
    private readonly boxes: Boxes,
    private readonly tunnels: TunnelManager,
    /** Ends a box that will not become ready (the failsafe). */
    private readonly fail: (id: string, reason: string) => Promise<void>,
    private readonly preparing: Preparing,
  ) {}

  /** Watches a box until it is settled (at most one watch per box). */
  start(id: string): void {
    const box = this.boxes.box(id);
    if (box.watching || this.closing) return;
    box.watching = true;
    void this.watch(id).finally(() => (box.watching = false));
  }

  /** Ends every watch (the supervisor stops; boxes keep their records and come back). */
  close(): void {
    this.closing = true;
  }

  private async watch(id: string): Promise<void> {
    const state: WatchState = { authRetryAt: 0, progressAt: 0 };
    while (!this.closing) {
      const rec = this.boxes.store.instances.get(id);
      if (!rec || isSettled(rec.status) || this.boxes.box(id).destroying) return;
      const provider = this.boxes.provider(rec.provider);
      try {
        if (await this.step(rec, provider, state)) return;
      } catch (err) {
        // Never give up on a box that may be billing: report, wait, try again. The ready
        // deadline still ends it.
        const msg = toVaiError(err).message;
        this.boxes.log.warn(`${id}: provisioning step failed, retrying: ${msg}`);
        await this.boxes.update(id, { status_message: `retrying after: ${msg}` }).catch(() => undefined);
        await this.boxes.clock.sleep(Math.max(provider.pollIntervalMs, 2000));
        continue;
      }
      await this.boxes.nextChange(id, provider.pollIntervalMs);
    }
  }

  /** One round of a watch. True when the watch is over (ready, failed or gone). */
  private async step(rec: InstanceRecord, provider: Provider, state: WatchState): Promise<boolean> {
    const id = rec.instance_id;
    const env = this.boxes.envOf(id);
    const st = await provider.status(rec, this.boxes.ctx(env));
    if (!this.boxes.store.instances.has(id)) return true;
    if (st.status === 'failed') {
      await this.fail(id, st.message ?? 'the provider reports the box failed');
      return true;
    }
    await this.boxes.update(id, {
      status: st.status === 'ready' ? 'running' : st.status,
      ...(st.ssh ? { ssh: st.ssh } : {}),
      ...(st.message ? { status_message: st.message } : {}),
    });
    if (st.status !== 'running' && st.status !== 'ready') return false;
    const forward = this.tunnels.forwardOf(id);
    if (forward?.state === 'failed') {
      // A fresh box's sshd may refuse the key for a moment while it installs it: for boxes
      // vai-mcp made, retry auth every few seconds until the deadline. Anything else (a host key,
      // a machine that is not ours) will not heal by waiting.
      const reason = forward.stats().last_error ?? 'the tunnel failed';
      if (!provider.failsafeDestroy || !/authentication/i.test(reason)) {
        await this.fail(id, reason);
        return true;
      }
      const now = this.boxes.clock.now();
      if (now >= state.authRetryAt) {
        state.authRetryAt = now + AUTH_RETRY_MS;
        await this.tunnels.ensure(rec, env, { keepLease: true });
      }
    }
    if (await this.checkReady(id)) {
      if (!(await this.prepare(id))) return true;
      await this.boxes.update(id, { status: 'ready', ready_at: nowIso(), ready_deadline: undefined, status_message: `ready at ${this.tunnels.forwardOf(id)?.url}` });
      return true;
    }
    await this.showProvisioning(id, provider, state);
    return false;
  }

  /**
   * A config with `models`, `custom_nodes` or a `workflow` is ready only once the box has them.
   * The ready deadline waits while the work moves; a failure (a stalled download too) fails the
   * box as the failsafe does. False when the box failed.
   */
  private async prepare(id: string): Promise<boolean> {
    const rec = this.boxes.record(id);
    const ic = rec.config.instance_config;
    const spec = { workflow_file: rec.config.workflow?.file, models: ic.models, custom_nodes: ic.custom_nodes };
    if (!wantsPreparation(spec)) return true;
    const env = this.boxes.envOf(id);
    const remaining = rec.ready_deadline ? Date.parse(rec.ready_deadline) - this.boxes.clock.now() : undefined;
    let pushedAt = 0;
    // A destroy meanwhile ends the work (downloads that would run on into a box being removed).
    const gone = new AbortController();
    const progress = (message: string) => {
      if (this.boxes.box(id).destroying || !this.boxes.store.instances.has(id)) gone.abort(new Error(`${id} is being destroyed`));
      const now = this.boxes.clock.now();
      const pause = remaining !== undefined && now - pushedAt >= 2000;
      if (pause) pushedAt = now;
      void this.boxes.update(id, {
        status_message: `preparing: ${message}${remaining !== undefined ? ' (ready_timeout_s waits while this moves)' : ''}`,
        ...(pause ? { ready_deadline: isoAt(now + remaining!) } : {}),
      }).catch(() => undefined);
    };
    try {
      const plan = await this.preparing.plan(id, spec);
      progress(`${id} ${describePlan(plan)}`);
      if (!isEmptyPlan(plan)) await this.preparing.carryOut(id, plan, env, progress, gone.signal);
      return true;
    } catch (err) {
      if (!gone.signal.aborted) await this.fail(id, `the box could not be prepared for its config: ${toVaiError(err).message}`);
      return false;
    }
  }

  /** One readiness check of a running box; opens its tunnel when needed. */
  private async checkReady(id: string): Promise<boolean> {
    const rec = this.boxes.store.instances.get(id);
    if (!rec?.ssh) return false;
    let forward = this.tunnels.forwardOf(id);
    const stale = forward && (forward.link.ssh.host !== rec.ssh.host || forward.link.ssh.port !== rec.ssh.port);
    if (!forward || stale) forward = await this.tunnels.ensure(rec, this.boxes.envOf(id), { keepLease: true });
    if (forward.state !== 'up') return false;
    // `check_comfy: false`: the main port is not ComfyUI (an app of the user's own).
    if (!this.boxes.provider(rec.provider).checksComfy || rec.config.instance_config.check_comfy === false) return true;
    const comfy = await checkComfy(`http://127.0.0.1:${forward.localPort}`, 5000);
    if (comfy.ok) return true;
    await this.boxes.update(id, { status_message: `GET /api/system_stats: ${comfy.answer} from port ${rec.remote_port}; is ComfyUI running there?` });
    return false;
  }

  /**
   * Between "running" and ComfyUI answering, a provisioning script may download models for many
   * minutes: show the tail of the box's own log, so a waiting agent sees work happening.
   */
  private async showProvisioning(id: string, provider: Provider, state: WatchState): Promise<void> {
    const forward = this.tunnels.forwardOf(id);
    const now = this.boxes.clock.now();
    // `remote_down` too: the SSH link works while ComfyUI does not answer yet.
    if (!provider.progressCommand || !forward || !['up', 'remote_down'].includes(forward.state) || now < state.progressAt) return;
    state.progressAt = now + PROVISIONING_LOG_MS;
    const out = await this.tunnels.exec(id, provider.progressCommand).catch(() => '');
    const last = out.split('\n').map((l) => l.trim()).filter(Boolean).pop();
    if (last) await this.boxes.update(id, { status_message: `provisioning: ${last.slice(0, 200)}` });
  }
}
