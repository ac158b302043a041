/** `exec`, `oneshot`, `cancel`, `extract`: running ComfyUI workflows on boxes. */
import path from 'node:path';
import type { CAC } from 'cac';
import type { JobView } from '../../core/api/api.js';
import { loadConfigFile, loadJobSpec } from '../../core/config/config.js';
import { badInput, failure } from '../../core/lib/errors.js';
import { supervisor } from '../client.js';
import { jobsTable, note, printJson, printLine, ProgressLine, table } from '../format.js';
import { isJobDone } from '../../core/model/job.js';

/** Each wait on the supervisor is short, so a lost connection is noticed; the job goes on. */
const WAIT_SLICE_S = 30;

/**
 * Follows a job to its end with a progress line on stderr. Ctrl-C stops watching only: the
 * supervisor finishes the job and still downloads its outputs (and, for oneshot --destroy,
 * destroys the box).
 */
export async function followJob(job: JobView): Promise<JobView> {
  const client = await supervisor();
  const progress = new ProgressLine();
  const onSigint = () => {
    progress.done();
    note(`Stopped watching. ${job.job_id} goes on in the background; its outputs still arrive in ${job.output_dir}.`);
    note(`Cancel it with: vai-mcp-cli cancel ${job.instance_id} ${job.job_id}`);
    process.exit(130);
  };
  process.once('SIGINT', onSigint);
  try {
    let view = job;
    while (!isJobDone(view.status)) {
      view = await client.getJob({ job_id: job.job_id, wait_s: WAIT_SLICE_S }, { onProgress: (p) => progress.update(p.message) });
    }
    // A oneshot's box is destroyed right after its job ends: wait for that verdict too.
    while (view.destroy_box && view.box_destroyed === null) {
      progress.update(`${job.job_id}: destroying ${job.instance_id}`);
      await new Promise((r) => setTimeout(r, 250));
      view = await client.getJob({ job_id: job.job_id });
    }
    return view;
  } finally {
    process.off('SIGINT', onSigint);
    progress.done();
  }
}

/** Prints the outcome; exits 1 when the job did not succeed. */
export function reportJob(view: JobView, json: boolean): void {
  if (json) printJson(view);
  else {
    for (const f of view.outputs) printLine(f);
    if (view.status === 'succeeded') note(view.kind === 'prepare' ? `${view.job_id}: ${view.instance_id} has every model and node pack asked for` : `${view.job_id} on ${view.instance_id} succeeded: ${view.outputs.length} file(s) in ${view.output_dir}`);
    if (view.destroy_box) note(view.box_destroyed ? `${view.instance_id} was destroyed.` : `${view.instance_id} could NOT be destroyed: check \`vai-mcp-cli list\` and destroy it.`);
  }
  if (view.status !== 'succeeded') {
    throw failure(`${view.job_id} on ${view.instance_id} ${view.status}: ${view.error ?? 'no reason given'}`, view.status === 'failed' ? 'Check the workflow and the box (`vai-mcp-cli logs <id>`), then run it again.' : undefined);
  }
}

export function registerWorkflowCommands(cli: CAC): void {
  cli
    .command('exec <instance-id> <config>', 'Run the config\'s ComfyUI workflow on a ready box: put the models and node packs it needs on the box when it lacks them, upload inputs, queue it, show progress, download the outputs to output_dir')
    .option('--json', 'Print the finished job as JSON')
    .option('--no-wait', 'Return once the job is queued (the supervisor still downloads its outputs)')
    .example('vai-mcp-cli exec local-1 examples/job.json')
    .action(async (id: string, file: string, opts: { json?: boolean; wait: boolean }) => {
      const { workflow, models, custom_nodes } = loadJobSpec(path.resolve(file));
      const client = await supervisor();
      const job = await client.runWorkflow({ instance_id: String(id), workflow: workflow!, wait_s: 0, models, custom_nodes });
      if (opts.wait === false) {
        note(job.status === 'preparing'
          ? `${job.job_id} on ${job.instance_id}: ${job.progress ?? 'the box gets what the workflow needs first'}; \`vai-mcp-cli job ${job.job_id}\` follows it`
          : `${job.job_id} queued on ${job.instance_id} (ComfyUI prompt ${job.prompt_id}); \`vai-mcp-cli job ${job.job_id}\` follows it`);
        return opts.json ? printJson(job) : printLine(job.job_id);
      }
      reportJob(await followJob(job), !!opts.json); // its first progress line says where it was queued
    });

  cli
    .command('oneshot <config>', 'Create a box, run the config\'s workflow on it, download the outputs, and with --destroy destroy the box (also when the job fails)')
    .option('--destroy', 'Destroy the box when the job ends, however it ends (carried out by the supervisor, even if this command is stopped)')
    .option('--json', 'Print the finished job as JSON')
    .example('vai-mcp-cli oneshot examples/job.json --destroy')
    .action(async (file: string, opts: { destroy?: boolean; json?: boolean }) => {
      const config = loadConfigFile(path.resolve(file));
      if (!config.workflow) throw badInput(`${path.resolve(file)} has no "workflow" section.`, 'See examples/job.json.');
      const client = await supervisor();
      const { instance, job } = await client.oneshot({ config, destroy: !!opts.destroy });
      note(`${instance.instance_id} (${instance.provider}) is coming up; ${job.job_id} runs on it once it is ready${opts.destroy ? ', then the box is destroyed' : ''}.`);
      reportJob(await followJob(job), !!opts.json);
    });

  cli
    .command('cancel <instance-id> [job-id]', 'Cancel a job (ours, e.g. job-3, or a ComfyUI prompt id) queued or running on a box; --list shows the queue, --all empties it')
    .option('--list', 'Show the box\'s queue')
    .option('--all', 'Cancel the running job and every pending one')
    .option('--json', 'Print the result as JSON')
    .example('vai-mcp-cli cancel local-1 --list')
    .example('vai-mcp-cli cancel local-1 job-3')
    .example('vai-mcp-cli cancel local-1 --all')
    .action(async (id: string, jobId: string | undefined, opts: { list?: boolean; all?: boolean; json?: boolean }) => {
      const given = [jobId !== undefined, !!opts.list, !!opts.all].filter(Boolean).length;
      if (given !== 1) throw badInput('Pass exactly one of: a job id, --list, --all.', 'Example: vai-mcp-cli cancel local-1 --list');
      const client = await supervisor();
      if (opts.list) {
        const q = await client.listQueue({ instance_id: String(id) });
        if (opts.json) return printJson(q);
        const rows = [...q.running.map((r) => ['running', r.job_id ?? '-', r.prompt_id]), ...q.pending.map((r) => ['pending', r.job_id ?? '-', r.prompt_id])];
        return printLine(rows.length ? table(['STATE', 'JOB', 'PROMPT'], rows) : `The queue of ${q.instance_id} is empty.`);
      }
      const r = await client.cancelJobs({ instance_id: String(id), job_id: jobId === undefined ? undefined : String(jobId), all: !!opts.all });
      if (opts.json) return printJson(r);
      if (r.cancelled.length === 0) printLine(`Nothing was queued on ${r.instance_id}.`);
      for (const c of r.cancelled) printLine(`${c.job_id ?? c.prompt_id}  cancelled (was ${c.was})`);
    });

  cli
    .command('extract <instance-id>', 'Download what the box has produced (outputs and saved workflows) that this folder does not have from it yet, named <time>_<instance>_<file>')
    .option('--out <dir>', 'Folder to download into', { default: './outputs' })
    .option('--force', 'Download everything again, also what was downloaded (or deleted) before')
    .option('--json', 'Print the result as JSON')
    .example('vai-mcp-cli extract local-1 --out ./from-box')
    .action(async (id: string, opts: { out: string; force?: boolean; json?: boolean }) => {
      const client = await supervisor();
      const progress = new ProgressLine();
      try {
        const r = await client.extractOutputs({ instance_id: String(id), out_dir: path.resolve(String(opts.out)), force: !!opts.force }, { onProgress: (p) => progress.update(p.message) });
        progress.done();
        if (opts.json) return printJson(r);
        for (const f of r.files) printLine(f);
        const before = r.skipped ? `; ${r.skipped} downloaded here before were left out (--force fetches them again)` : '';
        note(`${r.files.length} file(s) from ${r.instance_id} in ${r.out_dir}${before}`);
      } finally {
        progress.done();
      }
    });

  cli
    .command('job <job-id>', 'Follow a job to its end: progress, then its output files (e.g. after `exec --no-wait`, or from another terminal)')
    .option('--json', 'Print the finished job as JSON')
    .example('vai-mcp-cli job job-3')
    .action(async (jobId: string, opts: { json?: boolean }) => {
      const view = await (await supervisor()).getJob({ job_id: String(jobId) });
      reportJob(isJobDone(view.status) ? view : await followJob(view), !!opts.json);
    });

  cli
    .command('jobs', 'List the jobs run here: box, status, progress or outcome, outputs')
    .option('--instance <instance-id>', 'Only the jobs of this box')
    .option('--json', 'Print the jobs as JSON')
    .example('vai-mcp-cli jobs --instance local-1')
    .action(async (opts: { instance?: string; json?: boolean }) => {
      const jobs = await (await supervisor()).listJobs({ instance_id: opts.instance === undefined ? undefined : String(opts.instance) });
      if (opts.json) return printJson(jobs);
      if (jobs.length === 0) return printLine(opts.instance ? `No jobs on ${opts.instance}.` : 'No jobs. Run one with `vai-mcp-cli exec <instance-id> <job.json>`.');
      printLine(jobsTable(jobs));
    });
}
