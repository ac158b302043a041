/**
 * A real OpenSSH sshd on loopback for tests and benchmarks (DESIGN.md section 6): its own config,
 * host key (kept across restarts, so a restart is the same host), user key and authorized_keys
 * in a private temp folder; the login user is the current user. Every wait is bounded; every
 * process is stopped by PID.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const SSHD = '/usr/sbin/sshd';

/**
 * A port nobody listens on, in 61000-65499: above Linux's ephemeral range (32768-60999), where
 * outgoing connections take ports at random, and away from the CLI tests' base ports.
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = 61000 + Math.floor(Math.random() * 4500);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.createServer();
      s.once('error', () => resolve(false));
      s.listen(port, host, () => s.close(() => resolve(true)));
    });
    if (ok) return port;
  }
  throw new Error('no free port found');
}

function keygen(file: string, passphrase = '', comment = 'vai-mcp-test'): void {
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', passphrase, '-C', comment, '-f', file], { stdio: 'ignore' });
}

/** Direct children of a process, from /proc. */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(entry));
    } catch {
      // gone
    }
  }
  return out;
}

function descendantsOf(pid: number): number[] {
  const all: number[] = [];
  const queue = childrenOf(pid);
  while (queue.length) {
    const p = queue.shift()!;
    all.push(p);
    queue.push(...childrenOf(p));
  }
  return all;
}

function signal(pids: number[], sig: NodeJS.Signals): void {
  for (const p of pids) {
    try {
      process.kill(p, sig);
    } catch {
      // already gone
    }
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`sshd harness: timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function accepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export interface SshdOptions {
  listenAddress?: string;
  port?: number;
}

export class Sshd {
  readonly dir: string;
  readonly host: string;
  readonly user = os.userInfo().username;
  readonly hostKeyPath: string;
  readonly userKeyPath: string;
  port = 0;
  private child: ChildProcess | undefined;
  private stopped = false;

  constructor(opts: SshdOptions = {}) {
    this.dir = mkdtempSync(path.join(os.tmpdir(), 'vai-sshd-'));
    this.host = opts.listenAddress ?? '127.0.0.1';
    this.port = opts.port ?? 0;
    this.hostKeyPath = path.join(this.dir, 'ssh_host_ed25519_key');
    this.userKeyPath = path.join(this.dir, 'id_ed25519');
    keygen(this.hostKeyPath);
    keygen(this.userKeyPath);
    writeFileSync(path.join(this.dir, 'authorized_keys'), readFileSync(`${this.userKeyPath}.pub`), { mode: 0o600 });
  }

  get pid(): number {
    return this.child?.pid ?? 0;
  }

  private writeConfig(): string {
    const file = path.join(this.dir, 'sshd_config');
    writeFileSync(
      file,
      [
        `Port ${this.port}`,
        `ListenAddress ${this.host}`,
        `HostKey ${this.hostKeyPath}`,
        `PidFile ${path.join(this.dir, 'sshd.pid')}`,
        `AuthorizedKeysFile ${path.join(this.dir, 'authorized_keys')}`,
        'UsePAM no',
        'StrictModes no',
        'PubkeyAuthentication yes',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'PermitRootLogin prohibit-password',
        'AllowTcpForwarding yes',
        'MaxStartups 200:30:400',
        'MaxSessions 200',
        'LogLevel ERROR',
        '',
      ].join('\n'),
    );
    return file;
  }

  /** Starts sshd and waits until its port accepts connections. */
  async start(): Promise<this> {
    if (!this.port) this.port = await freePort(this.host);
    if (os.userInfo().uid === 0) mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
    const config = this.writeConfig();
    const child = spawn(SSHD, ['-D', '-e', '-f', config], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr += d));
    this.child = child;
    this.stopped = false;
    try {
      await waitFor(`sshd to listen on ${this.host}:${this.port}`, async () => {
        if (child.exitCode !== null) throw new Error(`sshd exited with ${child.exitCode}: ${stderr}`);
        return accepts(this.host, this.port);
      }, 10_000);
    } catch (err) {
      child.kill('SIGKILL');
      throw err;
    }
    return this;
  }

  /** sshd's per-connection processes (and theirs). */
  childPids(): number[] {
    return this.pid ? descendantsOf(this.pid) : [];
  }

  private allPids(): number[] {
    return this.pid ? [this.pid, ...this.childPids()] : [];
  }

  /** SIGKILL sshd and its children; the folder (host key) stays for `restart()`. */
  async kill(): Promise<void> {
    const pids = this.allPids();
    signal(pids, 'SIGCONT'); // a frozen process cannot die of anything but SIGKILL, but wake it anyway
    signal(pids, 'SIGKILL');
    await waitFor('sshd to die', () => pids.every((p) => !alive(p) || isZombie(p)), 5000);
    this.child = undefined;
  }

  /** Starts again on the same port with the same host key. */
  async restart(): Promise<this> {
    if (this.child) await this.kill();
    return this.start();
  }

  /** SIGSTOP the master and every per-connection child: a frozen host. */
  freeze(): void {
    signal(this.allPids(), 'SIGSTOP');
  }

  thaw(): void {
    signal(this.allPids(), 'SIGCONT');
  }

  /** A new host key (in effect after the next restart): the box "changed". */
  regenerateHostKey(): void {
    rmSync(this.hostKeyPath, { force: true });
    rmSync(`${this.hostKeyPath}.pub`, { force: true });
    keygen(this.hostKeyPath);
  }

  /** Another user key, optionally encrypted; authorized unless `authorize: false`. */
  addUserKey(opts: { passphrase?: string; authorize?: boolean; name?: string } = {}): string {
    const file = path.join(this.dir, opts.name ?? `key_${Math.random().toString(36).slice(2, 8)}`);
    keygen(file, opts.passphrase ?? '');
    if (opts.authorize !== false) appendFileSync(path.join(this.dir, 'authorized_keys'), readFileSync(`${file}.pub`));
    return file;
  }

  /** Stops sshd and its children and removes the folder. Idempotent. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    const pids = this.allPids();
    signal(pids, 'SIGCONT');
    signal(pids, 'SIGTERM');
    await waitFor('sshd to exit', () => pids.every((p) => !alive(p) || isZombie(p)), 5000).catch(() => signal(pids, 'SIGKILL'));
    this.child = undefined;
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function isZombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

export async function startSshd(opts: SshdOptions = {}): Promise<Sshd> {
  return new Sshd(opts).start();
}
