/**
 * What a running job is doing, in memory: its latest progress line and numbers, passed on to
 * waiting callers at most once every 250 ms (the latest line at the end of the interval), and
 * the abort of its follower; and the wait of a caller for a job to end.
 */
import type { EventEmitter } from 'node:events';
import type { CallOptions, Progress } from '../api/api.js';
import { elapsed, ProgressRelay } from '../lib/progress.js';
import { isJobDone, type JobStatus } from '../model/job.js';

/** Progress lines for one job at most this often (KSampler steps can be much faster). */
const PROGRESS_EVERY_MS = 250;

export interface LiveJob {
  progress: string | null;
  node_index: number | null;
  percent: number | null;
  queue_position: number | null;
  lastSentAt: number;
  /** The timer that sends the latest held-back line. */
  trailing?: NodeJS.Timeout;
  abort: AbortController;
}

export class LiveJobs {
  private readonly live = new Map<string, LiveJob>();

  constructor(
    /** Where `progress` ({job_id, instance_id, message}) goes. */
    private readonly events: EventEmitter,
    private readonly instanceOf: (jobId: string) => string | undefined,
  ) {}

  get(jobId: string): LiveJob | undefined {
    return this.live.get(jobId);
  }

  of(jobId: string): LiveJob {
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
  say(jobId: string, message: string, force = false): void {
    const l = this.live.get(jobId);
    const emit = (text: string) => {
      this.events.emit('progress', { job_id: jobId, instance_id: this.instanceOf(jobId), message: text });
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

  /** The job ended: its follower stops and its held-back line goes. */
  end(jobId: string): void {
    clearTimeout(this.live.get(jobId)?.trailing);
    this.live.get(jobId)?.abort.abort();
    this.live.delete(jobId);
  }

  delete(jobId: string): void {
    this.live.delete(jobId);
  }
}

/** What a waiter needs to know of its job: its status, age and latest line (undefined once gone). */
export type JobNow = () => { status: JobStatus; created_at: string; progress?: string | null } | undefined;

/**
 * Waits until the job ends (a `change` event that finds it done), `waitS` passes or the caller
 * aborts, passing its progress lines on, with an elapsed-time line when it is quiet.
 */
export function waitForJobEnd(events: EventEmitter, jobId: string, instanceId: string, waitS: number, o: CallOptions, now: JobNow): Promise<void> {
  const relay = new ProgressRelay(o.onProgress, () => {
    const j = now();
    if (!j || isJobDone(j.status)) return undefined;
    return { instance_id: instanceId, message: `${jobId}: ${j.status} for ${elapsed(Date.now() - Date.parse(j.created_at))}${j.progress ? ` (${j.progress})` : ''}` };
  });
  return new Promise<void>((resolve) => {
    const onProgress = (p: Progress & { job_id: string; instance_id: string }) => {
      if (p.job_id === jobId) relay.push({ message: `${jobId}: ${p.message}`, instance_id: p.instance_id });
    };
    const onChange = (id: string) => {
      const j = now();
      if (id === jobId && (!j || isJobDone(j.status))) finish();
    };
    const timer = setTimeout(() => finish(), waitS * 1000);
    const onAbort = () => finish();
    const finish = () => {
      clearTimeout(timer);
      relay.close();
      events.off('progress', onProgress);
      events.off('change', onChange);
      o.signal?.removeEventListener('abort', onAbort);
      resolve();
    };
    events.on('progress', onProgress);
    events.on('change', onChange);
    o.signal?.addEventListener('abort', onAbort);
    const latest = now()?.progress;
    if (latest) relay.push({ message: `${jobId}: ${latest}`, instance_id: instanceId });
  });
}
