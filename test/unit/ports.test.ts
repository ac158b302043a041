/**
 * core/ports.ts with a real StateStore and real listening sockets (DESIGN.md invariants 2 and 3,
 * section 4 "Ports"): a port held on 127.0.0.1, 0.0.0.0 or ::1 is never handed out; an instance
 * keeps its port; a released port goes to the next caller; an explicit port is that port or an
 * exit-2 error, never a silent other port; concurrent callers never share a port; leases persist.
 *
 * Every test works on a random window of the suite's sandbox ports (VAI_TEST_PORT_BASE, see
 * test/helpers/ports.ts) that it first checks to be free, so it never touches the ports real
 * users' tunnels use (8188 and up).
 */
import { chmodSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { VaiError } from '../../core/lib/errors.js';
import { MAX_PORT, MIN_PORT } from '../../core/model/limits.js';
import { checkPortRange, isPortFree, PortAllocator } from '../../core/tunnels/ports.js';
import { StateStore } from '../../core/store/store.js';
import { randomBasePort, testPortBase } from '../helpers/ports.js';

const WINDOW = 80;

let home: string;
let store: StateStore;
let base: number;
let ipv6 = false;
const listeners: net.Server[] = [];

/** Whether this machine can listen on ::1, found out independently of the module under test. */
function canListenOn(host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(0, host, () => s.close(() => resolve(true)));
  });
}

/** Holds a port the way another program would: a real listener on that address. */
async function occupy(port: number, host: string): Promise<net.Server> {
  const s = net.createServer((c) => c.destroy());
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.listen({ port, host }, () => resolve());
  });
  listeners.push(s);
  return s;
}

function closeServer(s: net.Server): Promise<void> {
  return new Promise((resolve) => s.close(() => resolve()));
}

/** A random sandbox base port whose next WINDOW ports are all free right now (IPv4 and ::1). */
async function freeWindow(): Promise<number> {
  for (let tries = 0; tries < 50; tries++) {
    const b = randomBasePort();
    const free = await Promise.all(Array.from({ length: WINDOW }, async (_, i) =>
      (await canListenOn0(b + i)) && (!ipv6 || (await canListenOnPort(b + i, '::1')))));
    if (free.every(Boolean)) return b;
  }
  throw new Error(`no free window of ${WINDOW} ports found from ${testPortBase()}`);
}

function canListenOnPort(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen({ port, host, exclusive: true }, () => s.close(() => resolve(true)));
  });
}

/** Binds 0.0.0.0:port and lets go (a wildcard bind fails when anything holds the port on IPv4). */
function canListenOn0(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen({ port, host: '0.0.0.0', exclusive: true }, () => s.close(() => resolve(true)));
  });
}

async function rejection(p: Promise<unknown>): Promise<VaiError> {
  let thrown: unknown;
  try {
    await p;
  } catch (err) {
    thrown = err;
  }
  if (thrown === undefined) throw new Error('expected a rejection with a VaiError, but the call succeeded');
  expect(thrown).toBeInstanceOf(VaiError);
  return thrown as VaiError;
}

beforeAll(async () => {
  ipv6 = await canListenOn('::1');
  if (!ipv6) console.log('ports.test: this machine has no IPv6 loopback; the ::1 cases are skipped');
});

beforeEach(async () => {
  home = mkdtempSync(path.join(os.tmpdir(), 'vai-ports-unit-'));
  chmodSync(home, 0o700);
  store = (await StateStore.open(home)).store;
  base = await freeWindow();
});

afterEach(async () => {
  await Promise.all(listeners.splice(0).map(closeServer));
  await store.close();
  rmSync(home, { recursive: true, force: true });
});

describe('isPortFree', () => {
  it('is true for a free port, and true again once a listener has gone', async () => {
    expect(await isPortFree(base)).toBe(true);
    const s = await occupy(base, '127.0.0.1');
    expect(await isPortFree(base)).toBe(false);
    await closeServer(s);
    listeners.splice(listeners.indexOf(s), 1);
    expect(await isPortFree(base)).toBe(true);
  });

  it('is false when another listener holds the port on 127.0.0.1', async () => {
    await occupy(base + 1, '127.0.0.1');
    expect(await isPortFree(base + 1)).toBe(false);
    expect(await isPortFree(base + 2)).toBe(true); // the neighbour is not affected
  });

  it('is false when another listener holds the port on 0.0.0.0', async () => {
    await occupy(base + 3, '0.0.0.0');
    expect(await isPortFree(base + 3)).toBe(false);
  });

  it('is false when another listener holds the port on ::1 only', async (ctx) => {
    if (!ipv6) ctx.skip();
    await occupy(base + 4, '::1');
    // IPv4 alone would look free: this is the case only the ::1 probe catches.
    expect(await canListenOn0(base + 4)).toBe(true);
    expect(await isPortFree(base + 4)).toBe(false);
  });

  it('is false when another listener holds the port on the IPv6 wildcard ::', async (ctx) => {
    if (!ipv6) ctx.skip();
    await occupy(base + 5, '::');
    expect(await isPortFree(base + 5)).toBe(false);
  });

  it('leaves nothing bound behind after probing', async () => {
    expect(await isPortFree(base + 6)).toBe(true);
    // If the probe had kept a listener, a real program could not take the port now.
    const s = await occupy(base + 6, '127.0.0.1');
    expect(s.listening).toBe(true);
  });
});

describe('checkPortRange', () => {
  it('accepts 1024 to 65535', () => {
    expect(MIN_PORT).toBe(1024);
    expect(MAX_PORT).toBe(65535);
    for (const p of [1024, 8188, 65535]) expect(() => checkPortRange(p)).not.toThrow();
  });

  it('refuses ports out of range with exit 2, naming the port and the range', () => {
    for (const p of [0, 1023, 65536, -1, 80, 8188.5, Number.NaN]) {
      let thrown: unknown;
      try {
        checkPortRange(p);
      } catch (err) {
        thrown = err;
      }
      expect(thrown, `port ${p}`).toBeInstanceOf(VaiError);
      const e = thrown as VaiError;
      expect(e.exitCode).toBe(2);
      expect(e.message).toContain(String(p));
      expect(e.hint).toMatch(/1024.*65535/);
    }
  });
});

describe('PortAllocator', () => {
  it('starts at the base port and records the lease in the store', async () => {
    const ports = new PortAllocator(store.ports, base);
    expect(await ports.allocate('local-1')).toBe(base);
    expect(ports.leaseOf('local-1')).toBe(base);
    expect(store.ports.get('local-1')).toEqual({ port: base, instance_id: 'local-1' });
  });

  it('skips a port held by another listener on 127.0.0.1', async () => {
    await occupy(base, '127.0.0.1');
    const ports = new PortAllocator(store.ports, base);
    expect(await ports.allocate('a')).toBe(base + 1);
  });

  it('skips a port held by another listener on 0.0.0.0', async () => {
    await occupy(base, '0.0.0.0');
    const ports = new PortAllocator(store.ports, base);
    expect(await ports.allocate('a')).toBe(base + 1);
  });

  it('skips a port held by another listener on ::1', async (ctx) => {
    if (!ipv6) ctx.skip();
    await occupy(base, '::1');
    const ports = new PortAllocator(store.ports, base);
    expect(await ports.allocate('a')).toBe(base + 1);
  });

  it('skips several held ports in a row, on every family', async () => {
    await occupy(base, '127.0.0.1');
    await occupy(base + 1, '0.0.0.0');
    let next = base + 2;
    if (ipv6) await occupy(next++, '::1');
    const ports = new PortAllocator(store.ports, base);
    expect(await ports.allocate('a')).toBe(next);
    expect(await ports.allocate('b')).toBe(next + 1);
  });

  it('gives an instance the same port on a second allocate (sticky)', async () => {
    const ports = new PortAllocator(store.ports, base);
    const a = await ports.allocate('a');
    const b = await ports.allocate('b');
    expect(b).not.toBe(a);
    expect(await ports.allocate('a')).toBe(a);
    expect(await ports.allocate('b')).toBe(b);
    // Still sticky when a lower port has become free meanwhile.
    await ports.release('a');
    expect(await ports.allocate('b')).toBe(b);
    expect(store.ports.values()).toHaveLength(1);
  });

  it('frees a released port for another instance', async () => {
    const ports = new PortAllocator(store.ports, base);
    const a = await ports.allocate('a');
    const b = await ports.allocate('b');
    await ports.release('a');
    expect(ports.leaseOf('a')).toBeUndefined();
    expect(store.ports.has('a')).toBe(false);
    expect(await ports.allocate('c')).toBe(a);
    expect(ports.leaseOf('b')).toBe(b);
    // Releasing what holds nothing is harmless.
    await ports.release('never-had-one');
    expect(ports.leaseOf('c')).toBe(a);
  });

  it('never hands out a port leased to another instance, even when nothing listens on it', async () => {
    const ports = new PortAllocator(store.ports, base);
    await ports.allocate('a', base); // leased, but no tunnel listens on it in this test
    expect(await isPortFree(base)).toBe(true);
    expect(await ports.allocate('b')).toBe(base + 1);
  });

  it('gives exactly a requested free port', async () => {
    const ports = new PortAllocator(store.ports, base);
    expect(await ports.allocate('a', base + 40)).toBe(base + 40);
    expect(store.ports.get('a')?.port).toBe(base + 40);
    expect(await ports.allocate('a', base + 40)).toBe(base + 40); // its own port again: fine
    expect(await ports.allocate('a')).toBe(base + 40); // and sticky
  });

  it('refuses a requested port held by a listener with exit 2, and changes nothing', async () => {
    const ports = new PortAllocator(store.ports, base);
    const previous = await ports.allocate('b');
    const hosts = ['127.0.0.1', '0.0.0.0', ...(ipv6 ? ['::1'] : [])];
    for (const [i, host] of hosts.entries()) {
      const port = base + 50 + i;
      await occupy(port, host);
      const e = await rejection(ports.allocate('b', port));
      expect(e.exitCode).toBe(2);
      expect(e.message).toContain(String(port));
      expect(e.hint).toMatch(/--port/);
      // Never a silent other port: b keeps what it had, and nobody holds the requested port.
      expect(ports.leaseOf('b')).toBe(previous);
      expect(store.ports.values().some((l) => l.port === port)).toBe(false);
    }
  });

  it('refuses a requested port leased to another instance with exit 2, naming the holder', async () => {
    const ports = new PortAllocator(store.ports, base);
    await ports.allocate('local-7', base + 60);
    const before = await ports.allocate('local-8');
    const e = await rejection(ports.allocate('local-8', base + 60));
    expect(e.exitCode).toBe(2);
    expect(e.message).toContain(String(base + 60));
    expect(e.message).toContain('local-7');
    expect(ports.leaseOf('local-8')).toBe(before);
    expect(ports.leaseOf('local-7')).toBe(base + 60);
    // A fresh instance asking for it is refused too, and gets no lease at all.
    await rejection(ports.allocate('local-9', base + 60));
    expect(ports.leaseOf('local-9')).toBeUndefined();
  });

  it('refuses out-of-range requested ports (1023, 65536, 0) with exit 2, and records nothing', async () => {
    const ports = new PortAllocator(store.ports, base);
    for (const p of [1023, 65536, 0]) {
      const e = await rejection(ports.allocate('a', p));
      expect(e.exitCode).toBe(2);
      expect(e.message).toContain(String(p));
    }
    expect(ports.leaseOf('a')).toBeUndefined();
    expect(store.ports.values()).toEqual([]);
  });

  it('moves an instance to an explicit port, freeing its old one', async () => {
    const ports = new PortAllocator(store.ports, base);
    const first = await ports.allocate('a');
    expect(await ports.allocate('a', base + 70)).toBe(base + 70);
    expect(ports.leaseOf('a')).toBe(base + 70);
    expect(await ports.allocate('b')).toBe(first);
  });

  it('gives 50 concurrent allocate() calls for 50 instances 50 distinct ports', async () => {
    await occupy(base + 10, '127.0.0.1'); // held by another program: must be skipped under load too
    const ports = new PortAllocator(store.ports, base);
    const ids = Array.from({ length: 50 }, (_, i) => `local-${i + 1}`);
    const got = await Promise.all(ids.map((id) => ports.allocate(id)));
    expect(new Set(got).size).toBe(50);
    expect(got).not.toContain(base + 10);
    for (const p of got) {
      expect(p).toBeGreaterThanOrEqual(base);
      expect(p).toBeLessThanOrEqual(base + 50);
    }
    // Each instance's lease is the port it was given.
    ids.forEach((id, i) => expect(store.ports.get(id)?.port).toBe(got[i]));
    expect(store.ports.values()).toHaveLength(50);
  });

  it('gives concurrent allocate() calls for the same instance one port', async () => {
    const ports = new PortAllocator(store.ports, base);
    const got = await Promise.all(Array.from({ length: 10 }, () => ports.allocate('same')));
    expect(new Set(got)).toEqual(new Set([base]));
    expect(store.ports.values()).toHaveLength(1);
  });

  it('keeps leases across closing and reopening the store', async () => {
    const ports = new PortAllocator(store.ports, base);
    const a = await ports.allocate('a');
    const b = await ports.allocate('b');
    await ports.release('b');
    await store.close();

    store = (await StateStore.open(home)).store;
    expect(statSync(path.join(home, 'state.sqlite')).mode & 0o777).toBe(0o600);
    const again = new PortAllocator(store.ports, base);
    expect(again.leaseOf('a')).toBe(a);
    expect(again.leaseOf('b')).toBeUndefined();
    expect(await again.allocate('a')).toBe(a); // sticky after reopen
    expect(await again.allocate('c')).toBe(b); // a's port is still leased: c gets the next one
    expect(await rejection(again.allocate('d', a))).toMatchObject({ exitCode: 2 });
  });
});
