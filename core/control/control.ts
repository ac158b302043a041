/**
 * The control protocol between clients (CLI, MCP server) and the supervisor: newline-delimited
 * JSON over a private unix socket (DESIGN.md section 1).
 *
 *   client -> supervisor   {"t":"req","id":1,"method":"openTunnel","params":{...},"env":{...}}
 *                          {"t":"cancel","id":1}          ends a wait early (never the work)
 *   supervisor -> client   {"t":"res","id":1,"result":...}
 *                          {"t":"err","id":1,"error":{"message","hint","exitCode","code"}}
 *                          {"t":"progress","id":1,"progress":{"message":...}}
 *
 * Each request carries the caller's environment (keys, passphrase, agent socket, cwd): the
 * supervisor outlives the client that started it and must use each caller's own values.
 * The client starts the supervisor on demand and, after a crash, on the next call.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, closeSync, existsSync, fsyncSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { API_METHODS, type ApiMethod, type CallOptions, type DaemonStatus, type HelloResult, type Progress, type VaiApi } from '../api/api.js';
import { failure, homeWriteError, toVaiError, VaiError, type ErrorPayload } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import { ensurePrivateDir, homeFiles, resolveVaiHome, socketPathFor } from '../lib/paths.js';
import { loadSettings, requestEnvFrom, type RequestEnv } from '../config/settings.js';
import { compareVersions, PACKAGE_ROOT, VERSION } from '../lib/version.js';

type ClientFrame =
  | { t: 'req'; id: number; method: string; params: unknown; env?: RequestEnv }
  | { t: 'cancel'; id: number };
type ServerFrame =
  | { t: 'res'; id: number; result: unknown }
  | { t: 'err'; id: number; error: ErrorPayload }
  | { t: 'progress'; id: number; progress: Progress };

const MAX_FRAME_BYTES = 16 * 1024 * 1024;

/** Splits a byte stream into JSON frames, one per line. */
function onFrames(sock: net.Socket, handle: (frame: unknown) => void, onBad: (why: string) => void): void {
  let buf = '';
  sock.setEncoding('utf8');
  sock.on('data', (chunk: string) => {
    buf += chunk;
    if (buf.length > MAX_FRAME_BYTES) {
      onBad('frame too large');
      return;
    }
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (!line.trim()) continue;
      let frame: unknown;
      try {
        frame = JSON.parse(line);
      } catch {
        onBad('a frame is not JSON');
        return;
      }
      handle(frame);
    }
  });
}

function send(sock: net.Socket, frame: ClientFrame | ServerFrame): void {
  if (!sock.destroyed && sock.writable) sock.write(JSON.stringify(frame) + '\n');
}

// ------------------------------------------------------------------ server

/**
 * Serves an API on the control socket. The caller holds the supervisor lock, so a socket file
 * that is already there is stale and can be replaced.
 */
export async function serveControl(socketPath: string, api: VaiApi, log: Logger): Promise<net.Server> {
  if (process.platform !== 'win32') {
    ensurePrivateDir(path.dirname(socketPath), 'the control socket folder');
    if (existsSync(socketPath)) unlinkSync(socketPath);
  }
  const server = net.createServer((sock) => {
    sock.on('error', () => {});
    const waits = new Map<number, AbortController>();
    sock.on('close', () => {
      for (const ac of waits.values()) ac.abort(); // the caller is gone: end its waits, not the work
    });
    onFrames(
      sock,
      (raw) => {
        const frame = raw as ClientFrame;
        if (frame?.t === 'cancel') return waits.get(frame.id)?.abort();
        if (frame?.t !== 'req' || typeof frame.id !== 'number') return;
        const method = frame.method as ApiMethod;
        if (!API_METHODS.includes(method)) {
          send(sock, { t: 'err', id: frame.id, error: failure(`Unknown control method "${frame.method}".`, {
            cli: 'Client and supervisor versions differ: run `vai-mcp-cli daemon stop` and retry.',
            agent: 'Client and supervisor versions differ: ask the user to run `vai-mcp-cli daemon stop`, then retry.',
          }).toJSON() });
          return;
        }
        const ac = new AbortController();
        waits.set(frame.id, ac);
        const opts: CallOptions = {
          env: frame.env ?? {},
          signal: ac.signal,
          onProgress: (progress) => send(sock, { t: 'progress', id: frame.id, progress }),
        };
        const call = api[method] as (p: unknown, o: CallOptions) => Promise<unknown>;
        Promise.resolve()
          .then(() => call.call(api, frame.params ?? {}, opts))
          .then(
            (result) => send(sock, { t: 'res', id: frame.id, result }),
            (err) => {
              const e = toVaiError(err);
              if (!(err instanceof VaiError)) log.error(`${method} failed: ${(err as Error)?.stack ?? e.message}`);
              send(sock, { t: 'err', id: frame.id, error: e.toJSON() });
            },
          )
          .finally(() => waits.delete(frame.id));
      },
      (why) => {
        log.warn(`dropping a control connection: ${why}`);
        sock.destroy();
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => {
      server.off('error', reject);
      resolve();
    });
  });
  if (process.platform !== 'win32') chmodSync(socketPath, 0o600);
  server.on('error', (err) => log.error(`control socket error: ${err.message}`));
  return server;
}

// ------------------------------------------------------------------ client

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

/** The built supervisor entry point, also when this module runs from TypeScript sources (tests). */
export function supervisorEntry(): string {
  const here = fileURLToPath(import.meta.url);
  if (here.endsWith('.ts')) return path.join(PACKAGE_ROOT, 'dist', 'core', 'supervisor', 'main.js');
  return path.join(path.dirname(here), '..', 'supervisor', 'main.js');
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

/** Makes sure VAI_HOME takes a write (a full disk fails here, not silently in a detached process). */
function checkHomeWritable(home: string): void {
  const probe = path.join(home, `.write-test-${process.pid}`);
  try {
    const fd = openSync(probe, 'w', 0o600);
    try {
      writeSync(fd, Buffer.alloc(8192));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    throw homeWriteError(err, home, 'a test file');
  } finally {
    try {
      unlinkSync(probe);
    } catch {
      // never made
    }
  }
}

/**
 * V8 flags for the supervisor. Every byte a tunnel carries passes through a fresh Buffer, about
 * 1 GiB of allocations per GiB moved.
 * - `--single-threaded-gc`: with V8's concurrent array-buffer sweeping their memory was handed
 *   back late, so every ~64 MiB moved "external memory pressure" forced a full mark-compact (42
 *   per GiB, on four GC threads); single-threaded, 1 per GiB.
 * - `--expose-gc`: the tunnels run a minor GC every 4 MiB they carry (core/gc-pacing.ts), so
 *   dead buffers are freed before malloc's heap has to grow for new ones.
 * - `--max-semi-space-size=1`: V8 grows the young generation's semi-space to 16 MiB by default;
 *   1 MiB takes ~2.5 MiB off the idle supervisor.
 */
const SUPERVISOR_NODE_FLAGS = ['--single-threaded-gc', '--expose-gc', '--max-semi-space-size=1'];

/**
 * glibc malloc settings for the supervisor. Left to itself glibc gives freed memory back to the
 * kernel once ~1 MiB is free at the top of its heap, so the buffers a GC frees were returned and
 * the next reads faulted fresh pages in (~20 us a fault on these VMs). Here allocations under
 * 4 MiB come from the heap and up to 16 MiB of free heap is kept, four times what the tunnels
 * free between two of their GCs. With both, a 256 MiB download through the supervisor took a
 * few hundred faults once warm (8,000-40,000 before) and its heap stayed near 20 MiB.
 */
const SUPERVISOR_MALLOC_TUNABLES = 'glibc.malloc.mmap_threshold=4194304:glibc.malloc.trim_threshold=16777216';

/** Our tunables first, so a user's own GLIBC_TUNABLES still wins. Other C libraries ignore them. */
function supervisorTunables(user: string | undefined): string {
  return user ? `${SUPERVISOR_MALLOC_TUNABLES}:${user}` : SUPERVISOR_MALLOC_TUNABLES;
}

/** Starts a detached supervisor for a VAI_HOME. Several may start at once: the lock keeps one. */
export function spawnSupervisor(home: string, env: NodeJS.ProcessEnv): ChildProcess {
  ensurePrivateDir(home);
  checkHomeWritable(home);
  const files = homeFiles(home);
  let logFd: number;
  try {
    logFd = openSync(files.log, 'a', 0o600);
  } catch (err) {
    throw homeWriteError(err, home, `the supervisor log ${files.log}`);
  }
  try {
    const child = spawn(process.execPath, [...SUPERVISOR_NODE_FLAGS, supervisorEntry(), `--home=${home}`], {
      detached: true, // its own process group: a Ctrl-C in the caller's terminal does not reach it
      stdio: ['ignore', logFd, logFd],
      cwd: home, // never pin the caller's folder
      env: { ...env, VAI_HOME: home, GLIBC_TUNABLES: supervisorTunables(env.GLIBC_TUNABLES) },
    });
    child.unref();
    return child;
  } finally {
    closeSync(logFd);
  }
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

export class SupervisorClient implements VaiApi {
  private sock: net.Socket | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private connecting: Promise<net.Socket> | undefined;
  readonly home: string;
  readonly socketPath: string;
  private readonly env: NodeJS.ProcessEnv;
  private readonly basePort: number;
  private readonly allowed: { allowed_origins: string[]; allowed_hosts: string[] };
  /** What the supervisor said at the last handshake. */
  info: HelloResult | undefined;

  constructor(private readonly opts: ClientOptions = {}) {
    this.env = opts.env ?? process.env;
    this.home = resolveVaiHome(this.env);
    this.socketPath = socketPathFor(this.home);
    const settings = loadSettings(this.env, this.home);
    this.basePort = settings.basePort;
    this.allowed = { allowed_origins: settings.allowedOrigins, allowed_hosts: settings.allowedHosts };
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

  hello: VaiApi['hello'] = (p, o) => this.call('hello', p, o);
  createInstances: VaiApi['createInstances'] = (p, o) => this.call('createInstances', p, o);
  waitForInstances: VaiApi['waitForInstances'] = (p, o) => this.call('waitForInstances', p, o);
  listInstances: VaiApi['listInstances'] = (p, o) => this.call('listInstances', p, o);
  openTunnel: VaiApi['openTunnel'] = (p, o) => this.call('openTunnel', p, o);
  listTunnels: VaiApi['listTunnels'] = (p, o) => this.call('listTunnels', p, o);
  stopTunnel: VaiApi['stopTunnel'] = (p, o) => this.call('stopTunnel', p, o);
  stopAllTunnels: VaiApi['stopAllTunnels'] = (p, o) => this.call('stopAllTunnels', p, o);
  destroyInstance: VaiApi['destroyInstance'] = (p, o) => this.call('destroyInstance', p, o);
  destroyAll: VaiApi['destroyAll'] = (p, o) => this.call('destroyAll', p, o);
  sshKey: VaiApi['sshKey'] = (p, o) => this.call('sshKey', p, o);
  stopInstance: VaiApi['stopInstance'] = (p, o) => this.call('stopInstance', p, o);
  startInstance: VaiApi['startInstance'] = (p, o) => this.call('startInstance', p, o);
  instanceLogs: VaiApi['instanceLogs'] = (p, o) => this.call('instanceLogs', p, o);
  searchOffers: VaiApi['searchOffers'] = (p, o) => this.call('searchOffers', p, o);
  runWorkflow: VaiApi['runWorkflow'] = (p, o) => this.call('runWorkflow', p, o);
  getJob: VaiApi['getJob'] = (p, o) => this.call('getJob', p, o);
  listJobs: VaiApi['listJobs'] = (p, o) => this.call('listJobs', p, o);
  listQueue: VaiApi['listQueue'] = (p, o) => this.call('listQueue', p, o);
  cancelJobs: VaiApi['cancelJobs'] = (p, o) => this.call('cancelJobs', p, o);
  extractOutputs: VaiApi['extractOutputs'] = (p, o) => this.call('extractOutputs', p, o);
  oneshot: VaiApi['oneshot'] = (p, o) => this.call('oneshot', p, o);
  status: VaiApi['status'] = (p, o) => this.call('status', p, o);
  shutdown: VaiApi['shutdown'] = (p, o) => this.call('shutdown', p, o);
}

