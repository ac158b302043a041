/** `stop`, `start`, `logs`: pausing and resuming a box, and reading its provider log. */
import type { CAC } from 'cac';
import { supervisor } from '../client.js';
import { note, printJson, printLine } from '../format.js';
import { reportCreated, waitForReady } from './instances.js';

/** A box's status before a stop or start, to say "already" (an unknown id is bad input here). */
async function statusOf(id: string): Promise<string | undefined> {
  const [v] = await (await supervisor()).waitForInstances({ instance_ids: [id], timeout_s: 0 });
  return v?.status;
}

export function registerLifecycleCommands(cli: CAC): void {
  cli
    .command('stop <instance-id>', 'Pause a box: its tunnel closes; a rented box still bills storage (destroy ends all charges)')
    .option('--json', 'Print the instance as JSON')
    .example('vai-mcp-cli stop 904123')
    .action(async (id: string, opts: { json?: boolean }) => {
      const client = await supervisor();
      const was = await statusOf(String(id));
      const v = await client.stopInstance({ instance_id: String(id) });
      if (opts.json) return printJson(v);
      printLine(`${v.instance_id}  ${v.status}`);
      if (was === 'stopped') note(`${v.instance_id} was already stopped.`);
      if (v.dph_total !== null) note(`A stopped box still bills storage. \`vai-mcp-cli destroy ${v.instance_id}\` ends all charges.`);
    });

  cli
    .command('start <instance-id>', 'Resume a stopped box, reopen its tunnel and wait until ComfyUI answers')
    .option('--no-wait', 'Return once it is asked to start')
    .option('--json', 'Print the instance as JSON')
    .example('vai-mcp-cli start 904123')
    .action(async (id: string, opts: { wait: boolean; json?: boolean }) => {
      const client = await supervisor();
      const was = await statusOf(String(id));
      const started = await client.startInstance({ instance_id: String(id) });
      if (was !== 'stopped') note(`${started.instance_id} was already started (${was}).`);
      if (opts.wait === false) return reportCreated([started], !!opts.json, false);
      const ready = await waitForReady([started.instance_id], 3600);
      reportCreated(ready, !!opts.json, true);
    });

  cli
    .command('logs <instance-id>', 'Print the provider\'s log of a box (provisioning, ComfyUI)')
    .option('--json', 'Print {instance_id, log} as JSON')
    .example('vai-mcp-cli logs 904123')
    .action(async (id: string, opts: { json?: boolean }) => {
      const r = await (await supervisor()).instanceLogs({ instance_id: String(id) });
      if (opts.json) return printJson(r);
      process.stdout.write(r.log.endsWith('\n') ? r.log : `${r.log}\n`);
    });
}
