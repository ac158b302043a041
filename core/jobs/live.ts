/**
 * What a running job is doing, in memory: its latest progress line and numbers, passed on to
 * waiting callers at most once every 250 ms (the latest line at the end of the interval), and
 * the abort of its follower.
 */
import type { EventEmitter } from 'node:events';

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
