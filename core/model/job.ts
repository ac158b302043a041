/**
 * A job's status. waiting: a oneshot job waits for its box; preparing: models and node packs the
 * box lacks are put on it (a `prepare` job ends after that); submitting: inputs upload
 * and the graph is queued; queued / running: on the box; downloading: outputs come to
 * output_dir; then an end state.
 */
export type JobStatus = 'waiting' | 'preparing' | 'submitting' | 'queued' | 'running' | 'downloading' | 'succeeded' | 'failed' | 'cancelled';

/** A job that will not change any more. */
export function isJobDone(status: JobStatus): boolean {
  return status === 'succeeded' || status === 'failed' || status === 'cancelled';
}

/** A workflow run, or a box being made ready for one (`prepare_instance`). */
export type JobKind = 'workflow' | 'prepare';
