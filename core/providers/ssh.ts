/**
 * The `ssh` provider: a box you already have (a RunPod pod, a lab server, any SSH host).
 * "Create" registers it (id `ssh-N`) and the supervisor opens its tunnel; "destroy" forgets it
 * and closes the tunnel, and never touches the machine itself.
 */
import { badInput } from '../lib/errors.js';
import type { Config } from '../config/config.js';
import { resolveAuth, type SshAuth } from '../tunnels/ssh-auth.js';
import type { InstanceRecord } from '../store/store.js';
import type { BoxStatus, CreatedBox, Provider, ProviderContext } from './provider.js';
import type { BoxInstaller } from '../comfy/provision/installer.js';
import { ShellInstaller } from '../comfy/provision/shell-installer.js';
import type { Shell } from '../model/shell.js';

export class SshProvider implements Provider {
  readonly name = 'ssh' as const;
  /** Ready means ComfyUI answers, as for every provider (`check_comfy: false` opts a box out). */
  readonly checksComfy = true;
  readonly failsafeDestroy = false;
  readonly countsTowardCap = false;
  readonly pollIntervalMs = 1000;

  constructor(private readonly nextId: () => Promise<string>) {}

  /** Loads the key now, so a missing file or passphrase is bad input before anything is registered. */
  validate(config: Config, ctx: ProviderContext): void {
    const ic = config.instance_config;
    if (ic.idle_timeout_s) {
      throw badInput('instance_config.idle_timeout_s does not apply to "ssh" boxes: the machine is not vai-mcp\'s to stop.', 'Leave it out (or 0); `vai-mcp-cli tunnel --stop` closes the tunnel.');
    }
    if (ic.deadman_s) throw badInput('instance_config.deadman_s applies to "vast" boxes only.', 'Leave it out for "ssh" boxes.');
    this.authFor(config, ctx);
  }

  private authFor(config: Config, ctx: ProviderContext): SshAuth {
    return resolveAuth({
      keyPath: config.instance_config.ssh_key_path,
      passphrase: ctx.env.VAI_SSH_PASSPHRASE,
      agentSocket: ctx.env.SSH_AUTH_SOCK,
      homeDir: ctx.env.HOME,
    });
  }

  async create(spec: { config: Config }): Promise<CreatedBox> {
    const ic = spec.config.instance_config;
    return {
      instance_id: await this.nextId(),
      status: 'running',
      ssh: { host: ic.ssh_host!, port: ic.ssh_port, user: ic.ssh_user },
      message: `registered ${ic.ssh_user}@${ic.ssh_host}:${ic.ssh_port}`,
    };
  }

  async status(rec: InstanceRecord): Promise<BoxStatus> {
    return { status: rec.status === 'ready' ? 'ready' : 'running', ssh: rec.ssh };
  }

  async destroy(): Promise<void> {
    // Nothing to do: the machine is not ours to end.
  }

  /** A machine of yours: where ComfyUI lives and how it restarts are yours to say. */
  async installer(rec: InstanceRecord, _ctx: ProviderContext, shell: Shell): Promise<BoxInstaller> {
    const ic = rec.config.instance_config;
    if (!ic.comfy_dir) {
      throw badInput(`${rec.instance_id} is an "ssh" box, and vai-mcp does not know where its ComfyUI is.`,
        'Set instance_config.comfy_dir (e.g. "/home/me/ComfyUI") and, for node packs, instance_config.comfy_restart (e.g. "systemctl restart comfyui") in its config, and register it again.');
    }
    return new ShellInstaller(shell, { comfyDir: ic.comfy_dir, ...(ic.comfy_restart ? { restart: ic.comfy_restart } : {}) });
  }

  auth(rec: InstanceRecord, ctx: ProviderContext): SshAuth {
    return this.authFor(rec.config, ctx);
  }
}
