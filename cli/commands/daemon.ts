/** `daemon status | stop` and `ssh-key`: the supervisor itself, and which key is used. */
import type { CAC } from 'cac';
import { SupervisorClient } from '../../core/control/client.js';
import { badInput } from '../../core/lib/errors.js';
import { supervisor } from '../client.js';
import { printJson, printLine } from '../format.js';

export function registerDaemonCommands(cli: CAC): void {
  cli
    .command('daemon <action>', 'Supervisor: `status` (exit 0 when one runs, 1 when none) or `stop` (a pause: tunnels come back at the next start)')
    .option('--json', 'Print JSON')
    .example('vai-mcp-cli daemon status')
    .example('vai-mcp-cli daemon stop')
    .action(async (action: string, opts: { json?: boolean }) => {
      if (action !== 'status' && action !== 'stop') throw badInput(`Unknown daemon action "${action}".`, 'Use `daemon status` or `daemon stop`.');
      if (!(await SupervisorClient.isRunning())) {
        if (action === 'status') {
          if (opts.json) printJson({ running: false });
          else printLine('No supervisor is running for this VAI_HOME. Any other command starts it.');
          process.exitCode = 1;
        } else {
          if (opts.json) printJson({ stopped: false, running: false });
          else printLine('No supervisor is running.');
        }
        return;
      }
      const client = await SupervisorClient.connect({ start: false });
      try {
        const st = await client.status({});
        if (action === 'status') {
          if (opts.json) printJson({ running: true, ...st });
          else {
            printLine(`Supervisor pid ${st.pid}, vai-mcp ${st.version}, up ${st.uptime_s} s`);
            printLine(`  home        ${st.home}`);
            printLine(`  socket      ${st.socket}`);
            printLine(`  base port   ${st.base_port}`);
            printLine(`  instances   ${st.instances}, tunnels ${st.tunnels}`);
            printLine(`  memory      ${(st.rss_bytes / 1048576).toFixed(1)} MiB RSS`);
            for (const w of st.warnings) printLine(`  warning: ${w}`);
          }
          return;
        }
        await client.stopSupervisor('vai-mcp-cli daemon stop');
        if (opts.json) printJson({ stopped: true, pid: st.pid, tunnels: st.tunnels });
        else {
          printLine(`Stopped the supervisor (pid ${st.pid}).`);
          if (st.tunnels > 0) printLine(`Its ${st.tunnels} tunnel(s) stay recorded and come back at the next start; \`vai-mcp-cli tunnel --stop-all\` closes them for good.`);
        }
      } finally {
        client.close();
      }
    });

  cli
    .command('ssh-key', 'Show which SSH key a new box would use, and whether it loads')
    .option('--key <path>', 'Check this key file instead of the default ones')
    .option('--json', 'Print JSON')
    .example('vai-mcp-cli ssh-key')
    .action(async (opts: { key?: string; json?: boolean }) => {
      const r = await (await supervisor()).sshKey({ key_path: opts.key });
      // No usable key is a failure, with or without --json (the code never depends on the format).
      if (!r.used) process.exitCode = 1;
      if (opts.json) return printJson(r);
      printLine(r.used ? `Using: ${r.used}` : `No usable key: ${r.error}`);
      for (const c of r.candidates) printLine(`  ${c.loads ? 'ok     ' : c.exists ? 'broken ' : 'missing'}  ${c.path}${c.error && c.exists ? `  (${c.error})` : ''}`);
      printLine(`  agent    ${r.agent.socket ?? 'none (SSH_AUTH_SOCK is not set)'}`);
      printLine('The `local` provider needs none of these: it uses its own key in VAI_HOME.');
    });
}
