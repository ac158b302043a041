/**
 * The `local` provider: simulated ComfyUI boxes for demos, tests and trying vai-mcp for free.
 *
 * Each box is a real SSH server (ssh2 `Server`) on 127.0.0.1 with its own host key (kept in
 * VAI_HOME, so it survives restarts), that accepts the provider's own key pair (also in VAI_HOME:
 * no user key needed) and routes `direct-tcpip` for its remote port to its own ComfyUI-like app.
 * `instance_config.simulate` makes a box start slowly or fail:
 *   boot  - the box never boots (status `failed` after the start delay)
 *   ssh   - its SSH server drops every connection (the tunnel never comes up)
 *   comfy - SSH works but nothing listens on the remote port (tunnel `remote_down`)
 */
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import type { ParsedKey } from 'ssh2';
import { ensureKeyPair, SimulatedBox } from '../simulator/box.js';
import { SideApps, simulatedPortalConfig } from '../simulator/side-app.js';
import type { BoxInstaller } from '../comfy/provision/installer.js';
import type { Config } from '../config/config.js';
import { homeWriteError } from '../lib/errors.js';
import { appsOf, MAIN_APP } from '../model/apps.js';
import type { Logger } from '../lib/log.js';
import { homeFiles } from '../lib/paths.js';
import { loadPrivateKey, type SshAuth } from '../tunnels/ssh-auth.js';
import type { InstanceRecord } from '../store/store.js';
import type { BoxStatus, CreatedBox, Provider } from './provider.js';

type Simulate = NonNullable<Config['instance_config']['simulate']>;
const NO_SIMULATION: Simulate = { start_delay_s: 0, fail: 'never' };

export class LocalProvider implements Provider {
  readonly name = 'local' as const;
  readonly checksComfy = true;
  readonly failsafeDestroy = true;
  readonly countsTowardCap = false;
  readonly pollIntervalMs = 200;
  private readonly boxes = new Map<string, SimulatedBox>();
  /** What happened to each box, for `logs` (in memory: a simulated box has no other log). */
  private readonly history = new Map<string, string[]>();
  private readonly dir: string;
  private readonly userKeyPath: string;
  private userKey: ParsedKey | undefined;

  constructor(
    private readonly home: string,
    private readonly nextId: () => Promise<string>,
    private readonly log: Logger,
  ) {
    this.dir = homeFiles(home).localDir;
    this.userKeyPath = path.join(this.dir, 'id_ed25519');
  }

  private key(): ParsedKey {
    if (!this.userKey) {
      try {
        mkdirSync(this.dir, { recursive: true, mode: 0o700 });
        ensureKeyPair(this.userKeyPath, 'vai-mcp local provider');
      } catch (err) {
        throw homeWriteError(err, this.home, `the local provider's key ${this.userKeyPath}`);
      }
      this.userKey = loadPrivateKey(this.userKeyPath);
    }
    return this.userKey;
  }

  validate(): void {}

  private boxDir(id: string): string {
    return path.join(this.dir, id);
  }

  /** The box's ComfyUI folder: its models and node packs live on disk, in VAI_HOME. */
  private comfyDir(id: string): string {
    return path.join(this.boxDir(id), 'ComfyUI');
  }

  /** A simulated box has no shell: the supervisor writes into its tree, and restarts its app. */
  async installer(rec: InstanceRecord): Promise<BoxInstaller> {
    const id = rec.instance_id;
    const { SimInstaller } = await import('../simulator/installer.js'); // loaded on first use, like the app
    return new SimInstaller(this.comfyDir(id), async () => {
      const box = this.boxes.get(id);
      if (!box) throw new Error(`${id} is not running`);
      this.note(id, 'ComfyUI restarted (to load new node packs)');
      await box.restartComfy();
    });
  }

  private simulate(rec: { config: Config }): Simulate {
    return { ...NO_SIMULATION, ...rec.config.instance_config.simulate };
  }

  /** Seconds left before a box finishes "booting". */
  private bootRemainingMs(rec: Pick<InstanceRecord, 'created_at' | 'config'>): number {
    const delay = this.simulate(rec).start_delay_s * 1000;
    return Math.max(0, Date.parse(rec.created_at) + delay - Date.now());
  }

  private note(id: string, line: string): void {
    const lines = this.history.get(id) ?? [];
    lines.push(`${new Date().toISOString()} ${line}`);
    this.history.set(id, lines.slice(-200));
  }

  async create(spec: { config: Config }): Promise<CreatedBox> {
    this.key();
    const instance_id = await this.nextId();
    this.note(instance_id, `created (simulate: ${JSON.stringify(this.simulate(spec))})`);
    try {
      mkdirSync(this.boxDir(instance_id), { recursive: true, mode: 0o700 });
      ensureKeyPair(path.join(this.boxDir(instance_id), 'ssh_host_ed25519_key'), `${instance_id} host key`);
    } catch (err) {
      rmSync(this.boxDir(instance_id), { recursive: true, force: true }); // no half-made box left behind
      this.history.delete(instance_id);
      throw homeWriteError(err, this.home, `the simulated box's host key in ${this.boxDir(instance_id)}`);
    }
    return { instance_id, status: 'loading', message: 'starting simulated box' };
  }

  /** Starts a box's SSH server once its boot delay has passed. */
  private async boot(rec: InstanceRecord): Promise<BoxStatus> {
    const sim = this.simulate(rec);
    if (this.bootRemainingMs(rec) > 0) return { status: 'loading', message: `booting (simulated start delay ${sim.start_delay_s} s)` };
    if (sim.fail === 'boot') return { status: 'failed', message: 'the simulated box failed to boot (simulate.fail = "boot")' };
    if (this.boxes.has(rec.instance_id)) return { status: 'running', ssh: rec.ssh };
    const hostKey = readFileSync(path.join(this.boxDir(rec.instance_id), 'ssh_host_ed25519_key'));
    const box = new SimulatedBox(rec.instance_id, hostKey, this.key(), rec.remote_port, sim, this.log.child(rec.instance_id), this.comfyDir(rec.instance_id), this.sideApps(rec));
    const port = await box.start(rec.ssh?.port); // throws: the watch reports it and tries again
    this.boxes.set(rec.instance_id, box);
    this.note(rec.instance_id, `booted: ssh server on 127.0.0.1:${port}${sim.fail === 'comfy' ? ', ComfyUI not started (simulate.fail = "comfy")' : ', ComfyUI on 127.0.0.1:' + rec.remote_port}`);
    return { status: 'running', ssh: { host: '127.0.0.1', port, user: 'root' }, message: `ssh server on 127.0.0.1:${port}` };
  }

  status(rec: InstanceRecord): Promise<BoxStatus> {
    return this.boot(rec);
  }

  portalConfig(rec: InstanceRecord): string {
    return rec.config.instance_config.env.PORTAL_CONFIG ?? simulatedPortalConfig(rec.remote_port);
  }

  /** The box's other apps, served by the simulator's stand-in. */
  private sideApps(rec: InstanceRecord): SideApps | undefined {
    const others = appsOf(rec.config.instance_config, this.portalConfig(rec)).filter((a) => a.name !== MAIN_APP);
    return others.length ? new SideApps(rec.instance_id, new Map(others.map((a) => [a.remote_port, a.name]))) : undefined;
  }

  restore(rec: InstanceRecord): Promise<BoxStatus> {
    return this.boot(rec);
  }

  async destroy(rec: InstanceRecord): Promise<void> {
    const box = this.boxes.get(rec.instance_id);
    this.boxes.delete(rec.instance_id);
    this.history.delete(rec.instance_id);
    await box?.stop();
    rmSync(this.boxDir(rec.instance_id), { recursive: true, force: true });
  }

  async stop(rec: InstanceRecord): Promise<void> {
    const box = this.boxes.get(rec.instance_id);
    this.boxes.delete(rec.instance_id);
    await box?.stop();
    this.note(rec.instance_id, 'stopped');
  }

  async start(rec: InstanceRecord): Promise<void> {
    this.note(rec.instance_id, 'started'); // it boots at the next status check
  }

  async logs(rec: InstanceRecord): Promise<string> {
    return (this.history.get(rec.instance_id) ?? [`${rec.instance_id}: no events since the supervisor started`]).join('\n') + '\n';
  }

  auth(): SshAuth {
    return { kind: 'key', keyPath: this.userKeyPath, key: this.key() };
  }

  async shutdown(): Promise<void> {
    await Promise.all([...this.boxes.values()].map((b) => b.stop()));
    this.boxes.clear();
  }
}

