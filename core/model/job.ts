/**
 * A workflow job's status. waiting: a oneshot job waits for its box; submitting: inputs upload
 * and the graph is queued; queued / running: on the box; downloading: outputs come to
 * output_dir; then an end state.
 */
export type JobStatus = 'waiting' | 'submitting' | 'queued' | 'running' | 'downloading' | 'succeeded' | 'failed' | 'cancelled';

/** A job that will not change any more. */
export function isJobDone(status: JobStatus): boolean {
  return status === 'succeeded' || status === 'failed' || status === 'cancelled';
}
