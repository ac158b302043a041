/**
 * One forward: `localhost:<local port>` -> (a box's SSH link) -> `<remote host>:<remote port>`.
 *
 * - Its listeners (127.0.0.1, and ::1 where the machine has it) are bound once and held across
 *   SSH reconnects, so the port is never lost while the link is down; while another program holds
 *   the port it is `port_conflict`, and the bind is tried again until the port is free.
 * - Each local TCP connection gets its own `direct-tcpip` channel on the link, through the guard
 *   (guard.ts) unless `guard` is `off`.
 * - It is `up` when the link is ready and a probe channel to the remote port opened (at the
 *   start, after every reconnect, and every 30 s), `remote_down` when the box refuses that port
 *   (the link is kept), and otherwise in the link's state (`connecting`, `reconnecting`, `failed`).
 */
import { EventEmitter } from 'node:events';
import type net from 'node:net';
import { silentLogger, type Logger } from '../lib/log.js';
import { waitForEvent } from '../lib/timers.js';
import type { GuardMode, TunnelState } from '../model/tunnel.js';
import { GuardPolicy, NO_ALLOWANCES, type GuardAllowances } from './guard.js';
import type { ChannelError, LinkState, SshLink } from './link.js';
import { carry, carryGuarded, ClientUse, RefusalLog } from './local-connection.js';
import { Listeners } from './listeners.js';

export interface ForwardTiming {
  /** Probe through the tunnel while it is up. */
  probeIntervalMs: number;
  /** Probe while the remote app refuses, to notice quickly when it starts. */
  remoteDownProbeMs: number;
  /** How long a local connection made while the link is down waits for it. */
  pendingHoldMs: number;
  /** A probe that gets no answer this long frees its slot (keepalive ends a frozen link). */
  probeTimeoutMs: number;
}

export const DEFAULT_FORWARD_TIMING: ForwardTiming = { probeIntervalMs: 30_000, remoteDownProbeMs: 1_000, pendingHoldMs: 15_000, probeTimeoutMs: 15_000 };

export interface ForwardOptions {
  instanceId: string;
  link: SshLink;
  localPort: number;
  remotePort: number;
  /** Target host as the box sees it. */
  remoteHost?: string;
  /** The guard on the local end (default: `http`, nothing extra allowed). */
  guard?: { mode: GuardMode; allow?: GuardAllowances };
  timing?: Partial<ForwardTiming>;
  log?: Logger;
}

export interface ForwardStats {
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

// ssh2's channel-open failure reasons (RFC 4254 section 5.1).
const OPEN_ADMINISTRATIVELY_PROHIBITED = 1;
const OPEN_CONNECT_FAILED = 2;

export class Forward extends EventEmitter {
  readonly instanceId: string;
  readonly link: SshLink;
  readonly localPort: number;
  readonly remotePort: number;
  readonly remoteHost: string;
  readonly guardMode: GuardMode;
  /** The guard on each request, and whether a client used the box since the last look. */
  private readonly use: ClientUse;
  private readonly timing: ForwardTiming;
  private readonly log: Logger;

  private _state: TunnelState = 'connecting';
  private since = new Date();
  private stopped = false;
  private readonly local: Listeners;
  /** The box refused forwarding to the remote port: this forward is over until the user acts. */
  private refused: string | undefined;
  /** What the last probe found, while the link is ready. */
  private probed: { up: true } | { up: false; why: string } | undefined;
  private releaseLink: (() => void) | undefined;
  private readonly onLinkState = (state: LinkState) => this.linkChanged(state);
  private probeTimer: NodeJS.Timeout | undefined;
  private probing = false;
  private readonly sockets = new Set<net.Socket>();
  private readonly pending = new Set<net.Socket>();
  private closedBytesIn = 0;
  private closedBytesOut = 0;
  private connectionsTotal = 0;
  private readonly refusals: RefusalLog;

  constructor(opts: ForwardOptions) {
    super();
    this.instanceId = opts.instanceId;
    this.link = opts.link;
    this.localPort = opts.localPort;
    this.remotePort = opts.remotePort;
    this.remoteHost = opts.remoteHost ?? '127.0.0.1';
    this.guardMode = opts.guard?.mode ?? 'http';
    this.use = new ClientUse(this.guardMode === 'http' ? new GuardPolicy(opts.localPort, opts.guard?.allow ?? NO_ALLOWANCES) : undefined);
    this.timing = { ...DEFAULT_FORWARD_TIMING, ...opts.timing };
    this.log = (opts.log ?? silentLogger).child(opts.instanceId);
    this.refusals = new RefusalLog(opts.localPort, this.log);
    this.local = new Listeners(
      opts.localPort,
      (sock) => this.onLocalConnection(sock),
      (err, host) =>
        err.code === 'EADDRINUSE'
          ? `Local port ${this.localPort} is taken by another program; the tunnel takes it as soon as it is free (it keeps trying). To move it now: \`vai-mcp-cli tunnel ${this.instanceId} --port P\` (MCP: open_tunnel with local_port).`
          : `Cannot listen on ${host}:${this.localPort}: ${err.message}`,
      (e) => this.log.warn(`listener error: ${e.message}`),
    );
  }

  get state(): TunnelState {
    return this._state;
  }

  get url(): string {
    return `http://localhost:${this.localPort}`;
  }

  // ---------------------------------------------------------------- state

  /** The state follows from the listeners, a refusal, the link and the last probe. */
  private derive(): { state: TunnelState; error: string | null } {
    if (this.stopped) return { state: 'stopped', error: null };
    if (this.local.bindError !== undefined) return { state: 'port_conflict', error: this.local.bindError };
    if (this.refused !== undefined) return { state: 'failed', error: this.refused };
    switch (this.link.state) {
      case 'failed':
        return { state: 'failed', error: this.link.lastError };
      case 'reconnecting':
        return { state: 'reconnecting', error: this.link.lastError };
      case 'idle':
      case 'connecting':
        return { state: 'connecting', error: this.link.lastError };
      case 'ready':
        if (!this.probed) return { state: 'connecting', error: null };
        return this.probed.up ? { state: 'up', error: null } : { state: 'remote_down', error: this.probed.why };
    }
  }

  private update(): void {
    const { state, error } = this.derive();
    if (state === this._state) return;
    const prev = this._state;
    this._state = state;
    this.since = new Date();
    this.log.info(`${prev} -> ${state}${error ? `: ${error}` : ''}`);
    this.emit('state', state, prev);
  }

  stats(): ForwardStats {
    let bytesIn = this.closedBytesIn;
    let bytesOut = this.closedBytesOut;
    for (const s of this.sockets) {
      bytesIn += s.bytesWritten;
      bytesOut += s.bytesRead;
    }
    return {
      state: this._state,
      last_error: this.derive().error,
      bytes_in: bytesIn,
      bytes_out: bytesOut,
      connections: this.sockets.size,
      connections_total: this.connectionsTotal,
      requests_refused: this.refusals.count,
      since: this.since.toISOString(),
      listen: this.local.addresses(),
    };
  }

  /** Whether a local client used the box through this forward since the last call (money/idle.ts). */
  readonly takeClientActivity = (): boolean => this.use.take();

  /** Resolves when the forward reaches one of `states`, or rejects after `timeoutMs`. */
  async waitFor(states: TunnelState[], timeoutMs: number): Promise<TunnelState> {
    if (await waitForEvent(this, 'state', () => states.includes(this._state), { timeoutMs })) return this._state;
    throw new Error(`tunnel ${this.instanceId} did not reach ${states.join('/')} within ${timeoutMs} ms (state ${this._state})`);
  }

  // ---------------------------------------------------------------- lifecycle

  /**
   * Binds the listeners, then holds the link. Resolves once the listeners are bound (or the port
   * turned out to be taken: `port_conflict`, retried); the link comes up in the background.
   */
  async start(): Promise<void> {
    this.link.on('state', this.onLinkState);
    if (await this.local.bind()) this.useLink();
    else {
      this.local.retry(() => {
        this.log.info(`local port ${this.localPort} is free again`);
        this.useLink();
        this.update();
      });
    }
    this.update();
  }

  private useLink(): void {
    if (this.stopped || this.releaseLink) return;
    this.releaseLink = this.link.hold();
    if (this.link.isReady) this.linkChanged('ready');
  }

  private linkChanged(state: LinkState): void {
    if (this.stopped) return;
    if (state === 'ready') {
      this.flushPending();
      this.probe();
    } else {
      this.probed = undefined;
      this.clearProbeTimer();
      if (state === 'failed') this.dropPending();
    }
    this.update();
  }

  /** Closes everything: listeners, local connections, its hold on the link. Final. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.update();
    this.clearProbeTimer();
    this.link.off('state', this.onLinkState);
    this.dropPending();
    for (const s of this.sockets) s.destroy();
    this.releaseLink?.();
    this.releaseLink = undefined;
    await this.local.close();
  }

  // ---------------------------------------------------------------- probes

  /** Opens a probe channel to the remote port and sets the state from the answer. */
  private probe(): void {
    if (!this.link.isReady || this.probing || this.stopped || this.refused) return;
    this.probing = true;
    this.clearProbeTimer();
    let settled = false;
    const done = () => {
      settled = true;
      this.probing = false;
      if (!this.link.isReady || this.stopped) return;
      const wait = this.probed && !this.probed.up ? this.timing.remoteDownProbeMs : this.timing.probeIntervalMs;
      this.probeTimer = setTimeout(() => this.probe(), wait);
    };
    // A frozen link never answers; keepalive closes it, this only frees the probe slot.
    const guard = setTimeout(() => {
      if (!settled) done();
    }, this.timing.probeTimeoutMs);
    this.link.openChannel(this.remoteHost, this.remotePort).then(
      (ch) => {
        clearTimeout(guard);
        ch.on('error', () => {});
        ch.close();
        if (settled) return;
        this.probed = { up: true };
        this.update();
        done();
      },
      (err: ChannelError) => {
        clearTimeout(guard);
        if (settled) return;
        this.onChannelError(err);
        done();
      },
    );
  }

  private clearProbeTimer(): void {
    if (this.probeTimer) clearTimeout(this.probeTimer);
    this.probeTimer = undefined;
  }

  /** A channel open failed: the remote app is down, or the box refuses to forward at all. */
  private onChannelError(err: ChannelError): void {
    if (err.reason === undefined && !this.link.isReady) return; // the link went meanwhile: its own state says so
    if (err.reason === OPEN_ADMINISTRATIVELY_PROHIBITED) {
      this.refused = `The SSH server at ${this.link.ssh.host}:${this.link.ssh.port} refused to forward to ${this.remoteHost}:${this.remotePort} (administratively prohibited: check AllowTcpForwarding / PermitOpen in its sshd_config), then run \`vai-mcp-cli tunnel ${this.instanceId}\`.`;
      this.dropPending();
      this.clearProbeTimer();
      this.releaseLink?.();
      this.releaseLink = undefined;
      this.update();
      return;
    }
    const what = err.reason === OPEN_CONNECT_FAILED ? 'refused the connection (nothing listens there yet?)' : `failed: ${err.message}`;
    const wasUp = this._state === 'up';
    this.probed = { up: false, why: `${this.remoteHost}:${this.remotePort} on the box ${what}` };
    this.update();
    // Poll quickly until the app answers.
    if (wasUp && !this.probing) {
      this.clearProbeTimer();
      this.probeTimer = setTimeout(() => this.probe(), this.timing.remoteDownProbeMs);
    }
  }

  // ---------------------------------------------------------------- local connections

  private onLocalConnection(sock: net.Socket): void {
    sock.on('error', () => {}); // a reset by the local client must not throw
    this.sockets.add(sock);
    this.link.localSockets.add(sock);
    this.connectionsTotal++;
    sock.once('close', () => {
      this.sockets.delete(sock);
      this.link.localSockets.delete(sock);
      this.pending.delete(sock);
      this.closedBytesIn += sock.bytesWritten;
      this.closedBytesOut += sock.bytesRead;
    });
    if (this.link.isReady && !this.refused) return this.forward(sock);
    if (!this.refused && (this._state === 'connecting' || this._state === 'reconnecting')) {
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
    const link = this.link.socket;
    this.link.openChannel(this.remoteHost, this.remotePort, { address: sock.remoteAddress, port: sock.remotePort }).then(
      (ch) => {
        ch.on('error', () => sock.destroy());
        if (sock.destroyed) return void ch.close();
        if (this.probed && !this.probed.up) {
          this.probed = { up: true };
          this.update();
        }
        if (this.use.check) carryGuarded(sock, ch, link, this.use.check, (r) => this.refusals.note(r));
        else carry(sock, ch, link, this.use.mark);
      },
      (err: ChannelError) => {
        sock.destroy();
        if (err.reason !== undefined) this.onChannelError(err);
      },
    );
  }
}
