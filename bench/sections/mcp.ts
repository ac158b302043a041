/** What an agent waits for: `list_tunnels` through the built `vai-mcp` bin over stdio. */
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { ROOT } from '../../test/helpers/cli.js';
import { fmt, type Report } from '../lib/report.js';
import { percentile } from '../lib/stats.js';
import type { Vai } from '../lib/vai.js';

export async function measureMcp(report: Report, vai: Vai, calls: number): Promise<void> {
  const transport = new StdioClientTransport({ command: process.execPath, args: [path.join(ROOT, 'dist', 'server', 'index.js')], env: vai.sb.env as Record<string, string>, stderr: 'ignore' });
  const client = new Client({ name: 'vai-bench', version: '0' });
  await client.connect(transport);
  try {
    const times: number[] = [];
    let tunnels = 0;
    for (let i = 0; i < calls + 10; i++) {
      const t0 = performance.now();
      const r = (await client.callTool({ name: 'list_tunnels', arguments: {} })) as CallToolResult;
      if (r.isError) throw new Error(`list_tunnels: ${JSON.stringify(r.content)}`);
      if (i >= 10) times.push(performance.now() - t0); // the first 10 warm up
      tunnels = (r.structuredContent as { tunnels: unknown[] }).tunnels.length;
    }
    report.table({
      title: 'MCP: list_tunnels through stdio (ms)',
      columns: ['tunnels', 'calls', 'p50', 'p90', 'p99'],
      rows: [[String(tunnels), String(calls), fmt.ms(percentile(times, 50)), fmt.ms(percentile(times, 90)), fmt.ms(percentile(times, 99))]],
    });
    report.figures.mcp_list_tunnels_ms = { tunnels, p50: percentile(times, 50), p90: percentile(times, 90), p99: percentile(times, 99) };
  } finally {
    await transport.close();
  }
}
