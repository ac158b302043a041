/**
 * Latency of MCP tool calls through stdio against the built `vai-mcp` bin: `list_tunnels` with 1
 * and with 50 tunnels (50 simulated boxes), and `list_instances` with 50. Medians of many calls.
 */
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, expect, it } from 'vitest';
import { makeSandbox, ROOT } from '../test/helpers/cli.js';

const CALLS = Number(process.env.BENCH_CALLS ?? 100);
const sb = makeSandbox();
afterAll(async () => {
  await sb.cleanup();
});

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

async function timeCalls(client: Client, name: string): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < CALLS; i++) {
    const t0 = performance.now();
    const r = (await client.callTool({ name, arguments: {} })) as CallToolResult;
    times.push(performance.now() - t0);
    expect(r.isError).toBeFalsy();
  }
  return times;
}

it('measures list_tunnels latency through stdio with 1 and 50 tunnels', async () => {
  const transport = new StdioClientTransport({ command: process.execPath, args: [path.join(ROOT, 'dist', 'server', 'index.js')], env: sb.env as Record<string, string>, stderr: 'ignore' });
  const client = new Client({ name: 'bench', version: '0' });
  await client.connect(transport);
  const rows: string[] = [];

  await client.callTool({ name: 'create_instance', arguments: { provider: 'local', request_id: 'bench-0', wait_s: 40 } });
  await timeCalls(client, 'list_tunnels'); // warm-up
  const one = await timeCalls(client, 'list_tunnels');
  rows.push(`| list_tunnels, 1 tunnel | ${pct(one, 50).toFixed(2)} ms | ${pct(one, 90).toFixed(2)} ms | ${pct(one, 99).toFixed(2)} ms |`);

  for (let k = 1; k <= 5; k++) {
    const r = (await client.callTool({ name: 'create_instance', arguments: { provider: 'local', count: 10, request_id: `bench-${k}`, wait_s: 40 } })) as CallToolResult;
    expect(r.isError, JSON.stringify(r.content)).toBeFalsy();
  }
  const listed = (await client.callTool({ name: 'list_tunnels', arguments: {} })) as CallToolResult;
  const tunnels = (listed.structuredContent as { tunnels: { state: string }[] }).tunnels;
  expect(tunnels.length).toBe(51);
  expect(tunnels.every((t) => t.state === 'up')).toBe(true);
  const fifty = await timeCalls(client, 'list_tunnels');
  rows.push(`| list_tunnels, 51 tunnels | ${pct(fifty, 50).toFixed(2)} ms | ${pct(fifty, 90).toFixed(2)} ms | ${pct(fifty, 99).toFixed(2)} ms |`);
  const inst = await timeCalls(client, 'list_instances');
  rows.push(`| list_instances, 51 boxes | ${pct(inst, 50).toFixed(2)} ms | ${pct(inst, 90).toFixed(2)} ms | ${pct(inst, 99).toFixed(2)} ms |`);
  await transport.close();

  process.stdout.write(['', `## MCP tool latency through stdio (${CALLS} calls each, after warm-up)`, '', '| call | p50 | p90 | p99 |', '|---|---|---|---|', ...rows, ''].join('\n') + '\n');
});
