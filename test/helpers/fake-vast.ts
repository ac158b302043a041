/**
 * A fake Vast.ai API on loopback that behaves like reference/vast-api.md describes, awkward parts
 * included: a bad key is a 404 `auth_error`, 429 comes without Retry-After, a missing instance is
 * `{"instances": null}` with 200, the v0 list is retired with 410, the v1 list pages by 25.
 *
 * Beyond the small first version (kept working: `new FakeVast(keys)`, `addInstance`, `requests`,
 * `instances`, `rateLimitNext`, `start`, `close`), it is a faithful enough Vast for the provider:
 *
 * - offers: `addOffer()`; `POST /api/v0/bundles/` (body = query) and `PUT /api/v0/search/asks/`
 *   (`{"q": query}`) filter with eq/neq/gt/gte/lt/lte/in/notin on any field, honour `order`,
 *   `limit`, `allocated_storage` (dph_total = dph_base + storage_cost * allocated_storage / 720).
 *   A rented offer is not returned. A filter on `id` matches nothing (live finding; use
 *   `ask_contract_id`).
 * - create (`PUT /api/v0/asks/{offer}/`), then a state machine with delays:
 *   actual_status null -> "loading" -> "running". At "running" a real box comes up
 *   (test/helpers/fake-box.ts: an sshd in its own network namespace) with the account's keys and the
 *   keys attached to the instance; `public_ipaddr`, `ports` (HostPort strings), `ssh_host`/`ssh_port`
 *   (the same box address, port 22) are filled. ComfyUI (the box's app on 127.0.0.1:18188) starts
 *   only when the create's `onstart` runs the image entrypoint (`entrypoint.sh`), after
 *   `comfyMs`, with onstart log lines written over time.
 * - show, v1 list (select_filters, order_by, limit <= 25, after_token/next_token), 410 v0 list,
 *   destroy, stop/start/label, request_logs (+ the result_url that answers 404 at first), account
 *   SSH keys, attaching a key to an instance, the current user.
 * - the box's own key: each create answers an `instance_api_key`; a box's `onstart` runs in its
 *   namespace (fake-box.ts `runOnstart`) with `CONTAINER_ID`, `CONTAINER_API_KEY` and the
 *   instance's env, and again at each start; its processes are killed at a stop. The API also
 *   listens on each box's host-side address, which the box reaches as 127.0.0.1 (a relay). That
 *   key may stop or destroy its own instance (`PUT {"state": "stopped"}`, `DELETE`) and nothing else.
 * - faults: `rateLimitNext(n)`, pacing (per-endpoint minimum intervals, `paceViolations`),
 *   `loseNextCreateResponse()`, `nextBoxBehaviour()`, `setStatus()`, `vanish()`, 2FA keys.
 *
 * Everything it starts is stopped by `close()` (boxes destroyed, timers cleared, server closed).
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { fakeBoxesSupported, startFakeBox, type FakeBox } from './fake-box.js';

// ---------------------------------------------------------------------------------------------
// Types

export interface FakeInstance {
  id: number;
  label: string | null;
  actual_status: string | null;
  intended_status: string;
  cur_state: string;
  status_msg: string | null;
  ssh_host: string | null;
  ssh_port: number | null;
  public_ipaddr: string | null;
  dph_total: number;
  gpu_name: string;
  num_gpus: number;
  /** Epoch seconds (float) once the box has run; null while it never has. */
  start_date: number | null;
  ports?: Record<string, { HostIp: string; HostPort: string }[]>;
  next_state?: string;
  machine_id?: number;
  host_id?: number;
  image_uuid?: string | null;
  image_args?: string[];
  image_runtype?: string | null;
  onstart?: string | null;
  extra_env?: [string, string][] | null;
  direct_port_start?: number;
  direct_port_end?: number;
  direct_port_count?: number;
  dph_base?: number;
  storage_cost?: number;
  storage_total_cost?: number;
  disk_space?: number;
  [field: string]: unknown;
}

export interface RecordedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  authorization: string | undefined;
  /** The parsed JSON body (or the raw text when it is not JSON; undefined when empty). */
  body?: unknown;
  /** Method + path template, e.g. `GET /api/v0/instances/{id}/` (what pacing applies to). */
  endpoint?: string;
  /** Date.now() on arrival. */
  at?: number;
  /** The status answered (0 when the connection was dropped). */
  status?: number;
}

/** An offer (search result). Any extra field can be set and filtered on. */
export interface FakeOffer {
  id: number;
  ask_contract_id: number;
  machine_id: number;
  host_id: number;
  bundle_id: number;
  gpu_name: string;
  num_gpus: number;
  gpu_ram: number;
  gpu_total_ram: number;
  gpu_frac: number;
  cuda_max_good: number;
  driver_version: string;
  compute_cap: number;
  cpu_cores: number;
  cpu_cores_effective: number;
  cpu_ram: number;
  disk_space: number;
  disk_bw: number;
  inet_up: number;
  inet_down: number;
  inet_up_cost: number;
  inet_down_cost: number;
  direct_port_count: number;
  public_ipaddr: string;
  static_ip: boolean;
  dph_base: number;
  storage_cost: number;
  min_bid: number;
  reliability: number;
  reliability2: number;
  score: number;
  dlperf: number;
  total_flops: number;
  geolocation: string;
  geolocode: number;
  verification: string;
  verified: boolean;
  rentable: boolean;
  rented: boolean;
  external: boolean;
  is_bid: boolean;
  duration: number;
  hosting_type: number;
  resource_type: string;
  start_date: number;
  end_date: number;
  [field: string]: unknown;
}

/** How the next created box behaves. Times are ms after the create (or after `running`). */
export interface BoxBehaviour {
  /** actual_status null -> "loading" this long after the create (default 100). */
  loadingMs?: number;
  /** -> "running" (or the failure) this long after the create (default 500; at least loadingMs). */
  runningMs?: number;
  /** When onstart runs entrypoint.sh: ComfyUI answers this long after "running" (default 400). */
  comfyMs?: number;
  /** Instead of running: "exited" / "offline" / "unknown", or a status_msg "Error response from daemon: ...". */
  failWith?: 'exited' | 'offline' | 'unknown' | 'error_msg';
  /** Stays "loading" forever. */
  neverRunning?: boolean;
  /** The entrypoint runs (log lines) but ComfyUI never answers. */
  noComfy?: boolean;
  /** The offer cannot be scheduled: 410 with cancel_unavail (default), else a stopped instance. */
  unavailable?: boolean;
  /** stop: "exited" this long after the PUT (default 100). */
  stopMs?: number;
  /** start: "running" again this long after the PUT (default 300). */
  startMs?: number;
}

export interface PaceViolation {
  endpoint: string;
  at: number;
  /** ms since the previous served call to this endpoint (with this key). */
  gapMs: number;
  /** the scaled minimum interval it broke. */
  minIntervalMs: number;
  /** true when the call fell into a penalty period (create: 12 x scale s after a violation). */
  penalty?: boolean;
}

export interface FakeVastOptions {
  /**
   * Multiplies the documented per-endpoint minimum intervals (`VAST_MIN_INTERVALS_MS`); 0 (the
   * default) turns pacing off. E.g. 0.02 in tests: show instance every 40 ms at most.
   */
  paceScale?: number;
  /** Per-endpoint overrides of the unscaled intervals, keyed like `VAST_MIN_INTERVALS_MS`. */
  intervalsMs?: Record<string, number>;
  /**
   * Slack for timer, event-loop and loopback jitter: a call this much early still passes. Default
   * min(10 ms, half the scaled interval): at paceScale 0.02 the intervals are 20-120 ms, and a
   * client that paces at exactly the interval must not be flagged for a few ms of jitter.
   */
  paceToleranceMs?: number;
  /** Start real fake boxes (sshd in a netns) when instances run; default: when supported here. */
  boxes?: boolean;
  /** Defaults for every created box (per-create: `nextBoxBehaviour`). */
  behaviour?: BoxBehaviour;
  /** Account SSH keys present from the start (public key lines). */
  accountKeys?: string[];
  /** Keys that are valid but need 2FA: answered 401 "Two Factor Authentication ...". */
  twoFactorKeys?: string[];
  /** How many GETs of a log result_url answer 404 before the log is there (default 2). */
  logNotReadyPolls?: number;
  /** Answer the retired `GET /api/v0/instances/` with 200 (the pre-2026 behaviour) instead of 410. */
  legacyV0List?: boolean;
  /** Whether a key added to the account also reaches running boxes (the docs disagree; default false). */
  accountKeysReachRunning?: boolean;
  /** Fields of `GET /api/v0/users/current/`. */
  user?: Record<string, unknown>;
}

/** Documented minimum intervals between calls, per endpoint and identity (reference section 2). */
export const VAST_MIN_INTERVALS_MS: Record<string, number> = {
  'GET /api/v0/instances/{id}/': 2000,
  'GET /api/v1/instances/': 1000,
  'PUT /api/v0/asks/{id}/': 4500,
  'DELETE /api/v0/instances/{id}/': 3000,
  'PUT /api/v0/instances/{id}/': 1000,
  'POST /api/v0/ssh/': 1000,
  'POST /api/v0/bundles/': 6000, // "10 per minute"
  'PUT /api/v0/search/asks/': 6000,
};
export const VAST_DEFAULT_INTERVAL_MS = 1000;
/** A create sent too soon is also locked out for this long (the YAML's "penalty 12"). */
export const VAST_CREATE_PENALTY_MS = 12_000;

const DEFAULT_BEHAVIOUR = { loadingMs: 100, runningMs: 500, comfyMs: 400, stopMs: 100, startMs: 300 };

/** `/api/v0/instances/123/` -> `/api/v0/instances/{id}/`. */
export function endpointTemplate(method: string, pathname: string): string {
  return `${method} ${pathname.replace(/\/\d+(?=\/|$)/g, '/{id}')}`;
}

// ---------------------------------------------------------------------------------------------
// Query matching (offers and the v1 list)

const OPS = new Set(['eq', 'neq', 'gt', 'gte', 'lt', 'lte', 'in', 'notin']);

class QueryError extends Error {}

/** The CLI sends numbers as strings ("0.98") and booleans as true/false: compare like SQL would. */
function coerce(want: unknown, like: unknown): unknown {
  if (typeof like === 'number' && typeof want === 'string' && want.trim() !== '' && Number.isFinite(Number(want))) return Number(want);
  if (typeof like === 'boolean' && (want === 'true' || want === 'false')) return want === 'true';
  if (typeof like === 'boolean' && (want === 1 || want === 0)) return want === 1;
  return want;
}

function equals(field: string, have: unknown, want: unknown): boolean {
  const w = coerce(want, have);
  if (have === w) return true;
  // geolocation "Sweden, SE" is filtered with 2-letter codes.
  if (field === 'geolocation' && typeof have === 'string' && typeof w === 'string') {
    const code = have.split(',').pop()?.trim();
    return code !== undefined && code.toUpperCase() === w.toUpperCase();
  }
  return false;
}

function opMatches(field: string, have: unknown, op: string, want: unknown): boolean {
  switch (op) {
    case 'eq':
      return have !== undefined && equals(field, have, want);
    case 'neq':
      return !equals(field, have, want);
    case 'in':
      if (!Array.isArray(want)) throw new QueryError(`"${field}": the value of "in" must be a list`);
      return have !== undefined && want.some((w) => equals(field, have, w));
    case 'notin':
      if (!Array.isArray(want)) throw new QueryError(`"${field}": the value of "notin" must be a list`);
      return !want.some((w) => equals(field, have, w));
    default: {
      if (have === undefined || have === null) return false;
      const a = typeof have === 'number' ? have : Number(have);
      const b = Number(coerce(want, 0));
      if (!Number.isFinite(a) || !Number.isFinite(b)) return false;
      if (op === 'gt') return a > b;
      if (op === 'gte') return a >= b;
      if (op === 'lt') return a < b;
      return a <= b;
    }
  }
}

/** `{field: {op: value}}` (a bare value means eq). */
function matches(row: Record<string, unknown>, filters: Record<string, unknown>, reserved: Set<string>): boolean {
  for (const [field, cond] of Object.entries(filters)) {
    if (reserved.has(field)) continue;
    const ops = cond !== null && typeof cond === 'object' && !Array.isArray(cond) ? (cond as Record<string, unknown>) : { eq: cond };
    for (const [op, want] of Object.entries(ops)) {
      if (!OPS.has(op)) throw new QueryError(`unknown operator "${op}" for "${field}" (use one of ${[...OPS].join(' ')})`);
      if (!opMatches(field, row[field], op, want)) return false;
    }
  }
  return true;
}

function compareValues(a: unknown, b: unknown): number {
  const missA = a === undefined || a === null;
  const missB = b === undefined || b === null;
  if (missA || missB) return missA === missB ? 0 : missA ? 1 : -1; // missing values last
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  return String(a) < String(b) ? -1 : String(a) > String(b) ? 1 : 0;
}

// ---------------------------------------------------------------------------------------------

interface Ctl {
  inst: FakeInstance;
  /** Added with addInstance(): a record only, no state machine, no box. */
  static: boolean;
  offer?: FakeOffer;
  body?: Record<string, unknown>;
  behaviour: BoxBehaviour & typeof DEFAULT_BEHAVIOUR;
  runsEntrypoint: boolean;
  /** Bumped by every lifecycle change; timers and async steps of an older generation stop. */
  gen: number;
  timers: Set<NodeJS.Timeout>;
  /** Box operations run one after another. */
  chain: Promise<void>;
  box?: FakeBox;
  /** Keys attached to this instance (account keys at creation + POST /instances/{id}/ssh/). */
  keys: string[];
  /** The onstart log (mirrored into the box's file). */
  log: string[];
  gone: boolean;
  /** The box's own key (`instance_api_key`, CONTAINER_API_KEY on the box). */
  apiKey?: string;
}

interface LogJob {
  text: string;
  notReady: number;
}

type Json = Record<string, unknown>;

export class FakeVast {
  readonly instances = new Map<number, FakeInstance>();
  readonly requests: RecordedRequest[] = [];
  /** Keys that authenticate; any other Bearer gets a 404 auth_error like the real API. */
  readonly keys = new Set<string>();
  /** Valid keys that need 2FA (401 "Two Factor Authentication"). */
  readonly twoFactorKeys = new Set<string>();
  readonly offers = new Map<number, FakeOffer>();
  /** Every query received by a search, as sent (`q` for search/asks). */
  readonly searchQueries: Json[] = [];
  /** Every create: the offer, the full body, the instance made (null when refused), the status. */
  readonly creates: { offerId: number; body: Json; instanceId: number | null; status: number }[] = [];
  /** Calls that came sooner than their endpoint's interval (answered 429). */
  readonly paceViolations: PaceViolation[] = [];
  /** Failures in the background (a box that would not start, ...). */
  readonly errors: string[] = [];
  /** Account SSH keys as `GET /api/v0/ssh/` lists them. */
  readonly accountKeys: { id: number; user_id: number; public_key: string; created_at: number; deleted_at: null; default: boolean; private_key: null }[] = [];
  /** Ids of instances that were destroyed (or vanished). */
  readonly destroyed = new Set<number>();
  url = '';

  private server: http.Server | undefined;
  private throttleNext = 0;
  private nextId = 900000;
  private nextContract = 31_400_000;
  private nextOfferId = 7_100_000;
  private nextKeyId = 41_000;
  private readonly ctl = new Map<number, Ctl>();
  private readonly behaviours: BoxBehaviour[] = [];
  private loseCreates: ('502' | 'drop')[] = [];
  private readonly logJobs = new Map<string, LogJob>();
  private paceScale: number;
  private readonly intervals: Record<string, number>;
  private readonly paceToleranceMs: number | undefined;
  private readonly lastServed = new Map<string, number>();
  private readonly penaltyUntil = new Map<string, number>();
  private readonly boxesEnabled: boolean;
  private readonly defaults: BoxBehaviour & typeof DEFAULT_BEHAVIOUR;
  private readonly logNotReadyPolls: number;
  private readonly legacyV0List: boolean;
  private readonly accountKeysReachRunning: boolean;
  /** `GET /api/v0/users/current/` (tests change `credit`). */
  readonly user: Json;
  /** Instance API keys (instance_api_key): key -> instance id. */
  private readonly apiKeys = new Map<string, number>();
  /** The API's listeners on boxes' host-side addresses, by address. */
  private readonly boxSide = new Map<string, http.Server>();
  private closed = false;

  constructor(keys: string[], opts: FakeVastOptions = {}) {
    for (const k of keys) this.keys.add(k);
    for (const k of opts.twoFactorKeys ?? []) this.twoFactorKeys.add(k);
    this.paceScale = opts.paceScale ?? 0;
    this.intervals = { ...VAST_MIN_INTERVALS_MS, ...opts.intervalsMs };
    this.paceToleranceMs = opts.paceToleranceMs;
    this.boxesEnabled = opts.boxes ?? fakeBoxesSupported().ok;
    this.defaults = { ...DEFAULT_BEHAVIOUR, ...opts.behaviour };
    this.logNotReadyPolls = opts.logNotReadyPolls ?? 2;
    this.legacyV0List = opts.legacyV0List ?? false;
    this.accountKeysReachRunning = opts.accountKeysReachRunning ?? false;
    this.user = {
      id: 314159,
      username: 'fake-vast-user',
      email: 'fake-vast-user@example.invalid',
      fullname: 'Fake Vast User',
      credit: 25.0,
      balance: 0,
      balance_threshold: 0,
      balance_threshold_enabled: false,
      can_pay: true,
      has_billing: true,
      email_verified: true,
      ssh_key: '',
      ...opts.user,
    };
    for (const k of opts.accountKeys ?? []) this.addAccountKey(k);
  }

  // ------------------------------------------------------------------------------- knobs

  /** The next `n` requests get a 429 without Retry-After. */
  rateLimitNext(n: number): void {
    this.throttleNext = n;
  }

  /** Pacing: documented intervals x `scale` (0 turns it off). Clears the memory of past calls. */
  setPacing(scale: number): void {
    this.paceScale = scale;
    this.lastServed.clear();
    this.penaltyUntil.clear();
  }

  /** The scaled minimum interval of an endpoint template (ms). */
  minIntervalMs(endpoint: string): number {
    return (this.intervals[endpoint] ?? VAST_DEFAULT_INTERVAL_MS) * this.paceScale;
  }

  /**
   * The next create makes the instance but its answer is lost: a 502 (default) or a dropped
   * connection. Calls add up (two calls: the next two creates).
   */
  loseNextCreateResponse(mode: '502' | 'drop' = '502'): void {
    this.loseCreates.push(mode);
  }

  /** How the next created box behaves (queued: one call per create). */
  nextBoxBehaviour(b: BoxBehaviour): void {
    this.behaviours.push(b);
  }

  addOffer(partial: Partial<FakeOffer> = {}): FakeOffer {
    const id = partial.id ?? this.nextOfferId++;
    const gpuName = partial.gpu_name ?? 'RTX 4090';
    const numGpus = partial.num_gpus ?? 1;
    const gpuRam = partial.gpu_ram ?? 24564;
    const offer: FakeOffer = {
      id,
      ask_contract_id: id,
      machine_id: 10_000 + (id % 50_000),
      host_id: 200_000 + (id % 1000),
      bundle_id: 500_000_000 + id,
      gpu_name: gpuName,
      num_gpus: numGpus,
      gpu_ram: gpuRam,
      gpu_total_ram: gpuRam * numGpus,
      gpu_frac: 1,
      cuda_max_good: 12.8,
      driver_version: '570.133.07',
      compute_cap: 890,
      cpu_cores: 32,
      cpu_cores_effective: 16,
      cpu_ram: 64_000,
      disk_space: 200,
      disk_bw: 2500,
      inet_up: 800,
      inet_down: 900,
      inet_up_cost: 0.001,
      inet_down_cost: 0.001,
      direct_port_count: 100,
      public_ipaddr: `203.0.113.${id % 250}`,
      static_ip: true,
      dph_base: 0.35,
      storage_cost: 0.1,
      min_bid: 0.2,
      reliability: 0.995,
      reliability2: 0.995,
      score: 100,
      dlperf: 80,
      total_flops: 82,
      geolocation: 'Sweden, SE',
      geolocode: 752,
      verification: 'verified',
      verified: true,
      rentable: true,
      rented: false,
      external: false,
      is_bid: false,
      duration: 30 * 86400,
      hosting_type: 0,
      resource_type: 'gpu',
      start_date: Date.now() / 1000 - 86400,
      end_date: Date.now() / 1000 + 30 * 86400,
      ...partial,
    };
    if (partial.ask_contract_id === undefined) offer.ask_contract_id = id;
    if (partial.verification === undefined && partial.verified === false) offer.verification = 'unverified';
    this.offers.set(id, offer);
    return offer;
  }

  /** A static instance record (no state machine, no box): for list/show tests. */
  addInstance(partial: Partial<FakeInstance> = {}): FakeInstance {
    let id = partial.id;
    if (id === undefined) {
      while (this.instances.has(this.nextId)) this.nextId++;
      id = this.nextId++;
    }
    const inst: FakeInstance = {
      id,
      label: null,
      actual_status: 'running',
      intended_status: 'running',
      cur_state: 'running',
      status_msg: 'success, running vastai/comfy',
      ssh_host: 'ssh5.vast.ai',
      ssh_port: 20000 + (id % 1000),
      public_ipaddr: '203.0.113.7',
      dph_total: 0.42,
      gpu_name: 'RTX 4090',
      num_gpus: 1,
      start_date: Date.now() / 1000,
      ...partial,
    };
    this.instances.set(id, inst);
    this.ctl.set(id, this.newCtl(inst, true));
    return inst;
  }

  addAccountKey(publicKey: string): { id: number; public_key: string } {
    const key = {
      id: this.nextKeyId++,
      user_id: Number(this.user.id),
      public_key: publicKey.trim(),
      created_at: Date.now() / 1000,
      deleted_at: null,
      default: this.accountKeys.length === 0,
      private_key: null,
    };
    this.accountKeys.push(key);
    if (!this.user.ssh_key) this.user.ssh_key = key.public_key;
    return key;
  }

  /** The instance record as the API shows it (undefined once destroyed). */
  instance(id: number): FakeInstance | undefined {
    return this.instances.get(id);
  }

  /** The box behind an instance (while it has one). */
  box(id: number): FakeBox | undefined {
    return this.ctl.get(id)?.box;
  }

  /** The create body an instance was made from. */
  createBody(id: number): Json | undefined {
    return this.ctl.get(id)?.body;
  }

  /** Keys attached to an instance (what its box authorizes, with the account's keys). */
  instanceKeys(id: number): string[] {
    return [...(this.ctl.get(id)?.keys ?? [])];
  }

  /** The onstart log of an instance. */
  onstartLog(id: number): string {
    const c = this.ctl.get(id);
    return c ? c.log.map((l) => `${l}\n`).join('') : '';
  }

  /**
   * Fault injection: set actual_status (and status_msg / intended_status), cancel whatever the
   * state machine still had planned, and optionally stop or start the box's sshd / ComfyUI.
   * E.g. `setStatus(id, 'offline', { sshd: 'stop' })`, `setStatus(id, 'exited', { comfy: 'stop' })`.
   */
  async setStatus(
    id: number,
    actualStatus: string | null,
    opts: { status_msg?: string | null; intended_status?: string; sshd?: 'stop' | 'start' | 'keep'; comfy?: 'stop' | 'start' | 'keep'; ports?: 'clear' | 'keep' } = {},
  ): Promise<void> {
    const c = this.mustCtl(id);
    this.bump(c);
    c.inst.actual_status = actualStatus;
    if (opts.status_msg !== undefined) c.inst.status_msg = opts.status_msg;
    if (opts.intended_status !== undefined) c.inst.intended_status = opts.intended_status;
    if (opts.ports === 'clear') delete c.inst.ports;
    const box = c.box;
    if (!box) return;
    await this.enqueue(c, async () => {
      if (opts.sshd === 'stop') await box.stopSsh();
      if (opts.sshd === 'start') await box.startSsh();
      if (opts.comfy === 'stop') await box.stopComfy();
      if (opts.comfy === 'start') await box.startComfy();
    });
  }

  /** The instance disappears from the account (as if Vast destroyed it): show answers null. */
  async vanish(id: number): Promise<void> {
    const c = this.ctl.get(id);
    if (!c) return;
    await this.destroyInstance(c);
  }

  /** Waits (bounded) until an instance has this actual_status; returns it. */
  async waitForStatus(id: number, status: string | null, timeoutMs = 15_000): Promise<FakeInstance> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const inst = this.instances.get(id);
      if (inst && inst.actual_status === status && (status !== 'running' || this.ctl.get(id)?.box || !this.boxesEnabled || this.ctl.get(id)?.static)) return inst;
      if (Date.now() > until) {
        throw new Error(`fake Vast: instance ${id} did not reach ${status} within ${timeoutMs} ms (now ${inst ? inst.actual_status : 'gone'}; ${this.errors.join('; ')})`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  // ------------------------------------------------------------------------------- plumbing

  private newCtl(inst: FakeInstance, isStatic: boolean): Ctl {
    return { inst, static: isStatic, behaviour: { ...this.defaults }, runsEntrypoint: false, gen: 0, timers: new Set(), chain: Promise.resolve(), keys: [], log: [], gone: false };
  }

  private mustCtl(id: number): Ctl {
    const c = this.ctl.get(id);
    if (!c) throw new Error(`fake Vast: no instance ${id}`);
    return c;
  }

  private bump(c: Ctl): number {
    for (const t of c.timers) clearTimeout(t);
    c.timers.clear();
    return ++c.gen;
  }

  private later(c: Ctl, gen: number, ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      c.timers.delete(t);
      if (c.gen !== gen || c.gone || this.closed) return;
      fn();
    }, Math.max(0, ms));
    c.timers.add(t);
  }

  private enqueue(c: Ctl, fn: () => Promise<void>): Promise<void> {
    const next = c.chain.then(fn);
    c.chain = next.catch(() => {});
    return next;
  }

  private appendLog(c: Ctl, line: string): void {
    c.log.push(line);
    c.box?.appendOnstartLog(line);
  }

  private json(res: http.ServerResponse, status: number, body: unknown, rec?: RecordedRequest): void {
    const text = JSON.stringify(body);
    if (rec) rec.status = status;
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }

  private text(res: http.ServerResponse, status: number, body: string, rec?: RecordedRequest, type = 'text/plain'): void {
    if (rec) rec.status = status;
    res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
    res.end(body);
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', () => {});
    res.on('error', () => {});
    req.on('end', () => {
      try {
        this.route(req, res, Buffer.concat(chunks).toString('utf8'));
      } catch (err) {
        this.errors.push(`handler: ${(err as Error).stack ?? err}`);
        if (!res.headersSent) this.json(res, 500, { success: false, error: 'server_error', msg: `fake Vast API: ${(err as Error).message}` });
      }
    });
  }

  private route(req: http.IncomingMessage, res: http.ServerResponse, raw: string): void {
    const url = new URL(req.url ?? '/', 'http://fake');
    const method = req.method ?? '';
    const p = url.pathname;
    let body: unknown;
    let badJson = false;
    if (raw.trim()) {
      try {
        body = JSON.parse(raw);
      } catch {
        body = raw;
        badJson = true;
      }
    }
    const endpoint = /^\/logs\/[^/]+\.log$/.test(p) ? `${method} /logs/{token}.log` : endpointTemplate(method, p);
    const rec: RecordedRequest = { method, path: p, query: Object.fromEntries(url.searchParams), authorization: req.headers.authorization, body, endpoint, at: Date.now() };
    this.requests.push(rec);

    // The log result_url stands for S3: no key, no pacing.
    const logGet = /^\/logs\/([A-Za-z0-9_-]+)\.log$/.exec(p);
    if (method === 'GET' && logGet) {
      const job = this.logJobs.get(logGet[1]!);
      if (!job) return this.text(res, 404, '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>', rec, 'application/xml');
      if (job.notReady > 0) {
        job.notReady--;
        return this.text(res, 404, '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>', rec, 'application/xml');
      }
      return this.text(res, 200, job.text, rec);
    }

    if (this.throttleNext > 0) {
      this.throttleNext--;
      return this.text(res, 429, 'API requests too frequent endpoint threshold=1.0', rec);
    }
    const key = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    if (!key) return this.json(res, 404, { success: false, error: 'auth_error', msg: 'Invalid user key' }, rec);
    const ownInstance = this.apiKeys.get(key);
    if (ownInstance !== undefined) {
      const own = /^\/api\/v0\/instances\/(\d+)\/$/.exec(p);
      if (!own || Number(own[1]) !== ownInstance || (method !== 'PUT' && method !== 'DELETE')) {
        return this.json(res, 401, { success: false, error: 'auth_error', msg: 'This instance key may only stop or destroy its own instance.' }, rec);
      }
    } else if (!this.keys.has(key)) return this.json(res, 404, { success: false, error: 'auth_error', msg: 'Invalid user key' }, rec);
    if (this.twoFactorKeys.has(key)) {
      return this.json(res, 401, { success: false, error: 'auth_error', msg: 'Two Factor Authentication is required for this session: verify with your 2FA code (vastai tfa login).' }, rec);
    }

    // Pacing: a minimum interval per endpoint and identity, measured from the last call served.
    if (this.paceScale > 0) {
      const min = this.minIntervalMs(endpoint);
      const slot = `${key}\u0000${endpoint}`;
      const now = Date.now();
      const last = this.lastServed.get(slot);
      const penalty = this.penaltyUntil.get(slot) ?? 0;
      const gap = last === undefined ? Infinity : now - last;
      const slack = this.paceToleranceMs ?? Math.min(10, min / 2);
      if (now < penalty - slack || gap < min - slack) {
        this.paceViolations.push({ endpoint, at: now, gapMs: gap, minIntervalMs: min, ...(now < penalty ? { penalty: true } : {}) });
        if (endpoint === 'PUT /api/v0/asks/{id}/') this.penaltyUntil.set(slot, now + VAST_CREATE_PENALTY_MS * this.paceScale);
        const threshold = ((this.intervals[endpoint] ?? VAST_DEFAULT_INTERVAL_MS) / 1000).toFixed(1);
        if (endpoint === 'DELETE /api/v0/instances/{id}/') {
          return this.json(res, 429, { success: false, error: 'rate_limit_exceeded', msg: `API requests too frequent endpoint threshold=${threshold}` }, rec);
        }
        return this.text(res, 429, `API requests too frequent endpoint threshold=${threshold}`, rec);
      }
      this.lastServed.set(slot, now);
    }

    if (badJson) return this.json(res, 400, { success: false, error: 'invalid_args', msg: 'Request body is not valid JSON.' }, rec);
    const b: Json = body !== null && typeof body === 'object' && !Array.isArray(body) ? (body as Json) : {};

    // ---- offers
    if (method === 'POST' && p === '/api/v0/bundles/') return this.search(res, rec, b);
    if (method === 'PUT' && p === '/api/v0/search/asks/') {
      const q = (b.q !== null && typeof b.q === 'object' ? b.q : {}) as Json;
      return this.search(res, rec, { ...(b.limit !== undefined ? { limit: b.limit } : {}), ...(b.order !== undefined ? { order: b.order } : {}), ...q });
    }

    // ---- create
    const ask = /^\/api\/v0\/asks\/(\d+)\/$/.exec(p);
    if (method === 'PUT' && ask) return this.create(req, res, rec, Number(ask[1]), b);

    // ---- instances
    if (method === 'GET' && p === '/api/v0/instances/') {
      if (this.legacyV0List) {
        const all = [...this.instances.values()].sort((x, y) => x.id - y.id);
        return this.json(res, 200, { instances_found: all.length, instances: all }, rec);
      }
      return this.json(res, 410, { success: false, error: 'deprecated_endpoint', msg: '/api/v0/instances/ is deprecated. Use /api/v1/instances/ instead.' }, rec);
    }
    if (method === 'GET' && p === '/api/v1/instances/') return this.listV1(res, rec, url);
    const logs = /^\/api\/v0\/instances\/request_logs\/(\d+)\/$/.exec(p);
    if (method === 'PUT' && logs) return this.requestLogs(req, res, rec, Number(logs[1]), b);
    const attach = /^\/api\/v0\/instances\/(\d+)\/ssh\/$/.exec(p);
    if (method === 'POST' && attach) return this.attachKey(res, rec, Number(attach[1]), b);
    const one = /^\/api\/v0\/instances\/(\d+)\/$/.exec(p);
    if (one) {
      const id = Number(one[1]);
      if (method === 'GET') return this.json(res, 200, { instances: this.instances.get(id) ?? null }, rec);
      if (method === 'DELETE') return this.destroy(res, rec, id);
      if (method === 'PUT') return this.update(res, rec, id, b);
    }

    // ---- account
    if (p === '/api/v0/ssh/' && method === 'GET') return this.json(res, 200, this.accountKeys, rec);
    if (p === '/api/v0/ssh/' && method === 'POST') {
      const k = typeof b.ssh_key === 'string' ? b.ssh_key.trim() : '';
      if (!k) return this.json(res, 400, { success: false, error: 'no_ssh_key', msg: 'No SSH key provided.' }, rec);
      const added = this.addAccountKey(k);
      if (this.accountKeysReachRunning) for (const c of this.ctl.values()) if (!c.gone && c.box) c.box.addAuthorizedKey(k);
      return this.json(res, 200, { success: true, key: added }, rec);
    }
    if (method === 'GET' && p === '/api/v0/users/current/') return this.json(res, 200, this.user, rec);

    return this.json(res, 404, { success: false, error: 'not_found', msg: `fake Vast API: no route ${method} ${p}` }, rec);
  }

  // ------------------------------------------------------------------------------- offers

  private priced(o: FakeOffer, allocated: number): FakeOffer {
    const storageTotal = (o.storage_cost * allocated) / 720;
    const dph = o.dph_base + storageTotal;
    return {
      ...o,
      dph_total: dph,
      discounted_dph_total: dph,
      storage_total_cost: storageTotal,
      dlperf_per_dphtotal: dph > 0 ? o.dlperf / dph : 0,
      flops_per_dphtotal: dph > 0 ? o.total_flops / dph : 0,
      search: { gpuCostPerHour: o.dph_base, diskHour: storageTotal, totalHour: dph, discountTotalHour: 0, discountedTotalPerHour: dph },
      instance: { gpuCostPerHour: o.dph_base, diskHour: storageTotal, totalHour: dph },
    };
  }

  private search(res: http.ServerResponse, rec: RecordedRequest, query: Json): void {
    this.searchQueries.push(query);
    const reserved = new Set(['order', 'type', 'limit', 'allocated_storage', 'select_cols', 'disable_bundling', 'show_incompatible', 'sort_option', 'extra_ids']);
    const allocated = query.allocated_storage === undefined ? 5 : Number(query.allocated_storage);
    if (!Number.isFinite(allocated) || allocated < 0) return this.json(res, 400, { success: false, error: 'invalid_args', msg: 'allocated_storage must be a number' }, rec);
    let rows: FakeOffer[];
    try {
      rows = [...this.offers.values()]
        .filter((o) => !o.rented)
        .map((o) => this.priced(o, allocated))
        // A filter on `id` matches nothing on the real API (use ask_contract_id).
        .filter((o) => !('id' in query) && matches(o, query, reserved));
    } catch (err) {
      if (err instanceof QueryError) return this.json(res, 400, { success: false, error: 'invalid_args', msg: err.message }, rec);
      throw err;
    }
    let order: [string, string][] = [['score', 'desc']];
    if (query.order !== undefined) {
      const o = query.order;
      if (Array.isArray(o) && o.length === 2 && typeof o[0] === 'string' && typeof o[1] === 'string' && !Array.isArray(o[0])) order = [[o[0], o[1]]];
      else if (Array.isArray(o) && o.every((x) => Array.isArray(x) && typeof x[0] === 'string')) order = (o as string[][]).map((x): [string, string] => [x[0]!, x[1] ?? 'asc']);
      else return this.json(res, 400, { success: false, error: 'invalid_args', msg: 'order must be a list of [field, "asc"|"desc"]' }, rec);
    }
    rows.sort((x, y) => {
      for (const [f, dir] of order) {
        const c = compareValues(x[f], y[f]);
        if (c !== 0) return dir === 'desc' ? -c : c;
      }
      return x.id - y.id;
    });
    const limit = query.limit === undefined ? 64 : Math.floor(Number(query.limit));
    if (!Number.isFinite(limit)) return this.json(res, 400, { success: false, error: 'invalid_args', msg: 'limit must be an integer' }, rec);
    return this.json(res, 200, { offers: limit > 0 ? rows.slice(0, limit) : rows }, rec);
  }

  // ------------------------------------------------------------------------------- create

  private create(req: http.IncomingMessage, res: http.ServerResponse, rec: RecordedRequest, offerId: number, b: Json): void {
    const refuse = (status: number, body: Json): void => {
      this.creates.push({ offerId, body: b, instanceId: null, status });
      this.json(res, status, body, rec);
    };
    const offer = this.offers.get(offerId);
    if (!offer || offer.rented || !offer.rentable) {
      return refuse(404, { success: false, error: 'invalid_args', msg: `error 404/3603: no_such_ask Instance type by id ${offerId} is not available.`, ask_id: offerId });
    }
    const invalid = (msg: string, error = 'invalid_args'): void => refuse(400, { success: false, error, msg, ask_id: offerId });
    const image = typeof b.image === 'string' ? b.image : '';
    if (!image && typeof b.template_hash_id !== 'string') return invalid('image: this field is required (or template_hash_id).');
    if (image.length > 1024) return invalid('image: at most 1024 characters.');
    const label = b.label === undefined || b.label === null ? null : String(b.label);
    if (label !== null && label.length > 256) return invalid('label: at most 256 characters.');
    const onstart = typeof b.onstart === 'string' ? b.onstart : '';
    const argsLen = (Array.isArray(b.args) ? (b.args as unknown[]).join(' ').length : 0) + (typeof b.args_str === 'string' ? b.args_str.length : 0);
    if (onstart.length + argsLen > 4096) return invalid('args + args_str + onstart: at most 4096 characters combined.');
    const disk = b.disk === undefined || b.disk === null ? 10 : Number(b.disk);
    if (!Number.isFinite(disk) || disk < 8) return invalid('disk: at least 8 (GB).');
    if (disk > offer.disk_space) return invalid(`disk: ${disk} GB requested, the offer has ${offer.disk_space} GB.`);
    const price = b.price === undefined || b.price === null ? null : Number(b.price);
    if (price !== null && (!Number.isFinite(price) || price < 0.001 || price > 128)) return invalid('price: between 0.001 and 128 ($/h).', 'invalid_price');
    let env: [string, string][] = [];
    if (b.env !== undefined && b.env !== null) {
      if (typeof b.env === 'object' && !Array.isArray(b.env)) env = Object.entries(b.env as Json).map(([k, v]) => [k, String(v)]);
      else if (typeof b.env === 'string') {
        // The docs' Docker-flag string form: "-e K=V -p 8188:8188 -h name".
        for (const m of b.env.matchAll(/(-[ephvn])\s+(\S+)/g)) {
          const [, flag, val] = m as unknown as [string, string, string];
          if (flag === '-e') env.push([val.split('=')[0]!, val.slice(val.indexOf('=') + 1)]);
          else if (flag === '-h') env.push(['-h', val]);
          else env.push([`${flag} ${val}`, '1']);
        }
      }
      else return invalid('env: a dict of strings.');
      let total = 0;
      for (const [k, v] of env) {
        if (k.length + v.length > 256) return invalid(`env: the entry ${k} is longer than 256 characters.`);
        total += k.length + v.length;
      }
      if (total > 32768) return invalid('env: more than 32768 characters in total.');
    }

    const behaviour = { ...this.defaults, ...(this.behaviours.shift() ?? {}) };
    const cancelUnavail = b.cancel_unavail === undefined ? price === null : b.cancel_unavail !== false;
    if (behaviour.unavailable && cancelUnavail) {
      return refuse(410, { success: false, error: 'no_such_ask', msg: `Instance type by id ${offerId} is no longer available.`, ask_id: offerId });
    }

    while (this.instances.has(this.nextContract) || this.destroyed.has(this.nextContract)) this.nextContract++;
    const id = this.nextContract++;
    const runtype = typeof b.runtype === 'string' ? b.runtype : 'ssh';
    const storageTotal = (offer.storage_cost * disk) / 720;
    const inst: FakeInstance = {
      id,
      machine_id: offer.machine_id,
      host_id: offer.host_id,
      label,
      actual_status: null,
      intended_status: 'running',
      cur_state: 'running',
      next_state: 'running',
      status_msg: null,
      image_uuid: image || null,
      image_args: Array.isArray(b.args) ? (b.args as unknown[]).map(String) : [],
      image_runtype: runtype,
      onstart: onstart || null,
      extra_env: env.length ? env : null,
      template_hash_id: typeof b.template_hash_id === 'string' ? b.template_hash_id : null,
      jupyter_token: randomBytes(32).toString('hex'),
      ssh_host: null,
      ssh_port: null,
      ssh_idx: String(1 + (id % 9)),
      public_ipaddr: null,
      local_ipaddrs: null,
      direct_port_start: 65535,
      direct_port_end: -1,
      direct_port_count: offer.direct_port_count,
      num_gpus: offer.num_gpus,
      gpu_name: offer.gpu_name,
      gpu_ram: offer.gpu_ram,
      gpu_totalram: offer.gpu_total_ram,
      gpu_util: null,
      gpu_temp: null,
      cpu_cores_effective: offer.cpu_cores_effective,
      cpu_ram: offer.cpu_ram,
      disk_space: disk,
      disk_usage: 0,
      dph_base: offer.dph_base,
      dph_total: offer.dph_base + storageTotal,
      storage_cost: offer.storage_cost,
      storage_total_cost: storageTotal,
      inet_up: offer.inet_up,
      inet_down: offer.inet_down,
      inet_up_cost: offer.inet_up_cost,
      inet_down_cost: offer.inet_down_cost,
      reliability2: offer.reliability2,
      geolocation: offer.geolocation,
      verification: offer.verification,
      is_bid: price !== null,
      min_bid: offer.min_bid,
      start_date: null,
      end_date: offer.end_date,
      duration: offer.duration,
      uptime_mins: null,
      volume_info: null,
    };
    offer.rented = true;
    this.instances.set(id, inst);
    const c = this.newCtl(inst, false);
    c.offer = offer;
    c.body = b;
    c.behaviour = behaviour;
    c.runsEntrypoint = /entrypoint\.sh/.test(onstart);
    c.keys = this.accountKeys.map((k) => k.public_key);
    this.ctl.set(id, c);
    this.creates.push({ offerId, body: b, instanceId: id, status: 200 });

    const unscheduled = behaviour.unavailable || b.target_state === 'stopped';
    if (unscheduled) {
      Object.assign(inst, { actual_status: 'exited', intended_status: 'stopped', cur_state: 'stopped', next_state: 'stopped', ssh_port: 0 });
      if (behaviour.unavailable) inst.status_msg = 'Machine lacks the resources to schedule this instance; it was created stopped.';
    } else {
      this.boot(c, 0, behaviour.loadingMs, behaviour.runningMs);
    }

    const lose = this.loseCreates.shift();
    if (lose === 'drop') {
      rec.status = 0;
      req.socket.destroy();
      return;
    }
    if (lose === '502') return this.text(res, 502, '<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>\n', rec, 'text/html');
    c.apiKey = randomBytes(32).toString('hex');
    this.apiKeys.set(c.apiKey, id);
    return this.json(res, 200, { success: true, new_contract: id, instance_api_key: c.apiKey }, rec);
  }

  /** null -> loading -> running (or the failure) on a schedule; the box comes up at "running". */
  private boot(c: Ctl, nullMs: number, loadingAt: number, runningAt: number): void {
    const gen = this.bump(c);
    const b = c.behaviour;
    const image = c.inst.image_uuid ?? 'the image';
    const toLoading = (): void => {
      c.inst.actual_status = 'loading';
      c.inst.status_msg = `Pulling image ${image}...`;
    };
    if (loadingAt <= nullMs) toLoading();
    else this.later(c, gen, loadingAt, toLoading);
    if (b.neverRunning) return;
    this.later(c, gen, Math.max(runningAt, loadingAt), () => {
      switch (b.failWith) {
        case 'exited':
          c.inst.actual_status = 'exited';
          c.inst.status_msg = 'Container exited with code 1 (the onstart script failed).';
          return;
        case 'offline':
          c.inst.actual_status = 'offline';
          c.inst.status_msg = 'Host is offline.';
          return;
        case 'unknown':
          c.inst.actual_status = 'unknown';
          c.inst.status_msg = 'No heartbeat from the host.';
          return;
        case 'error_msg':
          c.inst.actual_status = 'created';
          c.inst.status_msg = 'Error response from daemon: failed to create task for container: OCI runtime create failed: unable to start container process';
          return;
        default:
          void this.enqueue(c, () => this.bringUp(c, gen));
      }
    });
  }

  /** Starts (or restarts) the box, then marks the instance running and runs the onstart timeline. */
  private async bringUp(c: Ctl, gen: number): Promise<void> {
    if (c.gen !== gen || c.gone || this.closed) return;
    const id = c.inst.id;
    let host = `203.0.113.${(id % 250) + 1}`;
    if (this.boxesEnabled) {
      try {
        if (!c.box) {
          c.box = await startFakeBox({ name: `vast-${id}`, instanceId: String(id), authorizedKeys: [...c.keys] });
          // A key attached while the box was starting (no box to add it to yet) is added now.
          for (const k of c.keys) if (!c.box.authorizedKeys().includes(k)) c.box.addAuthorizedKey(k);
          c.box.setOnstartLog(c.log.map((l) => `${l}\n`).join(''));
        } else {
          for (const k of c.keys) c.box.addAuthorizedKey(k);
          await c.box.startSsh();
        }
      } catch (err) {
        this.errors.push(`instance ${id}: the fake box did not start: ${(err as Error).message}`);
        if (c.gen === gen && !c.gone) {
          c.inst.actual_status = 'exited';
          c.inst.status_msg = `Error response from daemon: fake box failed to start: ${(err as Error).message}`;
        }
        return;
      }
      // Destroyed or closed meanwhile: destroyInstance()/close() take the box down after this step.
      if (c.gen !== gen || c.gone || this.closed) return;
      host = c.box.host;
    }
    const inst = c.inst;
    const ports: Record<string, { HostIp: string; HostPort: string }[]> = { '22/tcp': [{ HostIp: '0.0.0.0', HostPort: '22' }] };
    for (const [k] of inst.extra_env ?? []) {
      const m = /^-p\s+(?:\d+:)?(\d+)(?:\/tcp)?$/.exec(k);
      if (m) ports[`${m[1]}/tcp`] = [{ HostIp: '0.0.0.0', HostPort: m[1]! }];
    }
    Object.assign(inst, {
      actual_status: 'running',
      intended_status: 'running',
      cur_state: 'running',
      next_state: 'running',
      status_msg: `success, running ${inst.image_uuid ?? 'image'}/ssh`,
      public_ipaddr: host,
      local_ipaddrs: `${host} `,
      ssh_host: host,
      ssh_port: 22,
      machine_dir_ssh_port: 22,
      ports,
      direct_port_start: 40000,
      direct_port_end: 40000 + Math.max(0, (inst.direct_port_count ?? 1) - 1),
      start_date: inst.start_date ?? Date.now() / 1000,
      gpu_util: 0,
      gpu_temp: 34,
    });
    this.runOnstart(c, gen);
  }

  private runOnstart(c: Ctl, gen: number): void {
    const id = c.inst.id;
    if (c.box && c.inst.onstart) void this.enqueue(c, () => this.bootScript(c, gen));
    if (!c.runsEntrypoint) {
      this.appendLog(c, c.inst.onstart ? `onstart: ran the onstart script (${c.inst.onstart.length} bytes); the image entrypoint was not run` : 'onstart: no onstart script');
      return;
    }
    const b = c.behaviour;
    const env = Object.fromEntries(c.inst.extra_env ?? []);
    this.appendLog(c, `Starting vastai/comfy entrypoint (instance ${id})`);
    this.appendLog(c, 'Provisioning...');
    if (env.PROVISIONING_SCRIPT) this.appendLog(c, `Fetching provisioning script ${env.PROVISIONING_SCRIPT}`);
    this.later(c, gen, b.comfyMs * 0.3, () => this.appendLog(c, 'Downloading 2 models to /workspace/ComfyUI/models/checkpoints...'));
    if (b.noComfy) return;
    this.later(c, gen, b.comfyMs * 0.7, () => this.appendLog(c, 'Provisioning complete!'));
    this.later(c, gen, b.comfyMs, () => {
      void this.enqueue(c, async () => {
        if (c.gen !== gen || c.gone || this.closed) return;
        if (c.box) {
          try {
            await c.box.startComfy();
          } catch (err) {
            this.errors.push(`instance ${id}: ComfyUI did not start: ${(err as Error).message}`);
            return;
          }
        }
        if (c.gen !== gen || c.gone) return;
        this.appendLog(c, `To see the GUI go to: http://${c.inst.public_ipaddr}:8188`);
      });
    });
  }

  /** The create's onstart, run in the box's namespace as the box's boot would. */
  private async bootScript(c: Ctl, gen: number): Promise<void> {
    const box = c.box;
    if (!box || c.gen !== gen || c.gone || this.closed || !c.inst.onstart) return;
    const port = Number(new URL(this.url).port);
    if (!this.boxSide.has(box.hostSideAddress)) {
      const server = http.createServer((req, res) => this.handle(req, res));
      await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, box.hostSideAddress, () => resolve()));
      this.boxSide.set(box.hostSideAddress, server);
    }
    const env = { ...Object.fromEntries((c.inst.extra_env ?? []).filter(([k]) => !k.startsWith('-'))), CONTAINER_ID: String(c.inst.id), CONTAINER_API_KEY: c.apiKey ?? '' };
    try {
      await box.runOnstart(c.inst.onstart, env, port);
    } catch (err) {
      this.errors.push(`instance ${c.inst.id}: onstart did not run: ${(err as Error).message}`);
    }
  }

  // ------------------------------------------------------------------------------- instances

  private listV1(res: http.ServerResponse, rec: RecordedRequest, url: URL): void {
    const bad = (msg: string, error = 'invalid_request'): void => this.json(res, 400, { success: false, error, msg }, rec);
    const parse = (name: string): unknown => {
      const v = url.searchParams.get(name);
      if (v === null || v === '') return undefined;
      return JSON.parse(v);
    };
    let filters: unknown;
    let orderBy: unknown;
    let cols: unknown;
    try {
      filters = parse('select_filters');
      orderBy = parse('order_by');
      cols = parse('select_cols');
    } catch {
      return bad('select_filters, order_by and select_cols must be JSON.');
    }
    if (filters !== undefined && (filters === null || typeof filters !== 'object' || Array.isArray(filters))) return bad('select_filters must be an object.');
    for (const f of Object.keys((filters ?? {}) as Json)) if (f === 'dph_total' || f === 'num_gpus') return bad(`${f} is a computed field and cannot be filtered on.`);
    let limit = 25;
    const lt = url.searchParams.get('limit');
    if (lt !== null && lt !== '') {
      limit = Math.floor(Number(lt));
      if (!Number.isFinite(limit)) return bad('limit must be an integer.');
      if (limit <= 0) limit = 5;
      limit = Math.min(limit, 25);
    }
    const order: { col: string; dir: string }[] = [];
    if (orderBy !== undefined) {
      if (!Array.isArray(orderBy) || !orderBy.every((o) => o && typeof o === 'object' && typeof (o as Json).col === 'string')) return bad('order_by must be a list of {"col","dir"}.');
      for (const o of orderBy as Json[]) order.push({ col: String(o.col), dir: o.dir === 'desc' ? 'desc' : 'asc' });
    }
    if (!order.some((o) => o.col === 'id')) order.push({ col: 'id', dir: 'asc' });
    const key = (i: FakeInstance): unknown[] => order.map((o) => i[o.col]);
    const cmp = (a: unknown[], b2: unknown[]): number => {
      for (let k = 0; k < order.length; k++) {
        const c = compareValues(a[k], b2[k]);
        if (c !== 0) return order[k]!.dir === 'desc' ? -c : c;
      }
      return 0;
    };
    const all = [...this.instances.values()];
    let rows: FakeInstance[];
    try {
      rows = all.filter((i) => matches(i, (filters ?? {}) as Json, new Set())).sort((a, b2) => cmp(key(a), key(b2)));
    } catch (err) {
      if (err instanceof QueryError) return bad(err.message);
      throw err;
    }
    const found = rows.length;
    const token = url.searchParams.get('after_token');
    if (token) {
      let after: unknown[];
      try {
        after = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as unknown[];
        if (!Array.isArray(after) || after.length !== order.length) throw new Error('shape');
      } catch {
        return bad('after_token is not a token this list gave out.', 'invalid_token');
      }
      rows = rows.filter((i) => cmp(key(i), after) > 0);
    }
    const page = rows.slice(0, limit);
    const next = rows.length > limit ? Buffer.from(JSON.stringify(key(page[page.length - 1]!))).toString('base64url') : null;
    const labelCounts: Record<string, number> = {};
    for (const i of all) labelCounts[i.label ?? ''] = (labelCounts[i.label ?? ''] ?? 0) + 1;
    const selected = Array.isArray(cols) && !cols.includes('*') ? page.map((i) => Object.fromEntries(['id', ...(cols as string[])].filter((c2) => c2 in i).map((c2) => [c2, i[c2]]))) : page;
    return this.json(res, 200, { success: true, instances_found: found, total_instances: all.length, label_counts: labelCounts, next_token: next, instances: selected }, rec);
  }

  private async destroyInstance(c: Ctl): Promise<void> {
    if (c.gone) return;
    c.gone = true;
    this.bump(c);
    const id = c.inst.id;
    this.instances.delete(id);
    this.destroyed.add(id);
    if (c.offer) c.offer.rented = false; // the machine is free again
    await this.enqueue(c, async () => {
      const box = c.box;
      c.box = undefined;
      if (!box) return;
      const side = this.boxSide.get(box.hostSideAddress);
      this.boxSide.delete(box.hostSideAddress);
      side?.closeAllConnections();
      side?.close();
      await box.destroy();
    }).catch((err) => this.errors.push(`instance ${id}: destroying its box: ${(err as Error).message}`));
  }

  private destroy(res: http.ServerResponse, rec: RecordedRequest, id: number): void {
    const c = this.ctl.get(id);
    if (!c || c.gone) return this.json(res, 404, { success: false, error: 'not_found', msg: 'Instance not found' }, rec);
    void this.destroyInstance(c);
    return this.json(res, 200, { success: true }, rec);
  }

  private update(res: http.ServerResponse, rec: RecordedRequest, id: number, b: Json): void {
    const c = this.ctl.get(id);
    if (!c || c.gone) return this.json(res, 404, { success: false, error: 'no_such_instance', msg: `Instance ${id} not found.` }, rec);
    if (b.label === undefined && b.state === undefined) return this.json(res, 400, { success: false, error: 'invalid_args', msg: 'Nothing to change: send "state" or "label".' }, rec);
    if (b.state !== undefined && b.state !== 'stopped' && b.state !== 'running') {
      return this.json(res, 400, { success: false, error: 'invalid_args', msg: `state must be "running" or "stopped", not ${JSON.stringify(b.state)}.` }, rec);
    }
    let msg: string | undefined;
    if (b.label !== undefined) {
      const label = b.label === null ? '' : String(b.label);
      if (label.length > 1024) return this.json(res, 400, { success: false, error: 'label_too_long', msg: 'The label is longer than 1024 characters.' }, rec);
      c.inst.label = label;
      msg = `label for ${id} set to '${label}'.`;
    }
    if (b.state === 'stopped' && c.inst.intended_status !== 'stopped') this.stopInstance(c);
    if (b.state === 'running' && c.inst.intended_status !== 'running') this.startInstance(c);
    return this.json(res, 200, { success: true, ...(msg ? { msg } : {}) }, rec);
  }

  private stopInstance(c: Ctl): void {
    const gen = this.bump(c);
    Object.assign(c.inst, { intended_status: 'stopped', next_state: 'stopped' });
    this.later(c, gen, c.behaviour.stopMs, () => {
      Object.assign(c.inst, {
        actual_status: 'exited',
        cur_state: 'stopped',
        status_msg: 'Instance stopped by the user.',
        ssh_port: 0,
        direct_port_start: 65535,
        direct_port_end: -1,
        gpu_util: null,
      });
      delete c.inst.ports;
      // Read the box inside the step: one may still be coming up.
      void this.enqueue(c, async () => {
        if (c.gen !== gen || c.gone) return;
        await c.box?.stopOnstart();
        await c.box?.stopComfy();
        await c.box?.stopSsh();
      }).catch((err) => this.errors.push(`instance ${c.inst.id}: stopping its box: ${(err as Error).message}`));
    });
  }

  private startInstance(c: Ctl): void {
    Object.assign(c.inst, { intended_status: 'running', next_state: 'running', cur_state: 'running' });
    if (c.static) {
      const gen = this.bump(c);
      this.later(c, gen, c.behaviour.startMs, () => Object.assign(c.inst, { actual_status: 'running' }));
      return;
    }
    // A restart runs the onstart script again (and pulls nothing: the image is there).
    this.boot(c, 0, 0, c.behaviour.startMs);
  }

  private requestLogs(_req: http.IncomingMessage, res: http.ServerResponse, rec: RecordedRequest, id: number, b: Json): void {
    const c = this.ctl.get(id);
    if (!c || c.gone) return this.json(res, 404, { success: false, error: 'invalid_id', msg: 'Invalid instance id.' }, rec);
    let lines = [...c.log];
    if (typeof b.filter === 'string' && b.filter) lines = lines.filter((l) => l.includes(b.filter as string));
    const tail = b.tail === undefined ? 1000 : Number(b.tail);
    if (Number.isFinite(tail) && tail >= 0) lines = tail === 0 ? [] : lines.slice(-tail);
    const token = randomBytes(16).toString('hex');
    this.logJobs.set(token, { text: lines.map((l) => `${l}\n`).join(''), notReady: this.logNotReadyPolls });
    return this.json(res, 200, { success: true, result_url: `${this.url}/logs/${token}.log` }, rec);
  }

  private attachKey(res: http.ServerResponse, rec: RecordedRequest, id: number, b: Json): void {
    const c = this.ctl.get(id);
    if (!c || c.gone) return this.json(res, 404, { success: false, error: 'no_such_instance', msg: `Instance ${id} not found.` }, rec);
    const k = typeof b.ssh_key === 'string' ? b.ssh_key.trim() : '';
    if (!k || !/^(ssh-|ecdsa-|sk-)/.test(k)) return this.json(res, 400, { success: false, error: 'invalid_args', msg: 'ssh_key must be a public key line (ssh-ed25519 AAAA...).' }, rec);
    if (!c.keys.includes(k)) c.keys.push(k);
    c.box?.addAuthorizedKey(k);
    return this.json(res, 200, { success: true, msg: 'SSH key attached successfully' }, rec);
  }

  // ------------------------------------------------------------------------------- lifecycle

  async start(): Promise<this> {
    this.server = http.createServer((req, res) => this.handle(req, res));
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', () => r()));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  /** Destroys every fake box, clears every timer, closes the server. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    const errs: unknown[] = [];
    await Promise.all(
      [...this.ctl.values()].map(async (c) => {
        for (const t of c.timers) clearTimeout(t);
        c.timers.clear();
        c.gen++;
        await c.chain; // a box still coming up finishes first (bounded by its own timeouts)
        const box = c.box;
        c.box = undefined;
        if (box) await box.destroy().catch((err) => errs.push(err));
      }),
    );
    for (const side of this.boxSide.values()) {
      side.closeAllConnections();
      await new Promise<void>((r) => side.close(() => r()));
    }
    this.boxSide.clear();
    const server = this.server;
    this.server = undefined;
    if (server) {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
    if (errs.length) throw errs[0];
  }
}
