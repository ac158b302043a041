/**
 * A fake GPU box for tests: a real OpenSSH sshd in its own network namespace (DESIGN.md section 6),
 * so several boxes can be told apart: each box's 127.0.0.1:18188 is its own ComfyUI-like app, as
 * on real separate machines, and three tunnels cannot all reach one shared port by accident.
 *
 *   host (test process)                    netns vai-b<k>
 *   vaih<k> 10.213.A.B+1/30  <--veth-->    vaib<k> 10.213.A.B+2/30   sshd :22
 *                                          lo 127.0.0.1              app 127.0.0.1:18188 (startComfy)
 *
 * - sshd: its own host key (kept across stopSsh()/startSsh()), AuthorizedKeysFile in the box's
 *   folder, UsePAM no, StrictModes no, PermitRootLogin prohibit-password, AllowTcpForwarding yes.
 * - Every command run over SSH on the box (`ssh box tail -n 50 /var/log/onstart.log`, or anything
 *   else) prints the box's own onstart log (ForceCommand to a per-box script): the namespaces share
 *   one filesystem, so nothing may read the host's /var/log. `tail -n N` / `tail -N` is honoured.
 *   The commands are recorded (`execLog()`). direct-tcpip forwarding is not affected.
 * - The app is a small standalone node script (no build needed): GET / (a page with
 *   `<code id="instance-id">ID</code>`), GET /api/system_stats, GET /queue; anything else 404.
 *
 * Linux and root only (`ip netns`); `fakeBoxesSupported()` says why not, so tests can skip with a
 * printed reason. Every wait is bounded, every process is signalled by PID, every namespace and
 * link deleted by name, every folder removed, also when the test process dies without cleaning up
 * (a detached watchdog holds a pipe from us and cleans up when it closes).
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { appendFileSync, chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { descendantsOf, isDead, pollUntil, signalAll } from './procs.js';
import { tellWatchdog } from './watchdog.js';
import { promisify } from 'node:util';
import { SSHD_PATH, sshdConfigLines } from './sshd.js';

const execFileP = promisify(execFile);

/** Where the box's app listens inside its namespace (vastai/comfy's ComfyUI port). */
export const COMFY_PORT = 18188;

export interface StartFakeBoxOptions {
  /** A name for messages and the folder (e.g. `vast-904123`). */
  name: string;
  /** What the box's app shows as its instance id. */
  instanceId: string;
  /** Public key lines to authorize at once (more with `addAuthorizedKey`). */
  authorizedKeys?: string[];
  /** Bound on waiting for sshd (and later the app) to listen; default 10 s. */
  startTimeoutMs?: number;
}

export interface FakeBox {
  readonly name: string;
  readonly instanceId: string;
  /** The network namespace, `vai-b<k>`. */
  readonly ns: string;
  /** The box's address (reachable from the host through the veth pair). */
  readonly host: string;
  /** The host side's address on the /30. */
  readonly hostSideAddress: string;
  readonly sshPort: number;
  /** The login user (the current user; root in CI). */
  readonly user: string;
  readonly dir: string;
  readonly hostKeyPath: string;
  readonly sshRunning: boolean;
  readonly comfyRunning: boolean;
  readonly destroyed: boolean;
  /** Appends a public key line to the box's authorized_keys (takes effect on the next login). */
  addAuthorizedKey(pubLine: string): void;
  authorizedKeys(): string[];
  /** Starts the app on 127.0.0.1:18188 inside the namespace; resolves once it listens. */
  startComfy(): Promise<void>;
  stopComfy(): Promise<void>;
  setOnstartLog(text: string): void;
  appendOnstartLog(line: string): void;
  onstartLog(): string;
  /** Commands clients ran on the box over SSH, oldest first (empty string = a shell). */
  execLog(): string[];
  /** Stops sshd and every SSH session (an instance being stopped). The host key is kept. */
  stopSsh(): Promise<void>;
  /** Starts sshd again on the same address with the same host key. */
  startSsh(): Promise<void>;
  /** `ssh-ed25519 AAAA...`: for a known_hosts line. */
  hostKeyLine(): string;
  /** SHA-256 of the host key blob, hex (as ssh2 reports with `hostHash: 'sha256'`). */
  hostKeySha256(): string;
  /** sshd's stderr so far (last 256 KiB). */
  sshdLogs(): string;
  /** Where the dead man's switch heartbeat lands: `touch /tmp/vai-heartbeat` over SSH touches this file. */
  readonly heartbeatFile: string;
  /**
   * Runs an onstart script in the namespace, as the box's boot does (`sh -c`, in the background,
   * `entrypoint.sh` a no-op on PATH), with `env`; `127.0.0.1:<apiPort>` in the namespace is relayed
   * to `hostSideAddress:<apiPort>` (where a fake API can listen). Stopped by `stopOnstart()`.
   */
  runOnstart(script: string, env: Record<string, string>, apiPort: number): Promise<void>;
  stopOnstart(): Promise<void>;
  /** What the onstart script printed (its stdout and stderr). */
  onstartOutput(): string;
  /** Kills everything by PID, deletes the link and the namespace, removes the folder. Idempotent. */
  destroy(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Support check

let supportCache: { ok: boolean; reason?: string } | undefined;

/** Whether fake boxes can run here: Linux, root, `ip netns`, /usr/sbin/sshd, ssh-keygen. */
export function fakeBoxesSupported(): { ok: boolean; reason?: string } {
  if (supportCache) return supportCache;
  const check = (): { ok: boolean; reason?: string } => {
    if (process.platform !== 'linux') return { ok: false, reason: `fake boxes need Linux network namespaces (this is ${process.platform})` };
    if (process.getuid?.() !== 0) return { ok: false, reason: 'fake boxes need root (ip netns add, veth pairs); CI runs as root' };
    if (!existsSync(SSHD_PATH)) return { ok: false, reason: `no OpenSSH server at ${SSHD_PATH}` };
    try {
      execFileSync('ssh-keygen', ['-?'], { stdio: 'ignore', timeout: 5000 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { ok: false, reason: 'no ssh-keygen on PATH' };
    }
    const probe = `vai-probe-${process.pid}`;
    try {
      execFileSync('ip', ['netns', 'add', probe], { stdio: 'pipe', timeout: 5000 });
    } catch (err) {
      const e = err as NodeJS.ErrnoException & { stderr?: Buffer };
      return { ok: false, reason: `ip netns is not usable here: ${e.code === 'ENOENT' ? 'no `ip` (iproute2) on PATH' : (e.stderr?.toString().trim() || e.message)}` };
    }
    try {
      execFileSync('ip', ['netns', 'del', probe], { stdio: 'ignore', timeout: 5000 });
    } catch {
      // the probe namespace holds no process: deleting it cannot really fail
    }
    return { ok: true };
  };
  supportCache = check();
  return supportCache;
}

// Safety net: see watchdog.ts.

const liveBoxes = new Set<Box>();
let exitHookInstalled = false;
function reapOnExit(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const b of liveBoxes) b.destroySync();
  });
}

// ---------------------------------------------------------------------------------------------
// Helpers

/** `10.213.0.2` -> `0200D50A` (the little-endian hex /proc/net/tcp prints). */
function procHex(ipv4: string): string {
  return ipv4
    .split('.')
    .reverse()
    .map((b) => Number(b).toString(16).padStart(2, '0'))
    .join('')
    .toUpperCase();
}

/** True once the network namespace `pid` lives in has a TCP listener on ipv4:port. */
function nsListens(pid: number, ipv4: string, port: number): boolean {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/net/tcp`, 'utf8');
  } catch {
    return false;
  }
  const want = `${procHex(ipv4)}:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  return text.split('\n').some((line) => {
    const cols = line.trim().split(/\s+/);
    return cols[1] === want && cols[3] === '0A';
  });
}

async function ip(args: string[]): Promise<void> {
  await execFileP('ip', args, { timeout: 10_000 });
}

function ipSync(args: string[]): void {
  try {
    execFileSync('ip', args, { stdio: 'ignore', timeout: 5000 });
  } catch {
    // best effort
  }
}

/** The /30 of block k (0..16383) inside 10.213.0.0/16: [host side, box side]. */
function blockAddresses(k: number): [string, string] {
  const third = k >> 6;
  const fourth = (k & 63) * 4;
  return [`10.213.${third}.${fourth + 1}`, `10.213.${third}.${fourth + 2}`];
}

const COMFY_SCRIPT = `// fake ComfyUI for a fake box (test/helpers/fake-box.ts)
import http from 'node:http';
const [instanceId, portText] = process.argv.slice(2);
const startedAt = Date.now();
const json = (res, status, body) => { const t = JSON.stringify(body); res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(t) }); res.end(t); };
const server = http.createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://localhost');
  if (req.method === 'GET' && url.pathname === '/') {
    const body = '<!doctype html><html><head><meta charset="utf-8"><title>ComfyUI (fake box) - ' + instanceId + '</title></head><body><h1>ComfyUI (fake box)</h1><p>instance_id: <code id="instance-id">' + instanceId + '</code></p></body></html>\\n';
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-length': Buffer.byteLength(body), 'x-instance-id': instanceId });
    return res.end(body);
  }
  if (req.method === 'GET' && url.pathname === '/api/system_stats') {
    return json(res, 200, { system: { os: 'posix', python_version: '3.12.0 (fake box)', embedded_python: false, comfyui_version: '0.3.0-vai-fakebox', argv: ['main.py', '--port', portText], uptime_s: Math.round((Date.now() - startedAt) / 1000) },
      devices: [{ name: 'cuda:0 NVIDIA GeForce RTX 4090 (fake)', type: 'cuda', index: 0, vram_total: 25769803776, vram_free: 25000000000 }], instance_id: instanceId });
  }
  if (req.method === 'GET' && url.pathname === '/queue') return json(res, 200, { queue_running: [], queue_pending: [] });
  json(res, 404, { error: 'not found: ' + req.method + ' ' + url.pathname, instance_id: instanceId });
});
server.on('clientError', (_e, s) => s.destroy());
server.listen(Number(portText), '127.0.0.1', () => process.stdout.write('listening\\n'));
process.on('SIGTERM', () => process.exit(0));
// The test process is gone (its pipe closed): do not outlive it.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
`;

const LOG_CAP = 256 * 1024;

/** In the namespace: 127.0.0.1:<port> relayed to <host side>:<port>, so a script there reaches a fake API on the host. */
const RELAY_SCRIPT = `
const net = require('node:net');
const [port, host] = process.argv.slice(1);
net.createServer((c) => {
  const up = net.connect(Number(port), host);
  c.pipe(up).pipe(c);
  c.on('error', () => up.destroy());
  up.on('error', () => c.destroy());
}).listen(Number(port), '127.0.0.1', () => process.stdout.write('listening\\n'));
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
`;

// ---------------------------------------------------------------------------------------------

class Box implements FakeBox {
  readonly name: string;
  readonly instanceId: string;
  ns = '';
  host = '';
  hostSideAddress = '';
  hostLink = '';
  readonly sshPort = 22;
  readonly user = os.userInfo().username;
  readonly dir: string;
  readonly hostKeyPath: string;
  private readonly configPath: string;
  private readonly authorizedKeysPath: string;
  private readonly onstartPath: string;
  private readonly execLogPath: string;
  private readonly execScriptPath: string;
  private readonly comfyScriptPath: string;
  private readonly startTimeoutMs: number;
  private sshd: ChildProcess | undefined;
  private comfy: ChildProcess | undefined;
  private onstart: ChildProcess | undefined;
  private relay: ChildProcess | undefined;
  private onstartText = '';
  private sshdLog = '';
  private gone = false;

  constructor(opts: StartFakeBoxOptions) {
    this.name = opts.name;
    this.instanceId = opts.instanceId;
    this.startTimeoutMs = opts.startTimeoutMs ?? 10_000;
    const safe = opts.name.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 40);
    this.dir = mkdtempSync(path.join(os.tmpdir(), `vai-box-${safe}-`));
    chmodSync(this.dir, 0o700);
    liveBoxes.add(this);
    reapOnExit();
    tellWatchdog('dir+', this.dir);
    this.hostKeyPath = path.join(this.dir, 'ssh_host_ed25519_key');
    this.configPath = path.join(this.dir, 'sshd_config');
    this.authorizedKeysPath = path.join(this.dir, 'authorized_keys');
    this.onstartPath = path.join(this.dir, 'onstart.log');
    this.execLogPath = path.join(this.dir, 'exec.log');
    this.execScriptPath = path.join(this.dir, 'exec.sh');
    this.comfyScriptPath = path.join(this.dir, 'comfy.mjs');
    writeFileSync(this.authorizedKeysPath, (opts.authorizedKeys ?? []).map((k) => `${k.trim()}\n`).join(''), { mode: 0o600 });
    writeFileSync(this.onstartPath, '', { mode: 0o644 });
    writeFileSync(this.execLogPath, '', { mode: 0o600 });
    // Any command run over SSH prints this box's onstart log (honouring tail -n N / tail -N).
    writeFileSync(
      this.execScriptPath,
      [
        '#!/bin/sh',
        `LOG='${this.onstartPath}'`,
        `printf '%s\\n' "$SSH_ORIGINAL_COMMAND" | tr '\\n' ' ' | sed 's/ $//' >> '${this.execLogPath}'`,
        `echo >> '${this.execLogPath}'`,
        // The supervisor's heartbeat for the box's dead man's switch (kept apart per box).
        `if [ "$SSH_ORIGINAL_COMMAND" = 'touch /tmp/vai-heartbeat' ]; then exec touch '${path.join(this.dir, 'heartbeat')}'; fi`,
        'n=$(printf "%s" "$SSH_ORIGINAL_COMMAND" | sed -n "s/.*tail[^|;&]*-n *\\([0-9][0-9]*\\).*/\\1/p; s/.*tail[^|;&]* -\\([0-9][0-9]*\\).*/\\1/p" | head -n 1)',
        'if [ -n "$n" ]; then exec tail -n "$n" "$LOG"; fi',
        'exec cat "$LOG"',
        '',
      ].join('\n'),
      { mode: 0o700 },
    );
    writeFileSync(this.comfyScriptPath, COMFY_SCRIPT, { mode: 0o600 });
  }

  get heartbeatFile(): string {
    return path.join(this.dir, 'heartbeat');
  }

  async runOnstart(script: string, env: Record<string, string>, apiPort: number): Promise<void> {
    if (this.gone) throw new Error(`fake box ${this.name}: destroyed`);
    await this.stopOnstart();
    const bin = path.join(this.dir, 'bin');
    mkdirSync(bin, { recursive: true });
    writeFileSync(path.join(bin, 'entrypoint.sh'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
    if (!this.relay) {
      const relay = spawn('ip', ['netns', 'exec', this.ns, process.execPath, '-e', RELAY_SCRIPT, String(apiPort), this.hostSideAddress], { stdio: ['pipe', 'pipe', 'pipe'] });
      relay.stdin!.on('error', () => {});
      let out = '';
      relay.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      this.relay = relay;
      if (relay.pid) tellWatchdog('pid+', String(relay.pid));
      await pollUntil(`the API relay of ${this.name}`, () => {
        if (relay.exitCode !== null) throw new Error(`fake box ${this.name}: the API relay exited`);
        return out.includes('listening');
      }, this.startTimeoutMs);
    }
    const child = spawn('ip', ['netns', 'exec', this.ns, 'sh', '-c', script], {
      env: { PATH: `${bin}:${process.env.PATH ?? '/usr/bin:/bin'}`, HOME: this.dir, ...env, VAI_HEARTBEAT_FILE: this.heartbeatFile, VAI_WATCHDOG_LOG: path.join(this.dir, 'watchdog.log') },
      stdio: ['ignore', 'pipe', 'pipe'],
      cwd: this.dir,
    });
    const keep = (d: Buffer) => (this.onstartText = (this.onstartText + d.toString()).slice(-LOG_CAP));
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    this.onstart = child;
    if (child.pid) tellWatchdog('pid+', String(child.pid));
  }

  /** The script and what it left running in the background (the watchdog), by PID. */
  async stopOnstart(): Promise<void> {
    const child = this.onstart;
    this.onstart = undefined;
    if (!child?.pid) return;
    // The script itself may have exited, leaving its background jobs: they are found by the
    // namespace's PIDs (all but sshd, the app and the relay).
    const keep = new Set([this.sshd, this.comfy, this.relay].flatMap((c) => (c?.pid ? [c.pid, ...descendantsOf(c.pid)] : [])));
    const { stdout } = await execFileP('ip', ['netns', 'pids', this.ns], { timeout: 5000 }).catch(() => ({ stdout: '' }));
    const pids = stdout.split(/\s+/).filter(Boolean).map(Number).filter((p) => !keep.has(p));
    signalAll(pids, 'SIGKILL');
    await pollUntil(`${this.name}: the onstart processes to die`, () => pids.every(isDead), 5000, 10).catch(() => {});
    tellWatchdog('pid-', String(child.pid));
  }

  onstartOutput(): string {
    return this.onstartText;
  }

  get sshRunning(): boolean {
    const c = this.sshd;
    return !!c && c.exitCode === null && c.signalCode === null;
  }

  get comfyRunning(): boolean {
    const c = this.comfy;
    return !!c && c.exitCode === null && c.signalCode === null;
  }

  get destroyed(): boolean {
    return this.gone;
  }

  /** Host key, namespace, veth pair, addresses, sshd. */
  async setUp(): Promise<void> {
    await execFileP('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `vai-fake-box-${this.name}`, '-f', this.hostKeyPath], { timeout: 10_000 });
    await this.makeNamespace();
    try {
      mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
    } catch {
      // exists
    }
    this.writeConfig();
    await this.startSsh();
  }

  private async makeNamespace(): Promise<void> {
    let lastErr = '';
    for (let attempt = 0; attempt < 40; attempt++) {
      const k = Math.floor(Math.random() * 16384);
      const ns = `vai-b${k}`;
      // The namespace name is the lock on block k: `ip netns add` fails when it exists, whoever made it.
      try {
        await ip(['netns', 'add', ns]);
      } catch (err) {
        lastErr = String((err as { stderr?: string }).stderr ?? err).trim();
        continue;
      }
      this.ns = ns;
      this.hostLink = `vaih${k}`;
      const boxLink = `vaib${k}`;
      [this.hostSideAddress, this.host] = blockAddresses(k);
      tellWatchdog('ns+', ns, this.hostLink);
      try {
        await ip(['link', 'add', this.hostLink, 'type', 'veth', 'peer', 'name', boxLink]);
      } catch (err) {
        // A leftover link of a namespace that outlived its owner: take another block.
        lastErr = String((err as { stderr?: string }).stderr ?? err).trim();
        ipSync(['netns', 'del', ns]);
        tellWatchdog('ns-', ns);
        this.ns = '';
        continue;
      }
      await ip(['link', 'set', boxLink, 'netns', ns]);
      await ip(['addr', 'add', `${this.hostSideAddress}/30`, 'dev', this.hostLink]);
      await ip(['link', 'set', this.hostLink, 'up']);
      await ip(['-n', ns, 'addr', 'add', `${this.host}/30`, 'dev', boxLink]);
      await ip(['-n', ns, 'link', 'set', boxLink, 'up']);
      await ip(['-n', ns, 'link', 'set', 'lo', 'up']);
      return;
    }
    throw new Error(`fake box ${this.name}: no free network namespace block after 40 tries (${lastErr})`);
  }

  private writeConfig(): void {
    const lines = sshdConfigLines({ port: this.sshPort, listen: `${this.host}:${this.sshPort}`, hostKey: this.hostKeyPath, dir: this.dir, authorizedKeys: this.authorizedKeysPath, logLevel: 'VERBOSE' });
    // Any command run on the box prints the box's own onstart log (namespaces share one filesystem).
    writeFileSync(this.configPath, [...lines, 'PrintMotd no', `ForceCommand ${this.execScriptPath}`, ''].join('\n'), { mode: 0o600 });
  }

  private appendSshdLog(d: Buffer): void {
    this.sshdLog += d.toString('utf8');
    if (this.sshdLog.length > LOG_CAP) this.sshdLog = this.sshdLog.slice(this.sshdLog.length - LOG_CAP);
  }

  async startSsh(): Promise<void> {
    if (this.gone) throw new Error(`fake box ${this.name}: destroyed`);
    if (this.sshRunning) return;
    const child = spawn('ip', ['netns', 'exec', this.ns, SSHD_PATH, '-D', '-e', '-f', this.configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (d: Buffer) => this.appendSshdLog(d));
    child.stderr!.on('data', (d: Buffer) => this.appendSshdLog(d));
    let spawnError: Error | undefined;
    child.once('error', (err) => (spawnError = err));
    this.sshd = child;
    // `ip netns exec` execs sshd in place: this PID is sshd's.
    if (child.pid) tellWatchdog('pid+', String(child.pid));
    const logFrom = this.sshdLog.length;
    try {
      await pollUntil(
        `sshd of ${this.name} to listen on ${this.host}:${this.sshPort}`,
        () => {
          if (spawnError) throw new Error(`fake box ${this.name}: cannot run sshd: ${spawnError.message}`);
          if (child.exitCode !== null || child.signalCode !== null) {
            throw new Error(`fake box ${this.name}: sshd exited (${child.exitCode ?? child.signalCode}): ${this.sshdLog.slice(logFrom).trim()}`);
          }
          return child.pid !== undefined && nsListens(child.pid, this.host, this.sshPort);
        },
        this.startTimeoutMs,
      );
    } catch (err) {
      await this.stopSsh().catch(() => {});
      throw err;
    }
  }

  /** SIGTERM the process and its descendants, SIGKILL after 2 s, wait (bounded) until gone. */
  private async stopTree(child: ChildProcess | undefined): Promise<void> {
    const pid = child?.pid;
    if (!child || !pid) return;
    const pids = [pid, ...descendantsOf(pid)];
    signalAll(pids, 'SIGTERM');
    const exited = (): boolean => (child.exitCode !== null || child.signalCode !== null) && pids.every(isDead);
    try {
      await pollUntil(`${this.name}: processes ${pids.join(',')} to exit`, exited, 2000, 10);
    } catch {
      signalAll([...pids, ...descendantsOf(pid)], 'SIGKILL');
      await pollUntil(`${this.name}: processes ${pids.join(',')} to die`, exited, 5000, 10);
    }
    tellWatchdog('pid-', String(pid));
  }

  async stopSsh(): Promise<void> {
    const child = this.sshd;
    this.sshd = undefined;
    await this.stopTree(child);
  }

  async startComfy(): Promise<void> {
    if (this.gone) throw new Error(`fake box ${this.name}: destroyed`);
    if (this.comfyRunning) return;
    const child = spawn('ip', ['netns', 'exec', this.ns, process.execPath, this.comfyScriptPath, this.instanceId, String(COMFY_PORT)], { stdio: ['pipe', 'pipe', 'pipe'] });
    child.stdin!.on('error', () => {});
    let out = '';
    let err = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
    let spawnError: Error | undefined;
    child.once('error', (e) => (spawnError = e));
    this.comfy = child;
    if (child.pid) tellWatchdog('pid+', String(child.pid));
    try {
      await pollUntil(
        `the app of ${this.name} to listen on 127.0.0.1:${COMFY_PORT}`,
        () => {
          if (spawnError) throw new Error(`fake box ${this.name}: cannot start the app: ${spawnError.message}`);
          if (child.exitCode !== null || child.signalCode !== null) throw new Error(`fake box ${this.name}: the app exited (${child.exitCode ?? child.signalCode}): ${err.trim()}`);
          return out.includes('listening');
        },
        this.startTimeoutMs,
      );
    } catch (e) {
      await this.stopComfy().catch(() => {});
      throw e;
    }
  }

  async stopComfy(): Promise<void> {
    const child = this.comfy;
    this.comfy = undefined;
    await this.stopTree(child);
  }

  addAuthorizedKey(pubLine: string): void {
    const line = pubLine.trim();
    if (!line) return;
    if (this.authorizedKeys().includes(line)) return;
    appendFileSync(this.authorizedKeysPath, `${line}\n`);
  }

  authorizedKeys(): string[] {
    try {
      return readFileSync(this.authorizedKeysPath, 'utf8').split('\n').map((l) => l.trim()).filter(Boolean);
    } catch {
      return [];
    }
  }

  setOnstartLog(text: string): void {
    if (!this.gone) writeFileSync(this.onstartPath, text);
  }

  appendOnstartLog(line: string): void {
    if (!this.gone) appendFileSync(this.onstartPath, line.endsWith('\n') ? line : `${line}\n`);
  }

  onstartLog(): string {
    try {
      return readFileSync(this.onstartPath, 'utf8');
    } catch {
      return '';
    }
  }

  execLog(): string[] {
    try {
      const lines = readFileSync(this.execLogPath, 'utf8').split('\n');
      lines.pop(); // after the last newline
      return lines;
    } catch {
      return [];
    }
  }

  hostKeyLine(): string {
    const [type, blob] = readFileSync(`${this.hostKeyPath}.pub`, 'utf8').trim().split(/\s+/);
    return `${type} ${blob}`;
  }

  hostKeySha256(): string {
    const blob = readFileSync(`${this.hostKeyPath}.pub`, 'utf8').trim().split(/\s+/)[1] ?? '';
    return createHash('sha256').update(Buffer.from(blob, 'base64')).digest('hex');
  }

  sshdLogs(): string {
    return this.sshdLog;
  }

  async destroy(): Promise<void> {
    if (this.gone) return;
    this.gone = true;
    let firstErr: unknown;
    for (const stop of [() => this.stopOnstart(), () => this.stopSsh(), () => this.stopComfy(), () => this.stopTree(this.relay)]) {
      try {
        await stop();
      } catch (err) {
        firstErr ??= err;
      }
    }
    if (this.ns) {
      // Anything else that ended up in the namespace (an `ip netns exec` a test ran), by PID.
      try {
        const { stdout } = await execFileP('ip', ['netns', 'pids', this.ns], { timeout: 5000 });
        const left = stdout.split(/\s+/).filter(Boolean).map(Number);
        signalAll(left, 'SIGKILL');
        await pollUntil(`${this.name}: leftover processes to die`, () => left.every(isDead), 5000, 10).catch(() => {});
      } catch {
        // namespace already gone
      }
      await ip(['link', 'del', this.hostLink]).catch(() => {});
      await ip(['netns', 'del', this.ns]).catch((err) => (firstErr ??= err));
      tellWatchdog('ns-', this.ns);
    }
    rmSync(this.dir, { recursive: true, force: true });
    tellWatchdog('dir-', this.dir);
    liveBoxes.delete(this);
    if (firstErr) throw firstErr;
  }

  /** For the exit hook: no waiting possible there. */
  destroySync(): void {
    if (this.gone) return;
    this.gone = true;
    try {
      for (const c of [this.sshd, this.comfy, this.relay, this.onstart]) if (c?.pid) signalAll([c.pid, ...descendantsOf(c.pid)], 'SIGKILL');
      if (this.ns) {
        ipSync(['link', 'del', this.hostLink]);
        ipSync(['netns', 'del', this.ns]);
      }
      rmSync(this.dir, { recursive: true, force: true });
    } catch {
      // best effort at exit
    }
  }
}

/** Creates and starts a fake box (sshd listening; the app not yet: `startComfy()`). `destroy()` it. */
export async function startFakeBox(opts: StartFakeBoxOptions): Promise<FakeBox> {
  const support = fakeBoxesSupported();
  if (!support.ok) throw new Error(`fake boxes are not supported here: ${support.reason}`);
  const box = new Box(opts);
  try {
    await box.setUp();
  } catch (err) {
    await box.destroy().catch(() => {});
    throw err;
  }
  return box;
}
