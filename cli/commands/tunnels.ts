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

export function registerTunnelCommands(cli: CAC): void {
  cli
    .command('tunnel [instance-id]', 'Open (or re-open) the tunnel of an instance; --list, --stop <id>, --stop-all')
    .option('--port <port>', `Local port to use (${MIN_PORT}-${MAX_PORT}); taken is an error, never a silent other port`)
    .option('--reset-host-key', 'Accept a new host key for this instance (after it was rebuilt)')
    .option('--list', 'List the open tunnels, in any state')
    .option('--stop <instance-id>', 'Close the tunnel of an instance and free its port')
    .option('--stop-all', 'Close every tunnel')
    .option('--json', 'Print JSON')
    .example('vai-mcp-cli tunnel local-1 --port 9000')
    .example('vai-mcp-cli tunnel --list --json')
    .example('vai-mcp-cli tunnel --stop local-1')
    .action(async (id: string | undefined, opts: TunnelOptions) => {
      const modes = [opts.list, opts.stop !== undefined, opts.stopAll, id !== undefined].filter(Boolean).length;
      if (modes !== 1) {
        throw badInput('Use exactly one of: tunnel <instance-id>, --list, --stop <instance-id>, --stop-all.', 'Example: vai-mcp-cli tunnel --list');
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
        const r = await client.stopTunnel({ instance_id: String(opts.stop) });
        if (opts.json) printJson(r);
        else printLine(`Closed the tunnel of ${r.instance_id}; port ${r.local_port} is free.`);
        return;
      }
      if (opts.stopAll) {
        const rs = await client.stopAllTunnels({});
        if (opts.json) printJson(rs);
        else printLine(rs.length ? table(['INSTANCE', 'FREED PORT'], rs.map((r) => [r.instance_id, String(r.local_port)])) + `\nTotal: ${rs.length} closed` : 'No open tunnels.');
        return;
      }
      const t = await client.openTunnel({ instance_id: String(id), port, reset_host_key: !!opts.resetHostKey });
      if (opts.json) printJson(t);
      else {
        printLine(`${t.instance_id}  ${t.url}  (${t.state})`);
        if (t.state !== 'up' && t.last_error) note(`  ${t.last_error}`);
      }
    });
}
