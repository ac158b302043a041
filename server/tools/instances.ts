/** Tools for boxes: create_instance, list_instances, destroy_instance. */
import { z } from 'zod';
import type { InstanceView, Progress } from '../../core/api/api.js';
import { loadConfigFile, parseConfig, resolveConfigPaths, type Config } from '../../core/config/config.js';
import { badInput } from '../../core/lib/errors.js';
import { argPath } from '../paths.js';
import { InstancesOutput } from '../schemas.js';
import { defineTool, type ToolContext } from '../tool.js';
import { MAX_BOXES_PER_CREATE, MAX_TOOL_WAIT_S as MAX_WAIT_S } from '../../core/model/limits.js';
import { isSettled } from '../../core/model/instance.js';
import { PROVIDERS } from '../../core/model/provider.js';

/** No call may block longer than this (MCP hosts give up at ~60 s). */
const CALL_BUDGET_MS = 45_000;

const waitS = z
  .number()
  .min(0)
  .max(MAX_WAIT_S)
  .describe(`Seconds to wait in this call for the boxes to become ready (0-${MAX_WAIT_S}). Boxes not ready by then keep coming up in the background.`);

/** One line a model can act on: who is ready (with URLs), who is not, and what to call next. */
export function summarize(views: InstanceView[]): string {
  if (views.length === 0) return 'No instances.';
  const ready = views.filter((v) => v.status === 'ready');
  const waiting = views.filter((v) => !isSettled(v.status));
  const failed = views.filter((v) => v.status === 'failed');
  const parts: string[] = [`${ready.length} of ${views.length} ready`];
  if (ready.length) parts.push(`ready: ${ready.map((v) => `${v.instance_id} ${v.tunnel?.url ?? '(no tunnel open)'}`).join(', ')}`);
  if (failed.length) parts.push(`failed: ${failed.map((v) => `${v.instance_id} (${v.status_message ?? 'no reason given'})`).join('; ')}`);
  const gone = views.filter((v) => v.status === 'destroyed');
  if (gone.length) parts.push(`destroyed: ${gone.map((v) => v.instance_id).join(', ')}`);
  if (waiting.length) {
    parts.push(`still coming up: ${waiting.map((v) => `${v.instance_id} (${v.status}${v.status_message ? `: ${v.status_message}` : ''})`).join('; ')}`);
    parts.push(`call list_instances with instance_ids ${JSON.stringify(waiting.map((v) => v.instance_id))} and wait_s ${MAX_WAIT_S} to keep waiting; do not create them again`);
  }
  return parts.join('. ') + '.';
}

/** The config of a create_instance call: a path, an object, or just a provider. */
function configFrom(args: { config?: Record<string, unknown>; config_path?: string; provider?: string }, cwd: string): Config {
  if (args.config && args.config_path) throw badInput('Give either config or config_path, not both.');
  if (args.config_path) {
    const cfg = loadConfigFile(argPath(cwd, args.config_path, 'config_path'));
    return args.provider ? { ...cfg, provider: args.provider as Config['provider'] } : cfg;
  }
  const raw = { ...(args.config ?? {}), ...(args.provider ? { provider: args.provider } : {}) };
  if (Object.keys(raw).length === 0) {
    throw badInput('Nothing to create: give provider (e.g. "local" for the free simulator), config or config_path.', 'For a quick try: {"provider": "local", "count": 3}.');
  }
  return resolveConfigPaths(parseConfig(raw, 'config'), cwd);
}

/** Waits within the call's budget, reporting progress as "box 2/3 (local-2): tunnel up at ...". */
async function waitReady(ctx: ToolContext, ids: string[], seconds: number, started: number): Promise<InstanceView[]> {
  const budget = Math.max(0, Math.min(seconds * 1000, CALL_BUDGET_MS - (Date.now() - started)));
  const onProgress = (p: Progress) => {
    const n = p.instance_id ? ids.indexOf(p.instance_id) + 1 : 0;
    ctx.progress(n > 0 ? `box ${n}/${ids.length} (${p.instance_id}): ${p.message}` : p.message);
  };
  return ctx.api.waitForInstances({ instance_ids: ids, timeout_s: budget / 1000 }, { onProgress, signal: ctx.signal });
}

export const instanceTools = [
  defineTool({
    name: 'create_instance',
    title: 'Create ComfyUI boxes',
    description: [
      `Create 1-${MAX_BOXES_PER_CREATE} ComfyUI boxes and open an SSH tunnel to each, so each box is reachable at its own http://localhost:<port> URL on this machine.`,
      'For a free simulated box (no account, no money) pass provider "local". provider "ssh" registers a machine that already exists; provider "vast" rents real GPUs from Vast.ai and costs money per hour.',
      `The call waits up to wait_s seconds (max ${MAX_WAIT_S}) and reports progress; boxes not ready by then keep coming up in the background: then call list_instances with their instance_ids and wait_s instead of creating again.`,
      'Always pass a request_id (any unique string for this request): retrying with the same request_id returns the same boxes and never rents twice.',
      'Share each ready box\'s tunnel.url with the user. config_path is best given as an absolute path.',
    ].join(' '),
    input: z.strictObject({
      provider: z.enum(PROVIDERS).optional().describe('local (free simulator), ssh (an existing machine), or vast (rents GPUs, costs money). Overrides the config\'s provider.'),
      config: z.record(z.string(), z.unknown()).optional().describe('A config object: {"provider": ..., "instance_config": {...}}. {"provider": "local"} is enough for the simulator.'),
      config_path: z.string().optional().describe('Path of a config JSON file (absolute is best; relative paths resolve against the server\'s working directory).'),
      count: z.number().int().min(1).max(MAX_BOXES_PER_CREATE).default(1).describe(`How many boxes (1-${MAX_BOXES_PER_CREATE}).`),
      request_id: z.string().min(1).max(128).optional().describe('Idempotency key: the same request_id returns the same boxes and never creates them twice.'),
      wait_s: waitS.default(30),
    }),
    output: InstancesOutput,
    annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
    async handle(args, ctx) {
      const started = Date.now();
      const config = configFrom(args, ctx.cwd);
      const { instances: created, notes } = await ctx.api.createInstances({ config, count: args.count, request_id: args.request_id });
      ctx.progress(`created ${created.map((c) => c.instance_id).join(', ')}; waiting for ComfyUI`);
      const views = args.wait_s > 0 ? await waitReady(ctx, created.map((c) => c.instance_id), args.wait_s, started) : created;
      // What the create itself did (offer and price, a key added to the account) is worth telling.
      return { instances: views, summary: summarize(views) + (notes.length ? ` Notes: ${notes.join('; ')}.` : '') };
    },
  }),

  defineTool({
    name: 'list_instances',
    title: 'List boxes',
    description: [
      'List the boxes known here with their status, price and tunnel URL (plus vai-mcp boxes on the Vast.ai account that this machine does not know, marked orphan).',
      `With instance_ids and wait_s (max ${MAX_WAIT_S}), wait for those boxes to become ready, with progress: use this to keep waiting after create_instance returned boxes that were not ready yet.`,
    ].join(' '),
    input: z.strictObject({
      instance_ids: z.array(z.string()).optional().describe('Only these boxes (ids from create_instance).'),
      wait_s: waitS.default(0),
    }),
    output: InstancesOutput,
    annotations: { readOnlyHint: true, openWorldHint: true },
    async handle(args, ctx) {
      const started = Date.now();
      if (args.instance_ids?.length && args.wait_s > 0) {
        const views = await waitReady(ctx, args.instance_ids, args.wait_s, started);
        return { instances: views, summary: summarize(views) };
      }
      const all = await ctx.api.listInstances({}, { onProgress: (p) => ctx.progress(p.message) });
      const views = args.instance_ids?.length ? args.instance_ids.map((id) => {
        const v = all.find((x) => x.instance_id === id);
        if (!v) throw badInput(`Unknown instance id "${id}".`, 'Call list_instances without instance_ids to see the boxes known here.', 'unknown_instance');
        return v;
      }) : all;
      return { instances: views, summary: summarize(views) };
    },
  }),

  defineTool({
    name: 'destroy_instance',
    title: 'Destroy a box',
    description: [
      'Destroy a box: close its tunnel, release its local port and end the box (a rented box stops billing; an ssh box is only forgotten, never touched).',
      'This cannot be undone. Ask the user to confirm first, then call with confirm: true.',
    ].join(' '),
    input: z.strictObject({
      instance_id: z.string().min(1).describe('The box to destroy, e.g. "local-2" or "904123".'),
      confirm: z.boolean().optional().describe('Must be true, and only after the user explicitly confirmed destroying this box.'),
    }),
    output: z.object({ instance_id: z.string(), destroyed: z.boolean(), message: z.string() }),
    annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: true },
    async handle(args, ctx) {
      if (args.confirm !== true) {
        throw badInput(
          `Not destroyed: destroying ${args.instance_id} cannot be undone, so it needs confirm: true.`,
          `Ask the user whether to destroy ${args.instance_id}; only if they agree, call destroy_instance again with confirm: true.`,
          'needs_confirm',
        );
      }
      return ctx.api.destroyInstance({ instance_id: args.instance_id });
    },
  }),
];
