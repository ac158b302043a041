/**
 * The client end of the control socket: every VaiApi call goes to the supervisor, which the client
 * starts on demand (and again on the next call after a crash). Versions are compared on connect:
 * a newer client asks an older supervisor to hand over.
 */
import net from 'node:net';
import { readFileSync } from 'node:fs';
import type { CallOptions, DaemonStatus, HelloParams, HelloResult, Progress, VaiApi } from '../api/api.js';
import { API_METHODS, type ApiMethod } from '../api/methods.js';
import { loadSettings, requestEnvFrom } from '../config/settings.js';
import { failure, VaiError } from '../lib/errors.js';
import { homeFiles, resolveVaiHome, socketPathFor } from '../lib/paths.js';
import { compareVersions, VERSION } from '../lib/version.js';
import { spawnSupervisor } from '../supervisor/launcher.js';
import { onFrames, send, type ServerFrame } from './protocol.js';

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Waits until a process has exited; false when it is still there after `timeoutMs`. */
async function waitForExit(pid: number, timeoutMs = 10_000): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (processAlive(pid)) {
    if (Date.now() > until) return false;
    await new Promise((r) => setTimeout(r, 25));
  }
  return true;
}

export interface ClientOptions {
  /** The environment this client acts with (default: this process's). */
  env?: NodeJS.ProcessEnv;
  /** Start the supervisor when none runs (default true). `daemon status` passes false. */
  start?: boolean;
  /** Receives warnings from the handshake (different VAI_BASE_PORT, versions...). */
  onWarning?: (w: string) => void;
  /** How long to wait for a supervisor that is starting (ms). */
  startTimeoutMs?: number;
}

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
  onProgress?: (p: Progress) => void;
}

function connectSocket(socketPath: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(socketPath);
    sock.once('connect', () => {
      sock.off('error', reject);
      resolve(sock);
    });
    sock.once('error', reject);
  });
}

/** The reason a supervisor gave for failing to start, from the end of its log. */
function startFailureReason(logPath: string): string | undefined {
  try {
    const tail = readFileSync(logPath, 'utf8').slice(-8192);
    const at = tail.lastIndexOf('supervisor failed to start: ');
    return at < 0 ? undefined : tail.slice(at + 'supervisor failed to start: '.length).trim().slice(0, 1000);
  } catch {
    return undefined;
  }
}

/** Its VaiApi methods are made from API_METHODS in the constructor: each one a call over the socket. */
export interface SupervisorClient extends VaiApi {}

export class SupervisorClient {
  private sock: net.Socket | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private connecting: Promise<net.Socket> | undefined;
  readonly home: string;
  readonly socketPath: string;
  private readonly env: NodeJS.ProcessEnv;
  private readonly basePort: number;
  /** What the handshake tells the supervisor of this client's settings. */
  private readonly allowed: Pick<HelloParams, 'allowed_origins' | 'allowed_hosts' | 'budget_usd' | 'budget_action' | 'ui_port'>;
  /** What the supervisor said at the last handshake. */
  info: HelloResult | undefined;

  constructor(private readonly opts: ClientOptions = {}) {
    for (const m of API_METHODS) (this as unknown as Record<ApiMethod, unknown>)[m] = (p: unknown, o?: CallOptions) => this.call(m, p, o);
    this.env = opts.env ?? process.env;
    this.home = resolveVaiHome(this.env);
    this.socketPath = socketPathFor(this.home);
    const settings = loadSettings(this.env, this.home);
    this.basePort = settings.basePort;
    this.allowed = { allowed_origins: settings.allowedOrigins, allowed_hosts: settings.allowedHosts, budget_usd: settings.budgetUsd, budget_action: settings.budgetAction, ui_port: settings.uiPort };
  }

  /** Connects (starting the supervisor if allowed) and shakes hands. */
  static async connect(opts: ClientOptions = {}): Promise<SupervisorClient> {
    const client = new SupervisorClient(opts);
    await client.ensureConnected();
    return client;
  }

  /** True when a supervisor answers on this home's socket (never starts one). */
  static async isRunning(env: NodeJS.ProcessEnv = process.env): Promise<boolean> {
    try {
      const sock = await connectSocket(socketPathFor(resolveVaiHome(env)));
      sock.destroy();
      return true;
    } catch {
      return false;
    }
  }

  private ensureConnected(): Promise<net.Socket> {
    if (this.sock && !this.sock.destroyed) return Promise.resolve(this.sock);
    this.connecting ??= this.open().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private async open(): Promise<net.Socket> {
    let sock = await this.tryConnect();
    if (!sock) {
      if (this.opts.start === false) {
        throw failure('No supervisor is running for this VAI_HOME.', 'Any command (e.g. `vai-mcp-cli tunnel --list`) starts it.', 'not_running');
      }
      sock = await this.startAndConnect();
    }
    this.attach(sock);
    const hello = await this.rawCall<HelloResult>('hello', { version: VERSION, home: this.home, base_port: this.basePort, ...this.allowed });
    if (compareVersions(VERSION, hello.version) > 0 && this.opts.start !== false) {
      // We are newer: the old supervisor hands over (exits); a new one restores everything.
      await this.rawCall('shutdown', { reason: `handover to vai-mcp ${VERSION}` }).catch(() => undefined);
      await waitForExit(hello.pid);
      this.sock?.destroy();
      this.sock = undefined;
      const fresh = await this.startAndConnect();
      this.attach(fresh);
      this.info = await this.rawCall<HelloResult>('hello', { version: VERSION, home: this.home, base_port: this.basePort, ...this.allowed });
    } else {
      this.info = hello;
    }
    for (const w of this.info.warnings) this.opts.onWarning?.(w);
    return this.sock!;
  }

  private async tryConnect(): Promise<net.Socket | undefined> {
    try {
      return await connectSocket(this.socketPath);
    } catch {
      return undefined;
    }
  }

  /**
   * Asks the supervisor to exit and waits until its process is gone (`daemon stop`). Records
   * stay: the next start restores every tunnel.
   */
  async stopSupervisor(reason: string): Promise<DaemonStatus> {
    const st = await this.status({});
    await this.shutdown({ reason });
    if (!(await waitForExit(st.pid))) {
      throw failure(`The supervisor (pid ${st.pid}) did not stop within 10 s.`, `Stop it with \`kill ${st.pid}\`.`, 'supervisor_stop');
    }
    this.close();
    return st;
  }

  private async startAndConnect(): Promise<net.Socket> {
    const child = spawnSupervisor(this.home, this.env);
    // Exit code 0 is a supervisor that found another one starting (the lock): keep waiting for
    // that one. Any other exit is a failure to start: say why at once, not after the timeout.
    let failedWith: number | undefined;
    child.once('exit', (code, signal) => {
      if (code !== 0) failedWith = code ?? (signal ? 128 : 1);
    });
    const until = Date.now() + (this.opts.startTimeoutMs ?? 20_000);
    while (Date.now() < until) {
      const sock = await this.tryConnect();
      if (sock) return sock;
      if (failedWith !== undefined) {
        const log = homeFiles(this.home).log;
        const reason = startFailureReason(log);
        throw failure(`The supervisor failed to start (exit code ${failedWith})${reason ? `: ${reason}` : '.'}`, `See its log: ${log}`, 'supervisor_start');
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw failure(`The supervisor did not start within ${Math.round((this.opts.startTimeoutMs ?? 20_000) / 1000)} s.`, `See its log: ${homeFiles(this.home).log}`, 'supervisor_start');
  }

  private attach(sock: net.Socket): void {
    this.sock = sock;
    sock.on('error', () => {});
    sock.on('close', () => {
      if (this.sock === sock) this.sock = undefined;
      const err = failure('The supervisor closed the connection (it stopped or crashed).', 'Run the command again: it starts a new supervisor, which restores the tunnels.', 'supervisor_gone');
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    });
    onFrames(
      sock,
      (raw) => {
        const frame = raw as ServerFrame;
        const p = this.pending.get(frame.id);
        if (!p) return;
        if (frame.t === 'progress') return p.onProgress?.(frame.progress);
        this.pending.delete(frame.id);
        if (frame.t === 'res') p.resolve(frame.result);
        else p.reject(VaiError.fromJSON(frame.error));
      },
      () => sock.destroy(),
    );
  }

  private rawCall<T>(method: ApiMethod, params: unknown, o: CallOptions = {}): Promise<T> {
    const sock = this.sock;
    if (!sock || sock.destroyed) return Promise.reject(failure('Not connected to the supervisor.'));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, onProgress: o.onProgress });
      const onAbort = () => send(sock, { t: 'cancel', id });
      o.signal?.addEventListener('abort', onAbort, { once: true });
      send(sock, { t: 'req', id, method, params, env: o.env ?? requestEnvFrom(this.env) });
    });
  }

  private async call<T>(method: ApiMethod, params: unknown, o: CallOptions = {}): Promise<T> {
    await this.ensureConnected();
    return this.rawCall<T>(method, params, o);
  }

  close(): void {
    this.sock?.end();
    this.sock?.destroy();
    this.sock = undefined;
  }

}

