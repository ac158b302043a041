/**
 * One supervised forward: `localhost:<local port>` -> (SSH) -> `<remote host>:<remote port>` on a box.
 *
 * - The local listeners (127.0.0.1, and ::1 where the machine has it) are bound once and held
 *   across SSH reconnects, so the port is never lost while the link is down.
 * - One SSH connection carries one `direct-tcpip` channel per local TCP connection.
 * - States (DESIGN.md section 4): `connecting` -> `up` when the SSH link is ready and a probe
 *   channel to the remote port opened; `remote_down` when the box refuses the remote port (the
 *   SSH link is kept); `reconnecting` while the link is being re-made on the backoff schedule;
 *   `failed` for authentication, host-key and forwarding-refused errors (not retried, the user
 *   acts); `port_conflict` while another program holds the local port (the bind is retried
 *   until the port is free); `stopped` at the end.
 * - Every local connection goes through the guard (guard.ts) unless the box's config says
 *   `guard: "off"`: a request from a foreign page is answered 403 here and never reaches the box.
 * - Every socket and channel has an error handler: one broken connection never takes the
 *   process down.
 */
import { EventEmitter } from 'node:events';
import net from 'node:net';
import ssh2 from 'ssh2';
import type { Client as SshClient, ClientChannel } from 'ssh2';
import { ReconnectSchedule } from '../lib/backoff.js';
import { noteBytesCarried } from './gc-pacing.js';
import { GuardPolicy, NO_ALLOWANCES, type GuardAllowances } from './guard.js';
import type { Refusal } from './http-framing.js';
import { carry, carryGuarded } from './local-connection.js';
import { silentLogger, type Logger } from '../lib/log.js';
import { hasIpv6Loopback } from './ports.js';
import { authOptions, describeAuth, fingerprint, hostKeyMismatchHint, type SshAuth } from './ssh-auth.js';
import type { GuardMode } from '../model/tunnel.js';
import type { SshEndpoint } from '../model/instance.js';
import type { TunnelState } from '../model/tunnel.js';


/** The answer of the host-key pin store for one key. */
export type HostKeyVerdict = { ok: true } | { ok: false; expected: string };
export type HostKeyCheck = (hostPort: string, sha256Hex: string) => Promise<HostKeyVerdict>;

export interface TunnelTiming {
  keepaliveIntervalMs: number;
  keepaliveCountMax: number;
  /** Probe through the tunnel while it is up. */
  probeIntervalMs: number;
  /** Probe while the remote app refuses, to notice quickly when it starts. */
  remoteDownProbeMs: number;
  /** How long a local connection made during a reconnect waits for the link. */
  pendingHoldMs: number;
  readyTimeoutMs: number;
}

export const DEFAULT_TIMING: TunnelTiming = {
  keepaliveIntervalMs: 3_000,
  keepaliveCountMax: 3,
  probeIntervalMs: 30_000,
  remoteDownProbeMs: 1_000,
  pendingHoldMs: 15_000,
  readyTimeoutMs: 20_000,
};

export interface TunnelOptions {
  instanceId: string;
  localPort: number;
  ssh: SshEndpoint;
  auth: SshAuth;
  remotePort: number;
  /** Target host as the box sees it. */
  remoteHost?: string;
  checkHostKey: HostKeyCheck;
  /** The guard on the local end (default: `http`, nothing extra allowed). */
  guard?: { mode: GuardMode; allow?: GuardAllowances };
  timing?: Partial<TunnelTiming>;
  log?: Logger;
}

export interface TunnelStats {
  state: TunnelState;
  last_error: string | null;
  /** Bytes from the box to local clients, and from local clients to the box. */
  bytes_in: number;
  bytes_out: number;
  /** Local TCP connections open now, and in all. */
  connections: number;
  connections_total: number;
  /** Requests the guard refused (none reached the box). */
  requests_refused: number;
  /** When the current state began (ISO). */
  since: string;
  /** Listen addresses actually bound. */
  listen: string[];
}

/** Prefer aes128-gcm (fastest with ssh2's native binding on AES-NI machines; see perf-baseline). */
const CIPHERS = { remove: 'aes128-gcm@openssh.com', prepend: 'aes128-gcm@openssh.com' } as const;

// ssh2's channel-open failure reasons (RFC 4254 section 5.1).
const OPEN_ADMINISTRATIVELY_PROHIBITED = 1;
const OPEN_CONNECT_FAILED = 2;
/** A link up this long ends an outage: the next one starts the reconnect schedule afresh. */
const STABLE_LINK_MS = 10_000;
/** A port another program holds is tried again after 0.5 s, 1 s, 2 s, then every 3 s. */
const REBIND_FIRST_MS = 500;
const REBIND_MAX_MS = 3_000;
/** The log names a refused origin (or host) at most this often. */
const REFUSAL_LOG_MS = 60_000;

/**
 * Read sizes of the SSH socket: the usual 64 KiB, and 512 KiB once a read fills its buffer (a
 * transfer). Two sizes rather than a doubling series, so that the space of a freed transfer
 * buffer always fits the next one (see core/gc-pacing.ts).
 */
const MIN_READ = 64 * 1024;
const MAX_READ = 512 * 1024;
/**
 * The read buffer of every link that is not in a transfer. Node holds each socket's next read
 * buffer while it waits, so a buffer of its own would cost every idle tunnel 64 KiB. Reads are
 * one at a time on this thread, and a read into this buffer is copied out (into a buffer of its
 * size, as Node does) before the callback returns, so the links can share it.
 */
let idleReadBuffer: Buffer | undefined;
/**
 * Local sockets accept a whole SSH read's worth of packets before `write()` says "wait" (Node's
 * default of 16 KiB is less than one 32 KiB packet, so `pipe()` paused and resumed the channel
 * on every packet and each packet became its own write).
 */
const LOCAL_HIGH_WATER_MARK = 1024 * 1024;

/**
 * A socket for the SSH connection that reads into buffers we size and hands each read to ssh2
 * with the local sockets corked. Per GiB, syscalls cost more CPU than the crypto on these VMs:
 * - Node reads 64 KiB at a time. After a read that fills its buffer the next is 512 KiB, each
 *   a fresh buffer that ssh2 may keep (it decrypts in place and hands out views); a short read
 *   goes back to the shared idle buffer.
 * - ssh2 pushes every 32 KiB packet to its channel, and `pipe()` writes each to the local
 *   socket. Corked for the length of one read, the packets of that read leave in one `writev`.
 * `onread` only works when given to the constructor (`connect()` ignores it).
 */
function sshSocket(localSockets: ReadonlySet<net.Socket>): net.Socket {
  let size = MIN_READ;
  // @types/node lists `onread` for connect() only; Node reads it in the constructor.
  const options: net.SocketConstructorOpts & { onread: net.OnReadOpts } = {
    onread: {
      buffer: () => (size === MIN_READ ? (idleReadBuffer ??= Buffer.allocUnsafe(MIN_READ)) : Buffer.allocUnsafe(size)),
      callback: (n: number, buf: Uint8Array) => {
        const data = buf === idleReadBuffer ? Buffer.from(buf.subarray(0, n)) : Buffer.from(buf.buffer, buf.byteOffset, n);
        size = n === buf.length ? MAX_READ : MIN_READ;
        // The SSH socket too: packets ssh2 sends while it parses (uploads waiting for window,
        // window adjusts) leave together.
        const corked = [sock, ...localSockets];
        for (const s of corked) s.cork();
        try {
          // ssh2 listens for 'data', which Node does not emit for a socket read with `onread`.
          sock.emit('data', data);
        } finally {
          for (const s of corked) s.uncork();
        }
        noteBytesCarried(n);
        return true; // keep reading (false would pause the socket)
      },
    },
  };
  const sock = new net.Socket(options);
  return sock;
}

export class Tunnel extends EventEmitter {
  readonly instanceId: string;
  readonly localPort: number;
  readonly ssh: SshEndpoint;
  readonly remotePort: number;
  readonly remoteHost: string;
  readonly guardMode: GuardMode;
  private readonly guard: GuardPolicy | undefined;
  private readonly auth: SshAuth;
  private readonly checkHostKey: HostKeyCheck;
  private readonly timing: TunnelTiming;
  private readonly log: Logger;

  private _state: TunnelState = 'connecting';
  private lastError: string | null = null;
  private since = new Date();
  private servers: net.Server[] = [];
  private client: SshClient | undefined;
  /** The socket under `client`: uploads cork it (see `forward`). */
  private linkSocket: net.Socket | undefined;
  private linkReady = false;
  private readonly schedule = new ReconnectSchedule();
  private reconnectTimer: NodeJS.Timeout | undefined;
  private rebindTimer: NodeJS.Timeout | undefined;
  /** Resets the backoff once a link has stayed up a while (a link that flaps keeps backing off). */
  private stableTimer: NodeJS.Timeout | undefined;
  private probeTimer: NodeJS.Timeout | undefined;
  private probing = false;
  private readonly sockets = new Set<net.Socket>();
  private readonly pending = new Set<net.Socket>();
  private closedBytesIn = 0;
  private closedBytesOut = 0;
  private connectionsTotal = 0;
  private requestsRefused = 0;
  /** When each refused origin (or host) was last logged. */
  private readonly refusalLoggedAt = new Map<string, number>();

  constructor(opts: TunnelOptions) {
    super();
    this.instanceId = opts.instanceId;
    this.localPort = opts.localPort;
    this.ssh = opts.ssh;
    this.remotePort = opts.remotePort;
    this.remoteHost = opts.remoteHost ?? '127.0.0.1';
    this.auth = opts.auth;
    this.checkHostKey = opts.checkHostKey;
    this.guardMode = opts.guard?.mode ?? 'http';
    this.guard = this.guardMode === 'http' ? new GuardPolicy(opts.localPort, opts.guard?.allow ?? NO_ALLOWANCES) : undefined;
    this.timing = { ...DEFAULT_TIMING, ...opts.timing };
    this.log = (opts.log ?? silentLogger).child(opts.instanceId);
  }

  get state(): TunnelState {
    return this._state;
  }

  get url(): string {
    return `http://localhost:${this.localPort}`;
  }

  stats(): TunnelStats {
    let bytesIn = this.closedBytesIn;
    let bytesOut = this.closedBytesOut;
    for (const s of this.sockets) {
      bytesIn += s.bytesWritten;
      bytesOut += s.bytesRead;
    }
    return {
      state: this._state,
      last_error: this.lastError,
      bytes_in: bytesIn,
      bytes_out: bytesOut,
      connections: this.sockets.size,
      connections_total: this.connectionsTotal,
      requests_refused: this.requestsRefused,
      since: this.since.toISOString(),
      listen: this.servers.map((s) => {
        const a = s.address() as net.AddressInfo | null;
        return a ? (a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`) : '';
      }),
    };
  }

  private setState(state: TunnelState, error?: string | null): void {
    if (error !== undefined) this.lastError = error;
    if (state === this._state) return;
    const prev = this._state;
    this._state = state;
    this.since = new Date();
    this.log.info(`${prev} -> ${state}${error ? `: ${error}` : ''}`);
    this.emit('state', state, prev);
  }

  /**
   * Binds the local listeners, then connects. Resolves once the listeners are bound (or the port
   * turned out to be taken: state `port_conflict`); the SSH link comes up in the background.
   */
  async start(): Promise<void> {
    const bound = await this.bind();
    if (!bound) return this.retryBind();
    this.connect();
  }

  /**
   * While another program holds the port, tries the bind again on a short backoff (capped at
   * REBIND_MAX_MS), so the tunnel is up on its own port within seconds of it being free.
   */
  private retryBind(delay = REBIND_FIRST_MS): void {
    if (this._state !== 'port_conflict') return;
    this.rebindTimer = setTimeout(() => {
      this.rebindTimer = undefined;
      if (this._state !== 'port_conflict') return;
      void this.bind().then((bound) => {
        if (!bound) return this.retryBind(Math.min(delay * 2, REBIND_MAX_MS));
        this.log.info(`local port ${this.localPort} is free again`);
        this.setState('connecting', null);
        this.connect();
      });
    }, delay);
  }

  /** Resolves when the tunnel reaches one of `states`, or rejects after `timeoutMs`. */
  waitFor(states: TunnelState[], timeoutMs: number): Promise<TunnelState> {
    if (states.includes(this._state)) return Promise.resolve(this._state);
    return new Promise((resolve, reject) => {
      const onState = (s: TunnelState) => {
        if (!states.includes(s)) return;
        cleanup();
        resolve(s);
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`tunnel ${this.instanceId} did not reach ${states.join('/')} within ${timeoutMs} ms (state ${this._state})`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.off('state', onState);
      };
      this.on('state', onState);
    });
  }

  private async bind(): Promise<boolean> {
    const hosts = ['127.0.0.1'];
    if (await hasIpv6Loopback()) hosts.push('::1');
    for (const host of hosts) {
      // noDelay on accepted sockets too: a response that reaches us as two SSH packets must not
      // wait out a delayed ACK from the local client (measured: 11.8% -> ~1% of fresh requests
      // over 30 ms; bench/sections/latency.ts).
      const server = net.createServer(
        { pauseOnConnect: true, noDelay: true, highWaterMark: LOCAL_HIGH_WATER_MARK },
        (sock) => this.onLocalConnection(sock),
      );
      const err = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
        server.once('error', resolve);
        server.listen({ port: this.localPort, host, exclusive: true }, () => {
          server.off('error', resolve);
          resolve(undefined);
        });
      });
      // stop() ran while this listen was pending: it could not close this server, so do it here.
      if (this._state === 'stopped') {
        server.close();
        this.closeServers();
        return false;
      }
      if (err) {
        server.close();
        if (err.code === 'EADDRNOTAVAIL' && host === '::1') continue;
        this.closeServers();
        const msg =
          err.code === 'EADDRINUSE'
            ? `Local port ${this.localPort} is taken by another program; the tunnel takes it as soon as it is free (it keeps trying). To move it now: \`vai-mcp-cli tunnel ${this.instanceId} --port P\` (MCP: open_tunnel with local_port).`
            : `Cannot listen on ${host}:${this.localPort}: ${err.message}`;
        this.setState('port_conflict', msg);
        return false;
      }
      server.on('error', (e) => this.log.warn(`listener error: ${e.message}`));
      this.servers.push(server);
    }
    return true;
  }

  private closeServers(): void {
    for (const s of this.servers) s.close();
    this.servers = [];
  }

  private connect(): void {
    if (this._state === 'stopped') return;
    const client = new ssh2.Client();
    this.client = client;
    this.linkReady = false;
    let lastErr: (Error & { level?: string }) | undefined;
    let hostKeyError: string | undefined;
    const hostPort = `${this.ssh.host}:${this.ssh.port}`;
    let cipher = '?';
    client.on('handshake', (negotiated) => {
      cipher = negotiated.cs.cipher;
    });

    client.on('ready', () => {
      if (this.client !== client) return;
      this.linkReady = true;
      this.stableTimer = setTimeout(() => this.schedule.reset(), STABLE_LINK_MS);
      this.log.info(`ssh link ready to ${hostPort} (cipher ${cipher})`);
      this.flushPending();
      this.probe();
      this.askServerForNoDelay();
    });
    client.on('error', (err: Error & { level?: string }) => {
      lastErr = err;
    });
    client.on('close', () => {
      if (this.client !== client) return;
      this.client = undefined;
      this.linkSocket = undefined;
      this.linkReady = false;
      this.clearProbeTimer();
      clearTimeout(this.stableTimer);
      if (this._state === 'stopped' || this._state === 'failed') return;
      if (hostKeyError) return this.fail(hostKeyError);
      if (lastErr?.level === 'client-authentication') {
        return this.fail(
          `SSH authentication as ${this.ssh.user}@${hostPort} with ${describeAuth(this.auth)} was refused. Check that this key is authorized on the box (authorized_keys), then run \`vai-mcp-cli tunnel ${this.instanceId}\`.`,
        );
      }
      this.scheduleReconnect(lastErr ? lastErr.message : 'SSH connection closed');
    });

    // Async verification: the verifier returns nothing and answers through `verify` later
    // (returning a boolean would make ssh2 decide synchronously).
    const hostVerifier = (hash: string, verify: (ok: boolean) => void): void => {
      this.checkHostKey(hostPort, hash).then(
        (verdict) => {
          if (!verdict.ok) {
            hostKeyError = `The host key of ${hostPort} changed: pinned ${fingerprint(verdict.expected)}, offered ${fingerprint(hash)}. The connection was refused (it could be someone in the middle). ${hostKeyMismatchHint(this.instanceId)}`;
          }
          verify(verdict.ok);
        },
        (err: Error) => {
          hostKeyError = `Could not check the host key of ${hostPort}: ${err.message}`;
          verify(false);
        },
      );
    };
    const sock = sshSocket(this.sockets);
    this.linkSocket = sock;
    const config: ssh2.ConnectConfig = {
      sock,
      ...authOptions(this.auth, this.ssh.user),
      hostHash: 'sha256',
      hostVerifier: hostVerifier as unknown as ssh2.HostFingerprintVerifier,
      keepaliveInterval: this.timing.keepaliveIntervalMs,
      keepaliveCountMax: this.timing.keepaliveCountMax,
      readyTimeout: this.timing.readyTimeoutMs,
      algorithms: { cipher: CIPHERS as unknown as ssh2.AlgorithmList<ssh2.CipherAlgorithm> },
    };
    try {
      // Nagle on the SSH socket puts ~40 ms stalls on small requests (perf-baseline.md).
      sock.setNoDelay(true);
      sock.connect({ host: this.ssh.host, port: this.ssh.port });
      client.connect(config);
    } catch (err) {
      // connect() throws synchronously only for bad options; not worth retrying.
      this.fail(`Cannot connect to ${hostPort}: ${(err as Error).message}`);
    }
  }

  /**
   * OpenSSH's sshd turns TCP_NODELAY on for a connection only once it runs a command for it; a
   * forward-only link (`ssh -N`) keeps Nagle, so a small reply that follows another unacknowledged
   * one waits out our delayed ACK (~40 ms on 8-13% of fresh requests). Running `true` once per
   * link makes sshd set it. Boxes that refuse commands keep working, just without this.
   */
  private askServerForNoDelay(): void {
    this.exec('true').catch((err: Error) => this.log.debug(`no command session on this link (${err.message}); sshd keeps Nagle`));
  }

  private scheduleReconnect(reason: string): void {
    const delay = this.schedule.next();
    this.setState(this._state === 'connecting' ? 'connecting' : 'reconnecting', `${reason} (retrying in ${(delay / 1000).toFixed(1)} s)`);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.connect();
    }, delay);
  }

  /** Stops retrying: the user has to act (reason says how). Listeners stay bound. */
  private fail(reason: string): void {
    this.setState('failed', reason);
    this.dropPending();
    this.clearProbeTimer();
    const c = this.client;
    this.client = undefined;
    this.linkSocket = undefined;
    this.linkReady = false;
    c?.end();
  }

  /** Opens a probe channel to the remote port and sets the state from the answer. */
  private probe(): void {
    const client = this.client;
    if (!client || !this.linkReady || this.probing) return;
    this.probing = true;
    this.clearProbeTimer();
    let settled = false;
    const done = () => {
      settled = true;
      this.probing = false;
      if (this.client !== client || !this.linkReady) return;
      const wait = this._state === 'remote_down' ? this.timing.remoteDownProbeMs : this.timing.probeIntervalMs;
      this.probeTimer = setTimeout(() => this.probe(), wait);
    };
    // A frozen link never answers; keepalive closes it, this only frees the probe slot.
    const guard = setTimeout(() => {
      if (!settled) done();
    }, this.timing.keepaliveIntervalMs * (this.timing.keepaliveCountMax + 2));
    try {
      client.forwardOut('127.0.0.1', 0, this.remoteHost, this.remotePort, (err, ch) => {
        clearTimeout(guard);
        if (settled) {
          ch?.close();
          return;
        }
        if (err) {
          this.onChannelError(err);
        } else {
          ch.on('error', () => {});
          ch.close();
          this.markUp();
        }
        done();
      });
    } catch {
      clearTimeout(guard);
      done();
    }
  }

  private clearProbeTimer(): void {
    if (this.probeTimer) clearTimeout(this.probeTimer);
    this.probeTimer = undefined;
  }

  private markUp(): void {
    if (this._state === 'stopped' || this._state === 'failed') return;
    this.setState('up', this._state === 'up' ? undefined : null);
  }

  /** A channel open failed: decide whether the remote app is down or forwarding is refused. */
  private onChannelError(err: Error & { reason?: number }): void {
    if (err.reason === OPEN_ADMINISTRATIVELY_PROHIBITED) {
      this.fail(`The SSH server at ${this.ssh.host}:${this.ssh.port} refused to forward to ${this.remoteHost}:${this.remotePort} (administratively prohibited: check AllowTcpForwarding / PermitOpen in its sshd_config), then run \`vai-mcp-cli tunnel ${this.instanceId}\`.`);
      return;
    }
    const what = err.reason === OPEN_CONNECT_FAILED ? 'refused the connection (nothing listens there yet?)' : `failed: ${err.message}`;
    const wasUp = this._state === 'up';
    this.setState('remote_down', `${this.remoteHost}:${this.remotePort} on the box ${what}`);
    // Poll quickly until the app answers.
    if (wasUp && !this.probing) {
      this.clearProbeTimer();
      this.probeTimer = setTimeout(() => this.probe(), this.timing.remoteDownProbeMs);
    }
  }

  private onLocalConnection(sock: net.Socket): void {
    sock.on('error', () => {}); // a reset by the local client must not throw
    this.sockets.add(sock);
    this.connectionsTotal++;
    sock.once('close', () => {
      this.sockets.delete(sock);
      this.pending.delete(sock);
      this.closedBytesIn += sock.bytesWritten;
      this.closedBytesOut += sock.bytesRead;
    });
    if (this.linkReady) return this.forward(sock);
    if (this._state === 'connecting' || this._state === 'reconnecting') {
      // Hold it briefly: the link is usually back within a second or two.
      this.pending.add(sock);
      sock.setTimeout(this.timing.pendingHoldMs, () => {
        if (this.pending.has(sock)) sock.destroy();
      });
      return;
    }
    sock.destroy();
  }

  private flushPending(): void {
    for (const sock of this.pending) {
      this.pending.delete(sock);
      sock.setTimeout(0);
      if (!sock.destroyed) this.forward(sock);
    }
  }

  private dropPending(): void {
    for (const sock of this.pending) sock.destroy();
    this.pending.clear();
  }

  private forward(sock: net.Socket): void {
    const client = this.client;
    const link = this.linkSocket;
    if (!client) return void sock.destroy();
    try {
      client.forwardOut(sock.remoteAddress ?? '127.0.0.1', sock.remotePort ?? 0, this.remoteHost, this.remotePort, (err, ch: ClientChannel) => {
        if (err) {
          sock.destroy();
          if (this.client === client) this.onChannelError(err as Error & { reason?: number });
          return;
        }
        ch.on('error', () => sock.destroy());
        if (sock.destroyed) return void ch.close();
        if (this._state === 'remote_down') this.markUp();
        if (this.guard) carryGuarded(sock, ch, link, this.guard, (r) => this.noteRefusal(r));
        else carry(sock, ch, link);
      });
    } catch {
      // forwardOut throws synchronously when the link has just gone (ssh2: "Not connected").
      sock.destroy();
    }
  }

  private noteRefusal(r: Refusal): void {
    this.requestsRefused++;
    const now = Date.now();
    if (now - (this.refusalLoggedAt.get(r.subject) ?? -Infinity) < REFUSAL_LOG_MS) return;
    if (this.refusalLoggedAt.size > 1000) this.refusalLoggedAt.clear();
    this.refusalLoggedAt.set(r.subject, now);
    this.log.warn(`guard refused a request to localhost:${this.localPort} (${r.status}): ${r.subject}; ${this.requestsRefused} refused so far`);
  }

  /**
   * Runs a command on the box over the tunnel's own SSH link and returns its output (for
   * showing provisioning progress). Rejects when the link is down, the box refuses sessions,
   * or the command takes longer than `timeoutMs`.
   */
  exec(command: string, timeoutMs = 10_000): Promise<string> {
    const client = this.client;
    if (!client || !this.linkReady) return Promise.reject(new Error('the SSH link is not up'));
    return new Promise((resolve, reject) => {
      let out = '';
      let channel: ClientChannel | undefined;
      const timer = setTimeout(() => {
        channel?.close(); // a hung command must not hold a session on the box
        reject(new Error(`\`${command}\` took longer than ${timeoutMs} ms`));
      }, timeoutMs);
      try {
        client.exec(command, (err, stream) => {
          if (err) {
            clearTimeout(timer);
            return reject(err);
          }
          channel = stream;
          stream.on('error', () => {});
          stream.on('data', (d: Buffer) => {
            if (out.length < 64 * 1024) out += d.toString('utf8');
          });
          stream.stderr.resume();
          stream.on('close', () => {
            clearTimeout(timer);
            resolve(out);
          });
          timer.unref();
        });
      } catch (err) {
        clearTimeout(timer);
        reject(err as Error);
      }
    });
  }

  /** Closes everything: listeners, local connections, the SSH link. Final. */
  async stop(): Promise<void> {
    if (this._state === 'stopped') return;
    this.setState('stopped');
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    clearTimeout(this.rebindTimer);
    clearTimeout(this.stableTimer);
    this.clearProbeTimer();
    this.dropPending();
    for (const s of this.sockets) s.destroy();
    const client = this.client;
    this.client = undefined;
    this.linkSocket = undefined;
    this.linkReady = false;
    client?.end();
    await Promise.all(this.servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    this.servers = [];
  }
}
