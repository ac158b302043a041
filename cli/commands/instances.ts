/** `demo`, `create`, `list`, `destroy`: boxes and their lifecycle. */
import path from 'node:path';
import type { CAC } from 'cac';
import type { InstanceView, TunnelView } from '../../core/api/api.js';
import { loadConfigFile, parseConfig, type Config } from '../../core/config/config.js';
import { badInput, failure, toVaiError } from '../../core/lib/errors.js';
import { supervisor } from '../client.js';
import { instancesTable, note, printJson, printLine, ProgressLine } from '../format.js';
import { canAsk, confirm } from '../prompt.js';
import { printMoneyWarnings } from './money.js';
import { parseCount } from './options.js';
import { MAX_BOXES_PER_CREATE } from '../../core/model/limits.js';

/**
 * Waits for boxes to become ready (or fail), showing progress on stderr. A Ctrl-C ends the wait
 * only: the supervisor keeps provisioning, and the failsafe deadline still holds.
 */
export async function waitForReady(ids: string[], timeoutS: number): Promise<InstanceView[]> {
  const client = await supervisor();
  const progress = new ProgressLine();
  const ac = new AbortController();
  const onSigint = () => {
    progress.done();
    note('Stopped waiting. The boxes keep coming up in the background: `vai-mcp-cli list` shows them.');
    process.exit(130);
  };
  process.once('SIGINT', onSigint);
  try {
    return await client.waitForInstances({ instance_ids: ids, timeout_s: timeoutS }, { onProgress: (p) => progress.update(p.instance_id ? `${p.instance_id}: ${p.message}` : p.message), signal: ac.signal });
  } finally {
    process.off('SIGINT', onSigint);
    progress.done();
  }
}

/** Prints what a create made; exits 1 when any box is not ready. */
export function reportCreated(views: InstanceView[], json: boolean, waited: boolean): void {
  if (json) printJson(views);
  else {
    for (const v of views) {
      if (v.status === 'ready' && v.tunnel) printLine(`${v.instance_id}  ${v.tunnel.url}${otherApps(v.tunnel)}`);
      else printLine(`${v.instance_id}  ${v.status}${v.status_message ? `: ${v.status_message}` : ''}`);
    }
  }
  const bad = views.filter((v) => v.status !== 'ready');
  if (waited && bad.length > 0) {
    throw failure(`${bad.length} of ${views.length} box${views.length === 1 ? '' : 'es'} did not become ready: ${bad.map((v) => `${v.instance_id} (${v.status})`).join(', ')}.`,
      'See each box\'s message above; `vai-mcp-cli list` shows their state now.');
  }
}

async function create(config: Config, count: number, opts: { wait: boolean; json: boolean }): Promise<InstanceView[]> {
  const client = await supervisor();
  const { instances: created, notes } = await client.createInstances({ config, count });
  for (const n of notes) note(n); // the offer rented and its price, a key added to the account...
  if (!opts.wait) return created;
  // The supervisor's failsafe ends every wait; this bound only covers providers without one.
  return waitForReady(created.map((v) => v.instance_id), config.instance_config.ready_timeout_s + 15);
}

const DEMO_BOXES = 3;
const DEMO_LABEL = 'demo';

/**
 * The demo's three boxes: those of an earlier demo that are still there (their tunnels reopened on
 * their ports, a stopped one started), and new ones for the rest.
 */
async function demo(): Promise<InstanceView[]> {
  const client = await supervisor();
  const config = parseConfig({ provider: 'local' }, 'demo');
  const earlier: InstanceView[] = [];
  for (const v of await client.listInstances({})) {
    if (earlier.length === DEMO_BOXES || v.provider !== 'local' || !v.label.startsWith(`vai-mcp:${DEMO_LABEL}-`) || v.status === 'failed') continue;
    try {
      if (v.status === 'stopped') await client.startInstance({ instance_id: v.instance_id });
      else if (v.status === 'ready' && v.tunnel?.state !== 'up') await client.openTunnel({ instance_id: v.instance_id });
      earlier.push(v);
    } catch (err) {
      note(`Not reusing ${v.instance_id}: ${toVaiError(err).message}`);
    }
  }
  if (earlier.length) note(`Reused ${earlier.map((v) => v.instance_id).join(', ')} (still there from an earlier demo).`);
  const missing = DEMO_BOXES - earlier.length;
  const made = missing > 0 ? (await client.createInstances({ config, count: missing, label: DEMO_LABEL })).instances : [];
  return waitForReady([...earlier, ...made].map((v) => v.instance_id), config.instance_config.ready_timeout_s + 15);
}

export function registerInstanceCommands(cli: CAC): void {
  cli
    .command('demo', 'Three simulated ComfyUI boxes (the built-in `local` provider: no account, no money) and their URLs; run again, it reuses the demo\'s boxes that are still there')
    .option('--json', 'Print the instances as JSON')
    .example('vai-mcp-cli demo')
    .action(async (opts: { json?: boolean }) => {
      const views = await demo();
      reportCreated(views, !!opts.json, true);
      if (!opts.json) {
        printLine();
        printLine('Each URL opens its own simulated box. They keep working after this command exits.');
        printLine('  vai-mcp-cli tunnel --list          show the tunnels');
        printLine('  vai-mcp-cli destroy --all --yes    remove the boxes, their tunnels and ports');
      }
    });

  cli
    .command('create <config>', 'Create boxes from a config file, open their tunnels and print their URLs')
    .option('--count <n>', `How many boxes (1-${MAX_BOXES_PER_CREATE})`, { default: 1 })
    .option('--no-wait', 'Return as soon as the boxes are asked for, without waiting until they are ready')
    .option('--json', 'Print the instances as JSON')
    .example('vai-mcp-cli create examples/local.json --count 3')
    .action(async (file: string, opts: { count: unknown; wait: boolean; json?: boolean }) => {
      const count = parseCount(opts.count);
      const config = loadConfigFile(path.resolve(file));
      try {
        const views = await create(config, count, { wait: opts.wait !== false, json: !!opts.json });
        reportCreated(views, !!opts.json, opts.wait !== false);
      } finally {
        await printMoneyWarnings().catch(() => undefined);
      }
    });

  cli
    .command('list', 'List the instances known here: status, SSH endpoint, tunnel, price')
    .option('--json', 'Print the instances as JSON')
    .example('vai-mcp-cli list --json')
    .action(async (opts: { json?: boolean }) => {
      const views = await (await supervisor()).listInstances({}, { onProgress: (p) => note(p.message) });
      if (opts.json) printJson(views);
      else printLine(views.length ? instancesTable(views) : 'No instances. Try `vai-mcp-cli demo`.');
      await printMoneyWarnings();
    });

  cli
    .command('destroy [instance-id]', 'Close the tunnel, release the port and destroy the box (or --all)')
    .option('--all', 'Destroy every instance known here')
    .option('--yes', 'Do not ask for confirmation (needed when not run from a terminal)')
    .option('--json', 'Print the results as JSON')
    .example('vai-mcp-cli destroy local-1')
    .example('vai-mcp-cli destroy --all --yes')
    .action(async (id: string | undefined, opts: { all?: boolean; yes?: boolean; json?: boolean }) => {
      if (!id && !opts.all) throw badInput('Name the instance to destroy, or pass --all.', 'Example: vai-mcp-cli destroy local-1');
      if (id && opts.all) throw badInput('Pass an instance id or --all, not both.');
      const client = await supervisor();
      const known = await client.listInstances({});
      // --all means the boxes known here; orphans (maybe another machine's) only by their id.
      const targets = opts.all ? known.filter((v) => !v.orphan) : known.filter((v) => v.instance_id === String(id));
      if (!opts.all && targets.length === 0) {
        throw badInput(`Unknown instance id "${id}".`, 'Run `vai-mcp-cli list` to see the instances known here.', 'unknown_instance');
      }
      if (targets.length === 0) {
        if (opts.json) printJson([]);
        else printLine('No instances to destroy.');
        return;
      }
      if (!opts.yes) {
        if (!canAsk()) throw badInput('destroy needs --yes when it is not run from a terminal (nobody can confirm).', 'Add --yes to confirm.', 'needs_yes');
        const what = targets.map((t) => `${t.instance_id} (${t.provider})`).join(', ');
        if (!(await confirm(`Destroy ${what}? This closes the tunnel and ends the box.`))) {
          note('Nothing was destroyed.');
          return;
        }
      }
      const results = opts.all
        ? await client.destroyAll({})
        : [await client.destroyInstance({ instance_id: targets[0]!.instance_id })];
      if (opts.json) printJson(results);
      else for (const r of results) printLine(`${r.instance_id}  ${r.destroyed ? 'destroyed' : `NOT destroyed: ${r.message}`}`);
      const failed = results.filter((r) => !r.destroyed);
      if (failed.length) throw failure(`${failed.length} of ${results.length} could not be destroyed.`, 'Retry, and check your provider\'s console.');
    });
}

/** A box's other apps after its main URL: `  (portal http://localhost:8189)`. */
function otherApps(t: TunnelView): string {
  const others = Object.entries(t.apps).filter(([name]) => name !== 'comfyui');
  return others.length ? `  (${others.map(([name, a]) => `${name} ${a.url}`).join(', ')})` : '';
}
