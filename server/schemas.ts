/**
 * Output shapes of the tools: the same objects as `vai-mcp-cli tunnel --list --json` and
 * `list --json` (DESIGN.md section 2), so an agent and a person see the same thing.
 */
import { z } from 'zod';

export const TunnelSchema = z.object({
  instance_id: z.string(),
  provider: z.string(),
  local_port: z.number().describe('Local port on this machine'),
  url: z.string().describe('Open this in a browser: http://localhost:<local_port>'),
  remote_port: z.number(),
  ssh_host: z.string(),
  ssh_port: z.number(),
  ssh_user: z.string(),
  state: z.string().describe('"up" when traffic flows; connecting, reconnecting, remote_down (box app not answering yet), failed, port_conflict'),
  last_error: z.string().nullable(),
  created_at: z.string(),
  since: z.string(),
  bytes_in: z.number(),
  bytes_out: z.number(),
  connections: z.number(),
  guard: z.enum(['http', 'off']).describe('"http": requests from other web pages are refused (403) before they reach the box; "off": not HTTP, bytes pass as they come'),
  requests_refused: z.number().describe('Requests the guard refused; none of them reached the box'),
});

export const InstanceSchema = z.object({
  instance_id: z.string(),
  provider: z.string(),
  status: z.string().describe('provisioning, loading, running, ready (ComfyUI answers through the tunnel), failed, stopped, destroyed'),
  label: z.string(),
  dph_total: z.number().nullable().describe('Price in $/hour, null where the provider has none'),
  cost_so_far: z.number().nullable().describe('Estimated $ spent so far, null where the provider has no price'),
  created_at: z.string(),
  ready_at: z.string().nullable(),
  status_message: z.string().nullable(),
  ssh_host: z.string().nullable(),
  ssh_port: z.number().nullable(),
  remote_port: z.number(),
  request_id: z.string().nullable(),
  tunnel: TunnelSchema.nullable().describe('The tunnel once it is open, with its url; null before'),
  orphan: z.boolean().optional(),
});

export const InstancesOutput = z.object({
  instances: z.array(InstanceSchema),
  summary: z.string().describe('What happened, and what to do next'),
});

export const JobSchema = z.object({
  job_id: z.string(),
  instance_id: z.string(),
  status: z.string().describe('waiting (for its box), submitting, queued, running, downloading, succeeded, failed, cancelled'),
  prompt_id: z.string().nullable().describe("ComfyUI's id of the queued graph"),
  workflow_file: z.string(),
  output_dir: z.string(),
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
});
