/**
 * Port allocation under concurrency, through core's client API (the socket face of `VaiApi`,
 * against the built supervisor): 50 parallel open-tunnel calls get 50 distinct ports, and every
 * listener of the supervisor is on loopback (DESIGN.md invariants 1 and 2).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SupervisorClient } from '../../core/control/client.js';
import { makeSandbox, type Sandbox } from '../helpers/cli.js';
import { isLoopback, listeningAddresses } from '../helpers/sockets.js';

describe('concurrency through the client API', () => {
  let sb: Sandbox;
  let clients: SupervisorClient[] = [];

  beforeAll(() => {
    sb = makeSandbox();
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    await sb.cleanup();
  });

  it('50 parallel open-tunnel calls from 5 clients: 50 distinct ports, all up, all on loopback', async () => {
    clients = await Promise.all(Array.from({ length: 5 }, () => SupervisorClient.connect({ env: sb.env })));
    // 50 simulated boxes, each its own SSH server and app.
    const made = (await Promise.all(clients.map((c) => c.createInstances({ config: { provider: 'local' } as never, count: 10 })))).flatMap((r) => r.instances);
    expect(made).toHaveLength(50);
    const ids = made.map((m) => m.instance_id);
    expect(new Set(ids).size).toBe(50);
    const ready = await clients[0]!.waitForInstances({ instance_ids: ids, timeout_s: 60 });
    expect(ready.filter((r) => r.status !== 'ready')).toEqual([]);

    // Close every tunnel, then open all 50 at the same moment.
    await clients[0]!.stopAllTunnels({});
    expect(await clients[0]!.listTunnels({})).toEqual([]);
    const t0 = Date.now();
    const opened = await Promise.all(ids.map((id, i) => clients[i % clients.length]!.openTunnel({ instance_id: id })));
    console.log(`50 concurrent openTunnel calls: all answered in ${Date.now() - t0} ms`);
    const ports = opened.map((t) => t.local_port);
    expect(new Set(ports).size).toBe(50);
    expect(opened.every((t) => t.state === 'up')).toBe(true);
    expect(Math.min(...ports)).toBe(sb.basePort);

    const [pid] = sb.supervisorPids();
    const listening = listeningAddresses(pid!);
    expect(listening.length).toBeGreaterThanOrEqual(50);
    expect(listening.filter((a) => !isLoopback(a))).toEqual([]);
    for (const port of ports) expect(listening).toContain(`127.0.0.1:${port}`);
    const status = await clients[0]!.status({});
    console.log(`supervisor with 50 local boxes and 50 tunnels: RSS ${(status.rss_bytes / 1048576).toFixed(1)} MiB`);
  });
});
