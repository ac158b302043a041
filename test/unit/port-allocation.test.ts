/**
 * Port allocation with a real state store and real listeners: taken ports are skipped on every
 * family, ports are sticky per instance, released ports are reused, explicit ports are that port
 * or an exit-2 error, and concurrent callers never share a port.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { vaiRejection } from '../helpers/errors.js';
import { checkPortRange, hasIpv6Loopback, isPortFree, PortAllocator } from '../../core/ports.js';
import { StateStore } from '../../core/state.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'vai-ports-'));
let store: StateStore;
let base: number;
const servers: net.Server[] = [];

async function occupy(port: number, host: string): Promise<void> {
  const s = net.createServer();
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.listen(port, host, () => resolve());
  });
  servers.push(s);
}

beforeAll(async () => {
  store = (await StateStore.open(dir)).store;
});
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});
afterAll(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

/**
 * A fresh allocator on a random high base whose first ports are free (below the ephemeral range,
 * 32768+, where outgoing connections take ports at random), with earlier tests' leases released.
 */
async function allocator(): Promise<PortAllocator> {
  for (const [id] of store.ports.entries()) await store.ports.delete(id);
  for (;;) {
    base = 21000 + Math.floor(Math.random() * 100) * 100;
    const free = await Promise.all(Array.from({ length: 80 }, (_, i) => isPortFree(base + i)));
    if (free.every(Boolean)) break;
  }
  return new PortAllocator(store.ports, base);
}

describe('isPortFree', () => {
  it('is false when anything listens on 127.0.0.1, 0.0.0.0 or ::1', async () => {
    await allocator();
    expect(await isPortFree(base)).toBe(true);
    await occupy(base, '127.0.0.1');
    await occupy(base + 1, '0.0.0.0');
    expect(await isPortFree(base)).toBe(false);
    expect(await isPortFree(base + 1)).toBe(false);
    if (await hasIpv6Loopback()) {
      await occupy(base + 2, '::1');
      expect(await isPortFree(base + 2)).toBe(false);
    }
  });
});

describe('PortAllocator', () => {
  it('starts at the base and skips ports held on any family', async () => {
    const ports = await allocator();
    await occupy(base, '127.0.0.1');
    await occupy(base + 1, '0.0.0.0');
    const v6 = await hasIpv6Loopback();
    if (v6) await occupy(base + 2, '::1');
    const expected = v6 ? base + 3 : base + 2;
    expect(await ports.allocate('a')).toBe(expected);
    expect(await ports.allocate('b')).toBe(expected + 1);
  });

  it('gives an instance the same port again, and a released port to the next one', async () => {
    const ports = await allocator();
    const a = await ports.allocate('a');
    const b = await ports.allocate('b');
    expect(await ports.allocate('a')).toBe(a);
    expect(ports.leaseOf('b')).toBe(b);
    await ports.release('a');
    expect(ports.leaseOf('a')).toBeUndefined();
    expect(await ports.allocate('c')).toBe(a);
  });

  it('gives exactly the requested port, or an exit-2 error: never a silent other port', async () => {
    const ports = await allocator();
    expect(await ports.allocate('a', base + 50)).toBe(base + 50);
    expect(await ports.allocate('a', base + 50)).toBe(base + 50); // its own port: fine
    const held = await vaiRejection(ports.allocate('b', base + 50));
    expect(held.exitCode).toBe(2);
    expect(held.message).toBe(`Port ${base + 50} is already used by the tunnel of a.`);
    await occupy(base + 60, '127.0.0.1');
    const taken = await vaiRejection(ports.allocate('b', base + 60));
    expect(taken.exitCode).toBe(2);
    expect(taken.message).toBe(`Port ${base + 60} is taken by another program on this machine.`);
    expect(ports.leaseOf('b')).toBeUndefined(); // nothing changed
    // Moving an instance to an explicit port replaces its lease.
    expect(await ports.allocate('a', base + 70)).toBe(base + 70);
    expect(await ports.allocate('c')).toBe(base); // base+50 is no longer leased, base is first
  });

  it('refuses ports outside 1024-65535 with exit 2', async () => {
    const ports = await allocator();
    for (const p of [0, 80, 1023, 65536, 3.5]) {
      const e = await vaiRejection(ports.allocate('a', p));
      expect(e.exitCode).toBe(2);
      expect(e.message).toBe(`Port ${p} is out of range.`);
    }
    expect(() => checkPortRange(1024)).not.toThrow();
    expect(() => checkPortRange(65535)).not.toThrow();
  });

  it('gives 50 concurrent callers 50 distinct ports', async () => {
    const ports = await allocator();
    const got = await Promise.all(Array.from({ length: 50 }, (_, i) => ports.allocate(`i${i}`)));
    expect(new Set(got).size).toBe(50);
    expect(Math.min(...got)).toBe(base);
  });

  it('keeps leases across closing and reopening the store', async () => {
    const ports = await allocator();
    const p = await ports.allocate('keep');
    await store.close();
    store = (await StateStore.open(dir)).store;
    const again = new PortAllocator(store.ports, base);
    expect(again.leaseOf('keep')).toBe(p);
    expect(await again.allocate('other')).not.toBe(p);
  });
});
