/**
 * The typed API both faces of vai-mcp call. It has two implementations:
 * - `Supervisor` (core/supervisor.ts): the in-process one, used by the supervisor and by tests;
 * - `SupervisorClient` (core/control.ts): sends each call over the control socket.
 * Field names are the ones users and scripts see (DESIGN.md section 2), hence snake_case.
 */
import type { Config, ProviderName } from '../config/config.js';
import type { RequestEnv } from '../config/settings.js';
import type { InstanceStatus } from '../store/store.js';
import type { TunnelState } from '../tunnels/tunnel.js';

export interface TunnelView {
  instance_id: string;
  provider: ProviderName;
  local_port: number;
  url: string;
  remote_port: number;
  ssh_host: string;
  ssh_port: number;
  ssh_user: string;
  /** `up` when traffic flows; `closed` when its box stopped or went away (last_error says which). */
  state: TunnelState | 'closed';
  last_error: string | null;
  created_at: string;
  since: string;
  bytes_in: number;
  bytes_out: number;
  connections: number;
  /** `http`: every request is checked (a foreign page's requests never reach the box); `off`: not HTTP, bytes as they come. */
  guard: 'http' | 'off';
  /** Requests the guard refused with 403 (or 400 for a malformed one). */
  requests_refused: number;
}

export type InstanceViewStatus = InstanceStatus | 'destroyed';

export interface InstanceView {
  instance_id: string;
  provider: ProviderName;
  status: InstanceViewStatus;
  label: string;
  /** $/hour where the provider has a price, else null. */
  dph_total: number | null;
  /** Estimated $ spent so far (dph_total times the hours since it was created), else null. */
  cost_so_far: number | null;
  created_at: string;
  ready_at: string | null;
  status_message: string | null;
  ssh_host: string | null;
  ssh_port: number | null;
  remote_port: number;
  request_id: string | null;
  /** The tunnel once it is open, else null. */
  tunnel: TunnelView | null;
  /** A box on the provider account with a vai-mcp label that this machine does not know. */
  orphan?: boolean;
}

/** A human-readable step of long work, for CLI progress lines and MCP progress notifications. */
export interface Progress {
  /** What happened, without the instance id (each face shows the id its own way). */
  message: string;
  instance_id?: string;
}

export interface CallOptions {
  /** The caller's environment; the client face fills it from its own process. */
  env?: RequestEnv;
  onProgress?: (p: Progress) => void;
  /** Ends a wait early (the work itself goes on in the supervisor). */
  signal?: AbortSignal;
}

export interface CreateParams {
  /** A validated config with absolute paths (see core/config.ts). */
  config: Config;
  count?: number;
  /** Idempotency key: the same id returns the same boxes and never rents twice. */
  request_id?: string;
  /** What the boxes are for, in their labels (`vai-mcp:<label>-<random>:<n>`; `demo` marks the demo's boxes). */
  label?: string;
}

export interface CreateResult {
  instances: InstanceView[];
  /** What creating did that the user should hear of (the offer rented and its price, a key added to the account). */
  notes: string[];
}

export interface WaitParams {
  instance_ids: string[];
  /** Wait at most this long; undefined waits until each box is ready or failed. */
  timeout_s?: number;
}

export interface OpenTunnelParams {
  instance_id: string;
  port?: number;
  reset_host_key?: boolean;
}

export interface DestroyResult {
  instance_id: string;
  destroyed: boolean;
  message: string;
}

export interface StopTunnelResult {
  instance_id: string;
  local_port: number;
}

export interface SshKeyReport {
  /** What a box created now would use: a key path or the agent, or null. */
  used: string | null;
  candidates: { path: string; exists: boolean; loads: boolean; error: string | null }[];
  agent: { socket: string | null };
  error: string | null;
}

export interface OfferView {
  offer_id: number;
  gpu_name: string;
  num_gpus: number;
  gpu_ram_gb: number | null;
  /** $/hour billed, storage for the config's disk_size included. */
  dph_total: number;
  /** $/GB to download to the box, counted in the ranking (models are downloaded once). */
  inet_down_cost: number | null;
  inet_down_mbps: number | null;
  inet_up_mbps: number | null;
  reliability: number | null;
  geolocation: string | null;
  disk_space_gb: number | null;
  direct_ssh: boolean;
}

export interface SearchResult {
  offers: OfferView[];
  max_price_per_hour: number;
}

export interface DaemonStatus {
  pid: number;
  version: string;
  home: string;
  base_port: number;
  socket: string;
  started_at: string;
  uptime_s: number;
  tunnels: number;
  instances: number;
  rss_bytes: number;
  native_crypto: boolean;
  warnings: string[];
}

export interface HelloParams {
  version: string;
  home: string;
  base_port: number;
  /** The client's VAI_ALLOWED_ORIGINS / VAI_ALLOWED_HOSTS: a difference from the supervisor's is a warning. */
  allowed_origins?: string[];
  allowed_hosts?: string[];
}

export interface HelloResult {
  version: string;
  pid: number;
  home: string;
  base_port: number;
  warnings: string[];
}

/** A workflow to run: the `workflow` section of a config, paths absolute. */
export interface WorkflowSpec {
  file: string;
  parameters: Record<string, unknown>;
  output_dir: string;
}

/**
 * waiting: a oneshot job waits for its box; submitting: inputs upload and the graph is queued;
 * queued / running: on the box; downloading: outputs come to output_dir; then an end state.
 */
export type JobStatus = 'waiting' | 'submitting' | 'queued' | 'running' | 'downloading' | 'succeeded' | 'failed' | 'cancelled';

export interface JobView {
  job_id: string;
  instance_id: string;
  status: JobStatus;
  /** ComfyUI's id of the queued graph, once queued. */
  prompt_id: string | null;
  workflow_file: string;
  output_dir: string;
  /** The latest progress line, e.g. "node 5 of 7: KSampler (node 3) 35%". */
  progress: string | null;
  node_index: number | null;
  node_count: number | null;
  /** Percent of the current node (KSampler steps). */
  percent: number | null;
  /** Place in the box's queue while queued (1 = next). */
  queue_position: number | null;
  /** Local paths of the downloaded outputs. */
  outputs: string[];
  error: string | null;
  created_at: string;
  finished_at: string | null;
  /** oneshot --destroy: the box is destroyed when the job ends, however it ends. */
  destroy_box: boolean;
  /** Set once that destroy was carried out (true) or failed (false). */
  box_destroyed: boolean | null;
}

export interface RunWorkflowParams {
  instance_id: string;
  workflow: WorkflowSpec;
  /** Wait this long for the job to end (progress meanwhile); 0 answers once it is queued. */
  wait_s?: number;
}

export interface QueueRow {
  prompt_id: string;
  number: number;
  /** Our job id when the job was started here. */
  job_id: string | null;
}

export interface QueueView {
  instance_id: string;
  running: QueueRow[];
  pending: QueueRow[];
}

export interface CancelParams {
  instance_id: string;
  /** Our job id (`job-3`) or ComfyUI's prompt id; leave out with `all`. */
  job_id?: string;
  all?: boolean;
}

export interface CancelResult {
  instance_id: string;
  cancelled: { prompt_id: string; job_id: string | null; was: 'running' | 'pending' }[];
}

export interface ExtractResult {
  instance_id: string;
  out_dir: string;
  /** The files downloaded now. */
  files: string[];
  /** Files of this box downloaded into out_dir before (and not fetched again without `force`). */
  skipped: number;
}

export interface OneshotParams {
  /** A validated config with a workflow section, paths absolute. */
  config: Config;
  destroy: boolean;
  request_id?: string;
}

export interface VaiApi {
  hello(p: HelloParams, o?: CallOptions): Promise<HelloResult>;
  createInstances(p: CreateParams, o?: CallOptions): Promise<CreateResult>;
  waitForInstances(p: WaitParams, o?: CallOptions): Promise<InstanceView[]>;
  listInstances(p: Record<string, never>, o?: CallOptions): Promise<InstanceView[]>;
  openTunnel(p: OpenTunnelParams, o?: CallOptions): Promise<TunnelView>;
  listTunnels(p: Record<string, never>, o?: CallOptions): Promise<TunnelView[]>;
  stopTunnel(p: { instance_id: string }, o?: CallOptions): Promise<StopTunnelResult>;
  stopAllTunnels(p: Record<string, never>, o?: CallOptions): Promise<StopTunnelResult[]>;
  destroyInstance(p: { instance_id: string }, o?: CallOptions): Promise<DestroyResult>;
  destroyAll(p: Record<string, never>, o?: CallOptions): Promise<DestroyResult[]>;
  sshKey(p: { key_path?: string }, o?: CallOptions): Promise<SshKeyReport>;
  /** Pauses a box: its tunnel closes, a paid box still bills storage. */
  stopInstance(p: { instance_id: string }, o?: CallOptions): Promise<InstanceView>;
  /** Resumes a stopped box; it comes up like a new one (watch it with waitForInstances). */
  startInstance(p: { instance_id: string }, o?: CallOptions): Promise<InstanceView>;
  instanceLogs(p: { instance_id: string }, o?: CallOptions): Promise<{ instance_id: string; log: string }>;
  /** The offers a config would choose from, cheapest first (paid providers). */
  searchOffers(p: { config: Config; limit?: number }, o?: CallOptions): Promise<SearchResult>;
  /** Uploads inputs and queues the workflow on a ready box; outputs are downloaded when it ends. */
  runWorkflow(p: RunWorkflowParams, o?: CallOptions): Promise<JobView>;
  /** A job's state; with wait_s, waits that long for it to end (progress meanwhile). */
  getJob(p: { job_id: string; wait_s?: number }, o?: CallOptions): Promise<JobView>;
  listJobs(p: { instance_id?: string }, o?: CallOptions): Promise<JobView[]>;
  /** The box's ComfyUI queue. */
  listQueue(p: { instance_id: string }, o?: CallOptions): Promise<QueueView>;
  cancelJobs(p: CancelParams, o?: CallOptions): Promise<CancelResult>;
  /** Downloads what the box has produced (outputs and saved workflows) and out_dir does not have from it yet; `force`: everything. */
  extractOutputs(p: { instance_id: string; out_dir: string; force?: boolean }, o?: CallOptions): Promise<ExtractResult>;
  /** Creates a box, runs the config's workflow on it, downloads the outputs, and destroys it if asked. */
  oneshot(p: OneshotParams, o?: CallOptions): Promise<{ instance: InstanceView; job: JobView }>;
  status(p: Record<string, never>, o?: CallOptions): Promise<DaemonStatus>;
  /** Ends the supervisor; records stay, the next start restores them (`daemon stop`, handover). */
  shutdown(p: { reason?: string }, o?: CallOptions): Promise<{ ok: true }>;
}

export type ApiMethod = keyof VaiApi;
export const API_METHODS: readonly ApiMethod[] = [
  'hello', 'createInstances', 'waitForInstances', 'listInstances', 'openTunnel', 'listTunnels',
  'stopTunnel', 'stopAllTunnels', 'destroyInstance', 'destroyAll', 'sshKey', 'stopInstance', 'startInstance',
  'instanceLogs', 'searchOffers', 'runWorkflow', 'getJob', 'listJobs', 'listQueue', 'cancelJobs', 'extractOutputs',
  'oneshot', 'status', 'shutdown',
];

/** A job that will not change any more. */
export function isJobDone(status: JobStatus): boolean {
  return status === 'succeeded' || status === 'failed' || status === 'cancelled';
}

/** Settled: the box will not change on its own any more (ready, failed, stopped, destroyed). */
export function isSettled(status: InstanceViewStatus): boolean {
  return status === 'ready' || status === 'failed' || status === 'destroyed' || status === 'stopped';
}
