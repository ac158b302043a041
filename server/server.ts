/**
 * createServer(): the MCP server with every vai-mcp tool registered, and no transport inside
 * (server/index.ts adds stdio; tests use an in-memory pair). Tools call core's `VaiApi`: the
 * supervisor client in the bin, the in-process supervisor in tests.
 */
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { VaiApi } from '../core/api/api.js';
import { VERSION } from '../core/lib/version.js';
import { registerTools, type ToolDef } from './tool.js';
import { instanceTools } from './tools/instances.js';
import { modelTools } from './tools/models.js';
import { moneyTools } from './tools/money.js';
import { offerTools } from './tools/offers.js';
import { tunnelTools } from './tools/tunnels.js';
import { workflowTools } from './tools/workflows.js';

export const TOOLS: ToolDef[] = [...instanceTools, ...tunnelTools, ...offerTools, ...moneyTools, ...workflowTools, ...modelTools];

export const INSTRUCTIONS = `vai-mcp creates ComfyUI boxes and gives each one its own http://localhost:<port> URL through an SSH tunnel that keeps working after this conversation ends.
Flow:
1. create_instance with a request_id (any unique string). provider "local" is a free simulator for trying things; "vast" rents real GPUs and costs money per hour: show the price first (search_offers) and say so to the user before renting; "ssh" registers a machine the user already has.
2. If boxes are not ready when it returns, call list_instances with their instance_ids and wait_s (up to 45) until they are. Never create again to "retry": repeat the same request_id if you must.
3. Give the user each ready box's tunnel.url. list_tunnels and list_instances show what runs; the user sees the same with \`vai-mcp-cli tunnel --list\`.
4. destroy_instance ends a box: ask the user first, then call it with confirm: true. close_tunnel only closes the tunnel; the box keeps running.
5. Paid boxes stop by themselves after idle_timeout_s (default 30 min) and when the user's budget is spent; a result's "warnings" says when 80% of the budget is gone: tell the user. get_budget shows the spend.
6. run_workflow runs a ComfyUI workflow on a ready box and downloads its outputs to this machine; get_job follows it (outputs as local paths, small images inline); cancel_job stops it.`;

export interface CreateServerOptions {
  api: VaiApi;
  /** Where relative paths in tool arguments resolve (the server's working directory). */
  cwd?: string;
}

export function createServer(opts: CreateServerOptions): McpServer {
  const server = new McpServer({ name: 'vai-mcp', title: 'vai-mcp: ComfyUI boxes on localhost', version: VERSION }, { instructions: INSTRUCTIONS });
  registerTools(server, TOOLS, opts.api, opts.cwd ?? process.cwd());
  return server;
}
