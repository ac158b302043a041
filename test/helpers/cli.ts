/**
 * Runs the built bins the way a user does: a child process with a temporary VAI_HOME and a
 * VAI_BASE_PORT in the suite's own range (ports.ts), so tests never touch a real user's state or ports. Cleans up supervisors by PID.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBasePort } from './ports.js';

/** The checkout: the nearest folder up with a package.json (this file also runs compiled, from build/ for the benchmark). */
export const ROOT = (() => {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json')) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  return dir;
})();
export const CLI = path.join(ROOT, 'dist', 'cli', 'index.js');

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface Sandbox {
  home: string;
  basePort: number;
  env: NodeJS.ProcessEnv;
  /** Runs `vai-mcp-cli args...`; never throws on a non-zero exit. */
  cli(args: string[], opts?: { env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number; cwd?: string }): Promise<RunResult>;
  /** Runs it and parses stdout as JSON (asserting exit 0). */
  json<T = unknown>(args: string[], opts?: { env?: NodeJS.ProcessEnv }): Promise<T>;
  supervisorPids(): number[];
  /** Writes a file in the sandbox folder (a JSON value is serialised) and returns its path. */
  writeFile(name: string, content: unknown): string;
  cleanup(): Promise<void>;
}

export function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number; cwd?: string } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: opts.env, cwd: opts.cwd ?? ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timeoutMs = opts.timeoutMs ?? 45_000; // under the test timeout, so this error (with output) is what shows
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      const home = opts.env?.VAI_HOME;
      let log = '';
      try {
        if (home) log = readFileSync(path.join(home, 'supervisor.log'), 'utf8').slice(-6000);
      } catch {
        // no log yet
      }
      reject(new Error(`${path.basename(args[0] ?? cmd)} ${args.slice(1).join(' ')} did not finish within ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}\nsupervisor log (tail):\n${log}`));
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
    child.stdin.end(opts.input ?? '');
  });
}

/** PIDs of supervisor processes started for a VAI_HOME (from /proc, by their --home argument). */
export function supervisorPidsFor(home: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const args = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (args.some((a) => a.endsWith(path.join('supervisor', 'main.js'))) && args.includes(`--home=${home}`)) pids.push(Number(entry));
    } catch {
      // the process ended meanwhile
    }
  }
  return pids;
}

export async function waitUntil(what: string, check: () => boolean | Promise<boolean>, timeoutMs: number, everyMs = 50): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export function makeSandbox(extraEnv: NodeJS.ProcessEnv = {}): Sandbox {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vai-test-'));
  const home = path.join(dir, 'home');
  const basePort = randomBasePort();
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: dir, // no real ~/.ssh keys or ~/.config/vastai of the user leak into tests
    VAI_HOME: home,
    VAI_BASE_PORT: String(basePort),
    VAI_UI_PORT: String(basePort - 1), // the dashboard, never the user's 8187
    ...extraEnv,
  };
  const box: Sandbox = {
    home,
    basePort,
    env,
    cli: (args, opts = {}) => run(process.execPath, [CLI, ...args], { ...opts, env: { ...env, ...opts.env } }),
    async json<T>(args: string[], opts: { env?: NodeJS.ProcessEnv } = {}) {
      const r = await box.cli(args, opts);
      if (r.code !== 0) throw new Error(`vai-mcp-cli ${args.join(' ')} exited ${r.code}\n${r.stderr}`);
      return JSON.parse(r.stdout) as T;
    },
    supervisorPids: () => supervisorPidsFor(home),
    writeFile(name, content) {
      const file = path.join(dir, name);
      writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content, null, 2));
      return file;
    },
    async cleanup() {
      await box.cli(['destroy', '--all', '--yes'], { timeoutMs: 30_000 }).catch(() => undefined);
      await box.cli(['daemon', 'stop'], { timeoutMs: 15_000 }).catch(() => undefined);
      for (const pid of supervisorPidsFor(home)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return box;
}
