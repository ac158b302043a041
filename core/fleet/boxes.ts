/**
 * The fleet's shared ground: the boxes' records (in the store) with the events that tell waiters
 * about changes, one object per known box with everything kept of it in memory, the providers,
 * and the clock. The managers (fleet, provisioning, deadlines, tunnels) all work through it.
 */
import { EventEmitter } from 'node:events';
import { loadSettings, type RequestEnv, type Settings } from '../config/settings.js';
import type { Clock } from '../lib/clock.js';
import { badInput, unknownInstance } from '../lib/errors.js';
import { addSecret, type Logger } from '../lib/log.js';
import { Mutex } from '../lib/mutex.js';
import { Slots } from '../lib/slots.js';
import type { ProviderName } from '../model/provider.js';
import type { Provider, ProviderContext } from '../providers/provider.js';
import type { InstanceRecord, StateStore } from '../store/store.js';
import type { GuardAllowances } from '../tunnels/guard.js';
import { BoxTunnel } from '../tunnels/box-tunnel.js';

/** Everything kept in memory about one known box (its record lives in the store). */
export class Box {
  readonly lock = new Mutex();
  readonly tunnel = new BoxTunnel();
  /** A destroy is under way: nothing may reopen its tunnel meanwhile. */
  destroying = false;
  /** Its provisioning watch runs. */
  watching = false;
  /** The environment of the request that created or started it, for work done on its behalf. */
  env: RequestEnv | undefined;
  /** When a census of this ready box is next due (clock ms). */
  censusAt = 0;
  /** The idle watch's memory of this box (money/idle.ts). */
  readonly idle = new IdleMemory();
  /** The heartbeat its watchdog listens for: when it is next due and when it last got through (clock ms). */
  heartbeatAt = 0;
  heartbeatOkAt: number | undefined;
  /** A money action (idle, budget) is under way; one that failed is not tried again before `moneyRetryAt` (clock ms). */
  moneyActing = false;
  moneyRetryAt = 0;
  /** Why the last money action on it failed, shown until one succeeds. */
  moneyError: string | undefined;
  /** Model downloads onto it, shared by every preparation of it. */
  readonly downloads = new Slots(2);
  constructor(readonly id: string) {}
}

/** When a box was last used, and what the idle watch has done about it. */
export class IdleMemory {
  /** Last use (clock ms): a request through its tunnel, progress of a job, a transfer. */
  usedAt: number | undefined;
  /** Last progress of a job of ours on it (clock ms). */
  jobUsedAt: number | undefined;
  /** Its ComfyUI queue had work that is not ours at the last look; when the next look is due. */
  foreignQueue = false;
  queueCheckAt = 0;
  /** The warning before the action was given for this idle spell. */
  warned = false;
  /** For the views: seconds idle (null when busy or not watched) and when the action is due. */
  idleSince: number | null = null;
  actionAt: number | null = null;
}

export interface BoxesOptions {
  store: StateStore;
  providers: Partial<Record<ProviderName, Provider>>;
  clock: Clock;
  log: Logger;
  home: string;
  basePort: number;
  allowances: GuardAllowances;
  /** The supervisor's own environment, for work no caller waits on (restores). */
  ownEnv: RequestEnv;
}

export class Boxes {
  readonly store: StateStore;
  readonly clock: Clock;
  readonly log: Logger;
  readonly ownEnv: RequestEnv;
  readonly allowances: GuardAllowances;
  /** `change` (id): a box or its tunnel changed; `progress` ({instance_id, message}): a line for waiters. */
  readonly events = new EventEmitter();
  private readonly boxes = new Map<string, Box>();

  constructor(private readonly opts: BoxesOptions) {
    this.store = opts.store;
    this.clock = opts.clock;
    this.log = opts.log;
    this.ownEnv = opts.ownEnv;
    this.allowances = opts.allowances;
    this.events.setMaxListeners(0);
  }

  box(id: string): Box {
    let b = this.boxes.get(id);
    if (!b) this.boxes.set(id, (b = new Box(id)));
    return b;
  }

  all(): Box[] {
    return [...this.boxes.values()];
  }

  /** A destroyed box's memory goes with it. */
  forget(id: string): void {
    this.boxes.delete(id);
  }

  /** The record of a known box; an unknown id is bad input. */
  record(id: string): InstanceRecord {
    const rec = this.store.instances.get(id);
    if (!rec) throw unknownInstance(id);
    return rec;
  }

  records(): InstanceRecord[] {
    return this.store.instances.values();
  }

  async update(id: string, patch: Partial<InstanceRecord>): Promise<InstanceRecord | undefined> {
    const rec = this.store.instances.get(id);
    if (!rec) return undefined;
    const next = { ...rec, ...patch };
    await this.store.instances.set(id, next);
    if (patch.status_message && patch.status_message !== rec.status_message) this.progress(id, patch.status_message);
    this.changed(id);
    return next;
  }

  progress(id: string, message: string): void {
    this.events.emit('progress', { instance_id: id, message });
  }

  changed(id: string): void {
    this.events.emit('change', id);
  }

  /** Resolves at the next change of a box (or its tunnel), or after `ms`. */
  nextChange(id: string, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const ac = new AbortController();
      const onChange = (changed: string) => {
        if (changed === id) ac.abort();
      };
      this.events.on('change', onChange);
      void this.clock.sleep(ms, ac.signal).then(() => {
        this.events.off('change', onChange);
        resolve();
      });
    });
  }

  provider(name: ProviderName): Provider {
    const p = this.opts.providers[name];
    if (!p) throw badInput(`The provider "${name}" is not available in this version of vai-mcp.`, 'Use "local" (the simulator) or "ssh" (a box you already have).', 'unknown_provider');
    return p;
  }

  providers(): Provider[] {
    return Object.values(this.opts.providers).filter((p): p is Provider => !!p);
  }

  /** Settings for a caller's environment; VAI_HOME, VAI_BASE_PORT and the allow lists are the supervisor's own. */
  settings(env: RequestEnv): Settings {
    const s = loadSettings({ ...env, VAI_HOME: this.opts.home, VAI_BASE_PORT: String(this.opts.basePort) }, this.opts.home);
    return { ...s, allowedOrigins: [...this.allowances.origins], allowedHosts: [...this.allowances.hosts] };
  }

  ctx(env: RequestEnv): ProviderContext {
    for (const secret of [env.VAST_API_KEY, env.VAI_SSH_PASSPHRASE, env.HF_TOKEN, env.CIVITAI_TOKEN]) addSecret(secret);
    return { env, settings: this.settings(env), log: this.log };
  }

  /** The environment to act on a box with: its creator's, else the supervisor's own. */
  envOf(id: string): RequestEnv {
    return this.boxes.get(id)?.env ?? this.ownEnv;
  }
}
