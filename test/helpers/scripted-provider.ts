/**
 * A paid provider whose boxes do what the test says: each box's state is set by the test
 * (`loading`, `running`, `stopped`, `gone`), and a running box is a real SSH server with a
 * ComfyUI-like app (the simulator's box), so tunnels and readiness checks are the real ones.
 * It answers as the `vast` provider would (failsafe destroy, census of ready boxes, stop and
 * start), at $0.50/h a box.
 */
import ssh2 from 'ssh2';
import type { ParsedKey } from 'ssh2';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { silentLogger } from '../../core/lib/log.js';
import type { BoxStatus, CreatedBox, Provider } from '../../core/providers/provider.js';
import { generateKeyPair, SimulatedBox } from '../../core/simulator/box.js';
import type { InstanceRecord } from '../../core/store/store.js';
import type { SshAuth } from '../../core/tunnels/ssh-auth.js';

export type ScriptedState = 'loading' | 'running' | 'stopped' | 'gone';

function parsed(privateKey: string): ParsedKey {
  const key = ssh2.utils.parseKey(privateKey);
  if (key instanceof Error) throw key;
  return Array.isArray(key) ? key[0]! : key;
}

export class ScriptedProvider implements Provider {
  readonly name = 'vast' as const;
  readonly checksComfy = true;
  readonly failsafeDestroy = true;
  readonly countsTowardCap = false;
  readonly pollIntervalMs = 1_000;
  readonly censusIntervalMs = 30_000;

  /** What each box is doing, as the test sets it (new boxes start `loading`). */
  readonly state = new Map<string, ScriptedState>();
  readonly destroyed: string[] = [];
  statusCalls = 0;
  /** While set, status() waits for it before it answers (a slow provider API). */
  hold: Promise<void> | undefined;
  /** While set, stop() fails with this message (say, a key the provider refuses). */
  failStops: string | undefined;
  stopCalls = 0;

  private readonly boxes = new Map<string, { sim: SimulatedBox; port: number }>();
  private readonly userKeyPath: string;
  private readonly userKey: ParsedKey;
  private next = 1;

  constructor(dir: string) {
    const pair = generateKeyPair('scripted provider user');
    this.userKeyPath = path.join(dir, 'scripted_id_ed25519');
    writeFileSync(this.userKeyPath, pair.private, { mode: 0o600 });
    this.userKey = parsed(pair.private);
  }

  validate(): void {}

  async create(): Promise<CreatedBox> {
    const instance_id = `vast-${9000 + this.next++}`;
    this.state.set(instance_id, 'loading');
    return { instance_id, status: 'provisioning', message: 'rented (scripted)', dph_total: 0.5 };
  }

  async status(rec: InstanceRecord): Promise<BoxStatus> {
    this.statusCalls++;
    if (this.hold) await this.hold;
    const state = this.state.get(rec.instance_id) ?? 'gone';
    if (state === 'gone') return { status: 'failed', message: 'the instance no longer exists on the account' };
    if (state === 'stopped') return { status: 'stopped' };
    if (state === 'loading') return { status: 'loading', message: 'pulling the image (scripted)' };
    return { status: 'running', ssh: { host: '127.0.0.1', port: await this.boot(rec), user: 'root' } };
  }

  private async boot(rec: InstanceRecord): Promise<number> {
    const have = this.boxes.get(rec.instance_id);
    if (have) return have.port;
    const hostKey = Buffer.from(generateKeyPair(`${rec.instance_id} host`).private);
    const sim = new SimulatedBox(rec.instance_id, hostKey, this.userKey, rec.remote_port, { start_delay_s: 0, fail: 'never' }, silentLogger);
    const port = await sim.start();
    this.boxes.set(rec.instance_id, { sim, port });
    return port;
  }

  /** The box's SSH server and app are gone (as when the machine is destroyed elsewhere). */
  async kill(id: string): Promise<void> {
    const box = this.boxes.get(id);
    this.boxes.delete(id);
    await box?.sim.stop();
  }

  async destroy(rec: InstanceRecord): Promise<void> {
    this.destroyed.push(rec.instance_id);
    this.state.delete(rec.instance_id);
    await this.kill(rec.instance_id);
  }

  async stop(rec: InstanceRecord): Promise<void> {
    this.stopCalls++;
    if (this.failStops) throw new Error(this.failStops);
    this.state.set(rec.instance_id, 'stopped');
    await this.kill(rec.instance_id);
  }

  async start(rec: InstanceRecord): Promise<void> {
    this.state.set(rec.instance_id, 'running');
  }

  auth(): SshAuth {
    return { kind: 'key', keyPath: this.userKeyPath, key: this.userKey };
  }

  /** The test's end: every SSH server it started is stopped. */
  async close(): Promise<void> {
    for (const id of [...this.boxes.keys()]) await this.kill(id);
  }
}
