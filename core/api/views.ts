/**
 * The objects both faces show: one zod schema each, its TypeScript type inferred from it. The
 * CLI prints them with `--json` and the MCP tools return them (their output schemas are these),
 * so an agent and a person see the same thing.
 */
import { z } from 'zod';
import type { InstanceViewStatus } from '../model/instance.js';
import type { JobKind, JobStatus } from '../model/job.js';
import type { ProviderName } from '../model/provider.js';
import { TUNNEL_STATES } from '../model/tunnel.js';

/**
 * A string in the schema (as the tools have always published it), typed as its known values in
 * the code that builds the objects.
 */
function known<T extends string>(description?: string): z.ZodType<T> {
  const s = z.string();
  return (description ? s.describe(description) : s) as unknown as z.ZodType<T>;
}

export const TunnelViewSchema = z.object({
  instance_id: z.string(),
  provider: known<ProviderName>(),
  local_port: z.number().describe('Local port on this machine'),
  url: z.string().describe('Open this in a browser: http://localhost:<local_port>'),
  remote_port: z.number(),
  ssh_host: z.string(),
  ssh_port: z.number(),
  ssh_user: z.string(),
  state: z
    .enum([...TUNNEL_STATES, 'closed'])
    .describe('"up" when traffic flows; connecting, reconnecting, remote_down (box app not answering yet), failed, port_conflict, stopped, closed (its box stopped or went away: last_error says which)'),
  last_error: z.string().nullable(),
  created_at: z.string(),
  since: z.string(),
  bytes_in: z.number(),
  bytes_out: z.number(),
  connections: z.number(),
  guard: z.enum(['http', 'off']).describe('"http": requests from other web pages are refused (403) before they reach the box; "off": not HTTP, bytes pass as they come'),
  requests_refused: z.number().describe('Requests the guard refused; none of them reached the box (all its apps)'),
  apps: z.record(z.string(), z.object({
    local_port: z.number(),
    url: z.string(),
    state: z.enum([...TUNNEL_STATES, 'closed']),
    remote_port: z.number(),
  })).describe('Every app of the box by name (instance_config.ports), each with its own local port; "comfyui" is the main one (url above). Traffic and refusals above count them all'),
});
export type TunnelView = z.infer<typeof TunnelViewSchema>;

export const InstanceViewSchema = z.object({
  instance_id: z.string(),
  provider: known<ProviderName>(),
  status: known<InstanceViewStatus>('provisioning, loading, running, ready (ComfyUI answers through the tunnel), failed, stopped, destroyed'),
  label: z.string(),
  dph_total: z.number().nullable().describe('Price in $/hour, null where the provider has none'),
  cost_so_far: z.number().nullable().describe('$ spent on it so far (its price while it runs, its storage while stopped), null where the provider has no price'),
  idle_s: z.number().nullable().describe('Seconds nobody has used it (no request through its tunnel, no job, empty ComfyUI queue); null when busy or not watched'),
  idle_action_at: z.string().nullable().describe('When its idle action (instance_config.idle_action) is due, ISO; null when none is'),
  created_at: z.string(),
  ready_at: z.string().nullable(),
  status_message: z.string().nullable(),
  ssh_host: z.string().nullable(),
  ssh_port: z.number().nullable(),
  remote_port: z.number(),
  request_id: z.string().nullable(),
  tunnel: TunnelViewSchema.nullable().describe('The tunnel once it is open, with its url; null before'),
  orphan: z.boolean().optional(),
});
export type InstanceView = z.infer<typeof InstanceViewSchema>;

export const JobViewSchema = z.object({
  job_id: z.string(),
  instance_id: z.string(),
  kind: known<JobKind>('workflow (a run) or prepare (models and node packs put on the box)'),
  status: known<JobStatus>('waiting (for its box), preparing (models and node packs go on the box), submitting, queued, running, downloading, succeeded, failed, cancelled'),
  prompt_id: z.string().nullable().describe("ComfyUI's id of the queued graph"),
  workflow_file: z.string().nullable().describe('null for a prepare job without a workflow'),
  output_dir: z.string().nullable().describe('null for a prepare job'),
  progress: z.string().nullable().describe('The latest progress line, e.g. "node 5 of 7: KSampler (node 3) 35%"'),
  node_index: z.number().nullable(),
  node_count: z.number().nullable(),
  percent: z.number().nullable(),
  queue_position: z.number().nullable(),
  outputs: z.array(z.string()).describe('Absolute paths of the downloaded output files on this machine'),
  error: z.string().nullable(),
  created_at: z.string(),
  finished_at: z.string().nullable(),
  destroy_box: z.boolean(),
  box_destroyed: z.boolean().nullable(),
  cost_usd: z.number().nullable().describe('Its running time times its box\'s price ($), null where the box has no price'),
});
export type JobView = z.infer<typeof JobViewSchema>;

export const OfferViewSchema = z.object({
  offer_id: z.number(),
  gpu_name: z.string(),
  num_gpus: z.number(),
  gpu_ram_gb: z.number().nullable(),
  dph_total: z.number().describe('$/hour billed, storage included'),
  inet_down_cost: z.number().nullable(),
  inet_down_mbps: z.number().nullable(),
  inet_up_mbps: z.number().nullable(),
  reliability: z.number().nullable(),
  geolocation: z.string().nullable(),
  disk_space_gb: z.number().nullable(),
  direct_ssh: z.boolean(),
});
export type OfferView = z.infer<typeof OfferViewSchema>;

export const BudgetViewSchema = z.object({
  limit_usd: z.number().nullable().describe('The most the paid boxes may cost, counted from counted_from; null: no budget'),
  spent_usd: z.number().describe('What the paid boxes cost since counted_from: price while running, storage while stopped'),
  remaining_usd: z.number().nullable(),
  percent_spent: z.number().nullable(),
  counted_from: z.string(),
  action: z.enum(['stop', 'destroy']).describe('What happens to every live paid box when the spend reaches the limit'),
  burn_usd_per_hour: z.number().describe('What the paid boxes bill now, $/h'),
  runs_out_at: z.string().nullable().describe('When the budget is spent at the current burn rate, ISO'),
  credit_usd: z.number().nullable().describe("The Vast.ai account's credit, null when unknown"),
  credit_error: z.string().nullable(),
  paid_boxes: z.array(z.object({
    instance_id: z.string(),
    billing: z.enum(['running', 'stopped']),
    usd_per_hour: z.number(),
    spent_usd: z.number(),
  })),
  warnings: z.array(z.string()),
});
export type BudgetView = z.infer<typeof BudgetViewSchema>;
