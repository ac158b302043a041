/**
 * The reference: OpenSSH `ssh -N -L`, one process per tunnel, as users run it today (options as in
 * reference/perf-baseline.md: no host-key prompt, batch mode, exit when the forward fails).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { answers, until } from './http.js';

export interface SshTarget {
  host: string;
  port: number;
  user: string;
  keyPath: string;
  /** Where the forward goes, as seen from the ssh server. */
  remotePort: number;
}

function sshArgs(t: SshTarget, cipher: string | undefined, extra: string[]): string[] {
  return [
    '-N', ...extra, '-p', String(t.port), '-i', t.keyPath,
    '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes',
    '-o', 'ExitOnForwardFailure=yes', '-o', 'LogLevel=ERROR',
    ...(cipher ? ['-c', cipher] : []),
    `${t.user}@${t.host}`,
  ];
}

export function spawnSshL(t: SshTarget, localPort: number, cipher?: string): ChildProcess {
  const child = spawn('ssh', sshArgs(t, cipher, ['-L', `127.0.0.1:${localPort}:127.0.0.1:${t.remotePort}`]), { stdio: 'ignore' });
  child.on('error', () => {});
  return child;
}

/** Spawns `ssh -N -L` and waits (bounded) until the forward answers. */
export async function openSshL(t: SshTarget, localPort: number, cipher?: string): Promise<ChildProcess> {
  const child = spawnSshL(t, localPort, cipher);
  try {
    await until(`ssh -N -L ${localPort}`, () => {
      if (child.exitCode !== null) throw new Error(`ssh -N -L ${localPort} exited ${child.exitCode}`);
      return answers(localPort, 2000);
    }, 20_000, 5);
  } catch (err) {
    await stopProcess(child);
    throw err;
  }
  return child;
}

export async function stopProcess(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => p.kill('SIGKILL'), 5000);
    p.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    p.kill('SIGTERM');
  });
}

/** The cipher OpenSSH negotiates with this server (server-to-client), read from `ssh -v`. */
export function negotiatedCipher(t: SshTarget, cipher?: string): Promise<string> {
  return new Promise((resolve) => {
    const child = spawn('ssh', sshArgs(t, cipher, []).map((a) => (a === 'LogLevel=ERROR' ? 'LogLevel=DEBUG1' : a)), { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    const done = (v: string) => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      resolve(v);
    };
    const timer = setTimeout(() => done('unknown'), 10_000);
    child.stderr!.on('data', (d) => {
      err += d;
      const m = /kex: server->client cipher: (\S+)/.exec(err);
      if (m) done(m[1]!);
    });
    child.on('error', () => done('unknown'));
  });
}
