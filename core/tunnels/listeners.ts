/**
 * A forward's local listeners: the same port on 127.0.0.1 and on ::1 (where the machine has it),
 * never a wildcard address. They are bound once and held across SSH reconnects; while another
 * program holds the port, the bind is tried again on a short backoff until it is free.
 */
import net from 'node:net';
import { hasIpv6Loopback } from './ports.js';

/** A port another program holds is tried again after 0.5 s, 1 s, 2 s, then every 3 s. */
const REBIND_FIRST_MS = 500;
const REBIND_MAX_MS = 3_000;
/**
 * Local sockets accept a whole SSH read's worth of packets before `write()` says "wait" (Node's
 * default of 16 KiB is less than one 32 KiB packet: the channel was paused on every packet).
 */
const LOCAL_HIGH_WATER_MARK = 1024 * 1024;

export class Listeners {
  private servers: net.Server[] = [];
  private closed = false;
  private retryTimer: NodeJS.Timeout | undefined;
  /** Why the port could not be bound, while it cannot. */
  bindError: string | undefined;

  constructor(
    private readonly port: number,
    private readonly onConnection: (sock: net.Socket) => void,
    /** Names the port's problem for the user (EADDRINUSE: another program holds it). */
    private readonly describe: (err: NodeJS.ErrnoException, host: string) => string,
    private readonly onError: (err: Error) => void,
  ) {}

  /** Binds every loopback address; false (with `bindError`) when one cannot be bound. */
  async bind(): Promise<boolean> {
    const hosts = ['127.0.0.1'];
    if (await hasIpv6Loopback()) hosts.push('::1');
    for (const host of hosts) {
      // noDelay on accepted sockets too: a response that reaches us as two SSH packets must not
      // wait out a delayed ACK from the local client.
      const server = net.createServer({ pauseOnConnect: true, noDelay: true, highWaterMark: LOCAL_HIGH_WATER_MARK }, this.onConnection);
      const err = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
        server.once('error', resolve);
        server.listen({ port: this.port, host, exclusive: true }, () => {
          server.off('error', resolve);
          resolve(undefined);
        });
      });
      // close() ran while this listen was pending: it could not close this server, so do it here.
      if (this.closed) {
        server.close();
        this.closeServers();
        return false;
      }
      if (err) {
        server.close();
        if (err.code === 'EADDRNOTAVAIL' && host === '::1') continue;
        this.closeServers();
        this.bindError = this.describe(err, host);
        return false;
      }
      server.on('error', this.onError);
      this.servers.push(server);
    }
    this.bindError = undefined;
    return true;
  }

  /** Tries the bind again and again, on the backoff, until it works; then `onBound`. */
  retry(onBound: () => void, delay = REBIND_FIRST_MS): void {
    if (this.closed) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.bind().then((bound) => {
        if (this.closed) return;
        if (bound) onBound();
        else this.retry(onBound, Math.min(delay * 2, REBIND_MAX_MS));
      });
    }, delay);
  }

  /** The addresses bound now, e.g. `127.0.0.1:8188`, `[::1]:8188`. */
  addresses(): string[] {
    return this.servers.map((s) => {
      const a = s.address() as net.AddressInfo | null;
      return a ? (a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`) : '';
    });
  }

  private closeServers(): void {
    for (const s of this.servers) s.close();
    this.servers = [];
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    await Promise.all(this.servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    this.servers = [];
  }
}
