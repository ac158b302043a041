/**
 * A tunnel: one forward on an SSH link of its own, `localhost:<local port>` -> box. What the
 * tunnel manager builds for a box is the same two parts, with the link kept per box (so that more
 * forwards, and commands on the box, can share it); this class is that pair for one port, as
 * tests and tools use it.
 */
import { EventEmitter } from 'node:events';
import type { Logger } from '../lib/log.js';
import type { SshEndpoint } from '../model/instance.js';
import type { GuardMode, TunnelState } from '../model/tunnel.js';
import { Forward, type ForwardStats } from './forward.js';
import type { GuardAllowances } from './guard.js';
import { SshLink, type HostKeyCheck } from './link.js';
import type { SshAuth } from './ssh-auth.js';

export type { HostKeyCheck, HostKeyVerdict } from './link.js';
export type TunnelStats = ForwardStats;

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

export class Tunnel extends EventEmitter {
  readonly link: SshLink;
  readonly forward: Forward;

  constructor(opts: TunnelOptions) {
    super();
    const t = { ...DEFAULT_TIMING, ...opts.timing };
    this.link = new SshLink({ instanceId: opts.instanceId, ssh: opts.ssh, auth: opts.auth, checkHostKey: opts.checkHostKey, timing: t, log: opts.log });
    this.forward = new Forward({
      instanceId: opts.instanceId,
      link: this.link,
      localPort: opts.localPort,
      remotePort: opts.remotePort,
      remoteHost: opts.remoteHost,
      guard: opts.guard,
      // A frozen link never answers a probe; keepalive ends it, this only frees the probe slot.
      timing: { ...t, probeTimeoutMs: t.keepaliveIntervalMs * (t.keepaliveCountMax + 2) },
      log: opts.log,
    });
    this.forward.on('state', (state: TunnelState, prev: TunnelState) => this.emit('state', state, prev));
  }

  get instanceId(): string {
    return this.forward.instanceId;
  }
  get localPort(): number {
    return this.forward.localPort;
  }
  get remotePort(): number {
    return this.forward.remotePort;
  }
  get ssh(): SshEndpoint {
    return this.link.ssh;
  }
  get state(): TunnelState {
    return this.forward.state;
  }
  get url(): string {
    return this.forward.url;
  }

  start(): Promise<void> {
    return this.forward.start();
  }

  stats(): TunnelStats {
    return this.forward.stats();
  }

  waitFor(states: TunnelState[], timeoutMs: number): Promise<TunnelState> {
    return this.forward.waitFor(states, timeoutMs);
  }

  exec(command: string, timeoutMs?: number): Promise<string> {
    return this.link.exec(command, timeoutMs);
  }

  async stop(): Promise<void> {
    await this.forward.stop();
    this.link.stop();
  }
}
