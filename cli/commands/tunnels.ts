/** `tunnel`: open, list and stop the supervised tunnels. */
import type { CAC } from 'cac';
import { badInput } from '../../core/lib/errors.js';
import { supervisor } from '../client.js';
import { note, printJson, printLine, table, tunnelsTable } from '../format.js';
import { parsePort } from './options.js';
import { MAX_PORT, MIN_PORT } from '../../core/model/limits.js';

interface TunnelOptions {
  list?: boolean;
  stop?: string | boolean;
  stopAll?: boolean;
  port?: unknown;
  resetHostKey?: boolean;
  json?: boolean;
}

/** Whether `word` comes after `--stop <id>` on the command line. */
function afterStopValue(word: string): boolean {
  const argv = process.argv.slice(2);
  const at = argv.findIndex((a) => a === '--stop' || a.startsWith('--stop='));
  const valueAt = argv[at] === '--stop' ? at + 1 : at;
  return at >= 0 && argv.indexOf(word, valueAt + 1) > valueAt;
}

function freedPorts(ports: number[]): string {
  return ports.length === 1 ? `port ${ports[0]} is free` : ports.length ? `ports ${ports.join(', ')} are free` : 'no port was held';
}

export function registerTunnelCommands(cli: CAC): void {
  cli
    .command('tunnel [instance-id] [app]', 'Open (or re-open) the tunnel of an instance, every app of it or the one named; --list, --stop <id> [app], --stop-all')
    .option('--port <port>', `Local port to use (${MIN_PORT}-${MAX_PORT}) for the app named (else ComfyUI's); taken is an error, never a silent other port`)
    .option('--reset-host-key', 'Accept a new host key for this instance (after it was rebuilt)')
    .option('--list', 'List the open tunnels, in any state')
    .option('--stop <instance-id>', 'Close the tunnel of an instance (every app, or the one named after it) and free the ports')
    .option('--stop-all', 'Close every tunnel')
    .option('--json', 'Print JSON')
    .example('vai-mcp-cli tunnel local-1 --port 9000')
    .example('vai-mcp-cli tunnel --list --json')
    .example('vai-mcp-cli tunnel local-1 portal --port 9001')
    .example('vai-mcp-cli tunnel --stop local-1')
    .example('vai-mcp-cli tunnel --stop local-1 portal')
    .action(async (id: string | undefined, appArg: string | undefined, opts: TunnelOptions) => {
      // With --stop, a word after its id names the app (`tunnel --stop local-1 portal`); one before it is a second mode.
      const stopApp = opts.stop !== undefined && id !== undefined && afterStopValue(id) ? id : undefined;
      if (stopApp !== undefined) id = undefined;
      const modes = [opts.list, opts.stop !== undefined, opts.stopAll, id !== undefined].filter(Boolean).length;
      if (modes !== 1 || (appArg !== undefined && id === undefined) || (stopApp !== undefined && appArg !== undefined)) {
        throw badInput('Use exactly one of: tunnel <instance-id> [app], --list, --stop <instance-id> [app], --stop-all.', 'Example: vai-mcp-cli tunnel --list');
      }
      if (opts.stop === true || opts.stop === '') throw badInput('--stop needs an instance id.', 'Example: vai-mcp-cli tunnel --stop local-1');
      const port = parsePort(opts.port);
      if (port !== undefined && id === undefined) throw badInput('--port goes with `tunnel <instance-id>`.');
      const client = await supervisor();

      if (opts.list) {
        const tunnels = await client.listTunnels({});
        if (opts.json) printJson(tunnels);
        else printLine(tunnels.length ? tunnelsTable(tunnels) : 'No open tunnels.');
        return;
      }
      if (opts.stop !== undefined) {
        const r = await client.stopTunnel({ instance_id: String(opts.stop), app: stopApp });
        if (opts.json) printJson(r);
        else printLine(`Closed ${stopApp ? `${stopApp} of ${r.instance_id}` : `the tunnel of ${r.instance_id}`}; ${freedPorts(r.ports_freed)}.`);
        return;
      }
      if (opts.stopAll) {
        const rs = await client.stopAllTunnels({});
        if (opts.json) printJson(rs);
        else printLine(rs.length ? table(['INSTANCE', 'FREED PORTS'], rs.map((r) => [r.instance_id, r.ports_freed.join(', ')])) + `\nTotal: ${rs.length} closed` : 'No open tunnels.');
        return;
      }
      const t = await client.openTunnel({ instance_id: String(id), app: appArg, port, reset_host_key: !!opts.resetHostKey });
      if (opts.json) printJson(t);
      else {
        const apps = Object.entries(t.apps).filter(([name]) => appArg === undefined || name === appArg || name === 'comfyui');
        for (const [name, a] of apps) printLine(`${t.instance_id}  ${a.url}  (${a.state})${apps.length > 1 || name !== 'comfyui' ? `  ${name}` : ''}`);
        if (t.state !== 'up' && t.last_error) note(`  ${t.last_error}`);
      }
    });
}
