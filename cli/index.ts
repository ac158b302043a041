#!/usr/bin/env node
/**
 * `vai-mcp-cli`: the terminal face of vai-mcp. Parsing and formatting only; every command calls
 * core's client API, which talks to the supervisor (started on demand).
 * Exit codes: 0 success, 1 failure, 2 bad usage or bad input.
 */
import { cac } from 'cac';
import { badInput, toVaiError } from '../core/lib/errors.js';
import { VERSION } from '../core/lib/version.js';
import { closeSupervisor } from './client.js';
import { registerDaemonCommands } from './commands/daemon.js';
import { registerInstanceCommands } from './commands/instances.js';
import { registerLifecycleCommands } from './commands/lifecycle.js';
import { registerModelCommands } from './commands/models.js';
import { registerMoneyCommands } from './commands/money.js';
import { registerOfferCommands } from './commands/offers.js';
import { registerTunnelCommands } from './commands/tunnels.js';
import { registerUiCommands } from './commands/ui.js';
import { registerWorkflowCommands } from './commands/workflows.js';
import { printError } from './format.js';
import { readableHelp } from './help.js';

const cli = cac('vai-mcp-cli');
registerInstanceCommands(cli);
registerLifecycleCommands(cli);
registerMoneyCommands(cli);
registerOfferCommands(cli);
registerTunnelCommands(cli);
registerWorkflowCommands(cli);
registerModelCommands(cli);
registerUiCommands(cli);
registerDaemonCommands(cli);
cli.usage(`<command> [options]

  Rent ComfyUI boxes and reach each one at its own http://localhost:<port> through a supervised
  SSH tunnel that outlives this command. Start with \`vai-mcp-cli demo\` (free, simulated).

  Environment: VAI_HOME (state, default ~/.vai), VAI_BASE_PORT (default 8188),
  VAI_SSH_PASSPHRASE, SSH_AUTH_SOCK, VAST_API_KEY, VAST_URL, VAI_MAX_INSTANCES, VAI_MAX_PRICE_PER_HOUR, VAI_BUDGET_USD,
  VAI_BUDGET_ACTION, HF_TOKEN and CIVITAI_TOKEN (model downloads; each sent only to its own site).`);
cli.help(readableHelp(cli));
cli.version(VERSION);

async function main(): Promise<number> {
  try {
    cli.parse(process.argv, { run: false });
    if (cli.options.help || cli.options.version) return 0;
    if (!cli.matchedCommand) {
      const name = cli.args[0];
      if (name === undefined) {
        cli.outputHelp();
        return 0;
      }
      throw badInput(`Unknown command "${name}".`, 'Run `vai-mcp-cli --help` for the list of commands.');
    }
    await cli.runMatchedCommand();
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    // cac's own errors (missing argument, unknown option) are usage errors: exit 2.
    const command = cli.matchedCommandName ?? cli.args[0];
    const e = err instanceof Error && err.name === 'CACError' ? badInput(`${err.message}.`, `Run \`vai-mcp-cli ${command ? `${command} ` : ''}--help\`.`) : toVaiError(err);
    printError(e);
    return e.exitCode;
  } finally {
    await closeSupervisor();
  }
}

main().then((code) => process.exit(code));
