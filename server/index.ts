#!/usr/bin/env node
/**
 * `vai-mcp`: the MCP server on stdio. Transport and shutdown only; the tools are in server.ts.
 * stdout carries nothing but MCP messages: logs go to stderr. The end of stdin or a SIGTERM ends
 * this process within a second; the tunnels stay up in the supervisor.
 */
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { SupervisorClient } from '../core/control/client.js';
import { describeError } from '../core/lib/errors.js';
import { createLogger } from '../core/lib/log.js';
import { VERSION } from '../core/lib/version.js';
import { createServer } from './server.js';

const log = createLogger('mcp');

const HELP = `vai-mcp ${VERSION}: the MCP server of vai-mcp (stdio). An MCP client starts it; it rents ComfyUI
boxes and gives each one its own http://localhost:<port> URL through a supervised SSH tunnel.

Usage: vai-mcp             serve MCP on stdin/stdout (what an MCP client runs)
       vai-mcp --help      this text
       vai-mcp --version   the version

Client config: {"mcpServers": {"vai-mcp": {"command": "npx", "args": ["-y", "vai-mcp"]}}}
Environment: VAI_HOME (state, default ~/.vai), VAI_BASE_PORT (default 8188), VAST_API_KEY,
VAST_URL, VAI_SSH_PASSPHRASE, SSH_AUTH_SOCK, VAI_MAX_INSTANCES, VAI_MAX_PRICE_PER_HOUR,
VAI_ALLOWED_ORIGINS, VAI_ALLOWED_HOSTS.
The same boxes from a terminal: vai-mcp-cli --help
`;

/** `--help` and `--version` answer and exit: they never start the server. */
function answerFlags(args: string[]): void {
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(HELP);
    process.exit(0);
  }
  if (args.includes('--version') || args.includes('-v')) {
    process.stdout.write(`${VERSION}\n`);
    process.exit(0);
  }
  if (args.length > 0) {
    process.stderr.write(`vai-mcp: unknown argument ${args[0]}. It takes none: an MCP client starts it as is (vai-mcp --help).\n`);
    process.exit(2);
  }
}

async function main(): Promise<void> {
  answerFlags(process.argv.slice(2));
  // The supervisor is started on the first tool call, not here: a host that only lists tools
  // should not start background processes.
  const client = new SupervisorClient({ onWarning: (w) => log.warn(w) });
  const server = createServer({ api: client });
  const transport = new StdioServerTransport();

  let closing = false;
  const shutdown = (why: string) => {
    if (closing) return;
    closing = true;
    log.info(`shutting down (${why}); tunnels stay up in the supervisor`);
    setTimeout(() => process.exit(0), 800).unref(); // never linger past the host's patience
    client.close();
    server.close().finally(() => process.exit(0));
  };
  process.stdin.on('end', () => shutdown('stdin ended'));
  process.stdin.on('close', () => shutdown('stdin closed'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));

  await server.connect(transport);
  log.info('vai-mcp MCP server running on stdio');
}

main().catch((err) => {
  log.error(`failed to start: ${describeError(err)}`);
  process.exit(1);
});
