/**
 * A real OpenSSH sshd on loopback, for integration tests, end-to-end tests and benchmarks
 * (DESIGN.md section 6).
 *
 * Each server lives in its own private temp folder (0700) with its own sshd_config, an ed25519
 * host key (kept across `kill()` / `restart()`, so a restarted server is the same host), an
 * unencrypted ed25519 user key and authorized_keys. The login user is the current user, so it
 * also works for a developer who is not root.
 *
 * Linux only (it reads /proc to find sshd's per-connection processes and its listening socket).
 * Every wait is bounded; every process is signalled by PID, never by name. A process that exits
 * without calling `stop()` (even one killed by a signal) leaves no sshd behind: see the watchdog.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { appendFileSync, chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { singlePortRange } from './ports.js';
import { descendantsOf, isDead, isStopped, pollUntil, signalAll } from './procs.js';
import { tellWatchdog } from './watchdog.js';
import { listeningSockets, socketInodesOf } from './sockets.js';

/** Absolute, so a PATH without /usr/sbin (or a different sshd on it) does not matter. */
export const SSHD_PATH = '/usr/sbin/sshd';

export type SshdLogLevel = 'QUIET' | 'FATAL' | 'ERROR' | 'INFO' | 'VERBOSE' | 'DEBUG';

export interface StartSshdOptions {
  /** Default 127.0.0.1. */
  listenAddress?: string;
  /** Default: a free port from `freePort()`. */
  port?: number;
  /**
   * Default VERBOSE: one `Connection from ...` line per TCP connection, which is what
   * `connectionCount()` counts.
   */
  logLevel?: SshdLogLevel;
  /** Extra sshd_config lines, appended after the harness's own. */
  extraConfig?: string[];
  /** Environment variables every session on the box gets (sshd's SetEnv), e.g. PORTAL_CONFIG. */
  sessionEnv?: Record<string, string>;
  /** Bound on waiting for the port to listen (default 10 s). */
  startTimeoutMs?: number;
}

export interface AddUserKeyOptions {
  /** Encrypt the key with this passphrase (default: unencrypted). */
  passphrase?: string;
  /** Add it to authorized_keys (default true). `false` makes a key the server refuses. */
  authorize?: boolean;
  /** File name inside the server's folder (default: a fresh random name). */
  name?: string;
}

export interface SshdHandle {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly dir: string;
  readonly userKeyPath: string;
  readonly hostKeyPath: string;
  /** PID of the master sshd, 0 while it is not running. */
  readonly pid: number;
  readonly running: boolean;
  /** sshd's per-connection processes and their descendants (not the master). */
  childPids(): number[];
  /** SIGTERM the master and its children, wait for them, remove the folder. Idempotent. */
  stop(): Promise<void>;
  /** SIGKILL the master and its children; the folder (host key) stays for `restart()`. */
  kill(): Promise<void>;
  /** Start again on the same port with the same host key (kills the running server first). */
  restart(): Promise<void>;
  /** SIGSTOP the master and every child: a host that stops answering without closing anything. */
  freeze(): Promise<void>;
  /** SIGCONT everything `freeze()` stopped (and anything else in the tree). */
  thaw(): void;
  /** A new host key; the running server keeps the old one until the next `restart()`. */
  regenerateHostKey(): void;
  /** The host key's SHA-256 digest in hex, as ssh2 reports it with `hostHash: 'sha256'`. */
  hostKeySha256(): string;
  /** Generates another user key (optionally encrypted), authorizes it, returns its path. */
  addUserKey(opts?: AddUserKeyOptions): string;
  /** sshd's log so far (stderr of the master and its children; the most recent 1 MiB). */
  logs(): string;
  /** TCP connections sshd has accepted since it was created (needs LogLevel VERBOSE or DEBUG). */
  connectionCount(): number;
}

// ---------------------------------------------------------------------------------------------
// Ports

export interface FreePortOptions {
  /** Inclusive range to pick from at random (default: the suite's single ports, see ports.ts). */
  min?: number;
  max?: number;
  /**
   * Addresses that must all be bindable. Default: 127.0.0.1, ::1 (where the machine has IPv6)
   * and 0.0.0.0, the same rule as core/ports.ts, so a tunnel can bind the port on every loopback
   * family.
   */
  hosts?: string[];
}

/** Ports this process handed out recently: two calls in a row never return the same port. */
const recentlyIssued: number[] = [];

function tryBind(port: number, host: string): Promise<'ok' | 'busy' | 'unavailable'> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'EADDRNOTAVAIL' || err.code === 'EAFNOSUPPORT' ? 'unavailable' : 'busy'));
    srv.listen({ port, host, exclusive: true }, () => srv.close(() => resolve('ok')));
  });
}

/**
 * A port nobody listens on, picked at random in [min, max] and checked by binding it. The default
 * range is the suite's single ports (VAI_TEST_PORT_BASE, see ports.ts), away from the sandboxes'
 * base ports and below Linux's ephemeral range by default.
 */
export async function freePort(opts: FreePortOptions = {}): Promise<number> {
  const range = singlePortRange();
  const min = opts.min ?? range.min;
  const max = opts.max ?? range.max;
  const hosts = opts.hosts ?? ['127.0.0.1', '::1', '0.0.0.0'];
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = min + Math.floor(Math.random() * (max - min + 1));
    if (recentlyIssued.includes(port)) continue;
    let free = true;
    for (const host of hosts) {
      const r = await tryBind(port, host);
      if (r === 'unavailable') {
        // ::1 on a machine without IPv6 cannot be taken by anyone either; an address the caller
        // named explicitly must exist, though.
        if (opts.hosts === undefined) continue;
        throw new Error(`freePort: cannot bind ${host} on this machine (no such local address)`);
      }
      if (r === 'busy') {
        free = false;
        break;
      }
    }
    if (!free) continue;
    recentlyIssued.push(port);
    if (recentlyIssued.length > 256) recentlyIssued.shift();
    return port;
  }
  throw new Error(`freePort: no free port found in ${min}-${max} after 200 tries`);
}

// ---------------------------------------------------------------------------------------------
// /proc helpers

/** True once `pid` holds a socket listening on `port`: it accepts connections, and we made none. */
function listensOn(pid: number, port: number): boolean {
  const mine = socketInodesOf(pid);
  return listeningSockets().some((s) => s.port === port && mine.has(s.inode));
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));
function sleepSync(ms: number): void {
  Atomics.wait(sleeper, 0, 0, ms);
}

function keygen(file: string, passphrase = '', comment = 'vai-mcp-test'): void {
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', passphrase, '-C', comment, '-f', file], { stdio: 'ignore', timeout: 10_000 });
}

// Safety net: see watchdog.ts.

/**
 * The sshd_config of every test sshd (DESIGN.md section 6): its own host key, PID file and
 * authorized_keys, public keys only, forwarding allowed, and room for many connections at once.
 */
export function sshdConfigLines(o: { port: number; listen: string; hostKey: string; dir: string; authorizedKeys: string; logLevel: string; sessionEnv?: Record<string, string> }): string[] {
  const env = Object.entries(o.sessionEnv ?? {}).map(([k, v]) => ` "${k}=${v}"`).join('');
  return [
    `Port ${o.port}`,
    `ListenAddress ${o.listen}`,
    `HostKey ${o.hostKey}`,
    `PidFile ${path.join(o.dir, 'sshd.pid')}`,
    `AuthorizedKeysFile ${o.authorizedKeys}`,
    'UsePAM no',
    'StrictModes no',
    'PubkeyAuthentication yes',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'PermitRootLogin prohibit-password',
    'AllowTcpForwarding yes',
    'UseDNS no',
    'MaxStartups 200:30:400',
    'MaxSessions 200',
    // Commands run over SSH (the tunnel's `true`, progress reads) must not run this machine's
    // ~/.bashrc: bash sources it for sshd only at SHLVL < 2, and a heavy one (pyenv init, whose
    // rehash lock a killed session leaves behind) stalled every later command by 60 s.
    `SetEnv SHLVL=1${env}`,
    `LogLevel ${o.logLevel}`,
  ];
}

const live = new Set<Sshd>();
let exitHookInstalled = false;

function reapOnExit(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const s of live) s.killSync();
  });
}

// ---------------------------------------------------------------------------------------------

const LOG_CAP = 1 << 20;

class Sshd implements SshdHandle {
  readonly host: string;
  port: number;
  readonly user = os.userInfo().username;
  readonly dir: string;
  readonly userKeyPath: string;
  readonly hostKeyPath: string;
  private readonly configPath: string;
  private readonly authorizedKeysPath: string;
  private readonly logLevel: SshdLogLevel;
  private readonly extraConfig: string[];
  private readonly sessionEnv: Record<string, string> | undefined;
  private readonly startTimeoutMs: number;
  private child: ChildProcess | undefined;
  private frozen = new Set<number>();
  private log = '';
  private connectionsSeen = 0;
  private partialLine = '';
  private removed = false;

  constructor(opts: StartSshdOptions) {
    this.host = opts.listenAddress ?? '127.0.0.1';
    this.port = opts.port ?? 0;
    this.logLevel = opts.logLevel ?? 'VERBOSE';
    this.extraConfig = opts.extraConfig ?? [];
    this.sessionEnv = opts.sessionEnv;
    this.startTimeoutMs = opts.startTimeoutMs ?? 10_000;
    this.dir = mkdtempSync(path.join(os.tmpdir(), 'vai-sshd-'));
    // mkdtemp already makes it 0700; make sure of it, the folder holds private keys.
    chmodSync(this.dir, 0o700);
    live.add(this);
    reapOnExit();
    tellWatchdog('dir+', this.dir);
    this.hostKeyPath = path.join(this.dir, 'ssh_host_ed25519_key');
    this.userKeyPath = path.join(this.dir, 'id_ed25519');
    this.authorizedKeysPath = path.join(this.dir, 'authorized_keys');
    this.configPath = path.join(this.dir, 'sshd_config');
    try {
      keygen(this.hostKeyPath, '', 'vai-mcp-test-host');
      keygen(this.userKeyPath);
      writeFileSync(this.authorizedKeysPath, readFileSync(`${this.userKeyPath}.pub`), { mode: 0o600 });
    } catch (err) {
      this.forget();
      throw err;
    }
  }

  get pid(): number {
    const c = this.child;
    return c && c.exitCode === null && c.signalCode === null && c.pid ? c.pid : 0;
  }

  get running(): boolean {
    return this.pid !== 0;
  }

  private writeConfig(): void {
    const lines = sshdConfigLines({ port: this.port, listen: this.host, hostKey: this.hostKeyPath, dir: this.dir, authorizedKeys: this.authorizedKeysPath, logLevel: this.logLevel, sessionEnv: this.sessionEnv });
    writeFileSync(this.configPath, [...lines, ...this.extraConfig, ''].join('\n'), { mode: 0o600 });
  }

  private appendLog(chunk: Buffer): void {
    const text = chunk.toString('utf8');
    // Count whole lines only: a line can arrive split across two chunks.
    const lines = (this.partialLine + text).split('\n');
    this.partialLine = lines.pop() ?? '';
    for (const line of lines) if (line.startsWith('Connection from ')) this.connectionsSeen++;
    this.log += text;
    if (this.log.length > LOG_CAP) this.log = this.log.slice(this.log.length - LOG_CAP);
  }

  /** Starts sshd and waits (bounded) until its port listens. */
  async start(): Promise<void> {
    if (this.removed) throw new Error('sshd harness: this server was stopped and its folder removed; start a new one');
    if (this.running) return;
    if (!this.port) this.port = await freePort({ hosts: [this.host] });
    try {
      // Privilege separation needs it when sshd runs as root (`mkdir -p /run/sshd`).
      mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
    } catch {
      // Not root: sshd runs without a separate privsep user and does not need it.
    }
    this.writeConfig();
    const child = spawn(SSHD_PATH, ['-D', '-e', '-f', this.configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (d: Buffer) => this.appendLog(d));
    child.stderr!.on('data', (d: Buffer) => this.appendLog(d));
    let spawnError: Error | undefined;
    child.once('error', (err) => (spawnError = err));
    this.child = child;
    if (child.pid) tellWatchdog('pid+', String(child.pid), this.configPath);
    const logFrom = this.log.length;
    try {
      await pollUntil(
        `sshd to listen on ${this.host}:${this.port}`,
        () => {
          if (spawnError) throw new Error(`sshd harness: cannot run ${SSHD_PATH}: ${spawnError.message}`);
          if (child.exitCode !== null || child.signalCode !== null) {
            throw new Error(`sshd harness: sshd exited (${child.exitCode ?? child.signalCode}) on ${this.host}:${this.port}: ${this.log.slice(logFrom).trim()}`);
          }
          return child.pid !== undefined && listensOn(child.pid, this.port);
        },
        this.startTimeoutMs,
      );
    } catch (err) {
      await this.kill().catch(() => {});
      throw err;
    }
  }

  childPids(): number[] {
    const pid = this.pid;
    return pid ? descendantsOf(pid) : [];
  }

  /**
   * SIGSTOPs the master, then its descendants, until no new process shows up: after this nothing
   * in the tree can fork, so the returned list is complete.
   */
  private stopTree(): number[] {
    const pid = this.pid;
    if (!pid) return [];
    const all = new Set<number>([pid]);
    let batch = [pid];
    for (let round = 0; round < 20 && batch.length; round++) {
      signalAll(batch, 'SIGSTOP');
      // A process stops on its way back to user mode, so a fork() in progress completes first:
      // wait until the batch is really stopped before looking for its children.
      const until = Date.now() + 1000;
      while (!batch.every(isStopped) && Date.now() < until) sleepSync(2);
      batch = descendantsOf(pid).filter((p) => !all.has(p));
      for (const p of batch) all.add(p);
    }
    return [...all];
  }

  private async waitDead(pids: number[], timeoutMs: number): Promise<boolean> {
    const master = this.child;
    try {
      await pollUntil(
        'sshd processes to exit',
        () => pids.every(isDead) && (!master || master.exitCode !== null || master.signalCode !== null),
        timeoutMs,
      );
      return true;
    } catch {
      return false;
    }
  }

  async kill(): Promise<void> {
    const master = this.child?.pid;
    const pids = [...new Set([...this.stopTree(), ...this.frozen])];
    signalAll(pids, 'SIGKILL');
    this.frozen.clear();
    if (!(await this.waitDead(pids, 5000))) {
      throw new Error(`sshd harness: processes ${pids.filter((p) => !isDead(p)).join(', ')} survived SIGKILL for 5 s`);
    }
    this.child = undefined;
    if (master) tellWatchdog('pid-', String(master));
  }

  /** Removes the folder and drops the safety-net registrations (processes already gone). */
  private forget(): void {
    this.removed = true;
    live.delete(this);
    rmSync(this.dir, { recursive: true, force: true });
    tellWatchdog('dir-', this.dir);
  }

  /** For the exit hook: no waiting possible there. */
  killSync(): void {
    try {
      signalAll([...new Set([...this.stopTree(), ...this.frozen])], 'SIGKILL');
      rmSync(this.dir, { recursive: true, force: true });
    } catch {
      // best effort at exit
    }
  }

  async restart(): Promise<void> {
    if (this.running) await this.kill();
    await this.start();
  }

  async stop(): Promise<void> {
    if (this.removed) return;
    const master = this.child?.pid;
    const pids = [...new Set([...this.stopTree(), ...this.frozen])];
    signalAll(pids, 'SIGTERM');
    signalAll(pids, 'SIGCONT'); // stopped processes act on SIGTERM only once continued
    this.frozen.clear();
    let dead = await this.waitDead(pids, 5000);
    if (!dead) {
      signalAll(pids, 'SIGKILL');
      dead = await this.waitDead(pids, 3000);
    }
    this.child = undefined;
    if (master && dead) tellWatchdog('pid-', String(master));
    this.forget();
  }

  async freeze(): Promise<void> {
    for (const p of this.stopTree()) this.frozen.add(p);
    const pids = [...this.frozen];
    await pollUntil('sshd processes to stop', () => pids.every(isStopped), 5000, 5);
  }

  thaw(): void {
    const pid = this.pid;
    const pids = new Set([...this.frozen, ...(pid ? [pid, ...descendantsOf(pid)] : [])]);
    this.frozen.clear();
    signalAll(pids, 'SIGCONT');
  }

  regenerateHostKey(): void {
    rmSync(this.hostKeyPath, { force: true });
    rmSync(`${this.hostKeyPath}.pub`, { force: true });
    keygen(this.hostKeyPath, '', 'vai-mcp-test-host');
  }

  hostKeySha256(): string {
    const blob = readFileSync(`${this.hostKeyPath}.pub`, 'utf8').trim().split(/\s+/)[1] ?? '';
    return createHash('sha256').update(Buffer.from(blob, 'base64')).digest('hex');
  }

  addUserKey(opts: AddUserKeyOptions = {}): string {
    const name = opts.name ?? `user_key_${Math.random().toString(36).slice(2, 10)}`;
    if (name.includes('/') || name === '' || name.startsWith('.')) throw new Error(`sshd harness: bad key name ${JSON.stringify(name)}`);
    const file = path.join(this.dir, name);
    keygen(file, opts.passphrase ?? '');
    if (opts.authorize !== false) appendFileSync(this.authorizedKeysPath, readFileSync(`${file}.pub`));
    return file;
  }

  logs(): string {
    return this.log;
  }

  connectionCount(): number {
    return this.connectionsSeen;
  }
}

/** Starts an sshd on loopback; `stop()` it when done (e.g. in afterAll / afterEach). */
export async function startSshd(opts: StartSshdOptions = {}): Promise<SshdHandle> {
  const sshd = new Sshd(opts);
  try {
    await sshd.start();
  } catch (err) {
    await sshd.stop().catch(() => {});
    throw err;
  }
  return sshd;
}
