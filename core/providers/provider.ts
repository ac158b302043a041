/**
 * What the supervisor needs from a provider of boxes. `local` (the simulator) and `ssh` (a box
 * you already have) implement it now; `vast` rents real ones.
 */
import type { Config } from '../config/config.js';
import type { Logger } from '../lib/log.js';
import type { Settings, RequestEnv } from '../config/settings.js';
import type { SshAuth } from '../tunnels/ssh-auth.js';
import type { InstanceRecord } from '../store/store.js';
import type { VastOffer } from './vast/api.js';
import type { ProviderName } from '../model/provider.js';
import type { InstanceStatus, SshEndpoint } from '../model/instance.js';
import type { Shell } from '../model/shell.js';
import type { BoxInstaller } from '../comfy/provision/installer.js';

export interface ProviderContext {
  /** The caller's environment (keys, passphrase, agent socket): each request acts with its caller's own. */
  env: RequestEnv;
  settings: Settings;
  log: Logger;
}

export interface BoxStatus {
  status: InstanceStatus;
  ssh?: SshEndpoint;
  message?: string;
}

/** A box on the provider's account with a vai-mcp label that this machine does not know. */
export interface OrphanBox {
  instance_id: string;
  label: string;
  dph_total: number | null;
  /** When it was rented (ms), if the provider says. */
  started_at: number | null;
  ssh_host: string | null;
  ssh_port: number | null;
  /** The provider's own word for its state. */
  state: string;
}

export interface CreatedBox extends BoxStatus {
  instance_id: string;
  dph_total?: number;
  /** What it bills while stopped ($/h, its storage). */
  storage_dph?: number;
  /** What the user should hear of this create (the offer rented, a key added to the account). */
  note?: string;
}

/** What `create` is given: the config, the box's label and number, and the provider's plan. */
export interface CreateSpec {
  config: Config;
  label: string;
  /** 1-based number of this box in its request. */
  n: number;
  /** What `plan` returned for the whole request (e.g. the offers chosen for each box). */
  plan?: CreatePlan;
}

/** How a request will be met, decided before anything is rented. */
export interface CreatePlan {
  /** The price of each box asked for ($/h), for the budget and credit checks. */
  hourly_usd: number[];
}

/** The command the box's dead man's switch listens for, and how often it is run (the switch's times are scaled alike). */
export interface Heartbeat {
  command: string;
  intervalMs: number;
  /** The fraction of the switch's documented times in use (1; tests shorten them). */
  scale: number;
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
  /**
   * Decides, before anything is created, how a request for `count` boxes will be met (which
   * offers), refusing it as a whole when it cannot be (price cap, too few offers).
   */
  plan?(config: Config, count: number, ctx: ProviderContext): Promise<CreatePlan>;
  /** Rents, starts or registers one box. */
  create(spec: CreateSpec, ctx: ProviderContext): Promise<CreatedBox>;
  status(rec: InstanceRecord, ctx: ProviderContext): Promise<BoxStatus>;
  /** Ends the box. Must succeed when the box is already gone. */
  destroy(rec: InstanceRecord, ctx: ProviderContext): Promise<void>;
  /** Credentials for the tunnel to this box. */
  auth(rec: InstanceRecord, ctx: ProviderContext): SshAuth;
  /** The box's PORTAL_CONFIG, where the provider knows it without asking the box (else it is read over SSH). */
  portalConfig?(rec: InstanceRecord): string | undefined;
  /** Pauses a box (a paid one still bills storage) and resumes it. */
  stop?(rec: InstanceRecord, ctx: ProviderContext): Promise<void>;
  start?(rec: InstanceRecord, ctx: ProviderContext): Promise<void>;
  /** The provider's log of the box (provisioning, ComfyUI). */
  logs?(rec: InstanceRecord, ctx: ProviderContext): Promise<string>;
  /**
   * A shell command whose output shows what a running, not yet ready box is doing (run over the
   * tunnel's SSH link and shown as progress while, say, a provisioning script downloads models).
   */
  readonly progressCommand?: string;
  /** How often a ready box is checked, to notice one stopped or destroyed elsewhere (ms); none when unset. */
  readonly censusIntervalMs?: number;
  /** Brings a box back after a supervisor restart (the simulator's boxes live in the supervisor). */
  restore?(rec: InstanceRecord, ctx: ProviderContext): Promise<BoxStatus>;
  /** The offers a config would choose from, cheapest first (paid providers). */
  search?(config: Config, ctx: ProviderContext): Promise<{ offers: VastOffer[]; maxPrice: number }>;
  /**
   * Boxes on the account with a vai-mcp label that are not in `known` (left by a crash, or made
   * elsewhere). Empty when the account cannot be asked (no key): that is not an error.
   */
  orphans?(known: ReadonlySet<string>, ctx: ProviderContext): Promise<OrphanBox[]>;
  /** Destroys an orphan; false when `id` is no vai-mcp box of the account. */
  destroyOrphan?(id: string, ctx: ProviderContext): Promise<{ destroyed: boolean; label?: string }>;
  /** The account's credit in $ (null when the answer has none); throws when the account cannot be asked. */
  credit?(ctx: ProviderContext): Promise<number | null>;
  /** Boxes carry a dead man's switch that this keeps quiet (run over their SSH link). */
  readonly heartbeat?: Heartbeat;
  /**
   * How models and node packs get onto its boxes: a shell-based installer over `shell` (the box's
   * SSH link) where the box has a shell. Throws bad input when the box's layout is not known.
   */
  installer?(rec: InstanceRecord, ctx: ProviderContext, shell: Shell): Promise<BoxInstaller>;
  /** Stops background work when the supervisor exits (records stay). */
  shutdown?(): Promise<void>;
}
