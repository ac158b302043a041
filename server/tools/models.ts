/** Tools for what is on a box: prepare_instance. */
import { z } from 'zod';
import { JobViewSchema } from '../../core/api/views.js';
import { loadJobSpec } from '../../core/config/config.js';
import { argPath } from '../paths.js';
import { defineTool } from '../tool.js';
import { CustomNodesArg, ModelsArg, progressOf, summarizeJob, waitS } from './workflows.js';

export const modelTools = [
  defineTool({
    name: 'prepare_instance',
    title: 'Put models and node packs on a box',
    description: [
      'Make a ready box ready for a workflow: the model files and custom node packs it lacks are downloaded and installed on the box itself (its bandwidth), with progress; ComfyUI is restarted when node packs were added, and the box is checked again.',
      'What it needs comes from workflow_file (a ComfyUI workflow: properties.models, cnr_id/aux_id, loader inputs), config_path (a config\'s instance_config.models / custom_nodes and workflow section), and models / custom_nodes.',
      'Answers with a job (kind "prepare") at once when wait_s is 0, else after waiting up to wait_s; get_job follows it. A model named without a URL anywhere is an error before anything is downloaded.',
    ].join(' '),
    input: z.strictObject({
      instance_id: z.string().min(1).describe('A ready box, e.g. "local-1".'),
      workflow_file: z.string().optional().describe('A ComfyUI workflow JSON whose models and node packs the box should have. Absolute paths are best.'),
      config_path: z.string().optional().describe('A config whose instance_config.models / custom_nodes (and workflow.file) to use. Absolute paths are best.'),
      models: ModelsArg,
      custom_nodes: CustomNodesArg,
      wait_s: waitS(30),
    }),
    output: z.object({ job: JobViewSchema, summary: z.string().describe('What happened, and what to do next') }),
    annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: true },
    async handle(args, ctx) {
      const spec = args.config_path ? loadJobSpec(argPath(ctx.cwd, args.config_path, 'config_path'), { needWorkflow: false }) : {};
      const workflow_file = args.workflow_file ? argPath(ctx.cwd, args.workflow_file, 'workflow_file') : spec.workflow?.file;
      const job = await ctx.api.prepareInstance({
        instance_id: args.instance_id,
        ...(workflow_file ? { workflow_file } : {}),
        models: [...(spec.models ?? []), ...(args.models ?? [])],
        custom_nodes: [...(spec.custom_nodes ?? []), ...(args.custom_nodes ?? [])],
        wait_s: args.wait_s,
      }, progressOf(ctx));
      return { job, summary: summarizeJob(job) };
    },
  }),
];
