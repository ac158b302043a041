/**
 * Deadlines and the census: money that cannot run on by mistake. A box not ready by its ready
 * deadline is ended by the failsafe; one past `max_lifetime_s` is destroyed; a ready box is
 * checked now and then, so one stopped or gone outside vai-mcp gets its tunnel closed. Deadlines
 * are absolute times in the records, so a supervisor that starts after one acts at once.
 */
import { deadmanOf } from '../config/money.js';
import type { RequestEnv } from '../config/settings.js';
import { isoAt } from '../lib/clock.js';
import { toVaiError } from '../lib/errors.js';
import type { Provider } from '../providers/provider.js';
import type { InstanceRecord } from '../store/store.js';
import type { TunnelManager } from '../tunnels/manager.js';
import type { Boxes } from './boxes.js';

/** How often the deadlines (and the money rules) are looked at. */
export const SWEEP_MS = 1_000;
/** A failsafe or lifetime destroy that failed is tried again this much later. */
const RETRY_MS = 10_000;

export interface DeadlineActions {
  /** Ends a box that will not become ready (destroyed when it costs money, else marked failed). */
  fail(id: string, reason: string): Promise<void>;
  destroy(id: string, env: RequestEnv, message: string): Promise<unknown>;
}

export class Deadlines {
  private sweeping = false;

  constructor(
    private readonly boxes: Boxes,
    private readonly tunnels: TunnelManager,
    private readonly actions: DeadlineActions,
  ) {}

  /** One look at every box; a slow destroy is never started twice by the next tick. */
  async sweep(): Promise<void> {
    if (this.sweeping) return;
    this.sweeping = true;
    try {
      const now = this.boxes.clock.now();
      for (const rec of this.boxes.records()) await this.sweepBox(rec, now);
    } finally {
      this.sweeping = false;
    }
  }

  private async sweepBox(rec: InstanceRecord, now: number): Promise<void> {
    const id = rec.instance_id;
    const provider = this.boxes.providers().find((p) => p.name === rec.provider);
    const env = this.boxes.envOf(id);
    if (rec.ready_deadline && rec.status !== 'ready' && rec.status !== 'failed' && Date.parse(rec.ready_deadline) <= now) {
      const timeout = rec.config.instance_config.ready_timeout_s;
      const detail = this.tunnels.forwardOf(id)?.stats().last_error ?? rec.status_message ?? rec.status;
      await this.actions.fail(id, `not ready within ready_timeout_s = ${timeout} s (last: ${detail})`).then(
        () => this.boxes.update(id, { ready_deadline: undefined }),
        // The box may still bill: keep the deadline, try again shortly.
        (err) => this.retry(id, 'ready_deadline', `failsafe destroy failed, retrying: ${toVaiError(err).message}`, now),
      );
    } else if (rec.lifetime_deadline && Date.parse(rec.lifetime_deadline) <= now) {
      const limit = rec.config.instance_config.max_lifetime_s;
      await this.actions.destroy(id, env, `max_lifetime_s = ${limit} s reached; the box was destroyed`).catch((err) =>
        this.retry(id, 'lifetime_deadline', `lifetime destroy failed, retrying: ${toVaiError(err).message}`, now));
    } else if (rec.status === 'ready' && provider?.censusIntervalMs) {
      const box = this.boxes.box(id);
      if (now < box.censusAt) return;
      box.censusAt = now + provider.censusIntervalMs;
      await this.census(rec, provider, env).catch((err) => this.boxes.log.warn(`${id}: check failed: ${toVaiError(err).message}`));
    }
  }

  private async retry(id: string, which: 'ready_deadline' | 'lifetime_deadline', message: string, now: number): Promise<void> {
    this.boxes.log.error(`${id}: ${message}`);
    await this.boxes.update(id, { [which]: isoAt(now + RETRY_MS), status_message: message });
  }

  /** Its switch is on and no heartbeat got through for its window (since this supervisor started, if ever). */
  private stoppedItself(rec: InstanceRecord, provider: Provider): boolean {
    const beat = provider.heartbeat;
    const deadman = deadmanOf(rec.config);
    if (!beat || deadman === 0) return false;
    const ok = this.boxes.box(rec.instance_id).heartbeatOkAt;
    return ok === undefined || this.boxes.clock.now() - ok >= deadman * 1000 * beat.scale;
  }

  /** A ready box that stopped or vanished elsewhere: its tunnel is closed, with the reason shown. */
  private async census(rec: InstanceRecord, provider: Provider, env: RequestEnv): Promise<void> {
    const st = await provider.status(rec, this.boxes.ctx(env));
    const id = rec.instance_id;
    if (this.boxes.store.instances.get(id)?.status !== 'ready') return;
    if (st.status === 'stopped') {
      const why = this.stoppedItself(rec, provider)
        ? `stopped itself (dead man's switch: no word from the supervisor for deadman_s = ${deadmanOf(rec.config)} s)`
        : 'stopped outside vai-mcp';
      await this.tunnels.closeListed(id, `${why}; \`vai-mcp-cli start ${id}\` resumes it`);
      await this.boxes.update(id, { status: 'stopped', status_message: `${why} (storage still bills); \`vai-mcp-cli start ${id}\` resumes it` });
    } else if (st.status === 'failed') {
      await this.tunnels.closeListed(id, `${st.message ?? 'the box failed'}; \`vai-mcp-cli destroy ${id}\` forgets it`);
      await this.boxes.update(id, { status: 'failed', status_message: st.message ?? 'the box failed' });
    }
  }
}
