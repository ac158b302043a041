/**
 * The built `vai-mcp` bin through stdio (SDK StdioClientTransport), with a temporary VAI_HOME:
 * the "spin up three ComfyUI boxes" scenario on the `local` provider, what the CLI sees of it,
 * tunnels outliving the server, stdout carrying only JSON-RPC, and a quick shutdown.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeSandbox, ROOT, waitUntil, type Sandbox } from '../helpers/cli.js';
import { canBind, httpGet, instanceIdOfPage } from '../helpers/net.js';

const SERVER = path.join(ROOT, 'dist', 'server', 'index.js');

interface Tunnel {
  instance_id: string;
  local_port: number;
  url: string;
  state: string;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('vai-mcp over stdio', () => {
  let sb: Sandbox;

  /** A client on a fresh server process; protocol errors (e.g. a non-JSON stdout line) are collected. */
  async function connect() {
    const transport = new StdioClientTransport({ command: process.execPath, args: [SERVER], env: sb.env as Record<string, string>, stderr: 'pipe', cwd: ROOT });
    let stderr = '';
    transport.stderr?.on('data', (d) => (stderr += d));
    const client = new Client({ name: 'e2e', version: '0' });
    const errors: Error[] = [];
    client.onerror = (e) => {
      // The one known SDK race (typescript-sdk#2580): a progress notification handled after its result.
      if (!/unknown token/i.test(e.message)) errors.push(e);
    };
    await client.connect(transport);
    return { client, transport, errors, stderr: () => stderr, pid: transport.pid! };
  }

  beforeAll(() => {
    sb = makeSandbox();
  });
  afterAll(async () => {
    await sb.cleanup();
  });

  it('three concurrent create_instance calls give three URLs that outlive the server; the CLI sees the same', async () => {
    const { client, transport, errors, stderr, pid } = await connect();
    const results = (await Promise.all(
      ['a', 'b', 'c'].map((r) => client.callTool({ name: 'create_instance', arguments: { provider: 'local', request_id: `three-${r}`, wait_s: 40 } }, undefined, { onprogress: () => {} })),
    )) as CallToolResult[];
    const urls = results.map((r) => {
      expect(r.isError, JSON.stringify(r.content)).toBeFalsy();
      const inst = (r.structuredContent as { instances: { instance_id: string; status: string; tunnel: Tunnel }[] }).instances[0]!;
      expect(inst.status).toBe('ready');
      return { id: inst.instance_id, port: inst.tunnel.local_port, url: inst.tunnel.url };
    });
    expect(new Set(urls.map((u) => u.port)).size).toBe(3);
    expect(new Set(urls.map((u) => u.id)).size).toBe(3);
    for (const u of urls) {
      expect(u.url).toBe(`http://localhost:${u.port}`);
      expect(instanceIdOfPage((await httpGet(u.port)).body)).toBe(u.id);
    }

    const listed = (await client.callTool({ name: 'list_tunnels', arguments: {} })) as CallToolResult;
    const tunnels = (listed.structuredContent as { tunnels: Tunnel[] }).tunnels;
    expect(tunnels.map((t) => t.state)).toEqual(['up', 'up', 'up']);
    const cli = await sb.json<Tunnel[]>(['tunnel', '--list', '--json']);
    const pick = (ts: Tunnel[]) => ts.map((t) => ({ instance_id: t.instance_id, local_port: t.local_port, url: t.url, state: t.state }));
    expect(pick(cli)).toEqual(pick(tunnels));

    // Stdout carried only JSON-RPC; logs went to stderr.
    expect(errors).toEqual([]);
    expect(stderr()).toMatch(/MCP server running on stdio/);

    // The server goes away (the host closes it); the URLs keep working.
    await transport.close();
    await waitUntil('the server process exits', () => !alive(pid), 5000);
    for (const u of urls) expect(instanceIdOfPage((await httpGet(u.port)).body)).toBe(u.id);

    // A new server session destroys one: its port is freed.
    const second = await connect();
    const gone = urls[1]!;
    const d = (await second.client.callTool({ name: 'destroy_instance', arguments: { instance_id: gone.id, confirm: true } })) as CallToolResult;
    expect(d.isError, JSON.stringify(d.content)).toBeFalsy();
    expect(await canBind(gone.port)).toBe(true);
    const left = ((await second.client.callTool({ name: 'list_tunnels', arguments: {} })) as CallToolResult).structuredContent as { tunnels: Tunnel[] };
    expect(left.tunnels.map((t) => t.instance_id).sort()).toEqual([urls[0]!.id, urls[2]!.id].sort());
    expect(second.errors).toEqual([]);
    await second.transport.close();
  });

  it('ends within a second of stdin closing or SIGTERM, leaving the tunnels up', async () => {
    for (const how of ['stdin', 'SIGTERM'] as const) {
      const child = spawn(process.execPath, [SERVER], { env: sb.env, stdio: ['pipe', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (d) => (out += d));
      // A real request first, so the server is fully up and has talked to the supervisor.
      child.stdin.write(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '0' } } }) + '\n');
      await waitUntil('initialize answered', () => out.includes('"id":1'), 10_000);
      child.stdin.write(JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }) + '\n');
      child.stdin.write(JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'list_tunnels', arguments: {} } }) + '\n');
      await waitUntil('list_tunnels answered', () => out.includes('"id":2'), 10_000);
      const exited = new Promise<number>((resolve) => child.once('exit', () => resolve(performance.now())));
      const t0 = performance.now();
      if (how === 'stdin') child.stdin.end();
      else child.kill('SIGTERM');
      const took = (await exited) - t0;
      expect(took, `${how}: exit took ${took.toFixed(0)} ms`).toBeLessThan(1000);
      // Every stdout line was a JSON-RPC message.
      for (const line of out.split('\n').filter(Boolean)) expect(JSON.parse(line).jsonrpc).toBe('2.0');
    }
    const tunnels = await sb.json<Tunnel[]>(['tunnel', '--list', '--json']);
    expect(tunnels.length).toBe(2);
    expect(tunnels.every((t) => t.state === 'up')).toBe(true);
  });
});
