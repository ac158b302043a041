/**
 * Idle stops: a ready box nobody has used for its `idle_timeout_s` is stopped (or destroyed).
 *
 * Use is: a request through its tunnel that is not the supervisor's own (an open websocket that
 * sends nothing is not use), progress of a job of ours on it, a transfer for it, and work on its
 * ComfyUI queue that is not ours (queued from a browser, say). A job of ours that reports no
 * progress for the whole window is not use, so a hung job cannot keep a box billing. A warning
 * comes 5 min before the action (or at half the window, if shorter).
 */
import { ComfyClient } from '../comfy/client.js';
import { idleActionOf, idleTimeoutOf } from '../config/money.js';
import type { RequestEnv } from '../config/settings.js';
import { isoAt } from '../lib/clock.js';
import { toVaiError } from '../lib/errors.js';
import { elapsed } from '../lib/progress.js';
import { usd } from '../model/money.js';
import type { TunnelState } from '../model/tunnel.js';
import type { InstanceRecord } from '../store/store.js';
import type { Box, Boxes } from '../fleet/boxes.js';

const WARN_BEFORE_MS = 5 * 60_000;
/** The queue of a watched box is looked at this often (more often for short windows). */
const QUEUE_CHECK_MS = 30_000;
/** A failed action is tried again this much later. */
const RETRY_MS = 60_000;

export interface IdleHost {
  /** A box's open tunnel: whether it is up, its port, and whether a client used it since the last look. */
  forwardOf(id: string): { state: TunnelState; localPort: number; takeClientActivity(): boolean } | undefined;
  /** The prompt ids of our jobs, to tell our queue entries from someone else's. */
  ourPromptIds(): Set<string>;
  hasActiveJobs(id: string): boolean;
  /** Stops the box, its record saying `message`. */
  stop(id: string, env: RequestEnv, message: string): Promise<unknown>;
  destroy(id: string, env: RequestEnv, message: string): Promise<unknown>;
}

export class IdleStops {
  constructor(
    private readonly boxes: Boxes,
    private readonly host: IdleHost,
  ) {}

  /** Someone or something used the box (`job`: progress of a job of ours). */
  touch(id: string, what: 'use' | 'job' = 'use'): void {
    const rec = this.boxes.store.instances.get(id);
    if (!rec) return;
    const m = this.boxes.box(id).idle;
    const now = this.boxes.clock.now();
    m.usedAt = now;
    if (what === 'job') m.jobUsedAt = now;
    if (m.warned) {
      m.warned = false;
      this.boxes.log.info(`${id}: used again; its idle ${idleActionOf(rec.config)} is off for now`);
    }
  }

  /** One look at every box. */
  async sweep(): Promise<void> {
    const now = this.boxes.clock.now();
    for (const rec of this.boxes.records()) await this.sweepBox(rec, now);
  }

  private async sweepBox(rec: InstanceRecord, now: number): Promise<void> {
    const box = this.boxes.box(rec.instance_id);
    const m = box.idle;
    const timeoutMs = idleTimeoutOf(rec.config) * 1000;
    if (!timeoutMs || rec.status !== 'ready') {
      Object.assign(m, { usedAt: undefined, jobUsedAt: undefined, warned: false, idleSince: null, actionAt: null, foreignQueue: false });
      return;
    }
    // Counted from the first look at it ready (a restarted supervisor gives it a whole window again).
    m.usedAt ??= now;
    const forward = this.host.forwardOf(rec.instance_id);
    if (forward?.takeClientActivity()) this.touch(rec.instance_id);
    if (now >= m.queueCheckAt) {
      m.queueCheckAt = now + Math.min(QUEUE_CHECK_MS, Math.max(2_000, timeoutMs / 5));
      void this.checkQueue(rec.instance_id, forward);
    }
    if (m.foreignQueue) this.touch(rec.instance_id);
    const jobBusy = this.host.hasActiveJobs(rec.instance_id) && m.jobUsedAt !== undefined && now - m.jobUsedAt < timeoutMs;
    const busy = m.foreignQueue || jobBusy;
    const actionAt = m.usedAt! + timeoutMs;
    m.idleSince = busy ? null : m.usedAt!;
    m.actionAt = busy ? null : actionAt;
    if (busy || box.moneyActing || now < box.moneyRetryAt) return;
    const action = idleActionOf(rec.config);
    if (now >= actionAt) return this.act(rec, box, now, action);
    if (!m.warned && now >= actionAt - Math.min(WARN_BEFORE_MS, timeoutMs / 2)) {
      m.warned = true;
      const message = `idle for ${elapsed(now - m.usedAt!)}: it will be ${action === 'stop' ? 'stopped' : 'destroyed'} at ${isoAt(actionAt)} unless it is used (idle_timeout_s = ${timeoutMs / 1000})`;
      this.boxes.log.warn(`${rec.instance_id}: ${message}`);
      await this.boxes.update(rec.instance_id, { status_message: message }).catch(() => undefined);
    }
  }

  /** Work on the box's queue that is not ours counts as use (only while its tunnel is up). */
  private async checkQueue(id: string, forward: ReturnType<IdleHost['forwardOf']>): Promise<void> {
    const m = this.boxes.box(id).idle;
    if (!forward || forward.state !== 'up') {
      m.foreignQueue = false;
      return;
    }
    try {
      const q = await new ComfyClient(`http://127.0.0.1:${forward.localPort}`, { timeoutMs: 10_000 }).queue();
      const ours = this.host.ourPromptIds();
      m.foreignQueue = [...q.running, ...q.pending].some((e) => !ours.has(e.prompt_id));
    } catch {
      m.foreignQueue = false; // a box whose ComfyUI does not answer does no work for anyone
    }
  }

  private async act(rec: InstanceRecord, box: Box, now: number, action: 'stop' | 'destroy'): Promise<void> {
    const id = rec.instance_id;
    const m = box.idle;
    const idleFor = elapsed(now - m.usedAt!);
    const timeout = idleTimeoutOf(rec.config);
    const perHour = rec.dph_total === undefined ? undefined : action === 'stop' ? rec.dph_total - (rec.storage_dph ?? 0) : rec.dph_total;
    const saving = perHour === undefined ? '' : `, saving ${usd(perHour)}/h`;
    const env = this.boxes.envOf(id);
    box.moneyActing = true;
    box.moneyError = undefined; // shown again if this attempt fails too
    try {
      if (action === 'destroy') {
        await this.host.destroy(id, env, `destroyed after ${idleFor} idle (idle_timeout_s = ${timeout})${saving}`);
      } else {
        await this.host.stop(id, env, `stopped after ${idleFor} idle (idle_timeout_s = ${timeout})${saving}; \`vai-mcp-cli start ${id}\` resumes it${rec.storage_dph ? ` (storage still bills ${usd(rec.storage_dph)}/h)` : ''}`);
      }
      this.boxes.log.info(`${id}: idle for ${idleFor}: ${action === 'stop' ? 'stopped' : 'destroyed'} it${saving}`);
    } catch (err) {
      const msg = toVaiError(err).message;
      box.moneyRetryAt = now + RETRY_MS;
      box.moneyError = `the idle ${action} of ${id} failed (${msg}); it is tried again every minute`;
      this.boxes.log.error(`${id}: ${box.moneyError}`);
      await this.boxes.update(id, { status_message: box.moneyError }).catch(() => undefined);
    } finally {
      box.moneyActing = false;
    }
  }
}
