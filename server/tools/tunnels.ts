/** Tools for tunnels: open_tunnel, list_tunnels, close_tunnel. */
import { z } from 'zod';
import { TunnelViewSchema } from '../../core/api/views.js';
import { MAX_PORT, MIN_PORT } from '../../core/model/limits.js';
import { defineTool } from '../tool.js';

const instanceId = z.string().min(1).describe('The box, e.g. "local-1" (from create_instance or list_instances).');
const app = z.string().min(1).optional();

export const tunnelTools = [
  defineTool({
    name: 'open_tunnel',
    title: 'Open a tunnel',
    description: 'Open (or re-open, after close_tunnel or a failure) the SSH tunnel of a running box and return its http://localhost URL, and one URL per app of the box (tunnel.apps). Without local_port the box keeps its port, or gets the next free one; with local_port, exactly that port or an error.',
    input: z.strictObject({
      instance_id: instanceId,
      app: app.describe('One app of the box by name (tunnel.apps, e.g. "portal"); leave it out for all of them. local_port then moves that app.'),
      local_port: z.number().int().min(MIN_PORT).max(MAX_PORT).optional().describe(`Local port to use (${MIN_PORT}-${MAX_PORT}). Leave it out unless the user asked for a port.`),
    }),
    output: z.object({ tunnel: TunnelViewSchema }),
    annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: true },
    async handle(args, ctx) {
      return { tunnel: await ctx.api.openTunnel({ instance_id: args.instance_id, app: args.app, port: args.local_port }) };
    },
  }),

  defineTool({
    name: 'list_tunnels',
    title: 'List tunnels',
    description: 'List the open tunnels with their http://localhost URLs and states ("up" when traffic flows). The same list the user sees with `vai-mcp-cli tunnel --list`.',
    input: z.strictObject({}),
    output: z.object({ tunnels: z.array(TunnelViewSchema) }),
    annotations: { readOnlyHint: true, openWorldHint: false },
    async handle(_args, ctx) {
      return { tunnels: await ctx.api.listTunnels({}) };
    },
  }),

  defineTool({
    name: 'close_tunnel',
    title: 'Close a tunnel',
    description: 'Close the tunnel of a box (every app, or the one named) and free its local ports. The box itself keeps running (and billing, on rented providers): use destroy_instance to end it.',
    input: z.strictObject({ instance_id: instanceId, app: app.describe('Close only this app (not "comfyui", which closes them all); leave it out for all.') }),
    output: z.object({ instance_id: z.string(), local_port: z.number(), ports_freed: z.array(z.number()).describe('Every local port freed'), closed: z.boolean() }),
    annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
    async handle(args, ctx) {
      const r = await ctx.api.stopTunnel({ instance_id: args.instance_id, app: args.app });
      return { ...r, closed: true };
    },
  }),
];
