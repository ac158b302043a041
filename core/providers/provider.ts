/**
 * What the supervisor needs from a provider of boxes. `local` (the simulator) and `ssh` (a box
 * you already have) implement it now; `vast` rents real ones.
 */
import type { Config, ProviderName } from '../config.js';
import type { Logger } from '../log.js';
import type { Settings, RequestEnv } from '../settings.js';
import type { SshAuth } from '../ssh-auth.js';
import type { InstanceRecord, InstanceStatus, SshEndpoint } from '../state.js';

export interface ProviderContext {
  /** The caller's environment (keys, passphrase, agent socket), see DESIGN.md "Its environment". */
  env: RequestEnv;
  settings: Settings;
  log: Logger;
}

export interface BoxStatus {
  status: InstanceStatus;
  ssh?: SshEndpoint;
  message?: string;
}

export interface CreatedBox extends BoxStatus {
  instance_id: string;
  dph_total?: number;
}

export interface Provider {
  readonly name: ProviderName;
  /** Whether readiness includes ComfyUI answering `GET /api/system_stats` through the tunnel. */
  readonly checksComfy: boolean;
  /** Whether a box that misses its ready deadline is destroyed (it costs money, or stands in for one that does). */
  readonly failsafeDestroy: boolean;
  /** Whether boxes count toward VAI_MAX_INSTANCES. */
  readonly countsTowardCap: boolean;
  /** How often to ask for the status while a box comes up (ms). */
  readonly pollIntervalMs: number;

  /** Checks the config for this provider before anything is created. Throws bad input. */
  validate(config: Config, ctx: ProviderContext): void;
  /** Rents, starts or registers one box. */
  create(spec: { config: Config; label: string }, ctx: ProviderContext): Promise<CreatedBox>;
  status(rec: InstanceRecord, ctx: ProviderContext): Promise<BoxStatus>;
  /** Ends the box. Must succeed when the box is already gone. */
  destroy(rec: InstanceRecord, ctx: ProviderContext): Promise<void>;
  /** Credentials for the tunnel to this box. */
  auth(rec: InstanceRecord, ctx: ProviderContext): SshAuth;
  /** Brings a box back after a supervisor restart (the simulator's boxes live in the supervisor). */
  restore?(rec: InstanceRecord, ctx: ProviderContext): Promise<BoxStatus>;
  /** Stops background work when the supervisor exits (records stay). */
  shutdown?(): Promise<void>;
}
