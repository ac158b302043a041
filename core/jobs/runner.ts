/**
 * Workflow jobs: the supervisor's record of every workflow it runs on a box, so a job started by
 * a CLI or MCP call goes on (and its outputs still arrive in output_dir) after the caller exits.
 *
 * - A job is submitted in the call (inputs uploaded, graph queued): bad input fails that call,
 *   and nothing is queued. Following and downloading then run here in the background.
 * - Progress ("node 5 of 7: KSampler (node 3) 35%") is kept in memory and sent to waiting callers; the
 *   record in state changes with the status only.
 * - After a supervisor restart, jobs that were queued or running are followed again from the
 *   box's history; a job whose submit was cut short is marked failed (its box may have it queued).
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { CallOptions, CancelParams, CancelResult, ExtractResult, JobView, QueueView, WorkflowSpec } from '../api/api.js';
import { ComfyClient } from '../comfy/client.js';
import { downloadOutputs, followJob, submitWorkflow, type JobProgress } from '../comfy/run.js';
import { badInput, toVaiError } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import { nowIso, sleep } from '../lib/timers.js';
import { isJobDone, type JobStatus } from '../model/job.js';
import type { Collection, JobRecord } from '../store/store.js';
import type { RequestEnv } from '../config/settings.js';
import { describePlan, isEmptyPlan, type Plan, type PrepareResult } from '../comfy/provision/plan.js';
import type { PrepareSpec } from '../fleet/preparing.js';
import { extractOutputs } from './extract.js';
import { LiveJobs, waitForJobEnd, type LiveJob } from './live.js';
import { cancelJobs, queueOf } from './queue.js';

/** What the job runner needs from the supervisor. */
export interface JobHost {
  /** The box's ComfyUI base URL through its tunnel, once the tunnel is up; throws when it cannot be. */
  comfyUrl(instanceId: string, timeoutMs: number): Promise<string>;
  hasInstance(instanceId: string): boolean;
  nextJobId(): Promise<string>;
  /** The box's price ($/h), where it has one: a job costs its running time at it. */
  priceOf(instanceId: string): number | undefined;
  /** What the box lacks for a workflow or a list of models and packs; bad input throws, before any work. */
  plan(instanceId: string, spec: PrepareSpec): Promise<Plan>;
  /** Puts what the plan lists on the box, with progress lines. */
  carryOut(instanceId: string, plan: Plan, env: RequestEnv, progress: (message: string) => void, signal: AbortSignal): Promise<PrepareResult>;
  /** The box was used for a job: `job` its progress, `use` a transfer (inputs, outputs). */
  used(instanceId: string, what: 'use' | 'job'): void;
  log: Logger;
}

/** How long a job waits for its box's tunnel to come back before it is given up. */
const LINK_PATIENCE_MS = 120_000;
const URL_WAIT_MS = 20_000;

export class JobRunner {
  private readonly events = new EventEmitter();
  private readonly live = new LiveJobs(this.events, (id) => this.store.get(id)?.instance_id);

  constructor(
    private readonly store: Collection<JobRecord>,
    private readonly host: JobHost,
  ) {
    this.events.setMaxListeners(0);
  }

  // ------------------------------------------------------------ views

  private record(jobId: string): JobRecord {
    const rec = this.store.get(jobId);
    if (!rec) {
      throw badInput(`Unknown job id "${jobId}".`, 'Job ids look like "job-3"; run_workflow, exec and oneshot print them.', 'unknown_job');
    }
    return rec;
  }

  view(jobId: string): JobView {
    return jobView(this.record(jobId), this.live.get(jobId));
  }

  list(instanceId?: string): JobView[] {
    return this.store
      .values()
      .filter((r) => !instanceId || r.instance_id === instanceId)
      .sort((a, b) => a.created_at.localeCompare(b.created_at))
      .map((r) => this.view(r.job_id));
  }

  /** Jobs of a box that have not ended (destroy refuses to race them silently: it ends them). */
  activeOn(instanceId: string): JobRecord[] {
    return this.store.values().filter((r) => r.instance_id === instanceId && !isJobDone(r.status));
  }

  // ------------------------------------------------------------ changes

  private async update(jobId: string, patch: Partial<JobRecord>): Promise<JobRecord> {
    const rec = { ...this.record(jobId), ...patch };
    await this.store.set(jobId, rec);
    if (patch.status) this.events.emit('change', jobId);
    return rec;
  }

  private async finish(jobId: string, status: Extract<JobStatus, 'succeeded' | 'failed' | 'cancelled'>, patch: Partial<JobRecord> = {}): Promise<void> {
    const rec = this.store.get(jobId);
    if (!rec || isJobDone(rec.status)) return;
    await this.update(jobId, { ...patch, status, finished_at: nowIso() });
    const what = status !== 'succeeded' ? `${status}${patch.error ? `: ${patch.error}` : ''}`
      : rec.kind === 'prepare' ? 'succeeded: the box has what was asked for'
        : `succeeded: ${rec.outputs.length + (patch.outputs?.length ?? 0)} file(s) in ${rec.workflow.output_dir}`;
    this.live.say(jobId, what, true);
    this.host.log.info(`${jobId} on ${rec.instance_id} ${what}`);
    this.live.end(jobId);
  }

  private onProgress(jobId: string, p: JobProgress): void {
    const l = this.live.of(jobId);
    const owner = this.store.get(jobId)?.instance_id;
    if (owner) this.host.used(owner, p.phase === 'running' || p.phase === 'queued' ? 'job' : 'use');
    l.node_index = p.node_index ?? l.node_index;
    l.percent = p.percent ?? null;
    l.queue_position = p.queue_position ?? null;
    const rec = this.store.get(jobId);
    const next: JobStatus | undefined = p.phase === 'queued' ? 'queued' : p.phase === 'running' ? 'running' : p.phase === 'downloading' ? 'downloading' : undefined;
    const changed = !!rec && !!next && rec.status !== next && !isJobDone(rec.status);
    if (changed) void this.update(jobId, { status: next }).catch((err) => this.host.log.warn(`${jobId}: ${toVaiError(err).message}`));
    this.live.say(jobId, p.message, changed);
  }

  // ------------------------------------------------------------ running

  /** A new job record; `waiting` for a oneshot whose box is coming up, else `submitting`. */
  async create(instanceId: string, workflow: WorkflowSpec, opts: { destroyBox?: boolean; waiting?: boolean; kind?: 'prepare' } = {}): Promise<JobRecord> {
    const rec: JobRecord = {
      job_id: await this.host.nextJobId(),
      instance_id: instanceId,
      ...(opts.kind ? { kind: opts.kind } : {}),
      status: opts.waiting ? 'waiting' : opts.kind === 'prepare' ? 'preparing' : 'submitting',
      workflow,
      client_id: randomUUID(),
      outputs: [],
      created_at: nowIso(),
      destroy_box: !!opts.destroyBox,
      dph_total: this.host.priceOf(instanceId),
    };
    await this.store.set(rec.job_id, rec);
    this.live.of(rec.job_id);
    return rec;
  }

  /**
   * Uploads the inputs and queues the graph. Bad input (malformed workflow, missing input file,
   * unknown node) rejects before anything is queued; the job is then marked failed.
   */
  async submit(jobId: string): Promise<void> {
    const rec = this.record(jobId);
    if (rec.status === 'waiting' || rec.status === 'preparing') await this.update(jobId, { status: 'submitting' });
    try {
      const client = await this.clientOf(rec.instance_id);
      this.live.say(jobId, 'preparing the workflow', true);
      const queued = await submitWorkflow(client, { file: rec.workflow.file, parameters: rec.workflow.parameters }, {
        clientId: rec.client_id,
        onProgress: (p) => this.onProgress(jobId, p),
      });
      const now = this.store.get(jobId);
      // Cancelled while its inputs were uploading: take it off the queue again.
      if (!now || isJobDone(now.status)) {
        await client.deleteQueued([queued.prompt_id]).catch(() => undefined);
        return;
      }
      await this.update(jobId, { status: 'queued', prompt_id: queued.prompt_id, node_count: queued.node_count, nodes: queued.nodes });
    } catch (err) {
      const e = toVaiError(err);
      await this.finish(jobId, 'failed', { error: e.message });
      throw e;
    }
  }

  /** Follows a queued job to its end and downloads its outputs. Never rejects. */
  async follow(jobId: string): Promise<void> {
    try {
      await this.followOnce(jobId);
    } catch (err) {
      await this.finish(jobId, 'failed', { error: toVaiError(err).message }).catch(() => undefined);
    }
  }

  private async followOnce(jobId: string): Promise<void> {
    const rec = this.record(jobId);
    if (!rec.prompt_id) throw new Error('the job was never queued');
    const live = this.live.of(jobId);
    const signal = live.abort.signal;
    let lostSince: number | undefined;
    for (;;) {
      if (signal.aborted || isJobDone(this.record(jobId).status)) return;
      if (!this.host.hasInstance(rec.instance_id)) throw new Error(`its box ${rec.instance_id} is gone`);
      let client: ComfyClient;
      let result: Awaited<ReturnType<typeof followJob>>;
      try {
        client = await this.clientOf(rec.instance_id);
        result = await followJob(client, rec.prompt_id, {
          clientId: rec.client_id,
          nodeCount: rec.node_count,
          nodes: rec.nodes,
          signal,
          onProgress: (p) => {
            lostSince = undefined; // in touch again
            this.onProgress(jobId, p);
          },
        });
      } catch (err) {
        if (signal.aborted) return;
        // The link or the box hiccuped: keep following for a while, the job runs on regardless.
        lostSince ??= Date.now();
        const e = toVaiError(err);
        if (Date.now() - lostSince > LINK_PATIENCE_MS) throw new Error(`lost touch with ${rec.instance_id} for ${LINK_PATIENCE_MS / 1000} s (${e.message})`);
        this.live.say(jobId, `waiting for ${rec.instance_id} (${e.message})`);
        await sleep(2_000, signal);
        continue;
      }
      if (signal.aborted && result.status !== 'cancelled') return;
      if (result.status !== 'succeeded') {
        return this.finish(jobId, result.status, { error: result.error ?? (result.status === 'cancelled' ? 'cancelled' : 'the job failed on the box') });
      }
      await this.update(jobId, { status: 'downloading' });
      this.live.say(jobId, `downloading ${result.outputs.length} output file(s)`, true);
      this.host.used(rec.instance_id, 'use');
      const files = await downloadOutputs(client, result.outputs, { outputDir: rec.workflow.output_dir, instanceId: rec.instance_id, when: new Date() });
      this.host.used(rec.instance_id, 'use');
      return this.finish(jobId, 'succeeded', { outputs: files });
    }
  }

  /** Waits until the job ends or `waitS` passes, passing its progress lines on. */
  async wait(jobId: string, waitS: number, o: CallOptions = {}): Promise<JobView> {
    if (isJobDone(this.record(jobId).status) || waitS <= 0) return this.view(jobId);
    await waitForJobEnd(this.events, jobId, this.record(jobId).instance_id, waitS, o, () => {
      const rec = this.store.get(jobId);
      return rec && { status: rec.status, created_at: rec.created_at, progress: this.live.get(jobId)?.progress };
    });
    return this.view(jobId);
  }

  /**
   * Submits and follows a job on a ready box: answers once it is queued (or after waitS). When the
   * box lacks models or node packs the workflow needs, they are put there first, in the background.
   */
  async run(instanceId: string, workflow: WorkflowSpec, waitS: number, o: CallOptions, prep: Omit<PrepareSpec, 'workflow_file'> & { env: RequestEnv }): Promise<JobView> {
    await this.host.comfyUrl(instanceId, URL_WAIT_MS); // not ready, no tunnel: fail before a job exists
    const rec = await this.create(instanceId, workflow);
    let plan: Plan;
    try {
      plan = await this.host.plan(instanceId, { workflow_file: workflow.file, models: prep.models, custom_nodes: prep.custom_nodes });
      if (isEmptyPlan(plan)) await this.submit(rec.job_id);
    } catch (err) {
      // Nothing was queued: no job to show either.
      await this.store.delete(rec.job_id).catch(() => undefined);
      this.live.delete(rec.job_id);
      throw err;
    }
    void (isEmptyPlan(plan) ? this.follow(rec.job_id) : this.prepareThenRun(rec.job_id, plan, prep.env));
    return this.wait(rec.job_id, waitS, o);
  }

  /** A job of the `prepare` kind: the box gets what the spec lists; answers at once or after waitS. */
  async prepare(instanceId: string, spec: PrepareSpec, waitS: number, o: CallOptions, env: RequestEnv): Promise<JobView> {
    await this.host.comfyUrl(instanceId, URL_WAIT_MS);
    const plan = await this.host.plan(instanceId, spec);
    const rec = await this.create(instanceId, { file: spec.workflow_file ?? '', parameters: {}, output_dir: '' }, { kind: 'prepare' });
    this.live.say(rec.job_id, `${instanceId} ${describePlan(plan)}`, true);
    void this.carryOut(rec.job_id, plan, env)
      .then((r) => r && this.finish(rec.job_id, 'succeeded'), (err) => this.finish(rec.job_id, 'failed', { error: toVaiError(err).message })).catch(() => undefined);
    return this.wait(rec.job_id, waitS, o);
  }

  /** The plan's work, with the job's progress and cancel; undefined when the job ended meanwhile. */
  private async carryOut(jobId: string, plan: Plan, env: RequestEnv): Promise<PrepareResult | undefined> {
    const signal = this.live.of(jobId).abort.signal;
    const result = await this.host.carryOut(this.record(jobId).instance_id, plan, env, (m) => this.live.say(jobId, m), signal);
    return signal.aborted ? undefined : result;
  }

  private async prepareThenRun(jobId: string, plan: Plan, env: RequestEnv): Promise<void> {
    const instanceId = this.record(jobId).instance_id;
    try {
      await this.update(jobId, { status: 'preparing' });
      this.live.say(jobId, `${instanceId} ${describePlan(plan)}`, true);
      if (!(await this.carryOut(jobId, plan, env))) return;
      await this.submit(jobId);
    } catch (err) {
      await this.finish(jobId, 'failed', { error: toVaiError(err).message }).catch(() => undefined);
      return;
    }
    await this.follow(jobId);
  }

  /** Marks a job that never reached the box (a oneshot whose box failed, say) as ended. */
  async abandon(jobId: string, status: 'failed' | 'cancelled', error: string): Promise<void> {
    await this.finish(jobId, status, { error });
  }

  async setBoxDestroyed(jobId: string, ok: boolean, note?: string): Promise<void> {
    const rec = this.store.get(jobId);
    if (!rec) return;
    await this.update(jobId, { box_destroyed: ok, error: note && rec.status !== 'succeeded' ? `${rec.error ?? ''}${rec.error ? '; ' : ''}${note}` : rec.error });
    this.events.emit('change', jobId);
  }

  /** The box is gone: its unfinished jobs end. */
  async instanceGone(instanceId: string, why: string): Promise<void> {
    for (const rec of this.activeOn(instanceId)) await this.finish(rec.job_id, 'failed', { error: why }).catch(() => undefined);
  }

  // ------------------------------------------------------------ queue, cancel, extract

  private async clientOf(instanceId: string): Promise<ComfyClient> {
    return new ComfyClient(await this.host.comfyUrl(instanceId, URL_WAIT_MS));
  }

  async queue(instanceId: string): Promise<QueueView> {
    return queueOf(instanceId, await this.clientOf(instanceId), this.store);
  }

  cancel(p: CancelParams): Promise<CancelResult> {
    return cancelJobs(p, this.store, () => this.clientOf(p.instance_id), (jobId) => this.finish(jobId, 'cancelled', { error: 'cancelled before it was queued' }));
  }

  async extract(instanceId: string, outDir: string, o: CallOptions = {}, force = false): Promise<ExtractResult> {
    this.host.used(instanceId, 'use');
    try {
      return await extractOutputs(await this.clientOf(instanceId), instanceId, outDir, o, force);
    } finally {
      this.host.used(instanceId, 'use');
    }
  }

  // ------------------------------------------------------------ restore

  /** After a supervisor start: follow queued and running jobs again; a cut-short submit failed. */
  async restore(resumeWaiting: (rec: JobRecord) => void): Promise<void> {
    for (const rec of this.store.values()) {
      if (isJobDone(rec.status)) continue;
      if (!this.host.hasInstance(rec.instance_id)) {
        await this.finish(rec.job_id, 'failed', { error: `its box ${rec.instance_id} is gone` }).catch(() => undefined);
      } else if (rec.status === 'waiting') {
        resumeWaiting(rec);
      } else if (!rec.prompt_id) {
        await this.finish(rec.job_id, 'failed', { error: 'the supervisor stopped while the job was being submitted; run it again' }).catch(() => undefined);
        resumeWaiting(rec); // a oneshot still has its box to destroy
      } else {
        void this.follow(rec.job_id);
      }
    }
  }
}

/** What a job shows: its record, with its live progress while it runs. */
function jobView(rec: JobRecord, live: LiveJob | undefined): JobView {
  const done = isJobDone(rec.status);
  return {
    job_id: rec.job_id,
    instance_id: rec.instance_id,
    kind: rec.kind ?? 'workflow',
    status: rec.status,
    prompt_id: rec.prompt_id ?? null,
    workflow_file: rec.workflow.file || null,
    output_dir: rec.workflow.output_dir || null,
    progress: done ? (rec.error ?? (rec.kind === 'prepare' ? `${rec.status}: the box has what was asked for` : `${rec.status}, ${rec.outputs.length} output file(s)`)) : (live?.progress ?? null),
    node_index: done ? null : (live?.node_index ?? null),
    node_count: rec.node_count ?? null,
    percent: done ? null : (live?.percent ?? null),
    queue_position: done ? null : (live?.queue_position ?? null),
    outputs: rec.outputs,
    error: rec.error ?? null,
    created_at: rec.created_at,
    finished_at: rec.finished_at ?? null,
    destroy_box: rec.destroy_box,
    box_destroyed: rec.box_destroyed ?? null,
    cost_usd: costOf(rec),
  };
}

/** A job's running time (to its end, or now) at its box's price, to a millionth of a dollar (a job can be seconds). */
function costOf(rec: JobRecord): number | null {
  if (rec.dph_total === undefined) return null;
  const end = rec.finished_at ? Date.parse(rec.finished_at) : Date.now();
  return Math.round((rec.dph_total * Math.max(0, end - Date.parse(rec.created_at))) / 3.6) / 1_000_000;
}
