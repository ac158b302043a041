#!/usr/bin/env node
/**
 * `vai-mcp`: the MCP server on stdio. Transport and shutdown only; the tools are in server.ts.
 * stdout carries nothing but MCP messages: logs go to stderr. The end of stdin or a SIGTERM ends
 * this process within a second; the tunnels stay up in the supervisor.
 */
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { SupervisorClient } from '../core/control.js';
import { describeError } from '../core/errors.js';
import { createLogger } from '../core/log.js';
import { createServer } from './server.js';

const log = createLogger('mcp');

async function main(): Promise<void> {
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
