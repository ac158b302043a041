/**
 * Our contender: the real supervisor, started by the built CLI (`vai-mcp-cli create` with the
 * `ssh` provider) in a fresh temporary VAI_HOME; its PID is read from the system (/proc).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { makeSandbox, type Sandbox } from '../../test/helpers/cli.js';
import type { InstanceView, TunnelView } from '../../core/api/api.js';
import type { SshTarget } from './openssh.js';

/** What `tunnel --list --json` prints: core's tunnel view. */
export type TunnelJson = TunnelView;

export class Vai {
  readonly sb: Sandbox;
  private configs = 0;

  constructor(basePort?: number) {
    this.sb = makeSandbox(basePort ? { VAI_BASE_PORT: String(basePort) } : {});
  }

  get home(): string {
    return this.sb.home;
  }

  /** The supervisor's PID, from /proc (its command line names this VAI_HOME). */
  supervisorPid(): number {
    const pids = this.sb.supervisorPids();
    if (pids.length !== 1) throw new Error(`expected one supervisor for ${this.home}, found ${pids.length}`);
    return pids[0]!;
  }

  /** `vai-mcp-cli create <config> --json` for a box reached over SSH; resolves once it is ready. */
  async createSshBox(t: SshTarget, extra: Record<string, unknown> = {}): Promise<TunnelView> {
    const file = this.sb.writeFile(`box-${++this.configs}.json`, {
      provider: 'ssh',
      instance_config: { ssh_host: t.host, ssh_port: t.port, ssh_user: t.user, ssh_key_path: t.keyPath, remote_port: t.remotePort, check_comfy: false, ...extra },
    });
    const r = await this.sb.cli(['create', file, '--json'], { timeoutMs: 120_000 });
    if (r.code !== 0) throw new Error(`vai-mcp-cli create exited ${r.code}: ${r.stderr}`);
    const [inst] = JSON.parse(r.stdout) as InstanceView[];
    if (!inst?.tunnel || inst.status !== 'ready') throw new Error(`box not ready: ${r.stdout}`);
    return inst.tunnel;
  }

  async tunnels(): Promise<TunnelJson[]> {
    return this.sb.json<TunnelJson[]>(['tunnel', '--list', '--json']);
  }

  /** The cipher of the last SSH link the supervisor brought up, from its log. */
  cipher(): string {
    const log = readFileSync(path.join(this.home, 'supervisor.log'), 'utf8');
    const all = [...log.matchAll(/ssh link ready to \S+ \(cipher (\S+)\)/g)];
    return all.at(-1)?.[1] ?? 'unknown';
  }

  async cleanup(): Promise<void> {
    await this.sb.cleanup();
  }
}
