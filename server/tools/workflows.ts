/** Tools for workflows: run_workflow, get_job, cancel_job. */
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import type { ContentBlock } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import type { JobView, WorkflowSpec } from '../../core/api/api.js';
import { loadJobSpec, loadJobWorkflow, ModelEntrySchema, resolveParameterPaths } from '../../core/config/config.js';
import { badInput } from '../../core/lib/errors.js';
import { argPath } from '../paths.js';
import { JobViewSchema } from '../../core/api/views.js';
import { defineTool, type ToolContext } from '../tool.js';
import { isJobDone } from '../../core/model/job.js';
import { MAX_TOOL_WAIT_S as MAX_WAIT_S } from '../../core/model/limits.js';

/** Images inline in get_job: small ones only, a few at most (hosts cap a result's size). */
const INLINE_MAX_BYTES = 512 * 1024;
const INLINE_MAX_IMAGES = 4;

const JobOutput = z.object({ job: JobViewSchema, summary: z.string().describe('What happened, and what to do next') });

/** One line a model can act on. */
export function summarizeJob(job: JobView): string {
  const where = `${job.job_id} on ${job.instance_id}`;
  const destroyed = job.destroy_box ? (job.box_destroyed === null ? ' The box is being destroyed.' : job.box_destroyed ? ' The box was destroyed.' : ' The box could NOT be destroyed: destroy it with destroy_instance.') : '';
  if (job.status === 'succeeded' && job.kind === 'prepare') return `${where} succeeded: the box has every model and node pack asked for; run_workflow can run on it now.`;
  if (job.status === 'succeeded') return `${where} succeeded: ${job.outputs.length} file(s) in ${job.output_dir}: ${job.outputs.join(', ')}.${destroyed}`;
  if (isJobDone(job.status)) return `${where} ${job.status}: ${job.error ?? 'no reason given'}.${destroyed}`;
  return `${where} is ${job.status}${job.progress ? ` (${job.progress})` : ''}. Call get_job with job_id "${job.job_id}" and wait_s ${MAX_WAIT_S} to keep waiting; it goes on in the background either way.`;
}

/** The workflow to run: a job config's workflow section, or a workflow file, plus overrides. */
function workflowFrom(args: { config_path?: string; workflow_file?: string; parameters?: Record<string, unknown>; output_dir?: string }, cwd: string): WorkflowSpec {
  if (!args.config_path && !args.workflow_file) {
    throw badInput('Give config_path (a job config with a "workflow" section) or workflow_file (a ComfyUI workflow JSON).', 'Absolute paths are best.');
  }
  const abs = (p: string) => path.resolve(cwd, p);
  const workflowFile = args.workflow_file === undefined ? undefined : argPath(cwd, args.workflow_file, 'workflow_file');
  const base: WorkflowSpec = args.config_path
    ? loadJobWorkflow(argPath(cwd, args.config_path, 'config_path'))
    : { file: workflowFile!, parameters: {}, output_dir: abs('outputs') };
  return {
    file: workflowFile ?? base.file,
    parameters: { ...base.parameters, ...resolveParameterPaths(args.parameters ?? {}, abs) },
    output_dir: args.output_dir ? abs(args.output_dir) : base.output_dir,
  };
}

export const ModelsArg = z.array(ModelEntrySchema).optional()
  .describe('Model files the box must have: [{"url": "https://...", "dir": "checkpoints", "name"?: "file.safetensors", "sha256"?: "..."}]; downloaded on the box when missing (HF_TOKEN / CIVITAI_TOKEN from the environment go only to their own sites).');
export const CustomNodesArg = z.array(z.string().min(1)).optional()
  .describe('Node packs the box must have: git URLs (optionally "#<ref>"), GitHub "owner/repo", or Comfy registry ids; ComfyUI is restarted after new ones are installed.');

export const waitS = (dflt: number) => z.number().min(0).max(MAX_WAIT_S).default(dflt)
  .describe(`Seconds to wait in this call for the job to end (0-${MAX_WAIT_S}), with progress. A job not done by then goes on; call get_job to keep waiting.`);

async function inlineImages(job: JobView): Promise<ContentBlock[]> {
  const blocks: ContentBlock[] = [];
  for (const file of job.outputs) {
    if (blocks.length >= INLINE_MAX_IMAGES) break;
    const mimeType = /\.png$/i.test(file) ? 'image/png' : /\.jpe?g$/i.test(file) ? 'image/jpeg' : /\.webp$/i.test(file) ? 'image/webp' : undefined;
    if (!mimeType || (await stat(file)).size > INLINE_MAX_BYTES) continue;
    blocks.push({ type: 'image', data: (await readFile(file)).toString('base64'), mimeType });
  }
  return blocks;
}

export const workflowTools = [
  defineTool({
    name: 'run_workflow',
    title: 'Run a ComfyUI workflow',
    description: [
      'Run a ComfyUI workflow on a ready box: upload its input images, fill its parameters, queue it, and download the outputs to output_dir on this machine when it ends.',
      'Returns a job_id as soon as the job is queued, after waiting up to wait_s for it to finish (with progress). A job not finished by then goes on in the background: call get_job.',
      'parameters: {"<nodeId>.<input>": value}, e.g. {"6.text": "a red fox", "3.seed": 42}; values naming .png/.jpg files are uploaded, .txt files are read. Paths are best absolute.',
      'Models and node packs the workflow needs (its properties.models, cnr_id/aux_id, loader inputs) or that models/custom_nodes (or the config) list are downloaded and installed on the box first when it lacks them; the job shows status "preparing" meanwhile.',
    ].join(' '),
    input: z.strictObject({
      instance_id: z.string().min(1).describe('A ready box, e.g. "local-1".'),
      config_path: z.string().optional().describe('A job config JSON with a "workflow" section {file, parameters, output_dir}.'),
      workflow_file: z.string().optional().describe('A ComfyUI workflow JSON (API or UI format); overrides the config\'s workflow.file.'),
      parameters: z.record(z.string(), z.unknown()).optional().describe('Parameters merged over the config\'s.'),
      output_dir: z.string().optional().describe('Where outputs are downloaded (default: the config\'s output_dir, else ./outputs).'),
      models: ModelsArg,
      custom_nodes: CustomNodesArg,
      wait_s: waitS(30),
    }),
    output: JobOutput,
    annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
    async handle(args, ctx) {
      const workflow = workflowFrom(args, ctx.cwd);
      const lists = args.config_path ? loadJobSpec(argPath(ctx.cwd, args.config_path, 'config_path')) : {};
      const models = [...(lists.models ?? []), ...(args.models ?? [])];
      const custom_nodes = [...(lists.custom_nodes ?? []), ...(args.custom_nodes ?? [])];
      const job = await ctx.api.runWorkflow({ instance_id: args.instance_id, workflow, wait_s: args.wait_s, models, custom_nodes }, progressOf(ctx));
      return { job, summary: summarizeJob(job) };
    },
    extraContent: (out) => inlineImages(out.job as JobView),
  }),

  defineTool({
    name: 'get_job',
    title: 'Get a workflow job',
    description: 'The state of a job from run_workflow: status, progress, and when it succeeded the output files as local paths (small images are also returned inline). With wait_s, waits that long for it to end.',
    input: z.strictObject({
      job_id: z.string().min(1).describe('The job, e.g. "job-3".'),
      wait_s: waitS(0),
    }),
    output: JobOutput,
    annotations: { readOnlyHint: true, openWorldHint: false },
    async handle(args, ctx) {
      const job = await ctx.api.getJob({ job_id: args.job_id, wait_s: args.wait_s }, progressOf(ctx));
      return { job, summary: summarizeJob(job) };
    },
    extraContent: (out) => inlineImages(out.job as JobView),
  }),

  defineTool({
    name: 'cancel_job',
    title: 'Cancel workflow jobs',
    description: 'Cancel a job queued or running on a box (job_id from run_workflow, or a ComfyUI prompt id), or with all: true everything on its queue.',
    input: z.strictObject({
      instance_id: z.string().min(1).describe('The box, e.g. "local-1".'),
      job_id: z.string().min(1).optional().describe('The job to cancel; leave out with all.'),
      all: z.boolean().optional().describe('Cancel the running job and every pending one.'),
    }),
    output: z.object({
      instance_id: z.string(),
      cancelled: z.array(z.object({ prompt_id: z.string(), job_id: z.string().nullable(), was: z.string() })),
    }),
    annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: true },
    async handle(args, ctx) {
      return ctx.api.cancelJobs({ instance_id: args.instance_id, job_id: args.job_id, all: args.all });
    },
  }),
];

export function progressOf(ctx: ToolContext) {
  return { onProgress: (p: { message: string }) => ctx.progress(p.message), signal: ctx.signal };
}
