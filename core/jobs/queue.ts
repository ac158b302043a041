/** A box's ComfyUI queue as users see it (with our job ids), and cancelling what is on it. */
import type { CancelParams, CancelResult, QueueView } from '../api/api.js';
import type { ComfyClient } from '../comfy/client.js';
import { badInput } from '../lib/errors.js';
import { isJobDone } from '../model/job.js';
import type { Collection, JobRecord } from '../store/store.js';

export async function queueOf(instanceId: string, client: ComfyClient, jobs: Collection<JobRecord>): Promise<QueueView> {
  const q = await client.queue();
  const ours = new Map(jobs.values().filter((r) => r.prompt_id).map((r) => [r.prompt_id!, r.job_id]));
  const row = (i: { prompt_id: string; number: number }) => ({ prompt_id: i.prompt_id, number: i.number, job_id: ours.get(i.prompt_id) ?? null });
  return { instance_id: instanceId, running: q.running.map(row), pending: q.pending.map(row) };
}

/**
 * Cancels a job (ours, or a ComfyUI prompt id) or, with `all`, everything on the box's queue. A
 * job of ours not queued yet (a oneshot waiting for its box) is cancelled here.
 */
export async function cancelJobs(p: CancelParams, jobs: Collection<JobRecord>, client: () => Promise<ComfyClient>, cancelBeforeQueued: (jobId: string) => Promise<void>): Promise<CancelResult> {
  if (!p.all && !p.job_id) {
    throw badInput('Name the job to cancel, or pass all.', {
      cli: `Example: vai-mcp-cli cancel ${p.instance_id} job-3 (or --all; --list shows the queue).`,
      agent: 'Give job_id (from run_workflow), or all: true.',
    });
  }
  if (p.all && p.job_id) throw badInput('Pass a job id or all, not both.');
  const cancelled: CancelResult['cancelled'] = [];
  // A job still waiting for its box (oneshot) is not on any queue yet.
  const mine = p.job_id ? jobs.get(p.job_id) : undefined;
  if (mine && mine.instance_id !== p.instance_id) {
    throw badInput(`${p.job_id} runs on ${mine.instance_id}, not ${p.instance_id}.`, { cli: `vai-mcp-cli cancel ${mine.instance_id} ${p.job_id}`, agent: `Call cancel_job with instance_id "${mine.instance_id}" and job_id "${p.job_id}".` });
  }
  if (mine && (mine.status === 'waiting' || mine.status === 'submitting')) {
    await cancelBeforeQueued(mine.job_id);
    return { instance_id: p.instance_id, cancelled: [{ prompt_id: '', job_id: mine.job_id, was: 'pending' }] };
  }
  if (mine && isJobDone(mine.status)) throw badInput(`${mine.job_id} has already ${mine.status === 'succeeded' ? 'finished' : mine.status}.`);
  const box = await client();
  const q = await queueOf(p.instance_id, box, jobs);
  const promptId = mine?.prompt_id ?? p.job_id;
  const pending = q.pending.filter((r) => p.all || r.prompt_id === promptId);
  const running = q.running.filter((r) => p.all || r.prompt_id === promptId);
  if (!p.all && pending.length === 0 && running.length === 0) {
    throw badInput(`${p.job_id} is not in the queue of ${p.instance_id}.`, { cli: `\`vai-mcp-cli cancel ${p.instance_id} --list\` shows the queue.`, agent: 'get_job shows where a job of ours stands.' }, 'unknown_job');
  }
  // Pending first: interrupting the running one would otherwise start the next.
  if (pending.length) await box.deleteQueued(pending.map((r) => r.prompt_id));
  for (const r of running) await box.interrupt(r.prompt_id);
  for (const r of pending) cancelled.push({ prompt_id: r.prompt_id, job_id: r.job_id, was: 'pending' });
  for (const r of running) cancelled.push({ prompt_id: r.prompt_id, job_id: r.job_id, was: 'running' });
  return { instance_id: p.instance_id, cancelled };
}
