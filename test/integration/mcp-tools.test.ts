/**
 * The MCP tools in process: createServer() on an in-memory transport, over the in-process
 * supervisor (core's `Supervisor`, the same implementation the daemon runs) with the `local`
 * simulator. Every tool's happy and error path, schema validation, confirmation, idempotency,
 * progress, and the tools/list snapshot.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../core/lib/log.js';
import { Supervisor } from '../../core/supervisor/supervisor.js';
import { createServer } from '../../server/server.js';
import { canBind, httpGet, instanceIdOfPage } from '../helpers/net.js';
import { randomBasePort } from '../helpers/ports.js';

interface Tunnel {
  instance_id: string;
  local_port: number;
  url: string;
  state: string;
}
interface Instance {
  instance_id: string;
  status: string;
  status_message: string | null;
  tunnel: Tunnel | null;
}

describe('MCP tools, in process', () => {
  let dir: string;
  let sup: Supervisor;
  let client: Client;
  const basePort = randomBasePort();

  async function call(name: string, args: Record<string, unknown> = {}, onprogress?: (p: { progress: number; message?: string }) => void) {
    return (await client.callTool({ name, arguments: args }, undefined, onprogress ? { onprogress } : undefined)) as CallToolResult;
  }
  function ok<T>(r: CallToolResult): T {
    expect(r.isError, JSON.stringify(r.content)).toBeFalsy();
    // The text block carries the same JSON as structuredContent.
    expect(JSON.parse((r.content[0] as { text: string }).text)).toEqual(r.structuredContent);
    return r.structuredContent as T;
  }
  function errorText(r: CallToolResult): string {
    expect(r.isError).toBe(true);
    return (r.content[0] as { text: string }).text;
  }

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'vai-mcp-tools-'));
    sup = await Supervisor.start({ home: path.join(dir, 'home'), basePort, socketPath: path.join(dir, 'unused.sock'), log: silentLogger, env: { PATH: process.env.PATH, HOME: dir } });
    const server = createServer({ api: sup, cwd: dir });
    client = new Client({ name: 'test', version: '0' });
    const [ct, st] = InMemoryTransport.createLinkedPair();
    await Promise.all([server.connect(st), client.connect(ct)]);
  });
  afterAll(async () => {
    await client?.close();
    await sup?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('lists twelve tools with titles, annotations, described fields and output schemas (snapshot)', async () => {
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name).sort()).toEqual(['cancel_job', 'close_tunnel', 'create_instance', 'destroy_instance', 'get_budget', 'get_job', 'list_instances', 'list_tunnels', 'open_tunnel', 'prepare_instance', 'run_workflow', 'search_offers']);
    for (const t of tools) {
      expect(t.title).toBeTruthy();
      expect(t.description!.length).toBeGreaterThan(60);
      expect(t.outputSchema).toBeDefined();
      expect(t.annotations).toBeDefined();
      for (const [field, schema] of Object.entries((t.inputSchema.properties ?? {}) as Record<string, { description?: string }>)) {
        expect(schema.description, `${t.name}.${field} needs a description`).toBeTruthy();
      }
    }
    const byName = Object.fromEntries(tools.map((t) => [t.name, t]));
    expect(byName.list_tunnels!.annotations).toMatchObject({ readOnlyHint: true });
    expect(byName.list_instances!.annotations).toMatchObject({ readOnlyHint: true });
    expect(byName.search_offers!.annotations).toMatchObject({ readOnlyHint: true });
    expect(byName.destroy_instance!.annotations).toMatchObject({ destructiveHint: true, idempotentHint: true });
    expect(byName.create_instance!.annotations).toMatchObject({ destructiveHint: false });
    expect(byName.get_job!.annotations).toMatchObject({ readOnlyHint: true });
    expect(byName.get_budget!.annotations).toMatchObject({ readOnlyHint: true });
    // Every result may carry the money warnings (80% of the budget spent).
    for (const t of tools) expect((t.outputSchema!.properties as Record<string, unknown>).warnings, t.name).toBeDefined();
    expect(byName.cancel_job!.annotations).toMatchObject({ destructiveHint: true });
    expect(client.getInstructions()).toMatch(/confirm: true/);
    await expect(JSON.stringify(tools, null, 2) + '\n').toMatchFileSnapshot('./__snapshots__/tools-list.json');
  });

  it('create_instance makes ready boxes with their URLs, reporting progress in increasing order', async () => {
    const seen: { progress: number; message?: string }[] = [];
    const out = ok<{ instances: Instance[]; summary: string }>(await call('create_instance', { provider: 'local', count: 2, request_id: 'req-1', wait_s: 30 }, (p) => seen.push(p)));
    expect(out.instances.map((i) => i.status)).toEqual(['ready', 'ready']);
    for (const i of out.instances) {
      expect(i.tunnel!.url).toBe(`http://localhost:${i.tunnel!.local_port}`);
      expect(instanceIdOfPage((await httpGet(i.tunnel!.local_port)).body)).toBe(i.instance_id);
    }
    expect(out.summary).toMatch(/^2 of 2 ready\. ready: local-\d+ http:\/\/localhost:\d+, local-\d+ http:\/\/localhost:\d+\.$/);
    expect(seen.length).toBeGreaterThanOrEqual(3);
    for (let k = 1; k < seen.length; k++) expect(seen[k]!.progress).toBeGreaterThan(seen[k - 1]!.progress);
    expect(seen.map((p) => p.message).join('\n')).toMatch(/box [12]\/2 \(local-\d+\): tunnel up at http:\/\/localhost:\d+/);
  });

  it('create_instance with a repeated request_id returns the same boxes and creates none; another config under it is an error', async () => {
    const before = ok<{ instances: Instance[] }>(await call('list_instances')).instances.length;
    const again = ok<{ instances: Instance[] }>(await call('create_instance', { provider: 'local', count: 2, request_id: 'req-1' }));
    expect(again.instances.map((i) => i.instance_id)).toEqual(['local-1', 'local-2']);
    expect(ok<{ instances: Instance[] }>(await call('list_instances')).instances.length).toBe(before);
    expect(errorText(await call('create_instance', { provider: 'local', count: 3, request_id: 'req-1' }))).toMatch(/request_id "req-1" was already used with a different config/);
  });

  it('create_instance refuses bad input with a message a model can act on', async () => {
    expect(errorText(await call('create_instance', {}))).toMatch(/Nothing to create.*\n.*"provider": "local"/);
    expect(errorText(await call('create_instance', { config: { provider: 'local', instance_config: { gpu_nmae: 'x' } } }))).toMatch(/instance_config\.gpu_nmae: unknown key/);
    expect(errorText(await call('create_instance', { config: { provider: 'local' }, config_path: '/x.json' }))).toMatch(/either config or config_path/);
    expect(errorText(await call('create_instance', { config_path: 'missing.json' }))).toContain(`read as ${path.join(dir, 'missing.json')}, and no file is there`);
    // Schema validation happens before the tool runs.
    expect(errorText(await call('create_instance', { provider: 'local', count: 11 }))).toMatch(/Input validation error.*count/s);
    expect(errorText(await call('create_instance', { provider: 'aws' }))).toMatch(/Input validation error.*provider/s);
    expect(errorText(await call('create_instance', { provider: 'local', wait_s: 120 }))).toMatch(/Input validation error.*wait_s/s);
    expect(errorText(await call('create_instance', { provider: 'local', cuont: 2 }))).toMatch(/Input validation error.*cuont/s);
  });

  it('create_instance reads config_path relative to the server\'s working directory', async () => {
    writeFileSync(path.join(dir, 'box.json'), JSON.stringify({ provider: 'local' }));
    const out = ok<{ instances: Instance[] }>(await call('create_instance', { config_path: 'box.json', request_id: 'req-path' }));
    expect(out.instances[0]!.status).toBe('ready');
  });

  it('a short wait returns boxes that are not ready yet with what to do next; list_instances waits for them', async () => {
    const t0 = Date.now();
    const out = ok<{ instances: Instance[]; summary: string }>(await call('create_instance', { config: { provider: 'local', instance_config: { simulate: { start_delay_s: 3 } } }, request_id: 'slow', wait_s: 0.5 }));
    expect(Date.now() - t0).toBeLessThan(3000);
    const id = out.instances[0]!.instance_id;
    expect(out.instances[0]!.status).toBe('loading');
    expect(out.summary).toContain(`list_instances with instance_ids ["${id}"]`);
    const seen: string[] = [];
    const waited = ok<{ instances: Instance[] }>(await call('list_instances', { instance_ids: [id], wait_s: 20 }, (p) => seen.push(p.message ?? '')));
    expect(waited.instances.map((i) => [i.instance_id, i.status])).toEqual([[id, 'ready']]);
    expect(seen.join('\n')).toMatch(/box 1\/1/);
    expect(errorText(await call('list_instances', { instance_ids: ['local-999'] }))).toMatch(/Unknown instance id "local-999"/);
  });

  it('a cancelled wait ends the call only: the box keeps coming up', async () => {
    const ac = new AbortController();
    const pending = client.callTool({ name: 'create_instance', arguments: { config: { provider: 'local', instance_config: { simulate: { start_delay_s: 2 } } }, request_id: 'cancelled', wait_s: 30 } }, undefined, { signal: ac.signal });
    await new Promise((r) => setTimeout(r, 500));
    ac.abort();
    await expect(pending).rejects.toThrow();
    // The same request_id finds the box, which becomes ready without any further call.
    const found = ok<{ instances: Instance[] }>(await call('create_instance', { config: { provider: 'local', instance_config: { simulate: { start_delay_s: 2 } } }, request_id: 'cancelled', wait_s: 0 }));
    const id = found.instances[0]!.instance_id;
    const waited = ok<{ instances: Instance[] }>(await call('list_instances', { instance_ids: [id], wait_s: 20 }));
    expect(waited.instances[0]!.status).toBe('ready');
  });

  it('open_tunnel, list_tunnels and close_tunnel: ports freed and reused, explicit ports exact, errors clear', async () => {
    const tunnels = ok<{ tunnels: Tunnel[] }>(await call('list_tunnels')).tunnels;
    expect(tunnels.length).toBeGreaterThanOrEqual(2);
    expect(tunnels.every((t) => t.state === 'up')).toBe(true);
    const first = tunnels.find((t) => t.instance_id === 'local-1')!;

    const closed = ok<{ instance_id: string; local_port: number; closed: boolean }>(await call('close_tunnel', { instance_id: 'local-1' }));
    expect(closed).toEqual({ instance_id: 'local-1', local_port: first.local_port, ports_freed: [first.local_port], closed: true });
    expect(await canBind(first.local_port)).toBe(true);
    expect(errorText(await call('close_tunnel', { instance_id: 'local-1' }))).toMatch(/has no open tunnel/);

    const explicit = basePort + 77;
    const opened = ok<{ tunnel: Tunnel }>(await call('open_tunnel', { instance_id: 'local-1', local_port: explicit }));
    expect(opened.tunnel).toMatchObject({ instance_id: 'local-1', local_port: explicit, state: 'up', url: `http://localhost:${explicit}` });
    expect(instanceIdOfPage((await httpGet(explicit)).body)).toBe('local-1');
    // Idempotent: opening an open tunnel returns it as it is.
    expect(ok<{ tunnel: Tunnel }>(await call('open_tunnel', { instance_id: 'local-1' })).tunnel.local_port).toBe(explicit);

    const squatter = net.createServer();
    await new Promise<void>((r) => squatter.listen(basePort + 88, '127.0.0.1', () => r()));
    try {
      expect(errorText(await call('open_tunnel', { instance_id: 'local-2', local_port: basePort + 88 }))).toMatch(new RegExp(`Port ${basePort + 88} is taken by another program`));
    } finally {
      squatter.close();
    }
    expect(errorText(await call('open_tunnel', { instance_id: 'local-404' }))).toMatch(/Unknown instance id "local-404"/);
    expect(errorText(await call('open_tunnel', { instance_id: 'local-2', local_port: 80 }))).toMatch(/Input validation error.*local_port/s);
  });

  it('errors speak to agents: tool arguments, never CLI flags; a relative path that is not there names the absolute path tried', async () => {
    const cliWords = /vai-mcp-cli|--port|--list|--all\b/;
    const squatter = net.createServer();
    await new Promise<void>((r) => squatter.listen(basePort + 89, '127.0.0.1', () => r()));
    try {
      const taken = errorText(await call('open_tunnel', { instance_id: 'local-2', local_port: basePort + 89 }));
      expect(taken).toMatch(/Next step: Choose another local_port, or leave it out/);
      expect(taken).not.toMatch(cliWords);
    } finally {
      squatter.close();
    }
    const unknown = errorText(await call('open_tunnel', { instance_id: 'local-404' }));
    expect(unknown).toContain('Next step: Call list_instances');
    expect(unknown).not.toMatch(cliWords);
    const cancel = errorText(await call('cancel_job', { instance_id: 'local-1' }));
    expect(cancel).toContain('Give job_id (from run_workflow), or all: true.');
    expect(cancel).not.toMatch(cliWords);
    for (const [tool, args] of [['create_instance', { config_path: 'examples/local.json' }], ['run_workflow', { instance_id: 'local-1', config_path: 'examples/job.json' }]] as const) {
      const text = errorText(await call(tool, args));
      const tried = path.join(dir, args.config_path);
      expect(text).toContain(`config_path "${args.config_path}" is a relative path, read as ${tried}, and no file is there.`);
      expect(text).toContain('An MCP server starts in a folder its client chooses');
      const next = text.split('\n').find((l) => l.startsWith('Next step:'))!;
      expect(next).toBe('Next step: Pass config_path as an absolute path.');
      expect(next).not.toContain(args.config_path); // never the path that just failed
    }
  });

  it('a long wait sends progress at least every 10 s, and never the same line twice in a row', async () => {
    const at: number[] = [];
    const messages: string[] = [];
    const t0 = Date.now();
    const out = ok<{ instances: Instance[] }>(await call('create_instance', { config: { provider: 'local', instance_config: { simulate: { start_delay_s: 21 } } }, request_id: 'slow-heartbeat', wait_s: 40 }, (p) => {
      at.push(Date.now());
      messages.push(p.message ?? '');
    }));
    expect(out.instances[0]!.status).toBe('ready');
    const gaps = [t0, ...at].slice(1).map((t, k) => t - [t0, ...at][k]!);
    console.log(`create_instance of a 21 s box: ${at.length} notifications, longest gap ${Math.max(...gaps)} ms`);
    expect(Math.max(...gaps)).toBeLessThan(10_500);
    expect(messages.join('\n')).toMatch(/still coming up: local-\d+ \(loading, \d+ s\)/);
    for (let k = 1; k < messages.length; k++) expect(messages[k], `notification ${k}`).not.toBe(messages[k - 1]);
  });

  it('destroy_instance needs confirm: true; with it the tunnel closes, the port frees and the box is gone', async () => {
    const t = ok<{ tunnels: Tunnel[] }>(await call('list_tunnels')).tunnels.find((x) => x.instance_id === 'local-2')!;
    const refused = errorText(await call('destroy_instance', { instance_id: 'local-2' }));
    expect(refused).toMatch(/Not destroyed/);
    expect(refused).toMatch(/Ask the user/);
    expect(errorText(await call('destroy_instance', { instance_id: 'local-2', confirm: false }))).toMatch(/Not destroyed/);
    expect(ok<{ instances: Instance[] }>(await call('list_instances', { instance_ids: ['local-2'] })).instances[0]!.status).toBe('ready');

    const done = ok<{ instance_id: string; destroyed: boolean }>(await call('destroy_instance', { instance_id: 'local-2', confirm: true }));
    expect(done).toMatchObject({ instance_id: 'local-2', destroyed: true });
    expect(await canBind(t.local_port)).toBe(true);
    expect(ok<{ tunnels: Tunnel[] }>(await call('list_tunnels')).tunnels.map((x) => x.instance_id)).not.toContain('local-2');
    expect(errorText(await call('destroy_instance', { instance_id: 'local-2', confirm: true }))).toMatch(/Unknown instance id "local-2"/);
    // The request that made it now reports it destroyed, and rents nothing.
    const again = ok<{ instances: Instance[] }>(await call('create_instance', { provider: 'local', count: 2, request_id: 'req-1', wait_s: 0 }));
    expect(again.instances.map((i) => [i.instance_id, i.status])).toEqual([['local-1', 'ready'], ['local-2', 'destroyed']]);
  });
});
