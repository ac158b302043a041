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
import type { CallOptions, CancelParams, CancelResult, ExtractResult, JobView, Progress, QueueView, WorkflowSpec } from '../api/api.js';
import { ComfyClient } from '../comfy/client.js';
import { ExtractManifest } from '../comfy/extract-manifest.js';
import { outputName, reserveOutputPath } from '../comfy/outputs.js';
import { downloadOutputs, followJob, submitWorkflow, type JobProgress } from '../comfy/run.js';
import type { ComfyFileRef } from '../comfy/types.js';
import { badInput, toVaiError } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import { elapsed, ProgressRelay } from '../lib/progress.js';
import type { Collection, JobRecord } from '../store/store.js';
import { isJobDone, type JobStatus } from '../model/job.js';

/** What the job runner needs from the supervisor. */
export interface JobHost {
  /** The box's ComfyUI base URL through its tunnel, once the tunnel is up; throws when it cannot be. */
  comfyUrl(instanceId: string, timeoutMs: number): Promise<string>;
  hasInstance(instanceId: string): boolean;
  nextJobId(): Promise<string>;
  log: Logger;
}

/** How long a job waits for its box's tunnel to come back before it is given up. */
const LINK_PATIENCE_MS = 120_000;
const URL_WAIT_MS = 20_000;
/** Progress lines for one job at most this often (KSampler steps can be much faster). */
const PROGRESS_EVERY_MS = 250;

interface LiveJob {
  progress: string | null;
  node_index: number | null;
  percent: number | null;
  queue_position: number | null;
  lastSentAt: number;
  /** The timer that sends the latest held-back line. */
  trailing?: NodeJS.Timeout;
  abort: AbortController;
}

function nowIso(): string {
  return new Date().toISOString();
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    t.unref();
    signal?.addEventListener('abort', () => {
      clearTimeout(t);
      resolve();
    }, { once: true });
  });
}

export class JobRunner {
  private readonly live = new Map<string, LiveJob>();
  private readonly events = new EventEmitter();

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
    const rec = this.record(jobId);
    const live = this.live.get(jobId);
    const done = isJobDone(rec.status);
    return {
      job_id: rec.job_id,
      instance_id: rec.instance_id,
      status: rec.status,
      prompt_id: rec.prompt_id ?? null,
      workflow_file: rec.workflow.file,
      output_dir: rec.workflow.output_dir,
      progress: done ? (rec.error ?? `${rec.status}, ${rec.outputs.length} output file(s)`) : (live?.progress ?? null),
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
    };
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
    const what = status === 'succeeded' ? `succeeded: ${rec.outputs.length + (patch.outputs?.length ?? 0)} file(s) in ${rec.workflow.output_dir}` : `${status}${patch.error ? `: ${patch.error}` : ''}`;
    this.say(jobId, what, true);
    this.host.log.info(`${jobId} on ${rec.instance_id} ${what}`);
    clearTimeout(this.live.get(jobId)?.trailing);
    this.live.get(jobId)?.abort.abort();
    this.live.delete(jobId);
  }

  private liveOf(jobId: string): LiveJob {
    let l = this.live.get(jobId);
    if (!l) {
      l = { progress: null, node_index: null, percent: null, queue_position: null, lastSentAt: 0, abort: new AbortController() };
      this.live.set(jobId, l);
    }
    return l;
  }

  /**
   * Records a progress line and tells waiting callers: at most one line per PROGRESS_EVERY_MS
   * (the latest one, at the end of the interval) unless `force`.
   */
  private say(jobId: string, message: string, force = false): void {
    const l = this.live.get(jobId);
    const emit = (text: string) => {
      const rec = this.store.get(jobId);
      this.events.emit('progress', { job_id: jobId, instance_id: rec?.instance_id, message: text });
    };
    if (!l) return emit(message);
    l.progress = message;
    const now = Date.now();
    if (force || now - l.lastSentAt >= PROGRESS_EVERY_MS) {
      clearTimeout(l.trailing);
      l.trailing = undefined;
      l.lastSentAt = now;
      return emit(message);
    }
    l.trailing ??= setTimeout(() => {
      l.trailing = undefined;
      l.lastSentAt = Date.now();
      if (this.live.get(jobId) === l && l.progress) emit(l.progress);
    }, PROGRESS_EVERY_MS - (now - l.lastSentAt));
    l.trailing.unref();
  }

  private onProgress(jobId: string, p: JobProgress): void {
    const l = this.liveOf(jobId);
    l.node_index = p.node_index ?? l.node_index;
    l.percent = p.percent ?? null;
    l.queue_position = p.queue_position ?? null;
    const rec = this.store.get(jobId);
    const next: JobStatus | undefined = p.phase === 'queued' ? 'queued' : p.phase === 'running' ? 'running' : p.phase === 'downloading' ? 'downloading' : undefined;
    const changed = !!rec && !!next && rec.status !== next && !isJobDone(rec.status);
    if (changed) void this.update(jobId, { status: next }).catch((err) => this.host.log.warn(`${jobId}: ${toVaiError(err).message}`));
    this.say(jobId, p.message, changed);
  }

  // ------------------------------------------------------------ running

  /** A new job record; `waiting` for a oneshot whose box is coming up, else `submitting`. */
  async create(instanceId: string, workflow: WorkflowSpec, opts: { destroyBox?: boolean; waiting?: boolean } = {}): Promise<JobRecord> {
    const rec: JobRecord = {
      job_id: await this.host.nextJobId(),
      instance_id: instanceId,
      status: opts.waiting ? 'waiting' : 'submitting',
      workflow,
      client_id: randomUUID(),
      outputs: [],
      created_at: nowIso(),
      destroy_box: !!opts.destroyBox,
    };
    await this.store.set(rec.job_id, rec);
    this.liveOf(rec.job_id);
    return rec;
  }

  /**
   * Uploads the inputs and queues the graph. Bad input (malformed workflow, missing input file,
   * unknown node) rejects before anything is queued; the job is then marked failed.
   */
  async submit(jobId: string): Promise<void> {
    const rec = this.record(jobId);
    if (rec.status === 'waiting') await this.update(jobId, { status: 'submitting' });
    try {
      const client = await this.clientOf(rec.instance_id);
      this.say(jobId, 'preparing the workflow', true);
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
    const live = this.liveOf(jobId);
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
        this.say(jobId, `waiting for ${rec.instance_id} (${e.message})`);
        await sleep(2_000, signal);
        continue;
      }
      if (signal.aborted && result.status !== 'cancelled') return;
      if (result.status !== 'succeeded') {
        return this.finish(jobId, result.status, { error: result.error ?? (result.status === 'cancelled' ? 'cancelled' : 'the job failed on the box') });
      }
      await this.update(jobId, { status: 'downloading' });
      this.say(jobId, `downloading ${result.outputs.length} output file(s)`, true);
      const files = await downloadOutputs(client, result.outputs, { outputDir: rec.workflow.output_dir, instanceId: rec.instance_id, when: new Date() });
      return this.finish(jobId, 'succeeded', { outputs: files });
    }
  }

  /** Waits until the job ends or `waitS` passes, passing its progress lines on. */
  async wait(jobId: string, waitS: number, o: CallOptions = {}): Promise<JobView> {
    if (isJobDone(this.record(jobId).status) || waitS <= 0) return this.view(jobId);
    const instanceId = this.record(jobId).instance_id;
    const relay = new ProgressRelay(o.onProgress, () => {
      const rec = this.store.get(jobId);
      if (!rec || isJobDone(rec.status)) return undefined;
      const now = this.live.get(jobId)?.progress;
      return { instance_id: instanceId, message: `${jobId}: ${rec.status} for ${elapsed(Date.now() - Date.parse(rec.created_at))}${now ? ` (${now})` : ''}` };
    });
    await new Promise<void>((resolve) => {
      const onProgress = (p: Progress & { job_id: string; instance_id: string }) => {
        if (p.job_id === jobId) relay.push({ message: `${jobId}: ${p.message}`, instance_id: p.instance_id });
      };
      const onChange = (id: string) => {
        if (id === jobId && isJobDone(this.record(jobId).status)) finish();
      };
      const timer = setTimeout(() => finish(), waitS * 1000);
      const onAbort = () => finish();
      const finish = () => {
        clearTimeout(timer);
        relay.close();
        this.events.off('progress', onProgress);
        this.events.off('change', onChange);
        o.signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      this.events.on('progress', onProgress);
      this.events.on('change', onChange);
      o.signal?.addEventListener('abort', onAbort);
      const now = this.live.get(jobId)?.progress;
      if (now) relay.push({ message: `${jobId}: ${now}`, instance_id: instanceId });
    });
    return this.view(jobId);
  }

  /** Submits and follows a job on a ready box: answers once it is queued (or after waitS). */
  async run(instanceId: string, workflow: WorkflowSpec, waitS: number, o: CallOptions = {}): Promise<JobView> {
    await this.host.comfyUrl(instanceId, URL_WAIT_MS); // not ready, no tunnel: fail before a job exists
    const rec = await this.create(instanceId, workflow);
    try {
      await this.submit(rec.job_id);
    } catch (err) {
      // Nothing was queued: no job to show either.
      await this.store.delete(rec.job_id).catch(() => undefined);
      this.live.delete(rec.job_id);
      throw err;
    }
    void this.follow(rec.job_id);
    return this.wait(rec.job_id, waitS, o);
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

  async queue(instanceId: string, client?: ComfyClient): Promise<QueueView> {
    const q = await (client ?? (await this.clientOf(instanceId))).queue();
    const ours = new Map(this.store.values().filter((r) => r.prompt_id).map((r) => [r.prompt_id!, r.job_id]));
    const row = (i: { prompt_id: string; number: number }) => ({ prompt_id: i.prompt_id, number: i.number, job_id: ours.get(i.prompt_id) ?? null });
    return { instance_id: instanceId, running: q.running.map(row), pending: q.pending.map(row) };
  }

  async cancel(p: CancelParams): Promise<CancelResult> {
    if (!p.all && !p.job_id) {
      throw badInput('Name the job to cancel, or pass all.', {
        cli: `Example: vai-mcp-cli cancel ${p.instance_id} job-3 (or --all; --list shows the queue).`,
        agent: 'Give job_id (from run_workflow), or all: true.',
      });
    }
    if (p.all && p.job_id) throw badInput('Pass a job id or all, not both.');
    const cancelled: CancelResult['cancelled'] = [];
    // A job still waiting for its box (oneshot) is not on any queue yet.
    const mine = p.job_id ? this.store.get(p.job_id) : undefined;
    if (mine && mine.instance_id !== p.instance_id) {
      throw badInput(`${p.job_id} runs on ${mine.instance_id}, not ${p.instance_id}.`, { cli: `vai-mcp-cli cancel ${mine.instance_id} ${p.job_id}`, agent: `Call cancel_job with instance_id "${mine.instance_id}" and job_id "${p.job_id}".` });
    }
    if (mine && (mine.status === 'waiting' || mine.status === 'submitting')) {
      await this.finish(mine.job_id, 'cancelled', { error: 'cancelled before it was queued' });
      return { instance_id: p.instance_id, cancelled: [{ prompt_id: '', job_id: mine.job_id, was: 'pending' }] };
    }
    if (mine && isJobDone(mine.status)) throw badInput(`${mine.job_id} has already ${mine.status === 'succeeded' ? 'finished' : mine.status}.`);
    const client = await this.clientOf(p.instance_id);
    const q = await this.queue(p.instance_id, client);
    const promptId = mine?.prompt_id ?? p.job_id;
    const pending = q.pending.filter((r) => p.all || r.prompt_id === promptId);
    const running = q.running.filter((r) => p.all || r.prompt_id === promptId);
    if (!p.all && pending.length === 0 && running.length === 0) {
      throw badInput(`${p.job_id} is not in the queue of ${p.instance_id}.`, { cli: `\`vai-mcp-cli cancel ${p.instance_id} --list\` shows the queue.`, agent: 'get_job shows where a job of ours stands.' }, 'unknown_job');
    }
    // Pending first: interrupting the running one would otherwise start the next.
    if (pending.length) await client.deleteQueued(pending.map((r) => r.prompt_id));
    for (const r of running) await client.interrupt(r.prompt_id);
    for (const r of pending) cancelled.push({ prompt_id: r.prompt_id, job_id: r.job_id, was: 'pending' });
    for (const r of running) cancelled.push({ prompt_id: r.prompt_id, job_id: r.job_id, was: 'running' });
    return { instance_id: p.instance_id, cancelled };
  }

  /**
   * Everything the box has produced (the outputs in its history and its saved workflows) that was
   * not downloaded into `outDir` before; with `force`, everything.
   */
  async extract(instanceId: string, outDir: string, o: CallOptions = {}, force = false): Promise<ExtractResult> {
    const client = await this.clientOf(instanceId);
    const when = new Date();
    const seen = new Set<string>();
    const outputs: { key: string; ref: ComfyFileRef }[] = [];
    for (const entry of Object.values(await client.history())) {
      for (const node of Object.values(entry.outputs ?? {})) {
        for (const f of node.images ?? []) {
          const key = `${f.type}/${f.subfolder ? `${f.subfolder}/` : ''}${f.filename}`;
          if (f.type !== 'output' || seen.has(key)) continue;
          seen.add(key);
          outputs.push({ key, ref: f });
        }
      }
    }
    const workflows = (await client.listUserData('workflows')).map((wf) => ({ key: `workflows/${wf}`, name: wf }));
    const manifest = new ExtractManifest(outDir);
    const newOutputs = outputs.filter((f) => force || !manifest.has(instanceId, f.key));
    const newWorkflows = workflows.filter((w) => force || !manifest.has(instanceId, w.key));
    const skipped = outputs.length - newOutputs.length + workflows.length - newWorkflows.length;
    const total = newOutputs.length + newWorkflows.length;
    o.onProgress?.({ instance_id: instanceId, message: `${newOutputs.length} output file(s) and ${newWorkflows.length} saved workflow(s) to download${skipped ? ` (${skipped} downloaded here before)` : ''}` });
    const files: string[] = [];
    for (const f of newOutputs) {
      const [dest] = await downloadOutputs(client, [f.ref], { outputDir: outDir, instanceId, when });
      manifest.add(instanceId, f.key, dest!);
      files.push(dest!);
      o.onProgress?.({ instance_id: instanceId, message: `downloaded ${files.length} of ${total}` });
    }
    for (const wf of newWorkflows) {
      const dest = reserveOutputPath(outDir, outputName(when, instanceId, wf.key));
      await client.downloadUserData(wf.key, dest);
      manifest.add(instanceId, wf.key, dest);
      files.push(dest);
      o.onProgress?.({ instance_id: instanceId, message: `downloaded ${files.length} of ${total}` });
    }
    return { instance_id: instanceId, out_dir: outDir, files, skipped };
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
