/**
 * A box's SSH link: one ssh2 connection, its keepalive, its reconnect schedule and its host-key
 * check. Forwards (and commands run on the box) use it; it is connected while something holds it
 * and ends when the last holder lets go, so an idle box costs no connection.
 *
 * States: `idle` (nobody holds it), `connecting`, `ready`, `reconnecting` (on the backoff
 * schedule: at once, 0.5 s, 1 s, 1.5 s, then every 1.5 s for a minute, then doubling to 30 s),
 * `failed` (authentication or host key: not retried, the user acts).
 */
import { EventEmitter } from 'node:events';
import type net from 'node:net';
import ssh2 from 'ssh2';
import type { Client as SshClient, ClientChannel } from 'ssh2';
import { ReconnectSchedule } from '../lib/backoff.js';
import { silentLogger, type Logger } from '../lib/log.js';
import type { SshEndpoint } from '../model/instance.js';
import { linkSocket } from './link-socket.js';
import { authOptions, describeAuth, fingerprint, hostKeyMismatchHint, type SshAuth } from './ssh-auth.js';

export type LinkState = 'idle' | 'connecting' | 'ready' | 'reconnecting' | 'failed';

/** The answer of the host-key pin store for one key. */
export type HostKeyVerdict = { ok: true } | { ok: false; expected: string };
export type HostKeyCheck = (hostPort: string, sha256Hex: string) => Promise<HostKeyVerdict>;

export interface LinkTiming {
  keepaliveIntervalMs: number;
  keepaliveCountMax: number;
  readyTimeoutMs: number;
}

export const DEFAULT_LINK_TIMING: LinkTiming = { keepaliveIntervalMs: 3_000, keepaliveCountMax: 3, readyTimeoutMs: 20_000 };

export interface SshLinkOptions {
  instanceId: string;
  ssh: SshEndpoint;
  auth: SshAuth;
  checkHostKey: HostKeyCheck;
  timing?: Partial<LinkTiming>;
  log?: Logger;
}

/** A channel-open failure, with ssh2's reason code (RFC 4254 section 5.1). */
export type ChannelError = Error & { reason?: number };

/** aes128-gcm is the fastest cipher with ssh2's native binding on AES-NI machines. */
const CIPHERS = { remove: 'aes128-gcm@openssh.com', prepend: 'aes128-gcm@openssh.com' } as const;
/** A link up this long ends an outage: the next one starts the reconnect schedule afresh. */
const STABLE_LINK_MS = 10_000;

export class SshLink extends EventEmitter {
  readonly instanceId: string;
  readonly ssh: SshEndpoint;
  /** Local sockets of the forwards on this link: corked while each SSH read is handed to ssh2. */
  readonly localSockets = new Set<net.Socket>();
  readonly auth: SshAuth;
  private readonly checkHostKey: HostKeyCheck;
  private readonly timing: LinkTiming;
  private readonly log: Logger;
  private _state: LinkState = 'idle';
  private _lastError: string | null = null;
  private client: SshClient | undefined;
  /** The socket under `client`: uploads cork it. */
  private sock: net.Socket | undefined;
  private readonly schedule = new ReconnectSchedule();
  private reconnectTimer: NodeJS.Timeout | undefined;
  private stableTimer: NodeJS.Timeout | undefined;
  private holders = 0;
  private stopped = false;

  constructor(opts: SshLinkOptions) {
    super();
    this.setMaxListeners(0);
    this.instanceId = opts.instanceId;
    this.ssh = opts.ssh;
    this.auth = opts.auth;
    this.checkHostKey = opts.checkHostKey;
    this.timing = { ...DEFAULT_LINK_TIMING, ...opts.timing };
    this.log = (opts.log ?? silentLogger).child(opts.instanceId);
  }

  get state(): LinkState {
    return this._state;
  }

  get lastError(): string | null {
    return this._lastError;
  }

  get isReady(): boolean {
    return this._state === 'ready';
  }

  /** The socket under the connection, while there is one (uploads cork it per local read). */
  get socket(): net.Socket | undefined {
    return this.sock;
  }

  private setState(state: LinkState, error?: string | null): void {
    if (error !== undefined) this._lastError = error;
    if (state === this._state) return;
    const prev = this._state;
    this._state = state;
    this.emit('state', state, prev);
  }

  /** Keeps the link connected until the returned function is called (once). */
  hold(): () => void {
    this.holders++;
    if (this._state === 'idle') this.connect();
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      if (--this.holders === 0) this.disconnect();
    };
  }

  private connect(): void {
    if (this.stopped || this.holders === 0) return;
    const client = new ssh2.Client();
    this.client = client;
    if (this._state === 'idle' || this._state === 'failed') this.setState('connecting', null);
    let lastErr: (Error & { level?: string }) | undefined;
    let hostKeyError: string | undefined;
    const hostPort = `${this.ssh.host}:${this.ssh.port}`;
    let cipher = '?';
    client.on('handshake', (negotiated) => {
      cipher = negotiated.cs.cipher;
    });
    client.on('ready', () => {
      if (this.client !== client) return;
      this.stableTimer = setTimeout(() => this.schedule.reset(), STABLE_LINK_MS);
      this.log.info(`ssh link ready to ${hostPort} (cipher ${cipher})`);
      this.setState('ready', null);
      this.askServerForNoDelay();
    });
    client.on('error', (err: Error & { level?: string }) => {
      lastErr = err;
    });
    client.on('close', () => {
      if (this.client !== client) return;
      this.client = undefined;
      this.sock = undefined;
      clearTimeout(this.stableTimer);
      if (this.stopped || this.holders === 0 || this._state === 'failed') return;
      if (hostKeyError) return this.fail(hostKeyError);
      if (lastErr?.level === 'client-authentication') {
        return this.fail(
          `SSH authentication as ${this.ssh.user}@${hostPort} with ${describeAuth(this.auth)} was refused. Check that this key is authorized on the box (authorized_keys), then run \`vai-mcp-cli tunnel ${this.instanceId}\` (MCP: open_tunnel).`,
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
    const sock = linkSocket(this.localSockets);
    this.sock = sock;
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
      // Nagle on the SSH socket puts ~40 ms stalls on small requests.
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
   * forward-only link keeps Nagle, so a small reply that follows another unacknowledged one
   * waits out our delayed ACK. Running `true` once per link makes sshd set it. Boxes that refuse
   * commands keep working, just without this.
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

  /** Stops retrying: the user has to act (reason says how). */
  private fail(reason: string): void {
    this.setState('failed', reason);
    const c = this.client;
    this.client = undefined;
    this.sock = undefined;
    c?.end();
  }

  /** Ends the connection: nobody needs it now (a later hold connects again). */
  private disconnect(): void {
    clearTimeout(this.reconnectTimer);
    clearTimeout(this.stableTimer);
    this.reconnectTimer = undefined;
    const c = this.client;
    this.client = undefined;
    this.sock = undefined;
    c?.end();
    this.schedule.reset();
    if (this._state !== 'failed') this.setState('idle');
  }

  /** Opens a `direct-tcpip` channel to `host:port` on the box; rejects with ssh2's reason code. */
  openChannel(host: string, port: number, from: { address?: string; port?: number } = {}): Promise<ClientChannel> {
    const client = this.client;
    if (!client || !this.isReady) return Promise.reject(new Error('the SSH link is not up'));
    return new Promise((resolve, reject) => {
      try {
        client.forwardOut(from.address ?? '127.0.0.1', from.port ?? 0, host, port, (err, ch) => (err ? reject(err) : resolve(ch)));
      } catch (err) {
        // forwardOut throws synchronously when the link has just gone (ssh2: "Not connected").
        reject(err as Error);
      }
    });
  }

  /**
   * Runs a command on the box and returns its output. Rejects when the link is down, the box
   * refuses sessions, or the command takes longer than `timeoutMs` (its channel is then closed).
   */
  exec(command: string, timeoutMs = 10_000): Promise<string> {
    const client = this.client;
    if (!client || !this.isReady) return Promise.reject(new Error('the SSH link is not up'));
    return new Promise((resolve, reject) => {
      let out = '';
      let channel: ClientChannel | undefined;
      const timer = setTimeout(() => {
        channel?.close(); // a hung command must not hold a session on the box
        reject(new Error(`\`${command}\` took longer than ${timeoutMs} ms`));
      }, timeoutMs);
      timer.unref();
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
        });
      } catch (err) {
        clearTimeout(timer);
        reject(err as Error);
      }
    });
  }

  /**
   * Runs a long command on the box: stdout line by line, stdin written and closed, the exit code
   * at the end (null when the channel closed without one). The signal closes the channel.
   */
  spawn(command: string, o: { stdin?: string; onLine?: (line: string) => void; signal?: AbortSignal } = {}): Promise<{ code: number | null; stderr: string }> {
    const client = this.client;
    if (!client || !this.isReady) return Promise.reject(new Error('the SSH link is not up'));
    return new Promise((resolve, reject) => {
      try {
        client.exec(command, (err, stream) => {
          if (err) return reject(err);
          let code: number | null = null;
          let partial = '';
          let stderr = '';
          const onAbort = () => stream.close();
          o.signal?.addEventListener('abort', onAbort, { once: true });
          stream.on('error', () => {});
          stream.on('exit', (c: number | null) => (code = c));
          stream.on('data', (d: Buffer) => {
            const lines = (partial + d.toString('utf8')).split('\n');
            partial = lines.pop() ?? '';
            for (const line of lines) o.onLine?.(line);
          });
          stream.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString('utf8')).slice(-4096)));
          stream.on('close', () => {
            o.signal?.removeEventListener('abort', onAbort);
            if (partial) o.onLine?.(partial);
            resolve({ code, stderr });
          });
          stream.end(o.stdin ?? '');
        });
      } catch (err) {
        reject(err as Error);
      }
    });
  }

  /** Ends the link for good: nothing holds it or reconnects it any more. */
  stop(): void {
    this.stopped = true;
    this.disconnect();
  }
}
