/**
 * Local port allocation. A port is free only when binding it on 127.0.0.1, ::1 (where the machine
 * has IPv6) and 0.0.0.0 all succeed (macOS lets two processes share a port across those).
 * Allocation runs one call at a time inside the supervisor and records a lease before the next
 * call starts, so concurrent callers never get the same port.
 */
import net from 'node:net';
import { badInput, type Hint } from '../lib/errors.js';
import { Mutex } from '../lib/mutex.js';
import { isUsablePort, MAX_PORT, MIN_PORT } from '../model/limits.js';
import { MAIN_APP } from '../model/apps.js';
import type { Collection, PortLease } from '../store/store.js';

const ANOTHER_PORT: Hint = {
  cli: 'Choose another port with --port, or leave it out to get the next free one.',
  agent: 'Choose another local_port, or leave it out to get the next free one.',
};

function tryBind(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    // exclusive: do not share a handle with a cluster primary; this is a probe only.
    srv.listen({ port, host, exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

let ipv6Loopback: Promise<boolean> | undefined;
/** Whether this machine can bind ::1 at all (containers often lack IPv6). */
export function hasIpv6Loopback(): Promise<boolean> {
  ipv6Loopback ??= tryBind(0, '::1');
  return ipv6Loopback;
}

/** True when nothing listens on the port on any loopback family or the wildcard address. */
export async function isPortFree(port: number): Promise<boolean> {
  if (!(await tryBind(port, '127.0.0.1'))) return false;
  if ((await hasIpv6Loopback()) && !(await tryBind(port, '::1'))) return false;
  return tryBind(port, '0.0.0.0');
}

export function checkPortRange(port: number): void {
  if (!isUsablePort(port)) {
    throw badInput(`Port ${port} is out of range.`, `Choose a port from ${MIN_PORT} to ${MAX_PORT}.`, 'bad_port');
  }
}

/** Where a box's app keeps its lease: the box's id for its main app (as before there were apps). */
export function leaseKey(instanceId: string, app?: string): string {
  return app === undefined || app === MAIN_APP ? instanceId : `${instanceId}:${app}`;
}

function holderName(l: PortLease): string {
  return l.app ? `${l.instance_id} (app ${l.app})` : l.instance_id;
}

export class PortAllocator {
  private readonly mutex = new Mutex();

  constructor(
    private readonly leases: Collection<PortLease>,
    private readonly basePort: number,
  ) {}

  /** The port leased under a key (`leaseKey`), if any. */
  leaseOf(key: string): number | undefined {
    return this.leases.get(key)?.port;
  }

  /** The key holding a port, and who that is in words. */
  private holderOf(port: number): { key: string; name: string } | undefined {
    const l = this.leases.entries().find(([, v]) => v.port === port);
    return l && { key: l[0], name: holderName(l[1]) };
  }

  private lease(key: string, port: number): PortLease {
    const [instance_id, app] = key.split(':') as [string, string | undefined];
    return app === undefined ? { port, instance_id } : { port, instance_id, app };
  }

  /**
   * Leases a port to an instance. With `requested`, that port or an error (never a silent other
   * port). Without it, the instance's current lease, else its `sticky` port (the one it had last)
   * when that is free, else the first free port from the base up that is not in `keep` (ports
   * other boxes had last, so that they get theirs back).
   */
  allocate(key: string, requested?: number, sticky?: { port?: number; keep?: ReadonlySet<number> }): Promise<number> {
    return this.mutex.run(async () => {
      const current = this.leaseOf(key);
      if (requested !== undefined) {
        checkPortRange(requested);
        const holder = this.holderOf(requested);
        if (holder !== undefined && holder.key !== key) {
          throw badInput(`Port ${requested} is already used by the tunnel of ${holder.name}.`, ANOTHER_PORT, 'port_taken');
        }
        if (current !== requested && !(await isPortFree(requested))) {
          throw badInput(`Port ${requested} is taken by another program on this machine.`, ANOTHER_PORT, 'port_taken');
        }
        await this.leases.set(key, this.lease(key, requested));
        return requested;
      }
      if (current !== undefined) return current;
      const last = sticky?.port;
      if (last !== undefined && this.holderOf(last) === undefined && (await isPortFree(last))) {
        await this.leases.set(key, this.lease(key, last));
        return last;
      }
      for (let port = this.basePort; port <= MAX_PORT; port++) {
        if (this.holderOf(port) !== undefined || sticky?.keep?.has(port)) continue;
        if (!(await isPortFree(port))) continue;
        await this.leases.set(key, this.lease(key, port));
        return port;
      }
      throw badInput(`No free local port from ${this.basePort} to ${MAX_PORT}.`, 'Stop some tunnels, or set VAI_BASE_PORT lower.', 'no_free_port');
    });
  }

  /**
   * Records a lease as it is, without checking the port: a tunnel restored after a restart keeps
   * its port, and if another program took it meanwhile the tunnel reports `port_conflict`.
   */
  adopt(key: string, port: number): Promise<void> {
    return this.mutex.run(async () => {
      if (this.leaseOf(key) !== port) await this.leases.set(key, this.lease(key, port));
    });
  }

  /** Gives a lease's port back. */
  release(key: string): Promise<void> {
    return this.mutex.run(async () => {
      if (this.leases.has(key)) await this.leases.delete(key);
    });
  }
}
