/** `models`: the model files a box has; `prepare`: putting what a config needs on a box. */
import path from 'node:path';
import type { CAC } from 'cac';
import { loadJobSpec } from '../../core/config/config.js';
import { badInput } from '../../core/lib/errors.js';
import { supervisor } from '../client.js';
import { note, printJson, printLine, table } from '../format.js';
import { followJob, reportJob } from './workflows.js';

export function registerModelCommands(cli: CAC): void {
  cli
    .command('models <instance-id>', 'List the model files the box has, per folder under models/ (asked of the box\'s own ComfyUI)')
    .option('--json', 'Print {"instance_id", "folders": {folder: [files]}} as JSON')
    .example('vai-mcp-cli models local-1')
    .action(async (id: string, opts: { json?: boolean }) => {
      const view = await (await supervisor()).listModels({ instance_id: String(id) });
      if (opts.json) return printJson(view);
      const rows = Object.entries(view.folders).flatMap(([folder, files]) => files.map((f) => [folder, f]));
      if (rows.length === 0) return note(`${view.instance_id} has no model files.`);
      printLine(table(['FOLDER', 'FILE'], rows));
    });

  cli
    .command('prepare <instance-id> <config>', 'Put the models and node packs a config names (instance_config.models / custom_nodes, and what its workflow needs) on a ready box, with progress')
    .option('--json', 'Print the finished prepare job as JSON')
    .example('vai-mcp-cli prepare local-1 examples/template-job.json')
    .action(async (id: string, file: string, opts: { json?: boolean }) => {
      const spec = loadJobSpec(path.resolve(file), { needWorkflow: false });
      if (!spec.workflow && !spec.models?.length && !spec.custom_nodes?.length) {
        throw badInput(`${path.resolve(file)} names nothing to put on a box.`, 'Give it instance_config.models, instance_config.custom_nodes or a workflow section (see examples/template-job.json).');
      }
      const job = await (await supervisor()).prepareInstance({ instance_id: String(id), ...(spec.workflow ? { workflow_file: spec.workflow.file } : {}), models: spec.models, custom_nodes: spec.custom_nodes, wait_s: 0 });
      reportJob(await followJob(job), !!opts.json);
    });
}
