/**
 * The typed API both faces of vai-mcp call. It has two implementations:
 * - `Supervisor` (core/supervisor/): the in-process one, used by the supervisor and by tests;
 * - `SupervisorClient` (core/control/client.ts): sends each call over the control socket.
 * Field names are the ones users and scripts see, hence snake_case; the objects shown are
 * defined once, in views.ts.
 */
import type { Config, ModelEntry } from '../config/config.js';
import type { RequestEnv } from '../config/settings.js';
import type { BudgetView, InstanceView, JobView, OfferView, TunnelView } from './views.js';

export type { BudgetView, InstanceView, JobView, OfferView, TunnelView } from './views.js';

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
  /** A validated config with absolute paths (see core/config/config.ts). */
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
  /** One app of the box (`instance_config.ports`); without it, all of them. `port` moves this one. */
  app?: string;
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
  /** The main app's port (or the one app's, when one was named). */
  local_port: number;
  /** Every local port this freed. */
  ports_freed: number[];
}

export interface SshKeyReport {
  /** What a box created now would use: a key path or the agent, or null. */
  used: string | null;
  candidates: { path: string; exists: boolean; loads: boolean; error: string | null }[];
  agent: { socket: string | null };
  error: string | null;
}

export interface SearchResult {
  offers: OfferView[];
  max_price_per_hour: number;
}

export interface DashboardInfo {
  /** Open this: it carries the dashboard's token once (the page then keeps it in a cookie). */
  url: string;
  port: number;
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
  /** The client's VAI_BUDGET_USD / VAI_BUDGET_ACTION: kept when the supervisor has no budget yet, else a warning when different. */
  budget_usd?: number;
  budget_action?: 'stop' | 'destroy';
  /** The client's VAI_UI_PORT: a difference from the supervisor's is a warning. */
  ui_port?: number;
}

export interface SetBudgetParams {
  /** The most the paid boxes may cost ($); null removes the limit. */
  limit_usd?: number | null;
  action?: 'stop' | 'destroy';
  /** Count spend from now. */
  reset?: boolean;
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

export interface RunWorkflowParams {
  instance_id: string;
  workflow: WorkflowSpec;
  /** Wait this long for the job to end (progress meanwhile); 0 answers once it is queued. */
  wait_s?: number;
  /** Models and node packs the run needs besides what the workflow names (a config's instance_config lists). */
  models?: ModelEntry[];
  custom_nodes?: string[];
}

/** What to put on a box: a workflow's needs and/or lists of models and node packs. */
export interface PrepareInstanceParams {
  instance_id: string;
  /** An absolute path to a workflow file whose models and node packs the box should have. */
  workflow_file?: string;
  models?: ModelEntry[];
  custom_nodes?: string[];
  /** Wait this long for the work to end (progress meanwhile); 0 answers at once with the job. */
  wait_s?: number;
}

/** The model files a box has, per folder under `models/`. */
export interface ModelsView {
  instance_id: string;
  folders: Record<string, string[]>;
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
  /** Closes all of a box's apps, or the one named (naming `comfyui`, the main one, closes them all). */
  stopTunnel(p: { instance_id: string; app?: string }, o?: CallOptions): Promise<StopTunnelResult>;
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
  /** Puts the models and node packs a box lacks on it, as a job (`kind: "prepare"`) that getJob follows. */
  prepareInstance(p: PrepareInstanceParams, o?: CallOptions): Promise<JobView>;
  /** What model files the box has, asked of its ComfyUI. */
  listModels(p: { instance_id: string }, o?: CallOptions): Promise<ModelsView>;
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
  /** Spent, limit and remaining, the burn rate and when the budget runs out, the account's credit. */
  getBudget(p: Record<string, never>, o?: CallOptions): Promise<BudgetView>;
  setBudget(p: SetBudgetParams, o?: CallOptions): Promise<BudgetView>;
  /** What every result should warn of: 80% of the budget spent, money actions that failed. */
  moneyWarnings(p: Record<string, never>, o?: CallOptions): Promise<string[]>;
  /** Starts the dashboard (once; it stays while the supervisor runs) and returns its URL with the token. */
  openDashboard(p: Record<string, never>, o?: CallOptions): Promise<DashboardInfo>;
  status(p: Record<string, never>, o?: CallOptions): Promise<DaemonStatus>;
  /** Ends the supervisor; records stay, the next start restores them (`daemon stop`, handover). */
  shutdown(p: { reason?: string }, o?: CallOptions): Promise<{ ok: true }>;
}
