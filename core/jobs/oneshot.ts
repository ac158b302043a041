/**
 * oneshot: a new box, one job on it, its outputs, and (with `destroy`) the box destroyed however
 * the job ended. It runs here, in the supervisor, so a closed terminal still ends in a destroyed
 * box; after a restart, unfinished oneshots carry on.
 */
import type { CallOptions, CreateResult, InstanceView, JobView, OneshotParams, WaitParams } from '../api/api.js';
import type { RequestEnv } from '../config/settings.js';
import { badInput, toVaiError } from '../lib/errors.js';
import { isJobDone } from '../model/job.js';
import type { Collection, InstanceRecord, JobRecord } from '../store/store.js';
import type { JobRunner } from './runner.js';

export interface OneshotHost {
  instances: Collection<InstanceRecord>;
  jobRecords: Collection<JobRecord>;
  create(p: { config: OneshotParams['config']; count: 1; request_id?: string }, o: CallOptions): Promise<CreateResult>;
  wait(p: WaitParams): Promise<InstanceView[]>;
  viewOf(id: string): InstanceView;
  destroy(id: string, env: RequestEnv, message: string): Promise<unknown>;
  envOf(id: string): RequestEnv;
}

export class Oneshots {
  constructor(
    private readonly jobs: JobRunner,
    private readonly host: OneshotHost,
  ) {}

  async run(p: OneshotParams, o: CallOptions = {}): Promise<{ instance: InstanceView; job: JobView }> {
    const workflow = p.config.workflow;
    if (!workflow) throw badInput('The config has no "workflow" section: oneshot needs one.', 'Add "workflow": {"file": "workflow_api.json", "parameters": {}, "output_dir": "./outputs"}.');
    const { instances } = await this.host.create({ config: p.config, count: 1, request_id: p.request_id }, o);
    const box = instances[0]!;
    // A repeated request_id: its job, not a second one.
    const prior = this.jobs.list(box.instance_id)[0];
    if (p.request_id && prior) return { instance: box, job: prior };
    const job = await this.jobs.create(box.instance_id, workflow, { destroyBox: p.destroy, waiting: true });
    void this.carryOut(job.job_id);
    return { instance: this.host.viewOf(box.instance_id), job: this.jobs.view(job.job_id) };
  }

  /** A oneshot's job from box to end: wait for the box, run, download, and destroy the box when asked. */
  async carryOut(jobId: string): Promise<void> {
    const job = () => this.host.jobRecords.get(jobId);
    const first = job();
    if (!first) return;
    const id = first.instance_id;
    try {
      if (!isJobDone(first.status) && this.host.instances.has(id)) {
        const [box] = await this.host.wait({ instance_ids: [id] });
        if (!isJobDone(job()?.status ?? 'failed')) {
          if (box?.status !== 'ready') {
            await this.jobs.abandon(jobId, 'failed', `its box ${id} did not become ready (${box?.status ?? 'gone'}${box?.status_message ? `: ${box.status_message}` : ''})`);
          } else {
            await this.jobs.submit(jobId).then(() => this.jobs.follow(jobId), () => undefined);
          }
        }
      }
    } catch (err) {
      await this.jobs.abandon(jobId, 'failed', toVaiError(err).message).catch(() => undefined);
    } finally {
      if (first.destroy_box) await this.destroyBox(jobId, id);
    }
  }

  private async destroyBox(jobId: string, id: string): Promise<void> {
    if (!this.host.instances.has(id)) return this.jobs.setBoxDestroyed(jobId, true);
    try {
      await this.host.destroy(id, this.host.envOf(id), `destroyed after ${jobId} (oneshot --destroy)`);
      await this.jobs.setBoxDestroyed(jobId, true);
    } catch (err) {
      await this.jobs.setBoxDestroyed(jobId, false, `the box could not be destroyed: ${toVaiError(err).message}`);
    }
  }
}
